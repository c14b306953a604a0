"""The keyring's lifecycle, next → active → retiring → gone, under a controllable clock."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from issuer.oidc.discovery import publish
from issuer.oidc.keys import KEYRING_KEY, KeyPolicy, Keys, UnknownKey
from issuer.store import Store

POLICY = KeyPolicy(rotation_period=1000, token_ttl=60, jwks_max_age=100, refresh_interval=5)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kek() -> bytes:
    return os.urandom(32)


async def replica(store: Store, kek: bytes, clock: Clock, policy: KeyPolicy = POLICY) -> Keys:
    keys = Keys(store, kek, policy, clock)
    await keys.load()
    return keys


def published(keys: Keys) -> list[str]:
    return [entry["kid"] for entry in json.loads(keys.keyring.jwks_bytes)["keys"]]


def states(keys: Keys) -> list[str]:
    return [row["state"] for row in keys.keyring.summary()]  # type: ignore[misc]


def sign(keys: Keys, now: float) -> str:
    key = keys.signing_key()
    claims = {"sub": "x", "iat": int(now), "exp": int(now + POLICY.token_ttl)}
    return jwt.encode({"alg": key.alg, "kid": key.kid}, claims, key.key)


def header_kid(token: str) -> str:
    encoded = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))["kid"])


async def test_a_rotation_publishes_the_next_key_without_signing_with_it(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    first = keys.signing_key().kid
    upcoming = await keys.rotate()
    assert published(keys) == [first, upcoming]
    assert keys.signing_key().kid == first
    assert states(keys) == ["active", "next"]


async def test_the_next_key_signs_one_jwks_lifetime_and_refresh_after_it_was_published(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    upcoming = await keys.rotate()
    clock.now += POLICY.publish_lead - 0.001
    assert keys.signing_key().kid != upcoming
    clock.now += 0.001
    assert keys.signing_key().kid == upcoming


async def test_a_superseded_key_stays_published_until_its_last_token_and_a_jwks_lifetime(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    old = keys.signing_key().kid
    await keys.rotate()
    clock.now += POLICY.publish_lead
    await keys.refresh()
    assert states(keys) == ["retiring", "active"]
    clock.now += POLICY.retention - 0.001
    await keys.refresh()
    assert old in published(keys)
    clock.now += 0.001
    assert await keys.refresh()
    assert old not in published(keys)


async def test_a_gone_key_is_pruned_from_the_store_at_the_next_write(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    old = keys.signing_key().kid
    await keys.rotate()
    clock.now += POLICY.publish_lead + POLICY.retention
    await keys.rotate()
    stored = await store.get(KEYRING_KEY)
    assert stored is not None
    assert old.encode() not in stored


async def test_rotating_while_a_next_key_waits_adds_no_second_one(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    assert await keys.rotate() == await keys.rotate()
    assert len(published(keys)) == 2


async def test_no_rotation_happens_before_it_is_due(store: Store, kek: bytes, clock: Clock) -> None:
    keys = await replica(store, kek, clock)
    clock.now += POLICY.rotation_period - POLICY.publish_lead - 1
    assert not await keys.refresh()
    assert len(published(keys)) == 1


async def test_a_due_rotation_makes_keys_change_every_rotation_period(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    started = clock.now
    clock.now += POLICY.rotation_period - POLICY.publish_lead
    assert await keys.refresh()
    assert states(keys) == ["active", "next"]
    clock.now = started + POLICY.rotation_period
    assert keys.signing_key().activates == started + POLICY.rotation_period


async def test_three_replicas_racing_to_rotate_produce_one_new_key(
    store: Store, kek: bytes, clock: Clock
) -> None:
    replicas = [await replica(store, kek, clock) for _ in range(3)]
    clock.now += POLICY.rotation_period
    await asyncio.gather(*(keys.refresh() for keys in replicas))
    await asyncio.gather(*(keys.refresh() for keys in replicas))
    kids = {tuple(published(keys)) for keys in replicas}
    assert len(kids) == 1
    assert len(next(iter(kids))) == 2


async def test_three_replicas_racing_through_the_command_produce_one_new_key(
    store: Store, kek: bytes, clock: Clock
) -> None:
    replicas = [await replica(store, kek, clock) for _ in range(3)]
    upcoming = await asyncio.gather(*(keys.rotate() for keys in replicas))
    assert len(set(upcoming)) == 1


async def test_a_replica_picks_up_another_replicas_rotation_at_its_refresh(
    store: Store, kek: bytes, clock: Clock
) -> None:
    one, two = await replica(store, kek, clock), await replica(store, kek, clock)
    upcoming = await one.rotate()
    assert upcoming not in published(two)
    assert await two.refresh()
    assert upcoming in published(two)


async def test_a_refresh_with_nothing_changed_reports_no_change(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    clock.now += POLICY.refresh_interval
    assert not await keys.refresh()


async def test_a_retired_key_stops_verifying_new_tokens_at_once(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    compromised = keys.signing_key()
    stolen = sign(keys, clock.now)
    await keys.retire(compromised.kid)
    jwks = KeySet.import_key_set(json.loads(publish("https://i.example", keys.keyring).jwks.body))
    assert compromised.kid not in published(keys)
    assert keys.signing_key().kid != compromised.kid
    with pytest.raises((JoseError, ValueError)):
        jwt.decode(stolen, jwks, algorithms=["RS256"])
    fresh = sign(keys, clock.now)
    assert jwt.decode(fresh, jwks, algorithms=["RS256"]).claims["sub"] == "x"


async def test_retiring_the_active_key_activates_the_waiting_next_key_now(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    compromised = keys.signing_key().kid
    upcoming = await keys.rotate()
    await keys.retire(compromised)
    assert keys.signing_key().kid == upcoming
    assert published(keys) == [upcoming]


async def test_retiring_the_next_key_keeps_the_active_one_signing(
    store: Store, kek: bytes, clock: Clock
) -> None:
    keys = await replica(store, kek, clock)
    active = keys.signing_key().kid
    await keys.retire(await keys.rotate())
    clock.now += POLICY.rotation_period - POLICY.publish_lead - 1
    assert keys.signing_key().kid == active
    assert states(keys) == ["active"]


async def test_other_replicas_drop_a_retired_key_at_their_refresh(
    store: Store, kek: bytes, clock: Clock
) -> None:
    one, two = await replica(store, kek, clock), await replica(store, kek, clock)
    compromised = one.signing_key().kid
    await one.retire(compromised)
    await two.refresh()
    assert compromised not in published(two)
    assert two.signing_key().kid == one.signing_key().kid


async def test_retiring_an_unknown_kid_is_refused(store: Store, kek: bytes, clock: Clock) -> None:
    keys = await replica(store, kek, clock)
    with pytest.raises(UnknownKey):
        await keys.retire("no-such-kid")


class CachingVerifier:
    """A relying party that caches the JWKS for its max-age and never refetches early."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.fetched_at = float("-inf")
        self.jwks: KeySet | None = None
        self.unknown: list[str] = []
        self.verified: set[str] = set()

    def verify(self, token: str, source: Keys) -> None:
        if self.clock.now >= self.fetched_at + POLICY.jwks_max_age:
            document = publish("https://i.example", source.keyring).jwks
            self.jwks = KeySet.import_key_set(json.loads(document.body))
            self.fetched_at = self.clock.now
        assert self.jwks is not None
        kid = header_kid(token)
        kids = {key.kid for key in self.jwks.keys}
        if kid not in kids:
            self.unknown.append(kid)
        elif token not in self.verified:  # one signature check per token keeps the test fast
            jwt.decode(token, self.jwks, algorithms=[POLICY.alg])
            self.verified.add(token)


@pytest.mark.parametrize("offset", [0.0, 61.0])
async def test_a_caching_verifier_never_meets_an_unknown_kid_across_three_rotations(
    store: Store, kek: bytes, clock: Clock, offset: float
) -> None:
    replicas = [await replica(store, kek, clock) for _ in range(3)]
    verifier = CachingVerifier(clock)
    clock.now += offset
    start = clock.now
    tokens: list[tuple[float, str]] = []
    kids: set[str] = set()
    step = 0
    while clock.now < start + 3 * POLICY.rotation_period + POLICY.retention:
        clock.now += 2.5
        step += 1
        if step % 2 == 0:  # each replica refreshes every refresh interval, at its own phase
            await replicas[step % 3].refresh()
            await replicas[(step + 1) % 3].refresh()
            await replicas[(step + 2) % 3].refresh()
        signer = replicas[step % 3]
        tokens.append((clock.now + POLICY.token_ttl, sign(signer, clock.now)))
        kids.add(signer.signing_key().kid)
        tokens = [(exp, token) for exp, token in tokens if exp > clock.now]
        for _, token in tokens:
            verifier.verify(token, replicas[(step + 1) % 3])
    assert verifier.unknown == []
    assert len(kids) == 4
