"""Abuse controls: their settings, the limits they count in the store, who the client is."""

from __future__ import annotations

import pytest

from issuer.oidc.abuse import AbuseConfig, AbuseControls
from issuer.oidc.claims import ClaimRequest
from issuer.oidc.config import ConfigError
from issuer.store import MemoryStore, RedisStore, Store
from issuer.web.errors import ApiError


class Clock:
    def __init__(self, now: float = 1_000_040.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claim(
    repository: str = "octo-org/octo-repo", run_id: int = 1, attempt: int | None = None
) -> ClaimRequest:
    return ClaimRequest(repository, run_id, attempt, "https://aud.example")


def controls(store: Store, clock: Clock | None = None, **settings: object) -> AbuseControls:
    base: dict[str, object] = {
        "claims_per_address": 0,
        "claims_per_repository": 0,
        "claims_per_run": 0,
    }
    config = AbuseConfig(**{**base, **settings})  # type: ignore[arg-type]
    return AbuseControls(config, store, claim_ttl=600, clock=clock or Clock())


async def refusal(control: AbuseControls, address: str, request: ClaimRequest) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await control.check_claim(address, request)
    return caught.value


# --- settings -----------------------------------------------------------------------------


def test_nothing_set_gives_the_default_limits() -> None:
    config = AbuseConfig.from_env({})
    assert (config.claims_per_address, config.claims_per_repository) == (60, 600)
    assert (config.rate_window, config.claims_per_run) == (60, 100)
    assert config.trusted_proxies == ()
    assert config.repository_allow is None and config.repository_deny == ()


@pytest.mark.parametrize(
    "name",
    ["ISSUER_CLAIMS_PER_ADDRESS", "ISSUER_CLAIMS_PER_REPOSITORY", "ISSUER_CLAIMS_PER_RUN"],
)
def test_a_limit_that_is_not_a_whole_number_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}: must be a whole number"):
        AbuseConfig.from_env({name: "ten"})


def test_a_rate_window_out_of_range_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_CLAIM_RATE_WINDOW: "):
        AbuseConfig.from_env({"ISSUER_CLAIM_RATE_WINDOW": "0"})


def test_a_trusted_proxy_that_is_not_an_address_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_TRUSTED_PROXIES: 'proxy.local' is not"):
        AbuseConfig.from_env({"ISSUER_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"})


def test_a_trusted_network_with_host_bits_set_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_TRUSTED_PROXIES: "):
        AbuseConfig.from_env({"ISSUER_TRUSTED_PROXIES": "10.0.0.1/8"})


@pytest.mark.parametrize("entry", ["octo-org", "a/b/c", "octo org/x", "(a|b)/c"])
def test_a_repository_rule_that_is_not_owner_slash_repo_is_refused(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_REPOSITORY_DENY: "):
        AbuseConfig.from_env({"ISSUER_REPOSITORY_DENY": entry})


def test_rules_match_whole_names_whatever_their_case() -> None:
    config = AbuseConfig.from_env({"ISSUER_REPOSITORY_ALLOW": "Octo-Org/*, other/exact"})
    assert config.repository_allow is not None
    octo, exact = config.repository_allow
    assert octo.matches("octo-org/anything") and exact.matches("OTHER/Exact")
    assert not exact.matches("other/exact-but-longer")
    assert not exact.matches("xother/exact")


def test_a_wildcard_never_crosses_the_slash() -> None:
    (rule,) = AbuseConfig.from_env({"ISSUER_REPOSITORY_DENY": "evil*/x"}).repository_deny
    assert rule.matches("evil-org/x")
    assert not rule.matches("evil/y/x")


# --- limits -------------------------------------------------------------------------------


async def test_claims_over_the_address_limit_get_429_with_retry_after(store: Store) -> None:
    clock = Clock(1_000_040.0)  # 20 s into a 60 s window
    control = controls(store, clock, claims_per_address=2)
    for run_id in (1, 2):
        await control.check_claim("192.0.2.1", claim(run_id=run_id))
    error = await refusal(control, "192.0.2.1", claim(run_id=3))
    assert (error.status, error.code, error.retry_after) == (429, "rate_limited", 40)


async def test_the_address_limit_starts_again_in_the_next_window(store: Store) -> None:
    clock = Clock()
    control = controls(store, clock, claims_per_address=1)
    await control.check_claim("192.0.2.1", claim())
    await refusal(control, "192.0.2.1", claim())
    clock.now += 60
    await control.check_claim("192.0.2.1", claim())


async def test_each_address_has_its_own_budget(store: Store) -> None:
    control = controls(store, claims_per_address=1)
    await control.check_claim("192.0.2.1", claim())
    await control.check_claim("192.0.2.2", claim())


async def test_the_repository_limit_counts_claims_from_every_address(store: Store) -> None:
    control = controls(store, claims_per_repository=2)
    await control.check_claim("192.0.2.1", claim(run_id=1))
    await control.check_claim("192.0.2.2", claim(run_id=2))
    error = await refusal(control, "192.0.2.3", claim(run_id=3))
    assert error.code == "rate_limited"
    await control.check_claim("192.0.2.3", claim("octo-org/other", run_id=3))


async def test_the_repository_limit_ignores_the_case_of_the_name(store: Store) -> None:
    control = controls(store, claims_per_repository=1)
    await control.check_claim("192.0.2.1", claim("octo-org/octo-repo"))
    await refusal(control, "192.0.2.1", claim("Octo-Org/Octo-Repo"))


async def test_a_limit_of_zero_is_no_limit(store: Store) -> None:
    control = controls(store)
    for _ in range(20):
        await control.check_claim("192.0.2.1", claim())


async def test_a_run_gets_at_most_its_cap_of_unexpired_claims(store: Store) -> None:
    clock = Clock()
    control = controls(store, clock, claims_per_run=2)
    await control.check_claim("192.0.2.1", claim())
    clock.now += 100
    await control.check_claim("192.0.2.1", claim())
    error = await refusal(control, "192.0.2.1", claim())
    # the first claim expires 600 s after it was made, 500 s from now
    assert (error.status, error.code, error.retry_after) == (429, "rate_limited", 500)


async def test_a_run_takes_claims_again_once_its_claims_expired(store: Store) -> None:
    clock = Clock()
    control = controls(store, clock, claims_per_run=1)
    await control.check_claim("192.0.2.1", claim())
    await refusal(control, "192.0.2.1", claim())
    clock.now += 600
    await control.check_claim("192.0.2.1", claim())


async def test_the_run_cap_counts_every_attempt_the_caller_names(store: Store) -> None:
    control = controls(store, claims_per_run=2)
    await control.check_claim("192.0.2.1", claim(attempt=1))
    await control.check_claim("192.0.2.1", claim(attempt=2))
    await refusal(control, "192.0.2.1", claim(attempt=99))


async def test_a_refused_claim_takes_no_place_under_the_run_cap(store: Store) -> None:
    clock = Clock()
    control = controls(store, clock, claims_per_run=1)
    await control.check_claim("192.0.2.1", claim())
    for _ in range(3):
        await refusal(control, "192.0.2.1", claim())
    clock.now += 600  # only the accepted claim was counted, and it has expired
    await control.check_claim("192.0.2.1", claim())


async def test_replicas_sharing_redis_share_the_limits(redis_url: str) -> None:
    first, second = RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)
    try:
        clock = Clock()
        await controls(first, clock, claims_per_address=1).check_claim("192.0.2.1", claim())
        error = await refusal(controls(second, clock, claims_per_address=1), "192.0.2.1", claim())
        assert error.code == "rate_limited"
    finally:
        await first.close()
        await second.close()


# --- repository lists ---------------------------------------------------------------------


async def test_a_denied_repository_is_refused_with_403(store: Store) -> None:
    deny = AbuseConfig.from_env({"ISSUER_REPOSITORY_DENY": "evil-org/*"}).repository_deny
    control = controls(store, repository_deny=deny)
    error = await refusal(control, "192.0.2.1", claim("evil-org/x"))
    assert (error.status, error.code) == (403, "repository_not_allowed")
    await control.check_claim("192.0.2.1", claim("good-org/x"))


async def test_a_repository_outside_the_allow_list_is_refused_with_403(store: Store) -> None:
    allow = AbuseConfig.from_env({"ISSUER_REPOSITORY_ALLOW": "good-org/*"}).repository_allow
    control = controls(store, repository_allow=allow)
    error = await refusal(control, "192.0.2.1", claim("other-org/x"))
    assert (error.status, error.code) == (403, "repository_not_allowed")
    await control.check_claim("192.0.2.1", claim("good-org/x"))


async def test_the_deny_list_wins_over_the_allow_list(store: Store) -> None:
    config = AbuseConfig.from_env(
        {"ISSUER_REPOSITORY_ALLOW": "good-org/*", "ISSUER_REPOSITORY_DENY": "good-org/bad"}
    )
    control = AbuseControls(config, store, claim_ttl=600)
    error = await refusal(control, "192.0.2.1", claim("good-org/bad"))
    assert error.code == "repository_not_allowed"


# --- who the client is --------------------------------------------------------------------


def test_the_socket_peer_is_the_client_when_no_proxy_is_trusted() -> None:
    control = controls(MemoryStore())
    assert control.client_address("192.0.2.1", ["203.0.113.9"]) == "192.0.2.1"


def test_a_trusted_proxy_is_believed_about_the_client() -> None:
    config = AbuseConfig.from_env({"ISSUER_TRUSTED_PROXIES": "10.0.0.0/8"})
    control = AbuseControls(config, MemoryStore(), claim_ttl=600)
    # the client wrote the left-most hop itself; our proxies appended the right-hand ones
    hops = ["198.51.100.7, 203.0.113.9", "10.1.1.1"]
    assert control.client_address("10.0.0.2", hops) == "203.0.113.9"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    config = AbuseConfig.from_env({"ISSUER_TRUSTED_PROXIES": "10.0.0.0/8"})
    control = AbuseControls(config, MemoryStore(), claim_ttl=600)
    assert control.client_address("192.0.2.1", ["203.0.113.9"]) == "192.0.2.1"


def test_a_malformed_forwarded_hop_stops_the_walk() -> None:
    config = AbuseConfig.from_env({"ISSUER_TRUSTED_PROXIES": "10.0.0.0/8"})
    control = AbuseControls(config, MemoryStore(), claim_ttl=600)
    assert control.client_address("10.0.0.2", ["203.0.113.9, not-an-ip"]) == "10.0.0.2"


def test_ipv6_clients_are_counted_per_64() -> None:
    control = controls(MemoryStore())
    assert control.client_address("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert control.client_address("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
