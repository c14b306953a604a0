"""The client as a runner runs it: the e2e fixtures (simulator, live issuer, fork run); and,
for ``issuer build``, a real builder service whose builders are stand-ins (tests/client/
standin.py) trusting an issuer whose keys the test holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from issuer.builder.adminclient import AdminClient
from issuer.sim import GitHubSim
from issuer.web.serving import BackgroundServer
from tests.builder.conftest import RunningService, start_service
from tests.builder.support import ADMIN_TOKEN, PROJECT, FakeIssuer
from tests.client.standin import StandInBuilders
from tests.e2e.conftest import github, http, issuer_url, pr, sim
from tests.redis_server import RedisServer

__all__ = ["github", "http", "issuer_url", "pr", "sim"]


@pytest.fixture
def github_url_and_sim(
    github: BackgroundServer,
    sim: GitHubSim,
) -> tuple[str, GitHubSim]:
    return github.url_of(0), sim


@pytest.fixture(scope="session")
def _oidc_issuer() -> Iterator[FakeIssuer]:
    issuer = FakeIssuer()
    yield issuer
    issuer.stop()


@pytest.fixture
def oidc_issuer(_oidc_issuer: FakeIssuer) -> FakeIssuer:
    """The issuer the builder service trusts: its tokens are the workflow's OIDC tokens."""
    return _oidc_issuer.reset()


@pytest.fixture(scope="session")
def _standins() -> Iterator[StandInBuilders]:
    builders = StandInBuilders()
    yield builders
    builders.stop()


@pytest.fixture
def standins(_standins: StandInBuilders) -> Iterator[StandInBuilders]:
    """The builders' endpoints: by default a one-step build that succeeds."""
    _standins.reset()
    yield _standins
    _standins.open_gates()


@pytest.fixture(scope="module")
def _builder_service(
    redis_server: RedisServer,
    _oidc_issuer: FakeIssuer,
    _standins: StandInBuilders,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningService]:
    service = start_service(
        redis_server.url,
        _oidc_issuer.url,
        tmp_path_factory.mktemp("scratch"),
        {"backend_factory": _standins.backend},
    )
    yield service
    service.stop()


@pytest.fixture
def builder_service(
    redis_url: str, _builder_service: RunningService, standins: StandInBuilders
) -> RunningService:
    """A real builder service (Redis emptied for each test) starting stand-in builders."""
    return _builder_service


@pytest.fixture
def trust(builder_service: RunningService) -> Iterator[AdminClient]:
    with AdminClient(builder_service.url, ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def trusted(trust: AdminClient, oidc_issuer: FakeIssuer) -> dict[str, Any]:
    """The project trusts pull_request tokens of its own repository."""
    return trust.add(
        {"project": PROJECT, "issuer": oidc_issuer.url, "repository": PROJECT, "max_builders": 2}
    )


@pytest.fixture
def context_dir(tmp_path: Path) -> Path:
    """A small build context with a Dockerfile."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    (context / "app").write_text("the app\n")
    return context
