"""Token verification (RFC 8725) against configured issuers only: each attack is refused with
its own documented reason, and nothing is fetched from a URL a token names."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from issuer.builder import errors
from issuer.builder.jwks import IssuerKeys
from issuer.builder.verify import TokenVerifier, VerifiedToken
from issuer.store import RedisStore
from tests.builder.support import (
    AUDIENCE,
    FakeIssuer,
    certificate_chain,
    hs256,
    pooled_rsa_key,
    signed,
    unsigned,
)

Make = Callable[..., TokenVerifier]


@pytest.fixture
async def make_verifier(redis_store: RedisStore) -> AsyncIterator[Make]:
    async with httpx.AsyncClient(timeout=5) as client:

        def make(
            *trusted: FakeIssuer, algorithms: tuple[str, ...] = ("RS256", "ES256")
        ) -> TokenVerifier:
            keys = IssuerKeys(redis_store, client, tuple(issuer.url for issuer in trusted))
            return TokenVerifier(
                keys, redis_store, audience=AUDIENCE, algorithms=algorithms, leeway=60
            )

        yield make


@pytest.fixture
def verifier(make_verifier: Make, fake_issuer: FakeIssuer) -> TokenVerifier:
    return make_verifier(fake_issuer)


async def refusal(verifier: TokenVerifier, token: str) -> errors.Refusal:
    with pytest.raises(errors.Refused) as caught:
        await verifier.verify(token)
    return caught.value.refusal


async def test_a_token_of_a_trusted_issuer_verifies(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    verified = await verifier.verify(fake_issuer.token(run_id="77"))
    assert verified.issuer == fake_issuer.url
    assert verified.claim("run_id") == "77"


async def test_alg_none_is_refused(verifier: TokenVerifier, fake_issuer: FakeIssuer) -> None:
    token = unsigned({"alg": "none", "kid": fake_issuer.kid()}, fake_issuer.claims())
    assert await refusal(verifier, token) is errors.ALG_REFUSED


async def test_hs256_signed_with_the_issuers_public_key_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    public_pem = fake_issuer.key.as_pem(private=False)
    token = hs256({"alg": "HS256", "kid": fake_issuer.kid()}, fake_issuer.claims(), public_pem)
    assert await refusal(verifier, token) is errors.ALG_REFUSED


async def test_hs256_is_refused_even_if_configured_algorithms_are_ignored(
    make_verifier: Make, fake_issuer: FakeIssuer
) -> None:
    verifier = make_verifier(fake_issuer, algorithms=("RS256",))
    token = fake_issuer.token(key=ECKey.generate_key("P-256", private=True))
    assert await refusal(verifier, token) is errors.ALG_REFUSED


async def test_a_foreign_key_with_the_issuers_kid_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    attacker = pooled_rsa_key()
    token = fake_issuer.token(key=attacker, header={"kid": fake_issuer.kid()})
    assert await refusal(verifier, token) is errors.SIGNATURE_INVALID


async def test_a_key_of_the_wrong_type_for_the_alg_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    attacker = ECKey.generate_key("P-256", private=True)
    token = fake_issuer.token(key=attacker, header={"kid": fake_issuer.kid()})  # ES256, RSA kid
    assert await refusal(verifier, token) is errors.KEY_MISMATCH


async def test_a_wrong_audience_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(aud="https://elsewhere.example")
    assert await refusal(verifier, token) is errors.AUDIENCE_MISMATCH


async def test_an_audience_list_of_another_service_and_this_one_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(aud=[AUDIENCE, "https://elsewhere.example"])
    assert await refusal(verifier, token) is errors.AUDIENCE_MISMATCH


async def test_a_wrong_iss_signed_by_a_trusted_key_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(iss="https://issuer.evil.example")
    assert await refusal(verifier, token) is errors.ISSUER_UNTRUSTED


async def test_one_trusted_issuers_key_cannot_speak_for_another(
    make_verifier: Make, fake_issuer: FakeIssuer, other_issuer: FakeIssuer
) -> None:
    verifier = make_verifier(fake_issuer, other_issuer)
    token = fake_issuer.token(iss=other_issuer.url)
    assert await refusal(verifier, token) is errors.KID_UNKNOWN


async def test_an_untrusted_issuer_with_a_valid_discovery_document_is_never_asked(
    verifier: TokenVerifier, other_issuer: FakeIssuer
) -> None:
    token = other_issuer.token(iss=other_issuer.url)
    assert await refusal(verifier, token) is errors.ISSUER_UNTRUSTED
    assert other_issuer.requests == []


async def test_an_expired_token_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    now = int(time.time())
    token = fake_issuer.token(iat=now - 600, nbf=now - 600, exp=now - 120)
    assert await refusal(verifier, token) is errors.EXPIRED


async def test_a_token_expired_within_the_leeway_is_accepted(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    now = int(time.time())
    token = fake_issuer.token(iat=now - 600, nbf=now - 600, exp=now - 20)
    assert isinstance(await verifier.verify(token), VerifiedToken)


async def test_nbf_in_the_future_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(nbf=int(time.time()) + 600)
    assert await refusal(verifier, token) is errors.NOT_YET_VALID


async def test_iat_in_the_future_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(iat=int(time.time()) + 600)
    assert await refusal(verifier, token) is errors.ISSUED_IN_FUTURE


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "aud"])
async def test_a_token_without_a_required_claim_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer, claim: str
) -> None:
    token = fake_issuer.token(**{claim: None})
    assert await refusal(verifier, token) is errors.CLAIM_MISSING


async def test_a_time_claim_that_is_not_a_number_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(exp="tomorrow")
    assert await refusal(verifier, token) is errors.CLAIM_INVALID


async def test_a_token_that_lives_thirty_years_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    now = int(time.time())
    token = fake_issuer.token(iat=now, exp=now + 30 * 365 * 86400)
    assert await refusal(verifier, token) is errors.LIFETIME_TOO_LONG


async def test_the_lifetime_is_counted_from_iat(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    now = int(time.time())
    token = fake_issuer.token(iat=now - 3000, nbf=now - 3000, exp=now + 601)  # 3601 s
    assert await refusal(verifier, token) is errors.LIFETIME_TOO_LONG


async def test_a_token_living_the_configured_maximum_is_accepted(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    now = int(time.time())
    token = fake_issuer.token(iat=now - 3000, nbf=now - 3000, exp=now + 600)  # 3600 s
    assert isinstance(await verifier.verify(token), VerifiedToken)


async def test_the_maximum_lifetime_is_configurable(
    redis_store: RedisStore, fake_issuer: FakeIssuer
) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        keys = IssuerKeys(redis_store, client, (fake_issuer.url,))
        verifier = TokenVerifier(
            keys, redis_store, audience=AUDIENCE, algorithms=("RS256",), leeway=0, max_lifetime=60
        )
        now = int(time.time())
        token = fake_issuer.token(iat=now, exp=now + 61)
        assert await refusal(verifier, token) is errors.LIFETIME_TOO_LONG


async def test_a_jti_is_never_kept_longer_than_a_token_may_live(
    verifier: TokenVerifier, redis_url: str
) -> None:
    import redis

    far = int(time.time()) + 30 * 365 * 86400
    await verifier.claim_jti(VerifiedToken("https://issuer.example", {}, "j-1", far))
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("builder:jti:*")
    assert 0 < client.ttl(key) <= 3600 + 2 * 60
    client.close()


async def test_an_ill_typed_identity_claim_is_refused_after_the_signature(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    with pytest.raises(errors.Refused) as caught:
        await verifier.verify(fake_issuer.token(run_id=["1234"]))
    assert caught.value.refusal is errors.CLAIM_INVALID
    assert "run_id" in caught.value.description


async def test_a_sub_that_disagrees_with_the_repository_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(sub="repo:evil/other:pull_request")
    assert await refusal(verifier, token) is errors.SUBJECT_MISMATCH


async def test_a_jti_is_claimed_once(verifier: TokenVerifier, fake_issuer: FakeIssuer) -> None:
    verified = await verifier.verify(fake_issuer.token())
    await verifier.claim_jti(verified)
    with pytest.raises(errors.Refused) as caught:
        await verifier.claim_jti(await verifier.verify(fake_issuer.token(jti=verified.jti)))
    assert caught.value.refusal is errors.REPLAYED


async def test_a_released_jti_can_be_claimed_again(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    verified = await verifier.verify(fake_issuer.token())
    await verifier.claim_jti(verified)
    await verifier.release_jti(verified)
    await verifier.claim_jti(verified)


async def test_the_jti_is_kept_until_expiry_plus_leeway(
    verifier: TokenVerifier, fake_issuer: FakeIssuer, redis_url: str
) -> None:
    import redis

    exp = int(time.time()) + 300
    verified = await verifier.verify(fake_issuer.token(exp=exp))
    await verifier.claim_jti(verified)
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("builder:jti:*")
    assert 300 < client.ttl(key) <= 360
    client.close()


async def test_a_flood_of_unknown_kids_refreshes_the_jwks_once(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    for _ in range(30):
        token = fake_issuer.token(header={"kid": secrets.token_hex(8)})
        assert await refusal(verifier, token) is errors.KID_UNKNOWN
    # The first fetch fills the cache; one refresh follows; the rest wait out the minute.
    assert fake_issuer.count("/.well-known/jwks") == 2


async def test_a_kid_added_by_the_issuer_is_found_by_a_refresh(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    await verifier.verify(fake_issuer.token())
    rotated = pooled_rsa_key()
    fake_issuer.keys.append(rotated)
    assert isinstance(await verifier.verify(fake_issuer.token(key=rotated)), VerifiedToken)


@pytest.mark.parametrize(
    "kid", ["../../../../etc/passwd", "x' OR '1'='1'; --", "/.well-known/jwks?x=1", "%2e%2e%2f"]
)
async def test_a_kid_with_path_or_sql_characters_is_only_looked_up(
    verifier: TokenVerifier, fake_issuer: FakeIssuer, kid: str
) -> None:
    assert await refusal(verifier, fake_issuer.token(header={"kid": kid})) is errors.KID_UNKNOWN
    assert set(fake_issuer.requests) <= {"/.well-known/openid-configuration", "/.well-known/jwks"}


@pytest.mark.parametrize("kid", ["", "k" * 257, "tab\there", 42])
async def test_a_kid_that_is_no_plausible_key_id_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer, kid: Any
) -> None:
    token = unsigned({"alg": "RS256", "kid": kid}, fake_issuer.claims())
    assert await refusal(verifier, token) is errors.KID_MALFORMED


async def test_a_token_without_a_kid_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    assert await refusal(verifier, fake_issuer.token(header={"kid": None})) is errors.KID_MISSING


@pytest.mark.parametrize("header", ["jku", "x5u"])
async def test_key_url_headers_are_never_fetched(
    verifier: TokenVerifier, fake_issuer: FakeIssuer, other_issuer: FakeIssuer, header: str
) -> None:
    attacker = other_issuer.key
    url = f"{other_issuer.url}/.well-known/jwks"
    token = fake_issuer.token(key=attacker, header={header: url})
    assert await refusal(verifier, token) is errors.KID_UNKNOWN
    assert other_issuer.requests == []


async def test_an_embedded_jwk_header_is_ignored(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    attacker = ECKey.generate_key("P-256", private=True)
    embedded = dict(attacker.as_dict(private=False))
    token = fake_issuer.token(key=attacker, header={"jwk": embedded})
    assert await refusal(verifier, token) is errors.KID_UNKNOWN


async def test_a_genuine_token_with_a_jku_header_is_verified_with_configured_keys_only(
    verifier: TokenVerifier, fake_issuer: FakeIssuer, other_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(header={"jku": f"{other_issuer.url}/.well-known/jwks"})
    assert isinstance(await verifier.verify(token), VerifiedToken)
    assert other_issuer.requests == []


async def test_an_unknown_critical_extension_on_a_genuine_token_is_named(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    header = {"alg": "RS256", "kid": fake_issuer.kid(), "crit": ["exp"], "exp": 1}
    token = signed(fake_issuer.key, header, fake_issuer.claims())
    assert await refusal(verifier, token) is errors.CRIT_UNSUPPORTED


async def test_a_header_parameter_of_the_wrong_type_is_named(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    header = {"alg": "RS256", "kid": fake_issuer.kid(), "x5c": "not-a-list"}
    token = signed(fake_issuer.key, header, fake_issuer.claims())
    assert await refusal(verifier, token) is errors.HEADER_MALFORMED


async def test_an_unknown_header_parameter_is_ignored(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    header = {"alg": "RS256", "kid": fake_issuer.kid(), "x-trace": "abc"}
    token = signed(fake_issuer.key, header, fake_issuer.claims())
    assert isinstance(await verifier.verify(token), VerifiedToken)


async def test_an_attackers_token_with_its_own_rsa_jwk_fails_on_its_signature(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    attacker = RSAKey.generate_key(2048, private=True)  # never the issuer's pooled key
    embedded = dict(attacker.as_dict(private=False))
    header = {"alg": "RS256", "kid": fake_issuer.kid(), "jwk": embedded}
    token = signed(attacker, header, fake_issuer.claims())
    assert await refusal(verifier, token) is errors.SIGNATURE_INVALID


async def test_an_attackers_token_with_an_x5c_chain_fails_on_its_signature(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    attacker = RSAKey.generate_key(2048, private=True)
    header = {"alg": "RS256", "kid": fake_issuer.kid(), "x5c": certificate_chain(attacker)}
    token = signed(attacker, header, fake_issuer.claims())
    assert await refusal(verifier, token) is errors.SIGNATURE_INVALID


async def test_a_genuine_token_with_a_certificate_chain_is_verified_with_configured_keys_only(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    chain = certificate_chain(pooled_rsa_key())
    header = {"alg": "RS256", "kid": fake_issuer.kid(), "x5c": chain}
    token = signed(fake_issuer.key, header, fake_issuer.claims())
    assert isinstance(await verifier.verify(token), VerifiedToken)


@pytest.mark.parametrize(
    "token", ["", "not-a-jwt", "a.b.c", "a.b", "eyJhbGciOiJSUzI1NiJ9.!!!.sig", "x" * 20000]
)
async def test_a_malformed_token_is_refused(verifier: TokenVerifier, token: str) -> None:
    assert await refusal(verifier, token) in (errors.TOKEN_MALFORMED, errors.PAYLOAD_MALFORMED)


async def test_a_payload_that_is_not_an_object_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    token = unsigned({"alg": "RS256", "kid": fake_issuer.kid()}, [1, 2])  # type: ignore[arg-type]
    assert await refusal(verifier, token) is errors.PAYLOAD_MALFORMED


async def test_keys_are_cached_in_redis_for_every_replica(
    make_verifier: Make, fake_issuer: FakeIssuer
) -> None:
    await make_verifier(fake_issuer).verify(fake_issuer.token())
    fetched = len(fake_issuer.requests)
    await make_verifier(fake_issuer).verify(fake_issuer.token())  # another replica
    assert len(fake_issuer.requests) == fetched == 2


async def test_a_discovery_document_naming_another_issuer_is_refused(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    fake_issuer.discovery_issuer = "https://issuer.evil.example"
    assert await refusal(verifier, fake_issuer.token()) is errors.ISSUER_UNAVAILABLE
    assert fake_issuer.count("/.well-known/jwks") == 0


async def test_an_unreachable_issuer_is_not_asked_again_at_once(
    verifier: TokenVerifier, fake_issuer: FakeIssuer
) -> None:
    fake_issuer.discovery_issuer = "https://issuer.evil.example"
    await refusal(verifier, fake_issuer.token())
    fake_issuer.discovery_issuer = None
    assert await refusal(verifier, fake_issuer.token()) is errors.ISSUER_UNAVAILABLE
    assert fake_issuer.count("/.well-known/openid-configuration") == 1
