"""The operator's first hour: each command a person runs, read as that person reads it.

Every failure is one line on stderr that names the variable to look at, never a traceback;
what the commands print is what an operator needs, in the names an operator sets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from issuer.oidc.keys import KeyPolicy, Keys
from issuer.oidc.service import redis_store
from issuer.sim.control import control_routes
from issuer.sim.simulator import GitHubSim

ROOT = Path(__file__).resolve().parent.parent


def issuer(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ISSUER_", "BUILDER_"))}
    return subprocess.run(
        [sys.executable, "-m", "issuer.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command says, after checking that it is all it says."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def new_kek() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def redis_env(redis_url: str, kek: str) -> dict[str, str]:
    return {
        "ISSUER_URL": "https://issuer.example",
        "ISSUER_REDIS_URL": redis_url,
        "ISSUER_KEY_ENCRYPTION_KEY": kek,
        "ISSUER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
    }


def seed_keyring(redis_url: str, kek: str) -> None:
    """The keyring the first `issuer serve` makes."""

    async def seed() -> None:
        store = redis_store(redis_url)
        try:
            await Keys(store, base64.b64decode(kek), KeyPolicy()).load()
        finally:
            await store.close()

    asyncio.run(seed())


# --- Redis down, the wrong key-encryption key ------------------------------------------------


@pytest.mark.parametrize("command", [["keys", "list"], ["serve", "--port", "9"]])
def test_a_redis_that_does_not_answer_is_one_line_naming_the_redis_url(command: list[str]) -> None:
    env = redis_env(f"redis://127.0.0.1:{free_port()}/0", new_kek())
    line = one_line(issuer(*command, env=env))
    assert line.startswith("issuer: ISSUER_REDIS_URL: Redis did not answer")


@pytest.mark.parametrize("command", [["keys", "list"], ["serve", "--port", "9"]])
def test_the_wrong_key_encryption_key_is_one_line_naming_it(
    redis_url: str, command: list[str]
) -> None:
    seed_keyring(redis_url, new_kek())
    line = one_line(issuer(*command, env=redis_env(redis_url, new_kek())))
    assert line.startswith("issuer: ISSUER_KEY_ENCRYPTION_KEY: does not unwrap")


def test_a_bad_github_pace_stops_serve_with_one_line_naming_it() -> None:
    env = {
        "ISSUER_URL": "https://issuer.example",
        "ISSUER_GITHUB_POINTS_PER_MINUTE": "lots",
        "ISSUER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    line = one_line(issuer("serve", "--port", "9", env=env))
    assert line.startswith("issuer: ISSUER_GITHUB_POINTS_PER_MINUTE: must be a whole number")


# --- issuer keys list ------------------------------------------------------------------------


def test_keys_list_on_an_empty_store_creates_no_key_and_says_so(redis_url: str) -> None:
    line = one_line(issuer("keys", "list", env=redis_env(redis_url, new_kek())))
    assert "no signing keys yet" in line and "issuer serve" in line
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_keys_list_shows_utc_times_and_says_which_are_still_to_come(redis_url: str) -> None:
    kek = new_kek()
    seed_keyring(redis_url, kek)
    assert issuer("keys", "rotate", env=redis_env(redis_url, kek)).returncode == 0
    listed = issuer("keys", "list", env=redis_env(redis_url, kek))
    assert listed.returncode == 0, listed.stderr
    active, upcoming = sorted(listed.stdout.splitlines(), key=lambda line: " next " in line)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.search(rf"created {stamp}  activated {stamp}  retires {stamp} \(scheduled", active)
    assert re.search(rf"activates {stamp} \(scheduled\)", upcoming)
    assert not re.search(r"\b1[0-9]{9}\b", listed.stdout)  # no raw epoch seconds


# --- the builder service -----------------------------------------------------------------------


def builder_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "BUILDER_URL": f"http://127.0.0.1:{free_port()}",
        "BUILDER_TRUSTED_ISSUERS": "https://issuer.example",
        "BUILDER_REDIS_URL": redis_url,
        "BUILDER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        **extra,
    }


def test_the_builder_service_logs_json_lines_as_the_issuer_does(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = builder_env(redis_url, BUILDER_SCRATCH_ROOT=str(tmp_path))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BUILDER_")}
    with open(tmp_path / "log", "w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "issuer.cli", "builder", "serve", "--port", str(port)],
            env={**clean, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=15)
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]  # raises on a plain-text line
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in parsed)
    assert any("BUILDER_ADMIN_TOKEN is unset" in line["message"] for line in parsed)


def test_the_admin_token_minimum_is_the_same_in_the_code_the_readme_and_the_example(
    redis_url: str,
) -> None:
    env = builder_env(redis_url, BUILDER_ADMIN_TOKEN="x" * 20)
    line = one_line(issuer("builder", "serve", "--port", "9", env=env))
    assert line == "issuer: BUILDER_ADMIN_TOKEN: must be at least 32 characters long"
    assert "at least 32 characters" in (ROOT / "deploy" / "builder.env.example").read_text()
    assert "`issuer trust`), at least 32 characters" in (ROOT / "README.md").read_text()


# --- configuration -------------------------------------------------------------------------------


def test_every_variable_of_the_issuer_env_example_is_one_the_issuer_reads() -> None:
    checked = issuer("config", "check", env={"ISSUER_URL": "https://issuer.example"})
    read = {line.split(" = ")[0] for line in checked.stdout.splitlines()}
    example = (ROOT / "deploy" / "issuer.env.example").read_text()
    named = set(re.findall(r"^#? ?(ISSUER_[A-Z0-9_]+)=", example, re.M))
    assert named and named <= read
    assert "ISSUER_ADMIN_TOKEN" not in named  # the issuer has no admin endpoints


# --- help and the simulator ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [["serve"], ["github-sim"], ["builder", "serve"]])
def test_every_option_of_the_long_running_commands_is_explained(command: list[str]) -> None:
    result = issuer(*command, "--help", env={})
    assert result.returncode == 0
    options = re.findall(r"^  (--[a-z-]+) [A-Z]+ *(.*)$", result.stdout, re.M)
    assert {name for name, _ in options} >= {"--host", "--port"}
    assert all(text.strip() for _, text in options), result.stdout
    description = result.stdout.split("\n\n")[1]
    assert not description.startswith("options:")


def test_the_simulator_listens_on_the_host_it_is_given() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "issuer.cli",
            "github-sim",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"GitHub API:   http://127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/_sim/requests", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)


def test_the_simulators_control_api_is_documented_route_by_route() -> None:
    documented = (ROOT / "docs" / "simulator.md").read_text()
    for route in control_routes(GitHubSim()):
        path = re.sub(r"\{(\w+):int\}", r"{\1}", route.path)  # type: ignore[attr-defined]
        assert f" {path}`" in documented or f" {path}?" in documented, path
