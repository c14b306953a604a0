"""Builder benchmark: time from exchange to first build output and to the built image, and
the builder service's memory with 10 builders live (issue 14).

    .venv/bin/python bench/builder.py [--runs 10] [--warmup 1] [--live 10] [--no-push]
                                      [--json] [--trace] [--logs DIR]

Everything runs on loopback, as an operator runs it:

- Debian's ``docker-registry`` on a free port, holding the busybox base image, made here
  with buildah from ``/bin/busybox`` (``issuer.builder.localregistry``);
- a ``redis-server`` on a free port (``issuer builder serve`` requires ``BUILDER_REDIS_URL``:
  the service's real store, not an in-process one);
- a token issuer of this benchmark's own, in a thread of this process: one RSA key, discovery
  and JWKS on a loopback socket, and RS256 ID tokens shaped like GitHub's for a fork's pull
  request (each token its own ``run_id``, ``head_repository`` and ``jti``);
- the builder service as its own process: ``python -m issuer.cli builder serve`` with
  ``BUILDER_*`` settings (the local registry allowed and insecure; the scratch root a fresh
  directory under the temporary directory, traversable by the builds' ids); each builder is
  its own worker process, a child of the service (``issuer.builder.worker``).

One trust relationship (through the admin API) lets the project's pull-request tokens from
that issuer have up to 100 builders, and names a repository of the local registry to push
to (``--no-push``: none, the build ends at the OCI archive).

(a) **Timings**, ``--runs`` times after ``--warmup`` discarded runs, one after another: POST
``/token`` (RFC 8693) with a fresh token; POST ``{endpoint}/build`` with a small context
(``FROM`` the base, ``COPY`` a file, ``RUN`` a trivial command); the streamed lines are read
as they come. Measured from the start of the exchange: the exchange's answer, the first
streamed line (``pulling BASE``), the first line of buildah's own output (``STEP 1/...``),
buildah's ``COMMIT`` line, the line after buildah's output (``pushing ...``: the image
exported and archived), and the final ``aux`` line (pushed); then DELETE the builder and
wait for its process to exit, so that each run starts on an idle service. A build whose
``RUN`` step's own line never arrives is counted (``run_output_missing``).

(b) **Memory**: the service's ``VmRSS`` (``/proc/PID/status``) and ``Pss`` and private
memory (``/proc/PID/smaps_rollup``) when fresh (before any builder), idle after the runs,
with ``--live`` builders live (as many exchanges, no build, none deleted), with the summed
RSS, PSS and private memory of the builder worker processes (the service's children running
``issuer.builder.worker``), and after all of them were deleted and their processes exited.

Prints a table; ``--json`` prints the figures as JSON on stdout (the table then goes to
stderr). ``--trace`` prints each streamed line with its time. ``--logs DIR`` keeps the
service's log (with the workers' stderr) in ``DIR/builder-service.log``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.processes import wait_ready
from issuer.builder.localregistry import LocalRegistry, push_busybox_base
from issuer.web.serving import BackgroundServer, bound_socket
from tests.redis_server import RedisServer, free_port

PROJECT = "octo-org/octo-repo"
AUDIENCE = "https://builder.bench.example"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"

DOCKERFILE = """\
FROM {base}
COPY hello.txt /hello.txt
RUN cp /hello.txt /copied.txt && echo "copied $(wc -c < /copied.txt) bytes"
"""
RUN_OUTPUT = "copied 22 bytes"
"""The line the RUN step prints (the context's hello.txt is 22 bytes)."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the token issuer ------------------------------------------------------------------------


class TokenIssuer:
    """Discovery and JWKS of one RSA key on a loopback socket (a thread of this process), and
    GitHub-shaped ID tokens for a fork's pull request signed with that key."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, private=True)
        self.kid = self.key.thumbprint()
        sock = bound_socket()
        self.url = "http://{}:{}".format(*sock.getsockname()[:2])
        jwk = dict(self.key.as_dict(private=False))
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        self._jwks = {"keys": [jwk]}
        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/.well-known/jwks", self._keys),
            ]
        )
        self.server = BackgroundServer(app, [sock]).start()

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/.well-known/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _keys(self, request: Request) -> Response:
        return JSONResponse(self._jwks, headers={"Cache-Control": "max-age=300"})

    def token(self, run_id: int) -> str:
        """A pull-request token of run ``run_id`` from a fork of its own (so that the
        service's per-run and per-head-repository limits never bind)."""
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": f"repo:{PROJECT}:pull_request",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(16),
            "repository": PROJECT,
            "repository_owner": PROJECT.split("/")[0],
            "run_id": str(run_id),
            "run_attempt": "1",
            "event_name": "pull_request",
            "head_repository": f"contributor-{run_id}/octo-repo",
            "actor": f"contributor-{run_id}",
        }
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key)

    def stop(self) -> None:
        self.server.stop()


# -- the builder service ---------------------------------------------------------------------


class Service:
    """``python -m issuer.cli builder serve`` as its own process, configured by BUILDER_*."""

    def __init__(self, env: dict[str, str], log: TextIO) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BUILDER_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "issuer.cli", "builder", "serve", "--port", str(port)],
            env={**clean, "BUILDER_URL": self.url, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(self.url)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        """The builder worker processes: the service's children running the worker."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.pid and b"issuer.builder.worker" in cmdline:
                found.append(int(entry.name))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@dataclass
class Memory:
    """KiB: resident (VmRSS), proportional (Pss) and private (Private_Clean + Private_Dirty)."""

    rss: int = 0
    pss: int = 0
    private: int = 0
    processes: int = 0

    def __add__(self, other: Memory) -> Memory:
        return Memory(
            self.rss + other.rss,
            self.pss + other.pss,
            self.private + other.private,
            self.processes + other.processes,
        )

    def as_json(self) -> dict[str, int]:
        return {
            "rss_kib": self.rss,
            "pss_kib": self.pss,
            "private_kib": self.private,
            "processes": self.processes,
        }


def memory(pid: int) -> Memory:
    fields: dict[str, int] = {}
    for name in ("status", "smaps_rollup"):
        try:
            text = Path(f"/proc/{pid}/{name}").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[key] = int(parts[0])
    return Memory(
        rss=fields.get("VmRSS", 0),
        pss=fields.get("Pss", 0),
        private=fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
        processes=1,
    )


# -- one builder -----------------------------------------------------------------------------


def context(base: str) -> bytes:
    files = {"Dockerfile": DOCKERFILE.format(base=base), "hello.txt": "a fork's pull request\n"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class Builder:
    endpoint: str
    auth: dict[str, str]


def exchange(http: httpx.Client, url: str, token: str) -> Builder:
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": token,
        "subject_token_type": ID_TOKEN,
        "audience": PROJECT,
    }
    answer = http.post(f"{url}/token", data=form)
    if answer.status_code != 200:
        raise RuntimeError(f"the exchange was refused: {answer.status_code} {answer.text}")
    body = answer.json()
    return Builder(body["builder"]["endpoint"], {"Authorization": f"Bearer {body['access_token']}"})


@dataclass
class Run:
    """Seconds from the start of the exchange."""

    exchange: float = 0.0
    first_line: float = 0.0
    first_step: float = 0.0
    commit: float = 0.0  # buildah's COMMIT line: every step has run
    exported: float = 0.0  # the line after buildah's output (image exported and archived)
    total: float = 0.0
    delete: float = 0.0  # the DELETE request alone
    gone: float = 0.0  # from the DELETE request to the builder's process gone
    lines: int = 0
    run_output: bool = False  # the RUN step's own line arrived
    pushed: str | None = None


def one_run(
    http: httpx.Client, service: Service, token: str, build_context: bytes, trace: bool
) -> Run:
    run = Run()
    url = service.url
    start = time.perf_counter()
    builder = exchange(http, url, token)
    run.exchange = time.perf_counter() - start
    last: dict[str, Any] = {}
    try:
        with http.stream(
            "POST", f"{builder.endpoint}/build", content=build_context, headers=builder.auth
        ) as answer:
            if answer.status_code != 200:
                answer.read()
                raise RuntimeError(f"the build was refused: {answer.status_code} {answer.text}")
            for raw in answer.iter_lines():
                if not raw.strip():
                    continue
                now = time.perf_counter() - start
                last = json.loads(raw)
                run.lines += 1
                if trace:
                    say(f"  {now:6.3f} {json.dumps(last)[:150]}")
                if run.first_line == 0.0:
                    run.first_line = now
                text = str(last.get("stream", ""))
                run.run_output = run.run_output or text.strip() == RUN_OUTPUT
                if run.first_step == 0.0 and text.startswith("STEP 1/"):
                    run.first_step = now
                if run.commit == 0.0 and text.startswith("COMMIT "):
                    run.commit = now
                if run.exported == 0.0 and (text.startswith("pushing ") or "aux" in last):
                    run.exported = now
                if "aux" in last:
                    run.total = now
        if "aux" not in last:
            raise RuntimeError(f"the build failed: {last.get('error', last)}")
        run.pushed = last["aux"].get("pushed")
    finally:
        began = time.perf_counter()
        released = http.delete(builder.endpoint, headers=builder.auth)
        run.delete = time.perf_counter() - began
        if released.status_code != 200:
            raise RuntimeError(f"DELETE failed: {released.status_code} {released.text}")
        wait_for(lambda: not service.workers(), 30, "the builder's process to exit")
        run.gone = time.perf_counter() - began
    return run


# -- statistics and output ----------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p90": round(percentile(values, 0.9), 3),
        "max": round(max(values), 3),
        "min": round(min(values), 3),
    }


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)
    warmup: list[Run] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    live_exchanges: list[float] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        measures = (
            "exchange",
            "first_line",
            "first_step",
            "commit",
            "exported",
            "total",
            "delete",
            "gone",
        )
        return {
            "settings": self.settings,
            "timings_s": {
                name: summary([getattr(run, name) for run in self.runs]) for name in measures
            },
            "runs_s": [
                {
                    **{name: round(getattr(run, name), 3) for name in measures},
                    "lines": run.lines,
                    "run_output": run.run_output,
                }
                for run in self.runs
            ],
            "warmup_runs_s": [
                {
                    **{name: round(getattr(run, name), 3) for name in measures},
                    "lines": run.lines,
                    "run_output": run.run_output,
                }
                for run in self.warmup
            ],
            "run_output_missing": sum(not run.run_output for run in [*self.warmup, *self.runs]),
            "live_exchange_s": summary(self.live_exchanges) if self.live_exchanges else None,
            "memory": self.memory,
        }


def table(results: Results) -> str:
    data = results.as_json()
    labels = {
        "exchange": "exchange (POST /token answered)",
        "first_line": "exchange -> first streamed line",
        "first_step": "exchange -> first buildah line (STEP 1/)",
        "commit": "exchange -> buildah's COMMIT line",
        "exported": "exchange -> image archived (pushing line)",
        "total": "exchange -> final aux line",
        "delete": "DELETE answered (from its request)",
        "gone": "DELETE -> builder's process exited",
    }
    out = [
        f"{len(results.runs)} runs (after {len(results.warmup)} warm-up), seconds",
        f"{'':44} {'p50':>7} {'p90':>7} {'max':>7}",
    ]
    for name, label in labels.items():
        row = data["timings_s"][name]
        out.append(f"{label:44} {row['p50']:7.2f} {row['p90']:7.2f} {row['max']:7.2f}")
    live = data["live_exchange_s"]
    if live:
        out.append(
            f"{'exchange, each of the live builders':44}"
            f" {live['p50']:7.2f} {live['p90']:7.2f} {live['max']:7.2f}"
        )
    missing = data["run_output_missing"]
    if missing:
        every = len(results.runs) + len(results.warmup)
        out.append(
            f"builds whose RUN output line ({RUN_OUTPUT!r}) never came: {missing} of {every}"
        )
    out += ["", f"memory, KiB{'':33} {'RSS':>9} {'PSS':>9} {'private':>9}"]
    for name, row in results.memory.items():
        label = name.replace("_", " ")
        if row["processes"] != 1:
            label += f" ({row['processes']} processes)"
        out.append(f"{label:44} {row['rss_kib']:9,} {row['pss_kib']:9,} {row['private_kib']:9,}")
    return "\n".join(out)


# -- the benchmark ------------------------------------------------------------------------------


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def bench(args: argparse.Namespace, log: TextIO) -> Results:
    results = Results(
        settings={
            "runs": args.runs,
            "warmup": args.warmup,
            "live": args.live,
            "push": not args.no_push,
            "cpus": os.cpu_count(),
            "dockerfile": DOCKERFILE.strip().splitlines(),
        }
    )
    registry = LocalRegistry().start()
    redis = issuer = service = None
    scratch_root = Path(tempfile.mkdtemp(prefix="bench-builders-"))
    try:
        say(f"registry at {registry.host}; making the busybox base image")
        base = push_busybox_base(registry.host)
        redis = RedisServer()
        issuer = TokenIssuer()
        admin_token = secrets.token_urlsafe(24)
        service = Service(
            {
                "BUILDER_AUDIENCE": AUDIENCE,
                "BUILDER_TRUSTED_ISSUERS": issuer.url,
                "BUILDER_REDIS_URL": redis.url,
                "BUILDER_ADMIN_TOKEN": admin_token,
                "BUILDER_SCRATCH_ROOT": str(scratch_root),
                "BUILDER_REGISTRIES": registry.host,
                "BUILDER_INSECURE_REGISTRIES": registry.host,
                "BUILDER_BUILD_TIMEOUT": "300",
            },
            log,
        )
        say(f"builder service {service.url} (pid {service.pid}), redis {redis.url}")
        relationship: dict[str, Any] = {
            "project": PROJECT,
            "issuer": issuer.url,
            "repository": PROJECT,
            "max_builders": 100,
            "ttl": 900,
        }
        if not args.no_push:
            relationship["push"] = f"{registry.host}/{PROJECT}"
        added = httpx.post(
            f"{service.url}/admin/trust",
            headers={"Authorization": f"Bearer {admin_token}"},
            json=relationship,
        )
        if added.status_code != 201:
            raise RuntimeError(f"trust relationship refused: {added.text}")
        results.memory["service_fresh"] = memory(service.pid).as_json()

        build_context = context(base)
        run_ids = iter(range(1000, 1_000_000))
        with httpx.Client(timeout=300) as http:
            for number in range(args.warmup + args.runs):
                token = issuer.token(next(run_ids))
                run = one_run(http, service, token, build_context, args.trace)
                counted = number >= args.warmup
                (results.runs if counted else results.warmup).append(run)
                say(
                    f"{'run' if counted else 'warm-up'} {number + 1 - args.warmup * counted}:"
                    f" exchange {run.exchange:.2f} s, first line {run.first_line:.2f} s,"
                    f" STEP 1 {run.first_step:.2f} s, aux {run.total:.2f} s"
                    f" ({run.lines} lines{'' if run.run_output else ', RUN output missing'}),"
                    f" DELETE {run.delete:.2f} s, exited {run.gone:.2f} s"
                )
            time.sleep(1)
            results.memory["service_idle_after_runs"] = memory(service.pid).as_json()

            live: list[Builder] = []
            for _ in range(args.live):
                start = time.perf_counter()
                live.append(exchange(http, service.url, issuer.token(next(run_ids))))
                results.live_exchanges.append(time.perf_counter() - start)
            time.sleep(1)
            workers = service.workers()
            if len(workers) != args.live:
                raise RuntimeError(f"{len(workers)} worker processes, {args.live} builders")
            results.memory[f"service_with_{args.live}_live"] = memory(service.pid).as_json()
            total = Memory()
            for pid in workers:
                total += memory(pid)
            results.memory[f"workers_{args.live}_live_summed"] = total.as_json()
            say(f"{args.live} builders live: workers {', '.join(map(str, workers))}")
            for builder in live:
                released = http.delete(builder.endpoint, headers=builder.auth)
                if released.status_code != 200:
                    raise RuntimeError(f"DELETE failed: {released.status_code} {released.text}")
            wait_for(lambda: not service.workers(), 30, "the builders' processes to exit")
            time.sleep(1)
            results.memory["service_after_delete"] = memory(service.pid).as_json()
        leftovers = [path.name for path in scratch_root.iterdir()]
        if leftovers:
            say(f"scratch directories left behind: {leftovers}")
        results.settings["scratch_left_behind"] = len(leftovers)
        return results
    finally:
        if service is not None:
            service.stop()
        if issuer is not None:
            issuer.stop()
        if redis is not None:
            redis.stop()
        registry.stop()
        shutil.rmtree(scratch_root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed builds (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="builds not counted (default 1)")
    parser.add_argument("--live", type=int, default=10, help="builders live at once (10)")
    parser.add_argument("--no-push", action="store_true", help="no push target: archive only")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    parser.add_argument("--trace", action="store_true", help="each streamed line, timed")
    parser.add_argument("--logs", type=Path, help="keep the service's log in this directory")
    args = parser.parse_args()
    if args.runs < 1 or args.live < 1:
        parser.error("--runs and --live must be at least 1")
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        log: TextIO = open(args.logs / "builder-service.log", "w")
    else:
        log = tempfile.TemporaryFile(mode="w+")
    try:
        results = bench(args, log)
    except BaseException:
        log.flush()
        if args.logs is None:
            log.seek(0)
            tail = log.read()[-4000:]
            say(f"--- the builder service's log (end) ---\n{tail}")
        raise
    finally:
        log.close()
    if args.json:
        say(table(results))
        print(json.dumps(results.as_json(), indent=2))
    else:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
