"""The build context: a directory packed as ``docker build`` would send it, as a ``.tar.gz``.

What goes in: every file the ``.dockerignore`` does not exclude (Docker's rules, walked the
way Docker walks), and always the ``.dockerignore`` and the Dockerfile. Symbolic links go in
as links, never followed: a link pointing out of the context sends its target's name, not
the file it names. Sockets, pipes and devices are left out. Owners are root (uid and gid 0,
no names), as the Docker CLI sends them. The archive is written to a temporary file and
given up as soon as it grows over the limit, so an oversized context is refused before any
byte leaves the runner.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from issuer.client.dockerignore import MatchInfo, PatternMatcher, keep_build_files, read_patterns

CHUNK = 64 * 1024


class ContextError(ValueError):
    """The context cannot be packed: a usage mistake the message explains."""


class ContextTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the packed context is over {limit} bytes")
        self.limit = limit


@dataclass
class PackedContext:
    """The archive, ready to send; close it once sent."""

    file: IO[bytes]
    size: int
    members: int
    skipped: list[str] = field(default_factory=list)
    """Paths left out because they are neither files, directories nor links."""

    def chunks(self) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            yield chunk

    def close(self) -> None:
        self.file.close()


class _Bounded:
    """A write-only file that refuses to grow over ``limit`` bytes."""

    def __init__(self, file: IO[bytes], limit: int) -> None:
        self._file = file
        self._limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self._limit:
            raise ContextTooLarge(self._limit)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()


def dockerfile_in_context(context: Path, dockerfile: Path | None) -> str:
    """The Dockerfile's path inside the context (the build's ``dockerfile`` parameter).
    ``dockerfile`` is a path as given on the command line (default: CONTEXT/Dockerfile)."""
    path = dockerfile if dockerfile is not None else context / "Dockerfile"
    root = context.resolve()
    absolute = Path(os.path.abspath(path))
    try:
        inside = absolute.relative_to(Path(os.path.abspath(context)))
    except ValueError:
        raise ContextError(
            f"the Dockerfile {str(path)!r} is not inside the context {str(context)!r}. Fix: "
            "move it into the context, or pass a context that holds it"
        ) from None
    if not absolute.is_file() or not absolute.resolve().is_relative_to(root):
        raise ContextError(
            f"no Dockerfile at {str(path)!r}. Fix: pass --file (the action's `file`) with the "
            "path of the Dockerfile, inside the context"
        )
    return inside.as_posix()


def matcher_for(context: Path, dockerfile: str) -> PatternMatcher:
    """The context's ``.dockerignore`` rules, with the build's own files always kept."""
    ignore = context / ".dockerignore"
    try:
        text = ignore.read_text(encoding="utf-8") if ignore.is_file() else ""
    except (OSError, UnicodeDecodeError) as error:
        raise ContextError(f".dockerignore cannot be read: {type(error).__name__}") from None
    try:
        return PatternMatcher(keep_build_files(read_patterns(text), dockerfile))
    except ValueError as error:
        raise ContextError(f".dockerignore: {error}. Fix: correct that line") from None


def included_paths(context: Path, matcher: PatternMatcher) -> Iterator[str]:
    """The relative paths to send, parents before children, in Docker's (lexical) order."""

    def walk(directory: str, parent: MatchInfo | None) -> Iterator[str]:
        base = context / directory if directory else context
        with os.scandir(base) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            path = f"{directory}/{entry.name}" if directory else entry.name
            excluded, info = matcher.excludes_in_walk(path, parent)
            is_dir = entry.is_dir(follow_symlinks=False)
            if excluded:
                if is_dir and matcher.has_exclusions and matcher.may_reinclude_below(path):
                    yield from walk(path, info)
                continue
            yield path
            if is_dir:
                yield from walk(path, info)

    yield from walk("", None)


def pack(context: Path, dockerfile: str, limit: int) -> PackedContext:
    """The context as a ``.tar.gz`` of at most ``limit`` bytes; raises ContextTooLarge."""
    if not context.is_dir():
        raise ContextError(f"the context {str(context)!r} is not a directory")
    matcher = matcher_for(context, dockerfile)
    file = tempfile.TemporaryFile()  # handed to the caller, who closes it
    members = 0
    skipped: list[str] = []
    try:
        bounded = _Bounded(file, limit)
        with (
            gzip.GzipFile(fileobj=bounded, mode="wb", compresslevel=6, mtime=0) as compressed,
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in included_paths(context, matcher):
                if _add(tar, context / path, path):
                    members += 1
                else:
                    skipped.append(path)
        return PackedContext(file, bounded.written, members, skipped)
    except BaseException:
        file.close()
        raise


def _add(tar: tarfile.TarFile, source: Path, name: str) -> bool:
    """One member, never following a link; False for what a context cannot hold."""
    mode = source.lstat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        return False
    info = tar.gettarinfo(str(source), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isreg():
        # O_NOFOLLOW: a file swapped for a link since the walk is refused, not followed.
        descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(descriptor, "rb") as content:
            tar.addfile(info, content)
    else:
        tar.addfile(info)
    return True
