from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from issuer.github.app_auth import GitHubApp
from issuer.github.client import GitHubClient
from issuer.github.credentials import InstallationCredential
from issuer.sim import GitHubSim, SimRepo, SimRun, create_sim_app
from issuer.store import MemoryStore, Store
from tests.github.support import API, BLOBS, RecordingTransport, Sleeper
from tests.sim.support import FakeClock

APP_ID = 31337
INSTALLATION_ID = 4242

MakeClient = Callable[..., GitHubClient]


@pytest.fixture(scope="session")
def app_key() -> RSAKey:
    return RSAKey.generate_key(2048)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeper(clock: FakeClock) -> Sleeper:
    return Sleeper(clock)


@pytest.fixture
def sim(clock: FakeClock) -> GitHubSim:
    github = GitHubSim(clock=clock)
    github.blob_base_url = BLOBS
    return github


@pytest.fixture
def transport(sim: GitHubSim) -> RecordingTransport:
    return RecordingTransport(httpx.ASGITransport(app=create_sim_app(sim)))


@pytest.fixture
def upstream(sim: GitHubSim) -> SimRepo:
    return sim.add_repository("octo-org/octo-repo", owner_type="Organization")


@pytest.fixture
def fork(sim: GitHubSim, upstream: SimRepo) -> SimRepo:
    return sim.add_repository("contributor/octo-repo", fork_of=upstream)


@pytest.fixture
def fork_run(sim: GitHubSim, upstream: SimRepo, fork: SimRepo) -> SimRun:
    return sim.create_run(upstream, head_repository=fork, actor="contributor")


@pytest.fixture
def installed(sim: GitHubSim, app_key: RSAKey) -> None:
    sim.add_app(APP_ID, app_key.as_pem(private=False).decode(), INSTALLATION_ID, limit=12500)


@pytest.fixture
def installation(app_key: RSAKey, clock: FakeClock) -> InstallationCredential:
    return InstallationCredential(
        GitHubApp(APP_ID, app_key, clock=clock), INSTALLATION_ID, clock=clock
    )


@pytest.fixture
async def make_client(
    transport: RecordingTransport, clock: FakeClock, sleeper: Sleeper
) -> AsyncIterator[MakeClient]:
    """GitHubClient against the simulator; the fake clock and sleep unless told otherwise."""
    made: list[GitHubClient] = []

    def make(
        tokens: tuple[str, ...] = (), store: Store | None = None, **options: Any
    ) -> GitHubClient:
        options.setdefault("transport", transport)
        options.setdefault("clock", clock)
        options.setdefault("sleep", sleeper)
        client = GitHubClient(API, tokens, store or MemoryStore(), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()
