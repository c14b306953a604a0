"""Both services as the operator runs them (``issuer serve``, ``issuer builder serve``,
``issuer trust``, ``issuer keys``), each configured with its own Redis user of the shipped
ACL (deploy/redis/users.conf): a claim through the real issuer, a trust relationship added
and a token exchanged at the builder service, a key rotated. Any key outside a service's
prefix or command outside its list would fail them (NOPERM, a 503)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from issuer.sim import GitHubSim, SimSettings
from issuer.sim.serve import serve_sim
from tests.builder.processes import BuilderProcess
from tests.builder.support import ADMIN_TOKEN
from tests.builder.test_blackbox import AUDIENCE, PROJECT, World
from tests.deploy.redis_acl import AclRedis
from tests.e2e.harness import GITHUB_TOKEN, IssuerProcess


@pytest.fixture(scope="module")
def issuer_store_env(acl_redis: AclRedis) -> dict[str, str]:
    """The issuer's Redis and key-encryption key, for ``issuer serve`` and ``issuer keys``."""
    return {
        "ISSUER_REDIS_URL": acl_redis.url("issuer"),
        "ISSUER_KEY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


@pytest.fixture(scope="module")
def world(
    acl_redis: AclRedis,
    issuer_store_env: dict[str, str],
    scratch_base: Path,
) -> Iterator[World]:
    sim = GitHubSim(SimSettings())
    sim.add_token(GITHUB_TOKEN)
    github = serve_sim(sim)
    issuer = IssuerProcess(
        {
            **issuer_store_env,
            "ISSUER_GITHUB_API_URL": github.url_of(0),
            "ISSUER_GITHUB_TOKEN": GITHUB_TOKEN,
            "ISSUER_POLL_INTERVAL": "1",
        }
    )
    try:
        builder = BuilderProcess(
            {
                "BUILDER_AUDIENCE": AUDIENCE,
                "BUILDER_TRUSTED_ISSUERS": issuer.url,
                "BUILDER_REDIS_URL": acl_redis.url("builder"),
                "BUILDER_ADMIN_TOKEN": ADMIN_TOKEN,
                "BUILDER_SCRATCH_ROOT": tempfile.mkdtemp(prefix="scratch-", dir=scratch_base),
            }
        )
    except BaseException:
        issuer.stop()
        github.stop()
        raise
    world = World(sim, issuer, builder)
    yield world
    world.http.close()
    for process in (builder, issuer):
        output = process.stop()
        assert "NOPERM" not in output and "Traceback" not in output, output
    github.stop()


def test_the_issuer_signs_a_token_under_its_own_user(world: World, acl_redis: AclRedis) -> None:
    token = world.fork_token()
    assert token.count(".") == 2
    with acl_redis.client("issuer") as issuer:
        assert issuer.get("issuer:keyring")  # its state is in Redis, under its prefix


def test_the_issuer_keys_command_works_under_the_issuer_user(
    world: World, issuer_store_env: dict[str, str]
) -> None:
    env = {**os.environ, "ISSUER_URL": world.issuer.url, **issuer_store_env}
    rotated = subprocess.run(
        [sys.executable, "-m", "issuer.cli", "keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "next key" in rotated.stdout


def test_the_builder_service_adds_trust_and_exchanges_under_its_own_user(
    world: World, acl_redis: AclRedis
) -> None:
    added = world.trust(
        "add", "--project", PROJECT, "--issuer", world.issuer.url,
        "--repository-pattern", "octo-org[0-9]+/octo-repo",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    granted = world.exchange(world.fork_token())
    assert granted.status_code == 200, granted.text
    with acl_redis.client("builder") as builder:
        assert builder.get(f"builder:trust:{PROJECT}")  # in Redis, under its prefix
    answer: Any = granted.json()
    auth = {"Authorization": f"Bearer {answer['access_token']}"}
    released = world.http.delete(answer["builder"]["endpoint"], headers=auth)
    assert released.status_code == 200, released.text
