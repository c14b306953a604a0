"""``POST /token`` (RFC 8693, API.md section 2) over a real socket: the answer, each refusal
in RFC 6749 form, the builder limit, and one builder per token however it is raced."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from issuer.builder import errors
from issuer.builder.adminclient import AdminClient
from issuer.builder.backend import BackendError, Builder, BuilderSpec, OnStopped
from tests.builder.conftest import RunningService, ServiceMaker, exchange, exchange_form
from tests.builder.support import ADMIN_TOKEN, PROJECT, FakeIssuer, signed, unsigned

pytestmark = pytest.mark.usefixtures("trusted")


def refused(response: httpx.Response, refusal: errors.Refusal) -> bool:
    body = response.json()
    return (
        response.status_code == refusal.status
        and body["error"] == refusal.code
        and body["error_description"].startswith(refusal.description)
    )


def release(http: httpx.Client, granted: dict[str, Any]) -> None:
    endpoint = granted["builder"]["endpoint"]
    response = http.delete(endpoint, headers={"Authorization": f"Bearer {granted['access_token']}"})
    assert response.status_code == 200


def test_a_trusted_token_gets_a_build_token_and_an_ephemeral_builder(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    response = exchange(http, builder_service, fake_issuer.token())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 600
    assert body["access_token"].startswith("bt_") and len(body["access_token"]) > 40
    builder = body["builder"]
    assert builder["endpoint"].startswith("http://127.0.0.1:")
    assert (builder["ephemeral"], builder["cache"]) == (True, False)
    assert builder["expires_at"] == pytest.approx(time.time() + body["expires_in"], abs=5)
    assert response.headers["cache-control"] == "no-store"
    release(http, body)


def test_the_jwt_subject_token_type_is_accepted(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    form = exchange_form(fake_issuer.token())
    form["subject_token_type"] = "urn:ietf:params:oauth:token-type:jwt"
    response = http.post(f"{builder_service.url}/token", data=form)
    assert response.status_code == 200, response.text
    release(http, response.json())


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"grant_type": "client_credentials"}, errors.GRANT_TYPE),
        ({"grant_type": None}, errors.PARAMETER_MISSING),
        ({"subject_token": None}, errors.PARAMETER_MISSING),
        ({"audience": None}, errors.PARAMETER_MISSING),
        (
            {"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
            errors.SUBJECT_TOKEN_TYPE,
        ),
        (
            {"requested_token_type": "urn:ietf:params:oauth:token-type:id_token"},
            errors.REQUESTED_TOKEN_TYPE,
        ),
        ({"actor_token": "x", "actor_token_type": "urn:x"}, errors.ACTOR_TOKEN),
        ({"resource": "https://builder.example/x"}, errors.RESOURCE),
        ({"audience": "not a project!"}, errors.PROJECT_MALFORMED),
        ({"audience": "nobody/trusts-this"}, errors.PROJECT_UNKNOWN),
    ],
)
def test_a_malformed_request_is_refused_in_rfc6749_form(
    http: httpx.Client,
    builder_service: RunningService,
    fake_issuer: FakeIssuer,
    change: dict[str, str | None],
    refusal: errors.Refusal,
) -> None:
    form: dict[str, str | None] = {**exchange_form(fake_issuer.token()), **change}
    data = {name: value for name, value in form.items() if value is not None}
    assert refused(http.post(f"{builder_service.url}/token", data=data), refusal)


def test_a_repeated_parameter_is_refused(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    body = httpx.QueryParams(exchange_form(fake_issuer.token())).add("audience", "other/project")
    response = http.post(
        f"{builder_service.url}/token",
        content=str(body),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert refused(response, errors.PARAMETER_REPEATED)


def test_a_json_body_is_refused(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    response = http.post(f"{builder_service.url}/token", json=exchange_form(fake_issuer.token()))
    assert refused(response, errors.FORM_REQUIRED)


def test_an_oversized_body_is_refused_before_it_is_read(
    http: httpx.Client, builder_service: RunningService
) -> None:
    response = http.post(f"{builder_service.url}/token", data={"subject_token": "x" * 20000})
    assert response.status_code == 413


def test_a_forged_token_is_an_invalid_grant(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    token = unsigned({"alg": "none"}, fake_issuer.claims())
    response = exchange(http, builder_service, token)
    assert refused(response, errors.ALG_REFUSED)
    assert response.headers["cache-control"] == "no-store"


THIRTY_YEARS = 30 * 365 * 86400


def _run_id_as_a_list(issuer: FakeIssuer) -> str:
    return issuer.token(run_id=["1234"])


def _sub_of_another_repository(issuer: FakeIssuer) -> str:
    return issuer.token(sub="repo:evil/other:pull_request")


def _repository_id_as_a_number(issuer: FakeIssuer) -> str:
    return issuer.token(repository_id=42)


def _thirty_years_of_life(issuer: FakeIssuer) -> str:
    now = int(time.time())
    return issuer.token(iat=now, exp=now + THIRTY_YEARS)


def _an_attackers_jwk_header(issuer: FakeIssuer) -> str:
    attacker = RSAKey.generate_key(2048, private=True)
    jwk = dict(attacker.as_dict(private=False))
    return signed(attacker, {"alg": "RS256", "kid": issuer.kid(), "jwk": jwk}, issuer.claims())


def _an_unknown_critical_extension(issuer: FakeIssuer) -> str:
    header = {"alg": "RS256", "kid": issuer.kid(), "crit": ["exp"], "exp": 1}
    return signed(issuer.key, header, issuer.claims())


@pytest.mark.parametrize(
    ("make", "refusal", "named"),
    [
        (_run_id_as_a_list, errors.CLAIM_INVALID, "run_id must be a string"),
        (_sub_of_another_repository, errors.SUBJECT_MISMATCH, "repo:octo-org/octo-repo"),
        (_repository_id_as_a_number, errors.CLAIM_INVALID, "repository_id must be a string"),
        (_thirty_years_of_life, errors.LIFETIME_TOO_LONG, "at most 3600 seconds"),
        (_an_attackers_jwk_header, errors.SIGNATURE_INVALID, ""),
        (_an_unknown_critical_extension, errors.CRIT_UNSUPPORTED, ""),
    ],
)
def test_a_token_no_honest_issuer_signs_is_an_invalid_grant_naming_its_cause(
    http: httpx.Client,
    builder_service: RunningService,
    fake_issuer: FakeIssuer,
    make: Any,
    refusal: errors.Refusal,
    named: str,
) -> None:
    response = exchange(http, builder_service, make(fake_issuer))
    assert refused(response, refusal), response.text
    assert named in response.json()["error_description"]
    assert await_live(builder_service) == {}


def test_a_token_no_relationship_allows_is_access_denied_naming_the_rule(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    response = exchange(http, builder_service, fake_issuer.token(repository="evil/octo-repo"))
    assert refused(response, errors.TRUST_DENIED)
    assert (
        "repository 'evil/octo-repo' is not the trusted one"
        in (response.json()["error_description"])
    )


def test_an_access_denied_never_names_what_a_relationship_trusts(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer, admin: AdminClient
) -> None:
    admin.add(
        {
            "project": "hidden/project",
            "issuer": fake_issuer.url,
            "repository": "hidden-org/hidden-repo",
            "events": ["merge_group"],
        }
    )
    admin.add(
        {
            "project": "hidden/project",
            "issuer": fake_issuer.url,
            "repository_pattern": "hidden-org/pattern-[0-9]+",
            "claims": {"actor": "hidden-actor"},
        }
    )
    response = exchange(http, builder_service, fake_issuer.token(), audience="hidden/project")
    assert refused(response, errors.TRUST_DENIED)
    description = response.json()["error_description"]
    assert "hidden" not in description and "merge_group" not in description
    assert "repository 'octo-org/octo-repo' is not the trusted one" in description


def test_a_replayed_token_is_refused(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token()
    first = exchange(http, builder_service, token)
    assert first.status_code == 200
    assert refused(exchange(http, builder_service, token), errors.REPLAYED)
    release(http, first.json())


def test_a_refused_token_does_not_use_up_its_jti(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token()
    assert refused(
        exchange(http, builder_service, token, audience="x/unknown"), errors.PROJECT_UNKNOWN
    )
    granted = exchange(http, builder_service, token)
    assert granted.status_code == 200
    release(http, granted.json())


def test_the_builder_limit_counts_live_builders_and_frees_on_release(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    first = exchange(http, builder_service, fake_issuer.token()).json()
    second = exchange(http, builder_service, fake_issuer.token()).json()
    third_token = fake_issuer.token()
    over = exchange(http, builder_service, third_token)
    assert refused(over, errors.BUILDER_LIMIT)
    assert 0 < int(over.headers["retry-after"]) <= 600
    release(http, first)
    again = exchange(http, builder_service, third_token)  # the refusal did not use it up
    assert again.status_code == 200, again.text
    release(http, second)
    release(http, again.json())


def test_the_builder_limit_holds_per_project(
    http: httpx.Client,
    builder_service: RunningService,
    fake_issuer: FakeIssuer,
    admin: AdminClient,
) -> None:
    admin.add(
        {
            "project": "other/project",
            "issuer": fake_issuer.url,
            "repository": PROJECT,
            "max_builders": 1,
        }
    )
    mine = exchange(http, builder_service, fake_issuer.token(), audience="other/project")
    assert mine.status_code == 200
    over = exchange(http, builder_service, fake_issuer.token(), audience="other/project")
    assert refused(over, errors.BUILDER_LIMIT)
    elsewhere = exchange(http, builder_service, fake_issuer.token())
    assert elsewhere.status_code == 200
    release(http, mine.json())
    release(http, elsewhere.json())


def test_one_run_cannot_hold_every_builder_of_a_project(
    http: httpx.Client, make_service: ServiceMaker, fake_issuer: FakeIssuer
) -> None:
    service = make_service(max_builders_per_run=1)
    with AdminClient(service.url, ADMIN_TOKEN) as admin:
        admin.add(
            {
                "project": PROJECT,
                "issuer": fake_issuer.url,
                "repository": PROJECT,
                "max_builders": 100,
            }
        )
    first = exchange(http, service, fake_issuer.token(run_id="1234"))
    assert first.status_code == 200, first.text
    again = exchange(http, service, fake_issuer.token(run_id="1234", run_attempt="2"))
    assert refused(again, errors.RUN_BUILDER_LIMIT)
    assert 0 < int(again.headers["retry-after"]) <= 600
    other_run = exchange(
        http, service, fake_issuer.token(run_id="5678", head_repository="someone/octo-repo")
    )
    assert other_run.status_code == 200, other_run.text
    release(http, first.json())
    release(http, other_run.json())


def test_one_head_repository_cannot_hold_every_builder_of_a_project(
    http: httpx.Client, make_service: ServiceMaker, fake_issuer: FakeIssuer
) -> None:
    service = make_service(max_builders_per_head_repository=1)
    with AdminClient(service.url, ADMIN_TOKEN) as admin:
        admin.add(
            {
                "project": PROJECT,
                "issuer": fake_issuer.url,
                "repository": PROJECT,
                "max_builders": 100,
            }
        )
    first = exchange(http, service, fake_issuer.token(run_id="1"))
    assert first.status_code == 200, first.text
    next_run = exchange(http, service, fake_issuer.token(run_id="2"))
    assert refused(next_run, errors.HEAD_REPOSITORY_BUILDER_LIMIT)
    other_fork = exchange(
        http, service, fake_issuer.token(run_id="3", head_repository="someone/octo-repo")
    )
    assert other_fork.status_code == 200, other_fork.text
    release(http, first.json())
    release(http, other_fork.json())


async def test_two_concurrent_exchanges_of_one_token_give_one_builder(
    builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token()
    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{builder_service.url}/token", data=exchange_form(token))
                for _ in range(2)
            )
        )
    assert sorted(a.status_code for a in answers) == [200, 400]
    loser = next(a for a in answers if a.status_code == 400)
    assert refused(loser, errors.REPLAYED)
    live = await_live(builder_service)
    assert len(live) == 1
    winner = next(a for a in answers if a.status_code == 200).json()
    with httpx.Client(timeout=30) as http:
        release(http, winner)


def await_live(service: RunningService) -> dict[str, int]:
    """The project's live builders, read from the store the service uses."""
    import redis

    client = redis.Redis.from_url(service.config.redis_url or "")
    try:
        import json

        raw = client.get(f"builder:live:{PROJECT}")
        return dict(json.loads(raw)) if raw else {}
    finally:
        client.close()


class LongLivedBackend:
    """A backend that breaks the rule: its builders are not ephemeral (a test double)."""

    name = "shared"

    def __init__(self, root: Path, on_stopped: OnStopped) -> None:
        self.started: list[str] = []
        self.stopped: list[str] = []

    async def start(self, spec: BuilderSpec) -> Builder:
        self.started.append(spec.id)
        return Builder(spec.id, "http://127.0.0.1:9", False, True, spec.expires_at)

    async def stop(self, builder_id: str) -> None:
        self.stopped.append(builder_id)

    async def close(self) -> None:
        pass


def test_a_pull_request_token_never_gets_a_builder_that_is_not_ephemeral(
    http: httpx.Client, make_service: ServiceMaker, fake_issuer: FakeIssuer
) -> None:
    service = make_service(start={"backend_factory": LongLivedBackend})
    with AdminClient(service.url, ADMIN_TOKEN) as admin:
        admin.add({"project": PROJECT, "issuer": fake_issuer.url, "repository": PROJECT})
    response = exchange(http, service, fake_issuer.token())
    assert refused(response, errors.NOT_EPHEMERAL)
    backend = service.service.backend
    assert isinstance(backend, LongLivedBackend)
    assert backend.stopped == backend.started != []


class FailingBackend(LongLivedBackend):
    """A backend that cannot start builders (a test double)."""

    async def start(self, spec: BuilderSpec) -> Builder:
        raise BackendError("no room")


def test_a_builder_that_cannot_start_frees_its_slot_and_its_token(
    http: httpx.Client, make_service: ServiceMaker, fake_issuer: FakeIssuer
) -> None:
    service = make_service(start={"backend_factory": FailingBackend})
    with AdminClient(service.url, ADMIN_TOKEN) as admin:
        admin.add(
            {
                "project": PROJECT,
                "issuer": fake_issuer.url,
                "repository": PROJECT,
                "max_builders": 1,
            }
        )
    token = fake_issuer.token()
    response = exchange(http, service, token)
    assert refused(response, errors.BACKEND_FAILED)
    assert response.headers["retry-after"] == "5"
    assert await_live(service) == {}
    assert refused(exchange(http, service, token), errors.BACKEND_FAILED)  # not REPLAYED
