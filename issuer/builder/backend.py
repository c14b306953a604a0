"""The interface between the exchange and whatever runs builds.

A backend starts one builder per exchange and tells the service when a builder has stopped
(released, expired, crashed, or stopped at shutdown), after its scratch space is gone.
``ephemeral`` and ``cache`` are the backend's promise about each builder it starts: the
exchange refuses to hand a pull_request token a builder that is not ephemeral or that has a
cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

STOP_RELEASED = "released"
STOP_EXPIRED = "expired"
STOP_CRASHED = "crashed"
STOP_SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class BuilderSpec:
    """What the exchange asks for."""

    id: str
    project: str
    expires_at: int
    credential: str
    """The builder's secret for introspection and release calls (RFC 7662 client auth)."""
    service_url: str
    """Where the builder reaches the service (``/introspect``, ``/builders/{id}/release``)."""
    build_timeout: int
    push: str | None = None
    """The registry repository the relationship lets this builder's images go to."""
    push_tag: str | None = None
    """The tag, made from the token's claims (never the build's choice)."""
    egress: bool = False
    """The build's steps may reach the internet (never the builder host's networks)."""


@dataclass(frozen=True)
class Builder:
    """What the exchange hands out (API.md section 2: ``builder``)."""

    id: str
    endpoint: str
    ephemeral: bool
    cache: bool
    expires_at: int

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "ephemeral": self.ephemeral,
            "cache": self.cache,
            "expires_at": self.expires_at,
        }


OnStopped = Callable[[str, str], Awaitable[None]]
"""Called with the builder id and a ``STOP_*`` reason once a builder is gone."""


class BuilderBackend(Protocol):
    name: str

    async def start(self, spec: BuilderSpec) -> Builder:
        """Start a builder; raises BackendError if it cannot."""

    async def stop(self, builder_id: str) -> None:
        """Stop a builder now (idempotent); ``on_stopped`` follows."""

    async def close(self) -> None:
        """Stop every builder this backend started."""


class BackendError(Exception):
    """A builder could not be started."""
