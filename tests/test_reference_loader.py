"""Reference data: loaded from the shipped files, idempotently, and correctable as data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm.models import RegimeParticipation, RuleParameter, State, StateAlias
from cbm.reference.loader import DATA_DIR, ReferenceDataError, load_reference


def test_reference_is_loaded_and_a_second_load_changes_nothing(session: Session) -> None:
    assert session.scalar(select(func.count()).select_from(State)) == 57
    summary = load_reference(session)
    assert not summary.changed
    assert all(t.inserted == t.updated == t.deleted == 0 for t in summary.tables.values())


def test_open_skies_withdrawals_are_participation_data(session: Session) -> None:
    rows = session.scalars(
        select(RegimeParticipation).where(
            RegimeParticipation.regime == "OST", RegimeParticipation.status == "withdrawn"
        )
    ).all()
    starts = {r.state_code: r.valid_from.isoformat() for r in rows}
    assert starts["USA"] == "2020-11-22"
    assert starts["RUS"] == "2021-12-18"


def test_aliases_resolve_to_codes(session: Session) -> None:
    alias = session.scalar(select(StateAlias).where(StateAlias.alias_key == "türkiye"))
    assert alias is not None and alias.state_code == "TUR"


def _copy_data(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA_DIR, target)
    return target


def test_a_corrected_parameter_is_a_data_change(session: Session, tmp_path: Path) -> None:
    data = _copy_data(tmp_path)
    path = data / "rule_parameters.csv"
    text = path.read_text(encoding="utf-8")
    old = session.scalar(
        select(RuleParameter).where(
            RuleParameter.regime == "VD", RuleParameter.key == "prior_notification.lead_days"
        )
    )
    assert old is not None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if f",{old.key},{old.value}," in line:
            lines[i] = line.replace(f",{old.key},{old.value},", f",{old.key},43,")
            break
    else:
        pytest.fail("parameter line not found")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = load_reference(session, data)
    assert summary.tables["rule_parameters"].updated == 1
    session.refresh(old)
    assert old.value == "43"


def test_a_malformed_file_is_refused_with_its_line(session: Session, tmp_path: Path) -> None:
    data = _copy_data(tmp_path)
    path = data / "regime_participation.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    state, regime, rest = lines[3].split(",", 2)
    assert regime in {"VD", "OST", "CFE", "GEMI"}
    lines[3] = f"{state},XX,{rest}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=r"regime_participation.csv line 4: 'XX'"):
        load_reference(session, data)
