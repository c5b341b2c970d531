"""Shared fixtures: a migrated database on each backend, a rolled-back session per test, the app.

The schema is built by ``alembic upgrade head`` (never ``create_all``), once per backend and
test session. Each test runs inside a transaction that is rolled back at the end. SQLite
always runs; PostgreSQL runs when ``CBM_TEST_DATABASE_URL`` names a server, on a throwaway
database created for the session. With ``CBM_REQUIRE_POSTGRES=1`` (CI), a missing server is
an error, not a skip.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from cbm.db import make_engine
from cbm.migrate import upgrade

PG_URL = os.environ.get("CBM_TEST_DATABASE_URL", "").strip()
REQUIRE_PG = os.environ.get("CBM_REQUIRE_POSTGRES", "").strip().lower() in {"1", "true", "yes"}


def _backends() -> list:
    params = [pytest.param("sqlite", id="sqlite")]
    params.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres))
    return params


def _pg_admin_url() -> str:
    url = PG_URL
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def pg_unavailable(reason: str) -> None:
    """No usable PostgreSQL: a failure when CBM_REQUIRE_POSTGRES is set (CI), else a skip."""
    if REQUIRE_PG:
        pytest.fail(f"CBM_REQUIRE_POSTGRES is set but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def throwaway_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty database ``<prefix>_<uuid>`` on the server of CBM_TEST_DATABASE_URL, its
    URL yielded and the database dropped afterwards (its sessions terminated first).

    Without a URL, or with a server that refuses us, the test skips; under
    ``CBM_REQUIRE_POSTGRES=1`` (CI) it fails instead, so a missing server never passes silently.
    """
    if not PG_URL:
        pg_unavailable("PostgreSQL tests need CBM_TEST_DATABASE_URL")
    admin = make_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server is down or refuses us
        admin.dispose()
        pg_unavailable(f"PostgreSQL at {PG_URL} is unusable: {exc}")
    url = make_url(_pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session (dropped at the end)."""
    with throwaway_pg_database("cbm_test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "cbm-test.sqlite3"
    return f"sqlite:///{path}"


_migrated: dict[str, Engine] = {}


def _migrated_engine(url: str) -> Engine:
    """Build the schema once per URL with Alembic, then load the reference data."""
    if url not in _migrated:
        engine = make_engine(url)
        upgrade(engine)
        from cbm.reference.loader import load_reference

        with Session(engine) as session:
            load_reference(session)
            session.commit()
        _migrated[url] = engine
    return _migrated[url]


@pytest.fixture(scope="session", params=_backends())
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def db_url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_server_url")


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    engine = _migrated_engine(db_url)
    yield engine


@pytest.fixture()
def connection(engine: Engine) -> Iterator:
    """A connection inside an outer transaction that is rolled back after the test."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        finally:
            trans.rollback()


@pytest.fixture()
def session_factory(connection) -> sessionmaker[Session]:
    """Sessions whose commits become SAVEPOINT releases inside the test's transaction."""
    return sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture()
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture()
def app(session_factory: sessionmaker[Session], engine: Engine, db_url: str, tmp_path: Path):
    from cbm.web import create_app

    app = create_app(
        {
            "TESTING": True,
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "database_url": db_url,
                "secret_key": "test-secret",
                "instance_dir": tmp_path,
            },
            "CBM_ENGINE": engine,
            "CBM_SESSION_FACTORY": session_factory,
        }
    )
    return app


@pytest.fixture()
def client(app):
    return app.test_client()


# --- accounts -----------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


def csrf_token_from(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD):
    """Sign in through the real form (CSRF token included); returns the response."""
    page = client.get("/login")
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


@pytest.fixture()
def make_user(session: Session):
    """Create an account through the service: ``make_user("analyst")`` → the User."""
    from cbm.services.accounts import create_user

    def make(role: str = "viewer", username: str | None = None, password: str = PASSWORD):
        user = create_user(session, username or f"{role}-user", password, role)
        session.commit()
        return user

    return make


@pytest.fixture()
def signed_in(app, make_user):
    """``signed_in("analyst")`` → a new test client signed in with an account of that role."""

    def sign_in(role: str = "viewer", username: str | None = None):
        user = make_user(role, username or f"{role}-{uuid.uuid4().hex[:6]}")
        client = app.test_client()
        response = login(client, user.username)
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return sign_in
