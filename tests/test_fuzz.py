"""Schemathesis against the app's own OpenAPI document: no server error, no schema violation.

`make test` runs a few cases per operation; `make stress` sets VERBATIM_FUZZ_EXAMPLES=1000.
The fake embedder answers over the tiny corpus: the API's contract does not depend on the model.
"""

import os

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from verbatim.server import create_app

EXAMPLES = int(os.environ.get("VERBATIM_FUZZ_EXAMPLES", "25"))
pytestmark = pytest.mark.stress  # tens of seconds even at 25 cases: `make test` runs it


@pytest.fixture
def api_schema(fake_engine):
    app = create_app(fake_engine.settings, engine=fake_engine)
    with TestClient(app):  # runs the lifespan: the index is loaded into app.state
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_api_conforms_to_its_schema(api_schema):
    # Driven through Hypothesis directly: schemathesis' pytest plugin does not load on pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/ask", "GET /api/ask", "GET /api/health"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            # Filters that name documents, or give a date range, may be well-formed and still
            # refused (422): unknown ids, date_from after date_to. Every other check holds.
            refusable = _names_documents_or_range(case)
            case.call_and_validate(excluded_checks=[positive_data_acceptance] if refusable else [])

        check()


def _names_documents_or_range(case) -> bool:
    given = {
        **(case.query or {}),
        **(((case.body or {}) if isinstance(case.body, dict) else {}).get("filters") or {}),
    }
    return bool(given.get("documents")) or bool(given.get("date_from") and given.get("date_to"))
