"""Assembles one issuer replica from its configuration: store, keyring, GitHub, claims."""

from __future__ import annotations

import logging
import os

import httpx

from issuer.claims import ClaimService
from issuer.config import IssuerConfig
from issuer.discovery import discovery_document
from issuer.github.channels import AnnotationChannel, LogChannel
from issuer.github.client import GitHubClient
from issuer.keys import Keyring
from issuer.store import MemoryStore, RedisStore, Store
from issuer.watcher import RunWatcher

log = logging.getLogger(__name__)


class IssuerService:
    """Everything a request handler may call. Built at start, closed at shutdown."""

    def __init__(
        self,
        config: IssuerConfig,
        store: Store,
        keyring: Keyring,
        github: GitHubClient,
    ) -> None:
        self.config = config
        self.store = store
        self.keyring = keyring
        self.github = github
        self.discovery_bytes = discovery_document(config.issuer_url, keyring)
        watcher = RunWatcher(github, [LogChannel(github), AnnotationChannel(github)])
        self.claims = ClaimService(config, store, watcher, lambda: self.keyring.active)

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
                store = RedisStore.from_url(config.redis_url)
            else:
                log.warning(
                    "ISSUER_REDIS_URL is unset: claims and keys live in this process only; "
                    "run a single replica"
                )
                store = MemoryStore()
        # Without Redis the keys never leave this process: a per-process wrapping key will do.
        kek = config.key_encryption_key or os.urandom(32)
        keyring = await Keyring.load_or_create(store, kek)
        github = GitHubClient(
            config.github_api_url, config.github_tokens, store, transport=github_transport
        )
        return cls(config, store, keyring, github)

    async def close(self) -> None:
        await self.github.aclose()
        await self.store.close()
