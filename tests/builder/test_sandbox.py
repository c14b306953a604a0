"""The attack suite: what a stranger's Dockerfile tries from a ``RUN`` step, in a real build.

Each attack runs twice, as the same ``RUN`` step of a real build on a real builder service
process (``issuer builder serve``'s own app and environment, its admin token and Redis URL in
its environment, a registry-credentials file among its files): once in the sandbox, where it
must fail, and once with the sandbox turned off (a switch only the tests have, see
``service_process.py``: each step then runs with the service's own privileges, all
capabilities and the host's namespaces, as builds ran before the sandbox, buildah's chroot
alone around them), where it must succeed, which shows that the test can fail. A step
reports success by printing a line that its own text cannot print
(``"ATT""ACK-SUCCEEDED"`` in the script, ``ATTACK-SUCCEEDED`` in the output).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.builder.processes import BuilderProcess
from tests.builder.support import ADMIN_TOKEN, AUDIENCE, PROJECT, FakeIssuer, context
from tests.image_registry import ImageRegistry
from tests.redis_server import RedisServer

SUCCEEDED = "ATTACK-SUCCEEDED"
REPORT = 'echo "ATT""ACK-SUCCEEDED"'
MEMORY_LIMIT = 256 << 20
PIDS_LIMIT = 128
SANDBOX = pytest.mark.parametrize(
    "sandboxed", [True, False], ids=["in-the-sandbox", "without-the-sandbox"]
)


@dataclass
class Attempt:
    lines: list[dict[str, object]]

    @property
    def succeeded(self) -> bool:
        return any(str(line.get("stream", "")).strip() == SUCCEEDED for line in self.lines)

    @property
    def error(self) -> str | None:
        value = self.lines[-1].get("error") if self.lines else None
        return str(value) if value is not None else None


class Attacker:
    """Two builder services, with and without the sandbox, and a way to run a step on each."""

    def __init__(
        self,
        issuer: FakeIssuer,
        registry: ImageRegistry,
        services: dict[bool, BuilderProcess],
        secret_file: Path,
        secret: str,
        redis: RedisServer,
    ) -> None:
        self.issuer = issuer
        self.registry = registry
        self.services = services
        self.secret_file = secret_file
        self.secret = secret
        self.redis = redis
        self.http = httpx.Client(timeout=120)

    def builder(self, sandboxed: bool) -> tuple[str, dict[str, str]]:
        """A fresh builder: its endpoint and its build token's header."""
        service = self.services[sandboxed]
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": self.issuer.token(),
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "audience": PROJECT,
        }
        granted = self.http.post(f"{service.url}/token", data=form)
        assert granted.status_code == 200, granted.text
        body = granted.json()
        return body["builder"]["endpoint"], {"Authorization": f"Bearer {body['access_token']}"}

    def build(self, endpoint: str, auth: dict[str, str], files: dict[str, str | bytes]) -> Attempt:
        with self.http.stream(
            "POST", f"{endpoint}/build", content=context(files), headers=auth
        ) as response:
            assert response.status_code == 200, response.read()
            lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
        return Attempt(lines)

    def attack(self, sandboxed: bool, script: str, *, keep: bool = False) -> Attempt:
        """Run ``script`` as a ``RUN`` step on a fresh builder (deleted afterwards unless
        ``keep``)."""
        endpoint, auth = self.builder(sandboxed)
        try:
            return self.build(
                endpoint, auth, {"Dockerfile": f"FROM {self.registry.base}\nRUN {script}\n"}
            )
        finally:
            if not keep:
                self.http.delete(endpoint, headers=auth)

    def alive(self, sandboxed: bool) -> bool:
        return self.http.get(f"{self.services[sandboxed].url}/readyz").status_code == 200


@pytest.fixture(scope="module")
def attacker(
    redis_server: RedisServer,
    _issuer_servers: tuple[FakeIssuer, FakeIssuer],
    image_registry: ImageRegistry,
    scratch_base: Path,
) -> Iterator[Attacker]:
    redis_server.flush()
    issuer = _issuer_servers[0].reset()
    secret = "service-file-" + secrets.token_hex(8)
    secrets_dir = Path(tempfile.mkdtemp(prefix="service-files-"))
    secret_file = secrets_dir / "registry-auth.json"
    secret_file.write_text(json.dumps({"auths": {}, "note": secret}))
    secret_file.chmod(0o600)
    services: dict[bool, BuilderProcess] = {}
    try:
        for sandboxed in (True, False):
            env = {
                "BUILDER_AUDIENCE": AUDIENCE,
                "BUILDER_TRUSTED_ISSUERS": issuer.url,
                "BUILDER_REDIS_URL": redis_server.url,
                "BUILDER_ADMIN_TOKEN": ADMIN_TOKEN,
                "BUILDER_SCRATCH_ROOT": tempfile.mkdtemp(prefix="scratch-", dir=scratch_base),
                "BUILDER_REGISTRIES": image_registry.host,
                "BUILDER_INSECURE_REGISTRIES": image_registry.host,
                "BUILDER_REGISTRY_AUTH_FILE": str(secret_file),
                "BUILDER_MEMORY_LIMIT": str(MEMORY_LIMIT),
                "BUILDER_PIDS_LIMIT": str(PIDS_LIMIT),
                "BUILDER_BUILD_TIMEOUT": "60",
                "BUILDER_MAX_BUILDERS_PER_RUN": "100",  # every attack's token names one run
                "BUILDER_MAX_BUILDERS_PER_HEAD_REPOSITORY": "100",
            }
            command = ("tests.builder.service_process", *([] if sandboxed else ["--no-sandbox"]))
            services[sandboxed] = BuilderProcess(env, command)
        added = httpx.post(
            f"{services[True].url}/admin/trust",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            json={
                "project": PROJECT,
                "issuer": issuer.url,
                "repository": PROJECT,
                "max_builders": 100,
            },
        )
        assert added.status_code == 201, added.text
        attacker = Attacker(issuer, image_registry, services, secret_file, secret, redis_server)
        yield attacker
        attacker.http.close()
    finally:
        for service in services.values():
            service.stop()
        for path in secrets_dir.iterdir():
            path.unlink()
        secrets_dir.rmdir()


@SANDBOX
def test_reading_the_services_environment(attacker: Attacker, sandboxed: bool) -> None:
    attempt = attacker.attack(
        sandboxed,
        "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f 2>/dev/null; done"
        f" | grep -q '^BUILDER_ADMIN_TOKEN=' && {REPORT}; true",
    )
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]


@SANDBOX
def test_reading_the_services_files(attacker: Attacker, sandboxed: bool) -> None:
    path = attacker.secret_file
    attempt = attacker.attack(
        sandboxed,
        f"cat {path} /proc/[0-9]*/root{path} 2>/dev/null | grep -q {attacker.secret}"
        f" && {REPORT}; true",
    )
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]


@SANDBOX
def test_reading_another_builders_scratch_directory(attacker: Attacker, sandboxed: bool) -> None:
    marker = "victim-" + secrets.token_hex(8)
    endpoint, auth = attacker.builder(sandboxed)
    try:
        victim = attacker.build(
            endpoint,
            auth,
            {"Dockerfile": f"FROM {attacker.registry.base}\n", "secret.txt": marker},
        )
        assert victim.error is None
        scratch_root = attacker.services[sandboxed].env["BUILDER_SCRATCH_ROOT"]
        attempt = attacker.attack(
            sandboxed,
            f"for r in '' /proc/[0-9]*/root; do grep -rqs {marker} $r{scratch_root}"
            f" && {REPORT} && break; done; true",
        )
    finally:
        attacker.http.delete(endpoint, headers=auth)
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]


@SANDBOX
def test_reading_the_hosts_shadow_file(attacker: Attacker, sandboxed: bool) -> None:
    attempt = attacker.attack(
        sandboxed,
        "for r in '' /proc/[0-9]*/root; do grep -qs '^root:' $r/etc/shadow"
        f" && {REPORT} && break; done; true",
    )
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]


@SANDBOX
def test_connecting_to_redis_on_the_hosts_loopback(attacker: Attacker, sandboxed: bool) -> None:
    port = attacker.redis.port
    attempt = attacker.attack(
        sandboxed,
        f"printf 'PING\\r\\n' | nc -w 10 127.0.0.1 {port} 2>/dev/null | grep -q PONG"
        f" && {REPORT}; true",
    )
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]


@SANDBOX
def test_connecting_to_the_builder_services_own_port(attacker: Attacker, sandboxed: bool) -> None:
    port = attacker.services[sandboxed].port
    attempt = attacker.attack(
        sandboxed,
        f"printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' | nc -w 10 127.0.0.1 {port} 2>/dev/null"
        f" | grep -q '200 OK' && {REPORT}; true",
    )
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]


@SANDBOX
def test_listing_the_hosts_processes(attacker: Attacker, sandboxed: bool) -> None:
    attempt = attacker.attack(
        sandboxed, f"ps -o args 2>/dev/null | grep -q '[s]ervice_process' && {REPORT}; true"
    )
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]


@SANDBOX
def test_killing_a_process_outside_the_sandbox(attacker: Attacker, sandboxed: bool) -> None:
    target = subprocess.Popen(["sleep", "600"])
    try:
        attempt = attacker.attack(sandboxed, f"kill -9 {target.pid} 2>/dev/null && {REPORT}; true")
        time.sleep(0.2)
        assert (target.poll() is None) is sandboxed
    finally:
        target.kill()
        target.wait()
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]


@SANDBOX
def test_writing_outside_the_scratch_directory(attacker: Attacker, sandboxed: bool) -> None:
    outside = Path(tempfile.mkdtemp(prefix="outside-"))
    target = outside / "written-by-a-build"
    try:
        attempt = attacker.attack(
            sandboxed,
            f"for r in '' /proc/[0-9]*/root; do (echo pwned > $r{target}) 2>/dev/null"
            f" && {REPORT} && break; done; true",
        )
        assert target.exists() is not sandboxed
    finally:
        target.unlink(missing_ok=True)
        outside.rmdir()
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]


@SANDBOX
def test_exhausting_memory(attacker: Attacker, sandboxed: bool) -> None:
    size = 2 * MEMORY_LIMIT
    attempt = attacker.attack(
        sandboxed,
        f"x=$(head -c {size} /dev/zero | tr '\\0' a) && [ ${{#x}} -eq {size} ] && {REPORT}",
    )
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]
    if sandboxed:
        assert attempt.error is not None and "BUILDER_MEMORY_LIMIT" in attempt.error
    assert attacker.alive(sandboxed)


@SANDBOX
def test_exhausting_processes(attacker: Attacker, sandboxed: bool) -> None:
    count = 3 * PIDS_LIMIT
    attempt = attacker.attack(
        sandboxed,
        f"i=0; while [ $i -lt {count} ]; do sleep 2 & i=$((i+1)); done; wait; {REPORT}",
    )
    assert attempt.succeeded is not sandboxed, attempt.lines[-3:]
    if sandboxed:
        assert attempt.error is not None
    assert attacker.alive(sandboxed)


def _running(pattern: str) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", pattern],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(pid) for pid in found.stdout.split()]


@SANDBOX
def test_outliving_the_builder(attacker: Attacker, sandboxed: bool) -> None:
    seconds = 900_000 + secrets.randbelow(90_000)
    try:
        attempt = attacker.attack(
            sandboxed,
            f"(setsid sleep {seconds} > /dev/null 2>&1 &); {REPORT}",
        )
        assert attempt.error is None, attempt.error
        time.sleep(0.5)  # the builder was deleted: give its processes time to go
        left = _running(f"sleep {seconds}")
        assert bool(left) is not sandboxed
    finally:
        for pid in _running(f"sleep {seconds}"):
            os.kill(pid, signal.SIGKILL)
