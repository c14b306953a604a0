"""The keys of the trusted issuers: discovery and JWKS, fetched only from configured URLs.

Nothing here ever reads a URL from a token. For each configured issuer the discovery
document is fetched from ``ISSUER/.well-known/openid-configuration``; it must name that very
issuer, and its ``jwks_uri`` gives the key set. The key set is cached in the store (shared by
every replica) for as long as the issuer's ``Cache-Control`` allows (``max-age`` less any
``Age``), never longer than ``cache_seconds`` and never shorter than
:data:`MIN_CACHE_SECONDS`. That is how a key the issuer retired (say after a compromise)
stops being trusted: once the cached set is older than its ``max-age`` it is fetched again,
and the dropped kid is no longer in it. A kid missing from the cached set causes at most one
refetch per issuer per :data:`REFRESH_INTERVAL` across all replicas (a ``SET NX`` lease), so
a flood of made-up kids costs the issuer nothing. A failed fetch is remembered for
:data:`FAILURE_BACKOFF` seconds, so an unreachable issuer is not hammered either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from issuer.store import Store

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 60
FAILURE_BACKOFF = 10
MIN_CACHE_SECONDS = 10
"""The shortest a key set is cached, whatever the issuer asks (``no-store``, ``max-age=0``):
otherwise every token naming the issuer, forged or not, would cost it a fetch."""
MAX_DOCUMENT = 256 * 1024
_KEY_TYPES: dict[str, type[RSAKey] | type[ECKey] | type[OKPKey]] = {
    "RSA": RSAKey,
    "EC": ECKey,
    "OKP": OKPKey,
}


class IssuerUnavailable(Exception):
    """The issuer's discovery document or JWKS could not be fetched or made no sense."""


def _tag(issuer: str) -> str:
    return hashlib.sha256(issuer.encode()).hexdigest()[:32]


def freshness(headers: httpx.Headers, ceiling: int) -> int:
    """Seconds a response may be cached (RFC 9111): its ``max-age`` less its ``Age``, 0 for
    ``no-store`` / ``no-cache`` or a malformed ``max-age``, ``ceiling`` without one; then
    bounded to ``MIN_CACHE_SECONDS..ceiling``."""
    directives: dict[str, str] = {}
    for part in ",".join(headers.get_list("cache-control")).split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        lifetime = 0
    elif "max-age" in directives:
        max_age = directives["max-age"]
        lifetime = int(max_age) if max_age.isascii() and max_age.isdigit() else 0
        age = headers.get("age", "").strip()
        if age.isascii() and age.isdigit():
            lifetime -= int(age)
    else:
        lifetime = ceiling
    return max(MIN_CACHE_SECONDS, min(ceiling, lifetime))


def parse_key_set(jwks: Any) -> dict[str, Key]:
    """The usable signing keys of a JWKS by kid. Keys without a kid, private keys, keys for
    encryption and keys of unknown types are left out rather than failing the whole set."""
    keys: dict[str, Key] = {}
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list):
        raise IssuerUnavailable("the JWKS has no keys list")
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid, kty = entry.get("kid"), entry.get("kty")
        if not isinstance(kid, str) or kid in keys or entry.get("use", "sig") != "sig":
            continue
        if kty not in _KEY_TYPES or "d" in entry:
            continue
        try:
            keys[kid] = _KEY_TYPES[kty].import_key(entry)
        except (JoseError, ValueError, TypeError, KeyError):
            log.warning("skipped a malformed key in the JWKS")
    return keys


class IssuerKeys:
    """Keys of the configured issuers, cached in the store."""

    def __init__(
        self,
        store: Store,
        http: httpx.AsyncClient,
        trusted: tuple[str, ...],
        *,
        cache_seconds: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._http = http
        self._trusted = trusted
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._parsed: dict[bytes, dict[str, Key]] = {}

    def trusts(self, issuer: str) -> bool:
        return issuer in self._trusted

    async def key(self, issuer: str, kid: str) -> Key | None:
        """The key ``kid`` of the trusted ``issuer``, or None when its JWKS (refreshed if
        allowed) has none; raises IssuerUnavailable."""
        if not self.trusts(issuer):
            raise ValueError("not a trusted issuer")  # callers check first; never fetch
        raw = await self._fresh(issuer)
        fetched_now = False
        if raw is None:
            raw = await self._fetch(issuer)
            fetched_now = True
        keys = self._keys(raw)
        if kid in keys:
            return keys[kid]
        if fetched_now:
            return None
        lease = f"builder:jwks-refresh:{_tag(issuer)}"
        if not await self._store.set(lease, b"1", ttl=REFRESH_INTERVAL, only_if_absent=True):
            return None
        log.info("unknown kid for %s: refreshing its JWKS", issuer)
        return self._keys(await self._fetch(issuer)).get(kid)

    async def _fresh(self, issuer: str) -> bytes | None:
        """The cached key set while it is fresh, as stored (``{"fresh_until", "jwks"}``)."""
        raw = await self._store.get(self._cache_key(issuer))
        if raw is None:
            return None
        try:
            fresh_until = json.loads(raw)["fresh_until"]
        except (ValueError, TypeError, KeyError):
            return None  # a record of an older version: fetch again
        if not isinstance(fresh_until, int | float) or fresh_until <= self._clock():
            return None
        return raw

    def _keys(self, raw: bytes) -> dict[str, Key]:
        keys = self._parsed.get(raw)
        if keys is None:
            keys = parse_key_set(json.loads(raw)["jwks"])
            if len(self._parsed) > 16:
                self._parsed.clear()
            self._parsed[raw] = keys
        return keys

    def _cache_key(self, issuer: str) -> str:
        return f"builder:jwks:{_tag(issuer)}"

    async def _fetch(self, issuer: str) -> bytes:
        """Fetch discovery and JWKS for ``issuer`` and cache the JWKS."""
        down = f"builder:jwks-down:{_tag(issuer)}"
        if await self._store.get(down) is not None:
            raise IssuerUnavailable(f"{issuer} failed recently")
        try:
            discovery = await self._document(
                issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            if not isinstance(discovery, dict) or discovery.get("issuer") != issuer:
                raise IssuerUnavailable("the discovery document names another issuer")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not _acceptable_jwks_uri(issuer, jwks_uri):
                raise IssuerUnavailable("the discovery document has no acceptable jwks_uri")
            jwks, headers = await self._document_with_headers(jwks_uri)
            parse_key_set(jwks)  # refuse nonsense before caching it
        except IssuerUnavailable as error:
            log.warning("keys of %s unavailable: %s", issuer, error)
            await self._store.set(down, b"1", ttl=FAILURE_BACKOFF)
            raise
        lifetime = freshness(headers, self._cache_seconds)
        record = {"fresh_until": self._clock() + lifetime, "jwks": jwks}
        raw = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
        await self._store.set(self._cache_key(issuer), raw, ttl=lifetime)
        return raw

    async def _document(self, url: str) -> Any:
        return (await self._document_with_headers(url))[0]

    async def _document_with_headers(self, url: str) -> tuple[Any, httpx.Headers]:
        try:
            async with self._http.stream(
                "GET", url, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise IssuerUnavailable(f"{url} answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_DOCUMENT:
                        raise IssuerUnavailable(f"{url} answered more than {MAX_DOCUMENT} bytes")
                headers = response.headers
        except httpx.HTTPError as error:
            raise IssuerUnavailable(f"{url}: {type(error).__name__}") from None
        try:
            return json.loads(body), headers
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise IssuerUnavailable(f"{url} answered something other than JSON") from None


def _acceptable_jwks_uri(issuer: str, jwks_uri: str) -> bool:
    """An absolute URL; HTTPS unless the issuer itself is served over plain HTTP (loopback
    demos and tests)."""
    parts = urlsplit(jwks_uri)
    if not parts.netloc or parts.scheme not in ("http", "https"):
        return False
    return parts.scheme == "https" or urlsplit(issuer).scheme == "http"
