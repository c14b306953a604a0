"""``POST /github/webhook`` (API.md): a signed delivery tells the issuer when to look, never
what was printed; a bad signature changes nothing; a delivery id is taken once (issue 16)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from issuer.sim import GitHubSim
from issuer.store import RedisStore
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import ForkRun, bearer, issuer_in_thread
from tests.e2e.webhooks import SECRET, deliver, job_event, run_event, signature


@pytest.fixture
def hooked_issuer(github: BackgroundServer, redis_url: str) -> Iterator[str]:
    store = RedisStore.from_url(redis_url, prefix="issuer:")
    with issuer_in_thread(github.url_of(0), store=store, github_webhook_secret=SECRET.encode()) as (
        url,
        _config,
    ):
        yield url


@pytest.fixture
def keys(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


def claim(http: httpx.Client, url: str, pr: ForkRun) -> dict[str, Any]:
    response = http.post(f"{url}/claim", json=pr.claim_body(run_attempt=1))
    assert response.status_code == 201, response.text
    return dict(response.json())


def requests_since(sim: GitHubSim, start: int) -> list[str]:
    with sim.lock:
        return [path for _method, path, _status, _auth in sim.request_log[start:]]


def first_look_done(sim: GitHubSim, pr: ForkRun) -> None:
    """Until the issuer read the run once (its first look)."""
    run = f"/actions/runs/{pr.run.id}/attempts/1"
    deadline = time.monotonic() + 10
    while not any(path.endswith(run) for path in requests_since(sim, 0)):
        assert time.monotonic() < deadline, "the issuer never looked at the run"
        time.sleep(0.02)


class Exchange(threading.Thread):
    """An exchange long-polling in the background, as the client's step does."""

    def __init__(self, http: httpx.Client, made: dict[str, Any], wait: float = 25) -> None:
        super().__init__(daemon=True)
        self.http, self.made, self.wait = http, made, wait
        self.response: httpx.Response | None = None

    def run(self) -> None:
        self.response = self.http.post(
            self.made["exchange_url"], headers=bearer(self.made), params={"wait": self.wait}
        )

    def answer(self) -> httpx.Response:
        self.join(timeout=self.wait + 10)
        assert self.response is not None
        return self.response


def test_a_delivery_without_a_signature_is_401_and_changes_nothing(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun, keys: redis.Redis
) -> None:
    job = pr.job("relay")
    response = deliver(http, hooked_issuer, "workflow_job", job_event(job, "queued"), sign="")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert keys.keys("issuer:gh:*") == []


def test_a_delivery_signed_with_another_secret_is_401_and_changes_nothing(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun, keys: redis.Redis
) -> None:
    job = pr.job("relay")
    payload = job_event(job, "queued")
    response = deliver(http, hooked_issuer, "workflow_job", payload, secret="x" * 40)
    assert response.status_code == 401
    assert keys.keys("issuer:gh:*") == []


def test_a_delivery_whose_body_was_altered_after_signing_is_401(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun
) -> None:
    job = pr.job("relay")
    genuine = job_event(job, "queued")

    signed_for = signature(json.dumps(genuine).encode())
    altered = {**genuine, "action": "completed"}
    response = deliver(http, hooked_issuer, "workflow_job", altered, sign=signed_for)
    assert response.status_code == 401


def test_a_signed_delivery_is_taken(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun, keys: redis.Redis
) -> None:
    job = pr.job("relay")
    response = deliver(http, hooked_issuer, "workflow_job", job_event(job, "in_progress"))
    assert response.status_code == 202
    assert response.json() == {"status": "taken"}
    assert keys.exists(f"issuer:gh:hooked:{pr.upstream.full_name.lower()}")


def test_a_replayed_delivery_id_is_taken_once(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun
) -> None:
    job = pr.job("relay")
    payload = job_event(job, "in_progress")
    first = deliver(http, hooked_issuer, "workflow_job", payload, delivery="d-1")
    again = deliver(http, hooked_issuer, "workflow_job", payload, delivery="d-1")
    assert (first.json()["status"], again.json()["status"]) == ("taken", "duplicate")


def test_a_delivery_refused_for_its_signature_does_not_use_up_its_id(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun
) -> None:
    payload = job_event(pr.job("relay"), "in_progress")
    deliver(http, hooked_issuer, "workflow_job", payload, delivery="d-2", sign="sha256=" + "0" * 64)
    genuine = deliver(http, hooked_issuer, "workflow_job", payload, delivery="d-2")
    assert genuine.json()["status"] == "taken"


def test_an_event_the_issuer_does_not_use_is_ignored(
    http: httpx.Client, hooked_issuer: str
) -> None:
    response = deliver(http, hooked_issuer, "ping", {"zen": "Keep it logically awesome."})
    assert response.status_code == 202
    assert response.json() == {"status": "ignored"}


def test_a_signed_delivery_that_is_no_workflow_event_is_a_400(
    http: httpx.Client, hooked_issuer: str
) -> None:
    response = deliver(http, hooked_issuer, "workflow_job", {"action": "completed"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_without_a_webhook_secret_there_is_no_webhook(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    response = deliver(http, issuer_url, "workflow_job", job_event(pr.job("relay"), "queued"))
    assert response.status_code == 404


def test_a_completed_jobs_delivery_yields_the_token_from_that_jobs_log_alone(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun, sim: GitHubSim
) -> None:
    relay, other, build = pr.job("relay"), pr.job("lint"), pr.job("build")
    deliver(http, hooked_issuer, "workflow_job", job_event(build, "in_progress"))
    made = claim(http, hooked_issuer, pr)
    waiting = Exchange(http, made)
    waiting.start()
    first_look_done(sim, pr)
    with sim.lock:
        start = len(sim.request_log)
    sim.start_step(other, "Lint", script="make lint")
    sim.finish_job(other)  # completed, but no delivery says so
    pr.print_and_finish(relay, made["challenge_line"])
    deliver(http, hooked_issuer, "workflow_job", job_event(relay, "completed"))
    assert waiting.answer().status_code == 200
    read = requests_since(sim, start)
    base = f"/repos/{pr.upstream.full_name}/actions"
    assert f"{base}/jobs/{relay.id}" in read
    assert f"{base}/jobs/{relay.id}/logs" in read
    assert not [path for path in read if str(other.id) in path or path.endswith("/jobs")]


def test_a_delivery_naming_a_job_of_another_run_gives_no_token(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun, sim: GitHubSim
) -> None:
    """Were the secret to leak, a delivery still proves nothing: the job it names is read
    through the API, and a job of another run is no job of this one."""
    attacker = sim.add_repository("attacker/octo-repo", fork_of=pr.upstream)
    other_run = sim.create_run(pr.upstream, head_repository=attacker, actor="attacker")
    elsewhere = ForkRun(sim, pr.upstream, attacker, other_run)  # same repository, another run
    victim_job = pr.job("build")
    deliver(http, hooked_issuer, "workflow_job", job_event(victim_job, "in_progress"))
    made = claim(http, hooked_issuer, pr)
    forged = elsewhere.job("attacker")
    elsewhere.print_and_finish(forged, made["challenge_line"])
    payload = job_event(forged, "completed", run=pr.run)
    assert deliver(http, hooked_issuer, "workflow_job", payload).status_code == 202
    waiting = Exchange(http, made, wait=3)
    waiting.start()
    answer = waiting.answer()
    assert answer.status_code == 202, answer.text


def test_a_lost_delivery_still_ends_in_a_token_through_the_safety_poll(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun
) -> None:
    relay, build = pr.job("relay"), pr.job("build")
    deliver(http, hooked_issuer, "workflow_job", job_event(build, "in_progress"))
    made = claim(http, hooked_issuer, pr)
    waiting = Exchange(http, made)
    waiting.start()
    pr.print_and_finish(relay, made["challenge_line"])  # and GitHub never delivers it
    assert waiting.answer().status_code == 200


def test_a_completed_runs_delivery_makes_the_issuer_read_the_run_again(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun, sim: GitHubSim
) -> None:
    build = pr.job("build")
    deliver(http, hooked_issuer, "workflow_job", job_event(build, "in_progress"))
    made = claim(http, hooked_issuer, pr)
    waiting = Exchange(http, made, wait=8)
    waiting.start()
    sim.finish_run(pr.run)
    deliver(http, hooked_issuer, "workflow_run", run_event(pr.run, "completed"))
    answer = waiting.answer()
    assert answer.status_code == 403, answer.text
    assert "has completed" in answer.json()["error_description"]


def test_the_first_look_at_a_run_where_deliveries_arrive_reads_the_run_alone(
    http: httpx.Client, hooked_issuer: str, pr: ForkRun, sim: GitHubSim
) -> None:
    build = pr.job("build")
    deliver(http, hooked_issuer, "workflow_job", job_event(build, "in_progress"))
    made = claim(http, hooked_issuer, pr)
    Exchange(http, made, wait=1).start()
    first_look_done(sim, pr)
    time.sleep(0.5)
    base = f"/repos/{pr.upstream.full_name}/actions/runs/{pr.run.id}/attempts/1"
    assert requests_since(sim, 0) == [base]


# -- the simulator's own deliveries: signed, and late, twice, out of order or lost ----------


@pytest.fixture
def delivering(sim: GitHubSim, hooked_issuer: str) -> Iterator[str]:
    """GitHub delivers to the issuer from now on: its URL."""
    sim.deliver_to(f"{hooked_issuer}/github/webhook", SECRET)
    yield hooked_issuer
    sim.deliver_to(None)


def reads_of(sim: GitHubSim, path: str) -> int:
    return sum(1 for read in requests_since(sim, 0) if read == path)


def token_through_deliveries(http: httpx.Client, url: str, pr: ForkRun, sim: GitHubSim) -> int:
    """A relay job prints the line and completes while the build job's exchange waits: the
    answer's status, once the deliveries made so far were sent."""
    relay, build = pr.job("relay"), pr.job("build")
    made = claim(http, url, pr)
    waiting = Exchange(http, made)
    waiting.start()
    first_look_done(sim, pr)
    pr.print_and_finish(relay, made["challenge_line"])
    assert sim.flush_deliveries(timeout=20)
    status = waiting.answer().status_code
    sim.finish_job(build)
    return status


def test_githubs_delivery_of_the_completed_job_brings_the_token(
    http: httpx.Client, delivering: str, pr: ForkRun, sim: GitHubSim
) -> None:
    assert token_through_deliveries(http, delivering, pr, sim) == 200
    relay = next(job for job in pr.run.jobs if job.name == "relay")
    assert reads_of(sim, f"/repos/{pr.upstream.full_name}/actions/jobs/{relay.id}") == 1


def test_a_delivery_sent_twice_is_read_once(
    http: httpx.Client, delivering: str, pr: ForkRun, sim: GitHubSim
) -> None:
    sim.settings.webhook_duplicate = True
    assert token_through_deliveries(http, delivering, pr, sim) == 200
    relay = next(job for job in pr.run.jobs if job.name == "relay")
    assert reads_of(sim, f"/repos/{pr.upstream.full_name}/actions/jobs/{relay.id}/logs") == 1


def test_deliveries_out_of_order_still_bring_the_token(
    http: httpx.Client, delivering: str, pr: ForkRun, sim: GitHubSim
) -> None:
    sim.settings.webhook_reorder = 3
    assert token_through_deliveries(http, delivering, pr, sim) == 200


def test_a_late_delivery_still_brings_the_token(
    http: httpx.Client, delivering: str, pr: ForkRun, sim: GitHubSim
) -> None:
    sim.settings.webhook_delay = 1.5
    assert token_through_deliveries(http, delivering, pr, sim) == 200


def test_deliveries_github_lost_end_in_a_token_through_the_safety_poll(
    http: httpx.Client, delivering: str, pr: ForkRun, sim: GitHubSim
) -> None:
    deliver(http, delivering, "workflow_job", job_event(pr.job("lint"), "queued"))
    sim.settings.webhook_drop = True
    assert token_through_deliveries(http, delivering, pr, sim) == 200
