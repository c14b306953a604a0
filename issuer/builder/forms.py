"""Form-encoded request bodies (RFC 6749 appendix B), read strictly."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request

from issuer.builder import errors
from issuer.web.errors import ApiError

MAX_FORM = 16 * 1024


async def read_form(request: Request, limit: int = MAX_FORM) -> dict[str, str]:
    """The body's parameters; refuses another media type, bad encoding and a repeated
    parameter (RFC 6749 section 3.2: parameters must not appear more than once)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise errors.FORM_REQUIRED.error()
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, "request_too_large", f"the body must be at most {limit} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise errors.FORM_MALFORMED.error() from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise errors.PARAMETER_REPEATED.error(name)
        form[name] = value
    return form


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """HTTP Basic credentials (RFC 7617; RFC 6749 section 2.3.1 form-encodes both parts)."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return unquote(user), unquote(password)
