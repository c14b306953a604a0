"""The challenge relay over real sockets (``POST /claim`` with ``relay``, ``GET /relay/...``,
the exchange of a relay claim), and its slots in the store, Redis and memory alike."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from issuer.oidc.abuse import AbuseConfig
from issuer.oidc.relay import RelayLimits, RelayPending, RelaySlots, SlotKey, Verdict
from issuer.sim import GitHubSim
from issuer.store import RedisStore, Store
from issuer.web.errors import ApiError
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import ForkRun, bearer, issuer_in_thread

SLOT = "build"


def _relay_url(issuer_url: str, pr: ForkRun, *, slot: str = SLOT, attempt: int = 0) -> str:
    run = pr.run
    return (
        f"{issuer_url}/relay/{pr.upstream.full_name}/runs/{run.id}/attempts/"
        f"{attempt or run.run_attempt}/{slot}"
    )


def _claim(http: httpx.Client, issuer_url: str, pr: ForkRun, **fields: object) -> dict[str, str]:
    body = pr.claim_body(run_attempt=pr.run.run_attempt, **fields)
    answer = http.post(f"{issuer_url}/claim", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, str] = answer.json()
    return created


def _relay_claim(http: httpx.Client, issuer_url: str, pr: ForkRun) -> dict[str, str]:
    return _claim(http, issuer_url, pr, relay=SLOT)


# -- GET /relay -------------------------------------------------------------------------------


def test_relay_is_pending_with_retry_after_while_the_slot_has_no_claim(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    answer = http.get(_relay_url(issuer_url, pr), params={"wait": 0})
    assert answer.status_code == 202
    assert answer.json()["status"] == "pending"
    assert answer.headers["Retry-After"].isdigit()


def test_relay_answers_the_challenge_of_the_slots_one_claim(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = _relay_claim(http, issuer_url, pr)
    answer = http.get(_relay_url(issuer_url, pr), params={"wait": 0})
    assert answer.status_code == 200
    assert answer.json() == {
        "challenge_line": claim["challenge_line"],
        "challenge_code": claim["challenge_code"],
        "expires_at": claim["expires_at"],
    }


def test_relay_long_polls_until_the_claim_arrives(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool, httpx.Client(timeout=40) as poller:
        waiting = pool.submit(poller.get, _relay_url(issuer_url, pr), params={"wait": 30})
        claim = _relay_claim(http, issuer_url, pr)
        answer = waiting.result(timeout=40)
    assert answer.status_code == 200
    assert answer.json()["challenge_code"] == claim["challenge_code"]


def test_relay_finds_the_slot_whatever_the_case_of_the_repository(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = _relay_claim(http, issuer_url, pr)
    upper = _relay_url(issuer_url, pr).replace(pr.upstream.full_name, pr.upstream.full_name.upper())
    assert http.get(upper).json()["challenge_code"] == claim["challenge_code"]


def test_a_slot_is_per_attempt(http: httpx.Client, issuer_url: str, pr: ForkRun) -> None:
    _relay_claim(http, issuer_url, pr)
    answer = http.get(_relay_url(issuer_url, pr, attempt=pr.run.run_attempt + 1))
    assert answer.status_code == 202


def test_a_claim_without_relay_is_in_no_slot(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    _claim(http, issuer_url, pr)
    assert http.get(_relay_url(issuer_url, pr)).status_code == 202


def test_a_second_claim_on_the_slot_makes_relay_answer_409(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    _relay_claim(http, issuer_url, pr)
    _relay_claim(http, issuer_url, pr)
    answer = http.get(_relay_url(issuer_url, pr))
    assert answer.status_code == 409
    assert answer.json()["error"] == "relay_contested"
    assert "claimed more than once" in answer.json()["error_description"]


def test_relay_never_shows_a_claim_id(http: httpx.Client, issuer_url: str, pr: ForkRun) -> None:
    claim = _relay_claim(http, issuer_url, pr)
    assert claim["claim_id"] not in http.get(_relay_url(issuer_url, pr)).text


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("owner", "/relay/-bad/repo/runs/1/attempts/1/build"),
        ("repo", "/relay/owner/%2E%2E/runs/1/attempts/1/build"),
        ("repo", "/relay/owner/re%20po/runs/1/attempts/1/build"),
        ("run_id", "/relay/owner/repo/runs/0/attempts/1/build"),
        ("run_id", "/relay/owner/repo/runs/99999999999999999999/attempts/1/build"),
        ("attempt", "/relay/owner/repo/runs/1/attempts/one/build"),
        ("slot", "/relay/owner/repo/runs/1/attempts/1/bu%20ild"),
        ("slot", "/relay/owner/repo/runs/1/attempts/1/" + "s" * 65),
    ],
)
def test_a_malformed_relay_path_is_400_naming_the_field(
    http: httpx.Client, issuer_url: str, field: str, path: str
) -> None:
    answer = http.get(issuer_url + path)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert answer.json()["error_description"].startswith(f"{field} must be")


def test_a_malformed_wait_is_400(http: httpx.Client, issuer_url: str, pr: ForkRun) -> None:
    answer = http.get(_relay_url(issuer_url, pr), params={"wait": "soon"})
    assert answer.status_code == 400
    assert "wait" in answer.json()["error_description"]


def test_relay_asks_github_nothing(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    before = sim.counted_requests()
    http.get(_relay_url(issuer_url, pr, slot="never-claimed"), params={"wait": 2})
    assert sim.counted_requests() == before


# -- POST /claim with relay -------------------------------------------------------------------


def test_a_relay_claim_without_run_attempt_is_400(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    answer = http.post(f"{issuer_url}/claim", json=pr.claim_body(relay=SLOT))
    assert answer.status_code == 400
    assert answer.json()["error_description"].startswith("run_attempt is required with relay")


@pytest.mark.parametrize("relay", ["", "a/b", "s" * 65, 7, ["build"]])
def test_a_malformed_relay_slot_in_a_claim_is_400(
    http: httpx.Client, issuer_url: str, pr: ForkRun, relay: object
) -> None:
    body = pr.claim_body(run_attempt=pr.run.run_attempt, relay=relay)
    answer = http.post(f"{issuer_url}/claim", json=body)
    assert answer.status_code == 400
    assert answer.json()["error_description"].startswith("relay must be a slot name")


# -- the exchange of a relay claim ------------------------------------------------------------


def _print_in_a_finished_job(pr: ForkRun, name: str, *lines: str) -> None:
    job = pr.job(name)
    pr.client_step(job, *lines, script=f"issuer token relay --slot {SLOT}")
    pr.sim.finish_job(job)


def test_the_only_claim_of_a_slot_gets_its_token_once_the_relay_printed_it(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = _relay_claim(http, issuer_url, pr)
    _print_in_a_finished_job(
        pr, "relay", http.get(_relay_url(issuer_url, pr)).json()["challenge_line"]
    )
    answer = http.post(claim["exchange_url"], headers=bearer(claim), params={"wait": 30})
    assert answer.status_code == 200, answer.text


def test_an_exchange_on_a_contested_slot_is_403_run_rejected(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = _relay_claim(http, issuer_url, pr)
    _relay_claim(http, issuer_url, pr)
    answer = http.post(claim["exchange_url"], headers=bearer(claim), params={"wait": 5})
    assert answer.status_code == 403
    assert answer.json()["error"] == "run_rejected"
    assert "was claimed more than once" in answer.json()["error_description"]
    assert "re-run the workflow" in answer.json()["error_description"]


def test_a_slot_contested_after_its_line_was_seen_still_yields_no_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    """The check holds at issuance: the line is seen first, the stranger's claim lands after,
    and only then is the slot's claim exchanged."""
    claim = _relay_claim(http, issuer_url, pr)
    witness = _claim(http, issuer_url, pr)  # seen in the same look as the relayed line
    _print_in_a_finished_job(pr, "relay", claim["challenge_line"], witness["challenge_line"])
    assert (
        http.post(witness["exchange_url"], headers=bearer(witness), params={"wait": 30}).status_code
        == 200
    )
    _relay_claim(http, issuer_url, pr)  # the stranger
    answer = http.post(claim["exchange_url"], headers=bearer(claim), params={"wait": 0})
    assert answer.status_code == 403
    assert "was claimed more than once" in answer.json()["error_description"]


# -- the slot in the shared store -------------------------------------------------------------

KEY = SlotKey("octo-org/octo-repo", 42, 1, SLOT)


def _slots(store: Store, **limits: int) -> RelaySlots:
    return RelaySlots(
        store,
        claim_ttl=600,
        poll_interval=1,
        stopping=asyncio.Event(),
        limits=RelayLimits(**limits),
    )


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


async def test_a_slots_one_claim_may_get_its_token(store: Store) -> None:
    slots = _slots(store)
    await slots.register(KEY, _digest("a"), "code-a" * 4, 2**40)
    assert await slots.verdict(KEY, _digest("a")) is Verdict.ONLY


async def test_a_second_claim_contests_the_slot_for_the_first_claim_too(store: Store) -> None:
    slots = _slots(store)
    await slots.register(KEY, _digest("a"), "code-a" * 4, 2**40)
    await slots.register(KEY, _digest("b"), "code-b" * 4, 2**40)
    assert await slots.verdict(KEY, _digest("a")) is Verdict.CONTESTED


async def test_a_claim_not_in_its_slot_is_gone(store: Store) -> None:
    assert await _slots(store).verdict(KEY, _digest("a")) is Verdict.GONE


async def test_relay_polls_over_the_address_limit_are_429(store: Store) -> None:
    slots = _slots(store, polls_per_address=2)
    await slots.check_rate("192.0.2.1")
    await slots.check_rate("192.0.2.1")
    with pytest.raises(ApiError) as refused:
        await slots.check_rate("192.0.2.1")
    assert refused.value.status == 429 and refused.value.retry_after


async def test_a_poll_beyond_the_replicas_waiting_cap_answers_without_waiting(
    store: Store,
) -> None:
    stopping = asyncio.Event()
    slots = RelaySlots(
        store, claim_ttl=600, poll_interval=1, stopping=stopping, limits=RelayLimits(max_waiting=1)
    )
    first = asyncio.create_task(slots.relay(KEY, 30))
    await asyncio.sleep(0)  # the first poll runs up to its first read of the store
    assert slots.waiting == 1
    second = await asyncio.wait_for(slots.relay(KEY, 30), 10)  # guard: never 30 s
    stopping.set()
    assert isinstance(second, RelayPending)
    assert isinstance(await first, RelayPending)


@pytest.fixture
def redis_issuer(github: BackgroundServer, redis_url: str) -> Iterator[str]:
    with issuer_in_thread(github.url_of(0), store=RedisStore.from_url(redis_url)) as (url, _):
        yield url


def test_the_store_holds_no_claim_id_of_a_relay_claim(
    http: httpx.Client, redis_issuer: str, redis_url: str, pr: ForkRun
) -> None:
    claim = _relay_claim(http, redis_issuer, pr)
    raw = redis.Redis.from_url(redis_url)
    keys = list(raw.scan_iter("*"))
    slot = [key for key in keys if key.startswith(b"{relay:")]
    assert len(slot) == 1
    assert list(raw.hkeys(slot[0])) == [_digest(claim["claim_id"]).encode()]
    secret = claim["claim_id"].encode()
    for key in keys:
        assert secret not in key
        if raw.type(key) == b"hash":
            assert all(secret not in f + v for f, v in raw.hgetall(key).items()), key
        else:
            assert secret not in (raw.get(key) or b""), key


# -- strangers and the claim limits ------------------------------------------------------------


def _claim_from(
    http: httpx.Client, issuer_url: str, pr: ForkRun, address: str, **fields: object
) -> httpx.Response:
    body = pr.claim_body(run_attempt=pr.run.run_attempt, **fields)
    return http.post(f"{issuer_url}/claim", json=body, headers={"X-Forwarded-For": address})


def _behind_a_proxy(**limits: int) -> AbuseConfig:
    return AbuseConfig(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),), **limits)


def test_a_stranger_filling_the_runs_cap_does_not_keep_the_build_jobs_claim_out(
    http: httpx.Client, github: BackgroundServer, pr: ForkRun
) -> None:
    """The attack: claim the slot first, then fill the run's claim cap from two addresses, so
    that the build job's claim is refused and never contests the slot. The cap counts per
    client address: the build job's claim lands, the slot is contested, nobody gets a token
    and the build job says why."""
    abuse = _behind_a_proxy(claims_per_run=5, claims_per_address=0, claims_per_repository=0)
    with issuer_in_thread(github.url_of(0), abuse=abuse) as (url, _config):
        first = _claim_from(http, url, pr, "203.0.113.66", relay=SLOT)
        assert first.status_code == 201
        for address in ("203.0.113.66", "203.0.113.67"):
            while _claim_from(http, url, pr, address).status_code == 201:
                pass
        build = _claim_from(http, url, pr, "198.51.100.7", relay=SLOT)
        assert build.status_code == 201, build.text
        assert http.get(_relay_url(url, pr)).status_code == 409
        answer = http.post(
            build.json()["exchange_url"], headers=bearer(build.json()), params={"wait": 5}
        )
        assert answer.status_code == 403
        assert "was claimed more than once" in answer.json()["error_description"]


def test_a_refused_claim_on_a_slot_contests_it(
    http: httpx.Client, github: BackgroundServer, pr: ForkRun
) -> None:
    """The stranger claims the slot, then spends the repository's claims so that the build
    job's claim is refused (429): the refusal contests the slot all the same, so the relay
    job prints nothing and the stranger's claim gets no token."""
    abuse = _behind_a_proxy(claims_per_repository=3, claims_per_address=0, claims_per_run=0)
    with issuer_in_thread(github.url_of(0), abuse=abuse) as (url, _config):
        stranger = _claim_from(http, url, pr, "203.0.113.66", relay=SLOT).json()
        while _claim_from(http, url, pr, "203.0.113.67").status_code == 201:
            pass
        refused = _claim_from(http, url, pr, "198.51.100.7", relay=SLOT)
        assert refused.status_code == 429
        relayed = http.get(_relay_url(url, pr))
        assert relayed.status_code == 409, relayed.text
        assert relayed.json()["error"] == "relay_contested"
        answer = http.post(stranger["exchange_url"], headers=bearer(stranger), params={"wait": 2})
        assert answer.status_code == 403
