"""Every setting of cbm, declared once.

Web, CLI, scheduler and Alembic all read their configuration through
:func:`load_settings`, so a setting means the same thing everywhere. Settings come
from ``CBM_*`` environment variables. A value that fails to parse is a
:class:`ConfigError` at start, never a silent default.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_int(raw: str) -> int:
    value = int(raw.strip())
    if value < 0:
        raise ValueError("expected a non-negative integer")
    return value


def _parse_positive_int(raw: str) -> int:
    value = int(raw.strip())
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def _parse_seconds(raw: str) -> float:
    value = float(raw.strip())
    if not 0 < value <= 86400:
        raise ValueError("expected a number of seconds above 0 and at most 86400")
    return value


def _parse_port(raw: str) -> int:
    value = _parse_int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("expected a port number between 1 and 65535")
    return value


def _parse_env(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"development", "production", "test"}:
        raise ValueError("expected development, production or test")
    return value


def _parse_log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def _parse_log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"text", "json"}:
        raise ValueError("expected text or json")
    return value


def _parse_job_schedules(raw: str) -> tuple[tuple[str, str], ...]:
    """``check:nightly=0 3 * * *; trust:recompute=every 6h`` → ((job, schedule), ...)."""
    from cbm.jobs import FIXED_JOB_IDS, ScheduleError, normalize_schedule

    pairs: dict[str, str] = {}
    for item in raw.split(";"):
        if not item.strip():
            continue
        job, sep, schedule = item.partition("=")
        job = job.strip()
        if not sep or job not in FIXED_JOB_IDS:
            raise ValueError(
                f"expected JOB=SCHEDULE pairs separated by ';' with JOB one of "
                f"{', '.join(FIXED_JOB_IDS)} (got {item.strip()!r})"
            )
        try:
            pairs[job] = normalize_schedule(schedule)
        except ScheduleError as exc:
            raise ValueError(f"{job}: {exc}") from None
    return tuple(pairs.items())


def _parse_database_url(raw: str) -> str:
    value = raw.strip()
    if not (value.startswith("sqlite") or value.startswith("postgresql")):
        raise ValueError("expected an sqlite:/// or postgresql+psycopg:// URL")
    if value.startswith("postgresql://") or value.startswith("postgres://"):
        # Use psycopg 3, the driver the project installs, whatever the URL says.
        value = "postgresql+psycopg://" + value.split("://", 1)[1]
    return value


def _parse_storage(raw: str) -> str:
    value = raw.strip()
    if not (value == "memory://" or value.startswith(("redis://", "rediss://"))):
        raise ValueError("expected memory:// or a redis:// URL")
    return value


def _parse_str(raw: str) -> str:
    return raw.strip()


@dataclass(frozen=True)
class Setting:
    """One ``CBM_*`` variable: its name, parser, default and help text (for the README)."""

    name: str
    parse: Callable[[str], Any]
    default: str | None
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("CBM_ENV", _parse_env, "development", "`development`, `production` or `test`."),
    Setting(
        "CBM_DATABASE_URL",
        _parse_database_url,
        None,
        "SQLAlchemy URL. Default: SQLite file `instance/cbm.sqlite3`. "
        "Production: `postgresql+psycopg://user@host/db`.",
    ),
    Setting(
        "CBM_SECRET_KEY",
        _parse_str,
        None,
        "Signs sessions. Generated once into `instance/secret_key` for the embedded "
        "default; required when `CBM_ENV=production`.",
    ),
    Setting("CBM_INSTANCE_DIR", _parse_str, None, "Folder for local state. Default: `instance/`."),
    Setting("CBM_HOST", _parse_str, "127.0.0.1", "Address `cbm serve` listens on."),
    Setting("CBM_PORT", _parse_port, "5000", "Port `cbm serve` listens on."),
    Setting(
        "CBM_SCHEDULER",
        _parse_bool,
        "true",
        "Whether `cbm serve` also runs the scheduler in-process (embedded default).",
    ),
    Setting("CBM_LOG_LEVEL", _parse_log_level, "INFO", "Log level."),
    Setting(
        "CBM_JOB_SCHEDULES",
        _parse_job_schedules,
        "",
        "Other schedules for the fixed jobs, e.g. `check:nightly=0 3 * * *; "
        "trust:recompute=every 6h` (UTC).",
    ),
    Setting(
        "CBM_LOG_FORMAT",
        _parse_log_format,
        "text",
        "`text` (one readable line per entry) or `json` (one JSON object per line).",
    ),
    Setting(
        "CBM_PUBLIC_DASHBOARDS",
        _parse_bool,
        "false",
        "Open the dashboards read-only to anonymous visitors (everything else still needs "
        "a login).",
    ),
    Setting(
        "CBM_RATELIMIT_STORAGE",
        _parse_storage,
        "memory://",
        "Where sign-in attempts are counted. `memory://` counts per process; with several "
        "web processes use `redis://127.0.0.1:6379`.",
    ),
    Setting(
        "CBM_TRUSTED_PROXIES",
        _parse_int,
        "0",
        "How many reverse proxies stand in front of the web processes. With 1 or more, the "
        "client address and scheme are taken from X-Forwarded-For/-Proto (set by the proxy); "
        "keep 0 when clients connect directly.",
    ),
    Setting(
        "CBM_SESSION_HOURS",
        _parse_int,
        "12",
        "How long a sign-in lasts, in hours.",
    ),
    Setting(
        "CBM_MAX_UPLOAD_MB",
        _parse_int,
        "50",
        "Largest accepted upload, in MiB.",
    ),
    Setting(
        "CBM_FETCH_TIMEOUT",
        _parse_seconds,
        "60",
        "Seconds a source's HTTP(S) feed may stay silent before an attempt times out.",
    ),
    Setting(
        "CBM_FETCH_RETRIES",
        _parse_int,
        "3",
        "Further attempts at a feed after a timeout, a lost connection, HTTP 5xx or 429.",
    ),
    Setting(
        "CBM_IMPORT_BATCH_ROWS",
        _parse_positive_int,
        "50000",
        "Rows per transaction of an import from a source (scheduled or `cbm source run`).",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The parsed configuration. Immutable: build a new one with :func:`load_settings`."""

    env: str = "development"
    database_url: str = ""
    secret_key: str = ""
    instance_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "instance")
    host: str = "127.0.0.1"
    port: int = 5000
    scheduler: bool = True
    log_level: str = "INFO"
    log_format: str = "text"
    job_schedules: tuple[tuple[str, str], ...] = ()
    max_upload_mb: int = 50
    public_dashboards: bool = False
    ratelimit_storage: str = "memory://"
    session_hours: int = 12
    trusted_proxies: int = 0
    fetch_timeout: float = 60.0
    fetch_retries: int = 3
    import_batch_rows: int = 50_000

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _read(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.name)
        if raw is None or raw.strip() == "":
            if setting.default is None:
                continue
            raw = setting.default
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.name}={raw!r} is not valid: {exc}.") from None
    return values


def read_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting, parsed (its default when unset), without the checks of the whole set:
    for a process that only needs, say, the log format (gunicorn's master)."""
    setting = next((s for s in SETTINGS if s.name == name), None)
    if setting is None:
        raise KeyError(name)
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        raw = setting.default
    if raw is None:
        return None
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not valid: {exc}.") from None


def _persistent_secret(instance_dir: Path) -> str:
    """Generate the secret key once for the embedded default and keep it in the instance."""
    path = instance_dir / "secret_key"
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key
    instance_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Parse the environment (``os.environ`` by default), apply overrides, and check it."""
    env = os.environ if environ is None else environ
    raw = _read(env)
    instance_dir = Path(raw.get("CBM_INSTANCE_DIR") or PROJECT_ROOT / "instance").resolve()
    values: dict[str, Any] = {
        "env": raw["CBM_ENV"],
        "instance_dir": instance_dir,
        "host": raw["CBM_HOST"],
        "port": raw["CBM_PORT"],
        "scheduler": raw["CBM_SCHEDULER"],
        "log_level": raw["CBM_LOG_LEVEL"],
        "log_format": raw["CBM_LOG_FORMAT"],
        "job_schedules": raw["CBM_JOB_SCHEDULES"],
        "max_upload_mb": raw["CBM_MAX_UPLOAD_MB"],
        "public_dashboards": raw["CBM_PUBLIC_DASHBOARDS"],
        "ratelimit_storage": raw["CBM_RATELIMIT_STORAGE"],
        "session_hours": raw["CBM_SESSION_HOURS"],
        "trusted_proxies": raw["CBM_TRUSTED_PROXIES"],
        "fetch_timeout": raw["CBM_FETCH_TIMEOUT"],
        "fetch_retries": raw["CBM_FETCH_RETRIES"],
        "import_batch_rows": raw["CBM_IMPORT_BATCH_ROWS"],
        "database_url": raw.get("CBM_DATABASE_URL") or f"sqlite:///{instance_dir / 'cbm.sqlite3'}",
        "secret_key": raw.get("CBM_SECRET_KEY", ""),
    }
    values.update(overrides)
    if not values["secret_key"]:
        if values["env"] == "production":
            raise ConfigError(
                "CBM_SECRET_KEY is required when CBM_ENV=production "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')."
            )
        values["secret_key"] = _persistent_secret(Path(values["instance_dir"]))
    return Settings(**values)
