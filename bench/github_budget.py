"""GitHub budget benchmark: counted requests per token, and time from the line becoming
readable to the token in the client's hands, against the simulator.

    .venv/bin/python bench/github_budget.py [--scenario a|b|c|d|all] [--latency 0.05]
                                            [--replicas 2] [--seed 1] [--webhooks]
                                            [--credentials 2] [--points-per-minute 720]

Everything runs on loopback: a redis-server on a free port, the GitHub simulator (every API
request delayed by ``--latency``, 50 ms by default), and ``--replicas`` ``issuer serve``
processes sharing that Redis. Each job of a run does what the relay job does: a claim
(at the issuer), the client's step printing the ``::notice::`` line two seconds of the
runner's clock into it (the simulator's ``elapse``), the job completing; then the exchange
long polls until the token arrives (the issuer reads the completed job's log). Claims go to one
replica and exchanges to another, so the runs' shared state is exercised. The job is driven
with three control requests (add it, started; then through the simulator's
``/_sim/jobs/{id}/script`` route: the claim step with its line, the job finished), so
driving the simulator takes as little of the machine's CPU from the replicas as
it can. The load runs on uvloop, as the replicas do, for the same reason.

The simulator enforces GitHub's secondary limit (900 points a minute per credential, a 304
counted too) and the replicas pace themselves under ``--points-per-minute`` (720, their
default). With ``--webhooks`` the simulator sends its signed ``workflow_job`` and
``workflow_run`` deliveries to the first replica's ``POST /github/webhook``, and the
replicas watch the runs as deliveries say rather than by polling.

Scenarios:
  a  20 runs one after another, each with one job.
  b  one run, a matrix of 100 jobs starting over 5 s, every job claiming.
  c  1,000 claims at once: 100 runs of 10 jobs, all starting over 5 s.
  d  300 runs at once (starting over 1 s), one job each, every job claiming and waiting:
     its exchange waits while the job works on for ``--d-work`` seconds (10) before it prints
     its line and completes (issue 16: run it with ``--credentials 1``, with and without
     ``--webhooks``).

Reported: counted requests (GitHub's primary rate limit; 304s are free) per issued token and
per run, the busiest credential's share of its hourly budget, refusals by rate limits
(primary and secondary), the points each credential spent in its busiest minute (the
secondary limit's measure), and the time from the line becoming readable (its job completed:
the moment the simulator sends the completion's delivery) to the token in the client's
hands, p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.lean_http import Answer, LeanClient
from bench.processes import Replicas, SimProcess, cpu_seconds
from tests.redis_server import RedisServer

TOKENS = ("ghp_bench_one_" + "a" * 22, "ghp_bench_two_" + "b" * 22)
WEBHOOK_SECRET = "bench-webhook-secret-" + "w" * 20
HOURLY_LIMIT = 5000
TIMELINE: list[dict[str, Any]] = []  # with --logs: when each job's line was readable, token came


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)


async def post(
    http: LeanClient, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> Answer:
    """A POST retried on a dropped connection, as the workflow client does."""
    for attempt in range(4):
        try:
            return await http.post(url, body, headers)
        except (ConnectionError, TimeoutError):
            if attempt == 3:
                raise
            await asyncio.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


class Bench:
    def __init__(
        self, sim: SimProcess, replicas: Replicas, seed: int, redis_pid: int | None = None
    ) -> None:
        self.sim = sim
        self.replicas = replicas
        self.redis_pid = redis_pid
        self.random = random.Random(seed)
        self.c_runs = 100
        self.d_work = 10.0
        self.tokens = TOKENS
        self.webhooks = False
        self.work = 0.0  # seconds a job works after its claim, its exchange waiting
        self._serial = 0

    async def control(self, http: LeanClient, path: str, **body: Any) -> Any:
        response = await post(http, f"{self.sim.url}/_sim{path}", body)
        if response.status >= 400:
            raise RuntimeError(f"simulator control {path}: {response.status} {response.text}")
        return response.json()

    async def new_run(self, http: LeanClient) -> tuple[str, int]:
        self._serial += 1
        n = self._serial
        upstream, fork = f"bench-org{n}/project", f"contributor{n}/project"
        await self.control(http, "/repos", full_name=upstream)
        await self.control(http, "/repos", full_name=fork, fork_of=upstream)
        run = await self.control(
            http, "/runs", repository=upstream, head_repository=fork, actor=f"contributor{n}"
        )
        return upstream, int(run["id"])

    async def job(
        self,
        http: LeanClient,
        upstream: str,
        run_id: int,
        name: str,
        start_after: float,
        outcome: Outcome,
    ) -> None:
        """One job printing its line and completing, timed from then to the token."""
        await asyncio.sleep(start_after)
        job = await self.control(http, f"/runs/{run_id}/jobs", name=name, actions=[{"do": "start"}])
        script = f"/jobs/{job['id']}/script"
        await asyncio.sleep(0.2)  # the runner's set-up
        claim_url, exchange_url = self._pick_replicas()
        body = {
            "repository": upstream,
            "run_id": run_id,
            "run_attempt": 1,
            "event_name": "pull_request",
        }
        response = await post(http, f"{claim_url}/claim", body)
        if response.status != 201:
            outcome.failures.append(f"claim {response.status}")
            return
        claim = response.json()
        readable: list[float] = []  # when the job completed: its log is served

        async def finish() -> None:
            """The client's step and its line, the job completed: one control request."""
            await self.control(
                http,
                script,
                actions=[
                    {"do": "step", "name": "Claim", "script": "issuer token claim"},
                    {"do": "elapse", "seconds": 2.0},
                    {"do": "print", "text": claim["challenge_line"]},
                    {"do": "finish-step"},
                    {"do": "finish"},
                ],
            )
            readable.append(time.monotonic())
            TIMELINE.append({"job": job["id"], "readable": time.time()})

        if self.work:  # the job goes on working while its exchange already waits
            finishing = asyncio.create_task(self._finish_later(finish))
        else:
            await finish()
        bearer = {"Authorization": f"Bearer {claim['claim_id']}"}
        while True:
            response = await post(http, f"{exchange_url}/exchange?wait=10", headers=bearer)
            code = response.status
            outcome.answers[code] = outcome.answers.get(code, 0) + 1
            if code == 200:
                outcome.latencies.append(time.monotonic() - readable[0])
                TIMELINE.append({"job": job["id"], "token": time.time()})
                break
            if code not in (202, 503):
                outcome.failures.append(f"exchange {code}: {response.text}")
                break
            if code == 503:
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        if self.work:
            await finishing

    async def _finish_later(self, finish: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(self.work)
        await finish()

    def _pick_replicas(self) -> tuple[str, str]:
        urls = self.replicas.urls
        first = self.random.randrange(len(urls))
        return urls[first], urls[(first + 1) % len(urls)]

    async def run_with_jobs(
        self,
        http: LeanClient,
        jobs: int,
        spread: float,
        outcome: Outcome,
        *,
        start_after: float = 0.0,
    ) -> None:
        await asyncio.sleep(start_after)
        upstream, run_id = await self.new_run(http)
        await asyncio.gather(
            *(
                self.job(
                    http, upstream, run_id, f"matrix ({i})", self.random.uniform(0, spread), outcome
                )
                for i in range(jobs)
            )
        )
        await self.control(http, f"/runs/{run_id}/finish")


def counted(sim: SimProcess, tokens: tuple[str, ...] = TOKENS) -> dict[str, int]:
    return {token[:13]: sim.counted(token) for token in tokens}


async def scenario(bench: Bench, name: str) -> dict[str, Any]:
    sim = bench.sim
    before = counted(sim, bench.tokens)
    refused_before = sim.refusals()
    secondary_before = sim.secondary()["refusals"]
    points_before = {token: sim.secondary(token)["points"] for token in bench.tokens}
    outcome = Outcome()
    cpu_before = cpu_use(bench)
    started = time.monotonic()
    http = LeanClient()
    try:
        if name == "a":
            runs, jobs = 20, 1
            for _ in range(runs):
                await bench.run_with_jobs(http, 1, 0.0, outcome)
        elif name == "b":
            runs, jobs = 1, 100
            await bench.run_with_jobs(http, jobs, 5.0, outcome)
        elif name == "c":
            runs, jobs = bench.c_runs, 10
            await asyncio.gather(
                *(bench.run_with_jobs(http, jobs, 5.0, outcome) for _ in range(runs))
            )
        else:
            runs, jobs = 300, 1
            bench.work = bench.d_work
            await asyncio.gather(
                *(
                    bench.run_with_jobs(
                        http, 1, 0.0, outcome, start_after=bench.random.uniform(0, 1)
                    )
                    for _ in range(runs)
                )
            )
    finally:
        await http.aclose()
    elapsed = time.monotonic() - started
    cpu_after = cpu_use(bench)
    after = counted(sim, bench.tokens)
    spent = {name: after[name] - before[name] for name in after}
    total = sum(spent.values())
    tokens = len(outcome.latencies)
    latencies = sorted(outcome.latencies)
    return {
        "scenario": name,
        "runs": runs,
        "jobs_per_run": jobs,
        "tokens": tokens,
        "failures": outcome.failures[:5],
        "exchange_answers": outcome.answers,
        "counted_requests": total,
        "counted_per_token": round(total / max(tokens, 1), 2),
        "counted_per_run": round(total / runs, 1),
        "busiest_credential_share_of_hour": round(max(after.values()) / HOURLY_LIMIT, 3),
        "rate_limit_refusals": sim.refusals() - refused_before,
        "secondary_limit_refusals": sim.secondary()["refusals"] - secondary_before,
        # GitHub's secondary limit: points in a rolling minute, the busiest minute so far
        "points": {
            token[:13]: sim.secondary(token)["points"] - points_before[token]
            for token in bench.tokens
        },
        "peak_points_per_minute": {
            token[:13]: sim.secondary(token)["peak_points_per_minute"] for token in bench.tokens
        },
        "webhooks": bench.webhooks,
        "job_works_after_claim_s": bench.work,
        "time_to_token_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "time_to_token_p99_s": round(_percentile(latencies, 0.99), 3) if latencies else None,
        "time_to_token_max_s": round(latencies[-1], 3) if latencies else None,
        "elapsed_s": round(elapsed, 1),
        # where the machine's CPU went: the replicas compete with GitHub's stand-in and the load
        "cpu_s": {name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_after},
    }


def cpu_use(bench: Bench) -> dict[str, float]:
    """CPU seconds so far of each process on the machine's side of the benchmark."""
    used = {f"replica{i + 1}": cpu_seconds(pid) for i, pid in enumerate(bench.replicas.pids)}
    used["simulator"] = cpu_seconds(bench.sim.process.pid)
    if bench.redis_pid is not None:
        used["redis"] = cpu_seconds(bench.redis_pid)
    used["load"] = time.process_time()
    return used


def _percentile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("a", "b", "c", "d", "all"), default="all")
    parser.add_argument("--webhooks", action="store_true", help="deliveries on")
    parser.add_argument("--credentials", type=int, choices=(1, 2), default=2)
    parser.add_argument("--points-per-minute", type=int, default=720)
    parser.add_argument(
        "--d-work", type=float, default=10.0, help="seconds a job of d works after its claim"
    )
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--c-runs", type=int, default=100, help="runs of 10 jobs in c")
    parser.add_argument("--logs", type=Path, help="a directory for the replicas' logs")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="ISSUER_GITHUB_CONCURRENCY of each replica"
    )
    args = parser.parse_args()
    tokens = TOKENS[: args.credentials]
    redis = RedisServer()
    sim = SimProcess(args.latency, tokens, HOURLY_LIMIT)
    env = {
        "ISSUER_CLAIM_TTL": "600",
        "ISSUER_GITHUB_CONCURRENCY": str(args.concurrency),
        "ISSUER_GITHUB_POINTS_PER_MINUTE": str(args.points_per_minute),
        # every claim comes from this one address: no share of GitHub's budget per address
        "ISSUER_GITHUB_POINTS_PER_ADDRESS": "0",
    }
    if args.webhooks:
        env["ISSUER_GITHUB_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    replicas = Replicas(args.replicas, sim.url, redis.url, tokens, env=env, logs=args.logs)
    try:
        if args.webhooks:
            sim.deliver_to(f"{replicas.urls[0]}/github/webhook", WEBHOOK_SECRET)
        bench = Bench(sim, replicas, args.seed, redis.pid)
        bench.c_runs = args.c_runs
        bench.d_work = args.d_work
        bench.tokens = tokens
        bench.webhooks = args.webhooks
        names = ("a", "b", "c", "d") if args.scenario == "all" else (args.scenario,)
        for name in names:
            print(json.dumps(uvloop.run(scenario(bench, name))), flush=True)
        if args.logs:
            (args.logs / "timeline.json").write_text(json.dumps(TIMELINE))
    finally:
        replicas.stop()
        sim.stop()
        redis.stop()


if __name__ == "__main__":
    main()
