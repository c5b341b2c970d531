"""The sign-in rate limit on a shared Redis, and when that Redis is down.

With several web processes the failed sign-ins must be counted in one place (Redis, as
``deploy/cbm.env.example`` sets), or each process grants its own ten guesses. When that
store stops answering, sign-in must keep working and keep being limited (each process
counts in its own memory until Redis is back), never answer 500.

These run once, not per database backend: they are about the limiter's storage. Redis is
the real server beside PostgreSQL (``CBM_TEST_REDIS_URL``, default
``redis://127.0.0.1:6379``); without it they skip, unless ``CBM_REQUIRE_REDIS=1`` (CI).
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy.orm import Session

from cbm.db import make_engine
from cbm.migrate import upgrade
from cbm.services import accounts
from cbm.web import create_app

REDIS_URL = os.environ.get("CBM_TEST_REDIS_URL", "redis://127.0.0.1:6379").strip()
REQUIRE_REDIS = os.environ.get("CBM_REQUIRE_REDIS", "").strip().lower() in {"1", "true", "yes"}
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about counting attempts, not about the hash's cost."""
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "_hasher", hasher)
    monkeypatch.setattr(accounts, "_DUMMY_HASH", hasher.hash("dummy"))


@pytest.fixture()
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        if REQUIRE_REDIS:
            pytest.fail(f"CBM_REQUIRE_REDIS is set but Redis at {REDIS_URL} is unusable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is unusable: {exc}")
    yield client
    client.close()


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _app(tmp_path: Path, storage: str) -> Iterator[Flask]:
    url = f"sqlite:///{tmp_path / 'cbm.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        accounts.create_user(session, "alice", PASSWORD, "viewer")
        session.commit()
    app = create_app(
        {
            "TESTING": True,
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "database_url": url,
                "secret_key": "test-secret",
                "instance_dir": tmp_path,
                "ratelimit_storage": storage,
            },
            "CBM_ENGINE": engine,
        }
    )
    app.config["CBM_LOGIN_RATE_LIMIT"] = "3 per minute"
    try:
        yield app
    finally:
        engine.dispose()


@pytest.fixture()
def redis_app(tmp_path: Path, redis_client) -> Iterator[Flask]:
    yield from _app(tmp_path, REDIS_URL)


@pytest.fixture()
def unreachable_redis_app(tmp_path: Path) -> Iterator[Flask]:
    # Each test uses addresses of its own, so the fallback's counters need no reset.
    yield from _app(tmp_path, f"redis://127.0.0.1:{_closed_port()}")


def _attempts(app: Flask, address: str, passwords: list[str]) -> list[int]:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    page = client.get("/login")
    assert page.status_code == 200, page.status_code
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
    assert token, "no CSRF token on the sign-in form"
    return [
        client.post(
            "/login", data={"username": "alice", "password": p, "csrf_token": token.group(1)}
        ).status_code
        for p in passwords
    ]


def _unique_address() -> str:
    """An address of the documentation range no other test (or test worker) uses."""
    h = uuid.uuid4().hex
    return f"2001:db8:{h[:4]}:{h[4:8]}::{h[8:12]}"


def test_failed_sign_ins_are_counted_in_redis(redis_app: Flask, redis_client) -> None:
    address = _unique_address()
    assert _attempts(redis_app, address, ["wrong-wrong-1", "wrong-wrong-2", "wrong-wrong-3"]) == [
        401,
        401,
        401,
    ]
    # The counter is in Redis, where every web process reads it ...
    keys = [k.decode() for k in redis_client.scan_iter(match=f"*{address}*")]
    assert keys, "no rate-limit counter for this client in Redis"
    # ... so the fourth attempt is refused, even with the right password,
    assert _attempts(redis_app, address, [PASSWORD]) == [429]
    # and once the counter is gone from Redis (not from this process), sign-in works again.
    redis_client.delete(*keys)
    assert _attempts(redis_app, address, [PASSWORD]) == [302]


def test_sign_in_survives_a_redis_that_is_down_and_stays_limited(
    unreachable_redis_app: Flask,
) -> None:
    address = _unique_address()
    codes = _attempts(unreachable_redis_app, address, ["nope-nope-nope"] * 4)
    assert codes == [401, 401, 401, 429], codes
    assert _attempts(unreachable_redis_app, _unique_address(), [PASSWORD]) == [302]
