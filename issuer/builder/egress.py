"""Egress: the network a build's steps get when its trust relationship says ``egress: true``.

The steps keep a network namespace of their own, made by the service (root) with
``unshare --net`` before the sandbox's user namespace (see :mod:`.sandbox`): it belongs to
the host's user namespace, so no capability inside the sandbox, not even those buildah holds
there, can change its rules, routes or interface. The trusted side gives it user-mode
networking and walls before the first instruction of the build runs (bubblewrap waits on
``--block-fd``):

- **slirp4netns** (``--configure --mtu=65520 --disable-host-loopback``, in its own sandbox
  and seccomp filter) attached by ``/proc/PID/ns/net``: a ``tap0`` with 10.0.2.100/24, a
  default route via 10.0.2.2, and a DNS forwarder at 10.0.2.3 (the sandbox's
  ``/etc/resolv.conf`` names it).
  Its connections are the builder host's own sockets: without walls they would reach
  whatever the host reaches. It ends with the command (its ``--exit-fd`` is closed; killed
  if it lingers) or with the builder's process.
- **nftables rules inside that namespace** (:func:`ruleset`), loaded by
  ``nsenter --net=... nft -f -``: every packet leaving by ``tap0`` to the loopback, link-local
  (cloud metadata), private, shared (100.64/10), multicast or reserved ranges, or to any
  address of the builder host or a network it is on, is rejected; DNS to 10.0.2.3 only is
  let through; IPv6 is rejected whole (slirp4netns is started without it).

Egress needs the service to run as root (it makes the namespace and joins it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

from issuer.builder.sandbox import SAFE_PATH

DNS = "10.0.2.3"
"""slirp4netns's DNS forwarder: the only address of its network the build may reach."""
TAP = "tap0"
MTU = 65520
BLOCKED = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 is the local host
        "10.0.0.0/8",  # private; also slirp4netns's own 10.0.2.0/24 (10.0.2.2 is the host)
        "100.64.0.0/10",  # shared address space (carrier-grade NAT, some clouds' internals)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # private
        "192.168.0.0/16",  # private
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
"""Destinations never reached by egress, beside the builder host's own networks."""
_ENVIRONMENT = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
"""Of the programs run here: found on the system's own path, whatever the service's is."""
_SETUP_SECONDS = 20.0
_EXIT_GRACE = 2.0


class EgressError(RuntimeError):
    """The build's network could not be set up; the build must not start."""


def host_networks() -> list[ipaddress.IPv4Interface]:
    """The builder host's IPv4 addresses, each with its network (``ip -j -4 addr``)."""
    try:
        listed = subprocess.run(
            ["ip", "-j", "-4", "addr", "show"],  # noqa: S607  (iproute2, on PATH)
            capture_output=True,
            check=True,
            timeout=10,
            env=_ENVIRONMENT,
        )
        interfaces = json.loads(listed.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as problem:
        raise EgressError(f"the host's addresses cannot be listed: {problem}") from None
    found = []
    for interface in interfaces:
        for address in interface.get("addr_info", []):
            if address.get("family") == "inet":
                found.append(ipaddress.IPv4Interface(f"{address['local']}/{address['prefixlen']}"))
    return found


def ruleset(host: Iterable[ipaddress.IPv4Interface]) -> str:
    """The nftables rules of an egress namespace, for a host with addresses ``host``."""
    blocked = [str(network) for network in BLOCKED]
    for interface in host:
        blocked += [str(interface.ip), str(interface.network)]
    elements = ", ".join(dict.fromkeys(blocked))
    return f"""\
table inet egress {{
  set blocked {{
    type ipv4_addr
    flags interval
    auto-merge
    elements = {{ {elements} }}
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    oif "lo" accept
    ip daddr {DNS} udp dport 53 accept
    ip daddr {DNS} tcp dport 53 accept
    ip daddr @blocked reject with icmpx type admin-prohibited
    meta nfproto ipv6 reject with icmpx type admin-prohibited
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
  }}
}}
"""


def check_host() -> None:
    """Raises EgressError unless this host can give a build egress: the service runs as root
    (it makes the namespace and joins it) and has the programs it runs."""
    if os.geteuid() != 0:
        raise EgressError("egress needs the builder service to run as root")
    for tool, package in (
        ("slirp4netns", "slirp4netns"),
        ("nft", "nftables"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
    ):
        if shutil.which(tool, path=SAFE_PATH) is None:
            raise EgressError(f"{tool} is not installed (Debian: {package})")


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data


async def child_pid(info_fd: int) -> int:
    """The sandbox's first process, from bubblewrap's ``--info-fd`` (read to its end)."""
    raw = await asyncio.wait_for(asyncio.to_thread(_read_all, info_fd), _SETUP_SECONDS)
    try:
        pid = json.loads(raw)["child-pid"]
    except (ValueError, KeyError, TypeError):
        raise EgressError("the sandbox ended before its network was set up") from None
    if not isinstance(pid, int) or pid <= 0:
        raise EgressError("the sandbox reported no process")
    return pid


@dataclass
class Uplink:
    """slirp4netns serving one sandbox's network namespace, until :meth:`close`."""

    process: asyncio.subprocess.Process
    exit_fd: int

    @classmethod
    async def start(cls, pid: int, *, rules: bool = True) -> Uplink:
        """Give the network namespace of process ``pid`` its ``tap0``, then its rules.
        Raises EgressError.
        ``rules=False`` exists for the egress tests only: no nftables rules, and slirp4netns
        lets the namespace reach the host's loopback at 10.0.2.2."""
        namespaces = f"/proc/{pid}"
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        arguments = [
            "slirp4netns",
            "--configure",
            f"--mtu={MTU}",
            "--enable-sandbox",
            "--enable-seccomp",
            "--netns-type=path",
            f"--ready-fd={ready_w}",
            f"--exit-fd={exit_r}",
        ]
        if rules:
            arguments.append("--disable-host-loopback")
        log = tempfile.TemporaryFile()
        try:
            process = await asyncio.create_subprocess_exec(
                *arguments,
                f"{namespaces}/ns/net",
                TAP,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                pass_fds=(ready_w, exit_r),
                start_new_session=True,
                env=_ENVIRONMENT,
            )
        except OSError as problem:
            os.close(ready_r)
            os.close(exit_w)
            log.close()
            raise EgressError(f"slirp4netns cannot be started: {problem}") from None
        finally:
            os.close(ready_w)
            os.close(exit_r)
        uplink = cls(process, exit_w)
        try:
            try:
                ready = await asyncio.wait_for(
                    asyncio.to_thread(os.read, ready_r, 1), _SETUP_SECONDS
                )
            except TimeoutError:
                ready = b""
            if ready != b"1":
                log.seek(0)
                said = log.read().decode(errors="replace").strip().splitlines()
                raise EgressError(
                    "slirp4netns did not configure the network" + (f": {said[-1]}" if said else "")
                )
            if rules:
                await _load_rules(namespaces, ruleset(await asyncio.to_thread(host_networks)))
        except BaseException:
            await uplink.close()
            raise
        finally:
            os.close(ready_r)
            log.close()
        return uplink

    async def close(self) -> None:
        """End slirp4netns (closing its exit descriptor; killed if it lingers)."""
        if self.exit_fd >= 0:
            os.close(self.exit_fd)
            self.exit_fd = -1
        try:
            await asyncio.wait_for(asyncio.shield(self.process.wait()), _EXIT_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def _load_rules(namespaces: str, rules: str) -> None:
    """Load ``rules`` in the network namespace."""
    try:
        nft = await asyncio.create_subprocess_exec(
            "nsenter",
            f"--net={namespaces}/ns/net",
            "nft",
            "-f",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=_ENVIRONMENT,
        )
    except OSError as problem:
        raise EgressError(f"the egress rules cannot be loaded: {problem}") from None
    try:
        said, _ = await asyncio.wait_for(nft.communicate(rules.encode()), _SETUP_SECONDS)
    except TimeoutError:
        nft.kill()
        await nft.wait()
        raise EgressError("the egress rules were not loaded in time") from None
    if nft.returncode != 0:
        detail = said.decode(errors="replace").strip().splitlines()
        raise EgressError("the egress rules were refused" + (f": {detail[-1]}" if detail else ""))
