"""The signing keyring: keys generated here, wrapped at rest, published as a JWKS.

A private key exists unwrapped only in the memory of a replica. At rest (in the store) it
is AES-256-GCM encrypted under the key-encryption key, with its kid bound as associated
data, so a wrapped key cannot be swapped in under another kid. No endpoint serves it.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import RSAKey

from issuer.store import Store

KEYRING_KEY = "issuer:keyring"
RSA_BITS = 2048


class KeyUnwrapError(Exception):
    """A wrapped key did not decrypt: the key-encryption key is wrong or the data was altered."""


def wrap(kek: bytes, kid: str, private_pem: bytes) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(kek).encrypt(nonce, private_pem, kid.encode())
    return base64.b64encode(nonce + sealed).decode()


def unwrap(kek: bytes, kid: str, wrapped: str) -> bytes:
    blob = base64.b64decode(wrapped)
    try:
        return AESGCM(kek).decrypt(blob[:12], blob[12:], kid.encode())
    except InvalidTag:
        raise KeyUnwrapError(f"cannot unwrap signing key {kid}") from None


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    state: str
    created: int
    key: RSAKey

    def public_jwk(self) -> dict[str, object]:
        jwk: dict[str, object] = dict(self.key.as_dict(private=False))
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def __repr__(self) -> str:  # never the key material
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r}, state={self.state!r})"


class Keyring:
    """The keys this issuer signs with and publishes. Loaded once per replica."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not any(key.state == "active" for key in keys):
            raise ValueError("a keyring needs an active key")
        self.keys = keys
        self.jwks_bytes = json.dumps(
            {"keys": [key.public_jwk() for key in keys]}, separators=(",", ":")
        ).encode()

    @property
    def active(self) -> SigningKey:
        return next(key for key in self.keys if key.state == "active")

    @classmethod
    async def load_or_create(cls, store: Store, kek: bytes) -> Keyring:
        """The stored keyring; on first start, a new key. Replicas racing here agree on one."""
        stored = await store.get(KEYRING_KEY)
        if stored is None:
            await store.set(KEYRING_KEY, _new_keyring_record(kek), only_if_absent=True)
            stored = await store.get(KEYRING_KEY)
            assert stored is not None
        return cls._from_record(json.loads(stored), kek)

    @classmethod
    def _from_record(cls, record: dict[str, list[dict[str, object]]], kek: bytes) -> Keyring:
        keys = []
        for entry in record["keys"]:
            kid = str(entry["kid"])
            pem = unwrap(kek, kid, str(entry["wrapped"]))
            keys.append(
                SigningKey(
                    kid=kid,
                    alg=str(entry["alg"]),
                    state=str(entry["state"]),
                    created=int(str(entry["created"])),
                    key=RSAKey.import_key(pem),
                )
            )
        return cls(keys)

    def summary(self) -> list[dict[str, object]]:
        """What ``issuer keys list`` shows: nothing secret."""
        return [
            {"kid": k.kid, "alg": k.alg, "state": k.state, "created": k.created} for k in self.keys
        ]


def _new_keyring_record(kek: bytes) -> bytes:
    key = RSAKey.generate_key(RSA_BITS, private=True)
    kid = key.thumbprint()
    entry = {
        "kid": kid,
        "alg": "RS256",
        "state": "active",
        "created": int(time.time()),
        "wrapped": wrap(kek, kid, key.as_pem(private=True)),
    }
    return json.dumps({"keys": [entry]}).encode()
