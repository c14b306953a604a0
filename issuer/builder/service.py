"""Assembles one builder-service replica from its configuration."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx

from issuer.builder.backend import BuilderBackend, OnStopped
from issuer.builder.buildtokens import BuildTokens
from issuer.builder.config import BuilderConfig
from issuer.builder.exchange import Exchange
from issuer.builder.imagebuild import ImageSettings
from issuer.builder.jwks import IssuerKeys
from issuer.builder.process import BuilderProcesses
from issuer.builder.registry import BuilderRegistry, RunLimits
from issuer.builder.sandbox import Limits
from issuer.builder.truststore import TrustStore
from issuer.builder.verify import TokenVerifier
from issuer.store import RedisStore, Store

log = logging.getLogger(__name__)

BackendFactory = Callable[[Path, OnStopped], BuilderBackend]
"""Makes the backend from the scratch root and the exchange's stop callback."""


def image_settings(config: BuilderConfig) -> ImageSettings:
    """What every builder of this service may pull from, and within which limits."""
    return ImageSettings(
        registries=config.registries,
        insecure_registries=config.insecure_registries,
        limits=Limits(config.memory_limit, config.pids_limit, config.disk_limit),
    )


class BuilderService:
    """Everything a request handler may call. Built at start, closed at shutdown."""

    def __init__(
        self, config: BuilderConfig, store: Store, http: httpx.AsyncClient, exchange: Exchange
    ) -> None:
        self.config = config
        self.store = store
        self.http = http
        self.exchange = exchange
        self.trust = exchange.trust
        self.tokens = exchange.tokens
        self.registry = exchange.registry

    @property
    def backend(self) -> BuilderBackend:
        return self.exchange.backend

    @classmethod
    async def start(
        cls,
        config: BuilderConfig,
        *,
        store: Store | None = None,
        backend_factory: BackendFactory | None = None,
    ) -> BuilderService:
        if store is None:
            if config.redis_url is None:
                raise ValueError("the builder service needs BUILDER_REDIS_URL or a store")
            store = RedisStore.from_url(config.redis_url)
        # Redirects are not followed: a discovery document or JWKS is where it is configured.
        http = httpx.AsyncClient(timeout=5, follow_redirects=False)
        keys = IssuerKeys(
            store, http, config.trusted_issuers, cache_seconds=config.jwks_cache_seconds
        )
        verifier = TokenVerifier(
            keys,
            store,
            audience=config.audience,
            algorithms=config.algorithms,
            leeway=config.leeway,
            max_lifetime=config.max_token_lifetime,
        )
        tokens = BuildTokens(store)

        def make_backend(on_stopped: OnStopped) -> BuilderBackend:
            if backend_factory is not None:
                return backend_factory(config.scratch_root, on_stopped)
            return BuilderProcesses(
                config.scratch_root,
                on_stopped,
                image_settings(config),
                registry_auth_file=config.registry_auth_file,
            )

        exchange = Exchange(
            verifier,
            TrustStore(store, config.trusted_issuers),
            BuilderRegistry(store, tokens),
            tokens,
            make_backend,
            service_url=config.internal_url,
            build_timeout=config.build_timeout,
            run_limits=RunLimits(
                config.max_builders_per_run, config.max_builders_per_head_repository
            ),
        )
        return cls(config, store, http, exchange)

    async def close(self) -> None:
        await self.exchange.close()
        await self.http.aclose()
        await self.store.close()
