"""Ephemeral builders: each its own process on a loopback port, building a Dockerfile with
buildah in its sandbox, streaming the build as Docker does, serving the image as an OCI
archive, accepting only the build token bound to it, gone after."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from issuer.builder import errors
from issuer.builder.backend import STOP_EXPIRED, BuilderSpec
from issuer.builder.imagebuild import ImageSettings
from issuer.builder.process import BuilderProcesses
from tests.builder.conftest import RunningService, ServiceMaker, exchange
from tests.builder.support import ADMIN_TOKEN, FakeIssuer, context, file_in_layers
from tests.image_registry import ImageRegistry

pytestmark = pytest.mark.usefixtures("trusted")

NO_REGISTRIES = ImageSettings(registries=())


def wait_until(condition: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def port_closed(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return False
    except OSError:
        return True


@dataclass
class Built:
    """What a build answered: its status, and the JSON lines of its stream."""

    status: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    body: dict[str, Any] | None = None

    @property
    def output(self) -> str:
        return "".join(line.get("stream", "") for line in self.lines)

    @property
    def aux(self) -> dict[str, Any] | None:
        last = self.lines[-1] if self.lines else {}
        return last.get("aux")

    @property
    def error(self) -> str | None:
        last = self.lines[-1] if self.lines else {}
        return last.get("error")


class Granted:
    def __init__(self, http: httpx.Client, service: RunningService, issuer: FakeIssuer) -> None:
        response = exchange(http, service, issuer.token())
        assert response.status_code == 200, response.text
        body = response.json()
        self.http = http
        self.token: str = body["access_token"]
        self.endpoint: str = body["builder"]["endpoint"]
        self.id: str = body["builder"]["id"]
        scratch = service.service.backend.scratch_of(self.id)  # type: ignore[attr-defined]
        assert scratch is not None
        self.scratch: Path = scratch

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def build(
        self, files: dict[str, str | bytes], token: str | None = None, **params: str
    ) -> Built:
        return self.post_context(context(files), token, **params)

    def post_context(self, archive: bytes, token: str | None = None, **params: str) -> Built:
        with self.http.stream(
            "POST",
            f"{self.endpoint}/build",
            content=archive,
            params=params,
            headers=self.headers(token),
        ) as response:
            if response.status_code != 200:
                response.read()
                return Built(response.status_code, body=response.json())
            lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
        return Built(200, lines)

    def image(self) -> httpx.Response:
        return self.http.get(f"{self.endpoint}/image", headers=self.headers())

    def delete(self, token: str | None = None) -> httpx.Response:
        return self.http.delete(self.endpoint, headers=self.headers(token))


def file_in_image(granted: Granted, name: str) -> bytes:
    """A file of the image the builder just built, read from its OCI archive (what a step
    wrote, rather than what it printed: buildah sometimes drops a step's printed lines)."""
    response = granted.image()
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:

        def read(member: str) -> bytes:
            extracted = archive.extractfile(member)
            assert extracted is not None
            return extracted.read()

        def blob(digest: str) -> bytes:
            return read("blobs/sha256/" + digest.removeprefix("sha256:"))

        index = json.loads(read("index.json"))
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        return file_in_layers(manifest, blob, name)


@pytest.fixture
def granted(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> Granted:
    return Granted(http, builder_service, fake_issuer)


@pytest.fixture
def base(image_registry: ImageRegistry) -> str:
    """``FROM`` the busybox base image of the test registry."""
    return f"FROM {image_registry.base}\n"


def test_a_build_streams_docker_style_lines_and_ends_with_the_image(
    granted: Granted, base: str
) -> None:
    built = granted.build({"Dockerfile": base + "RUN echo made > /made\n"})
    assert built.status == 200
    assert all(set(line) == {"stream"} for line in built.lines[:-1])
    assert "STEP 2/2: RUN echo made > /made" in built.output
    assert built.aux is not None
    assert built.aux["ID"].startswith("sha256:") and built.aux["digest"].startswith("sha256:")
    assert built.aux["pushed"] is None


def test_each_step_reaches_the_client_while_the_build_still_runs(
    granted: Granted, base: str
) -> None:
    dockerfile = base + "RUN sleep 3\nRUN echo later\n"
    with granted.http.stream(
        "POST",
        f"{granted.endpoint}/build",
        content=context({"Dockerfile": dockerfile}),
        headers=granted.headers(),
    ) as response:
        lines = response.iter_lines()
        assert any("STEP 2/3: RUN sleep 3" in line for line in lines)
        busy = granted.build({"Dockerfile": base})
        rest = [json.loads(line) for line in lines if line.strip()]
    assert busy.status == 409
    assert (
        busy.body is not None and busy.body["error_description"] == errors.BUILDER_BUSY.description
    )
    assert "STEP 3/3: RUN echo later" in "".join(line.get("stream", "") for line in rest)
    assert "aux" in rest[-1]


def test_the_context_files_are_there_for_the_build(granted: Granted, base: str) -> None:
    dockerfile = base + "COPY src/hello.txt /hello.txt\nRUN cat /hello.txt > /seen-by-run\n"
    built = granted.build({"Dockerfile": dockerfile, "src/hello.txt": "hello from the context"})
    assert built.aux is not None, built.lines
    assert file_in_image(granted, "seen-by-run") == b"hello from the context"


def test_build_args_target_and_dockerfile_path_are_taken(granted: Granted, base: str) -> None:
    dockerfile = (
        f"ARG GREETING=unset\n{base.strip()} AS first\nARG GREETING\n"
        "RUN echo greeting=$GREETING > /greeting\n"
        f"{base.strip()} AS second\nRUN echo second stage ran\n"
    )
    built = granted.build(
        {"build/Containerfile": dockerfile},
        dockerfile="build/Containerfile",
        target="first",
        buildargs=json.dumps({"GREETING": "hi"}),
    )
    assert built.aux is not None, built.lines
    assert file_in_image(granted, "greeting") == b"greeting=hi\n"
    assert "RUN echo second stage ran" not in built.output


def test_a_malformed_build_parameter_is_refused(granted: Granted, base: str) -> None:
    built = granted.build({"Dockerfile": base}, buildargs="[1, 2]")
    assert built.status == 400
    assert built.body is not None and built.body["error"] == "invalid_request"


def test_the_image_archive_is_the_image_just_built(granted: Granted, base: str) -> None:
    built = granted.build({"Dockerfile": base + "RUN echo content > /content\n"})
    assert built.aux is not None
    response = granted.image()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        index = json.load(archive.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"]
        manifest = json.load(
            archive.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))  # type: ignore[arg-type]
        )
    assert digest == built.aux["digest"]
    assert manifest["config"]["digest"] == built.aux["ID"]


def test_no_image_is_served_before_a_build_succeeded(granted: Granted, base: str) -> None:
    assert granted.image().status_code == 404
    failed = granted.build({"Dockerfile": base + "RUN false\n"})
    assert failed.error is not None
    assert granted.image().status_code == 404


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM docker.io/library/alpine:3\n",
        "FROM alpine\n",
        "FROM scratch\nCOPY --from=evil.example/tools:1 /bin/x /x\n",
        "ARG BASE=evil.example/base\nFROM $BASE\n",
    ],
)
def test_a_base_image_from_a_registry_not_listed_ends_the_build(
    granted: Granted, dockerfile: str
) -> None:
    built = granted.build({"Dockerfile": dockerfile})
    assert built.error is not None and "is not from an allowed registry" in built.error
    assert "STEP" not in built.output  # refused before anything is pulled or built


def test_a_failing_step_ends_the_stream_with_an_error(granted: Granted, base: str) -> None:
    built = granted.build({"Dockerfile": base + "RUN echo about to fail && exit 7\n"})
    assert built.error is not None
    assert built.lines[-1]["errorDetail"] == {"message": built.error}
    assert "STEP 2/2: RUN echo about to fail" in built.output


def test_a_build_is_stopped_at_its_time_limit(
    http: httpx.Client, make_service: ServiceMaker, fake_issuer: FakeIssuer, base: str
) -> None:
    service = make_service(build_timeout=3)
    from issuer.builder.adminclient import AdminClient

    with AdminClient(service.url, ADMIN_TOKEN) as admin:
        admin.add(
            {
                "project": "octo-org/octo-repo",
                "issuer": fake_issuer.url,
                "repository": "octo-org/octo-repo",
            }
        )
    granted = Granted(http, service, fake_issuer)
    built = granted.build({"Dockerfile": base + "RUN echo started && sleep 60 && echo never\n"})
    assert built.error is not None and "BUILDER_BUILD_TIMEOUT" in built.error
    assert "\nnever" not in built.output


def test_a_build_past_the_disk_limit_fails_naming_it(
    http: httpx.Client, make_service: ServiceMaker, fake_issuer: FakeIssuer, base: str
) -> None:
    service = make_service(disk_limit=64 << 20)
    from issuer.builder.adminclient import AdminClient

    with AdminClient(service.url, ADMIN_TOKEN) as admin:
        admin.add(
            {
                "project": "octo-org/octo-repo",
                "issuer": fake_issuer.url,
                "repository": "octo-org/octo-repo",
            }
        )
    granted = Granted(http, service, fake_issuer)
    built = granted.build(
        {"Dockerfile": base + "RUN dd if=/dev/zero of=/big bs=1048576 count=200; sleep 5\n"}
    )
    assert built.error is not None and "BUILDER_DISK_LIMIT" in built.error


def test_a_second_builder_finds_nothing_of_the_first(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer, base: str
) -> None:
    first, second = (Granted(http, builder_service, fake_issuer) for _ in range(2))
    made = first.build({"Dockerfile": base + "RUN echo first-builder-secret > /left-behind\n"})
    assert made.aux is not None
    look = (
        "RUN (ls -a / /build /tmp 2>&1; find / -xdev -name left-behind 2>/dev/null;"
        " find / -xdev -type f -exec grep -l first-builder-secret {} + 2>/dev/null)"
        " | grep -c -e left-behind -e first-builder > /found || echo found-nothing > /found\n"
    )
    found = second.build({"Dockerfile": base + look})
    assert found.aux is not None, found.lines
    assert file_in_image(second, "found") == b"found-nothing\n"
    assert first.scratch != second.scratch
    second_storage = {p.name for p in (second.scratch / "box" / "storage").rglob("*")}
    assert made.aux["ID"].removeprefix("sha256:") not in second_storage
    assert oct(first.scratch.stat().st_mode & 0o777) == "0o710"


def test_a_build_without_a_token_is_refused(granted: Granted) -> None:
    response = granted.http.post(f"{granted.endpoint}/build", content=b"")
    assert response.status_code == 401
    assert response.json()["error"] == errors.BUILD_TOKEN.code
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_made_up_build_token_is_refused(granted: Granted, base: str) -> None:
    assert granted.build({"Dockerfile": base}, token="bt_" + "A" * 43).status == 401


def test_a_build_token_is_refused_by_another_builder(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer, base: str
) -> None:
    mine, theirs = (Granted(http, builder_service, fake_issuer) for _ in range(2))
    assert theirs.build({"Dockerfile": base}, token=mine.token).status == 401
    assert theirs.delete(token=mine.token).status_code == 401
    assert theirs.image().status_code == 404  # still alive, and answering its own token


def test_an_unusable_context_is_refused(granted: Granted) -> None:
    built = granted.post_context(b"not a tarball")
    assert built.status == 400
    assert built.body is not None and "not a tar archive" in built.body["error_description"]


def test_a_context_without_the_dockerfile_ends_the_build(granted: Granted) -> None:
    built = granted.build({"README": "no Dockerfile"})
    assert built.error is not None and "no Dockerfile" in built.error


def test_a_context_member_escaping_the_scratch_directory_is_refused(
    granted: Granted, tmp_path: Path
) -> None:
    def escape(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("../escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))

    built = granted.post_context(context({"Dockerfile": "FROM scratch"}, extra=escape))
    assert built.status == 400
    assert built.body is not None and "unsafe member" in built.body["error_description"]
    assert not (granted.scratch.parent / "escaped").exists()


def test_a_link_out_of_the_scratch_directory_is_refused(granted: Granted) -> None:
    def link(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)

    built = granted.post_context(context({"Dockerfile": "FROM scratch"}, extra=link))
    assert built.status == 400


def test_delete_stops_the_builder_and_removes_its_scratch_directory(
    granted: Granted, base: str
) -> None:
    assert granted.build({"Dockerfile": base + "RUN echo x > /artefact"}).aux is not None
    response = granted.delete()
    assert response.status_code == 200
    assert not granted.scratch.exists()
    assert wait_until(lambda: port_closed(granted.endpoint))


def test_a_build_token_is_dead_once_its_builder_is_released(
    granted: Granted, builder_service: RunningService
) -> None:
    assert granted.delete().status_code == 200
    info = asyncio.run(_lookup(builder_service, granted.token))
    assert info is None


async def _lookup(service: RunningService, token: str) -> Any:
    from issuer.builder.buildtokens import BuildTokens
    from issuer.store import RedisStore

    store = RedisStore.from_url(service.config.redis_url or "")
    try:
        return await BuildTokens(store).lookup(token)
    finally:
        await store.close()


def test_a_builder_after_release_accepts_nothing(granted: Granted) -> None:
    assert granted.delete().status_code == 200
    assert wait_until(lambda: port_closed(granted.endpoint))
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        granted.build({"Dockerfile": "FROM scratch"})  # nothing listens, or it closes at once


async def test_a_builder_stops_itself_and_removes_its_scratch_directory_at_expiry(
    tmp_path: Path,
) -> None:
    stopped: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def on_stopped(builder_id: str, reason: str) -> None:
        await stopped.put((builder_id, reason))

    backend = BuilderProcesses(tmp_path, on_stopped, NO_REGISTRIES)
    spec = BuilderSpec("b-expiring", "p", int(time.time()) + 2, "cred", "http://127.0.0.1:9", 5)
    builder = await backend.start(spec)
    scratch = backend.scratch_of(builder.id)
    assert scratch is not None and scratch.exists()
    assert await asyncio.wait_for(stopped.get(), 30) == ("b-expiring", STOP_EXPIRED)
    assert not scratch.exists()
    assert backend.running() == []
    assert port_closed(builder.endpoint)


async def test_closing_the_backend_stops_every_builder(tmp_path: Path) -> None:
    reasons: list[str] = []

    async def on_stopped(builder_id: str, reason: str) -> None:
        reasons.append(reason)

    backend = BuilderProcesses(tmp_path, on_stopped, NO_REGISTRIES)
    expires = int(time.time()) + 600
    builders = [
        await backend.start(BuilderSpec(f"b-{n}", "p", expires, "c", "http://127.0.0.1:9", 5))
        for n in range(2)
    ]
    await backend.close()
    assert reasons == ["shutdown", "shutdown"]
    assert all(port_closed(b.endpoint) for b in builders)
    assert os.listdir(tmp_path) == []


def test_a_context_over_the_limit_is_refused_before_it_is_read(granted: Granted) -> None:
    built = granted.post_context(b"\0" * (64 * 1024 * 1024 + 1))
    assert built.status == 413


async def test_a_builder_that_cannot_reach_its_service_refuses_to_build(tmp_path: Path) -> None:
    async def on_stopped(builder_id: str, reason: str) -> None:
        pass

    backend = BuilderProcesses(tmp_path, on_stopped, NO_REGISTRIES)
    expires = int(time.time()) + 60
    builder = await backend.start(BuilderSpec("b-lost", "p", expires, "c", "http://127.0.0.1:9", 5))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{builder.endpoint}/build",
                content=context({"Dockerfile": "FROM scratch"}),
                headers={"Authorization": "Bearer bt_anything"},
            )
        assert response.status_code == 503
        assert response.json()["error_description"] == errors.INTROSPECTION_FAILED.description
    finally:
        await backend.close()


def builder_cgroups(builder_id: str) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    candidates = [
        root / "issuer-builders" / builder_id,
        root / "memory" / "issuer-builders" / builder_id,
        root / "pids" / "issuer-builders" / builder_id,
    ]
    return [group for group in candidates if group.is_dir()]


def test_a_released_builders_cgroups_are_gone(granted: Granted) -> None:
    if not builder_cgroups(granted.id):
        pytest.skip("this host gives builders no cgroup (rlimits only)")
    assert granted.delete().status_code == 200
    assert wait_until(lambda: port_closed(granted.endpoint))
    assert wait_until(lambda: not builder_cgroups(granted.id))


def test_a_builder_killed_outright_leaves_no_cgroup_and_no_process(
    granted: Granted, builder_service: RunningService
) -> None:
    if not builder_cgroups(granted.id):
        pytest.skip("this host gives builders no cgroup (rlimits only)")
    backend = builder_service.service.backend
    os.kill(backend._running[granted.id].process.pid, 9)  # type: ignore[attr-defined]
    assert wait_until(lambda: granted.id not in backend.running())  # type: ignore[attr-defined]
    assert not builder_cgroups(granted.id)
    assert not granted.scratch.exists()
