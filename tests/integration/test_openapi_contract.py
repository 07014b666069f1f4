"""The OpenAPI contract holds: schemathesis generates requests from /openapi.json and checks the answers.

Every documented operation is called with generated valid and invalid input (a fixed seed and a
bounded number of cases, so the run is the same each time and takes well under a minute) against
the real app, engine and stores. Every response must be documented (status, content type, body
schema, the ``{code, detail}`` error shape), invalid input must be refused, and nothing may be a 5xx.
"""

from __future__ import annotations

import pytest
import schemathesis

# Imported at collection, while no test has threads running: pytest rewrites these modules as it imports
# them, and a background thread formatting a traceback at that moment makes Python 3.11's ast.parse fail
# (CPython gh-106905). from_asgi would otherwise import it in the middle of the test session.
import schemathesis.specs.openapi.schemas  # noqa: E402, F401
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection

from app import build_engine
from bot.api import create_app
from core.config import Settings

TOKEN = "contract-test-token-0123456789"
CASES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def contract_schema(tmp_path_factory, embedder):
    from tests.conftest import SAMPLES

    settings_ = Settings(data_dir=tmp_path_factory.mktemp("contract") / "data")
    engine = build_engine(settings_, embedder=embedder)
    engine.ingest([SAMPLES / "handbook.md"])
    app = create_app(engine, api_token=SecretStr(TOKEN))
    # The token is given with every call; the edge's refusals without one are tested in test_api_auth.py.
    # Unknown query parameters are ignored, as HTTP APIs do, so they are not generated as "invalid".
    config = schemathesis.Config.from_dict(
        {"generation": {"with-security-parameters": False, "allow-extra-parameters": False}})
    yield schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    engine.close()


def _untyped_negations(case) -> list:
    """Checks that cannot judge this case. A query string and multipart form fields have no types: a
    "negative" number, boolean or null there reaches the server as text ("12", "true", "null") that may
    well be valid (a scope named "true"), so "schema-violating request accepted" would be a false
    finding (schemathesis issues #2312, #4600). Every other check (no 5xx, documented status, content
    type and body) still runs on such a case; what those locations refuse is tested below by name."""
    negative = {loc for loc, info in case.meta.components.items() if info.mode.is_negative}
    untyped = {ParameterLocation.QUERY}
    if (case.media_type or "").startswith("multipart/form-data"):
        untyped.add(ParameterLocation.BODY)
    if negative and negative <= untyped:
        return [negative_data_rejection]
    return []


def test_text_fields_that_break_the_schema_are_refused(contract_schema):
    from fastapi.testclient import TestClient

    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(contract_schema.app) as http:
        for form in ({"scope": ""}, {"scope": "two words"}, {"scope": "x" * 201}):
            r = http.post("/v1/documents", data=form, files=[("files", ("a.md", b"# A\nText.\n"))], headers=auth)
            assert r.status_code in (400, 422), (form, r.text)
            assert set(r.json()) == {"code", "detail"}
        for form in ({"doc_id": ""}, {"scope": "bad scope", "doc_id": "x"}, {}):
            r = http.post("/v1/minutes", data=form, headers=auth)
            assert r.status_code in (400, 422), (form, r.text)
        r = http.post("/v1/minutes", data={"doc_id": "x"}, files=[("file", ("a.vtt", b"WEBVTT\n"))], headers=auth)
        assert r.status_code == 400  # both a file and a doc_id
        r = http.get("/v1/documents", params={"scope": "not a scope!"}, headers=auth)
        assert r.status_code in (400, 422), r.text


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_every_operation_keeps_its_contract(contract_schema, mode):
    checked, cases = [], []
    for result in contract_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=CASES_PER_OPERATION, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case):
            cases.append(operation.label)
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                   excluded_checks=_untyped_negations(case))

        try:
            run()
        except Unsatisfiable:
            # Nothing can be sent wrong: no input at all (GET /healthz), or only path segments, which are
            # any text (DELETE /v1/documents/{doc_id}). Every operation with a body has invalid inputs.
            assert mode is GenerationMode.NEGATIVE and not list(operation.body), operation.label
            continue
        checked.append(operation.label)
    assert len(checked) >= (10 if mode is GenerationMode.POSITIVE else 6), checked
    print(f"{mode.value}: {len(cases)} cases on {len(checked)} operations, no failure")  # for docs/benchmarks.md
