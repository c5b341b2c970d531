"""Concurrent writers on the SQLite default queue for the write lock instead of failing.

A deferred SQLite transaction that reads (the key check, the audit) and then writes fails
at once with "database is locked", without waiting for the busy timeout, when another
connection committed in between; the web app answered those with 503. The load benchmark
found it with two clients. Here: threads create, patch and delete records through the
API of an app on a real SQLite file (the engine and sessions the app makes itself), and
every request must succeed.
"""

from __future__ import annotations

import threading
from pathlib import Path

from api_support import make_api_users
from sqlalchemy.orm import Session

from cbm.db import make_engine
from cbm.migrate import upgrade
from cbm.reference.loader import load_reference

THREADS = 6
ROUNDS = 8


def test_concurrent_api_writers_on_sqlite_all_succeed(tmp_path: Path) -> None:
    from cbm.web import create_app

    url = f"sqlite:///{tmp_path / 'cbm.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        load_reference(session)
        users = make_api_users(session)
    engine.dispose()
    app = create_app(
        {
            "TESTING": True,
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "database_url": url,
                "secret_key": "test-secret",
                "instance_dir": tmp_path,
            },
        }
    )
    headers = users.headers("analyst")
    statuses: list[tuple[str, int, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def writer(n: int) -> None:
        client = app.test_client()
        start.wait()
        for i in range(ROUNDS):
            key = f"W-{n}-{i},notification"
            row = {
                "activity_id": f"W-{n}-{i}",
                "source": "notification",
                "state": "DEU",
                "kind": "exercise",
                "start_date": "2025-05-01",
                "troops": 500 + i,
            }
            answers = [
                ("create", client.post("/api/v1/activities", json=row, headers=headers), 201),
                (
                    "patch",
                    client.patch(f"/api/v1/activities/{key}", json={"troops": 9}, headers=headers),
                    200,
                ),
                ("delete", client.delete(f"/api/v1/activities/{key}", headers=headers), 204),
            ]
            with lock:
                statuses.extend(
                    (what, r.status_code, r.get_data(as_text=True)[:200])
                    for what, r, expected in answers
                    if r.status_code != expected
                )

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    app.extensions["cbm"].engine.dispose()
    assert statuses == [], f"{len(statuses)} failed writes, e.g. {statuses[:3]}"


def test_a_token_read_on_a_stale_sqlite_snapshot_still_authenticates(tmp_path: Path) -> None:
    """The once-a-minute ``last_used_at`` stamp must not fail a read: a reader whose
    snapshot predates another connection's commit cannot write, so the stamp is skipped."""
    import datetime as dt

    from sqlalchemy import select, text

    from cbm.models import ApiToken
    from cbm.services.tokens import authenticate_token

    url = f"sqlite:///{tmp_path / 'cbm.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        users = make_api_users(session)
        session.execute(text("UPDATE api_tokens SET last_used_at = NULL"))
        session.commit()
    secret = users.tokens["viewer"]
    with Session(engine) as reader, Session(engine) as writer:
        reader.scalars(select(ApiToken)).all()  # the reader's snapshot begins here
        writer.execute(
            text("UPDATE api_tokens SET name = 'renamed' WHERE scope = 'admin'")
        )  # another connection commits in between
        writer.commit()
        identity = authenticate_token(reader, secret)
        assert identity is not None and identity.username == "api-viewer"
        reader.commit()
    with Session(engine) as fresh:
        identity = authenticate_token(fresh, secret)  # now it can write: stamped
        fresh.commit()
        stamped = fresh.scalar(
            select(ApiToken.last_used_at).where(ApiToken.id == identity.token_id)
        )
        assert stamped is not None and stamped > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    engine.dispose()


def _signed_in_app(tmp_path: Path):
    """An app on a real SQLite file with its own engine and sessions, and an admin client."""
    import re

    from cbm.services.accounts import create_user
    from cbm.web import create_app

    url = f"sqlite:///{tmp_path / 'cbm.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        load_reference(session)
        create_user(session, "boss", "correct horse battery staple", "admin")
        session.commit()
    engine.dispose()
    app = create_app(
        {
            "TESTING": True,
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "database_url": url,
                "secret_key": "test-secret",
                "instance_dir": tmp_path,
            },
        }
    )
    client = app.test_client()

    def csrf(path: str) -> str:
        page = client.get(path).get_data(as_text=True)
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)

    form = {"username": "boss", "password": "correct horse battery staple"}
    assert client.post("/login", data={**form, "csrf_token": csrf("/login")}).status_code == 302
    return app, client, csrf


def test_routes_that_run_jobs_in_the_request_do_not_wait_for_their_own_lock(
    tmp_path: Path,
) -> None:
    """A check or job run from the web writes on sessions of its own: the request's writer
    session (BEGIN IMMEDIATE on SQLite) must not hold the write lock meanwhile, or the job
    waits for the busy timeout and fails."""
    import time

    app, client, csrf = _signed_in_app(tmp_path)
    for path, form_page in (
        ("/checks/run", "/checks"),
        ("/admin/jobs/trust:recompute/run", "/admin/jobs"),
    ):
        started = time.monotonic()
        response = client.post(path, data={"csrf_token": csrf(form_page)})
        took = time.monotonic() - started
        assert response.status_code in (302, 303), (path, response.get_data(as_text=True)[:300])
        assert took < 10, f"{path} took {took:.0f} s (waited for its own lock)"
    with Session(make_engine(app.config["CBM_SETTINGS"].database_url)) as session:
        from sqlalchemy import select

        from cbm.models import CheckRun, JobRun

        assert [r.status for r in session.scalars(select(CheckRun))] != []
        assert all(r.status != "failed" for r in session.scalars(select(CheckRun)))
        assert all(r.status != "failed" for r in session.scalars(select(JobRun)))
    app.extensions["cbm"].engine.dispose()
