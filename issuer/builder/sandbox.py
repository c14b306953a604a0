"""The sandbox every step of a build runs in.

A build runs a stranger's code. Each command the builder runs for it (buildah pulling the
base images, building, exporting the image) goes through the same walls:

- **A user id of its own.** ``unshare --user`` maps ids 0..65535 of a new user namespace to
  a block of the service user's subordinate ids (``/etc/subuid``, ``/etc/subgid``), one block
  per live builder on this host (held with a lock file), so a build's root is a host id that
  is neither root nor the service's, nor any other builder's.
- **Namespaces of its own** (bubblewrap): PID, mount, IPC, UTS, cgroup, and network unless
  the step must pull base images. A network namespace has only its own loopback, unless the
  trust relationship allows egress (:mod:`.egress`): then ``unshare --net`` makes it before
  the user namespace (so that it is not the sandbox's to change), and the sandbox waits
  (bubblewrap's ``--block-fd``) until the builder has given it its user-mode network and
  its rules. A new, empty root file system: ``/usr`` read-only (buildah
  and what it runs), a generated ``/etc`` (no host file), the builder's own directory, fresh
  ``/proc``, ``/dev`` and ``/tmp``; no other file of the host. ``--die-with-parent`` and the
  PID namespace: when the builder stops the command, everything it started is gone.
- **Limits**: memory and process count in a cgroup of its own (v2 where the host delegates
  it, else v1 where it is writable) and as rlimits always (processes per user id, file size,
  core dumps); disk and time are watched by the builder.

``enabled=False`` exists for the attack tests only (to show each attack succeeding without
the walls: no namespaces, no id mapping, no limits); the service has no setting that
reaches it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

BLOCK = 65536
"""Ids mapped into one builder's user namespace (0..65535, as a container expects)."""

CONFINE = str(Path(__file__).with_name("confine.py"))
AS_FLOOR = 4 << 30
"""The least RLIMIT_AS a sandboxed command gets when memory has no cgroup."""
INSIDE = "/build"
"""Where the builder's own directory appears inside the sandbox."""
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TOP_LEVEL = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")

Network = Literal["host", "none", "egress"]
"""``host``: the host's network namespace (pulling the operator's base images only);
``none``: a namespace with only its own loopback; ``egress``: a namespace of its own that
the builder gives user-mode networking behind its rules (:mod:`.egress`)."""


class SandboxError(RuntimeError):
    """The host cannot give a builder its sandbox; the message says what is missing."""


@dataclass(frozen=True)
class IdBlock:
    """The host ids that ids 0..65535 of a builder's user namespace stand for."""

    uid: int
    gid: int


@dataclass(frozen=True)
class Limits:
    memory: int
    """Bytes of memory for everything a build runs."""
    pids: int
    """Processes (and threads) at once."""
    disk: int
    """Bytes under the builder's directory (watched by the builder; also each file's size)."""


def subordinate_ranges(path: Path, user: str, uid: int) -> list[tuple[int, int]]:
    """The ``(start, count)`` ranges ``/etc/subuid``-style file ``path`` gives ``user``."""
    ranges = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(encoding="utf-8").splitlines():
            owner, _, rest = line.strip().partition(":")
            start, _, count = rest.partition(":")
            if owner in (user, str(uid)) and start.isdigit() and count.isdigit():
                ranges.append((int(start), int(count)))
    return ranges


def id_blocks(
    subuid: Path = Path("/etc/subuid"), subgid: Path = Path("/etc/subgid")
) -> list[IdBlock]:
    """Every block of 65,536 subordinate ids the service's user may map, uids and gids paired."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)

    def blocks(ranges: list[tuple[int, int]]) -> list[int]:
        return [start + n * BLOCK for start, count in ranges for n in range(count // BLOCK)]

    uids = blocks(subordinate_ranges(subuid, user, uid))
    gids = blocks(subordinate_ranges(subgid, user, uid))
    return [IdBlock(u, g) for u, g in zip(uids, gids, strict=False)]


def id_lock_directory() -> Path:
    """Where the locks of id blocks live: one place per host (``/run/lock``), so that two
    services with different scratch roots never hand out the same block."""
    run_lock = Path("/run/lock")
    base = run_lock if run_lock.is_dir() else Path(tempfile.gettempdir())
    return base / "issuer-builder-ids"


class Slot:
    """One id block, held by this process until ``release`` (or its exit: the lock is a
    ``flock`` on a file of this host, so a crashed builder frees its block)."""

    def __init__(self, block: IdBlock, fd: int) -> None:
        self.block = block
        self._fd = fd

    @classmethod
    def acquire(cls, lock_dir: Path, blocks: Sequence[IdBlock]) -> Slot:
        if not blocks:
            raise SandboxError(
                "the service's user has no subordinate id range of 65536 ids or more in "
                "/etc/subuid and /etc/subgid (see docs/builder.md, 'The host')"
            )
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for block in blocks:
            fd = os.open(lock_dir / f"{block.uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return cls(block, fd)
        raise SandboxError("every subordinate id block is in use by a live builder")

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Confinement:
    """A builder's cgroup (v2, or v1's memory and pids hierarchies) and its rlimits."""

    def __init__(
        self,
        name: str,
        limits: Limits,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        *,
        enabled: bool = True,
    ) -> None:
        self.limits = limits
        self.groups: list[Path] = []
        self.kind = "rlimits"
        unified = cgroup_root / "cgroup.controllers"
        if not enabled:
            self.kind = "none (tests only)"
        elif unified.exists():
            self._try_v2(cgroup_root, name)
        else:
            self._try_v1(cgroup_root, name)

    def _try_v2(self, root: Path, name: str) -> None:
        parent = root / "issuer-builders"
        try:
            wanted = {"memory", "pids"}
            if not wanted <= set((root / "cgroup.controllers").read_text().split()):
                return
            parent.mkdir(exist_ok=True)
            (root / "cgroup.subtree_control").write_text("+memory +pids")
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
            group = parent / name
            group.mkdir()
            (group / "memory.max").write_text(str(self.limits.memory))
            (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(self.limits.pids))
        except OSError:
            return
        self.groups = [group]
        self.kind = "cgroup v2"

    def _try_v1(self, root: Path, name: str) -> None:
        made: list[Path] = []
        try:
            memory = root / "memory" / "issuer-builders" / name
            pids = root / "pids" / "issuer-builders" / name
            for group in (memory, pids):
                group.mkdir(parents=True)
                made.append(group)
            (memory / "memory.limit_in_bytes").write_text(str(self.limits.memory))
            with contextlib.suppress(OSError):  # absent without swap accounting
                (memory / "memory.memsw.limit_in_bytes").write_text(str(self.limits.memory))
            (pids / "pids.max").write_text(str(self.limits.pids))
        except OSError:
            for group in reversed(made):
                with contextlib.suppress(OSError):
                    group.rmdir()
            return
        self.groups = made
        self.kind = "cgroup v1"

    def launcher(self) -> list[str]:
        """The command prefix that puts what follows in the cgroups, under the rlimits."""
        prefix = [sys.executable, "-I", "-S", CONFINE]
        for group in self.groups:
            prefix += ["--join", str(group / "cgroup.procs")]
        rlimits = {
            "nproc": self.limits.pids,
            "fsize": self.limits.disk,
            "core": 0,
        }
        if not self.groups:
            # No memory cgroup: bound each process's address space instead, never below what
            # buildah's Go runtime reserves at start (it fails under 1 GiB).
            rlimits["as"] = max(self.limits.memory, AS_FLOOR)
        for name, value in rlimits.items():
            prefix += ["--rlimit", f"{name}={value}"]
        return [*prefix, "--"]

    def limit_hit(self) -> str | None:
        """``memory`` or ``pids`` when the cgroup recorded reaching that limit."""
        for group in self.groups:
            for events, key, what in (
                ("memory.events", "oom_kill", "memory"),
                ("memory.oom_control", "oom_kill", "memory"),
                ("memory.failcnt", None, "memory"),
                ("pids.events", "max", "pids"),
            ):
                with contextlib.suppress(OSError, ValueError):
                    text = (group / events).read_text()
                    if key is None:
                        if int(text.strip()) > 0:
                            return what
                        continue
                    for line in text.splitlines():
                        name, _, count = line.partition(" ")
                        if name == key and int(count) > 0:
                            return what
        return None

    def kill_all(self) -> None:
        """SIGKILL every process left in the builder's cgroups."""
        kill_groups(self.groups)

    def remove(self) -> None:
        """Kill what is left in the builder's cgroups and remove them."""
        remove_groups(self.groups)
        self.groups = []


def kill_groups(groups: list[Path]) -> None:
    """SIGKILL every process left in ``groups`` (v2's cgroup.kill, else each pid)."""
    for group in groups:
        with contextlib.suppress(OSError):
            kill = group / "cgroup.kill"
            if kill.exists():
                kill.write_text("1")
                continue
        with contextlib.suppress(OSError, ValueError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)


def remove_groups(groups: list[Path]) -> None:
    """Kill what is left in ``groups`` and remove them (a cgroup cannot be removed until its
    last process has gone: wait up to a second for that)."""
    kill_groups(groups)
    for group in groups:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


def discard_cgroups(name: str, cgroup_root: Path = Path("/sys/fs/cgroup")) -> None:
    """Remove a builder's cgroups, killing what is left in them, whoever made them: the
    service calls this once a builder's process has ended, however it ended (a builder
    killed outright could not clean up after itself)."""
    remove_groups(
        [
            group
            for group in (
                cgroup_root / "issuer-builders" / name,
                cgroup_root / "memory" / "issuer-builders" / name,
                cgroup_root / "pids" / "issuer-builders" / name,
            )
            if group.is_dir()
        ]
    )


class Sandbox:
    """Commands for one builder, run inside its walls (or, for the tests only, without)."""

    def __init__(
        self,
        directory: Path,
        etc: Path,
        block: IdBlock,
        confinement: Confinement,
        *,
        enabled: bool = True,
        resolv: Path | None = None,
    ) -> None:
        self.directory = directory
        self.etc = etc
        self.resolv = resolv
        """The ``/etc/resolv.conf`` of an egress step (naming slirp4netns's forwarder)."""
        self.block = block
        self.confinement = confinement
        self.enabled = enabled
        for tool in ("unshare", "bwrap", "newuidmap", "newgidmap"):
            if enabled and shutil.which(tool) is None:
                raise SandboxError(
                    f"{tool} is not installed (Debian: util-linux, bubblewrap, uidmap)"
                )

    def inside(self, *parts: str) -> str:
        """A path under the builder's directory as the sandboxed command sees it."""
        base = INSIDE if self.enabled else str(self.directory)
        return "/".join([base, *parts])

    def config_path(self, name: str) -> str:
        """A generated ``/etc`` file as the sandboxed command sees it."""
        return f"/etc/{name}" if self.enabled else str(self.etc / name)

    def environment(self) -> dict[str, str]:
        home = self.inside("home")
        return {
            "PATH": SAFE_PATH,
            "HOME": home,
            "TMPDIR": self.inside("tmp"),
            "XDG_RUNTIME_DIR": self.inside("run"),
            "CONTAINERS_REGISTRIES_CONF": self.config_path("containers/registries.conf"),
            "LANG": "C.UTF-8",
        }

    def command(
        self,
        argv: Sequence[str],
        *,
        network: Network,
        info_fd: int | None = None,
        block_fd: int | None = None,
    ) -> list[str]:
        """``argv`` wrapped in the sandbox, with the ``network`` it may use (``host`` only for
        pulling the operator's base images: no code of the build runs then). An ``egress``
        command needs ``info_fd`` (where bubblewrap writes the sandbox's PID) and
        ``block_fd`` (what it waits on before running ``argv``)."""
        if not self.enabled:
            return list(argv)
        uid, gid = self.block.uid, self.block.gid
        # An egress namespace is made before the user namespace, by the service (root): it
        # belongs to the host's user namespace, so no capability of the sandbox's (not even
        # buildah's) reaches its rules, routes or interface.
        outside = ["unshare", "--net", "--"] if network == "egress" else []
        wrapped = [
            *self.confinement.launcher(),
            *outside,
            "unshare",
            "--user",
            f"--map-users={uid},0,{BLOCK}",
            f"--map-groups={gid},0,{BLOCK}",
            "--setuid=0",
            "--setgid=0",
            "--",
            "bwrap",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            # Capabilities inside the builder's own user namespace only: buildah needs them
            # to mount and chroot there; over the host they are nothing.
            "--cap-add",
            "ALL",
            "--hostname",
            "builder",
        ]
        if network == "none":
            wrapped.append("--unshare-net")
        elif network == "egress":
            if info_fd is None or block_fd is None or self.resolv is None:
                raise ValueError("an egress command needs info_fd, block_fd and resolv")
            # The namespace is the one made above: bubblewrap leaves it alone (no loopback
            # set-up racing slirp4netns's), reports its first process, waits for the builder.
            wrapped += ["--info-fd", str(info_fd), "--block-fd", str(block_fd)]
        wrapped += ["--ro-bind", "/usr", "/usr"]
        for name in _TOP_LEVEL:
            host = Path("/") / name
            if host.is_symlink():
                wrapped += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                wrapped += ["--ro-bind", str(host), f"/{name}"]
        wrapped += [
            "--ro-bind",
            str(self.etc),
            "/etc",
            *(["--ro-bind", str(self.resolv), "/etc/resolv.conf"] if network == "egress" else []),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--dir",
            "/sys",
            "--bind",
            str(self.directory),
            INSIDE,
            "--bind",
            str(self.directory / "tmp"),
            "/tmp",  # noqa: S108  (the sandbox's own /tmp: its directory's tmp/)
            "--bind",
            str(self.directory / "tmp"),
            "/var/tmp",  # noqa: S108
            "--tmpfs",
            "/run",
            "--chdir",
            INSIDE,
            "--clearenv",
        ]
        for name, value in self.environment().items():
            wrapped += ["--setenv", name, value]
        return [*wrapped, "--", *argv]
