"""Which GitHub requests go first when points are short (the priorities only; the shared
budget that honours them is drawn in the client)."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator
from contextvars import ContextVar


class Priority(enum.IntEnum):
    WAITING = 0  # a run with an exchange waiting
    FINISHED = 1  # a run whose job just finished
    IDLE = 2  # the rest


PriorityOf = Callable[[], Priority]
_current: ContextVar[PriorityOf | None] = ContextVar("github_priority", default=None)


@contextlib.contextmanager
def paced_as(priority: Priority | PriorityOf) -> Iterator[None]:
    """Requests made inside the block draw at ``priority`` (a callable: asked at each draw)."""
    of = priority if callable(priority) else (lambda: priority)
    token = _current.set(of)
    try:
        yield
    finally:
        _current.reset(token)


def current_priority() -> Priority:
    """Outside any :func:`paced_as`: WAITING (a claim or an exchange in hand)."""
    of = _current.get()
    return Priority.WAITING if of is None else of()
