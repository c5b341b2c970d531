"""The `cbm` command: a thin shell over the services, one sub-command per task.

Exit codes: 0 success; 1 an error (message on stderr); 2 wrong usage; 3 the database is
unreachable; 4 the database is not migrated to the current schema; 5 `cbm import` stored
the file but rejected some of its rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, NoReturn

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

import cbm
from cbm import logs
from cbm.config import ConfigError, Settings, load_settings, read_setting
from cbm.db import ensure_sqlite_dir, make_engine, make_session_factory, session_scope

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_MIGRATED = 4


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(code)


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class Context:
    """Settings and the engine, created lazily so `cbm --help` needs no database."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except ConfigError as exc:
                fail(str(exc))
            logs.configure(self._settings.log_format, self._settings.log_level)
            if self._settings.log_level != "DEBUG":
                # Keep the terminal for what the user asked: migrations and the scheduler's
                # routine runs are logged at WARNING and above only.
                # httpx logs every request of a scheduled feed at INFO.
                for noisy in ("alembic", "apscheduler.executors", "apscheduler.scheduler", "httpx"):
                    logging.getLogger(noisy).setLevel(logging.WARNING)
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            url = self.settings.database_url
            ensure_sqlite_dir(url)
            self._engine = make_engine(url)
            try:
                with self._engine.connect():
                    pass
            except OperationalError as exc:
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                fail(
                    f"cannot reach the database at {safe_url(url)}: {reason}\n"
                    "Check CBM_DATABASE_URL and that the server is running.",
                    EXIT_UNREACHABLE,
                )
        return self._engine

    def require_current_schema(self) -> None:
        from cbm.migrate import migration_status

        status = migration_status(self.engine)
        if not status.is_current:
            fail(
                f"the database at {safe_url(self.settings.database_url)} is not migrated "
                f"(at {status.current or 'an empty schema'}, newest is {status.head}).\n"
                "Run: cbm db upgrade",
                EXIT_NOT_MIGRATED,
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        self.require_current_schema()
        with session_scope(make_session_factory(self.engine)) as session:
            yield session


pass_ctx = click.make_pass_decorator(Context, ensure=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(cbm.__version__, "-V", "--version", prog_name="cbm")
@click.pass_context
def main(ctx: click.Context) -> None:
    """cbm: track compliance with CSBMs (Vienna Document 2011, Open Skies, CFE, GEMI).

    Settings come from CBM_* environment variables (see the README); by default the data
    lives in an SQLite file under instance/.
    """
    ctx.ensure_object(Context)
    # Until the settings are read (lazily): warnings only, in the chosen format if it parses.
    try:
        log_format = read_setting("CBM_LOG_FORMAT")
    except ConfigError:
        log_format = "text"  # the settings, once read, report the bad value
    logs.configure(log_format, logging.WARNING)


@main.command()
def version() -> None:
    """Print the cbm version."""
    click.echo(f"cbm {cbm.__version__}")


@main.command("config")
@pass_ctx
def show_config(ctx: Context) -> None:
    """Show the effective settings (secrets hidden)."""
    for name, value in ctx.settings.as_dict().items():
        if name == "secret_key":
            value = "(set)" if value else "(missing)"
        elif name == "database_url":
            value = safe_url(value)
        click.echo(f"{name:18} {value}")


# --- db ---------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Create and migrate the database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option(
    "--no-reference", is_flag=True, help="Do not (re)load the shipped reference data afterwards."
)
@pass_ctx
def db_upgrade(ctx: Context, revision: str, no_reference: bool) -> None:
    """Migrate the schema to REVISION, then load the reference data."""
    from cbm.migrate import migration_status, upgrade

    engine = ctx.engine
    before = migration_status(engine).current
    try:
        upgrade(engine, revision)
    except SQLAlchemyError as exc:
        fail(f"migration failed: {exc}")
    status = migration_status(engine)
    if before == status.current:
        click.echo(f"Schema already at {status.current}.")
    else:
        click.echo(f"Schema migrated from {before or 'empty'} to {status.current}.")
    if not no_reference and status.is_current:
        _load_reference(ctx)


@db.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def db_downgrade(ctx: Context, revision: str, yes: bool) -> None:
    """Migrate the schema down to REVISION (e.g. -1, or base to drop everything)."""
    from cbm.migrate import downgrade, migration_status

    engine = ctx.engine
    if not yes and not click.confirm(
        f"Downgrade {safe_url(ctx.settings.database_url)} to {revision}? Data in dropped "
        "tables is lost.",
        default=False,
    ):
        fail("cancelled")
    downgrade(engine, revision)
    click.echo(f"Schema now at {migration_status(engine).current or 'base (empty)'}.")


@db.command("current")
@pass_ctx
def db_current(ctx: Context) -> None:
    """Show the schema revision of the database and whether it is the newest."""
    from cbm.migrate import migration_status

    status = migration_status(ctx.engine)
    click.echo(f"database: {safe_url(ctx.settings.database_url)}")
    click.echo(f"current:  {status.current or '(empty: run cbm db upgrade)'}")
    click.echo(f"head:     {status.head}")
    if not status.is_current:
        sys.exit(EXIT_NOT_MIGRATED)


# --- reference and demo ---------------------------------------------------------------


def _load_reference(ctx: Context) -> None:
    from cbm.reference.loader import ReferenceDataError, load_reference

    try:
        with ctx.session() as session:
            summary = load_reference(session)
    except ReferenceDataError as exc:
        fail(f"reference data: {exc}")
    if summary.changed:
        click.echo("Reference data loaded:")
        for line in summary.lines():
            click.echo(f"  {line}")
    else:
        click.echo("Reference data already up to date.")


@main.group()
def reference() -> None:
    """The shipped reference data (States, regions, participation, rule parameters)."""


@reference.command("load")
@pass_ctx
def reference_load(ctx: Context) -> None:
    """Load the reference data files into the database (idempotent)."""
    _load_reference(ctx)


@main.group()
def demo() -> None:
    """The demo data set."""


@demo.command("load")
@click.option("--seed", default=2012, show_default=True, type=int, help="Random seed.")
@click.option(
    "--if-empty", is_flag=True, help="Do nothing when the database already holds activities."
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Run the compliance check (and so the trust signals) on the loaded data.",
)
@pass_ctx
def demo_load(ctx: Context, seed: int, if_empty: bool, check: bool) -> None:
    """Load a deterministic, realistic history for 2012-2025 (idempotent).

    Then, unless --no-check, run the compliance check so that findings, the trust signals and
    the dashboards show the demo at once.
    """
    from sqlalchemy import exists, select

    from cbm.demo.loader import DemoError, load_demo
    from cbm.models import Activity

    started = time.monotonic()
    try:
        with ctx.session() as session:
            if if_empty and session.scalar(select(exists().where(Activity.id.is_not(None)))):
                click.echo("Demo data not loaded: the database already holds records.")
                return
            summary = load_demo(session, seed=seed, progress=lambda m: click.echo(f"  {m}"))
    except DemoError as exc:
        fail(f"demo data rejected: {exc}")
    click.echo(f"Demo data loaded in {time.monotonic() - started:.1f} s: {summary.lines()[-1]}")
    if check:
        from cbm.services.checks import check_now

        try:
            result = check_now(make_session_factory(ctx.engine), trigger="demo")
        except Exception as exc:  # the failed run is recorded; the data stay loaded
            fail(f"demo data loaded, but the check failed: {type(exc).__name__}: {exc}")
        click.echo(result.lines()[0])


# --- accounts ---------------------------------------------------------------------------


@main.group()
def user() -> None:
    """Manage accounts. Roles: viewer < analyst < admin."""


def _service_call(
    ctx: Context, refused: type[Exception], fn: Any, *args: Any, **kwargs: Any
) -> Any:
    """Run a service in one transaction; its refusal (``refused``) is a clean CLI error."""
    try:
        with ctx.session() as session:
            return fn(session, *args, **kwargs)
    except refused as exc:
        fail(str(exc))


def _account_call(ctx: Context, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from cbm.services.accounts import AccountError

    return _service_call(ctx, AccountError, fn, *args, **kwargs)


def _read_password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    value = sys.stdin.readline().rstrip("\n")
    return value or None


@user.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["viewer", "analyst", "admin"]),
    default="viewer",
    show_default=True,
)
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_ctx
def user_add(
    ctx: Context, username: str, role: str, display_name: str, password_stdin: bool
) -> None:
    """Create an account; without --password-stdin a password is generated and shown once."""
    from cbm.services.accounts import create_user, generate_password

    given = _read_password(password_stdin)
    password = given or generate_password()
    _account_call(ctx, create_user, username, password, role, display_name=display_name)
    click.echo(f"Created {role} account '{username.strip().lower()}'.")
    if not given:
        click.echo(f"Password (shown once): {password}")


@user.command("list")
@pass_ctx
def user_list(ctx: Context) -> None:
    """List the accounts."""
    from sqlalchemy import select

    from cbm.models import User

    with ctx.session() as session:
        users = session.scalars(select(User).order_by(User.username)).all()
        if not users:
            click.echo("No accounts. Create one with: cbm user add NAME --role admin")
            return
        click.echo(f"{'username':24} {'role':8} {'status':9} last sign-in")
        for u in users:
            last = u.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if u.last_login_at else "never"
            status = "active" if u.active else "disabled"
            click.echo(f"{u.username:24} {u.role:8} {status:9} {last}")


@user.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(["viewer", "analyst", "admin"]))
@pass_ctx
def user_set_role(ctx: Context, username: str, role: str) -> None:
    """Change an account's role (its sessions end)."""
    from cbm.services.accounts import set_role

    _account_call(ctx, set_role, username, role)
    click.echo(f"'{username}' is now {role}.")


@user.command("disable")
@click.argument("username")
@pass_ctx
def user_disable(ctx: Context, username: str) -> None:
    """Disable an account and end its sessions (its history is kept)."""
    from cbm.services.accounts import set_active

    _account_call(ctx, set_active, username, False)
    click.echo(f"'{username}' is disabled.")


@user.command("enable")
@click.argument("username")
@pass_ctx
def user_enable(ctx: Context, username: str) -> None:
    """Enable a disabled account."""
    from cbm.services.accounts import set_active

    _account_call(ctx, set_active, username, True)
    click.echo(f"'{username}' is enabled.")


@user.command("reset-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@pass_ctx
def user_reset_password(ctx: Context, username: str, password_stdin: bool) -> None:
    """Set a new password (generated unless given) and end the account's sessions."""
    from cbm.services.accounts import reset_password

    given = _read_password(password_stdin)
    password = _account_call(ctx, reset_password, username, given)
    click.echo(f"Password of '{username}' reset; its sessions have ended.")
    if not given:
        click.echo(f"New password (shown once): {password}")


@user.command("ensure-admin")
@pass_ctx
def user_ensure_admin(ctx: Context) -> None:
    """On an instance with no accounts, create 'admin' and print its password once."""
    from cbm.services.accounts import ensure_admin

    password = _account_call(ctx, ensure_admin)
    if password is None:
        click.echo("Accounts exist already: no administrator created.")
        return
    bar = "=" * 72
    click.echo(bar)
    click.echo("Created the first administrator account.")
    click.echo("  username: admin")
    click.echo(f"  password: {password}")
    click.echo("This password is shown once. Keep it safe; reset it any time with")
    click.echo("  cbm user reset-password admin")
    click.echo(bar)


# --- API tokens -------------------------------------------------------------------------
# `cbm token …`: personal API tokens, the same service as the Account page.


@main.group()
def token() -> None:
    """Personal API tokens for the JSON API (/api/v1/): create, list, revoke."""


@token.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What uses the token (shown in lists).")
@click.option(
    "--scope",
    type=click.Choice(["viewer", "analyst", "admin"]),
    help="At most the account's role (the default).",
)
@click.option("--expires-days", type=click.IntRange(1, 3650), help="Default: never expires.")
@pass_ctx
def token_create(
    ctx: Context, username: str, name: str, scope: str | None, expires_days: int | None
) -> None:
    """Create a token for USERNAME and print it once (only its hash is stored)."""
    from cbm.services.accounts import get_user
    from cbm.services.tokens import create_token

    def make(session: Any) -> tuple[Any, str]:
        tok, secret = create_token(
            session, get_user(session, username), name, scope=scope, expires_days=expires_days
        )
        return tok.scope, secret

    scope_used, secret = _account_call(ctx, make)
    click.echo(secret)
    click.echo(
        f"Token for {username} ({scope_used}). Copy it now: it is not shown again. "
        "Send it as 'Authorization: Bearer <token>'.",
        err=True,
    )


@token.command("list")
@click.argument("username", required=False)
@pass_ctx
def token_list(ctx: Context, username: str | None) -> None:
    """List tokens (of USERNAME, or of every account), newest first."""
    from cbm.models import User
    from cbm.services.accounts import get_user
    from cbm.services.tokens import list_tokens, token_status

    def rows(session: Any) -> list[tuple]:
        user_id = get_user(session, username).id if username else None
        names = {u.id: u.username for u in session.query(User)}

        def when(value: Any) -> str:
            return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"

        return [
            (
                t.id,
                t.prefix,
                names.get(t.user_id, "?"),
                t.scope,
                token_status(t),
                t.name,
                when(t.last_used_at),
            )
            for t in list_tokens(session, user_id)
        ]

    found = _account_call(ctx, rows)
    if not found:
        click.echo("No API tokens. Create one with: cbm token create USERNAME --name NAME")
        return
    click.echo(f"{'id':>5} {'token':14} {'user':16} {'scope':8} {'status':8} {'last used':21} name")
    for tid, prefix, user_name, scope, status, name, used in found:
        click.echo(f"{tid:>5} {prefix:14} {user_name:16} {scope:8} {status:8} {used:21} {name}")


@token.command("revoke")
@click.argument("token_id", type=int)
@pass_ctx
def token_revoke(ctx: Context, token_id: int) -> None:
    """Revoke token TOKEN_ID (see `cbm token list`) at once."""
    from cbm.services.tokens import revoke_token

    prefix = _account_call(ctx, lambda s: revoke_token(s, token_id).prefix)
    click.echo(f"Revoked {prefix}…; requests with it are refused from now on.")


# --- sources ----------------------------------------------------------------------------
# `cbm source …`: configure import sources and run one now. The same services as the
# admin page (cbm.services.sources); `run` takes the same lock as the scheduler.


@main.group()
def source() -> None:
    """Import sources: files, drop folders or globs, and http(s) feeds, on a schedule (UTC).

    Schedules are intervals ('every 15m', 'every 1h', 'every 30s', 'every 1d') or five-field
    cron expressions in UTC ('0 2 * * *'); empty means on demand only (cbm source run).
    """


def _source_call(ctx: Context, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from cbm.services.sources import SourceError

    return _service_call(ctx, SourceError, fn, *args, **kwargs)


def _cli_location(location: str) -> str:
    """Paths given on the command line may be relative to where the command runs."""
    import os

    if "://" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))


_IMPORTER_HELP = "How to read it: auto (by file name or content type), csv, xlsx or json."
_KIND_HELP = "The kind of record (e.g. activities); empty: from each file's name."
_SCHEDULE_HELP = "'every 15m', 'every 1h', 'every 30s', or cron in UTC such as '0 2 * * *'."


@source.command("add")
@click.argument("name")
@click.argument("location")
@click.option("--importer", default="auto", show_default=True, help=_IMPORTER_HELP)
@click.option("--kind", default="", help=_KIND_HELP)
@click.option("--schedule", default="", help=_SCHEDULE_HELP + " [default: on demand only]")
@click.option(
    "--all-or-nothing", is_flag=True, help="Write nothing from a file if any row is refused."
)
@click.option("--disabled", is_flag=True, help="Add it disabled (not scheduled).")
@pass_ctx
def source_add(
    ctx: Context,
    name: str,
    location: str,
    importer: str,
    kind: str,
    schedule: str,
    all_or_nothing: bool,
    disabled: bool,
) -> None:
    """Add a source NAME reading LOCATION (a file, a folder or glob, or an http(s) URL)."""
    from cbm.services.sources import add_source

    created = _source_call(
        ctx,
        add_source,
        name,
        _cli_location(location),
        importer=importer,
        kind=kind,
        schedule=schedule,
        enabled=not disabled,
        all_or_nothing=all_or_nothing,
    )
    when = f"scheduled {created.schedule} (UTC)" if created.schedule else "run on demand only"
    state = "disabled" if not created.enabled else when
    click.echo(f"Added source '{created.name}': {created.location} ({state}).")
    if created.enabled and created.schedule:
        click.echo("A running scheduler picks it up within a minute.")


@source.command("update")
@click.argument("name")
@click.option("--location", default=None, help="A new location.")
@click.option("--importer", default=None, help=_IMPORTER_HELP)
@click.option("--kind", default=None, help=_KIND_HELP + " Give '' to clear it.")
@click.option("--schedule", default=None, help=_SCHEDULE_HELP + " Give '' for on demand only.")
@click.option("--all-or-nothing/--row-by-row", default=None, help="Refused rows stop the file?")
@pass_ctx
def source_update(
    ctx: Context,
    name: str,
    location: str | None,
    importer: str | None,
    kind: str | None,
    schedule: str | None,
    all_or_nothing: bool | None,
) -> None:
    """Change a source's settings (its name cannot change)."""
    from cbm.services.sources import update_source

    given: dict[str, Any] = {
        key: value
        for key, value in {
            "location": _cli_location(location) if location is not None else None,
            "importer": importer,
            "kind": kind,
            "schedule": schedule,
            "all_or_nothing": all_or_nothing,
        }.items()
        if value is not None
    }
    if not given:
        fail(
            "nothing to change: give --location, --importer, --kind, --schedule or "
            "--all-or-nothing/--row-by-row",
            2,
        )
    updated = _source_call(ctx, update_source, name, **given)
    click.echo(f"Source '{updated.name}' updated.")


@source.command("list")
@pass_ctx
def source_list(ctx: Context) -> None:
    """List the sources with their schedule, next run (UTC) and last outcome."""
    from cbm.jobs import next_run_time
    from cbm.services.sources import list_sources

    def when(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    with ctx.session() as session:
        sources = list_sources(session)
        if not sources:
            click.echo(
                "No sources. Add one with: cbm source add NAME LOCATION --schedule 'every 1h'"
            )
            return
        click.echo(
            f"{'name':20} {'status':8} {'schedule':14} {'importer':8} {'next run':16} "
            f"{'last success':16} location"
        )
        for s in sources:
            status = "enabled" if s.enabled else "disabled"
            upcoming = next_run_time(s.schedule) if s.enabled else None
            click.echo(
                f"{s.name:20} {status:8} {s.schedule or 'on demand':14} {s.importer:8} "
                f"{when(upcoming):16} {when(s.last_success_at):16} {s.location}"
            )
            if s.last_error:
                click.echo(f"{'':20} last error: {s.last_error.splitlines()[0][:200]}")


@source.command("remove")
@click.argument("name")
@click.option(
    "--disable", "disable_if_used", is_flag=True, help="If it has import runs, disable it instead."
)
@pass_ctx
def source_remove(ctx: Context, name: str, disable_if_used: bool) -> None:
    """Remove a source that never imported anything (one with runs can only be disabled)."""
    from cbm.services.sources import remove_source

    result = _source_call(ctx, remove_source, name, disable_if_used=disable_if_used)
    if result.removed:
        click.echo(f"Source '{result.name}' removed.")
    else:
        click.echo(
            f"Source '{result.name}' has {result.runs} import run(s): disabled instead of removed."
        )


@source.command("enable")
@click.argument("name")
@pass_ctx
def source_enable(ctx: Context, name: str) -> None:
    """Enable a source (a running scheduler picks it up within a minute)."""
    from cbm.services.sources import set_enabled

    _source_call(ctx, set_enabled, name, True)
    click.echo(f"Source '{name}' is enabled.")


@source.command("disable")
@click.argument("name")
@pass_ctx
def source_disable(ctx: Context, name: str) -> None:
    """Disable a source: it is no longer scheduled; its history stays."""
    from cbm.services.sources import set_enabled

    _source_call(ctx, set_enabled, name, False)
    click.echo(f"Source '{name}' is disabled.")


@source.command("run")
@click.argument("name")
@pass_ctx
def source_run(ctx: Context, name: str) -> None:
    """Import from a source now, under the same lock as the scheduler, and print the outcome."""
    from cbm.jobs import import_job_id, run_with_follow_up
    from cbm.services.sources import get_source

    found = _source_call(ctx, get_source, name)
    outcome, follow_up = run_with_follow_up(
        make_session_factory(ctx.engine), import_job_id(found.name)
    )
    if outcome.skipped:
        fail(
            f"source '{found.name}' is being imported by another process right now; "
            "try again when it has finished"
        )
    label = {"succeeded": "done", "failed": "FAILED"}.get(outcome.status, outcome.status)
    click.echo(f"import:{found.name} {label}: {outcome.message}")
    if follow_up is not None:
        click.echo(f"{follow_up.job_id} {follow_up.status}: {follow_up.message}")
    if outcome.status == "failed":
        sys.exit(EXIT_ERROR)


# --- serving ----------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Address to listen on [default: CBM_HOST].")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="[default: CBM_PORT]")
@click.option(
    "--scheduler/--no-scheduler",
    default=None,
    help="Run the scheduler in this process [default: CBM_SCHEDULER].",
)
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
@pass_ctx
def serve(
    ctx: Context, host: str | None, port: int | None, scheduler: bool | None, threads: int
) -> None:
    """Serve the web app (and, in the embedded default, the scheduler) in one process."""
    from waitress import serve as waitress_serve

    from cbm.scheduler import build_scheduler
    from cbm.web import create_app

    settings = ctx.settings
    ctx.require_current_schema()
    host = host or settings.host
    port = port or settings.port
    run_scheduler = settings.scheduler if scheduler is None else scheduler
    app = create_app({"CBM_ENGINE": ctx.engine})
    sched = None
    if run_scheduler:
        sched = build_scheduler(make_session_factory(ctx.engine))
        sched.start()
    click.echo(f"cbm {cbm.__version__} serving on http://{host}:{port}/ (Ctrl+C to stop)")
    click.echo(f"database: {safe_url(settings.database_url)}")
    click.echo(f"scheduler: {'running in this process' if sched else 'off'}")
    logging.getLogger("waitress").setLevel(logging.INFO)
    try:
        waitress_serve(app, host=host, port=port, threads=threads, ident="cbm")
    finally:
        if sched is not None:
            sched.shutdown(wait=False)


@main.command("scheduler")
@pass_ctx
def scheduler_cmd(ctx: Context) -> None:
    """Run the scheduler alone (production: beside one or more web processes)."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    from cbm.scheduler import build_scheduler, scheduler_id

    ctx.require_current_schema()
    sched = build_scheduler(make_session_factory(ctx.engine), BlockingScheduler)

    def stop(signum: int, frame: Any) -> None:
        # SIGTERM (systemd, docker stop): stop scheduling; running jobs finish first.
        sched.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"cbm scheduler running as {scheduler_id()} (Ctrl+C to stop)")
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        sched.start()


# --- imports and runs -------------------------------------------------------------------
# `cbm import PATH_OR_URL` and `cbm runs [show|revert]`: thin shells over
# cbm.services.imports (the same service as the upload page and the scheduler).

#: Exit code of `cbm import` when rows were rejected (the good rows of the file were
#: stored unless --all-or-nothing). 1 means a run failed; 3 and 4 keep their meaning.
EXIT_REJECTED = 5
#: Payloads at least this large get a progress bar.
PROGRESS_MIN_BYTES = 1 << 20
#: Rejected rows `cbm import` and `cbm runs show` print before pointing at the CSV.
SHOWN_REJECTIONS = 10


class _ImportProgress:
    """A progress bar (on stderr) for each large payload: rows written against the line
    count of a CSV file; for other formats, a line per batch."""

    def __init__(self) -> None:
        self.current: Any = None
        self._bar: Any = None
        self._total: int | None = None

    def payloads(self, payloads: Any) -> Iterator[Any]:
        for payload in payloads:
            self.current = payload
            yield payload

    def __call__(self, event: Any) -> None:
        if event.stage == "start":
            self._close()
            if event.size >= PROGRESS_MIN_BYTES:
                self._total = self._estimate_rows()
                if self._total:
                    self._bar = click.progressbar(
                        length=self._total,
                        label=f"{event.payload} (run {event.run_id})",
                        file=sys.stderr,
                        show_pos=True,
                    )
                    self._bar.__enter__()
        elif event.stage == "batch":
            if self._bar is not None:
                self._bar.update(event.batch_rows)
            elif event.size >= PROGRESS_MIN_BYTES:
                click.echo(f"  {event.payload}: {event.rows:,} rows read", err=True)
        else:
            self._close()

    def _estimate_rows(self) -> int | None:
        payload = self.current
        name = (getattr(payload, "name", "") or "").lower()
        media = (getattr(payload, "media_type", "") or "").lower()
        if not (name.endswith((".csv", ".txt")) or "csv" in media):
            return None
        lines = 0
        try:
            with payload.open() as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    lines += block.count(b"\n")
        except (OSError, ValueError):
            return None
        return max(lines - 1, 1)  # the header; quoted line breaks make it an estimate

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _run_line(run: Any) -> str:
    return (
        f"{run.run_id if hasattr(run, 'run_id') else run.id:>6}  {run.status:<11} "
        f"{_n(run, 'read'):>10} {_n(run, 'inserted'):>10} {_n(run, 'updated'):>10} "
        f"{_n(run, 'unchanged'):>10} {_n(run, 'rejected'):>10}"
    )


def _n(run: Any, name: str) -> str:
    value = getattr(run, name, None)
    if value is None:
        value = getattr(run, f"rows_{name}", 0)
    return f"{value or 0:,}"


_RUN_HEADER = (
    f"{'run':>6}  {'status':<11} {'read':>10} {'inserted':>10} {'updated':>10} "
    f"{'unchanged':>10} {'rejected':>10}"
)


def _print_rejections(session: Session, run_id: int, limit: int = SHOWN_REJECTIONS) -> None:
    from sqlalchemy import func, select

    from cbm.models import ImportRejection

    rows = session.scalars(
        select(ImportRejection)
        .where(ImportRejection.run_id == run_id)
        .order_by(ImportRejection.id)
        .limit(limit)
    ).all()
    total = session.scalar(
        select(func.count()).select_from(ImportRejection).where(ImportRejection.run_id == run_id)
    )
    for r in rows:
        where = f"row {r.row_number}" if r.row_number is not None else "file"
        if r.column:
            where += f", {r.column}"
        # Most reasons quote the value already; show it only when they do not.
        shown = r.value not in (None, "") and str(r.value) not in r.reason
        value = f" {r.value!r}:" if shown else ""
        click.echo(f"    {where}:{value} {r.reason}")
    if total and total > len(rows):
        click.echo(f"    … and {total - len(rows):,} more")
    if total:
        click.echo(
            f"  All rejected rows as CSV: cbm runs show {run_id} --rejections > rejected.csv"
        )


@main.command("import")
@click.argument("location", metavar="PATH_OR_URL")
@click.option(
    "--kind", default=None, help="The kind of record, e.g. activities [default: from the file]."
)
@click.option(
    "--importer",
    type=click.Choice(["csv", "xlsx", "json"], case_sensitive=False),
    default=None,
    help="How to read it [default: from the file name or content type].",
)
@click.option(
    "--all-or-nothing",
    is_flag=True,
    help="Store nothing from a file if any of its rows is rejected (default: per batch).",
)
@click.option(
    "--chunk-size",
    default=50_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows per batch (each batch is one transaction unless --all-or-nothing).",
)
@pass_ctx
def import_cmd(
    ctx: Context,
    location: str,
    kind: str | None,
    importer: str | None,
    all_or_nothing: bool,
    chunk_size: int,
) -> None:
    """Import PATH_OR_URL (a file, a folder or glob, or an http(s) URL): one run per file.

    Rows are validated and upserted by natural key: importing the same file twice changes
    nothing. Exit code 0 when every row was stored, 5 when rows were rejected (listed;
    `cbm runs show RUN --rejections` gives them all as CSV), 1 when a run failed.
    """
    import os

    from cbm import contract
    from cbm.services.imports import run_import
    from importers.locations import open_location

    if kind is not None and kind not in contract.FILES:
        raise click.BadParameter(
            f"'{kind}' is not a kind of record; expected one of: {', '.join(contract.FILES)}",
            param_hint="--kind",
        )
    ctx.require_current_schema()
    factory = make_session_factory(ctx.engine)
    progress = _ImportProgress()
    where = location if "://" in location else os.path.expanduser(location)
    notes: list[str] = []  # what the location skipped or noticed (a link outside, …)
    result = run_import(
        factory,
        progress.payloads(open_location(where, notes=notes)),
        importer=importer.lower() if importer else None,
        kind=kind,
        all_or_nothing=all_or_nothing,
        source_name="cbm import",
        location=where,
        chunk_size=chunk_size,
        progress=progress,
    )
    progress._close()
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if not result.runs:
        click.echo(f"Nothing to import at {location}.")
        return
    click.echo(_RUN_HEADER + "  file")
    for run in result.runs:
        click.echo(f"{_run_line(run)}  {run.name}")
    if len(result.runs) > 1:
        click.echo(
            f"{'total':>6}  {'':<11} {result.read:>10,} {result.inserted:>10,} "
            f"{result.updated:>10,} {result.unchanged:>10,} {result.rejected:>10,}"
        )
    with session_scope(factory) as session:
        for run in result.runs:
            if run.message:
                click.echo(f"run {run.run_id}: {run.message}")
            if run.rejected:
                click.echo(f"run {run.run_id}: {run.rejected:,} rows rejected:")
                _print_rejections(session, run.run_id, limit=SHOWN_REJECTIONS)
    if result.failed:
        sys.exit(EXIT_ERROR)
    if result.rejected:
        sys.exit(EXIT_REJECTED)


@main.group("runs", invoke_without_command=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--status",
    type=click.Choice(["running", "succeeded", "partial", "rejected", "failed", "interrupted"]),
    default=None,
    help="Only runs with this status.",
)
@click.pass_context
def runs(click_ctx: click.Context, limit: int, status: str | None) -> None:
    """List import runs, newest first (`cbm runs show ID`, `cbm runs revert ID`).

    Runs whose process died without finishing are marked interrupted first.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from sqlalchemy import select

    from cbm.models import ImportRun
    from cbm.services.imports import mark_stale_runs

    ctx = click_ctx.ensure_object(Context)
    with ctx.session() as session:
        mark_stale_runs(session)
        stmt = select(ImportRun).order_by(ImportRun.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(ImportRun.status == status)
        found = session.scalars(stmt).all()
        if not found:
            click.echo("No import runs" + (f" with status {status}." if status else " yet."))
            return
        click.echo(f"{_RUN_HEADER}  {'started (UTC)':<16}  kind / location")
        for run in found:
            started = run.started_at.strftime("%Y-%m-%d %H:%M")
            reverted = " [reverted]" if run.reverted_at else ""
            where = run.location or run.source_name or "-"
            click.echo(f"{_run_line(run)}  {started:<16}  {run.kind or '-'}: {where}{reverted}")


@runs.command("show")
@click.argument("run_id", type=int)
@click.option(
    "--rejections",
    is_flag=True,
    help="Print only the rejected rows, as CSV (row,column,value,reason,part).",
)
@pass_ctx
def runs_show(ctx: Context, run_id: int, rejections: bool) -> None:
    """Show one import run: source, times, counts, checksum, outcome, rejected rows."""
    from cbm.models import ImportRun, User
    from cbm.services.imports import rejections_csv

    with ctx.session() as session:
        run = session.get(ImportRun, run_id)
        if run is None:
            fail(f"there is no import run {run_id}")
        if rejections:
            for piece in rejections_csv(session, run_id):
                sys.stdout.write(piece)
            return

        def when(value: Any) -> str:
            return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"

        def who(user_id: int | None) -> str:
            if user_id is None:
                return "the system"
            user = session.get(User, user_id)
            return user.username if user else f"user #{user_id}"

        fields = [
            ("run", str(run.id)),
            ("status", run.status + (" (all or nothing)" if run.all_or_nothing else "")),
            ("source", run.source_name or "-"),
            ("location", run.location or "-"),
            ("kind", run.kind or "-"),
            ("importer", f"{run.importer} {run.importer_version}".strip()),
            ("checksum", run.checksum or "-"),
            ("started", when(run.started_at)),
            ("finished", when(run.finished_at)),
            ("started by", who(run.user_id)),
            (
                "rows",
                f"{run.rows_read:,} read, {run.rows_inserted:,} inserted, "
                f"{run.rows_updated:,} updated, {run.rows_unchanged:,} unchanged, "
                f"{run.rows_rejected:,} rejected",
            ),
        ]
        if run.reverted_at:
            fields.append(("reverted", f"{when(run.reverted_at)} by {who(run.reverted_by_id)}"))
        if run.message:
            fields.append(("message", run.message))
        for label, value in fields:
            click.echo(f"{label + ':':12} {value}")
        if run.rows_rejected:
            click.echo("rejected rows:")
            _print_rejections(session, run_id)


@runs.command("revert")
@click.argument("run_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--user",
    "username",
    default=None,
    help="Record the revert as this administrator's [default: the system].",
)
@pass_ctx
def runs_revert(ctx: Context, run_id: int, yes: bool, username: str | None) -> None:
    """Undo an import run: rows it inserted are removed, values it changed go back.

    Refused, with the records concerned, when later changes touched rows it wrote or when
    removing a row would leave other records pointing at nothing.
    """
    from sqlalchemy import select

    from cbm.models import ImportRun, User
    from cbm.services.imports import RevertRefused, revert_run
    from cbm.services.records import SYSTEM, Actor

    with ctx.session() as session:
        run = session.get(ImportRun, run_id)
        if run is None:
            fail(f"there is no import run {run_id}")
        actor = SYSTEM
        if username:
            account = session.scalars(
                select(User).where(User.username == username.strip().lower())
            ).first()
            if account is None or not account.active or account.role != "admin":
                fail(f"'{username}' is not an active administrator account")
            actor = Actor(user_id=account.id)
        summary = (
            f"run {run.id} ({run.location or run.source_name or 'unknown'}, "
            f"{run.rows_inserted:,} inserted, {run.rows_updated:,} updated)"
        )
        if not yes and not click.confirm(
            f"Revert {summary}? Rows it inserted are deleted and values it changed go back.",
            default=False,
        ):
            fail("cancelled")
        try:
            result = revert_run(session, run_id, actor)
        except (RevertRefused, LookupError) as exc:
            session.rollback()
            fail(str(exc))
    click.echo(
        f"Reverted run {run_id}: {result.total_deleted:,} rows removed, "
        f"{result.total_restored:,} restored."
    )
    for line in result.lines():
        click.echo(f"  {line}")


# --- compliance checks and exports ------------------------------------------------------

_REGIME_HELP = "Regime: VD, OST (or OS), CFE, GEMI, RED. Repeatable."
_STATE_HELP = "State (ISO alpha-3 code or name). Repeatable."


def _parse_day(value: str | None, option: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date (YYYY-MM-DD)", EXIT_USAGE)


@main.command("check")
@click.option("--regime", "regimes", multiple=True, help=_REGIME_HELP)
@click.option("--state", "states", multiple=True, help=_STATE_HELP)
@click.option("--from", "date_from", default=None, help="Only obligations due on or after (UTC).")
@click.option("--to", "date_to", default=None, help="Only obligations due on or before (UTC).")
@click.option(
    "--rule", "rule_ids", multiple=True, help="Only this rule id (e.g. VD-V-3). Repeatable."
)
@click.option("--quiet", "-q", is_flag=True, help="Print the summary line only.")
@pass_ctx
def check(
    ctx: Context,
    regimes: tuple[str, ...],
    states: tuple[str, ...],
    date_from: str | None,
    date_to: str | None,
    rule_ids: tuple[str, ...],
    quiet: bool,
) -> None:
    """Evaluate the compliance rules and update the findings.

    Evaluates the obligations whose deadline or event falls in the window (all by default),
    for the regimes and States given (all by default). New findings are opened, findings
    no longer detected are resolved, and the run is recorded (see the Checks page).
    """
    from cbm.compliance.engine import CheckError, make_scope
    from cbm.services.checks import check_now

    first, last = _parse_day(date_from, "--from"), _parse_day(date_to, "--to")
    with ctx.session() as session:
        try:
            scope = make_scope(
                session,
                regimes=regimes,
                states=states,
                date_from=first,
                date_to=last,
                rule_ids=rule_ids,
            )
        except CheckError as exc:
            fail(str(exc), EXIT_USAGE)

    def progress(message: str) -> None:
        if not quiet:
            click.echo(f"  checking {message}", err=True)

    click.echo(f"Checking {scope.describe()} ...", err=True)
    try:
        result = check_now(
            make_session_factory(ctx.engine), scope, trigger="cli", progress=progress
        )
    except Exception as exc:  # the failed run is recorded; say why and stop
        fail(f"the check failed: {type(exc).__name__}: {exc}")
    lines = result.lines()
    click.echo(lines[0])
    if not quiet:
        for line in lines[1:]:
            click.echo(line)
        for rule_id, info in result.coverage.items():
            skipped = info.get("skipped") or []
            if skipped:
                periods = ", ".join(f"{s['period']} ({s['why']})" for s in skipped[:6])
                more = f" and {len(skipped) - 6} more" if len(skipped) > 6 else ""
                click.echo(f"  {rule_id}: not evaluated for {periods}{more}")


@main.command("trust")
@click.option("--quiet", "-q", is_flag=True, help="Print the summary line only.")
@pass_ctx
def trust(ctx: Context, quiet: bool) -> None:
    """Recompute the trust signals now and summarise the regions.

    Reads the stored facts and the findings of the compliance checks (run `cbm check` first
    on a new instance), stores a new trust run and prints each region's index for the latest
    year covered, its change against the year before and its lowest member. Every check
    recomputes the signals too; see the Method page for how they are made.
    """
    from cbm.trust.compute import recompute
    from cbm.trust.store import region_summary

    ctx.require_current_schema()
    factory = make_session_factory(ctx.engine)
    try:
        outcome = recompute(factory, trigger="cli")
    except Exception as exc:  # the failed run is recorded; say why and stop
        fail(f"the trust signals could not be computed: {type(exc).__name__}: {exc}")
    click.echo(outcome.line())
    if quiet:
        return
    with session_scope(factory) as session:
        lines = region_summary(session, run_id=outcome.run_id)
    if not lines:
        click.echo("No year is covered by the data yet: nothing to summarise.")
        return

    def figure(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "no data"
        return f"{value:+.1f}" if signed else f"{value:.1f}"

    click.echo(f"Index per region in {lines[0].year} (0-100; change against {lines[0].year - 1}):")
    width = max(len(line.name) for line in lines)
    for line in lines:
        lowest = f"lowest {line.worst} {figure(line.worst_score)}" if line.worst else "lowest: none"
        click.echo(
            f"  {line.name:<{width}}  {figure(line.index):>7}  {figure(line.change, True):>7}  "
            f"{lowest}  ({line.with_data}/{line.members} States with data)"
        )


class _ExportGroup(click.Group):
    """``cbm export``: one sub-command per contract file, built when asked for (so that
    ``cbm --help`` does not load the models), besides the commands declared below."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from cbm import contract

        return [*contract.FILES, *sorted(super().list_commands(ctx))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        from cbm import contract

        if cmd_name in contract.FILES:
            return _contract_export_command(cmd_name)
        return None


@main.group("export", cls=_ExportGroup)
def export() -> None:
    """Write exports of every list, with the filters of its page.

    One sub-command per contract file (activities, notifications, inspections,
    observation_flights, quotas, holdings, ceilings, reductions), plus all, runs, audit,
    findings, trust_scores, sources, users, rules, checks, deadlines and jobs. Each
    writes CSV (default), XLSX or JSON to a file (-o) or standard output,
    deterministically: the same data and filters give the same bytes. A filter value that
    cannot be used stops with exit code 2 and names the option.
    """


_FORMAT_OPTION_HELP = "csv (default), xlsx (a workbook, one sheet) or json ({kind, items, next})."


def _export_options(func: Any) -> Any:
    """-o, --format, --manifest and --excel-safe, shared by every export command."""
    options = [
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, writable=True),
            default="-",
            show_default=True,
            help="File to write; - for standard output.",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["csv", "xlsx", "json"]),
            default="csv",
            show_default=True,
            help=_FORMAT_OPTION_HELP,
        ),
        click.option(
            "--manifest",
            is_flag=True,
            help="Also write FILE.manifest.json: kind, filters, generated_at, rows, "
            "data_version, sha256 (needs -o).",
        ),
        click.option(
            "--excel-safe",
            is_flag=True,
            help="Prefix cells a spreadsheet would run as a formula (=, +, -, @) with '. "
            "The default writes the data as stored (and re-imports as the same data).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


#: Query-string argument -> the CLI option that sets it (for messages).
_OPTION_NAMES = {
    "q": "--q",
    "from": "--from",
    "to": "--to",
    "entity_type": "--entity-type",
    "due_from": "--from",
    "due_to": "--to",
    "rule_id": "--rule",
}


def _filter_failure(errors: dict[str, str]) -> NoReturn:
    lines = [
        f"{_OPTION_NAMES.get(name, '--' + name)}: {message}" for name, message in errors.items()
    ]
    fail("\n".join(lines), EXIT_USAGE)


def _write_part(path: str, write: Callable[[IO[bytes]], Any]) -> Any:
    """Write ``path.part`` with ``write(handle)`` and return its result; the caller renames
    it into place. On any failure the partial file is removed; a failed write (a full disk,
    a file size limit) ends the command with a message naming the file, and whatever had
    the final name before is left as it was."""
    import os

    partial = f"{path}.part"
    try:
        with open(partial, "wb") as handle:
            return write(handle)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        if isinstance(exc, OSError):
            fail(f"cannot write {path}: {exc.strerror or exc}; nothing was written there")
        raise


def _run_export(
    ctx: Context,
    kind: str,
    filters: dict[str, Any],
    output: str,
    fmt: str,
    with_manifest: bool,
    excel_safe: bool,
) -> None:
    """Build the export job with the page's filter rules, stamp it, stream it to the file
    (through a temporary name, renamed when complete) or to standard output."""
    import os

    from cbm.services.export_formats import XLSXCellError
    from cbm.services.export_lists import (
        ExportFilterError,
        build_job,
        iter_bytes,
        manifest,
        manifest_json,
        open_snapshot,
        take_stamp,
        write_export,
    )

    if with_manifest and output == "-":
        fail("--manifest needs -o FILE (the manifest is written beside it)", EXIT_USAGE)
    if output == "-" and fmt == "xlsx" and sys.stdout.isatty():
        fail("a workbook is not for a terminal: give -o FILE.xlsx", EXIT_USAGE)
    ctx.require_current_schema()
    given = {k: str(v) for k, v in filters.items() if v not in (None, "")}
    session = open_snapshot(make_session_factory(ctx.engine))
    try:
        try:
            job = build_job(session, kind, given)
        except ExportFilterError as exc:
            _filter_failure(exc.errors)
        stamp = take_stamp(session, job)
        pieces = iter_bytes(session, job, fmt, excel_safe=excel_safe)
        try:
            if output == "-":
                written = write_export(pieces, sys.stdout.buffer)
                sys.stdout.flush()
            else:
                written = _write_part(output, lambda handle: write_export(pieces, handle))
                os.replace(f"{output}.part", output)
        except XLSXCellError as exc:
            fail(str(exc))
    finally:
        session.close()
    if output != "-":
        if with_manifest:
            text = manifest_json(manifest(job, stamp, written, fmt, excel_safe=excel_safe))
            target = f"{output}.manifest.json"
            _write_part(target, lambda handle: handle.write(text.encode("utf-8")))
            os.replace(f"{target}.part", target)
        shown = f" ({job.filter_text})" if job.filter_text else ""
        click.echo(
            f"Wrote {stamp.rows:,} {kind} rows{shown} to {output} "
            f"(data version {stamp.data_version}).",
            err=True,
        )


def _contract_export_command(kind: str) -> click.Command:
    """``cbm export <kind>``: a contract file with the record list's filters."""
    from cbm import contract, vocab
    from cbm.queries.records import LISTS, kind_column, regime_choices

    spec = contract.FILES[kind]
    kcol = kind_column(spec)

    @_export_options
    @click.option(
        "--regime", default=None, help=f"One of {', '.join(regime_choices(spec) or vocab.REGIMES)}."
    )
    @click.option(
        "--state",
        default=None,
        help="A State (code such as DEU or name such as Germany): any State column of the "
        "record, guest States included.",
    )
    @click.option("--region", default=None, help="A region code (the States of that region).")
    @click.option("--year", default=None, help=f"The year (UTC) of the {LISTS[kind].date_label}.")
    @click.option(
        "--kind",
        "record_kind",
        default=None,
        help=f"The {kcol}: {', '.join(spec.field(kcol).choices)}." if kcol else "Not used.",
    )
    @click.option(
        "--q",
        "--search",
        "q",
        default=None,
        help="Free text in any text or key column (the page's search box).",
    )
    @pass_ctx
    def command(
        ctx: Context,
        output: str,
        fmt: str,
        manifest: bool,
        excel_safe: bool,
        record_kind: str | None,
        **filters: str | None,
    ) -> None:
        _run_export(ctx, kind, {**filters, "kind": record_kind}, output, fmt, manifest, excel_safe)

    command.__doc__ = (
        f"Write {spec.title.lower()} in the data contract's format (columns in contract "
        "order, rows in natural-key order: it re-imports), with the filters of "
        f"/records/{kind}/."
    )
    return click.command(kind)(command)


@export.command("findings")
@_export_options
@click.option("--rule", "rule_id", default=None, help="Rule id, e.g. VD-V-3.")
@click.option("--regime", default=None, help="VD, OST, CFE, GEMI or RED.")
@click.option("--severity", default=None, help="breach, late, warning, info or positive.")
@click.option("--status", default=None, help="open, acknowledged, disputed or resolved.")
@click.option("--state", default=None, help="The State that owed the obligation.")
@click.option("--counterpart", default=None, help="The other State (requester, observer ...).")
@click.option("--period", default=None, help="The year the finding belongs to.")
@click.option("--from", "due_from", default=None, help="Due on or after this day (UTC).")
@click.option("--to", "due_to", default=None, help="Due on or before this day (UTC).")
@pass_ctx
def export_findings(
    ctx: Context, output: str, fmt: str, manifest: bool, excel_safe: bool, **filters: str | None
) -> None:
    """Write the findings as CSV, with the same filters as the Findings page (the same
    bytes as its Download CSV; cells are always excel-safe)."""
    _run_export(ctx, "findings", filters, output, fmt, manifest, excel_safe)


@export.command("runs")
@_export_options
@click.option(
    "--status", default=None, help="running, succeeded, partial, rejected, failed, interrupted."
)
@click.option("--source", default=None, help="The source name, exactly (e.g. 'web upload').")
@click.option("--kind", default=None, help="A kind of record the run imported (e.g. activities).")
@pass_ctx
def export_runs(
    ctx: Context, output: str, fmt: str, manifest: bool, excel_safe: bool, **filters: str | None
) -> None:
    """Write the import runs, newest first, with the filters of the Imports page (/runs/)."""
    _run_export(ctx, "runs", filters, output, fmt, manifest, excel_safe)


@export.command("audit")
@_export_options
@click.option("--actor", default=None, help="A username, 'import run N' or 'system'.")
@click.option("--action", default=None, help="create, update, delete, import, revert ...")
@click.option(
    "--entity-type",
    "entity_type",
    default=None,
    help="A contract file, users, reference or sources.",
)
@click.option("--key", default=None, help="Text in the entity key.")
@click.option("--from", "date_from", default=None, help="On or after this day (YYYY-MM-DD, UTC).")
@click.option("--to", "date_to", default=None, help="On or before this day (YYYY-MM-DD, UTC).")
@pass_ctx
def export_audit(
    ctx: Context,
    output: str,
    fmt: str,
    manifest: bool,
    excel_safe: bool,
    date_from: str | None,
    date_to: str | None,
    **filters: str | None,
) -> None:
    """Write the audit log, newest first, with the filters of Admin → Audit log."""
    _run_export(
        ctx,
        "audit",
        {**filters, "from": date_from, "to": date_to},
        output,
        fmt,
        manifest,
        excel_safe,
    )


@export.command("trust_scores")
@_export_options
@click.option("--level", default=None, help="state, region or osce.")
@click.option("--state", default=None, help="A State (code or name): its scores.")
@click.option("--subject", default=None, help="A State or region code, or OSCE.")
@click.option("--year", default=None, help="The year.")
@click.option("--signal", default=None, help="A signal id, or index for the composite.")
@click.option("--run", default=None, help="A trust run number (default: the latest successful).")
@pass_ctx
def export_trust_scores(
    ctx: Context, output: str, fmt: str, manifest: bool, excel_safe: bool, **filters: str | None
) -> None:
    """Write the trust scores of the latest successful trust run (or --run)."""
    _run_export(ctx, "trust_scores", filters, output, fmt, manifest, excel_safe)


@export.command("sources")
@_export_options
@click.option("--status", default=None, help="enabled or disabled.")
@click.option("--importer", default=None, help="auto, csv, xlsx or json.")
@click.option("--kind", default=None, help="The kind of record the source imports.")
@click.option("--q", default=None, help="Text in the source's name.")
@pass_ctx
def export_sources(
    ctx: Context, output: str, fmt: str, manifest: bool, excel_safe: bool, **filters: str | None
) -> None:
    """Write the import sources by name, with the filters of Admin → Sources; passwords and
    tokens in locations and error messages are written ***."""
    _run_export(ctx, "sources", filters, output, fmt, manifest, excel_safe)


@export.command("users")
@_export_options
@click.option("--role", default=None, help="viewer, analyst or admin.")
@click.option("--status", default=None, help="active or disabled.")
@pass_ctx
def export_users(
    ctx: Context, output: str, fmt: str, manifest: bool, excel_safe: bool, **filters: str | None
) -> None:
    """Write the accounts by username, with the filters of Admin → Users (no password
    hashes, no tokens)."""
    _run_export(ctx, "users", filters, output, fmt, manifest, excel_safe)


@export.command("rules")
@_export_options
@click.option("--regime", default=None, help="VD, OST, CFE, GEMI or RED.")
@pass_ctx
def export_rules(
    ctx: Context, output: str, fmt: str, manifest: bool, excel_safe: bool, **filters: str | None
) -> None:
    """Write the rule catalogue by rule id, with its parameters and findings per status
    (the Rules page)."""
    _run_export(ctx, "rules", filters, output, fmt, manifest, excel_safe)


@export.command("checks")
@_export_options
@click.option("--status", default=None, help="running, succeeded or failed.")
@pass_ctx
def export_checks(
    ctx: Context, output: str, fmt: str, manifest: bool, excel_safe: bool, **filters: str | None
) -> None:
    """Write the compliance check runs, newest first (the Checks page)."""
    _run_export(ctx, "checks", filters, output, fmt, manifest, excel_safe)


@export.command("deadlines")
@_export_options
@click.option("--from", "date_from", default=None, help="First day (YYYY-MM-DD; default today).")
@click.option("--days", default=None, help="Days from it (1 to 366; default 60).")
@click.option("--state", default=None, help="A State (code or name).")
@pass_ctx
def export_deadlines(
    ctx: Context,
    output: str,
    fmt: str,
    manifest: bool,
    excel_safe: bool,
    date_from: str | None,
    **filters: str | None,
) -> None:
    """Write what is due in the window, by due time (the Deadlines page)."""
    _run_export(ctx, "deadlines", {**filters, "from": date_from}, output, fmt, manifest, excel_safe)


@export.command("jobs")
@_export_options
@pass_ctx
def export_jobs(ctx: Context, output: str, fmt: str, manifest: bool, excel_safe: bool) -> None:
    """Write the scheduled jobs with their last run and recent failures (Admin → Jobs)."""
    _run_export(ctx, "jobs", {}, output, fmt, manifest, excel_safe)


@export.command("all")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(writable=True),
    help="A folder (csv, json: one file per contract file, named NN-kind in load order) "
    "or a workbook file (xlsx: one sheet per contract file).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx", "json"]),
    default="csv",
    show_default=True,
    help="csv or json (a folder) or xlsx (one workbook).",
)
@click.option(
    "--manifest",
    is_flag=True,
    help="Also write a manifest (OUTPUT/manifest.json or FILE.manifest.json).",
)
@pass_ctx
def export_all(ctx: Context, output: str, fmt: str, manifest: bool) -> None:
    """Write every contract file: a folder that `cbm import FOLDER` loads back, or an XLSX
    workbook that `cbm import FILE.xlsx` loads back."""
    import hashlib
    import json
    import os
    from pathlib import Path

    from cbm.services.export_formats import XLSXCellError, iter_xlsx
    from cbm.services.export_lists import (
        iter_bytes,
        open_snapshot,
        take_stamp,
        workbook_jobs,
        workbook_manifest,
        write_export,
    )
    from cbm.services.export_lists import (
        manifest as one_manifest,
    )
    from cbm.services.exports import export_file_name

    ctx.require_current_schema()
    session = open_snapshot(make_session_factory(ctx.engine))
    try:
        jobs = workbook_jobs(session)
        stamps = [take_stamp(session, job) for job in jobs]
        if fmt == "xlsx":
            try:
                written = _write_part(
                    output, lambda handle: write_export(iter_xlsx(session, jobs), handle)
                )
            except XLSXCellError as exc:
                fail(str(exc))
            os.replace(f"{output}.part", output)
            info = workbook_manifest(jobs, stamps, written, Path(output).name)
            target = f"{output}.manifest.json"
        else:
            folder = Path(output)
            folder.mkdir(parents=True, exist_ok=True)
            files = []
            # Every file is written under a temporary name first and renamed only once all
            # are complete: a failure (a full disk) leaves the folder as it was.
            written_parts: list[Path] = []
            try:
                for job, stamp in zip(jobs, stamps, strict=True):
                    name = export_file_name(job.kind).removesuffix(".csv") + f".{fmt}"
                    written = _write_part(
                        str(folder / name),
                        lambda handle, job=job: write_export(iter_bytes(session, job, fmt), handle),
                    )
                    written_parts.append(folder / name)
                    entry = one_manifest(job, stamp, written, fmt)
                    entry["file_name"] = name
                    files.append(entry)
            except BaseException:
                for path in written_parts:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(f"{path}.part")
                raise
            for path in written_parts:
                os.replace(f"{path}.part", path)
            info = {
                "kind": "all",
                "format": fmt,
                "generated_at": stamps[0].generated_text,
                "rows": sum(stamp.rows for stamp in stamps),
                "files": files,
                "sha256": hashlib.sha256(
                    "".join(f["sha256"] for f in files).encode("ascii")
                ).hexdigest(),
            }
            target = str(folder / "manifest.json")
    finally:
        session.close()
    if manifest:
        text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
        _write_part(target, lambda handle: handle.write(text.encode("utf-8")))
        os.replace(f"{target}.part", target)
    counts = ", ".join(
        f"{job.kind} {stamp.rows:,}" for job, stamp in zip(jobs, stamps, strict=True)
    )
    click.echo(f"Wrote {output}: {counts}.", err=True)


# --- operations: doctor, backup, restore -------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json: bool) -> None:
    """Check this deployment: settings, database, schema, reference data, secret key, file
    permissions, scheduler heartbeat, sources and the latest check run. Prints each check
    as OK, WARNING or PROBLEM with the fix; exits 1 when there is a PROBLEM."""
    import json

    from cbm.doctor import PROBLEM, Finding, has_problem, run_checks

    try:
        settings = load_settings()
    except ConfigError as exc:
        findings = [Finding(PROBLEM, "settings", str(exc), "fix the CBM_* variable named")]
    else:
        findings = run_checks(settings)
    if as_json:
        click.echo(
            json.dumps(
                {"ok": not has_problem(findings), "checks": [f.as_dict() for f in findings]},
                indent=2,
            )
        )
    else:
        colours = {"OK": "green", "WARNING": "yellow", "PROBLEM": "red"}
        for f in findings:
            click.echo(
                f"{click.style(f'{f.status:8}', fg=colours[f.status])} {f.title}: {f.detail}"
            )
            if f.fix and f.status != "OK":
                click.echo(f"{'':8} fix: {f.fix}")
        problems = sum(f.status == PROBLEM for f in findings)
        warnings = sum(f.status == "WARNING" for f in findings)
        click.echo(f"{problems} problem(s), {warnings} warning(s).")
    sys.exit(EXIT_ERROR if has_problem(findings) else 0)


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size:,} bytes"  # pragma: no cover


@main.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="The backup file [default: instance/backups/cbm-YYYYMMDDTHHMMSSZ.sqlite3].",
)
@pass_ctx
def backup(ctx: Context, output: str | None) -> None:
    """Copy the SQLite database to a file, consistently, while cbm keeps running.

    PostgreSQL: use pg_dump (the command prints the exact call)."""
    from pathlib import Path

    from cbm.backup import BackupError, backup_sqlite, default_backup_path, pg_dump_command

    settings = ctx.settings
    if not settings.is_sqlite:
        fail(
            "cbm backup copies the embedded SQLite database only. Back up PostgreSQL with "
            f"pg_dump:\n  {pg_dump_command(settings.database_url)}\n"
            "(the password comes from ~/.pgpass or PGPASSWORD)"
        )
    target = Path(output) if output else default_backup_path(settings.instance_dir)
    try:
        size = backup_sqlite(settings.database_url, target)
    except BackupError as exc:
        fail(str(exc))
    click.echo(
        f"Backed up {safe_url(settings.database_url)} to {target.resolve()} ({_human_size(size)})."
    )


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Really replace the database.")
@pass_ctx
def restore(ctx: Context, file: str, yes: bool) -> None:
    """Replace the SQLite database by FILE (a `cbm backup`). Stop the web and scheduler
    processes first; the current database is kept under instance/backups/ beforehand.

    PostgreSQL: use pg_restore (the command prints the exact call)."""
    from pathlib import Path

    from cbm.backup import (
        BackupError,
        backup_sqlite,
        default_backup_path,
        inspect_backup,
        pg_restore_command,
        restore_sqlite,
        sqlite_file,
    )

    settings = ctx.settings
    if not settings.is_sqlite:
        fail(
            "cbm restore replaces the embedded SQLite database only. Restore PostgreSQL "
            f"with pg_restore:\n  {pg_restore_command(settings.database_url, file)}\n"
            "then run: cbm db upgrade"
        )
    try:
        info = inspect_backup(Path(file))
    except BackupError as exc:
        fail(str(exc))
    database = sqlite_file(settings.database_url)
    if not yes:
        fail(
            f"this replaces the database {database} by {info.path} (revision {info.revision}). "
            "Stop the web and scheduler processes, then run again with --yes.",
            EXIT_USAGE,
        )
    if database.exists():
        keep = default_backup_path(settings.instance_dir)
        keep = keep.with_name(keep.name.replace("cbm-", "cbm-pre-restore-", 1))
        try:
            backup_sqlite(settings.database_url, keep)
            click.echo(f"Kept the current database as {keep}.")
        except BackupError as exc:
            click.secho(
                f"Warning: could not keep the current database: {exc}", fg="yellow", err=True
            )
    try:
        restore_sqlite(settings.database_url, info.path)
    except BackupError as exc:
        fail(str(exc))
    click.echo(f"Restored {database} from {info.path} (revision {info.revision}).")
    if not info.is_current:
        click.echo(
            f"The backup is older than this version's schema ({info.head}). Run: cbm db upgrade"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
