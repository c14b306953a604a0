"""The builder service's served OpenAPI document is its API: schemathesis drives the live
service over a real socket (Redis, a trusting issuer, the admin API on) with requests made
from the document, and every answer must be no 5xx and match it; every refusal the code can
give on an endpoint is documented there with its status and code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from starlette.routing import Route

from issuer.builder import errors
from issuer.builder.adminclient import AdminClient
from issuer.builder.app import create_app
from issuer.builder.buildtokens import BuildTokenInfo, BuildTokens
from issuer.builder.registry import BuilderRecord, BuilderRegistry, credential_hash
from issuer.store import RedisStore
from issuer.web.openapi import document
from tests.builder.conftest import RunningService, exchange_form, start_service
from tests.builder.support import ADMIN_TOKEN, PROJECT, FakeIssuer
from tests.redis_server import RedisServer
from tests.web.test_openapi import CHECKS

BUILDER_ID = "b-00000000feedf00d"
CREDENTIAL = "credential-of-the-recorded-builder"


@dataclass
class LiveBuilder:
    service: RunningService
    issuer: FakeIssuer
    build_token: str

    @property
    def url(self) -> str:
        return self.service.url


async def _record_builder(redis_url: str) -> str:
    """A builder known to the service (as an exchange would have left it), with a credential
    this test knows; its build token."""
    store = RedisStore.from_url(redis_url)
    tokens = BuildTokens(store)
    expires = int(time.time()) + 3600
    info = BuildTokenInfo(
        BUILDER_ID, PROJECT, int(time.time()), expires, f"repo:{PROJECT}:pull_request", PROJECT, "7"
    )
    token, digest = await tokens.mint(info)
    record = BuilderRecord(
        BUILDER_ID,
        PROJECT,
        expires,
        credential_hash(CREDENTIAL),
        digest,
        "tr_0",
        "https://issuer.example",
        "jti",
        PROJECT,
        "7",
    )
    await BuilderRegistry(store, tokens).save(record)
    await store.close()
    return token


@pytest.fixture(scope="module")
def live_builder(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveBuilder]:
    """A builder service for the whole module: a trust relationship for PROJECT, and a
    recorded builder whose credential the test holds."""
    import asyncio

    redis_server.flush()
    issuer = FakeIssuer()
    service = start_service(redis_server.url, issuer.url, tmp_path_factory.mktemp("scratch"))
    try:
        with AdminClient(service.url, ADMIN_TOKEN) as admin:
            admin.add({"project": PROJECT, "issuer": issuer.url, "repository": PROJECT})
        build_token = asyncio.run(_record_builder(redis_server.url))
        yield LiveBuilder(service, issuer, build_token)
    finally:
        service.stop()
        issuer.stop()


@pytest.fixture(scope="module")
def builder_schema(live_builder: LiveBuilder) -> Any:
    return schemathesis.openapi.from_url(f"{live_builder.url}/openapi.json")


def _settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def _credentials(operation: dict[str, Any]) -> dict[str, str]:
    """The Authorization header the operation's security scheme asks for, right."""
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    if "adminBearer" in schemes:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if "builderBasic" in schemes:
        basic = httpx.BasicAuth(BUILDER_ID, CREDENTIAL)
        request = basic.auth_flow(httpx.Request("POST", "http://x")).__next__()
        return {"Authorization": request.headers["Authorization"]}
    return {}


def _trusting(body: object, issuer: str) -> None:
    """Relationships name the trusted issuer (the document cannot know it), so that what is
    checked past the issuer is reached too."""
    items = body.get("relationships", [body]) if isinstance(body, dict) else []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and "issuer" in item:
            item["issuer"] = issuer


DOCUMENT = document("builder")
OPERATIONS = [(path, method) for path, item in DOCUMENT["paths"].items() for method in item]
SECURED = {(p, m) for p, m in OPERATIONS if DOCUMENT["paths"][p][m].get("security")}
WITH_INPUT = {(p, m) for p, m in OPERATIONS if m != "get" or (p, m) in SECURED}
CASES = (
    [(p, m, GenerationMode.POSITIVE, True) for p, m in OPERATIONS]
    + [(p, m, GenerationMode.POSITIVE, False) for p, m in sorted(SECURED)]
    + [(p, m, GenerationMode.NEGATIVE, True) for p, m in sorted(WITH_INPUT)]
)


@pytest.mark.parametrize(("path", "method", "mode", "authorized"), CASES)
def test_the_builder_service_answers_as_its_document_says(
    builder_schema: Any,
    live_builder: LiveBuilder,
    path: str,
    method: str,
    mode: GenerationMode,
    authorized: bool,
) -> None:
    operation = builder_schema[path][method.upper()]
    credentials = _credentials(DOCUMENT["paths"][path][method]) if authorized else {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @_settings(20)
    def answers_as_documented(case: schemathesis.Case) -> None:
        headers = dict(case.headers or {})
        headers.pop("Authorization", None)
        case.headers = {**headers, **credentials}
        if mode is GenerationMode.POSITIVE:
            _trusting(case.body, live_builder.issuer.url)
        case.call_and_validate(checks=CHECKS, timeout=10)

    answers_as_documented()


def test_a_granted_exchange_answers_as_documented(
    builder_schema: Any, live_builder: LiveBuilder
) -> None:
    form = exchange_form(live_builder.issuer.token())
    case = builder_schema["/token"]["POST"].Case(
        body=form, media_type="application/x-www-form-urlencoded"
    )
    response = case.call_and_validate(checks=CHECKS, timeout=30)
    assert response.status_code == 200, response.text
    endpoint = response.json()["builder"]["endpoint"]
    token = response.json()["access_token"]
    released = httpx.delete(endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert released.status_code == 200, released.text


def test_introspecting_a_live_build_token_answers_as_documented(
    builder_schema: Any, live_builder: LiveBuilder
) -> None:
    operation = builder_schema["/introspect"]["POST"]
    case = operation.Case(
        body={"token": live_builder.build_token},
        media_type="application/x-www-form-urlencoded",
        headers=_credentials(DOCUMENT["paths"]["/introspect"]["post"]),
    )
    response = case.call_and_validate(checks=CHECKS, timeout=10)
    assert response.json()["active"] is True


def test_listing_and_removing_a_relationship_answers_as_documented(
    builder_schema: Any, live_builder: LiveBuilder
) -> None:
    admin = _credentials(DOCUMENT["paths"]["/admin/trust"]["post"])
    added = builder_schema["/admin/trust"]["POST"].Case(
        body={"project": "octo-org/other", "issuer": live_builder.issuer.url, "repository": "a/b"},
        media_type="application/json",
        headers=admin,
    )
    relationship = added.call_and_validate(checks=CHECKS, timeout=10).json()
    listed = builder_schema["/admin/trust"]["GET"].Case(
        query={"project": "octo-org/other"}, headers=admin
    )
    assert listed.call_and_validate(checks=CHECKS, timeout=10).json()["relationships"]
    removed = builder_schema["/admin/trust/{relationship_id}"]["DELETE"].Case(
        path_parameters={"relationship_id": relationship["id"]},
        query={"project": "octo-org/other"},
        headers=admin,
    )
    assert removed.call_and_validate(checks=CHECKS, timeout=10).status_code == 200


# What each endpoint can refuse, by the reason names of issuer/builder/errors.py (the
# builder processes' own refusals belong to their endpoints, not to this API).
FORM = ["form_required", "form_malformed", "parameter_repeated", "parameter_missing"]
ADMIN = ["admin_off", "admin_token"]


def _token_reasons() -> list[str]:
    """Every refusal listed before the builders' own calls: the request, the subject token,
    trust and builders (errors.py declares them in that order)."""
    reasons = list(errors.CATALOG)
    return reasons[: reasons.index("builder_client")]


REFUSALS = {
    ("/token", "post"): _token_reasons(),
    ("/introspect", "post"): [*FORM, "builder_client"],
    ("/builders/{builder_id}/release", "post"): ["builder_client"],
    ("/admin/trust", "post"): [*ADMIN, "relationship_invalid"],
    ("/admin/trust", "get"): [*ADMIN, "parameter_missing", "project_malformed"],
    ("/admin/trust/import", "post"): [*ADMIN, "relationship_invalid"],
    ("/admin/trust/{relationship_id}", "delete"): [
        *ADMIN,
        "parameter_missing",
        "project_malformed",
        "relationship_unknown",
    ],
}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        node = DOCUMENT["components"][kind][name]
    return node


def _documented_codes(path: str, method: str, status: int) -> set[str]:
    answer = DOCUMENT["paths"][path][method]["responses"].get(str(status))
    if answer is None:
        return set()
    schema = _resolve(answer)["content"]["application/json"]["schema"]
    return set(schema["properties"]["error"]["enum"])


@pytest.mark.parametrize(("path", "method"), sorted(REFUSALS))
def test_every_refusal_of_an_endpoint_is_documented_with_its_status_and_code(
    path: str, method: str
) -> None:
    undocumented = [
        reason
        for reason in REFUSALS[(path, method)]
        if errors.CATALOG[reason].code
        not in _documented_codes(path, method, errors.CATALOG[reason].status)
    ]
    assert not undocumented


def test_every_refusal_with_a_retry_after_documents_the_header() -> None:
    for (path, method), reasons in REFUSALS.items():
        for reason in reasons:
            refusal = errors.CATALOG[reason]
            if refusal.status not in (429, 503):
                continue
            answer = _resolve(DOCUMENT["paths"][path][method]["responses"][str(refusal.status)])
            assert "Retry-After" in answer["headers"], (path, method, reason)


def test_every_route_of_the_builder_service_is_documented_and_nothing_else() -> None:
    app = create_app(lambda: None)  # type: ignore[arg-type,return-value]
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ()) - {"HEAD"}
    }
    assert served == set(OPERATIONS)


def test_the_document_is_served_as_shipped(live_builder: LiveBuilder) -> None:
    response = httpx.get(f"{live_builder.url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == DOCUMENT
    assert response.json()["openapi"].startswith("3.1")


def test_a_body_too_large_is_refused_without_being_stored(live_builder: LiveBuilder) -> None:
    response = httpx.post(
        f"{live_builder.url}/token",
        content=b"a=" + b"b" * 20_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    assert response.headers["cache-control"] == "no-store"


def test_a_relationship_may_give_its_whole_numbers_as_json_floats(
    live_builder: LiveBuilder,
) -> None:
    relationship = {
        "project": "octo-org/floats",
        "issuer": live_builder.issuer.url,
        "repository": "octo-org/floats",
        "ttl": 900.0,
        "max_builders": 3.0,
    }
    response = httpx.post(
        f"{live_builder.url}/admin/trust",
        json=relationship,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    assert (response.json()["ttl"], response.json()["max_builders"]) == (900, 3)


def test_a_json_body_nested_too_deeply_is_refused_as_the_callers_mistake(
    live_builder: LiveBuilder,
) -> None:
    response = httpx.post(
        f"{live_builder.url}/admin/trust",
        content=b"[" * 8000 + b"]" * 8000,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
