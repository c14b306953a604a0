"""Answers kept at rest sealed under a secret only the client that asked holds.

Two answers are kept so that a client's retry gets the same answer again: a claim's token
(its holder retries the exchange after the answer was lost on the way) and the answer to a
claim made with an ``Idempotency-Key`` (the claim is retried). The store holds only the
SHA-256 of the client's secret (the claim id, the idempotency key), and the answer sealed
with AES-256-GCM under a key derived from that secret (HKDF-SHA256): Redis alone, or a copy
of it, holds neither a usable token nor a claim id.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE_BYTES = 12
_INFO = b"fork-oidc-issuer: an answer at rest, sealed under the client's secret, v1"


def _cipher(secret: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return AESGCM(key)


def seal(secret: str, plain: bytes, *, bound_to: str) -> bytes:
    """``plain`` sealed under ``secret``; ``bound_to`` (the digest the sealed value is kept
    under) is associated data, so a sealed value moved to another key does not open."""
    nonce = os.urandom(_NONCE_BYTES)
    return _VERSION + nonce + _cipher(secret).encrypt(nonce, plain, bound_to.encode())


def unseal(secret: str, sealed: bytes, *, bound_to: str) -> bytes | None:
    """What :func:`seal` sealed with the same secret and binding, else None."""
    if not sealed.startswith(_VERSION) or len(sealed) <= 1 + _NONCE_BYTES:
        return None
    nonce, box = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
    try:
        return _cipher(secret).decrypt(nonce, box, bound_to.encode())
    except InvalidTag:
        return None
