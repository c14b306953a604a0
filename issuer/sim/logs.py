"""The job log as GitHub serves it: UTF-8 BOM, every entry stamped with 7-digit-fraction UTC."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime

from issuer.sim.runner import LogEntry

_TICKS_PER_SECOND = 10_000_000


def log_timestamp(when: float) -> str:
    """`2025-12-30T06:02:51.7445229Z`: .NET's round-trip format, as the runner writes it."""
    ticks = round(when * _TICKS_PER_SECOND)
    seconds, fraction = divmod(ticks, _TICKS_PER_SECOND)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{fraction:07d}Z"


def api_timestamp(when: float) -> str:
    """`2025-12-30T06:02:51Z`: the REST API's timestamps, whole seconds."""
    return _api_second(int(when))


@functools.lru_cache(maxsize=4096)
def _api_second(second: int) -> str:
    # Every payload carries several timestamps, mostly of the same few seconds: formatting
    # them took a tenth of the simulator's CPU under load.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_log(entries: Iterable[LogEntry]) -> str:
    """The whole log text; continuation lines of a multi-line entry carry no timestamp."""
    return "\ufeff" + "".join(f"{log_timestamp(e.timestamp)} {e.text}\n" for e in entries)
