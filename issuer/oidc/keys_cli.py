"""What the operator reads of the keyring: ``issuer keys list | rotate | retire`` and the check
``issuer serve`` makes before it starts.

Every failure is one line naming the variable to look at; times are UTC, and a time still to
come says so.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from issuer.oidc.config import IssuerConfig
from issuer.oidc.keys import ACTIVE, NEXT, Keys, KeyUnwrapError, NoKeys, UnknownKey
from issuer.oidc.service import key_policy, redis_store
from issuer.store import StoreUnavailable
from issuer.web.settings import ConfigError

T = TypeVar("T")


def when(seconds: object) -> str:
    """Unix seconds as an operator reads them: ISO 8601, UTC."""
    assert isinstance(seconds, int | float)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(summary: list[dict[str, object]], now: float | None = None) -> list[str]:
    """One line per key: kid, algorithm, state, and its times; a time to come says so."""
    now = time.time() if now is None else now
    lines = []
    for key in summary:
        activated, retired = key["activated"], key["retired"]
        assert isinstance(activated, int)
        parts = [str(key["kid"]), str(key["alg"]), f"{key['state']:<8}"]
        parts.append(f"created {when(key['created'])}")
        if key["state"] == NEXT:
            parts.append(f"activates {when(activated)} (scheduled)")
        else:
            parts.append(f"activated {when(activated)}")
        if isinstance(retired, int):
            if retired > now:
                parts.append(f"retires {when(retired)} (scheduled: its successor activates)")
            else:
                parts.append(f"retired {when(retired)}")
        elif key["state"] == ACTIVE:
            parts.append("no successor yet")
        lines.append("  ".join(parts))
    return lines


def _problem(error: StoreUnavailable | KeyUnwrapError | NoKeys) -> ConfigError:
    """The operator's view of what failed, naming the variable to look at."""
    if isinstance(error, StoreUnavailable):
        return ConfigError(
            "ISSUER_REDIS_URL",
            f"Redis did not answer ({error}): check the URL and that Redis is up",
        )
    if isinstance(error, KeyUnwrapError):
        return ConfigError(
            "ISSUER_KEY_ENCRYPTION_KEY",
            "does not unwrap the signing keys stored in Redis: it is not the key they were "
            "wrapped with",
        )
    return ConfigError(
        "ISSUER_REDIS_URL", "holds no signing keys yet: the first `issuer serve` makes one"
    )


async def with_keys(config: IssuerConfig, act: Callable[[Keys], Awaitable[T]]) -> T:
    """``act`` on the stored keyring (never created here); raises ConfigError naming the
    variable behind a store that does not answer, a key-encryption key that does not fit,
    or a store without keys."""
    assert config.redis_url is not None and config.key_encryption_key is not None
    store = redis_store(config.redis_url)
    try:
        keys = Keys(store, config.key_encryption_key, key_policy(config))
        await keys.load(create=False)
        return await act(keys)
    except (StoreUnavailable, KeyUnwrapError, NoKeys) as error:
        raise _problem(error) from None
    finally:
        await store.close()


async def check_keyring(config: IssuerConfig) -> None:
    """What ``issuer serve`` checks before it starts: Redis answers, and the key-encryption
    key unwraps the stored keys (an empty store is fine: serve makes the first key)."""
    assert config.redis_url is not None and config.key_encryption_key is not None
    store = redis_store(config.redis_url)
    try:
        await Keys(store, config.key_encryption_key, key_policy(config)).load(create=False)
    except NoKeys:
        return
    except (StoreUnavailable, KeyUnwrapError) as error:
        raise _problem(error) from None
    finally:
        await store.close()


__all__ = ["UnknownKey", "check_keyring", "describe", "when", "with_keys"]
