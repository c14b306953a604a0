"""The builder service's configuration, from ``BUILDER_*`` environment variables."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from issuer.web.metrics_listener import Address, parse_address
from issuer.web.settings import ConfigError

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
"""Asymmetric algorithms only: ``none`` and every ``HS*`` can never be configured."""
DEFAULT_ALGORITHMS = ("RS256", "ES256")
BACKENDS = ("buildah",)
GIB = 1 << 30
MAX_LEEWAY = 60
MIN_ADMIN_TOKEN = 32  # secrets.token_urlsafe(32) gives 43
METRICS_ADDRESS: Address = ("127.0.0.1", 9102)
_REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster"}


@dataclass(frozen=True)
class BuilderConfig:
    url: str
    trusted_issuers: tuple[str, ...]
    audience: str = ""
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    admin_token: str | None = field(default=None, repr=False)
    backend: str = "buildah"
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway: int = MAX_LEEWAY
    jwks_cache_seconds: int = 300
    max_token_lifetime: int = 3600
    """The longest ``exp - iat`` of a subject token accepted, seconds."""
    max_builders_per_run: int = 4
    max_builders_per_head_repository: int = 8
    build_timeout: int = 300
    scratch_root: Path = field(default_factory=lambda: default_scratch_root())
    internal_url: str = ""
    """Where builders reach the service (introspection, release); default ``url``."""
    registries: tuple[str, ...] = ()
    """Where base images may come from (``HOST[:PORT]``); none: only ``FROM scratch``."""
    insecure_registries: tuple[str, ...] = ()
    memory_limit: int = 2 * GIB
    pids_limit: int = 1024
    disk_limit: int = 10 * GIB
    registry_auth_file: Path | None = None
    """Push credentials, Docker ``config.json`` style: read by builders, never by builds."""
    metrics_address: Address = METRICS_ADDRESS
    """Where ``/metrics`` is served: never on the service's public port."""

    def __post_init__(self) -> None:
        if not self.audience:
            object.__setattr__(self, "audience", self.url)
        if not self.internal_url:
            object.__setattr__(self, "internal_url", self.url)
        refused = [alg for alg in self.algorithms if alg not in ALLOWED_ALGORITHMS]
        if refused:
            raise ConfigError("BUILDER_ALGORITHMS", f"{refused[0]} is not allowed")
        if not 0 <= self.leeway <= MAX_LEEWAY:
            raise ConfigError("BUILDER_LEEWAY", f"must be between 0 and {MAX_LEEWAY} seconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BuilderConfig:
        """Build from environment variables; raises ConfigError naming the first bad one."""
        url = _url(env, "BUILDER_URL")
        if url is None:
            raise ConfigError("BUILDER_URL", "is required (e.g. https://builder.example.com)")
        issuers = [item.strip() for item in env.get("BUILDER_TRUSTED_ISSUERS", "").split(",")]
        issuers = [item for item in issuers if item]
        if not issuers:
            raise ConfigError(
                "BUILDER_TRUSTED_ISSUERS", "is required: the issuer URLs whose tokens are accepted"
            )
        for issuer in issuers:
            _check_url("BUILDER_TRUSTED_ISSUERS", issuer)
        redis_url = env.get("BUILDER_REDIS_URL", "").strip() or None
        if redis_url is None:
            raise ConfigError("BUILDER_REDIS_URL", "is required: builders and tokens live in Redis")
        if urlsplit(redis_url).scheme not in _REDIS_SCHEMES:
            raise ConfigError(
                "BUILDER_REDIS_URL",
                "must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL",
            )
        admin_token = env.get("BUILDER_ADMIN_TOKEN", "").strip() or None
        if admin_token is not None and len(admin_token) < MIN_ADMIN_TOKEN:
            raise ConfigError(
                "BUILDER_ADMIN_TOKEN", f"must be at least {MIN_ADMIN_TOKEN} characters long"
            )
        backend = env.get("BUILDER_BACKEND", "").strip() or "buildah"
        if backend not in BACKENDS:
            raise ConfigError("BUILDER_BACKEND", "must be one of " + ", ".join(BACKENDS))
        algorithms = tuple(
            item.strip() for item in env.get("BUILDER_ALGORITHMS", "").split(",") if item.strip()
        )
        scratch = env.get("BUILDER_SCRATCH_ROOT", "").strip()
        return cls(
            url=url,
            audience=(env.get("BUILDER_AUDIENCE", "").strip() or url),
            trusted_issuers=tuple(dict.fromkeys(issuers)),
            redis_url=redis_url,
            admin_token=admin_token,
            backend=backend,
            algorithms=algorithms or DEFAULT_ALGORITHMS,
            leeway=_whole(env, "BUILDER_LEEWAY", MAX_LEEWAY, 0, MAX_LEEWAY),
            jwks_cache_seconds=_whole(env, "BUILDER_JWKS_CACHE_SECONDS", 300, 30, 3600),
            max_token_lifetime=_whole(env, "BUILDER_MAX_TOKEN_LIFETIME", 3600, 60, 86400),
            max_builders_per_run=_whole(env, "BUILDER_MAX_BUILDERS_PER_RUN", 4, 1, 100),
            max_builders_per_head_repository=_whole(
                env, "BUILDER_MAX_BUILDERS_PER_HEAD_REPOSITORY", 8, 1, 100
            ),
            build_timeout=_whole(env, "BUILDER_BUILD_TIMEOUT", 300, 1, 3600),
            scratch_root=Path(scratch) if scratch else default_scratch_root(),
            internal_url=_url(env, "BUILDER_INTERNAL_URL") or url,
            registries=_registries(env, "BUILDER_REGISTRIES"),
            insecure_registries=_registries(env, "BUILDER_INSECURE_REGISTRIES"),
            memory_limit=_size(env, "BUILDER_MEMORY_LIMIT", 2 * GIB, 64 << 20),
            pids_limit=_whole(env, "BUILDER_PIDS_LIMIT", 1024, 32, 1 << 22),
            disk_limit=_size(env, "BUILDER_DISK_LIMIT", 10 * GIB, 64 << 20),
            registry_auth_file=_file(env, "BUILDER_REGISTRY_AUTH_FILE"),
            metrics_address=parse_address(
                "BUILDER_METRICS_ADDRESS", env.get("BUILDER_METRICS_ADDRESS", ""), METRICS_ADDRESS
            ),
        )


def default_scratch_root() -> Path:
    """Where builders' scratch directories are made, one fresh directory per builder."""
    return Path(tempfile.gettempdir()) / "issuer-builders"


def _check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(name, "must hold absolute http(s) URLs")
    if parts.query or parts.fragment:
        raise ConfigError(name, "must not have a query or fragment")


def _url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    _check_url(name, value)
    return value.rstrip("/")


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(name, f"must be a whole number between {low} and {high}")
    return int(raw)


_REGISTRY = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$"
)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _registries(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    items = [item.strip().lower() for item in env.get(name, "").split(",") if item.strip()]
    for item in items:
        if not _REGISTRY.match(item):
            raise ConfigError(name, f"{item[:80]!r} is not HOST[:PORT]")
    return tuple(dict.fromkeys(items))


def _size(env: Mapping[str, str], name: str, default: int, low: int) -> int:
    """Bytes, with an optional binary unit: ``512M``, ``2G`` (KiB, MiB, GiB, TiB)."""
    raw = env.get(name, "").strip().lower().removesuffix("ib").removesuffix("b")
    if not raw:
        return default
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in _UNITS and raw[-1:].isalpha() else (raw, "")
    if not number.isdigit() or int(number) * _UNITS[unit] < low:
        raise ConfigError(name, f"must be a size of at least {low >> 20} MiB, e.g. 2G or 512M")
    return int(number) * _UNITS[unit]


def _file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(name, "is not a readable file")
    return path
