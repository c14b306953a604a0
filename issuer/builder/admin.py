"""The admin API's guard: a bearer token compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from issuer.builder import errors


def require_admin(request: Request, admin_token: str | None) -> None:
    """Raise unless the request carries the admin token. Both sides are hashed first so
    that the comparison takes the same time whatever the presented token's length."""
    if admin_token is None:
        raise errors.ADMIN_OFF.error()
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise errors.ADMIN_TOKEN.error()
    expected = hashlib.sha256(admin_token.encode()).digest()
    given = hashlib.sha256(presented.strip().encode()).digest()
    if not hmac.compare_digest(expected, given):
        raise errors.ADMIN_TOKEN.error()
