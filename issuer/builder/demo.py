"""The builder service's part of ``issuer demo``: trust, exchange, build, push, destroy.

The service runs on a real loopback socket with an in-process store; a registry on loopback
(Debian's docker-registry) holds a base image made here from busybox-static; the trust
relationship goes through the admin API, the exchange through ``POST /token``, the image
build, its archive and the release through the builder's own endpoint, as a workflow would
do them.
"""

from __future__ import annotations

import json
import secrets
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from issuer.builder.adminclient import AdminClient
from issuer.builder.app import create_app
from issuer.builder.config import BuilderConfig
from issuer.builder.exchange import GRANT_TYPE
from issuer.builder.localregistry import LocalRegistry, push_busybox_base
from issuer.builder.service import BuilderService
from issuer.store import MemoryStore
from issuer.web.serving import BackgroundServer, bound_socket


class Narrator(Protocol):
    def step(self, text: str) -> None: ...
    def detail(self, text: str) -> None: ...


DOCKERFILE = """\
FROM {base}
COPY hello.txt /hello.txt
RUN echo "built from $(cat /hello.txt) as uid $(id -u) of its own user namespace" > /built.txt
RUN cat /built.txt
"""


def _context(base: str) -> bytes:
    import io
    import tarfile

    files = {"Dockerfile": DOCKERFILE.format(base=base), "hello.txt": "a fork's pull request"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Stoppable(Protocol):
    def stop(self) -> None: ...


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
    servers: list[Stoppable],
    *,
    issuer_url: str,
    token: str,
    audience: str,
    project: str,
) -> None:
    """The demo's last steps; raises on any failure."""
    registry = LocalRegistry().start()
    servers.append(registry)
    base = push_busybox_base(registry.host)
    repository = f"{registry.host}/{project.lower()}"
    narrator.step(f"a registry on loopback ({registry.host}) holding a base image made here:")
    narrator.detail(f"{base} (Debian's busybox-static FROM scratch)")

    admin_token = secrets.token_urlsafe(24)
    sock = bound_socket()
    url = "http://{}:{}".format(*sock.getsockname()[:2])
    config = BuilderConfig(
        url=url,
        audience=audience,
        trusted_issuers=(issuer_url,),
        admin_token=admin_token,
        scratch_root=Path(tempfile.gettempdir()) / "issuer-demo-builders",
        build_timeout=120,
        registries=(registry.host,),
        insecure_registries=(registry.host,),
    )
    app = create_app(lambda: BuilderService.start(config, store=MemoryStore()))
    servers.append(BackgroundServer(app, [sock]).start())
    with AdminClient(url, admin_token) as admin:
        relationship = admin.add(
            {
                "project": project,
                "issuer": issuer_url,
                "repository": project,
                "ttl": 300,
                "push": repository,
            }
        )
    narrator.step(f"builder service at {url}, audience {audience}, trusting the issuer")
    narrator.detail(
        f"trust relationship {relationship['id']} added through the admin API: project"
        f" {project} accepts pull_request tokens of {project}; images go to {repository}"
    )

    with httpx.Client(timeout=120) as http:
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
        narrator.step("the builder builds the pull request's Dockerfile with buildah, sandboxed:")
        last: dict[str, Any] = {}
        with http.stream(
            "POST", f"{builder['endpoint']}/build", content=_context(base), headers=auth
        ) as result:
            if result.status_code != 200:
                result.read()
                raise RuntimeError(f"the build was refused: {result.text}")
            for line in result.iter_lines():
                if not line.strip():
                    continue
                last = json.loads(line)
                for text in last.get("stream", "").splitlines():
                    narrator.detail(f"build: {text}")
        if "aux" not in last:
            raise RuntimeError(f"the build failed: {last.get('error')}")
        aux = last["aux"]
        scratch_root = config.scratch_root
        scratch = next(scratch_root.glob(f"{builder['id']}-*"), None)
        if scratch is None:
            raise RuntimeError("the builder's scratch directory is missing")
        stored = http.head(
            f"http://{registry.host}/v2/{repository.split('/', 1)[1]}/manifests/"
            + aux["pushed"].rsplit(":", 2)[1].split("@")[0],
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).headers.get("docker-content-digest")
        if stored != aux["digest"]:
            raise RuntimeError("the registry holds another image than the one built")
        archive = http.get(f"{builder['endpoint']}/image", headers=auth)
        if archive.status_code != 200:
            raise RuntimeError(f"the image archive was not served: {archive.text}")
        narrator.step("image built and pushed where the trust relationship says:")
        narrator.detail(f"digest {aux['digest']}")
        narrator.detail(f"pushed {aux['pushed']}")
        narrator.detail(f"and served as an OCI archive of {len(archive.content)} bytes")

        released = http.delete(builder["endpoint"], headers=auth)
        if released.status_code != 200:
            raise RuntimeError(f"the builder was not released: {released.text}")
        deadline = time.monotonic() + 20
        while not _closed(builder["endpoint"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if scratch.exists() or not _closed(builder["endpoint"]):
            raise RuntimeError("the builder or its storage outlived its release")
    narrator.step("builder destroyed (DELETE with its build token): its process has exited")
    narrator.detail(f"and its storage ({scratch}: layers, context, archive) no longer exists")
    narrator.detail(f"image digest: {aux['digest']}")
