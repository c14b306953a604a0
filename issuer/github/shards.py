"""httpx clients that share out a process's GitHub connections a few at a time.

httpcore's connection pool does work for every connection it holds at every request and at
every response: it checks each idle one for a close by the server, with two system calls.
Sixteen connections in one pool cost a busy replica a seventh of its CPU (bench/); four
pools of four cost a quarter of that, and allow as many requests at once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable

import httpx

CONNECTIONS_PER_SHARD = 4


class ClientShards:
    """Clients holding ``connections`` connections between them, at most
    :data:`CONNECTIONS_PER_SHARD` each. A request goes to the client with most connections
    free, so while fewer than ``connections`` requests are in flight it has one."""

    def __init__(self, connections: int, make: Callable[[httpx.Limits], httpx.AsyncClient]) -> None:
        count = math.ceil(connections / CONNECTIONS_PER_SHARD)
        sizes = [connections // count + (i < connections % count) for i in range(count)]
        self._clients = [
            make(httpx.Limits(max_connections=size, max_keepalive_connections=size))
            for size in sizes
        ]
        self._free = sizes

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client for one request, to be read whole inside the block."""
        index = max(range(len(self._clients)), key=self._free.__getitem__)
        self._free[index] -= 1
        try:
            yield self._clients[index]
        finally:
            self._free[index] += 1

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
