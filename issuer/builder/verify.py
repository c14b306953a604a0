"""Verifying a subject token as RFC 8725 asks, against configured issuers only.

The order matters and is the reason this module exists:

1. The header's ``alg`` must be one the configuration lists (``none`` and ``HS*`` never are);
   the key is then used only with that algorithm, and must be of the matching type. A
   ``crit`` header is refused (this service understands no extension), so is a registered
   header parameter of the wrong type; unknown ones are ignored (RFC 7515).
2. The unverified payload's ``iss`` is used for one thing: to pick among the *configured*
   issuers. An issuer not configured is refused before any network request. ``jku``,
   ``x5u``, ``jwk`` and ``x5c`` headers are never read (a header holding a whole key or
   certificate chain is still a JWS: it is verified, with the configured key, like any).
3. The key is the configured issuer's key with the header's ``kid`` (see :mod:`.jwks`).
4. Only after the signature verifies are the claims trusted: ``aud`` must be this service's
   audience, ``exp`` / ``nbf`` / ``iat`` hold within the leeway, the token lives no longer
   than ``max_lifetime`` from ``iat``, ``jti`` is present, and the identity claims are what
   GitHub would sign (:mod:`.identity`).

Claiming the ``jti`` (once, ``SET NX``, until ``exp`` plus the leeway) is a separate step,
:meth:`TokenVerifier.claim_jti`, so that the caller decides when a token counts as used.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import ECKey, Key, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.jwt import JWTClaimsRegistry

from issuer.builder import errors
from issuer.builder.identity import check_identity
from issuer.builder.jwks import IssuerKeys, IssuerUnavailable
from issuer.store import Store

MAX_TOKEN = 16 * 1024
MAX_KID = 256
MAX_JTI = 256
DEFAULT_MAX_LIFETIME = 3600
_CURVES = {"ES256": "P-256", "ES384": "P-384"}


def _registry(algorithms: list[str] | None = None) -> JWSRegistry:
    """joserfc's registry, but reading a header as RFC 7515 does: unknown parameters are
    ignored rather than failing the signature, and a header may be as long as the token (the
    default 512 bytes made a token with a ``jwk`` or ``x5c`` header "not a JWS")."""
    registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
    registry.max_header_length = MAX_TOKEN
    return registry


_REGISTRY = _registry()


@dataclass(frozen=True)
class VerifiedToken:
    """A token whose signature, issuer, audience and times were checked."""

    issuer: str
    claims: Mapping[str, Any]
    jti: str
    expires_at: int

    def claim(self, name: str) -> str | None:
        """A claim as the string GitHub-style tokens carry, or None if absent or not a string."""
        value = self.claims.get(name)
        return value if isinstance(value, str) else None


def key_fits(key: Key, alg: str) -> bool:
    """True if ``key`` can verify ``alg``: its type, its curve, and its own ``alg`` if it names
    one (a key published for RS256 is not used for PS256)."""
    named = key.alg
    if named is not None and named != alg:
        return False
    if alg.startswith(("RS", "PS")):
        return isinstance(key, RSAKey)
    if alg in _CURVES:
        return isinstance(key, ECKey) and key.get("crv") == _CURVES[alg]
    return False


class TokenVerifier:
    def __init__(
        self,
        keys: IssuerKeys,
        store: Store,
        *,
        audience: str,
        algorithms: tuple[str, ...],
        leeway: int,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._store = store
        self._audience = audience
        self._algorithms = algorithms
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._clock = clock

    async def verify(self, token: str) -> VerifiedToken:
        """The verified token; raises :class:`errors.Refused` naming what is wrong."""
        if not token or len(token) > MAX_TOKEN or token.count(".") != 2:
            raise errors.TOKEN_MALFORMED.error()
        try:
            obj = jws.extract_compact(token.encode("ascii"), registry=_REGISTRY)
            header = obj.headers()
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise errors.TOKEN_MALFORMED.error() from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise errors.ALG_REFUSED.error("accepted: " + ", ".join(self._algorithms))
        kid = header.get("kid")
        if kid is None:
            raise errors.KID_MISSING.error()
        if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID or not kid.isprintable():
            raise errors.KID_MALFORMED.error()
        _check_header(header)
        unverified = _json_object(obj.payload)
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not self._keys.trusts(issuer):
            raise errors.ISSUER_UNTRUSTED.error()
        try:
            key = await self._keys.key(issuer, kid)
        except IssuerUnavailable:
            raise errors.ISSUER_UNAVAILABLE.error() from None
        if key is None:
            raise errors.KID_UNKNOWN.error()
        if not key_fits(key, alg):
            raise errors.KEY_MISMATCH.error()
        try:
            valid = jws.validate_compact(obj, key, registry=_registry([alg]))
        except (JoseError, ValueError, TypeError):
            valid = False
        if not valid:
            raise errors.SIGNATURE_INVALID.error()
        claims = unverified  # the bytes just verified
        self._check_audience(claims.get("aud"))
        self._check_times(claims)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI:
            raise errors.CLAIM_INVALID.error("jti must be a string of 1 to 256 characters")
        check_identity(claims)
        return VerifiedToken(issuer, claims, jti, int(claims["exp"]))

    def _check_audience(self, aud: object) -> None:
        if aud is None:
            raise errors.CLAIM_MISSING.error("aud")
        if isinstance(aud, list) and len(aud) == 1:
            aud = aud[0]
        if aud != self._audience:
            raise errors.AUDIENCE_MISMATCH.error()

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        registry = JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=self._leeway,
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(dict(claims))
        except MissingClaimError as error:
            raise errors.CLAIM_MISSING.error(error.claim) from None
        except ExpiredTokenError:
            raise errors.EXPIRED.error() from None
        except ClaimError as error:
            value = claims.get(error.claim)
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if error.claim == "nbf" and numeric:
                raise errors.NOT_YET_VALID.error() from None
            if error.claim == "iat" and numeric:
                raise errors.ISSUED_IN_FUTURE.error() from None
            raise errors.CLAIM_INVALID.error(f"{error.claim} is malformed") from None
        if claims["exp"] - claims["iat"] > self._max_lifetime:
            raise errors.LIFETIME_TOO_LONG.error(f"at most {self._max_lifetime} seconds")

    def _jti_key(self, token: VerifiedToken) -> str:
        digest = hashlib.sha256(f"{token.issuer}\n{token.jti}".encode()).hexdigest()
        return f"builder:jti:{digest}"

    async def claim_jti(self, token: VerifiedToken) -> None:
        """Mark the token used, across replicas; raises REPLAYED if it already was. Kept until
        ``exp`` plus the leeway, and never longer than a token may live."""
        longest = self._max_lifetime + 2 * self._leeway
        ttl = min(longest, max(1, token.expires_at + self._leeway - int(self._clock())))
        if not await self._store.set(self._jti_key(token), b"1", ttl=ttl, only_if_absent=True):
            raise errors.REPLAYED.error()

    async def release_jti(self, token: VerifiedToken) -> None:
        """Undo :meth:`claim_jti` when the exchange gave nothing (e.g. the builder limit)."""
        await self._store.delete(self._jti_key(token))


def _check_header(header: Mapping[str, Any]) -> None:
    """Refuse ``crit`` (RFC 7515 section 4.1.11: an extension marked critical that the
    recipient does not understand makes the JWS invalid; this service understands none) and
    registered parameters of the wrong type, each with its own reason."""
    if "crit" in header:
        raise errors.CRIT_UNSUPPORTED.error()
    try:
        _REGISTRY.check_header(dict(header))
    except JoseError as error:
        raise errors.HEADER_MALFORMED.error(error.description or error.error) from None


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.PAYLOAD_MALFORMED.error() from None
    if not isinstance(value, dict):
        raise errors.PAYLOAD_MALFORMED.error()
    return value
