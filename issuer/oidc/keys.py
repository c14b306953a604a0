"""The signing keyring: keys generated here, wrapped at rest, rotated with overlap, published.

A private key exists unwrapped only in the memory of a replica. At rest (in the store) it
is AES-256-GCM encrypted under the key-encryption key, with its kid bound as associated
data, so a wrapped key cannot be swapped in under another kid. No endpoint serves it.

The lifecycle is ``next → active → retiring → gone``, and a key's state is derived from
two instants written when the key is added, not from writes at each transition:

- ``activates``: when it starts signing. A new key is written ``publish_lead`` (one JWKS
  cache lifetime plus one refresh interval) before that, so every verifier's cached JWKS
  already holds it when the first token it signed arrives.
- ``superseded``: when its successor activates (unset while it has none). It stays
  published for ``retention`` after that (the token lifetime, plus one JWKS cache lifetime,
  plus one refresh interval), then it is gone and pruned at the next write.

Because the states follow from the clock, every replica holding the same record switches
signing keys at the same instant without a write. Writes (a rotation, a retirement) are a
compare-and-set on the one record, so replicas racing to rotate produce one rotation.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey, RSAKey

from issuer.store import Store

log = logging.getLogger(__name__)

KEYRING_KEY = "keyring"  # in Redis: issuer:keyring, under the issuer's prefix
RSA_BITS = 2048
ALGORITHMS = ("RS256", "ES256")
RSA_SIZES = (2048, 3072)
JWKS_MAX_AGE = 300
"""Seconds a verifier may cache the JWKS and discovery (their ``Cache-Control`` max-age)."""
REFRESH_SECONDS = 5.0
"""How often a replica re-reads the keyring record: the delay before it sees a change."""
NEXT, ACTIVE, RETIRING, GONE = "next", "active", "retiring", "gone"

SigningJwk = RSAKey | ECKey
Clock = Callable[[], float]


class KeyUnwrapError(Exception):
    """A wrapped key did not decrypt: the key-encryption key is wrong or the data was altered."""


class UnknownKey(Exception):
    """No key in the keyring has this kid."""


class NoKeys(Exception):
    """The store holds no keyring yet."""


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
class KeyPolicy:
    """How keys are made and how long each state lasts. Times in seconds."""

    alg: str = "RS256"
    rsa_bits: int = RSA_BITS
    rotation_period: float = 14 * 86400
    token_ttl: float = 300
    jwks_max_age: float = JWKS_MAX_AGE
    refresh_interval: float = REFRESH_SECONDS

    def __post_init__(self) -> None:
        if self.alg not in ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {self.alg}")
        if self.rsa_bits not in RSA_SIZES:
            raise ValueError(f"unsupported RSA key size {self.rsa_bits}")

    @property
    def publish_lead(self) -> float:
        """How long a new key is published before it signs."""
        return self.jwks_max_age + self.refresh_interval

    @property
    def retention(self) -> float:
        """How long a superseded key stays published: its last token, then any cached JWKS."""
        return self.token_ttl + self.jwks_max_age + self.refresh_interval


def generate(alg: str, rsa_bits: int = RSA_BITS) -> SigningJwk:
    if alg == "ES256":
        return ECKey.generate_key("P-256", private=True)
    return RSAKey.generate_key(rsa_bits, private=True)


def _import(alg: str, pem: bytes) -> SigningJwk:
    if alg == "ES256":
        return ECKey.import_key(pem)
    return RSAKey.import_key(pem)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: SigningJwk = field(repr=False)
    created: float = 0
    activates: float = 0
    superseded: float | None = None

    def state(self, now: float, retention: float) -> str:
        if now < self.activates:
            return NEXT
        if self.superseded is None or now < self.superseded:
            return ACTIVE
        if now < self.superseded + retention:
            return RETIRING
        return GONE

    def public_jwk(self) -> dict[str, object]:
        jwk: dict[str, object] = dict(self.key.as_dict(private=False))
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def __repr__(self) -> str:  # never the key material
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r}, activates={self.activates!r})"


@dataclass(frozen=True)
class _Entry:
    """One key as stored: public facts in clear, the private key wrapped."""

    kid: str
    alg: str
    created: float
    activates: float
    superseded: float | None
    wrapped: str = field(repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "created": self.created,
            "activates": self.activates,
            "superseded": self.superseded,
            "wrapped": self.wrapped,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Entry:
        superseded = raw.get("superseded")
        created = float(raw["created"])
        return cls(
            kid=str(raw["kid"]),
            alg=str(raw["alg"]),
            created=created,
            activates=float(raw.get("activates", created)),
            superseded=None if superseded is None else float(superseded),
            wrapped=str(raw["wrapped"]),
        )


def _new_entry(kek: bytes, policy: KeyPolicy, now: float, activates: float) -> _Entry:
    key = generate(policy.alg, policy.rsa_bits)
    kid = key.thumbprint()
    wrapped = wrap(kek, kid, key.as_pem(private=True))
    return _Entry(kid, policy.alg, now, activates, None, wrapped)


@dataclass(frozen=True)
class _Record:
    """The stored keyring: a version counted up by every write, and the keys by activation."""

    version: int
    entries: tuple[_Entry, ...]

    def encode(self) -> bytes:
        body = {"version": self.version, "keys": [e.as_json() for e in self.entries]}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _Record:
        body = json.loads(raw)
        entries = (_Entry.from_json(e) for e in body["keys"])
        return cls(int(body.get("version", 0)), tuple(sorted(entries, key=_order)))

    def _state(self, entry: _Entry, now: float, policy: KeyPolicy) -> str:
        probe = SigningKey(entry.kid, entry.alg, _NO_KEY, 0, entry.activates, entry.superseded)
        return probe.state(now, policy.retention)

    def next_version(self, entries: list[_Entry], now: float, policy: KeyPolicy) -> _Record:
        live = [e for e in entries if self._state(e, now, policy) != GONE]
        return _Record(self.version + 1, tuple(sorted(live, key=_order)))

    def find(self, state: str, now: float, policy: KeyPolicy) -> _Entry | None:
        return next((e for e in self.entries if self._state(e, now, policy) == state), None)


_NO_KEY: Any = None


def _order(entry: _Entry) -> tuple[float, float]:
    return (entry.activates, entry.created)


def rotated(record: _Record, kek: bytes, policy: KeyPolicy, now: float) -> _Record | None:
    """The record with a ``next`` key added, or None when one is already on its way."""
    if record.find(NEXT, now, policy) is not None:
        return None
    new = _new_entry(kek, policy, now, now + policy.publish_lead)
    entries = [
        replace(e, superseded=new.activates) if e.superseded is None else e for e in record.entries
    ]
    return record.next_version([*entries, new], now, policy)


def retired(record: _Record, kid: str, kek: bytes, policy: KeyPolicy, now: float) -> _Record:
    """The record without ``kid``, at once. Retiring the active key makes the ``next`` key
    (or, without one, a new key) active now: a compromised key must not sign another token,
    and a verifier meeting the new kid refetches the JWKS."""
    gone = next((e for e in record.entries if e.kid == kid), None)
    if gone is None:
        raise UnknownKey(kid)
    state = record._state(gone, now, policy)
    entries = [e for e in record.entries if e.kid != kid]
    if state == NEXT:
        entries = [
            replace(e, superseded=None) if e.superseded == gone.activates else e for e in entries
        ]
    elif state == ACTIVE:
        successor = record.find(NEXT, now, policy)
        if successor is not None:
            entries = [replace(e, activates=now) if e is successor else e for e in entries]
        else:
            entries.append(_new_entry(kek, policy, now, now))
    return record.next_version(entries, now, policy)


def _rotation_due(record: _Record, policy: KeyPolicy, now: float) -> bool:
    """Due when the active key has signed for ``rotation_period`` less the publish lead, so
    that keys change every ``rotation_period``."""
    if record.find(NEXT, now, policy) is not None:
        return False
    active = record.find(ACTIVE, now, policy)
    return active is None or now >= active.activates + policy.rotation_period - policy.publish_lead


class Keyring:
    """A snapshot of the keys this issuer signs with and publishes, at one moment.

    ``keys`` are the published ones (next, active, retiring), by activation time.
    """

    def __init__(self, keys: list[SigningKey], policy: KeyPolicy, now: float) -> None:
        self.policy = policy
        self.published_at = now
        self.all_keys = keys
        self.keys = [k for k in keys if k.state(now, policy.retention) != GONE]
        if not any(self.state(k, now) == ACTIVE for k in self.keys):
            raise ValueError("a keyring needs an active key")
        self.jwks_bytes = json.dumps(
            {"keys": [key.public_jwk() for key in self.keys]}, separators=(",", ":")
        ).encode()

    def state(self, key: SigningKey, now: float | None = None) -> str:
        return key.state(self.published_at if now is None else now, self.policy.retention)

    def active_at(self, now: float) -> SigningKey:
        """The key that signs at ``now``: the latest one whose activation has come."""
        for key in reversed(self.all_keys):
            if key.activates <= now and key.state(now, self.policy.retention) == ACTIVE:
                return key
        raise LookupError("no active key")  # a record written by this module always has one

    @property
    def active(self) -> SigningKey:
        return self.active_at(self.published_at)

    def view(self, now: float) -> tuple[tuple[str, str], ...]:
        """The keys' states at ``now``: when they differ, the snapshot is renewed."""
        return tuple((k.kid, k.state(now, self.policy.retention)) for k in self.all_keys)

    def at(self, now: float) -> Keyring:
        return Keyring(self.all_keys, self.policy, now)

    @classmethod
    async def load_or_create(
        cls, store: Store, kek: bytes, policy: KeyPolicy | None = None, now: float | None = None
    ) -> Keyring:
        """The stored keyring; on first start, a new key. Replicas racing here agree on one."""
        keys = Keys(store, kek, policy or KeyPolicy(), (lambda: now) if now is not None else None)
        await keys.load()
        return keys.keyring

    @classmethod
    def from_record(cls, record: _Record, kek: bytes, policy: KeyPolicy, now: float) -> Keyring:
        keys = [
            SigningKey(
                kid=e.kid,
                alg=e.alg,
                key=_import(e.alg, unwrap(kek, e.kid, e.wrapped)),
                created=e.created,
                activates=e.activates,
                superseded=e.superseded,
            )
            for e in record.entries
        ]
        return cls(keys, policy, now)

    def summary(self) -> list[dict[str, object]]:
        """What ``issuer keys list`` shows: nothing secret."""
        return [
            {
                "kid": k.kid,
                "alg": k.alg,
                "state": self.state(k),
                "created": int(k.created),
                "activated": int(k.activates),
                "retired": None if k.superseded is None else int(k.superseded),
            }
            for k in self.keys
        ]


class Keys:
    """One replica's hold on the shared keyring: loads it, follows it, rotates it.

    ``signing_key()`` is what the claim service signs with; ``keyring`` is the snapshot the
    JWKS is built from, replaced by :meth:`refresh` when the record or the view changes.
    """

    def __init__(
        self, store: Store, kek: bytes, policy: KeyPolicy, clock: Clock | None = None
    ) -> None:
        self._store = store
        self._kek = kek
        self.policy = policy
        self._clock: Clock = clock or time.time
        self._raw: bytes | None = None
        self._record: _Record | None = None
        self._keyring: Keyring | None = None

    @property
    def keyring(self) -> Keyring:
        assert self._keyring is not None, "load() first"
        return self._keyring

    def signing_key(self) -> SigningKey:
        return self.keyring.active_at(self._clock())

    async def load(self, *, create: bool = True) -> None:
        """Read the record, creating the first key if there is none (NoKeys without
        ``create``: an operator's command must not make keys as a side effect)."""
        raw = await self._store.get(KEYRING_KEY)
        if raw is None and not create:
            raise NoKeys("the store holds no keyring yet")
        if raw is None:
            now = self._clock()
            first = _Record(1, (_new_entry(self._kek, self.policy, now, now),))
            await self._store.compare_and_set(KEYRING_KEY, None, first.encode())
            raw = await self._store.get(KEYRING_KEY)
            assert raw is not None
        self._adopt(raw)

    def _adopt(self, raw: bytes) -> bool:
        """Take ``raw`` as the record; True if it or a key's state changed."""
        now = self._clock()
        if raw == self._raw and self._keyring is not None:
            if self._keyring.view(now) == self._keyring.view(self._keyring.published_at):
                return False
            self._keyring = self._keyring.at(now)
            return True
        record = _Record.decode(raw)
        self._keyring = Keyring.from_record(record, self._kek, self.policy, now)
        self._raw, self._record = raw, record
        return True

    async def refresh(self) -> bool:
        """Follow the store, rotating if a rotation is due. True if the keyring changed.

        Cheap when nothing changed: one read, a bytes comparison, no unwrapping."""
        raw = await self._store.get(KEYRING_KEY)
        if raw is None:  # the record vanished (a flushed store): start again
            await self.load()
            return True
        changed = self._adopt(raw)
        assert self._record is not None
        if _rotation_due(self._record, self.policy, self._clock()):
            await self.rotate()
            return True
        return changed

    async def rotate(self) -> str:
        """Add a ``next`` key (one across replicas); its kid, or the kid already on its way."""
        record = await self._write(lambda r, now: rotated(r, self._kek, self.policy, now))
        upcoming = record.find(NEXT, self._clock(), self.policy)
        assert upcoming is not None
        return upcoming.kid

    async def retire(self, kid: str) -> None:
        """Remove ``kid`` from the keyring now."""
        await self._write(lambda r, now: retired(r, kid, self._kek, self.policy, now))

    async def _write(self, change: Callable[[_Record, float], _Record | None]) -> _Record:
        """Apply ``change`` with a compare-and-set, re-reading and retrying on a lost race."""
        for _ in range(20):
            raw = await self._store.get(KEYRING_KEY)
            if raw is None:
                await self.load()
                continue
            current = _Record.decode(raw)
            new = change(current, self._clock())
            if new is None:
                self._adopt(raw)
                return current
            encoded = new.encode()
            if await self._store.compare_and_set(KEYRING_KEY, raw, encoded):
                log.info("keyring version %d written", new.version)
                self._adopt(encoded)
                return new
            await asyncio.sleep(0)
        raise RuntimeError("the keyring kept changing under this write")
