"""GitHub App installations as credentials: tokens minted with the App's JWT, kept in memory
until shortly before they expire, refreshed once when GitHub refuses them."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from issuer.github.app_auth import GitHubApp
from issuer.github.credentials import InstallationCredential, TokenCredential
from issuer.github.errors import GitHubRateLimited
from issuer.sim import GitHubSim, SimRun
from issuer.store import MemoryStore
from tests.github.conftest import APP_ID, INSTALLATION_ID, MakeClient
from tests.github.support import API, UPSTREAM, RecordingTransport, Sleeper
from tests.sim.support import FakeClock

pytestmark = pytest.mark.usefixtures("installed")


def run_path(run: SimRun) -> str:
    return f"/repos/{UPSTREAM}/actions/runs/{run.id}"


def mints(transport: RecordingTransport) -> int:
    return sum(
        r.method == "POST" and r.url.path.endswith("/access_tokens") for r in transport.requests
    )


def test_the_app_jwt_is_rs256_backdated_a_minute_and_lives_under_ten(
    app_key: RSAKey, clock: FakeClock
) -> None:
    token = GitHubApp(APP_ID, app_key, clock=clock).jwt()
    decoded = jwt.decode(token, app_key, algorithms=["RS256"])
    now = int(clock.now)
    assert decoded.header["alg"] == "RS256"
    assert decoded.claims["iss"] == APP_ID
    assert decoded.claims["iat"] == now - 60
    assert decoded.claims["exp"] - decoded.claims["iat"] <= 600
    assert now < decoded.claims["exp"] < now + 600


async def test_a_request_goes_out_with_a_minted_installation_token(
    sim: GitHubSim,
    make_client: MakeClient,
    transport: RecordingTransport,
    installation: InstallationCredential,
    fork_run: SimRun,
) -> None:
    github = make_client(credentials=[installation])
    page = await github.get_json(run_path(fork_run))
    assert page.body["id"] == fork_run.id
    [token] = sim.installation_tokens(INSTALLATION_ID)
    [read] = [r for r in transport.to(API) if r.method == "GET"]
    assert read.headers["authorization"] == f"Bearer {token}"


async def test_an_installation_is_named_by_app_and_installation_id(
    make_client: MakeClient, installation: InstallationCredential
) -> None:
    github = make_client(credentials=[installation])
    assert github.credential_names == [f"app-{APP_ID}-inst-{INSTALLATION_ID}"]


async def test_one_installation_token_serves_many_requests(
    make_client: MakeClient,
    transport: RecordingTransport,
    installation: InstallationCredential,
    fork_run: SimRun,
) -> None:
    github = make_client(credentials=[installation])
    for n in range(1, 6):
        await github.get_json(f"{run_path(fork_run)}/jobs?per_page={n}")
    assert mints(transport) == 1


async def test_the_installation_token_is_renewed_shortly_before_it_expires(
    make_client: MakeClient,
    transport: RecordingTransport,
    installation: InstallationCredential,
    fork_run: SimRun,
    clock: FakeClock,
) -> None:
    github = make_client(credentials=[installation])
    await github.get_json(run_path(fork_run))
    clock.advance(3600 - 299)
    await github.get_json(f"{run_path(fork_run)}/jobs")
    assert mints(transport) == 2


async def test_a_revoked_installation_token_is_replaced_once(
    sim: GitHubSim,
    make_client: MakeClient,
    transport: RecordingTransport,
    installation: InstallationCredential,
    fork_run: SimRun,
    clock: FakeClock,
) -> None:
    github = make_client(credentials=[installation])
    await github.get_json(run_path(fork_run))
    clock.advance(60)
    [old] = sim.installation_tokens(INSTALLATION_ID)
    sim.revoke_token(old)
    page = await github.get_json(f"{run_path(fork_run)}/jobs")
    assert page.body["total_count"] == 0
    assert mints(transport) == 2


async def test_an_installation_whose_new_tokens_keep_being_refused_rests(
    sim: GitHubSim,
    make_client: MakeClient,
    transport: RecordingTransport,
    installation: InstallationCredential,
    fork_run: SimRun,
    clock: FakeClock,
) -> None:
    github = make_client(credentials=[installation])
    await github.get_json(run_path(fork_run))
    clock.advance(60)
    sim.revoke_token(sim.installation_tokens(INSTALLATION_ID)[0])
    sim.settings.installation_token_delay = 3600  # every new token refused for an hour
    with pytest.raises(GitHubRateLimited):
        await github.get_json(f"{run_path(fork_run)}/jobs")
    assert mints(transport) == 2


async def test_a_brand_new_token_refused_for_a_few_seconds_is_waited_for(
    sim: GitHubSim,
    make_client: MakeClient,
    transport: RecordingTransport,
    installation: InstallationCredential,
    fork_run: SimRun,
    sleeper: Sleeper,
) -> None:
    sim.settings.installation_token_delay = 3
    github = make_client(credentials=[installation])
    page = await github.get_json(run_path(fork_run))
    assert page.body["id"] == fork_run.id
    assert mints(transport) == 1
    assert 3 <= sum(sleeper.calls) <= 6


async def test_a_new_token_refused_for_a_while_sends_the_request_elsewhere(
    sim: GitHubSim,
    make_client: MakeClient,
    installation: InstallationCredential,
    fork_run: SimRun,
    sleeper: Sleeper,
) -> None:
    sim.settings.installation_token_delay = 5
    sim.add_token("ghp_backup")
    github = make_client(("ghp_backup",), credentials=[installation])
    await github.get_json(run_path(fork_run))  # both unknown: the token, configured first
    await github.get_json(f"{run_path(fork_run)}/jobs")  # the installation: 12500 left
    assert sim.counted_requests("ghp_backup") == 2
    assert sleeper.calls == []


async def test_an_installation_github_will_not_mint_for_rests_while_another_answers(
    sim: GitHubSim,
    make_client: MakeClient,
    transport: RecordingTransport,
    app_key: RSAKey,
    clock: FakeClock,
    fork_run: SimRun,
) -> None:
    sim.add_token("ghp_backup")
    stranger = InstallationCredential(GitHubApp(APP_ID, app_key, clock=clock), 999, clock=clock)
    github = make_client(credentials=[stranger, TokenCredential("ghp_backup")])
    await github.get_json(run_path(fork_run))
    await github.get_json(f"{run_path(fork_run)}/jobs")
    assert mints(transport) == 1
    assert sim.counted_requests("ghp_backup") == 2


async def test_installation_tokens_are_not_kept_in_the_store(
    sim: GitHubSim,
    make_client: MakeClient,
    installation: InstallationCredential,
    fork_run: SimRun,
) -> None:
    store = MemoryStore()
    github = make_client(credentials=[installation], store=store)
    await github.get_json(run_path(fork_run))
    [token] = sim.installation_tokens(INSTALLATION_ID)
    stored = [value for value, _ in store._values.values()]
    assert stored and all(token.encode() not in value for value in stored)


async def test_a_renewal_keeps_the_old_token_while_github_may_refuse_the_new_one(
    sim: GitHubSim,
    make_client: MakeClient,
    transport: RecordingTransport,
    installation: InstallationCredential,
    fork_run: SimRun,
    clock: FakeClock,
    sleeper: Sleeper,
) -> None:
    github = make_client(credentials=[installation])
    await github.get_json(run_path(fork_run))
    [old] = sim.installation_tokens(INSTALLATION_ID)
    clock.advance(3600 - 299)
    sim.settings.installation_token_delay = 5
    await github.get_json(f"{run_path(fork_run)}/jobs")
    [*_, last] = [r for r in transport.to(API) if r.method == "GET"]
    assert mints(transport) == 2
    assert last.headers["authorization"] == f"Bearer {old}"
    assert sleeper.calls == []


async def test_after_a_renewal_the_new_token_takes_over(
    sim: GitHubSim,
    make_client: MakeClient,
    transport: RecordingTransport,
    installation: InstallationCredential,
    fork_run: SimRun,
    clock: FakeClock,
) -> None:
    github = make_client(credentials=[installation])
    await github.get_json(run_path(fork_run))
    clock.advance(3600 - 299)
    await github.get_json(f"{run_path(fork_run)}/jobs")
    clock.advance(10)
    await github.get_json(f"{run_path(fork_run)}/attempts/1")
    [_, new] = sim.installation_tokens(INSTALLATION_ID)
    [*_, last] = [r for r in transport.to(API) if r.method == "GET"]
    assert last.headers["authorization"] == f"Bearer {new}"
