"""``issuer serve`` as its own process: JSON logs, its view of the client, SIGTERM."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from issuer.web.serving import BackgroundServer
from tests.e2e.harness import GITHUB_TOKEN, ForkRun, IssuerProcess, bearer
from tests.web.test_http import wait_for_open_long_poll


@pytest.fixture
def serve_env(github: BackgroundServer) -> dict[str, str]:
    return {
        "ISSUER_GITHUB_API_URL": github.url_of(0),
        "ISSUER_GITHUB_TOKEN": GITHUB_TOKEN,
        "ISSUER_POLL_INTERVAL": "1",
    }


@pytest.fixture
def issuer(serve_env: dict[str, str]) -> Iterator[IssuerProcess]:
    process = IssuerProcess({**serve_env, "ISSUER_CLAIMS_PER_ADDRESS": "1"})
    yield process
    process.stop()


def log_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_every_log_line_is_json_and_request_lines_carry_the_request_id(
    issuer: IssuerProcess,
) -> None:
    httpx.get(f"{issuer.url}/healthz", headers={"X-Request-Id": "probe-7"})
    lines = log_lines(issuer.stop())
    keys = {"time", "level", "logger", "message", "request_id"}
    assert lines and all(keys <= line.keys() for line in lines)
    probes = [line for line in lines if line["request_id"] == "probe-7"]
    assert len(probes) == 1, probes
    (request,) = probes
    assert request["path"] == "/healthz" and request["status"] == 200


def test_serve_believes_no_forwarded_for_header_without_trusted_proxies(
    issuer: IssuerProcess, pr: ForkRun
) -> None:
    first = httpx.post(
        f"{issuer.url}/claim", json=pr.claim_body(), headers={"X-Forwarded-For": "203.0.113.1"}
    )
    second = httpx.post(
        f"{issuer.url}/claim", json=pr.claim_body(), headers={"X-Forwarded-For": "203.0.113.2"}
    )
    assert first.status_code == 201
    assert second.status_code == 429
    assert second.json()["error"] == "rate_limited"


def test_serve_with_a_bad_abuse_setting_stops_with_one_line_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "issuer.cli", "serve", "--port", "9"],
        env={"ISSUER_URL": "https://i.example", "ISSUER_CLAIMS_PER_RUN": "-1", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("issuer: ISSUER_CLAIMS_PER_RUN: ")


def test_sigterm_answers_an_open_long_poll_as_pending_then_the_process_exits(
    serve_env: dict[str, str], pr: ForkRun
) -> None:
    pr.job("build")  # a run in progress whose log never shows the line
    issuer = IssuerProcess(serve_env)
    try:
        with httpx.Client(timeout=10) as http:
            claim = http.post(f"{issuer.url}/claim", json=pr.claim_body()).json()
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                # The client gives up long before the poll's 30 s: only an early answer passes.
                poll = pool.submit(
                    httpx.post,
                    claim["exchange_url"],
                    params={"wait": "30"},
                    headers=bearer(claim),
                    timeout=15,
                )
                wait_for_open_long_poll(
                    lambda: httpx.get(f"{issuer.metrics_url}/metrics", timeout=5).text
                )
                issuer.process.send_signal(signal.SIGTERM)
                response = poll.result()
        issuer.process.wait(timeout=15)
    finally:
        output = issuer.stop()
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    assert issuer.process.returncode in (0, -signal.SIGTERM)
    assert claim["claim_id"] not in output


def test_metrics_are_served_on_their_own_listener_not_on_the_public_port(
    issuer: IssuerProcess,
) -> None:
    assert httpx.get(f"{issuer.url}/metrics").status_code == 404
    scraped = httpx.get(f"{issuer.metrics_url}/metrics")
    assert scraped.status_code == 200 and "issuer_claims_total" in scraped.text


def test_serve_stops_with_one_line_when_the_metrics_address_is_taken(
    serve_env: dict[str, str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "issuer.cli", "serve", "--port", "9"],
            env={
                **serve_env,
                "ISSUER_URL": "https://i.example",
                "ISSUER_METRICS_ADDRESS": f"127.0.0.1:{port}",
                "PATH": "",
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("issuer: ISSUER_METRICS_ADDRESS: cannot listen on 127.0.0.1:")
