"""``/healthz``: is the database reachable and migrated? For load balancers and operators.

Answers 200 only when both hold, 503 otherwise, always in JSON, and never needs a login:
a probe must not depend on the thing it is probing.
"""

from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

import cbm
from cbm.migrate import head_revision, migration_status
from cbm.web.database import get_engine

bp = Blueprint("health", __name__)


@lru_cache(maxsize=1)
def _head() -> str:
    # The migration scripts ship with the code, so the head cannot change while we run.
    return head_revision()


def _short_error(exc: SQLAlchemyError) -> str:
    """The driver's first line, without SQLAlchemy's statement dump (this URL is public)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {first}"[:300]


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Report database reachability and migration state; 200 only when both are fine."""
    head = _head()
    current: str | None = None
    error: str | None = None
    try:
        current = migration_status(get_engine()).current
        reachable = True
    except SQLAlchemyError as exc:
        reachable = False
        error = _short_error(exc)
    is_current = reachable and current == head
    ok = reachable and is_current
    body = {
        "status": "ok" if ok else "error",
        "database": {"reachable": reachable, "error": error},
        "migrations": {"current": current, "head": head, "is_current": is_current},
        "version": cbm.__version__,
    }
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if ok else 503
