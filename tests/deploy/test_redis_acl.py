"""The Redis users that ship, loaded into a real redis-server exactly as docker-compose.yml
loads them (deploy/redis/users.sh over deploy/redis/users.conf, passwords from secret
files): each service's user reaches its own keys with the commands its store sends, and
nothing else. Above all, the builder service's user can neither read nor write an issuer
key: a compromised builder host must not be able to write a sighting and get a token
signed. (test_redis_acl_services.py runs both services under their users.)"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from issuer.oidc.service import redis_store
from issuer.store import (
    Bump,
    Delete,
    Get,
    HashGet,
    HashPut,
    Put,
    RedisStore,
    Store,
    StoreUnavailable,
)
from tests.deploy.redis_acl import DATABASE, USERS, AclRedis, connect, users_script

OWN_KEY = {"issuer": "issuer:{claim:ab}:record", "builder": "builder:trust:octo-org/octo-repo"}
FOREIGN_KEYS = {
    "builder": ["issuer:keyring", "issuer:{run:octo-org/octo-repo:7:1}:sightings"],
    "issuer": ["builder:trust:octo-org/octo-repo", "builder:jti:ab"],
}


@pytest.fixture(scope="module")
def clients(acl_redis: AclRedis) -> Iterator[dict[str, redis.Redis]]:
    made = {user: acl_redis.client(user) for user in USERS}
    yield made
    for client in made.values():
        client.close()


def refused(call: Callable[[], object]) -> str:
    """The error text of a call Redis refuses for want of permission."""
    with pytest.raises(redis.exceptions.ResponseError) as refusal:
        call()
    text = str(refusal.value)
    assert "no permissions" in text or "can't access" in text, text
    return text


# --- the script that adds the passwords -------------------------------------------------


def test_the_script_adds_each_password_as_its_hash_only(tmp_path: Path) -> None:
    for user in USERS:
        (tmp_path / f"redis_{user}_password").write_text(f"{user}-password-0123456789\n")
    made = users_script(tmp_path)
    assert made.returncode == 0, made.stderr
    assert "password-0123456789" not in made.stdout
    for user in USERS:
        digest = hashlib.sha256(f"{user}-password-0123456789".encode()).hexdigest()
        (line,) = [line for line in made.stdout.splitlines() if line.startswith(f"user {user} ")]
        assert line.endswith(f" #{digest}")


def test_the_script_refuses_a_missing_password_file(tmp_path: Path) -> None:
    (tmp_path / "redis_issuer_password").write_text("a-long-enough-password\n")
    made = users_script(tmp_path)
    assert made.returncode != 0 and made.stdout.count("user builder") == 0
    assert "no password for Redis user builder" in made.stderr


def test_the_script_refuses_a_short_password(tmp_path: Path) -> None:
    (tmp_path / "redis_issuer_password").write_text("short\n")
    (tmp_path / "redis_builder_password").write_text("a-long-enough-password\n")
    made = users_script(tmp_path)
    assert made.returncode != 0
    assert "shorter than 16 characters" in made.stderr and "short\n" not in made.stderr


# --- who may connect ---------------------------------------------------------------------


def test_a_connection_without_a_user_is_refused(acl_redis: AclRedis) -> None:
    with connect(acl_redis.server.port, None, None) as anonymous:
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()


def test_the_default_user_cannot_log_in(acl_redis: AclRedis) -> None:
    for password in ("", acl_redis.passwords["issuer"]):
        with connect(acl_redis.server.port, "default", password) as default:
            with pytest.raises(redis.exceptions.AuthenticationError):
                default.ping()


@pytest.mark.parametrize("user", USERS)
def test_a_service_user_cannot_log_in_with_the_other_users_password(
    acl_redis: AclRedis, user: str
) -> None:
    other = next(name for name in USERS if name != user)
    with connect(acl_redis.server.port, user, acl_redis.passwords[other]) as client:
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("db", [0, 1])
@pytest.mark.parametrize("user", USERS)
def test_a_service_user_reads_and_writes_its_own_keys_in_any_database(
    acl_redis: AclRedis, user: str, db: int
) -> None:
    with acl_redis.client(user, db) as client:
        assert client.set(OWN_KEY[user], b"mine")
        assert client.get(OWN_KEY[user]) == b"mine"
        assert client.delete(OWN_KEY[user]) == 1


# Each a way to reach a key: plainly, among the user's own keys, from a script that names
# it, and from a script that does not (a script's calls are checked too).
READS: dict[str, Callable[[redis.Redis, str, str], object]] = {
    "GET": lambda client, key, own: client.get(key),
    "MGET": lambda client, key, own: client.mget([own, key]),
    "HGET": lambda client, key, own: client.hget(key, "field"),
    "HGETALL": lambda client, key, own: client.hgetall(key),
    "EVAL naming it": lambda client, key, own: client.eval(
        "return redis.call('GET', KEYS[1])", 1, key
    ),
    "EVAL not naming it": lambda client, key, own: client.eval(
        f"return redis.call('GET', '{key}')", 0
    ),
}
WRITES: dict[str, Callable[[redis.Redis, str, str], object]] = {
    "SET": lambda client, key, own: client.set(key, b"forged"),
    "SET NX": lambda client, key, own: client.set(key, b"forged", nx=True),
    "DEL": lambda client, key, own: client.delete(key),
    "DEL among its own": lambda client, key, own: client.delete(own, key),
    "HDEL": lambda client, key, own: client.hdel(key, "field"),
    "INCR in a script": lambda client, key, own: client.eval(
        "return redis.call('INCR', KEYS[1])", 1, key
    ),
    "HSET in a script": lambda client, key, own: client.eval(
        f"return redis.call('HSET', '{key}', 'code', 'forged')", 0
    ),
}


@pytest.mark.parametrize("how", READS)
@pytest.mark.parametrize("key", FOREIGN_KEYS["builder"])
def test_the_builder_user_cannot_read_an_issuer_key(
    clients: dict[str, redis.Redis], key: str, how: str
) -> None:
    refused(lambda: READS[how](clients["builder"], key, OWN_KEY["builder"]))


@pytest.mark.parametrize("how", WRITES)
@pytest.mark.parametrize("key", FOREIGN_KEYS["builder"])
def test_the_builder_user_cannot_write_an_issuer_key(
    clients: dict[str, redis.Redis], key: str, how: str
) -> None:
    refused(lambda: WRITES[how](clients["builder"], key, OWN_KEY["builder"]))


def test_the_builder_user_leaves_an_issuer_sighting_untouched_even_in_the_issuers_database(
    acl_redis: AclRedis, clients: dict[str, redis.Redis]
) -> None:
    issuer = clients["issuer"]
    sightings = "issuer:{run:octo-org/octo-repo:7:1}:sightings"
    issuer.hset(sightings, "real-code", b"real claims")
    with acl_redis.client("builder", DATABASE["issuer"]) as builder:
        for write in WRITES.values():
            refused(lambda: write(builder, sightings, OWN_KEY["builder"]))  # noqa: B023
        refused(lambda: builder.hgetall(sightings))
    assert issuer.hgetall(sightings) == {b"real-code": b"real claims"}
    issuer.delete(sightings)


@pytest.mark.parametrize("how", READS)
@pytest.mark.parametrize("key", FOREIGN_KEYS["issuer"])
def test_the_issuer_user_cannot_read_a_builder_key(
    clients: dict[str, redis.Redis], key: str, how: str
) -> None:
    refused(lambda: READS[how](clients["issuer"], key, OWN_KEY["issuer"]))


@pytest.mark.parametrize("how", WRITES)
@pytest.mark.parametrize("key", FOREIGN_KEYS["issuer"])
def test_the_issuer_user_cannot_write_a_builder_key(
    clients: dict[str, redis.Redis], key: str, how: str
) -> None:
    refused(lambda: WRITES[how](clients["issuer"], key, OWN_KEY["issuer"]))


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("key", ["keyring", "{claim:ab}:used", "gh:etag:ab", "trust:p"])
def test_a_service_user_cannot_touch_a_key_outside_every_prefix(
    clients: dict[str, redis.Redis], user: str, key: str
) -> None:
    refused(lambda: clients[user].set(key, b"x"))
    refused(lambda: clients[user].get(key))


# --- commands -----------------------------------------------------------------------------

ADMINISTRATIVE = [
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("RANDOMKEY",),
    ("DBSIZE",),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("SWAPDB", "0", "1"),
    ("DEBUG", "SLEEP", "0"),
    ("SHUTDOWN", "NOSAVE"),
    ("SAVE",),
    ("BGSAVE",),
    ("BGREWRITEAOF",),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "builder", "~*"),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("INFO",),
    ("MODULE", "LIST"),
    ("SCRIPT", "FLUSH"),
    ("FUNCTION", "FLUSH"),
    ("MONITOR",),
    ("PUBLISH", "channel", "x"),
    ("MIGRATE", "127.0.0.1", "1", "", "0", "1000", "KEYS", "issuer:keyring"),
]


@pytest.mark.parametrize("command", ADMINISTRATIVE, ids=" ".join)
@pytest.mark.parametrize("user", USERS)
def test_a_service_user_cannot_run_an_administrative_command(
    clients: dict[str, redis.Redis], user: str, command: tuple[str, ...]
) -> None:
    refused(lambda: clients[user].execute_command(*command))


async def _every_store_operation(store: Store, prefix: str) -> None:
    """Each call of the Store interface once, on keys under ``prefix``."""
    key = prefix + "{t}:k"
    assert await store.set(key, b"v", ttl=60, only_if_absent=True)
    assert await store.get(key) == b"v"
    assert await store.get_many([key, prefix + "{t}:none"]) == [b"v", None]
    assert await store.compare_and_set(key, b"v", b"w", ttl=60)
    assert await store.incr(prefix + "{t}:n", ttl=60) == 1
    assert await store.hash_set(prefix + "{t}:h", "f", b"1", ttl=60)
    assert await store.hash_get(prefix + "{t}:h", "f") == b"1"
    assert await store.hash_get_all(prefix + "{t}:h") == {"f": b"1"}
    assert await store.hash_delete(prefix + "{t}:h", "f") == 1
    await store.write_many(
        [
            Put(prefix + "{t}:p", b"p", ttl=60),
            HashPut(prefix + "{t}:h", {"g": b"2"}, ttl=60),
            Bump(prefix + "{t}:n", ttl=60),
            Delete(key),
        ]
    )
    reads = [Get(prefix + "{t}:p"), HashGet(prefix + "{t}:h", "g"), Get(key)]
    assert await store.read_many(reads) == [b"p", b"2", None]
    assert await store.delete(prefix + "{t}:p")
    assert await store.ping()


async def test_the_issuer_store_works_under_the_issuer_user(acl_redis: AclRedis) -> None:
    store = redis_store(acl_redis.url("issuer"))  # as the issuer makes it: keys under issuer:
    try:
        await _every_store_operation(store, "")
    finally:
        await store.close()


async def test_the_issuer_user_may_draw_githubs_pace(acl_redis: AclRedis) -> None:
    store = redis_store(acl_redis.url("issuer"))
    try:
        paid = await store.draw(["{gh:pace}:token-1"], 1, rate=1, capacity=10)
        assert paid.index == 0
    finally:
        await store.close()


async def test_the_builder_store_works_under_the_builder_user(acl_redis: AclRedis) -> None:
    store = RedisStore.from_url(acl_redis.url("builder"))  # the builder names its keys builder:
    try:
        await _every_store_operation(store, "builder:")
    finally:
        await store.close()


async def test_a_store_refused_by_the_acl_says_so(acl_redis: AclRedis) -> None:
    store = RedisStore.from_url(acl_redis.url("builder"))
    try:
        with pytest.raises(StoreUnavailable, match="ACL"):
            await store.set("issuer:keyring", b"forged")
    finally:
        await store.close()
