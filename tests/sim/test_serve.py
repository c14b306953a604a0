"""serve_sim and `issuer github-sim`: the API and blob hosts on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from issuer.sim import GitHubSim
from issuer.sim.serve import serve_sim
from tests.sim.receiver import SECRET, Receiver, validated
from tests.sim.support import GITHUB_HEADERS, read_log


def test_serve_sim_serves_the_api_and_the_blobs_on_two_loopback_ports() -> None:
    sim = GitHubSim()
    server = serve_sim(sim)
    try:
        api_url, blob_url = server.url_of(0), server.url_of(1)
        assert sim.blob_base_url == blob_url
        assert urlsplit(api_url).hostname == urlsplit(blob_url).hostname == "127.0.0.1"
        assert urlsplit(api_url).port != urlsplit(blob_url).port
        repo = sim.add_repository("octo-org/octo-repo")
        job = sim.add_job(sim.create_run(repo), "build")
        sim.start_step(job, "claim", script="echo hi")
        sim.print_line(job, "hi")
        sim.finish_job(job)
        with httpx.Client(base_url=api_url, headers=GITHUB_HEADERS) as api:
            log = read_log(api, job.id)
        assert "hi" in log
    finally:
        server.stop()


def test_github_sim_prints_its_urls_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "from issuer.sim.serve import main_github_sim; main_github_sim(0)"],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        api_line = process.stdout.readline()
        blob_line = process.stdout.readline()
        assert api_line.startswith("GitHub API:") and blob_line.startswith("Log blobs:")
        api_url = api_line.split()[-1]
        response = httpx.get(f"{api_url}/repos/a/b/actions/runs/1", headers=GITHUB_HEADERS)
        assert response.status_code == 404
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()


def test_github_sim_sends_signed_deliveries_to_the_webhook_url(
    tmp_path: Path, receiver: Receiver
) -> None:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(SECRET + "\n")
    command = [sys.executable, "-m", "issuer.cli", "github-sim", "--port", "0"]
    command += ["--webhook-url", receiver.url, "--webhook-secret-file", str(secret_file)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"}
    )
    try:
        assert process.stdout is not None
        api_url = process.stdout.readline().split()[-1]
        with httpx.Client(base_url=f"{api_url}/_sim", timeout=20) as control:
            control.post("/repos", json={"full_name": "octo-org/octo-repo"})
            control.post("/runs", json={"repository": "octo-org/octo-repo"})
            assert control.post("/deliveries/flush").json() == {"idle": True}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
    [received] = receiver.got
    assert validated(received)["action"] == "requested"
    assert SECRET not in (process.stdout.read() if process.stdout else "")


def test_github_sim_refuses_a_webhook_url_without_a_secret_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "issuer.cli", "github-sim", "--webhook-url", "http://x/hook"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--webhook-secret-file" in result.stderr
