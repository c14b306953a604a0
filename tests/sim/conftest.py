from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from issuer.sim import GitHubSim, SimRepo, SimRun, create_sim_app
from issuer.web.serving import BackgroundServer, bound_socket
from tests.sim.receiver import Receiver
from tests.sim.support import GITHUB_HEADERS, FakeClock


class _Switch:
    """One server for the whole session (starting and stopping uvicorn per test is slow);
    each test plugs its own simulator's app in. `serve_sim` itself has its own test."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.app is not None, "no simulator plugged in"
        await self.app(scope, receive, send)


@pytest.fixture(scope="session")
def _switched() -> Iterator[tuple[BackgroundServer, _Switch]]:
    switch = _Switch()
    running = BackgroundServer(switch, sockets=[bound_socket(), bound_socket()]).start()
    yield running, switch
    running.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> GitHubSim:
    return GitHubSim(clock=clock)


@pytest.fixture
def server(
    sim: GitHubSim, _switched: tuple[BackgroundServer, _Switch]
) -> Iterator[BackgroundServer]:
    """Serves `sim`: API at url_of(0), log blobs at url_of(1), as `serve_sim` does."""
    running, switch = _switched
    switch.app = create_sim_app(sim)
    sim.blob_base_url = running.url_of(1)
    sim.api_base_url = running.url_of(0)
    yield running
    switch.app = None


@pytest.fixture
def api(server: BackgroundServer, sim: GitHubSim) -> Iterator[httpx.Client]:
    base = server.url_of(0) + sim.api_prefix
    with httpx.Client(base_url=base, headers=GITHUB_HEADERS, timeout=10) as client:
        yield client


@pytest.fixture
def upstream(sim: GitHubSim) -> SimRepo:
    return sim.add_repository("octo-org/octo-repo", owner_type="Organization")


@pytest.fixture
def fork(sim: GitHubSim, upstream: SimRepo) -> SimRepo:
    return sim.add_repository("contributor/octo-repo", fork_of=upstream)


@pytest.fixture
def fork_run(sim: GitHubSim, upstream: SimRepo, fork: SimRepo) -> SimRun:
    return sim.create_run(upstream, head_repository=fork, actor="contributor")


@pytest.fixture(scope="session")
def _receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def receiver(_receiver: Receiver) -> Iterator[Receiver]:
    """A webhook endpoint on loopback (tests/sim/receiver.py), emptied for each test."""
    yield _receiver.reset()
    _receiver.gate.set()
