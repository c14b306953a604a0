from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from issuer.store import MemoryStore, RedisStore, Store
from tests.redis_server import RedisServer


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
