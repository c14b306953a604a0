"""Egress: a trust relationship's ``egress: true`` gives its builds' steps a way out to the
internet, and none to the builder host's loopback, link-local (cloud metadata), private or
own addresses.

Each step is a ``RUN`` of a real build on a builder of a real builder service. Each wall is
shown twice: with the egress rules, where the step must not reach its target, and on a
builder whose egress runs without them (``ImageSettings.egress_rules=False``, a switch only
the tests set: no nftables rules, slirp4netns reaching the host's loopback), where it must,
which shows that the test can fail. A step reports reaching a target by printing a line its
own text cannot print (``"REA""CHED"`` in the script, ``REACHED`` in the output); what a step
prints is read back from the image it made (a step's lines are sometimes missing from the
build's stream, see bench/README.md).

There is no internet here: a **fake internet** stands in for it, a network namespace of this
machine behind a veth pair, holding 198.18.N.2 (198.18.0.0/15 is for benchmarks, not
private) and 169.254.169.254 (where clouds serve their metadata), with the host's routes to
both through the veth; it is made and removed by a fixture (root and iproute2 needed, else
those tests are skipped). DNS is checked with the builder's uplink and rules around a
namespace of the test's own, slirp4netns reading a resolv.conf that names a resolver on this
machine. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from issuer.builder.backend import BuilderBackend, OnStopped
from issuer.builder.egress import DNS, EgressError, Uplink, ruleset
from issuer.builder.imagebuild import ImageSettings
from issuer.builder.process import BuilderProcesses
from tests.builder.conftest import RunningService, exchange_form, start_service
from tests.builder.marker_server import MarkerServer
from tests.builder.support import ADMIN_TOKEN, PROJECT, FakeIssuer, context
from tests.image_registry import ImageRegistry
from tests.redis_server import RedisServer

NO_EGRESS = "octo-org/no-egress"
"""A second project of the same repository, whose relationship does not allow egress."""
REACHED = "REACHED"
WRITTEN = "step-output"
REPORT = 'echo "REA""CHED"'
NET_ADMIN = 12
RULES = pytest.mark.parametrize(
    "rules", [True, False], ids=["with-the-egress-rules", "without-the-egress-rules"]
)


class Target(Protocol):
    """A marker server, here or in the fake internet."""

    marker: str
    port: int


@dataclass
class Step:
    lines: list[dict[str, object]]
    """The build's stream."""
    written: str | None = None
    """What the step wrote (its stdout and stderr), read back from the image it made: a
    step's own lines are sometimes missing from the stream (bench/README.md)."""

    @property
    def output(self) -> str:
        if self.written is not None:
            return self.written
        return "".join(str(line.get("stream", "")) for line in self.lines)

    @property
    def reached(self) -> bool:
        return any(line.strip() == REACHED for line in self.output.splitlines())

    @property
    def error(self) -> str | None:
        value = self.lines[-1].get("error") if self.lines else None
        return str(value) if value is not None else None


def written_in(archive: bytes, name: str) -> str | None:
    """The file ``name`` of the top layer of the image in OCI archive ``archive``."""

    def read(tar: tarfile.TarFile, path: str) -> bytes:
        member = tar.extractfile(path)
        assert member is not None, path
        return member.read()

    with tarfile.open(fileobj=io.BytesIO(archive)) as image:
        index = json.loads(read(image, "index.json"))
        manifest = json.loads(
            read(image, "blobs/" + index["manifests"][0]["digest"].replace(":", "/"))
        )
        layer = read(image, "blobs/" + manifest["layers"][-1]["digest"].replace(":", "/"))
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:*") as files:
        names = {member.name.removeprefix("./"): member for member in files.getmembers()}
        if name not in names or not names[name].isfile():
            return None
        return read(files, names[name].name).decode(errors="replace")


class Builds:
    """Builder services with and without the egress rules, and a way to run a step."""

    def __init__(
        self, issuer: FakeIssuer, registry: ImageRegistry, services: dict[bool, RunningService]
    ) -> None:
        self.issuer = issuer
        self.registry = registry
        self.services = services
        self.http = httpx.Client(timeout=120)

    def step(
        self,
        script: str,
        *,
        rules: bool = True,
        egress: bool = True,
        before_delete: Callable[[str], None] | None = None,
    ) -> Step:
        """Run ``script`` as a ``RUN`` step on a fresh builder of a project with or without
        egress, on the service with or without the egress rules (``before_delete`` is given
        the builder's id once the build has ended)."""
        service = self.services[rules]
        form = exchange_form(self.issuer.token(), project=PROJECT if egress else NO_EGRESS)
        granted = self.http.post(f"{service.url}/token", data=form)
        assert granted.status_code == 200, granted.text
        body = granted.json()
        endpoint = body["builder"]["endpoint"]
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        dockerfile = f"FROM {self.registry.base}\nRUN ( {script} ) > /{WRITTEN} 2>&1\n"
        try:
            with self.http.stream(
                "POST",
                f"{endpoint}/build",
                content=context({"Dockerfile": dockerfile}),
                headers=auth,
            ) as response:
                assert response.status_code == 200, response.read()
                lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
            written = None
            if lines and "aux" in lines[-1]:
                image = self.http.get(f"{endpoint}/image", headers=auth)
                assert image.status_code == 200, image.text
                written = written_in(image.content, WRITTEN)
            if before_delete is not None:
                before_delete(body["builder"]["id"])
        finally:
            self.http.delete(endpoint, headers=auth)
        return Step(lines, written)

    def reach(
        self, address: str, server: Target, *, rules: bool = True, egress: bool = True
    ) -> Step:
        """A step that connects to ``address``:``server.port`` and reads its marker."""
        return self.step(
            f"nc -w 5 {address} {server.port} </dev/null 2>&1 | grep -q {server.marker}"
            f" && {REPORT}; true",
            rules=rules,
            egress=egress,
        )


@pytest.fixture(scope="module")
def builds(
    redis_server: RedisServer,
    _issuer_servers: tuple[FakeIssuer, FakeIssuer],
    image_registry: ImageRegistry,
    scratch_base: Path,
) -> Iterator[Builds]:
    redis_server.flush()
    issuer = _issuer_servers[0].reset()
    services: dict[bool, RunningService] = {}

    def backend_with(rules: bool) -> Callable[[Path, OnStopped], BuilderBackend]:
        images = ImageSettings(
            registries=(image_registry.host,),
            insecure_registries=(image_registry.host,),
            egress_rules=rules,
        )

        def backend(scratch_root: Path, on_stopped: OnStopped) -> BuilderBackend:
            return BuilderProcesses(scratch_root, on_stopped, images)

        return backend

    try:
        for rules in (True, False):
            services[rules] = start_service(
                redis_server.url,
                issuer.url,
                Path(tempfile.mkdtemp(prefix="scratch-", dir=scratch_base)),
                {"backend_factory": backend_with(rules)},
                registry=image_registry,
                max_builders_per_run=100,  # every step's token names one run
                max_builders_per_head_repository=100,
            )
        for project, egress in ((PROJECT, True), (NO_EGRESS, False)):
            added = httpx.post(
                f"{services[True].url}/admin/trust",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                json={
                    "project": project,
                    "issuer": issuer.url,
                    "repository": PROJECT,
                    "max_builders": 10,
                    "egress": egress,
                },
            )
            assert added.status_code == 201, added.text
        built = Builds(issuer, image_registry, services)
        yield built
        built.http.close()
    finally:
        for service in services.values():
            service.stop()


def marker() -> str:
    return "marker-" + secrets.token_hex(8)


@pytest.fixture
def on_loopback() -> Iterator[MarkerServer]:
    """A server on the host's loopback."""
    server = MarkerServer("127.0.0.1", marker()).start()
    yield server
    server.stop()


def host_address() -> str | None:
    """The host's address toward its default route (a UDP socket's connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture
def on_host_address() -> Iterator[tuple[str, MarkerServer]]:
    """A server on the host's own non-loopback address."""
    address = host_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to listen on")
    server = MarkerServer(address, marker()).start()
    yield address, server
    server.stop()


@dataclass
class Remote:
    """The marker server of the fake internet, in its namespace."""

    marker: str
    port: int


@dataclass
class FakeInternet:
    address: str
    """198.18.N.2: an address of the internet, as far as a build can tell."""
    neighbour: str
    """198.19.N.2, on a network the host has an address on (198.19.N.1/24): a neighbour."""
    internet: Remote
    metadata: Remote | None
    """The same server, at 169.254.169.254 (None if the host routes that address already)."""


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def fake_internet() -> Iterator[FakeInternet]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the fake internet needs root and iproute2 (a network namespace, a veth)")
    tag = secrets.token_hex(3)
    namespace, outside, inside = f"egress-test-{tag}", f"veo{tag}", f"vei{tag}"
    subnet = secrets.randbelow(254) + 1
    address, neighbour = f"198.18.{subnet}.2", f"198.19.{subnet}.2"
    metadata = "169.254.169.254"
    taken = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all", "to", "match", metadata],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    route_metadata = not any(line.startswith(metadata) for line in taken.splitlines())
    port = 8000 + secrets.randbelow(1000)
    server: subprocess.Popen[str] | None = None
    try:
        _ip("netns", "add", namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
        _ip("link", "set", outside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/32", "dev", inside)
        _ip("-n", namespace, "addr", "add", f"{neighbour}/24", "dev", inside)
        _ip("addr", "add", f"198.19.{subnet}.1/24", "dev", outside)
        _ip("-n", namespace, "addr", "add", f"{metadata}/32", "dev", "lo")
        _ip("-n", namespace, "route", "add", "default", "dev", inside)
        # Routes through the veth only: removed with it when the namespace goes.
        _ip("route", "add", f"{address}/32", "dev", outside)
        if route_metadata:
            _ip("route", "add", f"{metadata}/32", "dev", outside)
        mark = marker()
        server = subprocess.Popen(
            [
                *("ip", "netns", "exec", namespace, sys.executable, "-m"),
                *("tests.builder.marker_server", "--port", str(port), "--marker", mark),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        internet = Remote(mark, port)
        yield FakeInternet(address, neighbour, internet, internet if route_metadata else None)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        # The veth pair first (at once, its routes with it), then the namespace.
        subprocess.run(["ip", "link", "del", outside], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
    assert not Path("/sys/class/net", outside).exists()


def test_a_step_with_egress_has_a_default_route(builds: Builds) -> None:
    step = builds.step("cat /proc/net/route")
    assert step.error is None, step.lines[-3:]
    assert re.search(r"^tap0\s+00000000\s+0202000A\s", step.output, re.MULTILINE), step.output


def test_a_step_without_egress_has_no_route(builds: Builds) -> None:
    step = builds.step("cat /proc/net/route; cat /proc/net/dev", egress=False)
    assert step.error is None, step.lines[-3:]
    assert "00000000" not in step.output
    assert "tap0" not in step.output


def test_a_step_with_egress_resolves_names_through_slirp4netns(builds: Builds) -> None:
    step = builds.step("cat /etc/resolv.conf")
    assert step.error is None, step.lines[-3:]
    assert re.search(r"^nameserver 10\.0\.2\.3$", step.output, re.MULTILINE), step.output


@RULES
def test_reaching_the_hosts_loopback(
    builds: Builds, on_loopback: MarkerServer, rules: bool
) -> None:
    # 10.0.2.2 is slirp4netns's gateway: the host itself, its loopback included.
    step = builds.reach("10.0.2.2", on_loopback, rules=rules)
    assert step.reached is not rules, step.lines[-3:]


@RULES
def test_reaching_the_hosts_own_address(
    builds: Builds, on_host_address: tuple[str, MarkerServer], rules: bool
) -> None:
    address, server = on_host_address
    step = builds.reach(address, server, rules=rules)
    assert step.reached is not rules, step.lines[-3:]


@RULES
def test_reaching_cloud_metadata(builds: Builds, fake_internet: FakeInternet, rules: bool) -> None:
    if fake_internet.metadata is None:
        pytest.skip("this host already routes 169.254.169.254: no fake metadata server")
    step = builds.reach("169.254.169.254", fake_internet.metadata, rules=rules)
    assert step.reached is not rules, step.lines[-3:]


@RULES
def test_reaching_a_neighbour_of_the_host(
    builds: Builds, fake_internet: FakeInternet, rules: bool
) -> None:
    step = builds.reach(fake_internet.neighbour, fake_internet.internet, rules=rules)
    assert step.reached is not rules, step.lines[-3:]


@pytest.mark.parametrize("egress", [True, False], ids=["with-egress", "without-egress"])
def test_reaching_the_internet(builds: Builds, fake_internet: FakeInternet, egress: bool) -> None:
    step = builds.reach(fake_internet.address, fake_internet.internet, egress=egress)
    assert step.reached is egress, step.lines[-3:]


def test_a_step_has_no_net_admin_capability(builds: Builds) -> None:
    step = builds.step("grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status")
    assert step.error is None, step.lines[-3:]
    capabilities = dict(re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", step.output, re.MULTILINE))
    assert set(capabilities) == {"CapEff", "CapPrm", "CapBnd", "CapAmb"}, step.output
    assert not any(int(mask, 16) >> NET_ADMIN & 1 for mask in capabilities.values())


def test_a_step_cannot_trace_the_processes_that_hold_net_admin(builds: Builds) -> None:
    # buildah and its chroot runtime keep every capability of the sandbox's user namespace
    # (not of the network namespace's owner); a step must not borrow them.
    step = builds.step(
        "head -c 1 /proc/self/maps > /dev/null && echo maps-are-readable;"
        " for p in /proc/[0-9]*; do grep -q '^CapEff:.*1ffffffffff$' $p/status 2>/dev/null"
        " || continue; echo privileged $(cat $p/comm)"
        f"; head -c 1 $p/maps > /dev/null 2>&1 && {REPORT}; done; true"
    )
    assert step.error is None, step.lines[-3:]
    assert "maps-are-readable" in step.output.splitlines()  # where allowed, the test sees it
    assert "privileged buildah" in step.output
    assert not step.reached, step.output


def test_a_step_cannot_change_its_network(builds: Builds) -> None:
    step = builds.step(
        "(ip route del default || ip link set tap0 down || ip addr flush dev tap0"
        " || ip link add x type dummy) 2>&1; cat /proc/net/route"
        f"; [ -x /usr/sbin/nft ] && nft flush ruleset && {REPORT}; true"
    )
    assert step.error is None, step.lines[-3:]
    assert "Operation not permitted" in step.output
    assert re.search(r"^tap0\s+00000000\s", step.output, re.MULTILINE), step.output
    assert not step.reached


def _processes() -> Iterator[tuple[int, int, str, Path | None]]:
    """Every process of the host: its pid, parent, name and working directory."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cwd: Path | None = Path(os.readlink(entry / "cwd"))
        except FileNotFoundError:
            continue
        except OSError:
            cwd = None
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        yield int(entry.name), parent, name, cwd


def test_slirp4netns_ends_with_the_step(builds: Builds) -> None:
    left: list[int] = []

    def look(builder_id: str) -> None:
        backend = builds.services[True].service.backend
        scratch = backend.scratch_of(builder_id)  # type: ignore[attr-defined]
        workers = [pid for pid, _, _, cwd in _processes() if cwd == scratch]
        assert len(workers) == 1
        left.extend(
            pid
            for pid, parent, name, _ in _processes()
            if parent == workers[0] and name == "slirp4netns"
        )

    step = builds.step("cat /proc/net/route", before_delete=look)
    assert re.search(r"^tap0\s+00000000\s", step.output, re.MULTILINE), step.output
    assert left == []


class FakeResolver:
    """A DNS server on ``address``:53 that answers every A query with ``answer``."""

    def __init__(self, address: str, answer: str) -> None:
        self.answer = ipaddress.IPv4Address(answer).packed
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((address, 53))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                query, client = self._sock.recvfrom(512)
            except OSError:
                return
            end = 12
            while end < len(query) and query[end]:
                end += query[end] + 1
            question = query[12 : end + 5]
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + self.answer
            header = query[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0)
            self.queries += 1
            self._sock.sendto(header + question + answer, client)

    def stop(self) -> None:
        self._sock.close()
        self._thread.join(timeout=5)


def test_names_resolve_through_slirp4netns_and_the_hosts_resolver(tmp_path: Path) -> None:
    # The step's namespace, uplink and rules as a build gets them, with slirp4netns reading
    # a resolv.conf (in a mount namespace of its own) that names a resolver on this machine.
    address = host_address()
    if os.geteuid() != 0 or address is None or shutil.which("busybox") is None:
        pytest.skip("needs root, a non-loopback IPv4 address and busybox (busybox-static)")
    try:
        resolver = FakeResolver(address, "198.18.0.99")
    except OSError as problem:
        pytest.skip(f"no test resolver on {address}:53: {problem}")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {address}\n")
    try:
        probed = subprocess.run(
            [
                *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
                'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"',
                *("sh", str(resolv), sys.executable, "-m", "tests.builder.egress_probe"),
                *("busybox", "nslookup", "build-deps.example", DNS),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        resolver.stop()
    assert "198.18.0.99" in probed.stdout, (probed.stdout, probed.stderr)
    assert resolver.queries > 0


def test_not_even_root_of_the_sandboxs_user_namespace_can_change_the_rules() -> None:
    # As buildah in the sandbox: root of a user namespace of its own, every capability there,
    # in the build's network namespace, which belongs to the host's user namespace.
    if os.geteuid() != 0:
        pytest.skip("egress needs root")
    probed = subprocess.run(
        [
            *(sys.executable, "-m", "tests.builder.egress_probe", "sh", "-c"),
            "unshare --user --map-root-user sh -c 'grep ^CapEff /proc/self/status;"
            " nft flush ruleset; ip route del default; ip link set tap0 down' 2>&1;"
            " echo now:; nft list chain inet egress output; ip route show default",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    before, _, after = probed.stdout.partition("now:")
    assert "CapEff:\t000001ffffffffff" in before, probed
    assert before.count("Operation not permitted") == 3, before
    assert "ip daddr @blocked reject" in after and "default via 10.0.2.2 dev tap0" in after


def test_the_rules_reject_the_hosts_own_addresses_and_networks() -> None:
    rules = ruleset([ipaddress.IPv4Interface("203.0.113.7/24")])
    elements = re.search(r"elements = \{ (.*) \}", rules)
    assert elements is not None
    assert {"203.0.113.7", "203.0.113.0/24", "169.254.0.0/16", "127.0.0.0/8"} <= set(
        elements.group(1).split(", ")
    )
    assert f"ip daddr {DNS} udp dport 53 accept" in rules


async def test_an_uplink_that_cannot_attach_ends_with_an_error() -> None:
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    with pytest.raises(EgressError, match="slirp4netns did not configure the network"):
        await Uplink.start(gone.pid)
