from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio
from redis.crc import key_slot

from issuer.store import (
    Bump,
    Delete,
    Get,
    HashGet,
    HashPut,
    Put,
    RedisStore,
    Store,
    StoreUnavailable,
    tagged,
)
from issuer.store.redis import POOL_CONNECTIONS, connect
from tests.redis_server import RedisServer


async def test_a_missing_key_reads_as_none(store: Store) -> None:
    assert await store.get("nothing-here") is None


async def test_a_value_reads_back_as_written(store: Store) -> None:
    await store.set("k", b"\x00value\xff")
    assert await store.get("k") == b"\x00value\xff"


async def test_a_value_expires_after_its_ttl(store: Store) -> None:
    await store.set("short", b"v", ttl=0.05)
    await asyncio.sleep(0.12)
    assert await store.get("short") is None


async def test_only_if_absent_refuses_to_overwrite(store: Store) -> None:
    assert await store.set("once", b"first", only_if_absent=True)
    assert not await store.set("once", b"second", only_if_absent=True)
    assert await store.get("once") == b"first"


async def test_only_if_absent_writes_again_after_expiry(store: Store) -> None:
    await store.set("lease", b"a", ttl=0.05, only_if_absent=True)
    await asyncio.sleep(0.12)
    assert await store.set("lease", b"b", ttl=1, only_if_absent=True)


async def test_concurrent_only_if_absent_writes_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.set("race", str(i).encode(), only_if_absent=True) for i in range(50))
    )
    assert results.count(True) == 1


async def test_delete_reports_whether_the_key_existed(store: Store) -> None:
    await store.set("gone", b"v")
    assert await store.delete("gone")
    assert not await store.delete("gone")
    assert await store.get("gone") is None


async def test_the_store_answers_a_ping(store: Store) -> None:
    assert await store.ping()


def test_tagged_keys_share_the_cluster_slot_of_their_tag() -> None:
    assert tagged("claim:ab", "used") == "{claim:ab}:used"


async def test_compare_and_set_writes_when_the_key_is_absent_and_none_is_expected(
    store: Store,
) -> None:
    assert await store.compare_and_set("cas", None, b"one")
    assert await store.get("cas") == b"one"


async def test_compare_and_set_refuses_when_absence_is_expected_but_a_value_exists(
    store: Store,
) -> None:
    await store.set("cas", b"one")
    assert not await store.compare_and_set("cas", None, b"two")
    assert await store.get("cas") == b"one"


async def test_compare_and_set_replaces_the_expected_value(store: Store) -> None:
    await store.set("cas", b"\x00one")
    assert await store.compare_and_set("cas", b"\x00one", b"two")
    assert await store.get("cas") == b"two"


async def test_compare_and_set_refuses_when_the_value_changed(store: Store) -> None:
    await store.set("cas", b"one")
    assert not await store.compare_and_set("cas", b"stale", b"two")
    assert await store.get("cas") == b"one"


async def test_compare_and_set_refuses_when_a_value_is_expected_but_absent(store: Store) -> None:
    assert not await store.compare_and_set("cas", b"one", b"two")
    assert await store.get("cas") is None


async def test_compare_and_set_honours_its_ttl(store: Store) -> None:
    assert await store.compare_and_set("cas", None, b"one", ttl=0.05)
    await asyncio.sleep(0.12)
    assert await store.get("cas") is None


async def test_concurrent_compare_and_sets_from_one_value_have_one_winner(store: Store) -> None:
    await store.set("cas", b"v0")
    results = await asyncio.gather(
        *(store.compare_and_set("cas", b"v0", str(i).encode()) for i in range(50))
    )
    assert results.count(True) == 1


async def test_incr_counts_from_one(store: Store) -> None:
    assert [await store.incr("n", ttl=10) for _ in range(3)] == [1, 2, 3]


async def test_a_counter_starts_again_after_its_ttl(store: Store) -> None:
    await store.incr("n", ttl=0.05)
    await asyncio.sleep(0.1)
    assert await store.incr("n", ttl=10) == 1


async def test_concurrent_incrs_lose_no_count(store: Store) -> None:
    await asyncio.gather(*(store.incr("n", ttl=10) for _ in range(20)))
    assert await store.incr("n", ttl=10) == 21


async def test_hash_fields_read_back_one_by_one_and_all_together(store: Store) -> None:
    assert await store.hash_set("h", "a", b"1") is True
    assert await store.hash_set("h", "b", b"2") is True
    assert await store.hash_get("h", "a") == b"1"
    assert await store.hash_get_all("h") == {"a": b"1", "b": b"2"}


async def test_hash_set_reports_an_existing_field_as_not_new(store: Store) -> None:
    await store.hash_set("h", "a", b"1")
    assert await store.hash_set("h", "a", b"2") is False
    assert await store.hash_get("h", "a") == b"2"


async def test_a_missing_hash_reads_as_empty(store: Store) -> None:
    assert await store.hash_get_all("nothing") == {}
    assert await store.hash_get("nothing", "a") is None


async def test_hash_delete_counts_the_fields_that_existed(store: Store) -> None:
    await store.hash_set("h", "a", b"1")
    await store.hash_set("h", "b", b"2")
    assert await store.hash_delete("h", "a", "c") == 1
    assert await store.hash_get_all("h") == {"b": b"2"}


async def test_a_hash_expires_after_its_ttl(store: Store) -> None:
    await store.hash_set("h", "a", b"1", ttl=0.05)
    await asyncio.sleep(0.1)
    assert await store.hash_get_all("h") == {}


async def test_a_shorter_ttl_never_shortens_a_hash_life(store: Store) -> None:
    await store.hash_set("h", "a", b"1", ttl=10)
    await store.hash_set("h", "b", b"2", ttl=0.05)
    await asyncio.sleep(0.1)
    assert await store.hash_get_all("h") == {"a": b"1", "b": b"2"}


async def test_a_burst_of_more_commands_than_connections_waits_instead_of_failing(
    store: Store,
) -> None:
    await store.set("k", b"v")
    values = await asyncio.gather(*(store.get("k") for _ in range(500)))
    assert values == [b"v"] * 500


async def test_get_many_reads_values_in_order_with_none_for_missing_keys(store: Store) -> None:
    await store.set("a", b"1")
    await store.set("c", b"3")
    assert await store.get_many(["a", "b", "c"]) == [b"1", None, b"3"]


async def test_read_many_reads_values_and_hash_fields_in_order(store: Store) -> None:
    await store.set("plain", b"1")
    await store.hash_set("h", "f", b"2")
    reads = [Get("plain"), HashGet("h", "f"), HashGet("h", "missing"), Get("absent")]
    assert await store.read_many(reads) == [b"1", b"2", None, None]


async def test_a_hash_write_of_ten_thousand_fields_lands_whole(store: Store) -> None:
    """One command, however many fields (Lua's `unpack` of them all overflowed its stack)."""
    fields = {f"field-{i:05d}": str(i).encode() for i in range(10_000)}
    await store.write_many([HashPut("big", fields, ttl=60)])
    assert await store.hash_get_all("big") == fields


async def test_read_many_of_nothing_is_empty(store: Store) -> None:
    assert await store.read_many([]) == []


async def test_a_redis_error_in_read_many_is_store_unavailable(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    try:
        await store.hash_set("h", "f", b"1")
        with pytest.raises(StoreUnavailable):
            await store.read_many([Get("h")])  # WRONGTYPE: a hash read as a value
    finally:
        await store.close()


@dataclass
class TurnsTaken:
    store: RedisStore
    gets: list[asyncio.Future[Any]]  # more than there are turns, each its own round trip
    resume: Callable[[], None]  # Redis answers again


@pytest.fixture
async def every_turn_taken() -> AsyncIterator[TurnsTaken]:
    """A store whose Redis stopped answering while more round trips than there are turns were
    under way; it answers again when the test resumes it, or at the end."""
    server = RedisServer()
    store = RedisStore(connect(server.url), timeout=5)
    await store.set("k", b"v")
    os.kill(server.pid, signal.SIGSTOP)
    gets: list[asyncio.Future[Any]] = []
    try:
        for _ in range(POOL_CONNECTIONS + 8):
            gets.append(asyncio.ensure_future(store.get("k")))
            await asyncio.sleep(0.001)  # the next turn of the event loop: a round trip each
        yield TurnsTaken(store, gets, lambda: os.kill(server.pid, signal.SIGCONT))
    finally:
        os.kill(server.pid, signal.SIGCONT)
        await asyncio.gather(*gets, return_exceptions=True)
        await store.close()
        server.stop()


async def test_round_trips_beyond_the_turns_wait_for_one(every_turn_taken: TurnsTaken) -> None:
    await asyncio.sleep(0.2)
    every_turn_taken.resume()
    assert await asyncio.gather(*every_turn_taken.gets) == [b"v"] * (POOL_CONNECTIONS + 8)


async def test_a_redis_that_stops_answering_is_store_unavailable_within_the_timeout() -> None:
    server = RedisServer()
    store = RedisStore(connect(server.url), timeout=0.3)
    try:
        await store.set("k", b"v")
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="TimeoutError"):
                await store.get("k")
            assert time.monotonic() - started < 3
            assert not await store.ping()
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert await store.get("k") == b"v"  # the timed-out connection was not reused
    finally:
        await store.close()
        server.stop()


async def test_write_many_writes_values_hash_fields_counters_and_deletions(store: Store) -> None:
    await store.set("gone", b"x")
    await store.write_many(
        [
            Put("value", b"1", ttl=10),
            HashPut("hash", {"a": b"2", "b": b"3"}, ttl=10),
            Bump("counter", ttl=10),
            Bump("counter", ttl=10),
            Delete("gone"),
        ]
    )
    assert await store.get("value") == b"1"
    assert await store.hash_get_all("hash") == {"a": b"2", "b": b"3"}
    assert await store.get("counter") == b"2"
    assert await store.get("gone") is None


async def test_write_many_writes_expire_after_their_ttl(store: Store) -> None:
    await store.write_many(
        [Put("p", b"1", ttl=0.05), HashPut("h", {"f": b"1"}, ttl=0.05), Bump("c", ttl=0.05)]
    )
    await asyncio.sleep(0.12)
    assert await store.read_many([Get("p"), HashGet("h", "f"), Get("c")]) == [None, None, None]


async def test_a_hash_put_never_shortens_the_hash_expiry(store: Store) -> None:
    await store.write_many([HashPut("h", {"a": b"1"}, ttl=10)])
    await store.write_many([HashPut("h", {"b": b"2"}, ttl=0.05)])
    await asyncio.sleep(0.12)
    assert await store.hash_get_all("h") == {"a": b"1", "b": b"2"}


async def test_read_many_makes_its_writes_after_its_reads(store: Store) -> None:
    await store.set("k", b"old")
    assert await store.read_many([Get("k")], writes=[Put("k", b"new")]) == [b"old"]
    assert await store.get("k") == b"new"


async def test_write_many_of_nothing_writes_nothing(store: Store) -> None:
    await store.write_many([])
    await store.write_many([HashPut("h", {})])
    assert await store.hash_get_all("h") == {}


async def test_calls_made_together_share_one_connection(redis_url: str) -> None:
    admin = redis.asyncio.Redis.from_url(redis_url)
    store = RedisStore.from_url(redis_url)
    try:
        before = (await admin.info("stats"))["total_connections_received"]
        await store.set("together", b"v")
        values = await asyncio.gather(*(store.get("together") for _ in range(100)))
        assert values == [b"v"] * 100
        assert (await admin.info("stats"))["total_connections_received"] == before + 1
    finally:
        await store.close()
        await admin.aclose()


async def test_a_failing_call_fails_alone_among_calls_made_together(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    try:
        await store.hash_set("a-hash", "f", b"1")
        await store.set("a-value", b"2")
        wrong, right = await asyncio.gather(
            store.get("a-hash"),  # WRONGTYPE: a hash read as a value
            store.get("a-value"),
            return_exceptions=True,
        )
        assert isinstance(wrong, StoreUnavailable) and str(wrong) == "ResponseError"
        assert right == b"2"
    finally:
        await store.close()


async def test_a_ping_while_every_turn_is_taken_waits_for_one(
    every_turn_taken: TurnsTaken,
) -> None:
    ping = asyncio.ensure_future(every_turn_taken.store.ping())
    await asyncio.sleep(0.2)
    every_turn_taken.resume()
    assert await ping is True


async def test_a_prefixed_store_keeps_every_key_under_its_prefix(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, prefix="svc:")
    try:
        await store.set("{t}:v", b"1", ttl=60)
        await store.compare_and_set("{t}:c", None, b"1")
        await store.incr("{t}:n", ttl=60)
        await store.hash_set("{t}:h", "f", b"1")
        await store.write_many(
            [Put("{t}:p", b"1"), HashPut("{t}:q", {"f": b"1"}), Bump("{t}:b", ttl=60)]
        )
        reads = [Get("{t}:v"), HashGet("{t}:h", "f"), Get("{t}:p"), HashGet("{t}:q", "f")]
        assert await store.read_many(reads) == [b"1"] * 4
        assert await store.get_many(["{t}:c", "{t}:n", "{t}:b"]) == [b"1"] * 3
    finally:
        await store.close()
    raw = redis.asyncio.Redis.from_url(redis_url)
    keys = sorted(key.decode() for key in await raw.keys("*"))
    await raw.aclose()
    assert keys == [f"svc:{{t}}:{name}" for name in "bchnpqv"]


def test_a_prefix_keeps_the_cluster_slot_of_the_callers_hash_tag() -> None:
    tagged_key = tagged("claim:ab", "used")
    assert key_slot(("issuer:" + tagged_key).encode()) == key_slot(tagged_key.encode())


def test_a_prefix_may_not_open_a_hash_tag_of_its_own() -> None:
    with pytest.raises(ValueError, match="hash tag"):
        RedisStore(redis.asyncio.Redis(), prefix="{issuer}:")


async def test_a_sentinel_url_logs_in_to_the_master_as_its_user() -> None:
    client = connect("redis+sentinel://issuer:secret@127.0.0.1:26379/mymaster")
    try:
        login = client.connection_pool.connection_kwargs
        assert (login["username"], login["password"]) == ("issuer", "secret")
    finally:
        await client.aclose()


async def test_a_bump_may_add_more_than_one(store: Store) -> None:
    await store.write_many([Bump("points", ttl=10, by=5), Bump("points", ttl=10, by=3)])
    assert await store.get("points") == b"8"


async def test_a_counter_bumped_by_more_than_one_still_expires(store: Store) -> None:
    await store.write_many([Bump("points", ttl=0.05, by=5)])
    await asyncio.sleep(0.1)
    assert await store.get("points") is None
