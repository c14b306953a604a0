"""Abuse controls on claims: which repositories may claim, and how fast (issue 7).

A claim costs no GitHub request, but every pending claim is looked at while it is being
exchanged, so claims are what an abuser would multiply. Three counters bound them, all in
the shared store so that every replica enforces the same budget:

- claims per client address per window (the socket peer; ``X-Forwarded-For`` is believed
  only from ``ISSUER_TRUSTED_PROXIES``; IPv6 clients count per /64, as one host gets one);
- claims per repository per window;
- claims per run and client address alive at once (created within the claim lifetime),
  across the run's attempts: the attempt is the caller's choice, so counting per attempt
  would let one run make unbounded claims by naming attempts that do not exist; and per
  address, so that no stranger can fill a run's cap and keep its own jobs' claims out.

Over a limit: 429 ``rate_limited`` with ``Retry-After``. Optional allow and deny lists of
repositories (exact ``OWNER/REPO`` or a ``*``/``?`` wildcard pattern, matched against the
whole name, case-insensitively; deny wins): 403 ``repository_not_allowed``.

The settings are read here, with the strictness of :mod:`issuer.oidc.config`, until they join
:class:`issuer.oidc.config.IssuerConfig`.
"""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from issuer.oidc.claims import ClaimRequest
from issuer.oidc.config import ConfigError
from issuer.oidc.metrics import CLAIMS_REFUSED
from issuer.store import Store, tagged
from issuer.web.errors import ApiError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CLAIMS_PER_ADDRESS = "ISSUER_CLAIMS_PER_ADDRESS"
CLAIMS_PER_REPOSITORY = "ISSUER_CLAIMS_PER_REPOSITORY"
RATE_WINDOW = "ISSUER_CLAIM_RATE_WINDOW"
CLAIMS_PER_RUN = "ISSUER_CLAIMS_PER_RUN"
TRUSTED_PROXIES = "ISSUER_TRUSTED_PROXIES"
REPOSITORY_ALLOW = "ISSUER_REPOSITORY_ALLOW"
REPOSITORY_DENY = "ISSUER_REPOSITORY_DENY"

_RULE = re.compile(r"^[A-Za-z0-9*?-]{1,39}/[A-Za-z0-9._*?-]{1,100}$")
_MAX_RULES = 1000


@dataclass(frozen=True)
class RepositoryRule:
    """An exact ``OWNER/REPO`` or a pattern: ``*`` is any run of characters and ``?`` one
    character, never crossing the ``/``; the whole name must match, whatever its case."""

    text: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> RepositoryRule:
        parts = []
        for char in text:
            if char == "*":
                parts.append("[^/]*")
            elif char == "?":
                parts.append("[^/]")
            else:
                parts.append(re.escape(char))
        return cls(text, re.compile("".join(parts), re.IGNORECASE))

    def matches(self, repository: str) -> bool:
        return self.pattern.fullmatch(repository) is not None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class AbuseConfig:
    claims_per_address: int = 60
    claims_per_repository: int = 600
    rate_window: int = 60
    claims_per_run: int = 100
    trusted_proxies: tuple[IPNetwork, ...] = ()
    repository_allow: tuple[RepositoryRule, ...] | None = None
    repository_deny: tuple[RepositoryRule, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AbuseConfig:
        """Build from ``ISSUER_*`` variables; raises ConfigError naming the first bad one."""
        allow = _rules(env, REPOSITORY_ALLOW)
        return cls(
            claims_per_address=_limit(env, CLAIMS_PER_ADDRESS, 60),
            claims_per_repository=_limit(env, CLAIMS_PER_REPOSITORY, 600),
            rate_window=_window(env, RATE_WINDOW, 60),
            claims_per_run=_limit(env, CLAIMS_PER_RUN, 100),
            trusted_proxies=_networks(env, TRUSTED_PROXIES),
            repository_allow=allow or None,
            repository_deny=_rules(env, REPOSITORY_DENY),
        )


def _limit(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) > 1_000_000:
        raise ConfigError(name, "must be a whole number between 0 (no limit) and 1000000")
    return int(raw)


def _window(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 86400:
        raise ConfigError(name, "must be a whole number of seconds between 1 and 86400")
    return int(raw)


def _items(env: Mapping[str, str], name: str) -> list[str]:
    items = [item.strip() for item in env.get(name, "").split(",") if item.strip()]
    if len(items) > _MAX_RULES:
        raise ConfigError(name, f"must have at most {_MAX_RULES} entries")
    return items


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    networks = []
    for item in _items(env, name):
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            raise ConfigError(
                name, f"{item[:60]!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def _rules(env: Mapping[str, str], name: str) -> tuple[RepositoryRule, ...]:
    rules = []
    for item in _items(env, name):
        if not _RULE.match(item):
            raise ConfigError(name, f"{item[:60]!r} is not OWNER/REPO (with * and ? as wildcards)")
        rules.append(RepositoryRule.parse(item))
    return tuple(rules)


def _bucket(address: IPAddress) -> str:
    """The counting unit of an address: itself for IPv4, its /64 for IPv6."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AbuseControls:
    """Decides whether one more claim may be made; raises ApiError 429 or 403 if not."""

    def __init__(
        self,
        config: AbuseConfig,
        store: Store,
        claim_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._store = store
        self._claim_ttl = claim_ttl
        self._clock = clock

    def client_address(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """Who is asking: the socket peer, or, when the peer is a trusted proxy, the
        right-most ``X-Forwarded-For`` hop that is not one (a client can write the left end
        of that header, but not what our own proxies appended)."""
        if peer is None:
            return "unknown"
        try:
            address: IPAddress = ipaddress.ip_address(peer)
        except ValueError:
            return peer[:64]
        if self._trusted(address):
            hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
            for hop in reversed(hops):
                try:
                    address = ipaddress.ip_address(hop)
                except ValueError:
                    break  # a malformed hop: believe no further than the last good one
                if not self._trusted(address):
                    break
        return _bucket(address)

    def _trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.config.trusted_proxies)

    def check_repository(self, repository: str) -> None:
        """403 unless the lists let ``repository`` claim."""
        config = self.config
        denied = any(rule.matches(repository) for rule in config.repository_deny)
        allowed = config.repository_allow is None or any(
            rule.matches(repository) for rule in config.repository_allow
        )
        if denied or not allowed:
            CLAIMS_REFUSED.labels("repository_not_allowed").inc()
            raise ApiError(
                403,
                "repository_not_allowed",
                f"this issuer does not issue tokens to runs of {repository}",
            )

    async def check_claim(self, address: str, request: ClaimRequest) -> None:
        """Count this claim against every limit; raises ApiError if one is exceeded."""
        self.check_repository(request.repository)
        repository = request.repository.lower()
        config = self.config
        await self._within_rate(
            f"address:{address}",
            config.claims_per_address,
            "address_rate",
            "too many claims from this client address",
        )
        await self._within_rate(
            f"repository:{repository}",
            config.claims_per_repository,
            "repository_rate",
            f"too many claims for {request.repository}",
        )
        await self._within_run_cap(address, request)

    async def _within_rate(self, subject: str, limit: int, reason: str, what: str) -> None:
        if limit == 0:
            return
        window = self.config.rate_window
        now = self._clock()
        index = int(now // window)
        ends = (index + 1) * window
        key = tagged(f"rate:{subject}", str(window), str(index))
        count = await self._store.incr(key, ttl=ends - now + 1)
        if count > limit:
            retry_after = max(1, math.ceil(ends - now))
            CLAIMS_REFUSED.labels(reason).inc()
            raise ApiError(
                429,
                "rate_limited",
                f"{what}: at most {limit} every {window} s; try again in {retry_after} s",
                retry_after=retry_after,
            )

    async def _within_run_cap(self, address: str, request: ClaimRequest) -> None:
        """At most ``claims_per_run`` claims of one run from one client address alive at once.

        Each claim adds a field (its expiry) to the run's hash before counting, and takes it
        back if the count is over: racing replicas may both refuse, never both accept."""
        cap = self.config.claims_per_run
        if cap == 0:
            return
        key = tagged(f"run:{request.repository.lower()}:{request.run_id}", "claims", address)
        now = self._clock()
        mine = secrets.token_hex(8)
        await self._store.hash_set(
            key, mine, str(now + self._claim_ttl).encode(), ttl=self._claim_ttl + 1
        )
        entries = await self._store.hash_get_all(key)
        expiries = {field: float(value) for field, value in entries.items()}
        gone = [field for field, expires in expiries.items() if expires <= now]
        if gone:
            await self._store.hash_delete(key, *gone)
        if len(expiries) - len(gone) <= cap:
            return
        await self._store.hash_delete(key, mine)
        # Room for this claim once all but cap - 1 of the others have expired.
        others = sorted(e for f, e in expiries.items() if e > now and f != mine)
        retry_after = max(1, math.ceil(others[len(others) - cap] - now))
        CLAIMS_REFUSED.labels("run_cap").inc()
        raise ApiError(
            429,
            "rate_limited",
            f"this client address already holds {cap} unexpired claims on run "
            f"{request.run_id} of {request.repository}; try again in {retry_after} s",
            retry_after=retry_after,
        )
