"""A GitHub App's own credential: the short-lived JWT that buys installation tokens.

GitHub checks the JWT as follows: RS256, ``iss`` the App's id, ``iat`` not in the future (we
backdate it 60 s for clock drift), ``exp`` at most 10 minutes after ``iat``. The private key
never leaves this object: not in a repr, an exception or a log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

JWT_BACKDATE = 60
JWT_LIFETIME = 540  # exp - iat = 600 s, GitHub's maximum
MIN_KEY_BITS = 2048


class AppKeyError(ValueError):
    """The text is not an RSA private key in PEM form (the message never quotes it)."""


def load_app_key(pem: str | bytes) -> RSAKey:
    """The App's RSA private key from PEM (PKCS#1 as GitHub hands it out, or PKCS#8)."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnicodeError):
        raise AppKeyError("is not an unencrypted PEM private key") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise AppKeyError("is not an RSA private key (GitHub Apps sign with RS256)")
    if private.key_size < MIN_KEY_BITS:
        raise AppKeyError(f"is an RSA key of {private.key_size} bits; at least 2048 needed")
    pem_bytes = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return RSAKey.import_key(pem_bytes)


class GitHubApp:
    """The App: its id and its signing key."""

    def __init__(
        self, app_id: int, private_key: RSAKey | str, *, clock: Callable[[], float] = time.time
    ) -> None:
        if app_id <= 0:
            raise ValueError("a GitHub App id is a positive number")
        self.app_id = app_id
        self._key = private_key if isinstance(private_key, RSAKey) else load_app_key(private_key)
        self._clock = clock

    @property
    def name(self) -> str:
        return f"app-{self.app_id}"

    def jwt(self) -> str:
        """A fresh App JWT (RS256), valid for 9 minutes from now."""
        now = int(self._clock())
        claims = {"iss": self.app_id, "iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME}
        return jwt.encode({"alg": "RS256", "typ": "JWT"}, claims, self._key)

    def __repr__(self) -> str:
        return f"GitHubApp({self.app_id})"
