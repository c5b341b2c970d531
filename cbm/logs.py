"""Logging for every process: one handler on stderr, text or JSON, with context fields.

Why one module: ``cbm serve``, ``cbm scheduler``, the other commands and gunicorn's workers
must write the same lines, so an operator can grep (or a log shipper can parse) one format.

Context travels in a :class:`contextvars.ContextVar`: the web app binds ``request_id`` for a
request, :func:`cbm.jobs.run_job` binds ``job`` and ``job_run_id`` for a run, the import
service adds ``import_run_id``. A filter on the handler copies those fields onto every
record, whichever logger (ours, SQLAlchemy's, httpx's) emitted it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

#: The fields a line may carry, in the order the text format prints them.
CONTEXT_FIELDS = ("request_id", "job", "job_run_id", "import_run_id")
FORMATS = ("text", "json")

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "cbm_log_context", default=MappingProxyType({})
)

#: An incoming X-Request-ID is kept only when it is this short and this plain (it lands in
#: logs and a response header: no CR/LF, no quotes, no spaces).
REQUEST_ID_MAX = 128
_SAFE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:@/+=-]{{1,{REQUEST_ID_MAX}}}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def sane_request_id(value: str | None) -> str:
    """``value`` when it is a safe, bounded request id, else a new one."""
    if value and _SAFE_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


def current_context() -> Mapping[str, Any]:
    """The fields bound in this thread or task (read-only)."""
    return _context.get()


def bind(**fields: Any) -> contextvars.Token:
    """Add fields to the current context; undo with :func:`unbind` and the token."""
    merged = dict(_context.get())
    merged.update({k: v for k, v in fields.items() if v is not None})
    return _context.set(merged)


def unbind(token: contextvars.Token) -> None:
    _context.reset(token)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every line logged inside the block carries ``fields`` (nested blocks add to them)."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (absent ones as None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, ctx.get(name))
        if record.name == "gunicorn.access" and getattr(record, "request_id", None) is None:
            # gunicorn logs the access line after the response, outside the app: the id is
            # the response's X-Request-ID header, among the line's atoms.
            atoms = record.args if isinstance(record.args, Mapping) else {}
            rid = atoms.get("{x-request-id}o")
            record.request_id = rid if rid and rid != "-" else None
        return True


def _utc_time(record: logging.LogRecord) -> str:
    stamp = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-01-01T12:00:00.123Z INFO cbm.jobs [job=x job_run_id=3]: message``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{name}={value}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        )
        where = f" [{fields}]" if fields else ""
        line = f"{_utc_time(record)} {record.levelname} {record.name}{where}: {record.getMessage()}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, Z), level, logger, message, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected text or json")
    return JsonFormatter() if fmt == "json" else TextFormatter()


def make_handler(fmt: str, stream: Any = None) -> logging.Handler:
    """A stderr handler with the cbm formatter and the context filter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(ContextFilter())
    handler._cbm_handler = True  # type: ignore[attr-defined]
    return handler


def configure(fmt: str = "text", level: str | int = "INFO", stream: Any = None) -> None:
    """Make the root logger write ``fmt`` lines at ``level`` to stderr (idempotent).

    Handlers installed earlier by a previous call or ``logging.basicConfig`` (plain stream
    handlers) are replaced, so every line goes out once, in one format; any other handler (a
    test runner's capture) is left in place.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_cbm_handler", False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(make_handler(fmt, stream))
    root.setLevel(level)


def apply_to(logger: logging.Logger, fmt: str) -> None:
    """Give an existing logger's handlers (gunicorn's) the cbm format and context filter."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(fmt))
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
