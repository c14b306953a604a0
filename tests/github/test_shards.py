"""The GitHub client's connections, shared out over a few small httpx pools."""

from __future__ import annotations

import asyncio

import httpx

from issuer.github.shards import CONNECTIONS_PER_SHARD, ClientShards


def _shards(
    connections: int, calls: list[int], release: asyncio.Event, arrived: asyncio.Event | None = None
) -> ClientShards:
    """Shards whose clients answer only once ``release`` is set, noting their index; with
    ``connections`` calls noted, ``arrived`` is set."""
    made: list[httpx.Limits] = []

    def make(limits: httpx.Limits) -> httpx.AsyncClient:
        index = len(made)
        made.append(limits)

        async def answer(request: httpx.Request) -> httpx.Response:
            calls.append(index)
            if arrived is not None and len(calls) == connections:
                arrived.set()
            await release.wait()
            return httpx.Response(200)

        return httpx.AsyncClient(transport=httpx.MockTransport(answer), limits=limits)

    return ClientShards(connections, make)


async def _get(shards: ClientShards) -> int:
    async with shards.client() as client:
        return (await client.get("http://github.test/")).status_code


async def test_requests_in_flight_are_spread_evenly_over_the_shards() -> None:
    calls: list[int] = []
    release, arrived = asyncio.Event(), asyncio.Event()
    shards = _shards(16, calls, release, arrived)
    requests = [asyncio.create_task(_get(shards)) for _ in range(16)]
    await asyncio.wait_for(arrived.wait(), 5)
    assert sorted(calls.count(i) for i in set(calls)) == [CONNECTIONS_PER_SHARD] * 4
    release.set()
    assert await asyncio.gather(*requests) == [200] * 16
    await shards.aclose()


async def test_a_shard_freed_by_a_finished_request_takes_the_next() -> None:
    calls: list[int] = []
    release = asyncio.Event()
    release.set()
    shards = _shards(8, calls, release)
    for _ in range(3):
        await _get(shards)
    assert calls == [0, 0, 0]  # nothing in flight: the first shard each time
    await shards.aclose()


def test_the_shards_hold_the_connections_asked_for_between_them() -> None:
    made: list[httpx.Limits] = []

    def make(limits: httpx.Limits) -> httpx.AsyncClient:
        made.append(limits)
        return httpx.AsyncClient(limits=limits)

    ClientShards(10, make)
    assert sorted(limits.max_connections for limits in made) == [3, 3, 4]
    assert all(limits.max_keepalive_connections == limits.max_connections for limits in made)
