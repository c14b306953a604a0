"""The channels through which a run shows challenge codes: completed jobs' logs (and, when an
operator turns it on, the web UI's live log in :mod:`issuer.github.live`).

What a challenge looks like, and which step of a job may print it, is the issuer's to say:
the log channel is handed a scanner factory and feeds it the log as it arrives, so a log is
never held whole in memory, and the scanning runs in a worker thread, off the event loop.
Annotations are not a channel: on GitHub-hosted runners they arrive with the job's
completion, no sooner than its log, and cannot be tied to the step that made them
(docs/threat-model.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from issuer.github.client import MAX_LOG_BYTES, GitHubClient, LogDownload
from issuer.github.facts import JobFacts


@dataclass(frozen=True)
class Sighting:
    """Where a challenge was seen."""

    job_id: int
    job_name: str
    channel: str
    runner_group_name: str | None


LOG = "log"


class Scan(Protocol):
    """Reads a log chunk by chunk; ``finish`` answers the codes that count, each with the line
    where it does."""

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> dict[str, int]: ...


ScanFactory = Callable[[JobFacts, frozenset[str]], Scan]


class LogState(Enum):
    READ = "read"
    NOT_READY = "not_ready"  # running, or completed moments ago and still being finalised
    TOO_LARGE = "too_large"  # past the cap: not scanned at all (its end could undo its start)


@dataclass(frozen=True)
class LogRead:
    state: LogState
    codes: frozenset[str] = frozenset()


_BATCH = 1024 * 1024  # bytes handed to the scanning thread at once


class LogChannel:
    """Completed jobs' logs: the documented way to read what a job printed."""

    name = LOG

    def __init__(
        self, github: GitHubClient, scanner: ScanFactory, *, max_bytes: int = MAX_LOG_BYTES
    ) -> None:
        self._github = github
        self._scanner = scanner
        self.max_bytes = max_bytes

    async def codes(self, repository: str, job: JobFacts, wanted: frozenset[str]) -> LogRead:
        """The ``wanted`` codes the client's own step printed in the job's log."""
        scan = self._scanner(job, wanted)
        batch: list[bytes] = []
        size = 0

        async def sink(chunk: bytes) -> None:
            nonlocal size
            batch.append(chunk)
            size += len(chunk)
            if size >= _BATCH:
                data = b"".join(batch)
                batch.clear()
                size = 0
                await asyncio.to_thread(scan.feed, data)

        outcome = await self._github.stream_log(repository, job.id, sink, self.max_bytes)
        if outcome is LogDownload.MISSING:
            return LogRead(LogState.NOT_READY)
        if outcome is LogDownload.TOO_LARGE:
            return LogRead(LogState.TOO_LARGE)
        rest = b"".join(batch)
        found = await asyncio.to_thread(_finish, scan, rest)
        return LogRead(LogState.READ, frozenset(found))


def _finish(scan: Scan, rest: bytes) -> dict[str, int]:
    if rest:
        scan.feed(rest)
    return scan.finish()
