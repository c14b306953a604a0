"""The errors a caller of the issuer can see: a code from API.md, a status, a reason to act on."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """Rendered as ``{"error": code, "error_description": description}`` with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        description: str,
        *,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.headers = dict(headers or {})


def invalid_request(description: str) -> ApiError:
    return ApiError(400, "invalid_request", description)
