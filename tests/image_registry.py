"""The test session's image registry (see the ``image_registry`` fixture)."""

from __future__ import annotations

from issuer.builder.localregistry import LocalRegistry


class ImageRegistry:
    """Debian's docker-registry on loopback, holding the busybox base image (made here)."""

    def __init__(self, registry: LocalRegistry, base: str) -> None:
        self.host = registry.host
        self.port = registry.port
        self.base = base
