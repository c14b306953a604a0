from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from issuer.sim import GitHubSim, SimSettings
from issuer.sim.serve import serve_sim
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import GITHUB_TOKEN, ForkRun, fork_run, issuer_in_thread


@pytest.fixture
def sim() -> GitHubSim:
    github = GitHubSim(SimSettings())
    github.add_token(GITHUB_TOKEN)
    return github


@pytest.fixture
def github(sim: GitHubSim) -> Iterator[BackgroundServer]:
    server = serve_sim(sim)
    yield server
    server.stop()


@pytest.fixture
def issuer_url(github: BackgroundServer) -> Iterator[str]:
    with issuer_in_thread(github.url_of(0)) as (url, _config):
        yield url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=40) as client:
        yield client


@pytest.fixture
def pr(sim: GitHubSim) -> ForkRun:
    return fork_run(sim)
