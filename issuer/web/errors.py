"""The errors a caller of the issuer can see: a code from API.md, a status, a reason to act on."""

from __future__ import annotations


class ApiError(Exception):
    """Rendered as ``{"error": code, "error_description": description}`` with ``status``."""

    def __init__(
        self, status: int, code: str, description: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.retry_after = retry_after


def invalid_request(description: str) -> ApiError:
    return ApiError(400, "invalid_request", description)
