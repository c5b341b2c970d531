"""The import service: runs, counts, idempotence, batches, all-or-nothing, kills, reverts.

Payloads are real CSV files read by the project's CSV importer, written through
``run_import`` with the ``session_factory`` fixture (its commits are SAVEPOINT releases in
the test's transaction, so per-batch commits behave as on a real database and are rolled
back afterwards).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import count, make, rows
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from cbm import contract
from cbm.models import Activity, AuditEvent, ImportRejection, ImportRun, Notification
from cbm.queries.records import record_history
from cbm.services import imports, run_liveness
from cbm.services.imports import (
    INTERRUPTED,
    RevertRefused,
    mark_stale_runs,
    rejections_csv,
    revert_run,
    run_import,
)
from cbm.services.records import Actor, delete_record, upsert_records
from importers.base import Batch, Importer, ImportFormatError, Payload

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def write_csv(path: Path, kind: str, data: list[dict[str, Any]]) -> Path:
    columns = list(contract.get(kind).columns)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in data:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def payload(path: Path) -> Payload:
    return Payload(name=path.name, path=path)


def do_import(factory: sessionmaker[Session], path: Path, kind: str = "activities", **kw: Any):
    kw.setdefault("importer", "csv")
    result = run_import(factory, [payload(path)], kind=kind, **kw)
    assert len(result.runs) == 1
    return result.runs[0]


def get_run(factory: sessionmaker[Session], run_id: int) -> ImportRun:
    with factory() as s:
        run = s.get(ImportRun, run_id)
        assert run is not None
        s.expunge(run)
        return run


def activity_row(session: Session, activity_id: str, source: str = "notification") -> Activity:
    return session.scalars(
        select(Activity).where(Activity.activity_id == activity_id, Activity.source == source)
    ).one()


@pytest.fixture()
def factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    return session_factory


# --------------------------------------------------------------------------------------
# counts, provenance, idempotence
# --------------------------------------------------------------------------------------


def test_a_run_records_source_times_counts_checksum_and_version(factory, tmp_path) -> None:
    data = [*rows("activities", 3), make("activities", 4, start_date="2024-02-30")]
    path = write_csv(tmp_path / "activities.csv", "activities", data)
    out = do_import(factory, path, source_name="test feed", location=str(path))
    assert out.status == "partial"
    assert (out.read, out.inserted, out.updated, out.unchanged, out.rejected) == (4, 3, 0, 0, 1)

    run = get_run(factory, out.run_id)
    assert run.status == "partial"
    assert run.source_name == "test feed" and run.location == str(path)
    assert run.importer == "csv" and run.importer_version
    assert run.kind == "activities"
    assert run.checksum == payload(path).checksum and len(run.checksum) == 64
    assert run.started_at <= run.finished_at and run.heartbeat_at is not None
    assert (run.rows_read, run.rows_inserted, run.rows_rejected) == (4, 3, 1)

    with factory() as s:
        stored = activity_row(s, "A-1")
        assert stored.created_run_id == run.id and stored.set_by_run_id == run.id
        assert stored.set_by_user_id is None
        rejection = s.scalars(select(ImportRejection).where(ImportRejection.run_id == run.id)).one()
        assert rejection.row_number == 5  # header is line 1: the 4th row is line 5
        assert rejection.column == "start_date" and rejection.value == "2024-02-30"
        assert "calendar date" in rejection.reason


def test_importing_the_same_file_twice_changes_nothing(factory, tmp_path) -> None:
    path = write_csv(tmp_path / "activities.csv", "activities", rows("activities", 5))
    first = do_import(factory, path)
    assert (first.inserted, first.status) == (5, "succeeded")
    with factory() as s:
        events_before = s.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    second = do_import(factory, path)
    assert (second.read, second.inserted, second.updated, second.unchanged) == (5, 0, 0, 5)
    assert second.status == "succeeded" and second.checksum == first.checksum
    with factory() as s:
        # The rows still name the first run: an unchanged row is not written at all.
        assert activity_row(s, "A-3").set_by_run_id == first.run_id
        later = s.scalars(select(AuditEvent).where(AuditEvent.id > (events_before or 0))).all()
        assert [e.action for e in later if e.action != "import"] == []


def test_a_changed_row_updates_its_record_and_its_history_shows_the_run(factory, tmp_path) -> None:
    data = rows("activities", 3)
    path = write_csv(tmp_path / "a.csv", "activities", data)
    first = do_import(factory, path)
    data[1] = {**data[1], "troops": "99999", "remarks": "revised"}
    second = do_import(factory, write_csv(tmp_path / "b.csv", "activities", data))
    assert (second.inserted, second.updated, second.unchanged) == (0, 1, 2)
    with factory() as s:
        row = activity_row(s, "A-2")
        assert row.troops == 99999 and row.set_by_run_id == second.run_id
        assert row.created_run_id == first.run_id
        history = record_history(
            s, contract.get("activities"), {"activity_id": "A-2", "source": "notification"}
        )
    actions = [(e.action, e.run_id) for e in history.entries]
    assert actions == [("update", second.run_id), ("create", first.run_id)]
    changes = {c.field: (c.before, c.after) for c in history.entries[0].changes}
    assert changes["troops"] == (13000, 99999)


def test_duplicates_within_a_file_are_reported_in_one_batch_and_across_batches(
    factory, tmp_path
) -> None:
    data = [
        make("activities", 1),
        make("activities", 2),
        make("activities", 1, troops="5"),  # same key as line 2, same batch
        make("activities", 3),
        make("activities", 2, troops="7"),  # same key as line 3, in a later batch
        make("activities", 4),
        make("activities", 4, state="Germany"),  # same key; aliases don't hide it
    ]
    path = write_csv(tmp_path / "dups.csv", "activities", data)
    out = do_import(factory, path, chunk_size=3)
    assert out.status == "partial"
    with factory() as s:
        rejected = s.scalars(
            select(ImportRejection)
            .where(ImportRejection.run_id == out.run_id)
            .order_by(ImportRejection.row_number)
        ).all()
        by_row = {r.row_number: r for r in rejected}
        # Within a batch both rows of the pair are refused (the file is ambiguous).
        assert {2, 4} <= set(by_row)
        assert "also in row(s)" in by_row[2].reason
        # Across batches the later row is refused, naming the first one.
        assert by_row[6].reason.startswith("duplicate key (activity_id=A-2, source=notification)")
        assert by_row[6].reason.endswith("also in row 3 of this file")
        assert by_row[6].value == "A-2" and by_row[6].column == "activity_id"
        assert "also in row 7" in by_row[8].reason
        assert activity_row(s, "A-2").troops == 13000  # not overwritten by the duplicate
        assert count(s, "activities") == 3  # A-4 (A-1 refused twice)
    assert out.rejected == 4 and out.inserted == 3


# --------------------------------------------------------------------------------------
# failures, all-or-nothing, kills
# --------------------------------------------------------------------------------------


def test_a_failure_in_batch_two_keeps_batch_one_and_marks_the_run_failed(
    factory, tmp_path, monkeypatch
) -> None:
    path = write_csv(tmp_path / "a.csv", "activities", rows("activities", 6))
    real = imports.upsert_records
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "upsert_records", flaky)
    out = do_import(factory, path, chunk_size=3)
    assert out.status == "failed"
    assert "unexpected error: RuntimeError: disk on fire" in out.message
    assert "the 3 rows of the batches before it were stored" in out.message
    run = get_run(factory, out.run_id)
    assert run.status == "failed" and run.message == out.message
    assert (run.rows_read, run.rows_inserted) == (3, 3) and run.finished_at is not None
    with factory() as s:
        assert count(s, "activities") == 3

    monkeypatch.setattr(imports, "upsert_records", real)
    again = do_import(factory, path, chunk_size=3)
    assert (again.status, again.inserted, again.unchanged) == ("succeeded", 3, 3)


def test_an_unreadable_payload_fails_the_run_with_the_readers_message(factory, tmp_path) -> None:
    class Broken(Importer):
        name = "broken"
        version = "1"

        def batches(self, payload, *, kind=None, chunk_size=50_000) -> Iterator[Batch]:
            raise ImportFormatError(f"{payload.name}: line 3 has 4 fields, expected 16")
            yield  # pragma: no cover

    path = write_csv(tmp_path / "a.csv", "activities", rows("activities", 1))
    out = do_import(factory, path, importer=Broken())
    assert out.status == "failed"
    assert out.message.startswith("a.csv: line 3 has 4 fields, expected 16; nothing was stored")
    assert get_run(factory, out.run_id).importer == "broken"


def test_all_or_nothing_writes_nothing_when_one_row_is_rejected(factory, tmp_path) -> None:
    data = rows("activities", 5)
    data[3] = {**data[3], "kind": "parade"}
    path = write_csv(tmp_path / "a.csv", "activities", data)
    out = do_import(factory, path, all_or_nothing=True, chunk_size=2)
    assert out.status == "rejected"
    assert (out.read, out.inserted, out.updated, out.unchanged, out.rejected) == (5, 0, 0, 0, 1)
    assert "nothing was stored" in out.message
    run = get_run(factory, out.run_id)
    assert run.status == "rejected" and run.all_or_nothing
    assert (run.rows_read, run.rows_inserted, run.rows_rejected) == (5, 0, 1)
    with factory() as s:
        assert count(s, "activities") == 0
        assert s.scalars(select(AuditEvent).where(AuditEvent.run_id == run.id)).all() == []
        (rejection,) = s.scalars(
            select(ImportRejection).where(ImportRejection.run_id == run.id)
        ).all()
        assert (rejection.row_number, rejection.column, rejection.value) == (5, "kind", "parade")

    data[3] = {**data[3], "kind": "exercise"}
    good = do_import(
        factory, write_csv(tmp_path / "b.csv", "activities", data), all_or_nothing=True
    )
    assert (good.status, good.inserted) == ("succeeded", 5)


def test_a_killed_run_is_marked_interrupted_and_a_rerun_completes_it(
    factory, tmp_path, monkeypatch
) -> None:
    path = write_csv(tmp_path / "a.csv", "activities", rows("activities", 6))
    real = imports._upsert_batch
    calls = {"n": 0}

    def killed(*args: Any, **kwargs: Any):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("killed")  # nothing below gets to record anything
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "_upsert_batch", killed)
    with pytest.raises(SystemExit):
        do_import(factory, path, chunk_size=3)
    monkeypatch.setattr(imports, "_upsert_batch", real)
    with factory() as s:
        run = s.scalars(select(ImportRun).order_by(ImportRun.id.desc()).limit(1)).one()
        assert run.status == "running" and run.rows_inserted == 3
        run_id = run.id
        alive = run_liveness.hold(factory, run_id)  # as if its process were still running
        try:
            assert mark_stale_runs(s) == 0  # its heartbeat is fresh, its lock is held
            old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            s.execute(update(ImportRun).where(ImportRun.id == run_id).values(heartbeat_at=old))
            assert mark_stale_runs(s) == 1  # no sign of life for an hour: hung or gone
            s.commit()
        finally:
            run_liveness.release(alive)
    run = get_run(factory, run_id)
    assert run.status == INTERRUPTED and run.finished_at is not None
    assert "the process was stopped or killed" in run.message
    assert "3 rows of its completed batches were stored" in run.message

    rerun = do_import(factory, path, chunk_size=3)
    assert (rerun.status, rerun.unchanged, rerun.inserted) == ("succeeded", 3, 3)
    with factory() as s:
        assert count(s, "activities") == 6


def test_a_run_whose_process_is_gone_is_marked_at_once(factory, tmp_path, monkeypatch) -> None:
    path = write_csv(tmp_path / "a.csv", "activities", rows("activities", 4))
    real = imports._upsert_batch
    calls = {"n": 0}

    def exits(*args: Any, **kwargs: Any):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("gone")  # the run is left "running", its lock released
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "_upsert_batch", exits)
    with pytest.raises(SystemExit):
        do_import(factory, path, chunk_size=2)
    with factory() as s:
        run = s.scalars(select(ImportRun).order_by(ImportRun.id.desc()).limit(1)).one()
        assert run.status == "running"
        assert mark_stale_runs(s) == 1  # its heartbeat is fresh, but nobody holds its lock
        s.commit()
    assert get_run(factory, run.id).status == INTERRUPTED


def test_stale_runs_are_marked_at_the_start_of_each_run(factory, tmp_path) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with factory() as s:
        ghost = ImportRun(importer="csv", status="running", started_at=old, heartbeat_at=old)
        s.add(ghost)
        s.commit()
        ghost_id = ghost.id
    do_import(factory, write_csv(tmp_path / "a.csv", "activities", rows("activities", 1)))
    assert get_run(factory, ghost_id).status == INTERRUPTED


def test_a_folder_gives_one_run_per_payload(factory, tmp_path) -> None:
    a = write_csv(tmp_path / "a.csv", "activities", rows("activities", 2))
    b = write_csv(tmp_path / "b.csv", "activities", rows("activities", 2, start=3))
    result = run_import(factory, [payload(a), payload(b)], importer="csv", kind="activities")
    assert [r.inserted for r in result.runs] == [2, 2]
    assert len({r.run_id for r in result.runs}) == 2
    assert result.inserted == 4 and result.ok and not result.failed


# --------------------------------------------------------------------------------------
# reverting a run
# --------------------------------------------------------------------------------------


@pytest.fixture()
def admin(factory) -> int:
    from cbm.services.accounts import create_user

    with factory() as s:
        user = create_user(s, "revert-admin", "correct horse battery staple", "admin")
        s.commit()
        return user.id


def test_revert_removes_inserted_rows_and_restores_updated_ones(factory, tmp_path, admin) -> None:
    base = rows("activities", 3)
    first = do_import(factory, write_csv(tmp_path / "a.csv", "activities", base))
    changed = [{**base[0], "troops": "1"}, base[1], base[2], make("activities", 4)]
    second = do_import(factory, write_csv(tmp_path / "b.csv", "activities", changed))
    assert (second.inserted, second.updated, second.unchanged) == (1, 1, 2)

    with factory() as s:
        result = revert_run(s, second.run_id, Actor(user_id=admin))
        s.commit()
    assert result.deleted == {"activities": 1} and result.restored == {"activities": 1}
    with factory() as s:
        assert count(s, "activities") == 3
        restored = activity_row(s, "A-1")
        assert restored.troops == 13000
        # Provenance goes back too: the values are the first run's again.
        assert restored.set_by_run_id == first.run_id and restored.set_by_user_id is None
        run = s.get(ImportRun, second.run_id)
        assert run.reverted_at is not None and run.reverted_by_id == admin
        history = record_history(
            s, contract.get("activities"), {"activity_id": "A-1", "source": "notification"}
        )
        top = history.entries[0]
        assert (top.action, top.user_id) == ("update", admin)
        assert {c.field: (c.before, c.after) for c in top.changes} == {"troops": (1, 13000)}
        notes = s.scalars(
            select(AuditEvent.note).where(AuditEvent.user_id == admin, AuditEvent.note.is_not(None))
        ).all()
        assert set(notes) == {f"revert of run {second.run_id}"}
        gone = record_history(
            s, contract.get("activities"), {"activity_id": "A-4", "source": "notification"}
        )
        assert gone.deleted is not None and gone.deleted.user_id == admin
        summary = s.scalars(select(AuditEvent).where(AuditEvent.action == "revert")).one()
        assert summary.entity_key == f"import run {second.run_id}"

        with pytest.raises(RevertRefused, match="already reverted"):
            revert_run(s, second.run_id, Actor(user_id=admin))


def test_revert_is_refused_when_a_user_changed_a_row_since(factory, tmp_path, admin) -> None:
    out = do_import(factory, write_csv(tmp_path / "a.csv", "activities", rows("activities", 2)))
    with factory() as s:
        result = upsert_records(
            s, "activities", [make("activities", 2, troops="5")], actor=Actor(user_id=admin)
        )
        assert result.updated == 1
        s.commit()
    with factory() as s:
        with pytest.raises(RevertRefused) as refused:
            revert_run(s, out.run_id, Actor(user_id=admin))
        s.rollback()
    text = str(refused.value)
    assert "cannot be reverted" in text
    assert "activities A-2 / notification: changed since by revert-admin" in text
    with factory() as s:
        assert count(s, "activities") == 2  # nothing was removed
        assert s.get(ImportRun, out.run_id).reverted_at is None


def test_revert_is_refused_when_a_later_run_touched_a_row_and_allowed_after_reverting_it(
    factory, tmp_path, admin
) -> None:
    base = rows("activities", 2)
    first = do_import(factory, write_csv(tmp_path / "a.csv", "activities", base))
    second = do_import(
        factory,
        write_csv(tmp_path / "b.csv", "activities", [{**base[0], "troops": "2"}, base[1]]),
    )
    with factory() as s:
        with pytest.raises(RevertRefused, match=f"changed since by import run {second.run_id}"):
            revert_run(s, first.run_id, Actor(user_id=admin))
        s.rollback()
    # Reverting the later run first makes the earlier one revertible.
    with factory() as s:
        revert_run(s, second.run_id, Actor(user_id=admin))
        s.commit()
    with factory() as s:
        result = revert_run(s, first.run_id, Actor(user_id=admin))
        s.commit()
        assert result.deleted == {"activities": 2}
        assert count(s, "activities") == 0


def test_revert_is_refused_when_it_would_leave_dangling_references(
    factory, tmp_path, admin
) -> None:
    out = do_import(factory, write_csv(tmp_path / "a.csv", "activities", rows("activities", 1)))
    with factory() as s:
        note = make("notifications", 1, activity_id="A-1")
        assert upsert_records(s, "notifications", [note], actor=Actor(user_id=admin)).ok
        s.commit()
    with factory() as s:
        with pytest.raises(RevertRefused) as refused:
            revert_run(s, out.run_id, Actor(user_id=admin))
        s.rollback()
    assert "notifications N-1 refers to activities A-1 / notification (activity_id)" in str(
        refused.value
    )
    with factory() as s:
        delete_record(s, "notifications", {"reference": "N-1"}, actor=Actor(user_id=admin))
        s.commit()
    with factory() as s:
        revert_run(s, out.run_id, Actor(user_id=admin))
        s.commit()
        assert count(s, "activities") == 0 and count(s, Notification) == 0


def test_revert_is_refused_for_a_run_that_changed_nothing(factory, tmp_path) -> None:
    path = write_csv(tmp_path / "a.csv", "activities", rows("activities", 1))
    do_import(factory, path)
    again = do_import(factory, path)
    with factory() as s, pytest.raises(RevertRefused, match="nothing to revert"):
        revert_run(s, again.run_id)


def test_revert_lists_at_most_ten_records(factory, tmp_path, admin) -> None:
    out = do_import(factory, write_csv(tmp_path / "a.csv", "activities", rows("activities", 12)))
    with factory() as s:
        changed = [make("activities", n, troops="1") for n in range(1, 13)]
        upsert_records(s, "activities", changed, actor=Actor(user_id=admin))
        s.commit()
    with factory() as s, pytest.raises(RevertRefused) as refused:
        revert_run(s, out.run_id, Actor(user_id=admin))
    lines = [line for line in str(refused.value).splitlines() if line.startswith("- ")]
    assert len(lines) == 11 and lines[-1] == "- … and 2 more"


# --------------------------------------------------------------------------------------
# rejected rows as CSV
# --------------------------------------------------------------------------------------


def test_rejections_csv_is_rfc4180_with_formulas_neutralised(factory, tmp_path) -> None:
    data = [
        make("activities", 1, troops='=HYPERLINK("http://x")'),
        make("activities", 2, kind='say "hi", then\nleave'),
        make("activities", 3, state="+DEU"),
        make("activities", 4),
    ]
    out = do_import(factory, write_csv(tmp_path / "a.csv", "activities", data))
    with factory() as s:
        text = "".join(rejections_csv(s, out.run_id))
    assert text.startswith("row,column,value,reason,part\r\n")
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == ["row", "column", "value", "reason", "part"]
    body = {r[1]: r for r in parsed[1:]}
    assert body["troops"][0] == "2" and body["troops"][2] == '\'=HYPERLINK("http://x")'
    assert body["kind"][2] == 'say "hi", then\nleave' and body["kind"][4] == "activities"
    assert body["state"][2] == "'+DEU"
    assert '"say ""hi"", then\nleave"' in text  # quoted, quotes doubled, newline kept


def test_csv_cell_escapes_every_formula_prefix() -> None:
    for prefix in ("=", "+", "-", "@", "\t", "\r"):
        assert imports.csv_cell(f"{prefix}1") == f"'{prefix}1"
    assert imports.csv_cell("plain") == "plain" and imports.csv_cell(None) == ""


def test_file_level_rejections_are_stored_once(factory, tmp_path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("activity_id,source,colour\nA-1,notification,red\nA-2,notification,blue\n")
    out = do_import(factory, path, chunk_size=1)
    assert out.status == "rejected" and out.rejected == 2 and out.inserted == 0
    assert out.message.startswith("every row was rejected")
    with factory() as s:
        stored = s.scalars(select(ImportRejection).where(ImportRejection.run_id == out.run_id))
        reasons = [r.reason for r in stored]
    assert len([r for r in reasons if r.startswith("unknown column")]) == 1


def test_ctrl_c_marks_the_run_interrupted_and_is_raised_again(
    factory, tmp_path, monkeypatch
) -> None:
    path = write_csv(tmp_path / "a.csv", "activities", rows("activities", 4))
    real = imports._upsert_batch
    calls = {"n": 0}

    def interrupted(*args: Any, **kwargs: Any):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "_upsert_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        do_import(factory, path, chunk_size=2)
    with factory() as s:
        run = s.scalars(select(ImportRun).order_by(ImportRun.id.desc()).limit(1)).one()
        assert run.status == INTERRUPTED and run.rows_inserted == 2
        assert run.message.startswith("stopped by the user (Ctrl+C); the 2 rows")
        assert count(s, "activities") == 2


def test_stored_rejections_are_capped_but_counted(factory, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(imports, "MAX_STORED_REJECTIONS", 3)
    data = [make("activities", n, kind="parade") for n in range(1, 8)]
    data.append(make("activities", 8))
    out = do_import(factory, write_csv(tmp_path / "a.csv", "activities", data), chunk_size=3)
    assert (out.rejected, out.inserted, out.status) == (7, 1, "partial")
    with factory() as s:
        stored = s.scalars(
            select(ImportRejection)
            .where(ImportRejection.run_id == out.run_id)
            .order_by(ImportRejection.id)
        ).all()
    assert [r.row_number for r in stored] == [2, 3, 4, None]
    assert "more rejections were found than the 3 stored" in stored[-1].reason


def test_revert_checks_the_references_of_restored_values(factory, tmp_path, admin) -> None:
    user = Actor(user_id=admin)
    with factory() as s:
        assert upsert_records(s, "activities", rows("activities", 2), actor=user).ok
        note = make("notifications", 1, activity_id="A-1")
        assert upsert_records(s, "notifications", [note], actor=user).ok
        s.commit()
    # The run points the notification at a new activity it inserts in the same import.
    acts = write_csv(tmp_path / "activities.csv", "activities", [make("activities", 3)])
    notes = write_csv(
        tmp_path / "notifications.csv",
        "notifications",
        [make("notifications", 1, activity_id="A-3")],
    )
    first = do_import(factory, acts)
    second = do_import(factory, notes, kind="notifications")
    assert second.updated == 1
    # Reverting the notification's run puts it back on A-1: fine, and A-3 is then free.
    with factory() as s:
        revert_run(s, second.run_id, user)
        s.commit()
    with factory() as s:
        assert s.scalar(select(Notification.activity_id)) == "A-1"
        revert_run(s, first.run_id, user)
        s.commit()

    # Now the earlier value is gone: restoring it would point at nothing.
    again = do_import(
        factory,
        write_csv(
            tmp_path / "n2.csv", "notifications", [make("notifications", 1, activity_id="A-2")]
        ),
        kind="notifications",
    )
    with factory() as s:
        delete_record(s, "activities", {"activity_id": "A-1", "source": "notification"}, actor=user)
        s.commit()
    with factory() as s, pytest.raises(RevertRefused) as refused:
        revert_run(s, again.run_id, user)
    assert "its earlier activity_id 'A-1' is no longer stored" in str(refused.value)
