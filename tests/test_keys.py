import asyncio
import json
import os

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from issuer.keys import KEYRING_KEY, Keyring, KeyUnwrapError, unwrap, wrap
from issuer.store import Store


async def test_the_first_start_creates_one_active_rs256_key(store: Store) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32))
    assert [(k.alg, k.state) for k in keyring.keys] == [("RS256", "active")]


async def test_the_kid_is_the_rfc7638_thumbprint(store: Store) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32))
    assert keyring.active.kid == keyring.active.key.thumbprint()


async def test_a_restart_loads_the_same_key(store: Store) -> None:
    kek = os.urandom(32)
    first = await Keyring.load_or_create(store, kek)
    second = await Keyring.load_or_create(store, kek)
    assert first.active.kid == second.active.kid


async def test_replicas_starting_together_agree_on_one_key(store: Store) -> None:
    kek = os.urandom(32)
    keyrings = await asyncio.gather(*(Keyring.load_or_create(store, kek) for _ in range(3)))
    assert len({keyring.active.kid for keyring in keyrings}) == 1


async def test_a_stored_key_is_wrapped_not_plain(store: Store) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32))
    stored = await store.get(KEYRING_KEY)
    assert stored is not None
    assert b"PRIVATE KEY" not in stored
    private_d = keyring.active.key.as_dict(private=True)["d"]
    assert str(private_d).encode() not in stored


async def test_a_wrong_key_encryption_key_cannot_unwrap_the_stored_key(store: Store) -> None:
    await Keyring.load_or_create(store, os.urandom(32))
    with pytest.raises(KeyUnwrapError):
        await Keyring.load_or_create(store, os.urandom(32))


def test_a_wrapped_key_cannot_be_unwrapped_under_another_kid() -> None:
    kek = os.urandom(32)
    wrapped = wrap(kek, "kid-a", b"secret")
    with pytest.raises(KeyUnwrapError):
        unwrap(kek, "kid-b", wrapped)


async def test_the_jwks_publishes_public_halves_only(store: Store) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32))
    jwks = KeySet.import_key_set(json.loads(keyring.jwks_bytes))
    (entry,) = jwks.as_dict()["keys"]
    assert {"kid", "alg", "use", "n", "e", "kty"} <= set(entry)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(entry)


async def test_a_token_signed_with_the_active_key_verifies_with_the_jwks(store: Store) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32))
    key = keyring.active
    token = jwt.encode({"alg": key.alg, "kid": key.kid}, {"sub": "x"}, key.key)
    jwks = KeySet.import_key_set(json.loads(keyring.jwks_bytes))
    assert jwt.decode(token, jwks, algorithms=["RS256"]).claims == {"sub": "x"}


def test_a_signing_key_repr_shows_no_key_material() -> None:
    from joserfc.jwk import RSAKey

    from issuer.keys import SigningKey

    key = RSAKey.generate_key(2048, private=True)
    text = repr(SigningKey("kid", "RS256", "active", 0, key))
    assert str(key.as_dict(private=True)["d"])[:20] not in text
