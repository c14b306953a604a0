"""The builder service keeps an issuer's key set no longer than the issuer's ``Cache-Control``
allows (and never longer than BUILDER_JWKS_CACHE_SECONDS), so a key the issuer retired stops
being trusted once the cached set is older than its ``max-age``. Time is the test's clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from joserfc.jwk import RSAKey

from issuer.builder import errors
from issuer.builder.jwks import MIN_CACHE_SECONDS, IssuerKeys, freshness
from issuer.builder.verify import TokenVerifier, VerifiedToken
from issuer.store import RedisStore
from tests.builder.support import AUDIENCE, FakeIssuer

JWKS = "/.well-known/jwks"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Make = Callable[..., TokenVerifier]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_verifier(redis_store: RedisStore, clock: Clock) -> AsyncIterator[Make]:
    async with httpx.AsyncClient(timeout=5) as client:

        def make(issuer: FakeIssuer, cache_seconds: int = 300) -> TokenVerifier:
            keys = IssuerKeys(
                redis_store, client, (issuer.url,), cache_seconds=cache_seconds, clock=clock
            )
            return TokenVerifier(
                keys, redis_store, audience=AUDIENCE, algorithms=("RS256",), leeway=60
            )

        yield make


async def verifies(verifier: TokenVerifier, token: str) -> bool:
    try:
        return isinstance(await verifier.verify(token), VerifiedToken)
    except errors.Refused as refused:
        assert refused.refusal is errors.KID_UNKNOWN, refused.description
        return False


async def test_the_key_set_is_kept_for_its_max_age(
    make_verifier: Make, fake_issuer: FakeIssuer, clock: Clock
) -> None:
    fake_issuer.jwks_headers = {"Cache-Control": "public, max-age=120"}
    verifier = make_verifier(fake_issuer)
    assert await verifies(verifier, fake_issuer.token())
    clock.now += 119
    assert await verifies(verifier, fake_issuer.token())
    assert fake_issuer.count(JWKS) == 1


async def test_the_key_set_is_fetched_again_once_older_than_its_max_age(
    make_verifier: Make, fake_issuer: FakeIssuer, clock: Clock
) -> None:
    fake_issuer.jwks_headers = {"Cache-Control": "public, max-age=120"}
    verifier = make_verifier(fake_issuer)
    assert await verifies(verifier, fake_issuer.token())
    clock.now += 121
    assert await verifies(verifier, fake_issuer.token())
    assert fake_issuer.count(JWKS) == 2


async def test_a_key_the_issuer_retired_is_refused_once_the_max_age_passed(
    make_verifier: Make, fake_issuer: FakeIssuer, clock: Clock
) -> None:
    fake_issuer.jwks_headers = {"Cache-Control": "public, max-age=300"}
    verifier = make_verifier(fake_issuer, cache_seconds=3600)
    compromised = RSAKey.generate_key(2048, private=True)
    fake_issuer.keys.append(compromised)
    assert await verifies(verifier, fake_issuer.token(key=compromised))
    fake_issuer.keys.remove(compromised)  # the issuer retires it
    clock.now += 301
    assert not await verifies(verifier, fake_issuer.token(key=compromised))


async def test_the_configured_cache_time_bounds_a_longer_max_age(
    make_verifier: Make, fake_issuer: FakeIssuer, clock: Clock
) -> None:
    fake_issuer.jwks_headers = {"Cache-Control": "max-age=86400"}
    verifier = make_verifier(fake_issuer, cache_seconds=300)
    assert await verifies(verifier, fake_issuer.token())
    clock.now += 301
    assert await verifies(verifier, fake_issuer.token())
    assert fake_issuer.count(JWKS) == 2


async def test_the_age_a_shared_cache_reports_is_deducted(
    make_verifier: Make, fake_issuer: FakeIssuer, clock: Clock
) -> None:
    fake_issuer.jwks_headers = {"Cache-Control": "max-age=300", "Age": "250"}
    verifier = make_verifier(fake_issuer)
    assert await verifies(verifier, fake_issuer.token())
    clock.now += 51
    assert await verifies(verifier, fake_issuer.token())
    assert fake_issuer.count(JWKS) == 2


async def test_the_cached_record_expires_in_the_store_with_its_max_age(
    make_verifier: Make, fake_issuer: FakeIssuer, redis_url: str
) -> None:
    import redis

    fake_issuer.jwks_headers = {"Cache-Control": "max-age=45"}
    assert await verifies(make_verifier(fake_issuer, cache_seconds=3600), fake_issuer.token())
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("builder:jwks:*")
    assert 0 < client.ttl(key) <= 45
    client.close()


async def test_a_flood_of_unknown_kids_still_refetches_once_a_minute(
    make_verifier: Make, fake_issuer: FakeIssuer, clock: Clock
) -> None:
    fake_issuer.jwks_headers = {"Cache-Control": "max-age=300"}
    verifier = make_verifier(fake_issuer)
    for _ in range(20):
        assert not await verifies(verifier, fake_issuer.token(header={"kid": "made-up"}))
        clock.now += 1
    assert fake_issuer.count(JWKS) == 2


def headers(**values: str) -> httpx.Headers:
    return httpx.Headers({name.replace("_", "-"): value for name, value in values.items()})


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (headers(), 300),
        (headers(cache_control="public, max-age=60"), 60),
        (headers(cache_control="max-age=60", age="20"), 40),
        (headers(cache_control='max-age="90"'), 90),
        (headers(cache_control="max-age=99999"), 300),
        (headers(cache_control="no-store"), MIN_CACHE_SECONDS),
        (headers(cache_control="no-cache, max-age=60"), MIN_CACHE_SECONDS),
        (headers(cache_control="max-age=soon"), MIN_CACHE_SECONDS),
        (headers(cache_control="max-age=60", age="600"), MIN_CACHE_SECONDS),
    ],
)
def test_how_long_a_key_set_may_be_kept(given: httpx.Headers, seconds: int) -> None:
    assert freshness(given, 300) == seconds
