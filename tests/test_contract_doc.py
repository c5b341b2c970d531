"""The published contract document is generated from the specs the validator uses."""

from __future__ import annotations

from pathlib import Path

from cbm import contract
from cbm.contract_doc import render_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "data-contract.md"


def test_docs_match_the_contract_specs() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/data-contract.md is stale: run python -m cbm.contract_doc > docs/data-contract.md"
    )


def test_every_contract_column_exists_in_its_model() -> None:
    for spec in contract.FILES.values():
        table = spec.model.__table__
        assert set(spec.columns) <= set(table.columns.keys()), spec.name
        assert set(spec.key) and all(spec.field(k).key for k in spec.key)
