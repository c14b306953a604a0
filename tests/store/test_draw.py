"""Store.draw: token buckets shared by every replica, one atomic round trip a draw."""

from __future__ import annotations

import asyncio

import pytest

from issuer.store import Draw, RedisStore, Store, tagged

A, B = tagged("pace", "a"), tagged("pace", "b")
NO_REFILL = 1e-6  # points a second: nothing refills while a test runs


async def test_a_fresh_bucket_is_full_and_pays_until_it_is_empty(store: Store) -> None:
    paid = [await store.draw([A], 1, rate=NO_REFILL, capacity=5) for _ in range(6)]
    assert [draw.index for draw in paid] == [0, 0, 0, 0, 0, None]
    assert [round(draw.level) for draw in paid] == [4, 3, 2, 1, 0, 0]


async def test_a_refused_draw_says_how_long_until_the_points_are_there(store: Store) -> None:
    for _ in range(4):
        await store.draw([A], 1, rate=2, capacity=4)
    refused = await store.draw([A], 3, rate=2, capacity=4)
    assert refused.index is None
    assert 1.0 < refused.wait <= 1.5  # three points at two a second, less what refilled


async def test_a_draw_never_takes_a_bucket_below_its_floor(store: Store) -> None:
    paid = [await store.draw([A], 1, rate=NO_REFILL, capacity=9, floor=6) for _ in range(4)]
    assert [draw.index for draw in paid] == [0, 0, 0, None]
    assert (await store.draw([A], 1, rate=NO_REFILL, capacity=9)).index == 0  # floor 0


async def test_the_fullest_bucket_pays_and_the_first_on_a_tie(store: Store) -> None:
    order = [(await store.draw([A, B], 1, rate=NO_REFILL, capacity=4)).index for _ in range(4)]
    assert order == [0, 1, 0, 1]


async def test_a_bucket_drawn_elsewhere_is_seen_by_every_draw(store: Store) -> None:
    for _ in range(3):
        await store.draw([B], 1, rate=NO_REFILL, capacity=4)  # another caller spends B
    order = [(await store.draw([A, B], 1, rate=NO_REFILL, capacity=4)).index for _ in range(3)]
    assert order == [0, 0, 0]  # A from 4 down to B's 1


async def test_a_bucket_refills_at_its_rate(store: Store) -> None:
    for _ in range(5):
        await store.draw([A], 1, rate=100, capacity=5)
    await asyncio.sleep(0.1)  # ten points' worth: the bucket is full again
    paid = [await store.draw([A], 1, rate=100, capacity=5) for _ in range(5)]
    assert all(draw.index == 0 for draw in paid)


async def test_a_bucket_refills_no_higher_than_its_capacity(store: Store) -> None:
    await store.draw([A], 1, rate=100, capacity=3)
    await asyncio.sleep(0.1)
    assert (await store.draw([A], 1, rate=100, capacity=3)).level == pytest.approx(2, abs=0.01)


async def test_a_buckets_key_expires_once_it_would_be_full_again(store: Store) -> None:
    await store.draw([A], 1, rate=20, capacity=1)
    assert await store.get(A) is not None
    await asyncio.sleep(0.12)
    assert await store.get(A) is None


async def test_a_draw_that_could_never_be_paid_is_refused_at_once(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.draw([A], 5, rate=1, capacity=6, floor=2)
    with pytest.raises(ValueError):
        await store.draw([], 1, rate=1, capacity=6)
    with pytest.raises(ValueError):
        await store.draw([A], 1, rate=0, capacity=6)


async def test_concurrent_draws_never_take_more_than_the_bucket_holds(store: Store) -> None:
    paid = await asyncio.gather(
        *(store.draw([A, B], 1, rate=NO_REFILL, capacity=25) for _ in range(200))
    )
    assert sum(draw.index is not None for draw in paid) == 50


async def test_replicas_drawing_at_once_through_their_own_connections_never_overspend(
    redis_url: str,
) -> None:
    replicas = [RedisStore.from_url(redis_url) for _ in range(8)]
    try:

        async def spend(replica: RedisStore) -> list[Draw]:
            return [await replica.draw([A, B], 1, rate=NO_REFILL, capacity=40) for _ in range(30)]

        paid = [draw for drawn in await asyncio.gather(*map(spend, replicas)) for draw in drawn]
    finally:
        for replica in replicas:
            await replica.close()
    assert sum(draw.index is not None for draw in paid) == 80


async def test_a_redis_that_lost_its_scripts_is_sent_the_script_again(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    try:
        await store.draw([A], 1, rate=NO_REFILL, capacity=3)
        await store._redis.script_flush()  # a restart, a failover to a node without it
        assert (await store.draw([A], 1, rate=NO_REFILL, capacity=3)).level == pytest.approx(1)
    finally:
        await store.close()


async def test_draw_keys_live_under_the_stores_prefix(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, prefix="issuer:")
    try:
        await store.draw([A], 1, rate=NO_REFILL, capacity=3)
        assert await store._redis.exists("issuer:" + A)
    finally:
        await store.close()
