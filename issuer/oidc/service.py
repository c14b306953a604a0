"""Assembles one issuer replica from its configuration: store, keyring, GitHub, claims."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import httpx

from issuer.github.channels import LogChannel, Scan
from issuer.github.client import GitHubClient
from issuer.github.facts import JobFacts, PullRequestFacts, RunFacts
from issuer.github.live import LiveLogChannel
from issuer.github.pulls import find_pull_request
from issuer.oidc.challenge import LogScan
from issuer.oidc.charges import AddressCharges
from issuer.oidc.claims import RETENTION, ClaimService
from issuer.oidc.config import IssuerConfig
from issuer.oidc.discovery import Published, publish
from issuer.oidc.github_access import github_client_from_config, live_channel_from_config
from issuer.oidc.keys import KeyPolicy, Keyring, Keys
from issuer.oidc.watch import RunWatches
from issuer.oidc.watcher import RunReader
from issuer.oidc.webhooks import WebhookReceiver
from issuer.store import MemoryStore, RedisStore, Store

log = logging.getLogger(__name__)

REDIS_KEY_PREFIX = "issuer:"
"""Every key the issuer keeps in Redis starts with this, those of the shared GitHub client
included: the issuer's Redis ACL user may touch these keys and no others
(``deploy/redis/users.conf``), the builder service's user none of them."""


def redis_store(url: str) -> RedisStore:
    """The issuer's store in the Redis at ``url``, every key under its prefix."""
    return RedisStore.from_url(url, prefix=REDIS_KEY_PREFIX)


class IssuerService:
    """Everything a request handler may call. Built at start, closed at shutdown."""

    def __init__(
        self,
        config: IssuerConfig,
        store: Store,
        keys: Keys,
        github: GitHubClient,
        live: LiveLogChannel | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.keys = keys
        self.github = github
        self.live = live
        self.published: Published = publish(config.issuer_url, keys.keyring)
        self._published_from = keys.keyring

        def scan(job: JobFacts, wanted: frozenset[str]) -> Scan:
            return LogScan.of_job(job, wanted, config.issuer_url)

        reader = RunReader(github, logs=LogChannel(github, scan), live=live)

        async def pull_request_of(run: RunFacts) -> PullRequestFacts | None:
            return await find_pull_request(github, run)

        self.watches = RunWatches(
            store,
            reader,
            issuer=config.issuer_url,
            ttl=config.claim_ttl + RETENTION,
            find_pull_request=pull_request_of,
            charges=AddressCharges(store, config.github_points_per_address),
            deliveries=config.github_webhook_secret is not None,
        )
        self.claims = ClaimService(config, store, self.watches, keys.signing_key)
        self.webhooks = (
            None
            if config.github_webhook_secret is None
            else WebhookReceiver(config.github_webhook_secret, store, self.watches)
        )
        self._refresher: asyncio.Task[None] | None = None

    @property
    def keyring(self) -> Keyring:
        return self.keys.keyring

    async def refresh_keys(self) -> None:
        """Follow the shared keyring (and rotate when due); re-publish if it changed, here or
        by a rotation or retirement made through ``self.keys``."""
        await self.keys.refresh()
        keyring = self.keys.keyring
        if keyring is not self._published_from:
            self.published = publish(self.config.issuer_url, keyring)
            self._published_from = keyring

    def follow_keys(self) -> None:
        """Refresh the keyring every ``refresh_interval`` until :meth:`close`."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.keys.policy.refresh_interval)
                try:
                    await self.refresh_keys()
                except Exception:  # a store hiccup: keep the keys we have, try again
                    log.exception("keyring refresh failed")

        self._refresher = asyncio.create_task(loop())

    @classmethod
    async def start(
        cls,
        config: IssuerConfig,
        *,
        store: Store | None = None,
        github_transport: httpx.AsyncBaseTransport | None = None,
    ) -> IssuerService:
        if store is None:
            if config.redis_url:
                store = redis_store(config.redis_url)
            else:
                log.warning(
                    "ISSUER_REDIS_URL is unset: claims and keys live in this process only; "
                    "run a single replica"
                )
                store = MemoryStore()
        # Without Redis the keys never leave this process: a per-process wrapping key will do.
        kek = config.key_encryption_key or os.urandom(32)
        keys = Keys(store, kek, key_policy(config))
        await keys.load()
        await keys.refresh()  # a rotation due while no replica ran
        github = github_client_from_config(config, store, transport=github_transport)
        live = live_channel_from_config(config, github, transport=github_transport)
        service = cls(config, store, keys, github, live)
        service.follow_keys()
        return service

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.watches.close()
        if self.live is not None:
            await self.live.aclose()
        await self.github.aclose()
        await self.store.close()


def key_policy(config: IssuerConfig) -> KeyPolicy:
    return KeyPolicy(
        alg=config.key_alg,
        rsa_bits=config.key_rsa_bits,
        rotation_period=config.key_rotation_days * 86400,
        token_ttl=config.token_ttl,
    )
