"""The builder service's part of ``issuer demo``: trust, exchange, build, destroy.

The service runs on a real loopback socket with an in-process store; the trust relationship
goes through the admin API, the exchange through ``POST /token``, the build and the release
through the builder's own endpoint, as a workflow would do them.
"""

from __future__ import annotations

import secrets
import socket
import tempfile
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from issuer.builder.adminclient import AdminClient
from issuer.builder.app import create_app
from issuer.builder.config import BuilderConfig
from issuer.builder.exchange import GRANT_TYPE
from issuer.builder.service import BuilderService
from issuer.store import MemoryStore
from issuer.web.serving import BackgroundServer, bound_socket

BUILD_SCRIPT = """\
echo "building $(cat hello.txt) in $(pwd)"
echo "HOME=$HOME"
echo artefact > out.bin
"""


class Narrator(Protocol):
    def step(self, text: str) -> None: ...
    def detail(self, text: str) -> None: ...


def _context() -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in {"build.sh": BUILD_SCRIPT, "hello.txt": "a fork's pull request"}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _closed(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return False
    except OSError:
        return True


def _exchange(http: httpx.Client, url: str, token: str, project: str) -> httpx.Response:
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "audience": project,
    }
    return http.post(f"{url}/token", data=form)


def run_builder_steps(
    narrator: Narrator,
    servers: list[BackgroundServer],
    *,
    issuer_url: str,
    token: str,
    audience: str,
    project: str,
) -> None:
    """The demo's last steps; raises on any failure."""
    admin_token = secrets.token_urlsafe(24)
    sock = bound_socket()
    url = "http://{}:{}".format(*sock.getsockname()[:2])
    config = BuilderConfig(
        url=url,
        audience=audience,
        trusted_issuers=(issuer_url,),
        admin_token=admin_token,
        scratch_root=Path(tempfile.gettempdir()) / "issuer-demo-builders",
        build_timeout=60,
    )
    app = create_app(lambda: BuilderService.start(config, store=MemoryStore()))
    servers.append(BackgroundServer(app, [sock]).start())
    with AdminClient(url, admin_token) as admin:
        relationship = admin.add(
            {"project": project, "issuer": issuer_url, "repository": project, "ttl": 300}
        )
    narrator.step(f"builder service at {url}, audience {audience}, trusting the issuer")
    narrator.detail(
        f"trust relationship {relationship['id']} added through the admin API: project"
        f" {project} accepts pull_request tokens of {project}"
    )

    with httpx.Client(timeout=60) as http:
        response = _exchange(http, url, token, project)
        if response.status_code != 200:
            raise RuntimeError(f"the exchange was refused: {response.text}")
        granted = response.json()
        builder = granted["builder"]
        if not builder["ephemeral"] or builder["cache"]:
            raise RuntimeError("the builder is not ephemeral and cacheless")
        narrator.step("token exchanged (RFC 8693) for a build token bound to an ephemeral builder:")
        narrator.detail(
            f"builder {builder['id']} at {builder['endpoint']}, ephemeral, no cache,"
            f" expires in {granted['expires_in']} s"
        )
        replay = _exchange(http, url, token, project)
        if replay.status_code != 400:
            raise RuntimeError("the same token was exchanged twice")
        narrator.detail(f"the same token again: {replay.json()['error_description']}")

        auth = {"Authorization": f"Bearer {granted['access_token']}"}
        result = http.post(f"{builder['endpoint']}/build", content=_context(), headers=auth)
        if result.status_code != 200 or result.json()["exit_code"] != 0:
            raise RuntimeError(f"the build failed: {result.text}")
        output = result.json()["output"]
        narrator.step("the builder ran the context's build.sh in its scratch directory: exit 0")
        for line in output.splitlines():
            narrator.detail(f"build: {line}")
        scratch = Path(output.splitlines()[0].rsplit(" in ", 1)[1])
        if not (scratch / "out.bin").exists():
            raise RuntimeError("the build left nothing in its scratch directory")

        released = http.delete(builder["endpoint"], headers=auth)
        if released.status_code != 200:
            raise RuntimeError(f"the builder was not released: {released.text}")
        deadline = time.monotonic() + 20
        while not _closed(builder["endpoint"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if scratch.exists() or not _closed(builder["endpoint"]):
            raise RuntimeError("the builder or its scratch directory outlived its release")
    narrator.step("builder destroyed (DELETE with its build token): its process has exited")
    narrator.detail(f"and its scratch directory {scratch} no longer exists")
