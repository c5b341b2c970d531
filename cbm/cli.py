"""The `cbm` command: a thin shell over the services, one sub-command per task.

Exit codes: 0 success; 1 an error (message on stderr); 2 wrong usage; 3 the database is
unreachable; 4 the database is not migrated to the current schema.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

import cbm
from cbm.config import ConfigError, Settings, load_settings
from cbm.db import ensure_sqlite_dir, make_engine, make_session_factory, session_scope

EXIT_ERROR = 1
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
            logging.getLogger().setLevel(self._settings.log_level)
            if self._settings.log_level != "DEBUG":
                # Keep the terminal for what the user asked: migrations and the scheduler's
                # routine runs are logged at WARNING and above only.
                for noisy in ("alembic", "apscheduler.executors", "apscheduler.scheduler"):
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
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


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
@pass_ctx
def demo_load(ctx: Context, seed: int, if_empty: bool) -> None:
    """Load a deterministic, realistic history for 2012-2025 (idempotent)."""
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


# --- accounts ---------------------------------------------------------------------------


@main.group()
def user() -> None:
    """Manage accounts. Roles: viewer < analyst < admin."""


def _account_call(ctx: Context, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from cbm.services.accounts import AccountError

    try:
        with ctx.session() as session:
            return fn(session, *args, **kwargs)
    except AccountError as exc:
        fail(str(exc))


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

    from cbm.scheduler import build_scheduler

    ctx.require_current_schema()
    sched = build_scheduler(make_session_factory(ctx.engine), BlockingScheduler)
    click.echo("cbm scheduler running (Ctrl+C to stop)")
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        sched.start()


if __name__ == "__main__":  # pragma: no cover
    main()
