"""Black box: the issuer and the builder service as the operator runs them (``issuer serve``,
``issuer builder serve``, ``issuer trust add``), a fork pull-request run on the GitHub
simulator, and attacks on the exchange. Only HTTP and the command line, over loopback."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from issuer.sim import GitHubSim, SimSettings
from issuer.sim.serve import serve_sim
from issuer.web.serving import BackgroundServer
from tests.builder.processes import BuilderProcess
from tests.builder.support import ADMIN_TOKEN, b64, context, file_in_layers
from tests.client.runner import read_outputs
from tests.e2e.harness import GITHUB_TOKEN, IssuerProcess, fork_run
from tests.image_registry import ImageRegistry
from tests.redis_server import RedisServer

AUDIENCE = "https://builder.example"
PROJECT = "octo-org/builds"


class World:
    def __init__(self, sim: GitHubSim, issuer: IssuerProcess, builder: BuilderProcess) -> None:
        self.sim = sim
        self.issuer = issuer
        self.builder = builder
        self.http = httpx.Client(timeout=40)
        self.secrets: list[str] = []
        self.registry: ImageRegistry | None = None

    def trust(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "BUILDER_URL": self.builder.url, "BUILDER_ADMIN_TOKEN": ADMIN_TOKEN}
        return subprocess.run(
            [sys.executable, "-m", "issuer.cli", "trust", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def fork_token(self, audience: str = AUDIENCE) -> str:
        """A real token: a fork pull-request run claims, prints its line, exchanges."""
        pr = fork_run(self.sim)
        claim = self.http.post(f"{self.issuer.url}/claim", json=pr.claim_body(audience=audience))
        assert claim.status_code == 201, claim.text
        job = pr.job("claim")
        pr.print_and_finish(job, claim.json()["challenge_line"])
        pr.job("build")
        answer = self.http.post(
            claim.json()["exchange_url"],
            params={"wait": "20"},
            headers={"Authorization": f"Bearer {claim.json()['claim_id']}"},
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        self.secrets.append(token)
        return token

    def exchange(self, token: str, project: str = PROJECT) -> httpx.Response:
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "audience": project,
        }
        response = self.http.post(f"{self.builder.url}/token", data=form)
        if response.status_code == 200:
            self.secrets.append(response.json()["access_token"])
        return response


@pytest.fixture(scope="module")
def world(
    redis_server: RedisServer, scratch_base: Path, image_registry: ImageRegistry
) -> Iterator[World]:
    redis_server.flush()
    sim = GitHubSim(SimSettings())
    sim.add_token(GITHUB_TOKEN)
    github: BackgroundServer = serve_sim(sim)
    issuer = IssuerProcess(
        {
            "ISSUER_GITHUB_API_URL": github.url_of(0),
            "ISSUER_GITHUB_TOKEN": GITHUB_TOKEN,
            "ISSUER_POLL_INTERVAL": "1",
        }
    )
    builder = BuilderProcess(
        {
            "BUILDER_AUDIENCE": AUDIENCE,
            "BUILDER_TRUSTED_ISSUERS": issuer.url,
            "BUILDER_REDIS_URL": redis_server.url,
            "BUILDER_ADMIN_TOKEN": ADMIN_TOKEN,
            "BUILDER_SCRATCH_ROOT": tempfile.mkdtemp(prefix="scratch-", dir=scratch_base),
            "BUILDER_REGISTRIES": image_registry.host,
            "BUILDER_INSECURE_REGISTRIES": image_registry.host,
        }
    )
    world = World(sim, issuer, builder)
    world.registry = image_registry
    try:
        added = world.trust(
            "add",
            "--project",
            PROJECT,
            "--issuer",
            issuer.url,
            "--repository-pattern",
            "octo-org[0-9]+/octo-repo",
            "--claim",
            "head_repository=contributor[0-9]+/octo-repo",
            "--max-builders",
            "5",
            "--push",
            f"{image_registry.host}/octo-org/pr-images",
        )
        assert added.returncode == 0, added.stderr
        other = world.trust(
            "add",
            "--project",
            "other/project",
            "--issuer",
            issuer.url,
            "--repository",
            "other/repo",
        )
        assert other.returncode == 0, other.stderr
        yield world
    finally:
        world.http.close()
        builder.stop()
        issuer.stop()
        github.stop()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, signature = token.split(".")
    decode = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))  # noqa: E731
    return decode(head), decode(body), signature


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["error_description"]


def test_a_fork_pull_request_image_is_built_pushed_and_the_builder_is_gone_afterwards(
    world: World,
) -> None:
    token = world.fork_token()
    claims = _parts(token)[1]
    response = world.exchange(token)
    assert response.status_code == 200, response.text
    granted = response.json()
    builder = granted["builder"]
    assert (builder["ephemeral"], builder["cache"]) == (True, False)
    auth = {"Authorization": f"Bearer {granted['access_token']}"}
    assert world.registry is not None
    dockerfile = f"FROM {world.registry.base}\nCOPY app.txt /app.txt\nRUN echo built >> /app.txt\n"
    build = world.http.post(
        f"{builder['endpoint']}/build",
        headers=auth,
        content=context({"Dockerfile": dockerfile, "app.txt": "from the pull request\n"}),
    )
    assert build.status_code == 200, build.text
    lines = [json.loads(line) for line in build.text.splitlines()]
    aux = lines[-1]["aux"]
    tag = f"pr-{claims['pull_request_number']}-{claims['head_sha'][:12]}"
    repository = f"{world.registry.host}/octo-org/pr-images"
    assert aux["pushed"] == f"{repository}:{tag}@{aux['digest']}"
    pulled = pull_file(world.registry.host, "octo-org/pr-images", tag, "app.txt")
    assert pulled == b"from the pull request\nbuilt\n"
    scratch_root = Path(world.builder.env["BUILDER_SCRATCH_ROOT"])
    assert [p.name for p in scratch_root.iterdir() if p.name.startswith(builder["id"])]
    assert world.http.delete(builder["endpoint"], headers=auth).status_code == 200
    assert not [p for p in scratch_root.iterdir() if p.name.startswith(builder["id"])]


def test_issuer_build_builds_a_fork_pull_requests_image_end_to_end(
    world: World, tmp_path: Path
) -> None:
    """The workflow step as a fork's pull request runs it: a real token from the issuer
    (claim, challenge line in the run, exchange), then ``issuer build``: the RFC 8693
    exchange, the context sent, the build streamed, the digest and pushed reference written
    to $GITHUB_OUTPUT, the archive saved, the builder stopped and its storage gone."""
    assert world.registry is not None
    token = world.fork_token()
    claims = _parts(token)[1]
    context_dir = tmp_path / "pr"
    context_dir.mkdir()
    (context_dir / "Dockerfile").write_text(
        f"FROM {world.registry.base}\nCOPY app.txt /app.txt\nRUN echo checked >> /app.txt\n"
    )
    (context_dir / "app.txt").write_text("the fork's change\n")
    (context_dir / ".dockerignore").write_text("secret.txt\n")
    (context_dir / "secret.txt").write_text("not for the builder\n")
    outputs = tmp_path / "github_output"
    outputs.touch()
    archive = tmp_path / "image.oci.tar"
    scratch_root = Path(world.builder.env["BUILDER_SCRATCH_ROOT"])
    before = set(scratch_root.iterdir())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "issuer.cli",
            "build",
            "--builder",
            world.builder.url,
            "--project",
            PROJECT,
            "--context",
            str(context_dir),
            "--output",
            str(archive),
        ],
        env={
            **os.environ,
            "ISSUER_OIDC_TOKEN": token,
            "GITHUB_ACTIONS": "true",
            "GITHUB_OUTPUT": str(outputs),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed = done.stdout + done.stderr
    assert "STEP 3/3: RUN echo checked >> /app.txt" in printed
    shown = [line for line in printed.splitlines() if token in line]
    assert all(line == f"::add-mask::{token}" for line in shown)  # masked before anything
    written = read_outputs(outputs)
    digest = written["digest"]
    tag = f"pr-{claims['pull_request_number']}-{claims['head_sha'][:12]}"
    assert written["pushed"] == f"{world.registry.host}/octo-org/pr-images:{tag}@{digest}"
    pulled = pull_file(world.registry.host, "octo-org/pr-images", tag, "app.txt")
    assert pulled == b"the fork's change\nchecked\n"
    with tarfile.open(archive) as saved:
        index = json.load(saved.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"][0]["digest"] == digest
    assert set(scratch_root.iterdir()) == before  # the builder's storage is gone


def pull_file(registry: str, repository: str, tag: str, name: str) -> bytes:
    """A file of a pushed image, read back through the registry's API (manifest, then each
    layer from the top) as a puller would."""
    base = f"http://{registry}/v2/{repository}"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    manifest = httpx.get(f"{base}/manifests/{tag}", headers=accept).json()
    return file_in_layers(
        manifest, lambda digest: httpx.get(f"{base}/blobs/{digest}").content, name
    )


def test_a_replayed_token_is_refused(world: World) -> None:
    token = world.fork_token()
    assert world.exchange(token).status_code == 200
    status, error, description = _error(world.exchange(token))
    assert (status, error) == (400, "invalid_grant")
    assert "already exchanged" in description


def test_a_token_with_a_changed_payload_is_refused(world: World) -> None:
    header, claims, signature = _parts(world.fork_token())
    claims["head_repository"] = "contributor1/octo-repo"
    claims["repository"] = "octo-org1/octo-repo"
    forged = ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), signature]
    )
    status, error, description = _error(world.exchange(forged))
    assert (status, error) == (400, "invalid_grant")
    assert "signature does not verify" in description


def test_an_unsigned_copy_of_a_real_token_is_refused(world: World) -> None:
    header, claims, _ = _parts(world.fork_token())
    header["alg"] = "none"
    forged = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
    assert _error(world.exchange(forged))[:2] == (400, "invalid_grant")


def test_an_hs256_copy_signed_with_the_public_key_is_refused(world: World) -> None:
    import hashlib
    import hmac

    header, claims, _ = _parts(world.fork_token())
    jwks = world.http.get(f"{world.issuer.url}/.well-known/jwks").content
    header["alg"] = "HS256"
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(jwks, signing_input.encode(), hashlib.sha256).digest()
    status, error, description = _error(world.exchange(f"{signing_input}.{b64(mac)}"))
    assert (status, error) == (400, "invalid_grant") and "alg" in description


def test_a_project_that_does_not_trust_the_repository_denies_access(world: World) -> None:
    status, error, description = _error(world.exchange(world.fork_token(), "other/project"))
    assert (status, error) == (403, "access_denied")
    assert "is not the trusted one" in description and "other/repo" not in description


def test_a_project_without_trust_relationships_is_an_invalid_target(world: World) -> None:
    status, error, _ = _error(world.exchange(world.fork_token(), "nobody/project"))
    assert (status, error) == (400, "invalid_target")


def test_a_token_for_another_audience_is_refused(world: World) -> None:
    token = world.fork_token(audience=world.issuer.url)
    status, error, description = _error(world.exchange(token))
    assert (status, error) == (400, "invalid_grant")
    assert "aud" in description


def test_the_service_logs_one_json_audit_line_per_exchange_and_no_secret(world: World) -> None:
    # Runs last in this module: the log holds every exchange of the tests above.
    output = world.builder.output()
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    audit = [line for line in logged if "event" in line]  # the other lines are the service's log
    outcomes = {(line["event"], line.get("outcome")) for line in audit}
    assert {("exchange", "granted"), ("exchange", "refused"), ("builder_started", None)} <= outcomes
    for secret in [*world.secrets, ADMIN_TOKEN]:
        assert secret not in output


def test_metrics_are_served_only_on_their_own_listener(world: World) -> None:
    """They show what the service does: for the operator's Prometheus, not the public."""
    assert world.http.get(f"{world.builder.url}/metrics").status_code == 404
    scraped = world.http.get(f"{world.builder.metrics_url}/metrics")
    assert scraped.status_code == 200 and "builder_exchanges_total" in scraped.text
    assert world.http.get(f"{world.issuer.url}/metrics").status_code == 404
    scraped = world.http.get(f"{world.issuer.metrics_url}/metrics")
    assert scraped.status_code == 200 and "issuer_github_budget_remaining" in scraped.text
