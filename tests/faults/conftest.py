from __future__ import annotations

from collections.abc import Iterator

import pytest

from issuer.serving import BackgroundServer
from issuer.sim import GitHubSim, SimSettings
from issuer.sim.serve import serve_sim
from tests.e2e.harness import GITHUB_TOKEN


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
