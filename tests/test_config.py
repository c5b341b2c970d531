"""Configuration: declared once, parsed strictly, secret key generated once for the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from cbm.config import SETTINGS, ConfigError, load_settings


def test_defaults_use_sqlite_under_the_instance_folder(tmp_path: Path) -> None:
    s = load_settings({"CBM_INSTANCE_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'cbm.sqlite3'}"
    assert s.is_sqlite and s.env == "development" and s.port == 5000


def test_secret_key_is_generated_once_and_persisted(tmp_path: Path) -> None:
    first = load_settings({"CBM_INSTANCE_DIR": str(tmp_path)}).secret_key
    second = load_settings({"CBM_INSTANCE_DIR": str(tmp_path)}).secret_key
    assert first == second and len(first) >= 40
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == first
    assert key_file.stat().st_mode & 0o077 == 0  # readable by the owner only


def test_production_requires_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CBM_SECRET_KEY is required"):
        load_settings({"CBM_ENV": "production", "CBM_INSTANCE_DIR": str(tmp_path)})
    assert not (tmp_path / "secret_key").exists()
    s = load_settings(
        {"CBM_ENV": "production", "CBM_SECRET_KEY": "k" * 50, "CBM_INSTANCE_DIR": str(tmp_path)}
    )
    assert s.is_production and s.secret_key == "k" * 50


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CBM_PORT", "abc", "CBM_PORT='abc' is not valid"),
        ("CBM_PORT", "70000", "between 1 and 65535"),
        ("CBM_ENV", "staging", "development, production or test"),
        ("CBM_SCHEDULER", "maybe", "true or false"),
        ("CBM_DATABASE_URL", "mysql://x/y", "sqlite:/// or postgresql"),
        ("CBM_LOG_LEVEL", "LOUD", "DEBUG, INFO"),
        ("CBM_MAX_UPLOAD_MB", "-1", "CBM_MAX_UPLOAD_MB"),
        ("CBM_LOG_FORMAT", "xml", "text or json"),
        ("CBM_JOB_SCHEDULES", "check:after-import=every 5s", "JOB one of check:nightly"),
        ("CBM_JOB_SCHEDULES", "check:nightly", "JOB=SCHEDULE"),
        ("CBM_JOB_SCHEDULES", "trust:recompute=every 5q", "unknown unit"),
    ],
)
def test_a_malformed_setting_is_a_clear_error(
    tmp_path: Path, name: str, value: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as info:
        load_settings({name: value, "CBM_INSTANCE_DIR": str(tmp_path)})
    assert name in str(info.value)


def test_postgres_urls_use_psycopg3(tmp_path: Path) -> None:
    s = load_settings(
        {"CBM_DATABASE_URL": "postgresql://u@h/db", "CBM_INSTANCE_DIR": str(tmp_path)}
    )
    assert s.database_url == "postgresql+psycopg://u@h/db" and not s.is_sqlite


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    assert missing == []


def test_job_schedules_replace_the_fixed_jobs_schedules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cbm.jobs import JOBS, fixed_jobs

    raw = "check:nightly=0 3 * * *;  trust:recompute=every 3600s;"
    s = load_settings({"CBM_JOB_SCHEDULES": raw, "CBM_INSTANCE_DIR": str(tmp_path)})
    assert s.job_schedules == (("check:nightly", "0 3 * * *"), ("trust:recompute", "every 1h"))
    monkeypatch.setenv("CBM_JOB_SCHEDULES", raw)
    jobs = fixed_jobs()
    assert jobs["check:nightly"].schedule == "0 3 * * *"
    assert jobs["trust:recompute"].schedule == "every 1h"
    assert jobs["check:after-import"] == JOBS["check:after-import"]
    monkeypatch.delenv("CBM_JOB_SCHEDULES")
    assert fixed_jobs() == JOBS
