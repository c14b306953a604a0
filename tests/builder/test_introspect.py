"""``POST /introspect`` (RFC 7662): builders authenticate; a token is active only for the
builder it is bound to."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from issuer.builder.buildtokens import BuildTokenInfo, BuildTokens
from issuer.builder.registry import BuilderRecord, BuilderRegistry, credential_hash
from issuer.store import RedisStore
from tests.builder.conftest import RunningService


class Builders:
    """Builders recorded in the service's store, with credentials the test knows."""

    def __init__(self, store: RedisStore) -> None:
        self.tokens = BuildTokens(store)
        self.registry = BuilderRegistry(store, self.tokens)

    async def add(self, builder_id: str, *, ttl: int = 300) -> str:
        expires = int(time.time()) + ttl
        info = BuildTokenInfo(
            builder_id,
            "octo-org/octo-repo",
            int(time.time()),
            expires,
            "repo:octo-org/octo-repo:pull_request",
            "octo-org/octo-repo",
            "7",
        )
        token, digest = await self.tokens.mint(info)
        await self.registry.save(
            BuilderRecord(
                builder_id,
                "octo-org/octo-repo",
                expires,
                credential_hash(f"{builder_id}-secret"),
                digest,
                "tr_1",
                "https://issuer.example",
                "jti",
                "octo-org/octo-repo",
                "7",
            )
        )
        return token


@pytest.fixture
async def builders(redis_store: RedisStore) -> AsyncIterator[Builders]:
    yield Builders(redis_store)


async def introspect(
    service: RunningService, token: str, auth: tuple[str, str] | None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(f"{service.url}/introspect", data={"token": token}, auth=auth)


async def test_the_bound_builder_learns_the_token_is_active_and_for_what(
    builder_service: RunningService, builders: Builders
) -> None:
    token = await builders.add("b-one")
    response = await introspect(builder_service, token, ("b-one", "b-one-secret"))
    body = response.json()
    assert body["active"] is True
    assert (body["builder_id"], body["project"], body["run_id"]) == (
        "b-one",
        "octo-org/octo-repo",
        "7",
    )
    assert body["exp"] > time.time()
    assert response.headers["cache-control"] == "no-store"


async def test_another_builder_is_told_the_token_is_inactive(
    builder_service: RunningService, builders: Builders
) -> None:
    token = await builders.add("b-one")
    await builders.add("b-two")
    response = await introspect(builder_service, token, ("b-two", "b-two-secret"))
    assert response.json() == {"active": False}


async def test_a_released_builders_token_is_inactive(
    builder_service: RunningService, builders: Builders
) -> None:
    token = await builders.add("b-one")
    await builders.registry.release("b-one")
    response = await introspect(builder_service, token, ("b-one", "b-one-secret"))
    assert response.status_code == 401  # the builder itself is gone: its credential too


async def test_an_unknown_token_is_inactive(
    builder_service: RunningService, builders: Builders
) -> None:
    await builders.add("b-one")
    response = await introspect(builder_service, "bt_" + "x" * 43, ("b-one", "b-one-secret"))
    assert response.json() == {"active": False}


@pytest.mark.parametrize("auth", [None, ("b-one", "wrong"), ("b-nobody", "b-nobody-secret")])
async def test_introspection_needs_a_builders_credentials(
    builder_service: RunningService, builders: Builders, auth: tuple[str, str] | None
) -> None:
    token = await builders.add("b-one")
    response = await introspect(builder_service, token, auth)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_a_builder_can_release_only_itself(
    builder_service: RunningService, builders: Builders
) -> None:
    await builders.add("b-one")
    await builders.add("b-two")
    async with httpx.AsyncClient(timeout=10) as client:
        other = await client.post(
            f"{builder_service.url}/builders/b-two/release", auth=("b-one", "b-one-secret")
        )
        own = await client.post(
            f"{builder_service.url}/builders/b-one/release", auth=("b-one", "b-one-secret")
        )
    assert other.status_code == 401
    assert own.json() == {"released": True}
    assert await builders.registry.get("b-two") is not None
    assert await builders.registry.get("b-one") is None
