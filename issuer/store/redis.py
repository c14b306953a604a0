"""Redis store: standalone, Sentinel or Cluster, through redis-py's asyncio client."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from issuer.store.base import Get, HashGet

# KEYS[1]; ARGV: 1 if the key must be absent, the expected value, the new value, PX or "".
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""

# KEYS[1]; ARGV: the expiry in ms of a new counter.
_INCR = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# KEYS[1]; ARGV: field, value, expiry in ms or "". The expiry is only ever lengthened.
_HASH_SET = """
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  local left = redis.call('PTTL', KEYS[1])
  if left < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return new
"""


def _ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


POOL_CONNECTIONS = 64
POOL_WAIT_SECONDS = 10
WIDE_POOL_CONNECTIONS = 1024


class StoreUnavailable(Exception):
    """Redis could not be reached or answered with an error."""


def connect(url: str) -> Any:
    """A redis-py asyncio client for ``url``.

    ``redis://`` / ``rediss://`` is standalone; ``redis+cluster://`` a Cluster (any node);
    ``redis+sentinel://host:port[,host:port]/MASTER_NAME`` a Sentinel-managed master.
    """
    scheme = urlsplit(url).scheme
    if scheme in ("redis+cluster", "rediss+cluster"):
        # Cluster pools are per node and cannot block: make them wide enough for bursts.
        return RedisCluster.from_url(
            url.replace("+cluster", "", 1), max_connections=WIDE_POOL_CONNECTIONS
        )
    if scheme == "redis+sentinel":
        parts = urlsplit(url)
        hosts = []
        for hostport in parts.netloc.split("@")[-1].split(","):
            host, _, port = hostport.partition(":")
            hosts.append((host, int(port or 26379)))
        master = parts.path.strip("/") or parse_qs(parts.query).get("master", ["mymaster"])[0]
        sentinel = Sentinel(hosts, password=parts.password)  # type: ignore[no-untyped-call]
        return sentinel.master_for(master, max_connections=WIDE_POOL_CONNECTIONS)
    # A burst of requests (a thousand long polls waking at once) waits for a connection
    # instead of failing: redis-py's default pool refuses its 101st concurrent command.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_SECONDS
    )
    return aioredis.Redis(connection_pool=pool)


class RedisStore:
    def __init__(self, client: Any) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        return cls(connect(url))

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(key)
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return None if value is None else bytes(value)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            if hasattr(self._redis, "mget_nonatomic"):  # a Cluster: keys span slots
                values = await self._redis.mget_nonatomic(keys)
            else:
                values = await self._redis.mget(keys)
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return [None if value is None else bytes(value) for value in values]

    async def read_many(self, reads: Sequence[Get | HashGet]) -> list[bytes | None]:
        if not reads:
            return []
        try:
            # Not a transaction: a Cluster pipeline sends each command to its slot's node.
            async with self._redis.pipeline(transaction=False) as pipe:
                for read in reads:
                    if isinstance(read, HashGet):
                        pipe.hget(read.key, read.field)
                    else:
                        pipe.get(read.key)
                values = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return [None if value is None else bytes(value) for value in values]

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        try:
            written = await self._redis.set(key, value, px=px, nx=only_if_absent)
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return bool(written)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, *, ttl: float | None = None
    ) -> bool:
        absent = b"1" if expected is None else b"0"
        px = b"" if ttl is None else str(max(1, math.ceil(ttl * 1000))).encode()
        try:
            written = await self._redis.eval(
                _COMPARE_AND_SET, 1, key, absent, expected or b"", new, px
            )
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return bool(written)

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._redis.delete(key))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def incr(self, key: str, *, ttl: float) -> int:
        try:
            return int(await self._redis.eval(_INCR, 1, key, _ms(ttl)))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def hash_set(
        self, key: str, field: str, value: bytes, *, ttl: float | None = None
    ) -> bool:
        px = b"" if ttl is None else str(_ms(ttl)).encode()
        try:
            return bool(await self._redis.eval(_HASH_SET, 1, key, field, value, px))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def hash_get(self, key: str, field: str) -> bytes | None:
        try:
            value = await self._redis.hget(key, field)
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return None if value is None else bytes(value)

    async def hash_get_all(self, key: str) -> dict[str, bytes]:
        try:
            found = await self._redis.hgetall(key)
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return {field.decode(): bytes(value) for field, value in found.items()}

    async def hash_delete(self, key: str, *fields: str) -> int:
        if not fields:
            return 0
        try:
            return int(await self._redis.hdel(key, *fields))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
