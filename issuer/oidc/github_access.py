"""Building the GitHub-access layer from the issuer's configuration."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from issuer.github.app_auth import GitHubApp
from issuer.github.client import GitHubClient
from issuer.github.credentials import Credential, InstallationCredential
from issuer.github.live import LiveLogChannel
from issuer.oidc.challenge import codes_in_lines
from issuer.oidc.config import IssuerConfig
from issuer.store import Store


def credentials_from_config(
    config: IssuerConfig, *, clock: Callable[[], float] = time.time
) -> list[Credential]:
    """One credential per configured App installation (tokens are passed separately)."""
    if config.github_app_id is None or config.github_app_private_key is None:
        return []
    app = GitHubApp(config.github_app_id, config.github_app_private_key, clock=clock)
    return [
        InstallationCredential(app, installation, clock=clock)
        for installation in config.github_app_installations
    ]


def github_client_from_config(
    config: IssuerConfig,
    store: Store,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> GitHubClient:
    """The REST client with every configured token and App installation, the configured
    reserve, concurrency cap and pace. Close it with ``aclose()``."""
    return GitHubClient(
        config.github_api_url,
        config.github_tokens,
        store,
        credentials=credentials_from_config(config, clock=clock),
        transport=transport,
        reserve=config.github_reserve,
        concurrency=config.github_concurrency,
        points_per_minute=config.github_points_per_minute,
        clock=clock,
    )


def live_channel_from_config(
    config: IssuerConfig,
    github: GitHubClient,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LiveLogChannel | None:
    """The web-UI live-log channel when ``ISSUER_GITHUB_WEB_SESSION`` is set, else None. It
    shares ``github``'s concurrency cap; close it with ``aclose()``."""
    if config.github_web_session is None:
        return None
    return LiveLogChannel(
        config.github_web_origin,
        config.github_web_session,
        limiter=github.limiter,
        find_codes=lambda lines: codes_in_lines(lines, config.issuer_url),
        transport=transport,
    )
