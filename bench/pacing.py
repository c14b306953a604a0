"""Pacing benchmark: draws per second through Redis from one process, the round trip cost of
pacing GitHub requests under the secondary limit (``Store.draw``).

    .venv/bin/python bench/pacing.py [--seconds 2] [--rounds 3] [--callers 1 --callers 64]

A redis-server on a free port, one ``RedisStore`` as the issuer makes it (prefix ``issuer:``).
For each number of concurrent callers, rounds alternate between draws (two credentials'
buckets, refilled so fast that every draw pays) and plain ``GET``s of one key through the
same store: the ratio draw/GET is what the script costs over the cheapest round trip, on
the same machine in the same run. One caller is a request's own latency; many share each
round trip (the store pipelines calls made in the same turn of the event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from issuer.github.pacing import bucket_key
from issuer.store import RedisStore
from tests.redis_server import RedisServer

KEYS = [bucket_key("token-bench001"), bucket_key("token-bench002")]
RATE = 1e9  # points a second: every draw pays, so each is the script's whole path


async def per_second(call: Callable[[], Awaitable[object]], callers: int, seconds: float) -> float:
    """Calls a second, ``callers`` of them looping at once for ``seconds``."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(callers)))
    return done / (time.perf_counter() - start)


async def measure(url: str, callers: list[int], seconds: float, rounds: int) -> list[dict]:
    store = RedisStore.from_url(url, prefix="issuer:")
    await store.set("bench:plain", b"v")
    results = []
    try:
        for count in callers:
            draws, gets = [], []
            for _ in range(rounds):
                draws.append(
                    await per_second(
                        lambda: store.draw(KEYS, 1, rate=RATE, capacity=RATE), count, seconds
                    )
                )
                gets.append(await per_second(lambda: store.get("bench:plain"), count, seconds))
            draw, get = statistics.median(draws), statistics.median(gets)
            results.append(
                {
                    "callers": count,
                    "draws_per_s": round(draw),
                    "gets_per_s": round(get),
                    "ratio": round(draw / get, 2),
                }
            )
    finally:
        await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, action="append")
    args = parser.parse_args()
    server = RedisServer()
    try:
        results = uvloop.run(
            measure(server.url, args.callers or [1, 64], args.seconds, args.rounds)
        )
    finally:
        server.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
