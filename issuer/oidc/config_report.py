"""What ``issuer config check`` prints: each setting under the variable an operator sets,
its effective value, and whether a default applied. Secrets show only as set or unset."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from issuer.oidc.abuse import AbuseConfig
from issuer.oidc.config import IssuerConfig
from issuer.web.metrics_listener import show_address


@dataclass(frozen=True)
class Setting:
    variable: str
    when_unset: str | None = None  # what applies when unset, if not a value of its own
    secret: bool = False


# Every field of IssuerConfig and AbuseConfig, in the README's order.
SETTINGS: dict[str, Setting] = {
    "issuer_url": Setting("ISSUER_URL"),
    "redis_url": Setting("ISSUER_REDIS_URL", "in-process store, one process only", secret=True),
    "key_encryption_key": Setting(
        "ISSUER_KEY_ENCRYPTION_KEY", "a random key for this process only", secret=True
    ),
    "github_api_url": Setting("ISSUER_GITHUB_API_URL"),
    "github_tokens": Setting(
        "ISSUER_GITHUB_TOKEN", "unauthenticated: 60 requests an hour", secret=True
    ),
    "token_ttl": Setting("ISSUER_TOKEN_TTL"),
    "claim_ttl": Setting("ISSUER_CLAIM_TTL"),
    "allowed_audiences": Setting("ISSUER_ALLOWED_AUDIENCES", "any audience"),
    "default_audience": Setting("ISSUER_DEFAULT_AUDIENCE", "ISSUER_URL applies"),
    "poll_interval": Setting("ISSUER_POLL_INTERVAL"),
    "github_app_id": Setting("ISSUER_GITHUB_APP_ID", "no GitHub App"),
    "github_app_private_key": Setting("ISSUER_GITHUB_APP_PRIVATE_KEY_FILE", secret=True),
    "github_app_installations": Setting("ISSUER_GITHUB_APP_INSTALLATIONS", "none"),
    "github_reserve": Setting("ISSUER_GITHUB_RESERVE"),
    "github_concurrency": Setting("ISSUER_GITHUB_CONCURRENCY"),
    "github_points_per_minute": Setting("ISSUER_GITHUB_POINTS_PER_MINUTE"),
    "github_web_session": Setting("ISSUER_GITHUB_WEB_SESSION", "live-log channel off", secret=True),
    "github_web_url": Setting("ISSUER_GITHUB_WEB_URL", "derived from ISSUER_GITHUB_API_URL"),
    "github_webhook_secret": Setting(
        "ISSUER_GITHUB_WEBHOOK_SECRET", "webhooks off: runs are polled", secret=True
    ),
    "github_points_per_address": Setting("ISSUER_GITHUB_POINTS_PER_ADDRESS"),
    "claims_per_address": Setting("ISSUER_CLAIMS_PER_ADDRESS"),
    "claims_per_repository": Setting("ISSUER_CLAIMS_PER_REPOSITORY"),
    "rate_window": Setting("ISSUER_CLAIM_RATE_WINDOW"),
    "claims_per_run": Setting("ISSUER_CLAIMS_PER_RUN"),
    "trusted_proxies": Setting("ISSUER_TRUSTED_PROXIES", "the socket peer is the client"),
    "repository_allow": Setting("ISSUER_REPOSITORY_ALLOW", "any repository"),
    "repository_deny": Setting("ISSUER_REPOSITORY_DENY", "none"),
    "key_rotation_days": Setting("ISSUER_KEY_ROTATION_DAYS"),
    "key_alg": Setting("ISSUER_KEY_ALG"),
    "key_rsa_bits": Setting("ISSUER_KEY_RSA_BITS"),
    "metrics_address": Setting("ISSUER_METRICS_ADDRESS"),
    "admin_token": Setting("ISSUER_ADMIN_TOKEN", "the issuer has no admin endpoints", secret=True),
}


def _shown(value: object) -> str | None:
    """The value as an operator writes it; None for no value."""
    if value is None or value == ():
        return None
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def report(issuer: IssuerConfig, abuse: AbuseConfig, env: Mapping[str, str]) -> list[str]:
    """One ``VARIABLE = value`` line per setting; ``(default)`` marks a value the variable
    did not set, ``(unset: ...)`` says what applies instead."""
    values = {f.name: getattr(issuer, f.name) for f in fields(issuer)}
    values |= {f.name: getattr(abuse, f.name) for f in fields(abuse)}
    derived = {  # what applies when these are unset, as a value
        "default_audience": issuer.audience_when_unnamed,
        "github_web_url": issuer.github_web_origin,
    }
    lines = []
    for name, setting in SETTINGS.items():
        value, given = values[name], bool(env.get(setting.variable, "").strip())
        shown = show_address(value) if name == "metrics_address" else _shown(value)
        if setting.secret:
            text = "(set)" if shown else "(unset)"
            if not shown and setting.when_unset:
                text = f"(unset: {setting.when_unset})"
            elif shown and name == "admin_token":
                text = f"(set, but unused: {setting.when_unset})"
        elif shown is None and name in derived:
            text = f"{derived[name]} (unset: {setting.when_unset})"
        elif shown is None:
            text = f"(unset: {setting.when_unset or 'none'})"
        else:
            text = shown if given else f"{shown} (default)"
        lines.append(f"{setting.variable} = {text}")
    return lines
