from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from issuer.builder.localregistry import LocalRegistry, push_busybox_base
from issuer.store import MemoryStore, RedisStore, Store
from tests.image_registry import ImageRegistry
from tests.redis_server import RedisServer
from tests.simulator_guard import check_simulators, provoked, simulators_made

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_secondary_limit_refusals(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every GitHub simulator the test makes must end without a secondary-limit refusal it did
    not ask for (tests/simulator_guard.py)."""
    with simulators_made(monkeypatch) as made:
        yield
    check_simulators(made, provoked=provoked(request))


@pytest.fixture(scope="session")
def scratch_base() -> Iterator[Path]:
    """A directory for builders' scratch roots that a sandbox's ids may pass through (as
    ``BUILDER_SCRATCH_ROOT``'s parents must be: pytest's own temporary directories are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="issuer-test-scratch-"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def image_registry() -> Iterator[ImageRegistry]:
    """One registry for the whole test session (builds pull their base image from it and push
    their images to it)."""
    with LocalRegistry() as registry:
        yield ImageRegistry(registry, push_busybox_base(registry.host))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Each store test runs against both implementations."""
    if request.param == "memory":
        memory = MemoryStore()
        yield memory
        await memory.close()
        return
    url = request.getfixturevalue("redis_url")
    redis_store = RedisStore.from_url(url)
    yield redis_store
    await redis_store.close()
