"""Redis store: standalone, Sentinel or Cluster, through redis-py's asyncio client."""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import NoPermissionError, NoScriptError, RedisError

from issuer.store.base import Bump, Draw, Get, HashGet, HashPut, Put, Write, check_draw

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
local by = tonumber(ARGV[2] or '1')
local count = redis.call('INCRBY', KEYS[1], by)
if count == by then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# KEYS[1]; ARGV: expiry in ms or "", then field, value, field, value... The expiry is only
# ever lengthened. Answers how many fields are new. One HSET a field: `unpack` of thousands
# of arguments overflows Lua's stack ("too many results to unpack").
_HASH_SET = """
local new = 0
for i = 2, #ARGV, 2 do
  new = new + redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[1] ~= '' then
  local left = redis.call('PTTL', KEYS[1])
  if left < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
end
return new
"""

# Token buckets (Store.draw). KEYS: the buckets, in one hash slot, each a string "level at";
# ARGV: cost, rate (points a second), capacity, floor, the keys' expiry in ms. The time is
# Redis's own (TIME), so replicas whose clocks differ still see one bucket alike. Answers
# {index from 1 or 0 for none, wait, level}, numbers as strings (Redis would cut them to
# integers). The slack is memory.DRAW_SLACK.
_DRAW = """
local cost, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local capacity, floor = tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local best, best_level = 0, -1
for i, key in ipairs(KEYS) do
  local level = capacity
  local state = redis.call('GET', key)
  if state then
    local was, at = string.match(state, '^(%S+) (%S+)$')
    was, at = tonumber(was), tonumber(at)
    if was and at then level = math.min(capacity, was + math.max(0, now - at) * rate) end
  end
  if level > best_level then best, best_level = i, level end
end
if best_level + 1e-6 < floor + cost then
  local wait = (floor + cost - best_level) / rate
  return {0, string.format('%.6f', wait), string.format('%.6f', best_level)}
end
local left = best_level - cost
redis.call('SET', KEYS[best], string.format('%.6f %.6f', left, now), 'PX', ARGV[5])
return {best, '0', string.format('%.6f', left)}
"""
_DRAW_SHA = hashlib.sha1(_DRAW.encode(), usedforsecurity=False).hexdigest()


def _ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


def _commands(write: Write) -> int:
    """How many commands :func:`_queue` adds for ``write``."""
    return 0 if isinstance(write, HashPut) and not write.fields else 1


def _queue(pipe: Any, write: Write, prefix: str) -> None:
    """Add ``write`` (its key under ``prefix``) to a redis-py pipeline, each write one command
    (scripts where a write needs two steps, so that each stays atomic)."""
    key = prefix + write.key
    if isinstance(write, Put):
        pipe.set(key, write.value, px=None if write.ttl is None else _ms(write.ttl))
    elif isinstance(write, HashPut):
        if not write.fields:
            return
        px = b"" if write.ttl is None else str(_ms(write.ttl)).encode()
        pairs = [part for field, value in write.fields.items() for part in (field, value)]
        pipe.eval(_HASH_SET, 1, key, px, *pairs)
    elif isinstance(write, Bump):
        pipe.eval(_INCR, 1, key, _ms(write.ttl), write.by)
    else:
        pipe.delete(key)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


POOL_CONNECTIONS = 64
WIDE_POOL_CONNECTIONS = 1024
OPERATION_TIMEOUT = 5.0  # seconds for one round trip: waiting for its turn, and the pipeline
CONNECT_TIMEOUT = 5.0


class StoreUnavailable(Exception):
    """Redis could not be reached or answered with an error."""


class _ScriptMissing(StoreUnavailable):
    """EVALSHA of a script this Redis has not cached (a new node, a restart): send it whole."""


def _unavailable(error: Exception) -> StoreUnavailable:
    """The error's kind, never its text (it could quote a value); a refusal by the Redis ACL
    says where to look, since it is an operator's fix, not a passing fault."""
    if isinstance(error, NoScriptError):
        return _ScriptMissing("NoScriptError")
    if isinstance(error, NoPermissionError):
        return StoreUnavailable(
            "NoPermissionError: the Redis ACL user may not run this command on this key "
            "(see deploy/redis/users.conf)"
        )
    return StoreUnavailable(type(error).__name__)


def connect(url: str) -> Any:
    """A redis-py asyncio client for ``url``.

    ``redis://`` / ``rediss://`` is standalone; ``redis+cluster://`` a Cluster (any node);
    ``redis+sentinel://host:port[,host:port]/MASTER_NAME`` a Sentinel-managed master.

    No socket timeout is set in redis-py: :class:`RedisStore` bounds each whole call instead,
    more cheaply (redis-py's socket timeout starts a task for every command it sends).
    """
    timeouts: dict[str, Any] = {"socket_timeout": None, "socket_connect_timeout": CONNECT_TIMEOUT}
    scheme = urlsplit(url).scheme
    if scheme in ("redis+cluster", "rediss+cluster"):
        # Cluster pools are per node and cannot block: make them wide enough for bursts.
        return RedisCluster.from_url(
            url.replace("+cluster", "", 1), max_connections=WIDE_POOL_CONNECTIONS, **timeouts
        )
    if scheme == "redis+sentinel":
        parts = urlsplit(url)
        hosts = []
        for hostport in parts.netloc.split("@")[-1].split(","):
            host, _, port = hostport.partition(":")
            hosts.append((host, int(port or 26379)))
        master = parts.path.strip("/") or parse_qs(parts.query).get("master", ["mymaster"])[0]
        # The master is logged in to as the URL's user (a Redis ACL user), not as `default`.
        login = {"username": parts.username, "password": parts.password}
        sentinel = Sentinel(hosts, **login, **timeouts)  # type: ignore[no-untyped-call]
        return sentinel.master_for(master, max_connections=WIDE_POOL_CONNECTIONS, **timeouts)
    pool = ConnectionPool.from_url(url, max_connections=POOL_CONNECTIONS, **timeouts)
    return aioredis.Redis(connection_pool=pool)


Queue = Callable[[Any], None]  # adds one store call's commands to a redis-py pipeline


class RedisStore:
    """Store calls made in the same turn of the event loop share one round trip: under load
    (a thousand claims, exchanges and looks at once) a pipeline serves many calls, and the
    cost of a round trip (a connection from the pool, a system call each way) is paid once.

    Every round trip is bounded by ``timeout`` seconds, and at most ``POOL_CONNECTIONS`` are
    in flight at once: a burst waits for its turn instead of failing, as redis-py's own pool
    would at its limit.

    Every key is stored under ``prefix``: a service's keys share one prefix, so that a Redis
    ACL user can be allowed that service's keys and no other (``deploy/redis/users.conf``).
    The prefix holds no ``{``: a key's Cluster hash tag stays the one its caller chose."""

    def __init__(
        self, client: Any, *, timeout: float = OPERATION_TIMEOUT, prefix: str = ""
    ) -> None:
        if "{" in prefix:
            raise ValueError("a key prefix must not start a hash tag")
        self._prefix = prefix
        self._redis = client
        self._timeout = timeout
        self._turns = asyncio.Semaphore(POOL_CONNECTIONS)
        self._cluster = hasattr(client, "mget_nonatomic")  # keys may span nodes
        self._waiting: list[tuple[Queue, int, asyncio.Future[list[Any]]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "") -> RedisStore:
        return cls(connect(url), prefix=prefix)

    async def _run(self, queue: Queue, count: int) -> list[Any]:
        """The answers to the ``count`` commands ``queue`` adds to a pipeline, sent in the
        next round trip with those of every other call made meanwhile. StoreUnavailable if
        Redis fails the round trip or one of these commands."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[Any]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send_waiting)
        self._waiting.append((queue, count, answer))
        return await answer

    def _send_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Queue, int, asyncio.Future[list[Any]]]]) -> None:
        failure: StoreUnavailable
        try:
            async with asyncio.timeout(self._timeout):
                async with self._turns:
                    # Not a transaction: a Cluster pipeline sends each command to its node.
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for queue, _, _ in batch:
                            queue(pipe)
                        answers = await pipe.execute(raise_on_error=False)
        except TimeoutError:
            failure = StoreUnavailable("TimeoutError")
        except RedisError as exc:
            failure = _unavailable(exc)
        except BaseException:
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(StoreUnavailable("closed"))
            raise
        else:
            start = 0
            for _, count, answer in batch:
                mine, start = answers[start : start + count], start + count
                if answer.done():  # its caller gave up
                    continue
                error = next((a for a in mine if isinstance(a, Exception)), None)
                if error is None:
                    answer.set_result(mine)
                else:
                    answer.set_exception(_unavailable(error))
            return
        for _, _, answer in batch:
            if not answer.done():
                answer.set_exception(failure)

    async def get(self, key: str) -> bytes | None:
        [value] = await self._run(lambda pipe: pipe.get(self._prefix + key), 1)
        return _bytes(value)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        keys = [self._prefix + key for key in keys]
        if self._cluster:

            def each(pipe: Any) -> None:
                for key in keys:
                    pipe.get(key)

            values = await self._run(each, len(keys))
        else:
            [values] = await self._run(lambda pipe: pipe.mget(keys), 1)
        return [_bytes(value) for value in values]

    async def read_many(
        self, reads: Sequence[Get | HashGet], *, writes: Sequence[Write] = ()
    ) -> list[bytes | None]:
        count = len(reads) + sum(_commands(write) for write in writes)
        if not count:
            return []

        def queue(pipe: Any) -> None:
            for read in reads:
                if isinstance(read, HashGet):
                    pipe.hget(self._prefix + read.key, read.field)
                else:
                    pipe.get(self._prefix + read.key)
            for write in writes:
                _queue(pipe, write, self._prefix)

        values = await self._run(queue, count)
        return [_bytes(value) for value in values[: len(reads)]]

    async def write_many(self, writes: Sequence[Write]) -> None:
        await self.read_many((), writes=writes)

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        px = None if ttl is None else _ms(ttl)
        key = self._prefix + key
        [written] = await self._run(lambda pipe: pipe.set(key, value, px=px, nx=only_if_absent), 1)
        return bool(written)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, *, ttl: float | None = None
    ) -> bool:
        key = self._prefix + key
        absent = b"1" if expected is None else b"0"
        px = b"" if ttl is None else str(_ms(ttl)).encode()
        [written] = await self._run(
            lambda pipe: pipe.eval(_COMPARE_AND_SET, 1, key, absent, expected or b"", new, px), 1
        )
        return bool(written)

    async def delete(self, key: str) -> bool:
        [deleted] = await self._run(lambda pipe: pipe.delete(self._prefix + key), 1)
        return bool(deleted)

    async def incr(self, key: str, *, ttl: float) -> int:
        key = self._prefix + key
        [count] = await self._run(lambda pipe: pipe.eval(_INCR, 1, key, _ms(ttl)), 1)
        return int(count)

    async def hash_set(
        self, key: str, field: str, value: bytes, *, ttl: float | None = None
    ) -> bool:
        px = b"" if ttl is None else str(_ms(ttl)).encode()
        key = self._prefix + key
        [new] = await self._run(lambda pipe: pipe.eval(_HASH_SET, 1, key, px, field, value), 1)
        return bool(new)

    async def hash_get(self, key: str, field: str) -> bytes | None:
        [value] = await self._run(lambda pipe: pipe.hget(self._prefix + key, field), 1)
        return _bytes(value)

    async def hash_get_all(self, key: str) -> dict[str, bytes]:
        [found] = await self._run(lambda pipe: pipe.hgetall(self._prefix + key), 1)
        return {field.decode(): bytes(value) for field, value in found.items()}

    async def hash_delete(self, key: str, *fields: str) -> int:
        if not fields:
            return 0
        [removed] = await self._run(lambda pipe: pipe.hdel(self._prefix + key, *fields), 1)
        return int(removed)

    async def draw(
        self, keys: Sequence[str], cost: float, *, rate: float, capacity: float, floor: float = 0
    ) -> Draw:
        """One script, sent by its SHA-1 (EVALSHA) and whole only when Redis lacks it. Not
        redis-py's ``register_script``: in a pipeline it asks ``SCRIPT EXISTS`` first, a
        round trip more each time; and redis-py's Cluster pipeline refuses ``evalsha`` by
        name, so it goes as a plain command (routed by its keys all the same)."""
        check_draw(keys, cost, rate, capacity, floor)
        names = [self._prefix + key for key in keys]
        args = (repr(float(cost)), repr(float(rate)), repr(float(capacity)), repr(float(floor)))
        px = _ms(capacity / rate)
        try:
            [answer] = await self._run(
                lambda pipe: pipe.execute_command(
                    "EVALSHA", _DRAW_SHA, len(names), *names, *args, px
                ),
                1,
            )
        except _ScriptMissing:
            [answer] = await self._run(
                lambda pipe: pipe.eval(_DRAW, len(names), *names, *args, px), 1
            )
        index, wait, level = answer
        found = int(index)
        return Draw(found - 1 if found else None, float(wait), float(level))

    async def ping(self) -> bool:
        # Not through a pipeline: a Cluster pipeline has no node to send a keyless PING to.
        # In its turn all the same: the pool has a connection for each turn, no more.
        try:
            async with asyncio.timeout(self._timeout):
                async with self._turns:
                    return bool(await self._redis.ping())
        except (TimeoutError, RedisError, OSError):
            return False

    async def close(self) -> None:
        await asyncio.sleep(0)  # calls made just before: their round trip starts now
        if self._sending:
            await asyncio.wait(self._sending, timeout=self._timeout)
        await self._redis.aclose()
