"""Schemathesis over the OpenAPI description: every operation, generated requests.

Stateless: for each operation, requests built from the description (valid and invalid
values, with an admin token so nothing is refused for its role) must never give a 5xx,
and every response must be one the description lists, with its content type, headers and
schema. Stateful: schemathesis follows the description's links (a created record → get,
replace, patch, delete it; a created source → get, patch, delete) in random sequences.

Bounded for CI by ``CBM_SCHEMATHESIS_EXAMPLES`` (default 12 per operation) and
``CBM_SCHEMATHESIS_STEPS`` (stateful); set them higher for a long run.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from api_support import make_api_users, seed_records
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("CBM_SCHEMATHESIS_EXAMPLES", "12"))
STEPS = int(os.environ.get("CBM_SCHEMATHESIS_STEPS", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture()
def api_headers(session) -> dict[str, str]:
    users = make_api_users(session)
    seed_records(session)
    return users.headers("admin")


@pytest.fixture()
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def _operations(api_schema) -> list:
    return [result.ok() for result in api_schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_description(api_schema, api_headers, mode) -> None:
    """Every operation, generated requests (schemathesis' own pytest plugin is not used:
    it does not run under this pytest; its strategies and checks are)."""
    operations = _operations(api_schema)
    assert len(operations) >= 60  # 8 record kinds x 6, and the other resources
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case) -> None:
            case.call_and_validate(headers=api_headers, checks=CHECKS)

        run()


def test_api_stateful_sequences(api_schema, api_headers) -> None:
    """Random sequences of calls along the description's links, each response checked."""
    machine = api_schema.as_state_machine()
    calls: list[str] = []

    class Workflow(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case):
            calls.append(f"{case.method} {case.path}")
            return {"headers": api_headers}

        def validate_response(self, response, case, additional_checks=(), **kwargs):
            case.validate_response(response, checks=CHECKS)

    run_state_machine_as_test(
        Workflow,
        settings=settings(
            max_examples=STEPS,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        ),
    )
    assert len(calls) >= STEPS, calls
    # The links were followed: some call addressed a record or source by its key or id.
    assert any("{" in c for c in calls), calls
