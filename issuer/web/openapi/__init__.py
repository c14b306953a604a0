"""The OpenAPI 3.1 documents of the services' HTTP APIs, shipped in this package.

Each document is ``NAME.json`` beside this module (``issuer.json``; a service adds its own,
e.g. ``builder.json``) and is served as prepared bytes by :func:`openapi_endpoint`::

    Route("/openapi.json", openapi_endpoint("builder"), methods=["GET"])

``tests/web`` runs schemathesis against each live service with its document.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response


@functools.cache
def document_bytes(name: str) -> bytes:
    """The document ``NAME.json``, compact."""
    raw = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.dumps(json.loads(raw), separators=(",", ":")).encode()


def document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(document_bytes(name))
    return loaded


def openapi_endpoint(name: str) -> Callable[[Request], Awaitable[Response]]:
    """A route endpoint serving the document ``NAME.json``."""
    body = document_bytes(name)

    async def serve_document(request: Request) -> Response:
        return Response(
            body, media_type="application/json", headers={"Cache-Control": "public, max-age=300"}
        )

    return serve_document
