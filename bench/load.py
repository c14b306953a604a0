"""Load benchmark: 1,000 concurrent claims through two issuer replicas, then a soak of
continuous load, with each replica's resident memory at start, after warm-up and at the end.

    .venv/bin/python bench/load.py [--claims 1000] [--soak-seconds 300] [--soak-flows 50]
                                   [--readers 4] [--replicas 2] [--latency 0.0] [--logs DIR]
                                   [--tracemalloc]

Everything runs on loopback: a redis-server on a free port, the GitHub simulator as its own
process (``issuer github-sim``, driven through its control API ``/_sim/...``), and
``--replicas`` ``issuer serve`` processes sharing that Redis, with the abuse limits off (the
load comes from one address). This process is the load client (httpx, one event loop).

A *flow* is one job of a fork pull-request run doing what the relay job does: the job
starts, ``POST /claim`` at one replica, the ``::notice::`` line is printed by the client's
step (two seconds of the runner's clock into it: the simulator's ``elapse``) and the job
completes, ``POST /exchange?wait=10`` (the claim id as bearer) at the other replica until the
token comes (the issuer reads the completed job's log; annotations are not proof).

1. Start: every replica answers ``/readyz``; RSS is read (``VmRSS`` of ``/proc/PID/status``).
2. Warm-up: ``--claims`` flows (runs of 10 jobs): every job is started, then all claims are
   sent at once, then each flow goes on. RSS is read again: the level the soak is compared
   with.
3. Soak, ``--soak-seconds``: ``--soak-flows`` flows run back to back (each worker uses a run
   for 10 jobs, then finishes it and starts another), while ``--readers`` loops read JWKS
   and discovery (half of them conditional, with ``If-None-Match``). RSS is sampled every 30 s.
4. End: RSS once more. Done means: end within 20 % of after-warm-up, for every replica.

Reported (JSON on stdout): per phase, tokens and tokens/s, requests/s, p50/p99 (ms) of
``claim``, ``exchange`` (every request, long polls included), ``exchange_token`` (the request
that got the token), ``time_to_token`` (line printed to token), ``jwks`` and ``discovery``;
unexpected answers by endpoint and status; the RSS figures.

``--logs DIR`` keeps each replica's log lines in ``DIR/replica-PORT.log``.
``--tracemalloc`` starts the replicas with ``tracemalloc`` on (a ``sitecustomize`` in a
temporary directory, this benchmark's own: the issuer is unchanged); on ``SIGUSR2`` each
replica writes its top allocation sites, compared with the first snapshot, to a file whose
path is printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.processes import Replicas, SimProcess
from tests.redis_server import RedisServer

TOKENS = ("ghp_load_one_" + "a" * 23, "ghp_load_two_" + "b" * 23)
JOBS_PER_RUN = 10
WAIT = 10
RSS_SAMPLE_EVERY = 30.0
SIM_CONNECTIONS = 32
KEEPALIVE = 3.0
ENDPOINTS = ("claim", "exchange", "exchange_token", "time_to_token", "jwks", "discovery")

# Loaded by the replicas when --tracemalloc is given (PYTHONPATH): SIGUSR2 dumps the top
# allocation sites, compared with the first snapshot taken after start.
_SITECUSTOMIZE = """
import os, signal, tracemalloc
tracemalloc.start(25)
_first = []

def _dump(signum, frame):
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    if not _first:
        _first.append(snapshot)
    path = os.path.join(os.environ["LOAD_TRACEMALLOC_DIR"], f"{os.getpid()}.txt")
    with open(path, "a") as out:
        out.write(f"--- snapshot, traced {tracemalloc.get_traced_memory()}\\n")
        for stat in snapshot.compare_to(_first[0], "traceback")[:15]:
            out.write(f"{stat}\\n")
            for line in stat.traceback.format()[-8:]:
                out.write(f"    {line}\\n")

signal.signal(signal.SIGUSR2, _dump)
"""


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def rss_of(replicas: Replicas) -> list[int]:
    return [rss_kib(pid) for pid in replicas.pids]


def _tracemalloc_env(trace_dir: str) -> dict[str, str]:
    """Settings that make a replica load the benchmark's ``sitecustomize`` from ``trace_dir``."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join([trace_dir, root, os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path.rstrip(os.pathsep), "LOAD_TRACEMALLOC_DIR": trace_dir}


@dataclass
class Stats:
    """What one phase measured."""

    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in ENDPOINTS}
    )
    unexpected: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    tokens: int = 0
    failed_requests: list[str] = field(default_factory=list)

    def note(self, endpoint: str, seconds: float) -> None:
        self.latencies[endpoint].append(seconds)
        if endpoint not in ("exchange_token", "time_to_token"):
            self.requests += 1

    def odd(self, endpoint: str, status: int | str) -> None:
        key = f"{endpoint} {status}"
        self.unexpected[key] = self.unexpected.get(key, 0) + 1

    def report(self, elapsed: float) -> dict[str, Any]:
        return {
            "elapsed_s": round(elapsed, 1),
            "tokens": self.tokens,
            "tokens_per_s": round(self.tokens / elapsed, 1),
            "requests_per_s": round(self.requests / elapsed, 1),
            "latency_ms": {
                name: _summary(values) for name, values in self.latencies.items() if values
            },
            "unexpected": self.unexpected,
            "failed_request_ids": self.failed_requests[:20],
        }


def _summary(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50": round(_percentile(ordered, 0.50) * 1000, 1),
        "p99": round(_percentile(ordered, 0.99) * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest rank."""
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


class Load:
    def __init__(
        self,
        sim_url: str,
        replica_urls: list[str],
        http: httpx.AsyncClient,
        sim_http: httpx.AsyncClient,
    ) -> None:
        self.sim_url = sim_url
        self.urls = replica_urls
        self.http = http
        self.sim_http = sim_http
        self.random = random.Random(1)
        self._serial = 0

    async def control(self, path: str, **body: Any) -> Any:
        try:
            response = await self.sim_http.post(f"{self.sim_url}/_sim{path}", json=body)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # The simulator closed a kept-alive connection as the request went out: again.
            response = await self.sim_http.post(f"{self.sim_url}/_sim{path}", json=body)
        response.raise_for_status()
        return response.json()

    async def new_run(self) -> tuple[str, int]:
        self._serial += 1
        n = self._serial
        upstream, fork = f"load-org{n}/project", f"contributor{n}/project"
        await self.control("/repos", full_name=upstream)
        await self.control("/repos", full_name=fork, fork_of=upstream)
        run = await self.control(
            "/runs", repository=upstream, head_repository=fork, actor=f"contributor{n}"
        )
        return upstream, int(run["id"])

    async def flow(
        self,
        upstream: str,
        run_id: int,
        name: str,
        stats: Stats,
        together: asyncio.Barrier | None = None,
    ) -> None:
        """One job: claim at one replica, print the line, exchange at the other. With
        ``together``, the claim waits until every flow of the barrier is ready to claim."""
        job = await self.control(f"/runs/{run_id}/jobs", name=name)
        jobs = f"/jobs/{job['id']}"
        await self.control(f"{jobs}/start")
        if together is not None:
            await together.wait()
        first = self.random.randrange(len(self.urls))
        claim_url, exchange_url = self.urls[first], self.urls[(first + 1) % len(self.urls)]
        body = {"repository": upstream, "run_id": run_id, "event_name": "pull_request"}
        started = time.perf_counter()
        try:
            response = await self.http.post(f"{claim_url}/claim", json=body)
        except httpx.HTTPError as exc:
            stats.odd("claim", type(exc).__name__)
            await self.control(f"{jobs}/finish")
            return
        stats.note("claim", time.perf_counter() - started)
        if response.status_code != 201:
            stats.odd("claim", response.status_code)
            await self.control(f"{jobs}/finish")
            return
        claim = response.json()
        await self.control(f"{jobs}/steps", name="Claim", script="issuer token claim")
        await self.control(f"{jobs}/elapse", seconds=2.0)
        await self.control(f"{jobs}/print", text=claim["challenge_line"])
        await self.control(f"{jobs}/finish-step")
        await self.control(f"{jobs}/finish")
        printed = time.perf_counter()
        bearer = {"Authorization": f"Bearer {claim['claim_id']}"}
        while True:
            started = time.perf_counter()
            request_id = f"load-{secrets.token_hex(8)}"  # to find the request in the logs
            try:
                response = await self.http.post(
                    f"{exchange_url}/exchange?wait={WAIT}",
                    headers={**bearer, "X-Request-Id": request_id},
                )
            except httpx.HTTPError as exc:
                stats.odd("exchange", type(exc).__name__)
                stats.failed_requests.append(request_id)
                await asyncio.sleep(1)
                continue
            took = time.perf_counter() - started
            stats.note("exchange", took)
            if response.status_code == 200:
                stats.note("exchange_token", took)
                stats.note("time_to_token", time.perf_counter() - printed)
                stats.tokens += 1
                break
            if response.status_code == 202:
                continue
            stats.odd("exchange", response.status_code)
            if response.status_code != 503:
                break
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async def run_of_jobs(self, jobs: int, stats: Stats, together: asyncio.Barrier) -> None:
        upstream, run_id = await self.new_run()
        await asyncio.gather(
            *(self.flow(upstream, run_id, f"matrix ({i})", stats, together) for i in range(jobs))
        )
        await self.control(f"/runs/{run_id}/finish")

    async def worker(self, until: float, stats: Stats) -> None:
        """Flows back to back: a run for every ``JOBS_PER_RUN`` of them."""
        while time.monotonic() < until:
            upstream, run_id = await self.new_run()
            for i in range(JOBS_PER_RUN):
                if time.monotonic() >= until:
                    break
                await self.flow(upstream, run_id, f"job {i}", stats)
            await self.control(f"/runs/{run_id}/finish")

    async def reader(self, until: float, conditional: bool, stats: Stats) -> None:
        """JWKS and discovery reads, as verifiers make them."""
        etags: dict[str, str] = {}
        paths = {"jwks": "/.well-known/jwks", "discovery": "/.well-known/openid-configuration"}
        turn = 0
        while time.monotonic() < until:
            turn += 1
            url = self.urls[turn % len(self.urls)]
            for name, path in paths.items():
                headers = {"If-None-Match": etags[name]} if conditional and name in etags else {}
                started = time.perf_counter()
                try:
                    response = await self.http.get(f"{url}{path}", headers=headers)
                except httpx.HTTPError as exc:
                    stats.odd(name, type(exc).__name__)
                    continue
                stats.note(name, time.perf_counter() - started)
                if response.status_code == 200:
                    etags[name] = response.headers.get("etag", "")
                elif response.status_code != 304:
                    stats.odd(name, response.status_code)


async def warm_up(load: Load, claims: int) -> dict[str, Any]:
    stats = Stats()
    runs, rest = divmod(claims, JOBS_PER_RUN)
    together = asyncio.Barrier(claims)  # every job started: then all claims at once
    started = time.monotonic()
    jobs = [load.run_of_jobs(JOBS_PER_RUN, stats, together) for _ in range(runs)]
    if rest:
        jobs.append(load.run_of_jobs(rest, stats, together))
    await asyncio.gather(*jobs)
    return stats.report(time.monotonic() - started)


async def soak(
    load: Load, replicas: Replicas, seconds: float, flows: int, readers: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    stats = Stats()
    started = time.monotonic()
    until = started + seconds
    samples: list[dict[str, Any]] = []

    async def sample_rss() -> None:
        while time.monotonic() < until:
            await asyncio.sleep(min(RSS_SAMPLE_EVERY, max(until - time.monotonic(), 0)))
            samples.append({"at_s": round(time.monotonic() - started), "rss_kib": rss_of(replicas)})

    await asyncio.gather(
        *(load.worker(until, stats) for _ in range(flows)),
        *(load.reader(until, conditional=i % 2 == 1, stats=stats) for i in range(readers)),
        sample_rss(),
    )
    return stats.report(time.monotonic() - started), samples


async def bench(args: argparse.Namespace, sim: SimProcess, replicas: Replicas) -> dict[str, Any]:
    # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them, so
    # that no request is written to a connection the server is closing.
    limits = httpx.Limits(
        max_connections=4000, max_keepalive_connections=4000, keepalive_expiry=KEEPALIVE
    )
    timeout = httpx.Timeout(60.0)
    # The simulator stands in for GitHub's runners, not for what is measured: a few kept-alive
    # connections (its listening backlog is small), waited for as long as it takes.
    sim_limits = httpx.Limits(max_connections=SIM_CONNECTIONS, keepalive_expiry=KEEPALIVE)
    sim_timeout = httpx.Timeout(60.0, pool=None)
    async with (
        httpx.AsyncClient(timeout=timeout, limits=limits) as http,
        httpx.AsyncClient(timeout=sim_timeout, limits=sim_limits) as sim_http,
    ):
        load = Load(sim.url, replicas.urls, http, sim_http)
        rss_start = rss_of(replicas)
        if args.tracemalloc:
            replicas.signal(signal.SIGUSR2)
        warm = await warm_up(load, args.claims)
        await asyncio.sleep(2)  # let the watch loops of the warm-up's runs wind down
        rss_warm = rss_of(replicas)
        if args.tracemalloc:
            replicas.signal(signal.SIGUSR2)
        soaked, samples = await soak(
            load, replicas, args.soak_seconds, args.soak_flows, args.readers
        )
        await asyncio.sleep(2)
        rss_end = rss_of(replicas)
        if args.tracemalloc:
            replicas.signal(signal.SIGUSR2)
            await asyncio.sleep(2)
    growth = [
        round((end - warm) / warm * 100, 1) for warm, end in zip(rss_warm, rss_end, strict=True)
    ]
    return {
        "cpus": os.cpu_count(),
        "replicas": len(replicas.urls),
        "warm_up": {"concurrent_claims": args.claims, **warm},
        "soak": {"flows": args.soak_flows, "readers": args.readers, **soaked},
        "rss_kib": {
            "start": rss_start,
            "after_warm_up": rss_warm,
            "end": rss_end,
            "soak_samples": samples,
            "growth_after_warm_up_percent": growth,
        },
        "done": all(abs(g) <= 20 for g in growth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1000, help="concurrent claims to warm up")
    parser.add_argument("--soak-seconds", type=float, default=300.0)
    parser.add_argument("--soak-flows", type=int, default=50, help="flows at once in the soak")
    parser.add_argument("--readers", type=int, default=4, help="JWKS/discovery loops")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.0, help="of each GitHub request")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--logs", help="a directory for the replicas' log lines")
    args = parser.parse_args()
    trace_dir = None
    if args.tracemalloc:
        trace_dir = tempfile.mkdtemp(prefix="issuer-load-trace-")
        Path(trace_dir, "sitecustomize.py").write_text(_SITECUSTOMIZE)
    redis = RedisServer()
    sim: SimProcess | None = None
    replicas: Replicas | None = None
    try:
        sim = SimProcess(args.latency, TOKENS, 100_000_000)
        replicas = Replicas(
            args.replicas,
            sim.url,
            redis.url,
            TOKENS,
            env=_tracemalloc_env(trace_dir) if trace_dir is not None else None,
            logs=Path(args.logs) if args.logs else None,
        )
        results = asyncio.run(bench(args, sim, replicas))
        if trace_dir is not None:
            results["tracemalloc_dir"] = trace_dir
        print(json.dumps(results, indent=2), flush=True)
    finally:
        if replicas is not None:
            replicas.stop()
        if sim is not None:
            sim.stop()
        redis.stop()


if __name__ == "__main__":
    main()
