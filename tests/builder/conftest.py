from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from issuer.builder.adminclient import AdminClient
from issuer.builder.app import create_app
from issuer.builder.config import BuilderConfig
from issuer.builder.service import BuilderService
from issuer.store import RedisStore
from issuer.web.serving import BackgroundServer, bound_socket
from tests.builder.support import ADMIN_TOKEN, AUDIENCE, PROJECT, FakeIssuer
from tests.image_registry import ImageRegistry
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def _issuer_servers() -> Iterator[tuple[FakeIssuer, FakeIssuer]]:
    first, second = FakeIssuer(), FakeIssuer()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
def fake_issuer(_issuer_servers: tuple[FakeIssuer, FakeIssuer]) -> FakeIssuer:
    """The issuer the builder service trusts, reset for each test."""
    return _issuer_servers[0].reset()


@pytest.fixture
def other_issuer(_issuer_servers: tuple[FakeIssuer, FakeIssuer]) -> FakeIssuer:
    """A second issuer, with keys of its own."""
    return _issuer_servers[1].reset()


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_url)
    yield store
    await store.close()


class RunningService:
    """A builder service on a real loopback socket, in a thread of this process."""

    def __init__(self, config: BuilderConfig, **start: Any) -> None:
        self.config = config
        self.url = config.url
        self._app = create_app(lambda: BuilderService.start(config, **start))

    def start(self, sock: Any) -> RunningService:
        self._server = BackgroundServer(self._app, [sock]).start()
        return self

    @property
    def service(self) -> BuilderService:
        service: BuilderService = self._app.state.service
        return service

    def stop(self) -> None:
        self._server.stop()


ServiceMaker = Callable[..., RunningService]


def start_service(
    redis_url: str,
    issuer_url: str,
    scratch: Path,
    start: dict[str, Any] | None = None,
    *,
    registry: ImageRegistry | None = None,
    **changes: Any,
) -> RunningService:
    sock = bound_socket()
    url = "http://{}:{}".format(*sock.getsockname()[:2])
    registries = () if registry is None else (registry.host,)
    config = BuilderConfig(
        url=url,
        audience=AUDIENCE,
        trusted_issuers=(issuer_url,),
        redis_url=redis_url,
        admin_token=ADMIN_TOKEN,
        scratch_root=scratch,
        build_timeout=60,
        registries=registries,
        insecure_registries=registries,
    )
    config = dataclasses.replace(config, **changes)
    return RunningService(config, **(start or {})).start(sock)


@pytest.fixture
def make_service(
    redis_url: str, fake_issuer: FakeIssuer, scratch_base: Path, image_registry: ImageRegistry
) -> Iterator[ServiceMaker]:
    """Start a builder service of its own trusting ``fake_issuer``, pulling from the test
    registry; keyword arguments change its config (``start`` is passed to
    BuilderService.start)."""
    running: list[RunningService] = []

    def make(start: dict[str, Any] | None = None, **changes: Any) -> RunningService:
        scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=scratch_base))
        running.append(
            start_service(
                redis_url, fake_issuer.url, scratch, start, registry=image_registry, **changes
            )
        )
        return running[-1]

    yield make
    for service in reversed(running):
        service.stop()


@pytest.fixture(scope="module")
def _module_service(
    redis_server: RedisServer,
    _issuer_servers: tuple[FakeIssuer, FakeIssuer],
    scratch_base: Path,
    image_registry: ImageRegistry,
) -> Iterator[RunningService]:
    service = start_service(
        redis_server.url,
        _issuer_servers[0].url,
        Path(tempfile.mkdtemp(prefix="scratch-", dir=scratch_base)),
        registry=image_registry,
    )
    yield service
    service.stop()


@pytest.fixture
def builder_service(redis_url: str, _module_service: RunningService) -> RunningService:
    """The test module's builder service, trusting ``fake_issuer``; Redis is emptied before
    each test (``redis_url``), so no trust relationship, token or builder count carries over."""
    return _module_service


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def admin(builder_service: RunningService) -> Iterator[AdminClient]:
    with AdminClient(builder_service.url, ADMIN_TOKEN) as client:
        yield client


@pytest.fixture
def trusted(admin: AdminClient, fake_issuer: FakeIssuer) -> dict[str, Any]:
    """The project trusts pull_request tokens of its own repository from ``fake_issuer``."""
    return admin.add(
        {"project": PROJECT, "issuer": fake_issuer.url, "repository": PROJECT, "max_builders": 2}
    )


def exchange_form(token: str, project: str = PROJECT, **extra: str) -> dict[str, str]:
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "audience": project,
    }
    form.update(extra)
    return form


def exchange(
    http: httpx.Client, service: RunningService, token: str, **extra: str
) -> httpx.Response:
    return http.post(f"{service.url}/token", data=exchange_form(token, **extra))
