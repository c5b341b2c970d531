"""Import sources: the service (validation, audit, remove vs disable), `cbm source …` and the
admin pages (sources, jobs, the scheduler banner)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import csrf_token_from
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from cbm.db import utcnow
from cbm.models import AuditEvent, ImportRun, JobRun, SchedulerHeartbeat, Source
from cbm.services import sources as svc
from cbm.services.records import Actor
from cbm.services.sources import SourceError

SignedIn = Callable[..., FlaskClient]


def events(session: Session, name: str) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.entity_type == "sources", AuditEvent.entity_key == name)
            .order_by(AuditEvent.id)
        )
    )


def add_run(session: Session, source: Source) -> ImportRun:
    run = ImportRun(
        importer="csv", source_name=source.name, source_id=source.id, status="succeeded"
    )
    session.add(run)
    session.flush()
    return run


# --- the service ----------------------------------------------------------------------


def test_add_validates_normalises_and_audits(session: Session, make_user) -> None:
    user = make_user("admin", "boss")
    source = svc.add_source(
        session,
        " osce-feed ",
        "https://feeds.example.org/activities.csv",
        importer="CSV",
        kind="activities",
        schedule="every 900s",
        all_or_nothing=True,
        actor=Actor(user_id=user.id),
    )
    assert (source.name, source.importer, source.kind, source.schedule) == (
        "osce-feed",
        "csv",
        "activities",
        "every 15m",
    )
    assert source.enabled and source.all_or_nothing
    [event] = events(session, "osce-feed")
    assert (event.action, event.actor_type, event.user_id) == ("create", "user", user.id)
    assert event.entity_id == source.id
    assert event.changes["location"] == [None, "https://feeds.example.org/activities.csv"]
    assert event.changes["schedule"] == [None, "every 15m"]
    assert "kind" in event.changes and "etag" not in event.changes


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"name": "my feed"}, "name", "letters, digits, '.', '_' or '-'"),
        ({"name": ""}, "name", "1 to 100 characters"),
        ({"importer": "pdf"}, "importer", "'pdf' is not an importer; use one of auto, csv"),
        ({"kind": "tanks"}, "kind", "'tanks' is not a kind of record; use one of activities"),
        ({"schedule": "hourly"}, "schedule", "neither an interval nor a five-field cron"),
        ({"schedule": "every 10 parsecs"}, "schedule", "unknown unit 'parsecs'"),
        ({"schedule": "0 25 * * *"}, "schedule", "not a valid cron expression"),
        ({"location": ""}, "location", "give a location"),
        ({"location": "drop/*.csv"}, "location", "relative path; give an absolute path"),
        ({"location": "ftp://example.org/a.csv"}, "location", "'ftp://' locations"),
        ({"location": "https:///a.csv"}, "location", "has no host name"),
        ({"location": "http://example.org:99999/a"}, "location", "malformed port"),
        ({"location": "/srv/a\n.csv"}, "location", "control characters"),
    ],
)
def test_add_refuses_with_a_clear_message(
    session: Session, changes: dict, field: str, says: str
) -> None:
    values = {"name": "feed", "location": "/srv/cbm/drop/*.csv"} | changes
    name, location = values.pop("name"), values.pop("location")
    with pytest.raises(SourceError) as info:
        svc.add_source(session, name, location, **values)
    assert info.value.field == field
    assert says in str(info.value)
    assert session.scalar(select(Source.id)) is None


def test_names_are_unique_whatever_the_case(session: Session) -> None:
    svc.add_source(session, "Feed", "/srv/a.csv")
    with pytest.raises(SourceError, match="a source named 'Feed' already exists"):
        svc.add_source(session, "feed", "/srv/b.csv")


def test_update_audits_each_changed_field(session: Session) -> None:
    source = svc.add_source(session, "feed", "https://example.org/a.csv", schedule="every 1h")
    source.etag, source.last_checksum = '"v1"', "abc"
    svc.update_source(session, "feed", schedule="every 1h", importer="auto")  # no change
    assert [e.action for e in events(session, "feed")] == ["create"]
    svc.update_source(session, "feed", schedule="0 3 * * *", kind="inspections")
    event = events(session, "feed")[-1]
    assert event.action == "update"
    assert event.changes == {"schedule": ["every 1h", "0 3 * * *"], "kind": [None, "inspections"]}
    assert source.etag == '"v1"'  # a new schedule keeps what was read
    svc.update_source(session, "feed", location="https://example.org/b.csv")
    assert source.etag is None and source.last_checksum is None  # a new location is read anew
    with pytest.raises(SourceError, match="schedule"):
        svc.update_source(session, "feed", schedule="sometimes")
    with pytest.raises(SourceError, match="no source named 'nope'"):
        svc.update_source(session, "nope", schedule="")


def test_enable_and_disable_are_audited(session: Session) -> None:
    svc.add_source(session, "feed", "/srv/a.csv")
    svc.set_enabled(session, "feed", False)
    svc.set_enabled(session, "feed", True)
    changes = [e.changes for e in events(session, "feed")[1:]]
    assert changes == [{"enabled": [True, False]}, {"enabled": [False, True]}]


def test_remove_an_unused_source(session: Session) -> None:
    source = svc.add_source(session, "feed", "/srv/a.csv", schedule="every 1d")
    source_id = source.id
    result = svc.remove_source(session, "feed")
    assert result.removed
    assert session.get(Source, source_id) is None
    delete = events(session, "feed")[-1]
    assert delete.action == "delete" and delete.changes["location"] == ["/srv/a.csv", None]


def test_a_source_with_runs_is_disabled_not_removed(session: Session) -> None:
    source = svc.add_source(session, "feed", "/srv/a.csv")
    add_run(session, source)
    with pytest.raises(SourceError) as info:
        svc.remove_source(session, "feed")
    message = str(info.value)
    assert "has 1 import run" in message and "cannot be removed" in message
    assert "cbm source disable feed" in message and "--disable" in message
    assert source.enabled
    result = svc.remove_source(session, "feed", disable_if_used=True)
    assert not result.removed and result.runs == 1
    assert session.get(Source, source.id) is not None and not source.enabled
    assert events(session, "feed")[-1].changes == {"enabled": [True, False]}


# --- the command ----------------------------------------------------------------------

CBM = [sys.executable, "-m", "cbm.cli"]


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {"CBM_INSTANCE_DIR": str(tmp_path_factory.mktemp("cli-instance"))}
    done = cli(["db", "upgrade", "--no-reference"], env)
    assert done.returncode == 0, done.stderr
    return env


def cli(args: list[str], env: dict[str, str], cwd: Path | None = None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
    full.update(env)
    return subprocess.run(
        [*CBM, *args], env=full, capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_cli_source_lifecycle(instance: dict[str, str], tmp_path: Path) -> None:
    added = cli(
        ["source", "add", "drop", "drop/*.csv", "--schedule", "every 3600s", "--kind", "quotas"],
        instance,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    assert "Added source 'drop'" in added.stdout and "every 1h" in added.stdout
    assert str(tmp_path / "drop" / "*.csv") in added.stdout  # made absolute
    listed = cli(["source", "list"], instance)
    assert re.search(r"drop\s+enabled\s+every 1h\s+auto", listed.stdout), listed.stdout
    refused = cli(["source", "add", "drop2", "/srv/x.csv", "--schedule", "at noon"], instance)
    assert refused.returncode == 1
    assert "Error: schedule 'at noon' is neither an interval" in refused.stderr
    assert "Traceback" not in refused.stderr
    dup = cli(["source", "add", "DROP", "/srv/x.csv"], instance)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    assert cli(["source", "disable", "drop"], instance).returncode == 0
    assert re.search(r"drop\s+disabled", cli(["source", "list"], instance).stdout)
    assert cli(["source", "enable", "drop"], instance).returncode == 0
    updated = cli(["source", "update", "drop", "--schedule", "30 1 * * 0"], instance)
    assert updated.returncode == 0, updated.stderr
    assert "30 1 * * 0" in cli(["source", "list"], instance).stdout
    assert cli(["source", "update", "drop"], instance).returncode == 2
    removed = cli(["source", "remove", "drop"], instance)
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert "No sources" in cli(["source", "list"], instance).stdout
    missing = cli(["source", "run", "drop"], instance)
    assert missing.returncode == 1 and "no source named 'drop'" in missing.stderr


def test_cli_remove_refuses_a_used_source(instance: dict[str, str]) -> None:
    from cbm.db import make_engine, make_session_factory, session_scope

    assert cli(["source", "add", "used", "/srv/used.csv"], instance).returncode == 0
    engine = make_engine(f"sqlite:///{instance['CBM_INSTANCE_DIR']}/cbm.sqlite3")
    with session_scope(make_session_factory(engine)) as s:
        add_run(s, s.scalar(select(Source).where(Source.name == "used")))
    engine.dispose()
    refused = cli(["source", "remove", "used"], instance)
    assert refused.returncode == 1
    assert "cannot be removed" in refused.stderr and "cbm source disable used" in refused.stderr
    disabled = cli(["source", "remove", "used", "--disable"], instance)
    assert disabled.returncode == 0 and "disabled instead" in disabled.stdout
    assert re.search(r"used\s+disabled", cli(["source", "list"], instance).stdout)


# --- the pages ------------------------------------------------------------------------


@pytest.fixture()
def admin(signed_in: SignedIn) -> FlaskClient:
    return signed_in("admin", "boss")


def token(client: FlaskClient, page: str = "/admin/sources") -> str:
    return csrf_token_from(client.get(page).get_data(as_text=True))


def post(client: FlaskClient, url: str, data: dict | None = None):
    return client.post(url, data={**(data or {}), "csrf_token": token(client)})


def text_of(response) -> str:
    return response.get_data(as_text=True)


def test_pages_need_the_admin_role(app, signed_in: SignedIn) -> None:
    views = {e: f for e, f in app.view_functions.items() if e.startswith("sources.")}
    assert len(views) >= 9
    assert all(getattr(v, "cbm_role", None) == "admin" for v in views.values())
    analyst = signed_in("analyst")
    assert analyst.get("/admin/sources").status_code == 403
    assert analyst.get("/admin/jobs").status_code == 403


def test_add_a_source_from_the_page(session: Session, admin: FlaskClient) -> None:
    assert 'data-test="no-sources"' in text_of(admin.get("/admin/sources"))
    bad = post(
        admin,
        "/admin/sources/new",
        {"name": "feed", "location": "https://example.org/a.csv", "schedule": "every day"},
    )
    assert bad.status_code == 422
    html = text_of(bad)
    assert 'data-test="error-schedule"' in html and "is not an interval" in html
    assert 'value="https://example.org/a.csv"' in html  # the form keeps what was typed
    good = post(
        admin,
        "/admin/sources/new",
        {
            "name": "feed",
            "location": "https://example.org/a.csv",
            "schedule": "every 30m",
            "importer": "csv",
            "kind": "activities",
            "enabled": "yes",
        },
    )
    assert good.status_code == 302
    source = session.scalar(select(Source).where(Source.name == "feed"))
    assert good.headers["Location"] == f"/admin/sources/{source.id}"
    assert (source.schedule, source.importer, source.kind, source.enabled) == (
        "every 30m",
        "csv",
        "activities",
        True,
    )
    [event] = events(session, "feed")
    assert event.actor_type == "user"
    listing = text_of(admin.get("/admin/sources"))
    row = re.search(r'<tr data-source="feed">(.*?)</tr>', listing, re.S).group(1)
    assert "every 30m" in row and "enabled" in row and "UTC" in row  # next run shown


def test_edit_enable_disable_and_remove(session: Session, admin: FlaskClient) -> None:
    source = svc.add_source(session, "feed", "/srv/a.csv", schedule="every 1h")
    session.commit()
    url = f"/admin/sources/{source.id}"
    page = admin.get(url)
    assert page.status_code == 200 and 'data-test="next-run"' in text_of(page)
    bad = post(admin, url, {"location": "a.csv", "importer": "auto", "schedule": "every 1h"})
    assert bad.status_code == 422 and 'data-test="error-location"' in text_of(bad)
    saved = post(admin, url, {"location": "/srv/b.csv", "importer": "auto", "schedule": ""})
    assert saved.status_code == 302
    session.expire_all()
    assert (source.location, source.schedule, source.enabled) == ("/srv/b.csv", "", True)
    assert post(admin, f"{url}/disable").status_code == 302
    session.expire_all()
    assert not source.enabled
    assert post(admin, f"{url}/enable").status_code == 302
    session.expire_all()
    assert source.enabled
    assert [e.action for e in events(session, "feed")] == ["create", "update", "update", "update"]
    audit = admin.get("/admin/audit?entity_type=sources&key=feed")  # linked from the page
    assert audit.status_code == 200 and text_of(audit).count('data-cell="entity"') >= 4
    unconfirmed = post(admin, f"{url}/remove")
    assert unconfirmed.status_code == 422 and "Tick the box" in text_of(unconfirmed)
    add_run(session, source)
    session.commit()
    refused = post(admin, f"{url}/remove", {"confirm": "yes"})
    assert refused.status_code == 422 and "cannot be removed" in text_of(refused)
    session.execute(ImportRun.__table__.delete().where(ImportRun.source_id == source.id))
    session.commit()
    removed = post(admin, f"{url}/remove", {"confirm": "yes"})
    assert removed.status_code == 302 and removed.headers["Location"] == "/admin/sources"
    assert admin.get(url).status_code == 404


def test_jobs_page_lists_jobs_runs_and_failures(session: Session, admin: FlaskClient) -> None:
    svc.add_source(session, "feed", "/srv/a.csv", schedule="every 15m")
    svc.add_source(session, "old", "/srv/o.csv", schedule="every 15m", enabled=False)
    now = utcnow()
    session.add_all(
        [
            JobRun(
                job_id="import:feed",
                status="failed",
                started_at=now - dt.timedelta(minutes=20),
                finished_at=now - dt.timedelta(minutes=19),
                message="HTTP 500 from example.org",
                host="h1",
                pid=11,
            ),
            JobRun(
                job_id="import:feed",
                status="succeeded",
                started_at=now - dt.timedelta(minutes=5),
                finished_at=now - dt.timedelta(minutes=5) + dt.timedelta(milliseconds=250),
                message="unchanged",
                host="h2",
                pid=22,
            ),
            JobRun(job_id="import:gone", status="succeeded", message="x", host="h", pid=1),
        ]
    )
    session.commit()
    html = text_of(admin.get("/admin/jobs"))
    rows = dict(re.findall(r'<tr data-job="([^"]+)">(.*?)</tr>', html, re.S))
    assert {"check:nightly", "check:after-import", "trust:recompute", "import:feed"} <= set(rows)
    assert 'data-test="placeholder"' not in rows["trust:recompute"]
    assert 'data-test="placeholder"' not in rows["check:nightly"]
    assert "every night at 02:00 UTC" in rows["check:nightly"]
    assert "02:00 UTC" in re.search(
        r'data-cell="next-run"[^>]*>(.*?)</td>', rows["check:nightly"]
    ).group(1)
    feed = rows["import:feed"]
    assert "succeeded" in feed and "unchanged" in feed and "250 ms" in feed
    assert re.search(r'data-cell="failures">.*?>1<', feed, re.S)
    assert "HTTP 500 from example.org" in feed
    assert "source disabled" in rows["import:old"]
    assert "no longer configured" in rows["import:gone"]
    assert "HTTP 500 from example.org" in html.split("Recent failures", 1)[1]
    history = text_of(admin.get("/admin/jobs/import:feed"))
    assert history.count("<tr data-run=") == 2 and "h1:11" in history and "h2:22" in history
    assert admin.get("/admin/jobs/no:such").status_code == 404


def test_run_a_job_now(session: Session, admin: FlaskClient) -> None:
    response = post(admin, "/admin/jobs/check:nightly/run")
    assert response.status_code == 302
    page = text_of(admin.get(response.headers["Location"]))
    assert "check:nightly succeeded: check run " in page
    run = session.scalar(select(JobRun).where(JobRun.job_id == "check:nightly"))
    assert run.status == "succeeded" and run.message.startswith("check run ")
    assert post(admin, "/admin/jobs/no:such/run").status_code == 404


def test_the_stale_scheduler_banner(session: Session, admin: FlaskClient, signed_in) -> None:
    html = text_of(admin.get("/admin/jobs"))
    assert 'data-test="scheduler-banner"' in html
    assert "The scheduler has never reported" in html
    assert "Start <code>cbm scheduler</code> or <code>cbm serve</code>." in html
    # On every page an admin sees, not only the admin pages...
    assert 'data-test="scheduler-banner"' in text_of(admin.get("/"))
    # ...and never for others.
    assert 'data-test="scheduler-banner"' not in text_of(signed_in("analyst").get("/"))
    stale = utcnow() - dt.timedelta(minutes=10)
    session.add(
        SchedulerHeartbeat(
            scheduler_id="h:1", host="h", pid=1, last_seen_at=stale, started_at=stale
        )
    )
    session.commit()
    html = text_of(admin.get("/admin/sources"))
    assert f"has not reported since {stale.strftime('%Y-%m-%d %H:%M:%S UTC')}" in html
    row = session.scalar(select(SchedulerHeartbeat))
    row.last_seen_at = utcnow()
    session.commit()
    assert 'data-test="scheduler-banner"' not in text_of(admin.get("/admin/jobs"))
    assert "alive" in text_of(admin.get("/admin/jobs"))


# --- importing from a source ----------------------------------------------------------


def _activity_ids(session: Session) -> dict[str, str]:
    from cbm.models import Activity

    session.expire_all()
    return dict(session.execute(select(Activity.activity_id, Activity.name)).all())


def _import_runs(session: Session, source: Source) -> list[ImportRun]:
    session.expire_all()
    return list(
        session.scalars(
            select(ImportRun).where(ImportRun.source_id == source.id).order_by(ImportRun.id)
        )
    )


@pytest.mark.parametrize("etag", [True, False], ids=["etag", "checksum"])
def test_a_feed_is_imported_once_per_change(session_factory, session: Session, etag: bool) -> None:
    from factories import activity
    from feed_server import Feed, csv_bytes

    from cbm.jobs import run_with_follow_up

    first = csv_bytes([activity(1), activity(2)])
    with Feed(first, etag=etag) as feed:
        source = svc.add_source(session, "feed", feed.url, kind="activities", schedule="every 5s")
        session.commit()
        outcome, check = run_with_follow_up(session_factory, "import:feed")
        assert outcome.status == "succeeded", outcome.message
        assert outcome.wrote_rows and "2 inserted" in outcome.message
        assert check is not None and check.job_id == "check:after-import"
        [run] = _import_runs(session, source)
        assert (run.status, run.rows_inserted, run.source_name) == ("succeeded", 2, "feed")
        session.refresh(source)
        assert source.last_checksum == run.checksum and source.last_success_at
        assert (source.etag is not None) is etag
        # Unchanged: no import run, no follow-up check.
        again, check = run_with_follow_up(session_factory, "import:feed")
        assert (again.status, again.message, again.wrote_rows) == ("succeeded", "unchanged", False)
        assert check is None
        assert len(_import_runs(session, source)) == 1
        assert feed.statuses()[-1] == (304 if etag else 200)
        # Changed: one more run.
        changed = activity(1) | {"name": "Exercise renamed"}
        feed.body = csv_bytes([changed, activity(2), activity(3)])
        third, _ = run_with_follow_up(session_factory, "import:feed")
        assert "1 inserted, 1 updated, 1 unchanged" in third.message
        assert run_with_follow_up(session_factory, "import:feed")[0].message == "unchanged"
    runs = _import_runs(session, source)
    assert [r.rows_read for r in runs] == [2, 3]
    assert _activity_ids(session) == {
        "A-1": "Exercise renamed",
        "A-2": "Exercise 2",
        "A-3": "Exercise 3",
    }
    job_runs = session.scalars(
        select(JobRun.message).where(JobRun.job_id == "import:feed").order_by(JobRun.id)
    ).all()
    assert job_runs[1] == job_runs[3] == "unchanged"
    assert job_runs[0].startswith(f"import run {runs[0].id} succeeded")


def test_a_drop_folder_imports_each_file_once(
    session_factory, session: Session, tmp_path: Path
) -> None:
    from factories import activity
    from feed_server import csv_bytes

    from cbm.jobs import run_registered

    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "activities-1.csv").write_bytes(csv_bytes([activity(1)]))
    source = svc.add_source(session, "drop", str(drop))
    session.commit()
    first = run_registered(session_factory, "import:drop")
    assert first.status == "succeeded" and first.wrote_rows
    assert run_registered(session_factory, "import:drop").message == "unchanged"
    (drop / "activities-2.csv").write_bytes(csv_bytes([activity(2)]))
    second = run_registered(session_factory, "import:drop")
    assert "activities-2.csv" in second.message and "activities-1.csv" not in second.message
    assert [r.rows_inserted for r in _import_runs(session, source)] == [1, 1]
    assert set(_activity_ids(session)) == {"A-1", "A-2"}


def test_an_unreadable_location_fails_without_an_import_run(
    session_factory, session: Session, tmp_path: Path
) -> None:
    from cbm.jobs import run_registered

    source = svc.add_source(session, "gone", str(tmp_path / "missing" / "*.csv"))
    session.commit()
    outcome = run_registered(session_factory, "import:gone")
    assert outcome.status == "failed"
    assert outcome.message.startswith(f"cannot read {tmp_path}/missing/*.csv:")
    assert "does not exist" in outcome.message
    session.refresh(source)
    assert source.last_error == outcome.message and source.last_success_at is None
    assert _import_runs(session, source) == []
    run = session.scalar(select(JobRun).where(JobRun.job_id == "import:gone"))
    assert run.status == "failed" and run.message == outcome.message


def test_rejected_rows_fail_the_job_and_the_same_bytes_are_not_retried(
    session_factory, session: Session
) -> None:
    from factories import activity
    from feed_server import Feed, csv_bytes

    from cbm.jobs import run_registered

    bad = csv_bytes([activity(1), activity(2) | {"state": "XXX"}])
    with Feed(bad) as feed:
        source = svc.add_source(session, "strict", feed.url, kind="activities", all_or_nothing=True)
        session.commit()
        outcome = run_registered(session_factory, "import:strict")
        assert outcome.status == "failed" and "rejected" in outcome.message
        assert not outcome.wrote_rows
        session.refresh(source)
        assert source.last_error and "rejected" in source.last_error
        # Not read again, and not a success either: the source keeps its error.
        error = source.last_error
        again = run_registered(session_factory, "import:strict")
        assert again.status == "failed"
        assert again.message.startswith("unchanged since import run ")
        assert "which was rejected" in again.message
        session.refresh(source)
        assert source.last_error == error and source.last_success_at is None
    assert len(_import_runs(session, source)) == 1
    assert _activity_ids(session) == {}


def test_cli_source_run_imports_and_prints_the_outcome(instance: dict[str, str]) -> None:
    from factories import activity
    from feed_server import Feed, csv_bytes

    env = instance
    ref = cli(["reference", "load"], env)
    assert ref.returncode == 0, ref.stderr
    with Feed(csv_bytes([activity(7)])) as feed:
        assert cli(["source", "add", "web", feed.url, "--kind", "activities"], env).returncode == 0
        first = cli(["source", "run", "web"], env)
        assert first.returncode == 0, first.stderr
        assert "import:web done: import run" in first.stdout and "1 inserted" in first.stdout
        assert "check:after-import succeeded: check run " in first.stdout
        second = cli(["source", "run", "web"], env)
        assert second.returncode == 0 and "import:web done: unchanged" in second.stdout
    down = cli(["source", "run", "web"], env)  # the server is gone
    assert down.returncode == 1 and "import:web FAILED: cannot read" in down.stdout
    listed = cli(["source", "list"], env).stdout
    assert "last error: cannot read" in listed


def test_run_now_while_a_scheduler_runs_the_job_starts_nothing(
    admin: FlaskClient, session: Session, engine
) -> None:
    from cbm.db import make_session_factory
    from cbm.jobs import job_lock

    # Another process holds the job's lock (its own connection, or the lock file).
    lock = job_lock(make_session_factory(engine), "trust:recompute")
    assert lock.acquire()
    try:
        response = post(admin, "/admin/jobs/trust:recompute/run")
        page = text_of(admin.get(response.headers["Location"]))
    finally:
        lock.release()
    assert "trust:recompute is running elsewhere (a scheduler) right now" in page
    session.expire_all()
    assert session.scalar(select(JobRun.id).where(JobRun.job_id == "trust:recompute")) is None
    # Released: it runs.
    post(admin, "/admin/jobs/trust:recompute/run")
    message = session.scalar(select(JobRun.message).where(JobRun.job_id == "trust:recompute"))
    assert message is not None and message.startswith("trust run ")
