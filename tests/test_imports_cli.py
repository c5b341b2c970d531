"""`cbm import` and `cbm runs`, run as real processes on a migrated SQLite file."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from factories import make, rows

from cbm import contract

CBM = [sys.executable, "-m", "cbm.cli"]


def run(
    args: list[str], env: dict[str, str], timeout: int = 120, stdin: str | None = None
) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
    full.update(env)
    return subprocess.run(
        [*CBM, *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=stdin,
    )


def write_csv(path: Path, kind: str, data: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(contract.get(kind).columns))
        writer.writeheader()
        writer.writerows(data)
    return path


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database file, copied for each test (migrating takes seconds)."""
    folder = tmp_path_factory.mktemp("cli-template")
    out = run(["db", "upgrade"], {"CBM_INSTANCE_DIR": str(folder)})
    assert out.returncode == 0, out.stderr
    return folder / "cbm.sqlite3"


@pytest.fixture()
def env(tmp_path: Path, migrated: Path) -> dict[str, str]:
    instance = tmp_path / "instance"
    instance.mkdir()
    shutil.copy(migrated, instance / "cbm.sqlite3")
    return {"CBM_INSTANCE_DIR": str(instance)}


def test_a_clean_import_exits_0_with_a_summary_and_is_idempotent(env, tmp_path) -> None:
    path = write_csv(tmp_path / "activities.csv", "activities", rows("activities", 3))
    out = run(["import", str(path)], env)
    assert out.returncode == 0, out.stderr
    header, line = out.stdout.splitlines()[:2]
    assert header.split()[:7] == [
        "run", "status", "read", "inserted", "updated", "unchanged", "rejected",
    ]  # fmt: skip
    assert line.split()[:7] == ["1", "succeeded", "3", "3", "0", "0", "0"]
    assert line.endswith("activities.csv")

    again = run(["import", str(path)], env)
    assert again.returncode == 0
    assert again.stdout.splitlines()[1].split()[:7] == ["2", "succeeded", "3", "0", "0", "3", "0"]


def test_rejected_rows_exit_5_and_are_listed(env, tmp_path) -> None:
    data = [*rows("activities", 2), make("activities", 3, start_date="2024-13-01")]
    path = write_csv(tmp_path / "activities.csv", "activities", data)
    out = run(["import", str(path), "--kind", "activities"], env)
    assert out.returncode == 5, out.stderr
    assert out.stdout.splitlines()[1].split()[:7] == ["1", "partial", "3", "2", "0", "0", "1"]
    assert "run 1: 1 rows rejected:" in out.stdout
    assert "row 4, start_date: '2024-13-01' is not a real calendar date" in out.stdout
    assert "cbm runs show 1 --rejections" in out.stdout

    shown = run(["runs", "show", "1", "--rejections"], env)
    assert shown.returncode == 0
    parsed = list(csv.reader(io.StringIO(shown.stdout, newline="")))
    assert parsed[0] == ["row", "column", "value", "reason", "part"]
    assert parsed[1][:3] == ["4", "start_date", "2024-13-01"]


def test_all_or_nothing_stores_nothing_and_exits_5(env, tmp_path) -> None:
    data = [*rows("activities", 2), make("activities", 3, kind="parade")]
    path = write_csv(tmp_path / "activities.csv", "activities", data)
    out = run(["import", str(path), "--all-or-nothing"], env)
    assert out.returncode == 5
    assert out.stdout.splitlines()[1].split()[:7] == ["1", "rejected", "3", "0", "0", "0", "1"]
    assert "nothing was stored" in out.stdout


def test_a_failed_run_exits_1(env, tmp_path) -> None:
    path = tmp_path / "activities.csv"
    path.write_bytes(b"activity_id,source\n\xff\xfe broken\n")
    out = run(["import", str(path)], env)
    assert out.returncode == 1
    assert out.stdout.splitlines()[1].split()[:2] == ["1", "failed"]
    assert "UTF-8" in out.stdout

    missing = run(["import", str(tmp_path / "nope.csv")], env)
    assert missing.returncode == 1
    assert "failed" in missing.stdout


def test_a_folder_gives_one_run_per_file_and_a_total(env, tmp_path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    write_csv(folder / "activities.csv", "activities", rows("activities", 2))
    write_csv(folder / "inspections.csv", "inspections", rows("inspections", 3))
    out = run(["import", str(folder), "--chunk-size", "2"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split()[2:4] == ["2", "2"] and lines[2].split()[2:4] == ["3", "3"]
    assert lines[3].split()[:3] == ["total", "5", "5"]


def test_usage_errors_exit_2(env, tmp_path) -> None:
    out = run(["import", str(tmp_path), "--kind", "dragons"], env)
    assert out.returncode == 2 and "is not a kind of record" in out.stderr
    assert run(["import", str(tmp_path), "--importer", "pdf"], env).returncode == 2


def test_runs_lists_shows_and_reverts(env, tmp_path) -> None:
    path = write_csv(tmp_path / "activities.csv", "activities", rows("activities", 2))
    assert run(["import", str(path)], env).returncode == 0
    changed = write_csv(
        tmp_path / "more.csv",
        "activities",
        [make("activities", 1, troops="1"), make("activities", 3)],
    )
    assert run(["import", str(changed)], env).returncode == 0

    listed = run(["runs"], env)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["2", "1"]
    assert run(["runs", "--status", "failed"], env).stdout.startswith("No import runs with")

    shown = run(["runs", "show", "2"], env)
    assert shown.returncode == 0
    assert "status:      succeeded" in shown.stdout
    assert "3 read" not in shown.stdout and "2 read, 1 inserted, 1 updated" in shown.stdout
    assert "checksum:" in shown.stdout and "importer:    csv" in shown.stdout
    assert run(["runs", "show", "99"], env).returncode == 1

    cancelled = run(["runs", "revert", "2"], env, stdin="n\n")
    assert cancelled.returncode == 1 and "cancelled" in cancelled.stderr
    refused_first = run(["runs", "revert", "1", "--yes"], env)
    assert refused_first.returncode == 1
    assert "changed since by import run 2" in refused_first.stderr

    reverted = run(["runs", "revert", "2", "--yes"], env)
    assert reverted.returncode == 0, reverted.stderr
    assert "Reverted run 2: 1 rows removed, 1 restored." in reverted.stdout
    twice = run(["runs", "revert", "2", "--yes"], env)
    assert twice.returncode == 1 and "already reverted" in twice.stderr
    assert "[reverted]" in run(["runs"], env).stdout


def test_revert_as_a_named_admin(env, tmp_path) -> None:
    path = write_csv(tmp_path / "activities.csv", "activities", rows("activities", 1))
    assert run(["import", str(path)], env).returncode == 0
    assert run(["user", "add", "eve", "--role", "analyst"], env).returncode == 0
    not_admin = run(["runs", "revert", "1", "--yes", "--user", "eve"], env)
    assert not_admin.returncode == 1 and "not an active administrator" in not_admin.stderr
    assert run(["user", "add", "root", "--role", "admin"], env).returncode == 0
    done = run(["runs", "revert", "1", "--yes", "--user", "root"], env)
    assert done.returncode == 0, done.stderr
    assert "reverted:" in run(["runs", "show", "1"], env).stdout
    assert "by root" in run(["runs", "show", "1"], env).stdout


def test_cbm_token_create_list_revoke(env, tmp_path) -> None:
    """`cbm token`: the secret on stdout once, listed by prefix only, revoked by id."""
    assert (
        run(
            ["user", "add", "tok", "--role", "analyst", "--password-stdin"],
            env,
            stdin="correct horse battery staple\n",
        ).returncode
        == 0
    )
    made = run(["token", "create", "tok", "--name", "nightly", "--scope", "viewer"], env)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("cbm_") and "not shown again" in made.stderr
    listed = run(["token", "list", "tok"], env)
    assert secret[:12] in listed.stdout and secret not in listed.stdout
    assert " viewer " in listed.stdout and "active" in listed.stdout
    too_much = run(["token", "create", "tok", "--name", "x", "--scope", "admin"], env)
    assert too_much.returncode != 0 and "cannot do more than its owner" in too_much.stderr
    token_id = listed.stdout.splitlines()[1].split()[0]
    assert run(["token", "revoke", token_id], env).returncode == 0
    assert "revoked" in run(["token", "list"], env).stdout
    again = run(["token", "revoke", token_id], env)
    assert again.returncode != 0 and "already revoked" in again.stderr
