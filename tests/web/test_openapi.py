"""The served OpenAPI document is the API: schemathesis drives the live issuer over a real
socket with requests generated from it, and every answer must be no 5xx and match it.

A service's document is added the same way: a fixture serving the live app, a schema
loaded from its ``/openapi.json``, and the ``parametrize`` test below pointed at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from issuer.oidc.abuse import AbuseConfig
from issuer.oidc.app import create_app
from issuer.oidc.config import IssuerConfig
from issuer.sim import GitHubSim, SimSettings
from issuer.sim.serve import serve_sim
from issuer.web.openapi import document
from issuer.web.serving import BackgroundServer
from tests.web.conftest import serve_issuer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Limits as in production, small enough that generated claims run into them: 429s are
# part of what is checked against the document.
ABUSE = AbuseConfig(claims_per_address=10, claims_per_repository=20, claims_per_run=3)


@pytest.fixture(scope="module")
def live_issuer() -> Iterator[str]:
    """An issuer (and a GitHub simulator) for the whole module: its URL."""
    github: BackgroundServer = serve_sim(GitHubSim(SimSettings()))
    try:
        with serve_issuer(github.url_of(0), ABUSE) as (url, _config):
            yield url
    finally:
        github.stop()


@pytest.fixture(scope="module")
def issuer_schema(live_issuer: str) -> Any:
    return schemathesis.openapi.from_url(f"{live_issuer}/openapi.json")


OPERATIONS = [
    (path, method.upper()) for path, item in document("issuer")["paths"].items() for method in item
]
# Negative cases (data the document forbids) where there is input to get wrong.
WITH_INPUT = {
    ("/claim", "POST"),
    ("/exchange", "POST"),
    ("/relay/{owner}/{repo}/runs/{run_id}/attempts/{attempt}/{slot}", "GET"),
}
CASES = [(path, method, GenerationMode.POSITIVE) for path, method in OPERATIONS] + [
    (path, method, GenerationMode.NEGATIVE) for path, method in sorted(WITH_INPUT)
]


@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_the_issuer_answers_as_its_document_says(
    issuer_schema: Any, path: str, method: str, mode: GenerationMode
) -> None:
    operation = issuer_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: schemathesis.Case) -> None:
        if case.query and "wait" in case.query:
            case.query["wait"] = 0  # a long poll would only make the run slower, not wider
        case.call_and_validate(checks=CHECKS, timeout=10)

    answers_as_documented()


def test_exchanging_a_real_claim_answers_as_documented(github: BackgroundServer) -> None:
    with serve_issuer(github.url_of(0)) as (url, _config):
        body = {"repository": "octo-org/unknown", "run_id": 4242, "event_name": "pull_request"}
        claim = httpx.post(f"{url}/claim", json=body)
        assert claim.status_code == 201, claim.text
        operation = schemathesis.openapi.from_url(f"{url}/openapi.json")["/exchange"]
        strategy = operation["POST"].as_strategy(
            headers={"Authorization": f"Bearer {claim.json()['claim_id']}"}
        )

        @given(case=strategy)
        @settings(max_examples=10, deadline=None, derandomize=True, database=None)
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.query = {"wait": 0}
            response = case.call_and_validate(checks=CHECKS, timeout=10)
            assert response.status_code in (202, 403)  # pending, or a run GitHub does not know

        answers_as_documented()


def test_every_route_of_the_issuer_is_documented_and_nothing_else() -> None:
    config = IssuerConfig(issuer_url="http://127.0.0.1:9")
    app = create_app(lambda: None)  # type: ignore[arg-type,return-value]
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ()) - {"HEAD"}
    }
    documented = {
        (path, method) for path, item in document("issuer")["paths"].items() for method in item
    }
    assert served == documented
    assert config.issuer_url  # the app needs no configuration to list its routes


def test_the_document_is_served_as_shipped(http: httpx.Client, github: BackgroundServer) -> None:
    with serve_issuer(github.url_of(0)) as (url, _config):
        response = http.get(f"{url}/openapi.json")
    assert response.status_code == 200
    assert response.json() == document("issuer")
    assert response.json()["openapi"].startswith("3.1")
