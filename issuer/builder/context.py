"""Unpacking a build context (a tar archive, gzip accepted) safely.

The standard library's ``data`` filter refuses absolute paths, ``..``, links leaving the
directory and devices, and drops set-id bits; limits bound the members and unpacked size.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

MAX_MEMBERS = 10_000
MAX_UNPACKED = 256 * 1024 * 1024


class ContextError(ValueError):
    """The context cannot be used; the message says why (no secret in it)."""


def unpack(archive: bytes, directory: Path) -> None:
    """Unpack a tar archive (plain or gzip) into ``directory``; raises ContextError."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
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
        raise ContextError("not a tar archive (plain or gzip)") from None
