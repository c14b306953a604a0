"""Ephemeral builders of the ``process`` backend: each its own process on a loopback port,
with a fresh scratch directory, accepting only the build token bound to it, gone after."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from issuer.builder import errors
from issuer.builder.backend import STOP_EXPIRED, BuilderSpec
from issuer.builder.process import ProcessBackend
from tests.builder.conftest import RunningService, ServiceMaker, exchange
from tests.builder.support import ADMIN_TOKEN, FakeIssuer, context

pytestmark = pytest.mark.usefixtures("trusted")


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

    def build(self, files: dict[str, str], token: str | None = None) -> httpx.Response:
        return self.post_context(context(files), token)

    def post_context(self, archive: bytes, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return self.http.post(f"{self.endpoint}/build", content=archive, headers=headers)

    def delete(self, token: str | None = None) -> httpx.Response:
        return self.http.delete(
            self.endpoint, headers={"Authorization": f"Bearer {token or self.token}"}
        )


@pytest.fixture
def granted(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> Granted:
    return Granted(http, builder_service, fake_issuer)


def test_a_build_runs_build_sh_in_the_scratch_directory_and_answers_its_exit_code_and_output(
    granted: Granted,
) -> None:
    response = granted.build({"build.sh": "echo building in $(pwd)\nexit 3\n"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["exit_code"] == 3
    assert result["output"] == f"building in {granted.scratch}\n"
    assert result["timed_out"] is False


def test_the_context_files_are_there_for_the_build(granted: Granted) -> None:
    result = granted.build({"build.sh": "cat src/hello.txt", "src/hello.txt": "hello"}).json()
    assert (result["exit_code"], result["output"]) == (0, "hello")


def test_a_build_sees_nothing_of_the_service(
    granted: Granted, builder_service: RunningService
) -> None:
    output = granted.build({"build.sh": "env"}).json()["output"]
    variables = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    assert variables["HOME"] == str(granted.scratch)
    assert variables["XDG_CACHE_HOME"].startswith(str(granted.scratch))
    assert not any(
        name.startswith(("BUILDER_", "ISSUER_", "REDIS")) and name != "BUILDER_ID"
        for name in variables
    )
    assert ADMIN_TOKEN not in output and granted.token not in output
    assert (builder_service.config.redis_url or "-") not in output


def test_each_builder_has_its_own_fresh_scratch_directory(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    first, second = (Granted(http, builder_service, fake_issuer) for _ in range(2))
    first.build({"build.sh": "echo secret > left-behind"})
    listing = second.build({"build.sh": "ls -A; ls -A .. | wc -l"}).json()["output"]
    assert "left-behind" not in listing
    assert first.scratch != second.scratch
    assert oct(first.scratch.stat().st_mode & 0o777) == "0o700"


def test_a_build_is_stopped_at_its_time_limit(
    http: httpx.Client, make_service: ServiceMaker, fake_issuer: FakeIssuer
) -> None:
    service = make_service(build_timeout=1)
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
    result = granted.build({"build.sh": "echo started\nsleep 30\necho never\n"}).json()
    assert result["timed_out"] is True and result["exit_code"] is None
    assert result["output"] == "started\n"


def test_a_build_without_a_token_is_refused(granted: Granted) -> None:
    response = granted.http.post(f"{granted.endpoint}/build", content=b"")
    assert response.status_code == 401
    assert response.json()["error"] == errors.BUILD_TOKEN.code
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_made_up_build_token_is_refused(granted: Granted) -> None:
    response = granted.build({"build.sh": "true"}, token="bt_" + "A" * 43)
    assert response.status_code == 401


def test_a_build_token_is_refused_by_another_builder(
    http: httpx.Client, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    mine, theirs = (Granted(http, builder_service, fake_issuer) for _ in range(2))
    response = theirs.build({"build.sh": "echo pwned"}, token=mine.token)
    assert response.status_code == 401
    assert theirs.delete(token=mine.token).status_code == 401
    assert theirs.build({"build.sh": "true"}).status_code == 200  # still alive


@pytest.mark.parametrize(
    ("archive", "why"),
    [
        (b"not a tarball", "not a gzip-compressed tar archive"),
        (context({"README": "no script"}), "no build.sh"),
    ],
)
def test_an_unusable_context_is_refused(granted: Granted, archive: bytes, why: str) -> None:
    response = granted.post_context(archive)
    assert response.status_code == 400
    assert why in response.json()["error_description"]


def test_a_context_member_escaping_the_scratch_directory_is_refused(
    granted: Granted, tmp_path: Path
) -> None:
    def escape(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("../escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))

    response = granted.post_context(context({"build.sh": "true"}, extra=escape))
    assert response.status_code == 400
    assert "unsafe member" in response.json()["error_description"]
    assert not (granted.scratch.parent / "escaped").exists()


def test_a_link_out_of_the_scratch_directory_is_refused(granted: Granted) -> None:
    def link(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)

    response = granted.post_context(context({"build.sh": "cat passwd"}, extra=link))
    assert response.status_code == 400


def test_delete_stops_the_builder_and_removes_its_scratch_directory(granted: Granted) -> None:
    granted.build({"build.sh": "echo x > artefact"})
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
    with pytest.raises(httpx.ConnectError):
        granted.build({"build.sh": "true"})


async def test_a_builder_stops_itself_and_removes_its_scratch_directory_at_expiry(
    tmp_path: Path,
) -> None:
    stopped: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def on_stopped(builder_id: str, reason: str) -> None:
        await stopped.put((builder_id, reason))

    backend = ProcessBackend(tmp_path, on_stopped)
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

    backend = ProcessBackend(tmp_path, on_stopped)
    expires = int(time.time()) + 600
    builders = [
        await backend.start(BuilderSpec(f"b-{n}", "p", expires, "c", "http://127.0.0.1:9", 5))
        for n in range(2)
    ]
    await backend.close()
    assert reasons == ["shutdown", "shutdown"]
    assert all(port_closed(b.endpoint) for b in builders)
    assert os.listdir(tmp_path) == []


async def test_a_second_build_while_one_runs_is_refused(granted: Granted) -> None:
    waiting = "touch started\nwhile [ ! -f go ]; do sleep 0.05; done\necho done\n"
    auth = {"Authorization": f"Bearer {granted.token}"}
    async with httpx.AsyncClient(timeout=60) as client:
        first = asyncio.create_task(
            client.post(
                f"{granted.endpoint}/build", content=context({"build.sh": waiting}), headers=auth
            )
        )
        started = granted.scratch / "started"
        assert await asyncio.to_thread(wait_until, started.exists)
        second = await client.post(
            f"{granted.endpoint}/build", content=context({"build.sh": "true"}), headers=auth
        )
        (granted.scratch / "go").touch()
        assert (await first).json()["output"] == "done\n"
    assert second.status_code == 409
    assert second.json()["error_description"] == errors.BUILDER_BUSY.description


def test_a_context_over_the_limit_is_refused_before_it_is_read(granted: Granted) -> None:
    response = granted.post_context(b"\0" * (16 * 1024 * 1024 + 1))
    assert response.status_code == 413


async def test_a_builder_that_cannot_reach_its_service_refuses_to_build(tmp_path: Path) -> None:
    async def on_stopped(builder_id: str, reason: str) -> None:
        pass

    backend = ProcessBackend(tmp_path, on_stopped)
    expires = int(time.time()) + 60
    builder = await backend.start(BuilderSpec("b-lost", "p", expires, "c", "http://127.0.0.1:9", 5))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{builder.endpoint}/build",
                content=context({"build.sh": "true"}),
                headers={"Authorization": "Bearer bt_anything"},
            )
        assert response.status_code == 503
        assert response.json()["error_description"] == errors.INTROSPECTION_FAILED.description
    finally:
        await backend.close()
