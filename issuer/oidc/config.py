"""The issuer's configuration, from ``ISSUER_*`` environment variables, validated at once."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from issuer.github.app_auth import AppKeyError, load_app_key
from issuer.web.metrics_listener import Address, parse_address
from issuer.web.settings import ConfigError

__all__ = ["ConfigError", "IssuerConfig"]

METRICS_ADDRESS: Address = ("127.0.0.1", 9101)


@dataclass(frozen=True)
class IssuerConfig:
    issuer_url: str
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    github_api_url: str = "https://api.github.com"
    github_tokens: tuple[str, ...] = field(default=(), repr=False)
    admin_token: str | None = field(default=None, repr=False)
    key_encryption_key: bytes | None = field(default=None, repr=False)
    token_ttl: int = 300
    claim_ttl: int = 600
    allowed_audiences: tuple[str, ...] | None = None
    default_audience: str | None = None
    poll_interval: int = 2
    key_rotation_days: int = 14
    key_alg: str = "RS256"
    key_rsa_bits: int = 2048
    github_app_id: int | None = None
    github_app_private_key: str | None = field(default=None, repr=False)  # PEM
    github_app_installations: tuple[int, ...] = ()
    github_reserve: int = 100
    github_concurrency: int = 16
    github_points_per_minute: int = 720  # each credential's pace under the secondary limit
    github_web_session: str | None = field(default=None, repr=False)  # a login cookie
    github_web_url: str | None = None  # None: derived from github_api_url
    github_webhook_secret: bytes | None = field(default=None, repr=False)
    github_points_per_address: int = 1800  # per hour; 0: looks are not charged
    metrics_address: Address = METRICS_ADDRESS  # /metrics: never on the public port

    @property
    def audience_when_unnamed(self) -> str:
        return self.default_audience or self.issuer_url

    @property
    def github_web_origin(self) -> str:
        """GitHub's web UI: ``ISSUER_GITHUB_WEB_URL``, else https://github.com for
        api.github.com, else the API's own origin (GitHub Enterprise Server)."""
        if self.github_web_url:
            return self.github_web_url
        parts = urlsplit(self.github_api_url)
        if parts.netloc.lower() == "api.github.com":
            return "https://github.com"
        return f"{parts.scheme}://{parts.netloc}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IssuerConfig:
        """Build from environment variables; raises ConfigError naming the first bad one."""
        issuer_url = _url(env, "ISSUER_URL", required=True)
        assert issuer_url is not None
        redis_url = env.get("ISSUER_REDIS_URL") or None
        if redis_url is not None and urlsplit(redis_url).scheme not in _REDIS_SCHEMES:
            raise ConfigError(
                "ISSUER_REDIS_URL",
                "must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL",
            )
        kek = _key_encryption_key(env)
        if redis_url is not None and kek is None:
            raise ConfigError(
                "ISSUER_KEY_ENCRYPTION_KEY",
                "required when ISSUER_REDIS_URL is set (32 random bytes, base64)",
            )
        allowed = _csv(env, "ISSUER_ALLOWED_AUDIENCES")
        default_audience = env.get("ISSUER_DEFAULT_AUDIENCE") or None
        if allowed and default_audience and default_audience not in allowed:
            raise ConfigError("ISSUER_DEFAULT_AUDIENCE", "is not one of ISSUER_ALLOWED_AUDIENCES")
        app_id, app_key, installations = _github_app(env)
        web_url = _url(env, "ISSUER_GITHUB_WEB_URL")
        if web_url is not None and urlsplit(web_url).path not in ("", "/"):
            raise ConfigError("ISSUER_GITHUB_WEB_URL", "must be an origin, without a path")
        return cls(
            issuer_url=issuer_url,
            redis_url=redis_url,
            github_api_url=_url(env, "ISSUER_GITHUB_API_URL") or "https://api.github.com",
            github_tokens=tuple(_csv(env, "ISSUER_GITHUB_TOKEN") or ()),
            admin_token=env.get("ISSUER_ADMIN_TOKEN") or None,
            key_encryption_key=kek,
            token_ttl=_seconds(env, "ISSUER_TOKEN_TTL", 300, low=30, high=3600),
            claim_ttl=_seconds(env, "ISSUER_CLAIM_TTL", 600, low=30, high=86400),
            allowed_audiences=tuple(allowed) if allowed else None,
            default_audience=default_audience,
            poll_interval=_seconds(env, "ISSUER_POLL_INTERVAL", 2, low=1, high=60),
            key_rotation_days=_whole(env, "ISSUER_KEY_ROTATION_DAYS", 14, low=1, high=365),
            key_alg=_choice(env, "ISSUER_KEY_ALG", "RS256", ("RS256", "ES256")),
            key_rsa_bits=int(_choice(env, "ISSUER_KEY_RSA_BITS", "2048", ("2048", "3072"))),
            github_app_id=app_id,
            github_app_private_key=app_key,
            github_app_installations=installations,
            github_reserve=_whole(env, "ISSUER_GITHUB_RESERVE", 100, low=0, high=100000),
            github_concurrency=_whole(env, "ISSUER_GITHUB_CONCURRENCY", 16, low=1, high=100),
            github_points_per_minute=_whole(
                env, "ISSUER_GITHUB_POINTS_PER_MINUTE", 720, low=60, high=100000
            ),
            github_web_session=_web_session(env),
            github_web_url=web_url,
            github_webhook_secret=_webhook_secret(env),
            github_points_per_address=_whole(
                env, "ISSUER_GITHUB_POINTS_PER_ADDRESS", 1800, low=0, high=10_000_000
            ),
            metrics_address=parse_address(
                "ISSUER_METRICS_ADDRESS", env.get("ISSUER_METRICS_ADDRESS", ""), METRICS_ADDRESS
            ),
        )


_REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster"}


def _url(env: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        if required:
            raise ConfigError(name, "is required (e.g. https://issuer.example.com)")
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(name, "must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigError(name, "must not have a query or fragment")
    return value.rstrip("/")


def _csv(env: Mapping[str, str], name: str) -> list[str] | None:
    value = env.get(name, "")
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or None


def _seconds(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigError(name, "must be a whole number of seconds")
    value = int(raw)
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high} seconds")
    return value


def _whole(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(name, f"must be a whole number between {low} and {high}")
    return int(raw)


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    if raw not in choices:
        raise ConfigError(name, "must be one of " + ", ".join(choices))
    return raw


def _key_encryption_key(env: Mapping[str, str]) -> bytes | None:
    raw = env.get("ISSUER_KEY_ENCRYPTION_KEY", "").strip()
    if not raw:
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        altchars = b"-_" if ("-" in raw or "_" in raw) else None
        key = base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("ISSUER_KEY_ENCRYPTION_KEY", "is not valid base64") from None
    if len(key) != 32:
        raise ConfigError("ISSUER_KEY_ENCRYPTION_KEY", f"must decode to 32 bytes, not {len(key)}")
    return key


_APP_VARIABLES = (
    "ISSUER_GITHUB_APP_ID",
    "ISSUER_GITHUB_APP_PRIVATE_KEY_FILE",
    "ISSUER_GITHUB_APP_INSTALLATIONS",
)


def _github_app(env: Mapping[str, str]) -> tuple[int | None, str | None, tuple[int, ...]]:
    """The App id, its private key (PEM text) and its installations: all three or none."""
    given = [name for name in _APP_VARIABLES if env.get(name, "").strip()]
    if not given:
        return None, None, ()
    for name in _APP_VARIABLES:
        if name not in given:
            raise ConfigError(name, "is required with " + ", ".join(given))
    raw_id = env["ISSUER_GITHUB_APP_ID"].strip()
    if not raw_id.isdigit() or int(raw_id) <= 0:
        raise ConfigError("ISSUER_GITHUB_APP_ID", "must be the App's numeric id")
    installations: list[int] = []
    for item in env["ISSUER_GITHUB_APP_INSTALLATIONS"].split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit() or int(item) <= 0:
            raise ConfigError(
                "ISSUER_GITHUB_APP_INSTALLATIONS", "must be comma-separated installation ids"
            )
        if int(item) in installations:
            raise ConfigError("ISSUER_GITHUB_APP_INSTALLATIONS", f"lists {item} twice")
        installations.append(int(item))
    if not installations:
        raise ConfigError("ISSUER_GITHUB_APP_INSTALLATIONS", "names no installation")
    return (
        int(raw_id),
        _app_key(env["ISSUER_GITHUB_APP_PRIVATE_KEY_FILE"].strip()),
        (tuple(installations)),
    )


def _app_key(path: str) -> str:
    name = "ISSUER_GITHUB_APP_PRIVATE_KEY_FILE"
    try:
        pem = Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(name, f"{path} does not exist") from None
    except (OSError, UnicodeError) as exc:
        raise ConfigError(name, f"{path} cannot be read ({type(exc).__name__})") from None
    try:
        load_app_key(pem)
    except AppKeyError as exc:
        raise ConfigError(name, f"{path} {exc}") from None
    return pem


# A cookie value: visible ASCII without separators (RFC 6265 cookie-octet).
_COOKIE_VALUE = re.compile(r"^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$")


def _web_session(env: Mapping[str, str]) -> str | None:
    raw = env.get("ISSUER_GITHUB_WEB_SESSION", "").strip()
    if not raw:
        return None
    if not _COOKIE_VALUE.match(raw):
        raise ConfigError(
            "ISSUER_GITHUB_WEB_SESSION",
            "must be the value of GitHub's user_session cookie (no spaces, ';' or ',')",
        )
    return raw


MIN_WEBHOOK_SECRET = 20


def _webhook_secret(env: Mapping[str, str]) -> bytes | None:
    raw = env.get("ISSUER_GITHUB_WEBHOOK_SECRET", "")
    if not raw:
        return None
    if len(raw) < MIN_WEBHOOK_SECRET or raw != raw.strip():
        raise ConfigError(
            "ISSUER_GITHUB_WEBHOOK_SECRET",
            f"must be the GitHub App's webhook secret: at least {MIN_WEBHOOK_SECRET} characters, "
            "no spaces around it (make one with `openssl rand -hex 32`)",
        )
    return raw.encode()
