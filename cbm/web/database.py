"""The web app's database plumbing: one engine, one session per request, one commit point.

Views and services call :func:`db_session` and never commit. The request boundary decides,
in one place (as Indico's ``rh.py`` does): a response with a success or redirect status
(< 400) commits, anything else rolls back. The commit runs in ``after_request``, *before*
the response leaves, so a failed commit becomes an error page instead of a 200 for data
that was never stored; ``teardown_request`` then rolls back what is left and closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask, Response, current_app, g, has_request_context, request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cbm.config import Settings
from cbm.db import SQLITE_IMMEDIATE, make_engine, make_session_factory

_G_SESSION = "_cbm_db_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class WebState:
    """What the app holds beyond Flask's config: the engine, the session factory, the nav."""

    engine: Engine
    session_factory: sessionmaker[Session]
    # Sessions of requests that may write (POST, PUT, PATCH, DELETE). On SQLite they take
    # the write lock when they begin, so concurrent writers queue instead of failing.
    writer_factory: sessionmaker[Session] | None = None
    nav: list[tuple[str, str, str]] = field(default_factory=list)


def web_state(app: Flask | None = None) -> WebState:
    """The :class:`WebState` of ``app`` (default: the current app)."""
    return (app or current_app).extensions["cbm"]


def get_engine() -> Engine:
    """The current app's engine (for health checks and raw connections, not for writes)."""
    return web_state().engine


def db_session() -> Session:
    """The request's session, created on first use so pages that need no database open none."""
    session: Session | None = g.get(_G_SESSION)
    if session is None:
        state = web_state()
        writes = (
            state.writer_factory is not None
            and has_request_context()
            and request.method not in SAFE_METHODS
        )
        session = (state.writer_factory if writes else state.session_factory)()
        setattr(g, _G_SESSION, session)
    return session


def init_db(app: Flask, settings: Settings, config: dict) -> None:
    """Attach an engine and session factory (given ones win, so tests can share a connection)."""
    engine: Engine = config.get("CBM_ENGINE") or make_engine(settings.database_url)
    factory: sessionmaker[Session] = config.get("CBM_SESSION_FACTORY") or make_session_factory(
        engine
    )
    writer = None
    if engine.dialect.name == "sqlite" and "CBM_SESSION_FACTORY" not in config:
        writer = make_session_factory(engine.execution_options(**{SQLITE_IMMEDIATE: True}))
    app.extensions["cbm"] = WebState(engine=engine, session_factory=factory, writer_factory=writer)
    # Registered first among the app's after_request hooks, so it runs last (Flask runs them
    # in reverse): every other hook has finished before the transaction is committed.
    app.after_request(_commit_or_rollback)
    app.teardown_request(_close_session)


def _commit_or_rollback(response: Response) -> Response:
    session: Session | None = g.get(_G_SESSION)
    if session is None:
        return response
    if response.status_code < 400:
        session.commit()
    else:
        _rollback_quietly(session)
    return response


def _close_session(exc: BaseException | None) -> None:
    session: Session | None = g.pop(_G_SESSION, None)
    if session is None:
        return
    try:
        if exc is not None:
            _rollback_quietly(session)
    finally:
        session.close()


def _rollback_quietly(session: Session) -> None:
    """Roll back even when the connection is gone; the original error is the one to report."""
    try:
        session.rollback()
    except Exception:  # pragma: no cover - depends on how the connection died
        current_app.logger.warning("rollback failed", exc_info=True)
