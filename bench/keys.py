"""Keys benchmark: JWKS serving against a bare route, token signing against raw signing.

    .venv/bin/python bench/keys.py [--seconds S] [--connections N] [--alg RS256|ES256]

1. One uvicorn server process serves the issuer app with one extra route, ``/bare``: a
   plain Starlette handler returning the same JWKS bytes as a constant. A load process
   (raw keep-alive HTTP/1.1 over asyncio sockets, N connections) alternates between
   ``/.well-known/jwks`` and ``/bare`` in rounds, so both meet the same server, machine and
   noise. Ratio = JWKS requests/second / bare requests/second.
2. In this process: tokens signed per second through ``issuer.oidc.tokens.sign`` with the
   keyring's signing key (header, claims JSON, base64url, signature), against
   ``cryptography`` signing the very signing input of such a token. Ratio = issuer / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from issuer.oidc.keys import KeyPolicy, Keys
from issuer.oidc.tokens import sign
from issuer.store import MemoryStore

PATHS = {"jwks": "/.well-known/jwks", "bare": "/bare"}


def serve(port: int, ready: Any) -> None:
    """The server process: the issuer app plus the bare route, one uvicorn worker."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from issuer.oidc.app import create_app
    from issuer.oidc.config import IssuerConfig
    from issuer.oidc.service import IssuerService

    bare_body: list[bytes] = [b""]

    async def start() -> IssuerService:
        service = await IssuerService.start(
            IssuerConfig(issuer_url=f"http://127.0.0.1:{port}"), store=MemoryStore()
        )
        bare_body[0] = service.published.jwks.body
        return service

    async def bare(request: Request) -> Response:
        return Response(bare_body[0], media_type="application/jwk-set+json")

    app = create_app(start)
    app.router.routes.append(Route("/bare", bare, methods=["GET"]))
    config = uvicorn.Config(app, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.05)
        ready.set()
        await task

    asyncio.run(run())


async def _connection(port: int, request: bytes, deadline: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    while time.perf_counter() < deadline:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200"), head[:40]
        done += 1
    writer.close()
    return done


async def _load(port: int, path: str, seconds: float, connections: int) -> float:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    start = time.perf_counter()
    deadline = start + seconds
    counts = await asyncio.gather(
        *(_connection(port, request, deadline) for _ in range(connections))
    )
    return sum(counts) / (time.perf_counter() - start)


def bench_jwks(seconds: float, connections: int, rounds: int) -> dict[str, float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, ready), daemon=True)
    server.start()
    if not ready.wait(30):
        raise SystemExit("the server did not start")
    rates: dict[str, list[float]] = {"jwks": [], "bare": []}
    try:
        for name in rates:  # warm up both routes
            asyncio.run(_load(port, PATHS[name], 0.5, connections))
        for _ in range(rounds):
            for name in rates:
                rates[name].append(asyncio.run(_load(port, PATHS[name], seconds, connections)))
    finally:
        server.terminate()
        server.join()
    jwks, bare = sum(rates["jwks"]) / rounds, sum(rates["bare"]) / rounds
    return {"jwks_rps": jwks, "bare_rps": bare, "ratio": jwks / bare}


def _claims() -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://issuer.example",
        "aud": "https://builder.example",
        "sub": "repo:octo-org/octo-repo:pull_request",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "q3zY1lWJ9v0nX2h8d4Kc2A",
    }
    for name in ("repository", "repository_owner", "head_repository", "actor", "workflow"):
        claims[name] = "octo-org/octo-repo"
    for name in ("repository_id", "run_id", "run_number", "run_attempt", "job_id", "actor_id"):
        claims[name] = "1234567890"
    return claims


def _rate(action: Any, seconds: float) -> float:
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(20):
            action()
        count += 20
    return count / (time.perf_counter() - start)


def bench_signing(alg: str, seconds: float, rounds: int) -> dict[str, float]:
    keys = Keys(MemoryStore(), os.urandom(32), KeyPolicy(alg=alg))
    asyncio.run(keys.load())
    claims = _claims()
    token = sign(claims, keys.signing_key())
    signing_input = token.rsplit(".", 1)[0].encode()
    private = keys.signing_key().key.private_key
    if alg == "ES256":
        curve = ec.ECDSA(hashes.SHA256())

        def raw() -> None:
            private.sign(signing_input, curve)  # type: ignore[union-attr, call-arg, arg-type]
    else:
        pkcs1 = padding.PKCS1v15()

        def raw() -> None:
            private.sign(signing_input, pkcs1, hashes.SHA256())  # type: ignore[union-attr, call-arg, arg-type]

    def issuer() -> None:
        sign(claims, keys.signing_key())

    issued, direct = [], []
    for _ in range(rounds):
        issued.append(_rate(issuer, seconds))
        direct.append(_rate(raw, seconds))
    ours, theirs = sum(issued) / rounds, sum(direct) / rounds
    return {"issuer_per_s": ours, "raw_per_s": theirs, "ratio": ours / theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--alg", action="append", choices=["RS256", "ES256"])
    args = parser.parse_args()
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "jwks": bench_jwks(args.seconds, args.connections, args.rounds),
    }
    for alg in args.alg or ["RS256", "ES256"]:
        results[f"signing_{alg}"] = bench_signing(alg, args.seconds, args.rounds)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
