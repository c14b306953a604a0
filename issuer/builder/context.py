"""A build on a builder: unpack the ``.tar.gz`` context safely, run its ``build.sh``.

The context is unpacked with the standard library's ``data`` filter (no absolute paths, no
``..``, no links leaving the directory, no devices), within limits on members and unpacked
size. ``build.sh`` runs with ``/bin/sh`` in the scratch directory, in its own session (so the
whole process group can be killed), with an environment that holds nothing of the service:
``HOME``, ``TMPDIR`` and ``XDG_CACHE_HOME`` point into the scratch directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

MAX_MEMBERS = 10_000
MAX_UNPACKED = 256 * 1024 * 1024
MAX_OUTPUT = 1024 * 1024
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


class ContextError(ValueError):
    """The context cannot be used; the message says why (no secret in it)."""


@dataclass(frozen=True)
class BuildResult:
    exit_code: int | None
    timed_out: bool
    output: str
    output_truncated: bool

    def as_json(self) -> dict[str, object]:
        return {
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "output": self.output,
            "output_truncated": self.output_truncated,
        }


def clear(directory: Path) -> None:
    """Empty ``directory`` (keeping it)."""
    for entry in list(directory.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def unpack(archive: bytes, directory: Path) -> None:
    """Unpack a ``.tar.gz`` into ``directory``; raises ContextError."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            members: list[tarfile.TarInfo] = []
            total = 0
            for member in tar:
                members.append(member)
                total += max(0, member.size)
                if len(members) > MAX_MEMBERS:
                    raise ContextError(f"more than {MAX_MEMBERS} members")
                if total > MAX_UNPACKED:
                    raise ContextError(f"more than {MAX_UNPACKED} bytes unpacked")
            tar.extractall(directory, members=members, filter="data")
    except tarfile.FilterError as error:
        raise ContextError(f"unsafe member {error.tarinfo.name!r}") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError):
        raise ContextError("not a gzip-compressed tar archive") from None
    script = directory / "build.sh"
    if not script.is_file():
        raise ContextError("it has no build.sh at its top level")


def build_environment(scratch: Path, builder_id: str) -> dict[str, str]:
    (scratch / ".tmp").mkdir(exist_ok=True)
    (scratch / ".cache").mkdir(exist_ok=True)
    return {
        "PATH": SAFE_PATH,
        "HOME": str(scratch),
        "TMPDIR": str(scratch / ".tmp"),
        "XDG_CACHE_HOME": str(scratch / ".cache"),
        "LANG": "C.UTF-8",
        "BUILDER_ID": builder_id,
    }


class Build:
    """One run of ``build.sh`` within ``limit`` seconds; :meth:`kill` ends it (and anything
    it started) at once."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    def kill(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    async def run(self, scratch: Path, env: dict[str, str], limit: float) -> BuildResult:
        self._process = process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "build.sh",
            cwd=scratch,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert process.stdout is not None
        output = bytearray()
        truncated = False

        async def read() -> None:
            nonlocal truncated
            assert process.stdout is not None
            while chunk := await process.stdout.read(65536):
                room = MAX_OUTPUT - len(output)
                output.extend(chunk[:room])
                truncated = truncated or len(chunk) > room

        reader = asyncio.create_task(read())
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), timeout=max(0.1, limit))
        except TimeoutError:
            timed_out = True
        finally:
            self.kill()  # a timed-out build, and whatever a finished one left running
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, timeout=5)
            await process.wait()
        return BuildResult(
            exit_code=None if timed_out else process.returncode,
            timed_out=timed_out,
            output=output.decode("utf-8", errors="replace"),
            output_truncated=truncated,
        )
