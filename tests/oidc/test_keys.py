import asyncio
import base64
import json
import os

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from issuer.oidc.keys import KEYRING_KEY, KeyPolicy, Keyring, KeyUnwrapError, unwrap, wrap
from issuer.store import Store


async def test_the_first_start_creates_one_active_rs256_key(store: Store) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32))
    assert [(k.alg, keyring.state(k)) for k in keyring.keys] == [("RS256", "active")]


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
    leaked = str(private_d).encode() in stored  # a bool: a failure must not print the key
    assert not leaked


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

    from issuer.oidc.keys import SigningKey

    key = RSAKey.generate_key(2048, private=True)
    text = repr(SigningKey("kid", "RS256", key))
    leaked = str(key.as_dict(private=True)["d"])[:20] in text  # a bool: never print the key
    assert not leaked


@pytest.mark.parametrize(("alg", "bits", "kty"), [("RS256", 3072, "RSA"), ("ES256", 2048, "EC")])
async def test_the_configured_algorithm_is_fixed_in_the_key_and_its_jwks_entry(
    store: Store, alg: str, bits: int, kty: str
) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32), KeyPolicy(alg=alg, rsa_bits=bits))
    (entry,) = json.loads(keyring.jwks_bytes)["keys"]
    assert (entry["alg"], entry["kty"], entry["use"]) == (alg, kty, "sig")
    assert entry["kid"] == keyring.active.key.thumbprint()


async def test_an_rsa_3072_key_has_3072_bits(store: Store) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32), KeyPolicy(rsa_bits=3072))
    modulus = json.loads(keyring.jwks_bytes)["keys"][0]["n"]
    assert len(base64.urlsafe_b64decode(modulus + "==")) * 8 == 3072


async def test_an_es256_token_verifies_with_the_jwks(store: Store) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32), KeyPolicy(alg="ES256"))
    key = keyring.active
    token = jwt.encode({"alg": key.alg, "kid": key.kid}, {"sub": "x"}, key.key)
    jwks = KeySet.import_key_set(json.loads(keyring.jwks_bytes))
    assert jwt.decode(token, jwks, algorithms=["ES256"]).claims == {"sub": "x"}


def test_an_unsupported_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        KeyPolicy(alg="HS256")


async def test_the_summary_shows_no_key_material(store: Store) -> None:
    keyring = await Keyring.load_or_create(store, os.urandom(32))
    (row,) = keyring.summary()
    assert set(row) == {"kid", "alg", "state", "created", "activated", "retired"}
