"""The rule catalogue: complete, cited, parametrised, and documented in docs/."""

from __future__ import annotations

from pathlib import Path

from cbm.compliance.catalogue_doc import _parameters, render_markdown
from cbm.compliance.registry import SOURCE_STATUSES, all_rules
from cbm.demo import planted

ROOT = Path(__file__).resolve().parents[1]


def test_the_catalogue_has_every_rule_of_the_issue_and_the_demo() -> None:
    assert set(all_rules()) == set(planted.RULES)


def test_every_rule_is_cited_and_reads_its_numbers_from_parameters() -> None:
    params = _parameters()
    for rule in all_rules().values():
        assert rule.citation and rule.source_status in SOURCE_STATUSES, rule.id
        assert rule.requirement.endswith("."), rule.id
        for key in rule.params:
            assert (rule.param_regime, key) in params, (rule.id, key)


def test_docs_list_the_catalogue() -> None:
    doc = ROOT / "docs" / "compliance-rules.md"
    assert doc.read_text(encoding="utf-8") == render_markdown(), (
        "docs/compliance-rules.md is stale: run "
        "python -m cbm.compliance.catalogue_doc > docs/compliance-rules.md"
    )
