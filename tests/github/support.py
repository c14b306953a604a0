"""Helpers of the GitHub-access tests: the simulator over httpx's ASGI transport, with each
of GitHub's hosts under its own name so that a test can tell where a request went."""

from __future__ import annotations

import asyncio

import httpx

from tests.sim.support import FakeClock

API = "http://api.sim"
WEB = "http://web.sim"
BLOBS = "http://blobs.sim"
UPSTREAM = "octo-org/octo-repo"


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests on, keeping each (with its headers) and the peak of concurrent ones."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.in_flight = 0
        self.peak = 0
        self.delay = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1

    def to(self, origin: str) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url).startswith(origin + "/")]

    async def aclose(self) -> None:
        await self.inner.aclose()


class Sleeper:
    """An ``asyncio.sleep`` stand-in that moves the fake clock instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)
