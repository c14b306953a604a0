from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.redis_acl import AclRedis


@pytest.fixture(scope="session")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    """A redis-server loaded with the Redis users that ship, and their passwords."""
    server = AclRedis.start(tmp_path_factory.mktemp("acl-redis"))
    yield server
    server.stop()
