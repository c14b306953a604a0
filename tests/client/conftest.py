"""The client as a runner runs it: the e2e fixtures (simulator, live issuer, fork run)."""

from __future__ import annotations

import pytest

from issuer.sim import GitHubSim
from issuer.web.serving import BackgroundServer
from tests.e2e.conftest import github, http, issuer_url, pr, sim

__all__ = ["github", "http", "issuer_url", "pr", "sim"]


@pytest.fixture
def github_url_and_sim(
    github: BackgroundServer,
    sim: GitHubSim,
) -> tuple[str, GitHubSim]:
    return github.url_of(0), sim
