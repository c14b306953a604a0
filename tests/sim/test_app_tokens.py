"""POST /app/installations/{id}/access_tokens: a GitHub App's JWT buys an installation token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from githubkit_schemas.v2022_11_28.models import InstallationToken
from joserfc import jwt
from joserfc.jwk import RSAKey

from issuer.sim import GitHubSim, SimRun
from tests.sim.support import UPSTREAM, FakeClock

APP_ID = 123456
INSTALLATION_ID = 7654321


@pytest.fixture(scope="module")
def app_key() -> RSAKey:
    return RSAKey.generate_key(2048)


@pytest.fixture(scope="module")
def stranger_key() -> RSAKey:
    return RSAKey.generate_key(2048)


@pytest.fixture
def installed(sim: GitHubSim, app_key: RSAKey) -> None:
    sim.add_app(APP_ID, app_key.as_pem(private=False).decode(), INSTALLATION_ID, limit=12500)


def app_jwt(key: RSAKey, now: float, **overrides: Any) -> str:
    claims = {"iss": APP_ID, "iat": int(now) - 60, "exp": int(now) + 540} | overrides
    return jwt.encode({"alg": "RS256"}, claims, key)


def ask(api: httpx.Client, token: str, installation: int = INSTALLATION_ID) -> httpx.Response:
    return api.post(
        f"/app/installations/{installation}/access_tokens",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.usefixtures("installed")
def test_a_valid_app_jwt_gets_an_installation_token(
    api: httpx.Client, app_key: RSAKey, clock: FakeClock
) -> None:
    response = ask(api, app_jwt(app_key, clock.now))
    assert response.status_code == 201
    body = response.json()
    InstallationToken.model_validate(body)
    assert body["token"].startswith("ghs_")
    assert body["repository_selection"] == "all"
    assert body["permissions"]["actions"] == "read"


@pytest.mark.usefixtures("installed")
def test_the_installation_token_reads_the_api_with_the_apps_limit(
    api: httpx.Client, app_key: RSAKey, clock: FakeClock, fork_run: SimRun
) -> None:
    token = ask(api, app_jwt(app_key, clock.now)).json()["token"]
    response = api.get(
        f"{UPSTREAM}/actions/runs/{fork_run.id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "12500"


@pytest.mark.usefixtures("installed")
def test_tokens_of_one_installation_share_its_rate_limit(
    api: httpx.Client, sim: GitHubSim, app_key: RSAKey, clock: FakeClock, fork_run: SimRun
) -> None:
    first = ask(api, app_jwt(app_key, clock.now)).json()["token"]
    second = ask(api, app_jwt(app_key, clock.now)).json()["token"]
    for token in (first, second):
        api.get(
            f"{UPSTREAM}/actions/runs/{fork_run.id}", headers={"Authorization": f"token {token}"}
        )
    assert sim.counted_requests(first) == sim.counted_requests(second) == 2


@pytest.mark.usefixtures("installed")
def test_the_installation_token_expires_after_an_hour(
    api: httpx.Client, app_key: RSAKey, clock: FakeClock, fork_run: SimRun
) -> None:
    token = ask(api, app_jwt(app_key, clock.now)).json()["token"]
    clock.advance(3600)
    response = api.get(
        f"{UPSTREAM}/actions/runs/{fork_run.id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


@pytest.mark.usefixtures("installed")
def test_a_new_installation_token_can_be_refused_for_a_while(
    api: httpx.Client, sim: GitHubSim, app_key: RSAKey, clock: FakeClock, fork_run: SimRun
) -> None:
    sim.settings.installation_token_delay = 5
    token = ask(api, app_jwt(app_key, clock.now)).json()["token"]
    url = f"{UPSTREAM}/actions/runs/{fork_run.id}"
    assert api.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    clock.advance(5)
    assert api.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.usefixtures("installed")
def test_the_issuer_claim_may_be_a_string(
    api: httpx.Client, app_key: RSAKey, clock: FakeClock
) -> None:
    assert ask(api, app_jwt(app_key, clock.now, iss=str(APP_ID))).status_code == 201


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (lambda now: {"exp": "soon"}, "'Expiration time' claim ('exp') must be a numeric value"),
        (
            lambda now: {"iat": now - 660, "exp": now - 60},
            "'Expiration time' claim ('exp') must be a numeric value",
        ),
        (
            lambda now: {"iat": now, "exp": now + 601},
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (lambda now: {"iat": now + 30}, "'Issued at' claim ('iat') must be an Integer"),
        (lambda now: {"iss": 999}, "Integration not found"),
    ],
    ids=["exp-not-a-number", "expired", "exp-too-far", "iat-in-future", "unknown-app"],
)
def test_a_bad_app_jwt_gets_401(
    api: httpx.Client,
    app_key: RSAKey,
    clock: FakeClock,
    claims: Callable[[int], dict[str, Any]],
    message: str,
) -> None:
    response = ask(api, app_jwt(app_key, clock.now, **claims(int(clock.now))))
    assert response.status_code == 401
    assert response.json()["message"].startswith(message)


@pytest.mark.usefixtures("installed")
def test_a_jwt_signed_by_another_key_gets_401(
    api: httpx.Client, stranger_key: RSAKey, clock: FakeClock
) -> None:
    response = ask(api, app_jwt(stranger_key, clock.now))
    assert response.status_code == 401
    assert response.json()["message"] == "A JSON web token could not be decoded"


@pytest.mark.usefixtures("installed")
def test_a_personal_token_cannot_mint_installation_tokens(
    api: httpx.Client, sim: GitHubSim
) -> None:
    sim.add_token("ghp_a")
    assert ask(api, "ghp_a").status_code == 401


@pytest.mark.usefixtures("installed")
def test_another_installation_is_404(api: httpx.Client, app_key: RSAKey, clock: FakeClock) -> None:
    assert ask(api, app_jwt(app_key, clock.now), installation=1).status_code == 404
