"""Webhook deliveries: what GitHub sends a GitHub App when a run's jobs move, and how.

Every delivery a test reads goes through `validated` (tests/sim/receiver.py): the signature
over the exact body, GitHub's headers, and githubkit-schemas' webhook models.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from joserfc.jwk import RSAKey

from issuer.sim import GitHubSim, SimRepo, SimRun
from issuer.sim.simulator import DEFAULT_APP_ID, DEFAULT_INSTALLATION_ID
from issuer.web.serving import BackgroundServer
from tests.redis_server import free_port
from tests.sim.receiver import SECRET, Received, Receiver, validated
from tests.sim.support import UPSTREAM


@pytest.fixture
def hooked(sim: GitHubSim, receiver: Receiver) -> Iterator[GitHubSim]:
    """The simulator, delivering to the receiver."""
    sim.deliver_to(receiver.url, SECRET)
    yield sim
    sim.deliver_to(None)
    receiver.gate.set()
    sim.flush_deliveries(10)


def delivered(sim: GitHubSim, receiver: Receiver) -> list[Received]:
    """Everything the receiver got once all deliveries so far were sent, each validated."""
    assert sim.flush_deliveries(10)
    got = receiver.got
    for received in got:
        validated(received)
    return got


def events(got: list[Received]) -> list[tuple[str, str]]:
    return [(r.event, r.action) for r in got]


def finished_job_run(sim: GitHubSim, upstream: SimRepo, fork: SimRepo) -> SimRun:
    run = sim.create_run(upstream, head_repository=fork, actor="contributor")
    job = sim.add_job(run, "claim")
    sim.start_step(job, "Fork OIDC", script="issuer token claim")
    sim.finish_job(job)
    return run


# -- each event at its moment ----------------------------------------------------------------


def test_creating_a_run_delivers_workflow_run_requested(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo, fork: SimRepo
) -> None:
    run = hooked.create_run(upstream, head_repository=fork)
    [received] = delivered(hooked, receiver)
    assert (received.event, received.action) == ("workflow_run", "requested")
    assert received.payload["workflow_run"]["id"] == run.id
    assert received.payload["workflow_run"]["head_repository"]["full_name"] == fork.full_name


def test_adding_a_job_delivers_workflow_job_queued(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    job = hooked.add_job(fork_run, "claim")
    received = delivered(hooked, receiver)[-1]
    assert (received.event, received.action) == ("workflow_job", "queued")
    assert received.payload["workflow_job"]["id"] == job.id
    assert received.payload["workflow_job"]["status"] == "queued"


def test_the_first_job_starting_delivers_the_run_in_progress_then_the_job(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    first, second = hooked.add_job(fork_run, "a"), hooked.add_job(fork_run, "b")
    hooked.start_job(first)
    hooked.start_job(second)
    got = delivered(hooked, receiver)
    assert events(got)[-3:] == [
        ("workflow_run", "in_progress"),
        ("workflow_job", "in_progress"),
        ("workflow_job", "in_progress"),
    ]
    assert got[-1].payload["workflow_job"]["runner_name"] is not None


def test_finishing_a_job_delivers_workflow_job_completed_as_the_api_shows_the_job(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo, fork: SimRepo, api: httpx.Client
) -> None:
    run = finished_job_run(hooked, upstream, fork)
    received = delivered(hooked, receiver)[-1]
    assert (received.event, received.action) == ("workflow_job", "completed")
    shown = api.get(f"{UPSTREAM}/actions/jobs/{run.jobs[0].id}").json()
    assert received.payload["workflow_job"] == shown


def test_finishing_a_run_delivers_workflow_run_completed(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo, fork: SimRepo
) -> None:
    run = finished_job_run(hooked, upstream, fork)
    hooked.finish_run(run, "failure")
    received = delivered(hooked, receiver)[-1]
    assert (received.event, received.action) == ("workflow_run", "completed")
    assert received.payload["workflow_run"]["conclusion"] == "failure"


def test_a_rerun_delivers_workflow_run_requested_for_the_new_attempt(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    hooked.finish_run(fork_run)
    hooked.rerun(fork_run)
    received = delivered(hooked, receiver)[-1]
    assert (received.event, received.action) == ("workflow_run", "requested")
    assert received.payload["workflow_run"]["run_attempt"] == 2


def test_a_whole_run_delivers_every_event_in_order(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo, fork: SimRepo
) -> None:
    hooked.finish_run(finished_job_run(hooked, upstream, fork))
    assert events(delivered(hooked, receiver)) == [
        ("workflow_run", "requested"),
        ("workflow_job", "queued"),
        ("workflow_run", "in_progress"),
        ("workflow_job", "in_progress"),
        ("workflow_job", "completed"),
        ("workflow_run", "completed"),
    ]


# -- what a delivery carries -----------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_the_exact_body_with_the_secret(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    hooked.add_job(fork_run, "claim")
    received = delivered(hooked, receiver)[-1]
    with pytest.raises(AssertionError, match="bad signature"):
        validated(received, secret="another secret")
    with pytest.raises(AssertionError, match="bad signature"):
        validated(Received(received.headers, received.body + b" "))


def test_a_delivery_names_the_installation_of_the_app_added(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo
) -> None:
    public = RSAKey.generate_key(2048).as_pem(private=False).decode()
    hooked.add_app(31337, public, 4242)
    hooked.create_run(upstream)
    [received] = delivered(hooked, receiver)
    assert received.payload["installation"]["id"] == 4242
    assert received.headers["x-github-hook-installation-target-id"] == "31337"


def test_without_an_app_a_delivery_names_a_fixed_installation(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo
) -> None:
    hooked.create_run(upstream)
    [received] = delivered(hooked, receiver)
    assert received.payload["installation"]["id"] == DEFAULT_INSTALLATION_ID
    assert received.headers["x-github-hook-installation-target-id"] == str(DEFAULT_APP_ID)


def test_each_delivery_has_a_fresh_delivery_id_and_the_hooks_id(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    hooked.add_job(fork_run, "a")
    hooked.add_job(fork_run, "b")
    first, second = delivered(hooked, receiver)[-2:]
    assert first.delivery_id != second.delivery_id
    assert first.headers["x-github-hook-id"] == second.headers["x-github-hook-id"]


def test_the_log_records_each_delivery_without_the_secret(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    hooked.add_job(fork_run, "claim")
    received = delivered(hooked, receiver)[-1]
    entry = hooked.deliveries()[-1]
    assert (entry.delivery_id, entry.event, entry.action) == (
        received.delivery_id,
        "workflow_job",
        "queued",
    )
    assert (entry.outcome, entry.status_code) == ("delivered", 202)
    assert SECRET not in repr(hooked.deliveries()) + repr(hooked.webhooks.target)


def test_no_target_no_deliveries(sim: GitHubSim, receiver: Receiver, fork_run: SimRun) -> None:
    sim.add_job(fork_run, "claim")
    assert sim.flush_deliveries(10)
    assert (sim.deliveries(), receiver.got) == ([], [])


# -- how it is sent --------------------------------------------------------------------------


def test_finishing_a_job_does_not_wait_for_the_delivery(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    job = hooked.add_job(fork_run, "claim")
    hooked.start_job(job)
    assert hooked.flush_deliveries(10)
    receiver.gate.clear()  # the receiver holds every answer
    hooked.finish_job(job)
    assert not hooked.deliveries_idle()
    receiver.gate.set()
    assert delivered(hooked, receiver)[-1].action == "completed"


def test_a_5xx_answer_is_recorded_and_not_retried(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo
) -> None:
    receiver.status = 500
    hooked.create_run(upstream)
    assert len(delivered(hooked, receiver)) == 1
    [entry] = hooked.deliveries()
    assert (entry.outcome, entry.status_code) == ("failed", 500)


def test_a_refused_connection_is_recorded_and_not_retried(
    sim: GitHubSim, upstream: SimRepo
) -> None:
    sim.deliver_to(f"http://127.0.0.1:{free_port()}/hook", SECRET)
    sim.create_run(upstream)
    assert sim.flush_deliveries(10)
    [entry] = sim.deliveries()
    assert (entry.outcome, entry.status_code, entry.error) == ("failed", None, "ConnectError")


# -- the switches ----------------------------------------------------------------------------


def test_a_delayed_delivery_waits_its_delay(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo
) -> None:
    hooked.settings.webhook_delay = 3600
    hooked.create_run(upstream)
    assert not hooked.flush_deliveries(0.2)
    assert hooked.deliveries() == []
    hooked.settings.webhook_delay = 0
    assert len(delivered(hooked, receiver)) == 1


def test_a_duplicated_delivery_comes_twice_with_one_delivery_id(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo
) -> None:
    hooked.settings.webhook_duplicate = True
    hooked.create_run(upstream)
    first, second = delivered(hooked, receiver)
    assert (first.delivery_id, first.body) == (second.delivery_id, second.body)
    assert [e.duplicate for e in hooked.deliveries()] == [False, True]


def test_reordered_deliveries_come_in_reverse_in_batches(
    hooked: GitHubSim, receiver: Receiver, upstream: SimRepo, fork: SimRepo
) -> None:
    hooked.settings.webhook_reorder = 3
    finished_job_run(hooked, upstream, fork)
    assert events(delivered(hooked, receiver)) == [
        ("workflow_run", "in_progress"),
        ("workflow_job", "queued"),
        ("workflow_run", "requested"),
        ("workflow_job", "completed"),
        ("workflow_job", "in_progress"),
    ]


def test_dropped_deliveries_are_logged_and_never_sent(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    hooked.settings.webhook_drop = True
    hooked.add_job(fork_run, "claim")
    assert events(delivered(hooked, receiver)) == [("workflow_run", "requested")]
    assert {(e.event, e.outcome) for e in hooked.deliveries()} == {
        ("workflow_run", "delivered"),
        ("workflow_job", "dropped"),
    }


def test_the_next_n_deliveries_can_be_dropped(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    hooked.drop_deliveries(2)
    for name in ("a", "b", "c"):
        hooked.add_job(fork_run, name)
    received = delivered(hooked, receiver)[-1]
    assert received.payload["workflow_job"]["name"] == "c"
    assert len(receiver.got) == 2  # the run's "requested", then c


def test_deliveries_drop_with_a_seeded_probability(receiver: Receiver, upstream: SimRepo) -> None:
    def dropped_of_twenty(sim: GitHubSim) -> list[bool]:
        sim.settings.update({"webhook_drop_probability": 0.5, "webhook_seed": 7})
        sim.deliver_to(receiver.url, SECRET)
        repo = sim.add_repository(upstream.full_name)
        for _ in range(20):
            sim.create_run(repo)
        assert sim.flush_deliveries(10)
        sim.deliver_to(None)
        in_order = sorted(sim.deliveries(), key=lambda e: e.payload["workflow_run"]["id"])
        return [e.outcome == "dropped" for e in in_order]

    pattern = dropped_of_twenty(GitHubSim())
    assert 0 < sum(pattern) < 20
    assert dropped_of_twenty(GitHubSim()) == pattern  # the same seed, the same losses


def test_redeliver_sends_the_same_body_and_delivery_id_again(
    hooked: GitHubSim, receiver: Receiver, fork_run: SimRun
) -> None:
    hooked.drop_deliveries(1)
    hooked.add_job(fork_run, "claim")
    lost = hooked.deliveries()[-1]
    hooked.redeliver(lost.delivery_id)
    received = delivered(hooked, receiver)[-1]
    assert received.delivery_id == lost.delivery_id
    assert hooked.deliveries()[-1].redelivery


# -- over the control API --------------------------------------------------------------------


def test_the_control_api_sets_the_target_and_reads_flushes_and_redelivers(
    server: BackgroundServer, sim: GitHubSim, receiver: Receiver
) -> None:
    with httpx.Client(base_url=f"{server.url_of(0)}/_sim", timeout=20) as control:
        target = control.put("/webhook", json={"url": receiver.url, "secret": SECRET}).json()
        assert target["url"] == receiver.url and SECRET not in str(target)
        assert control.post("/deliveries/drop-next", json={"count": 1}).status_code == 200
        control.post("/repos", json={"full_name": "octo-org/octo-repo"})
        control.post("/runs", json={"repository": "octo-org/octo-repo"})
        assert control.post("/deliveries/flush", json={"timeout": 10}).json() == {"idle": True}
        [entry] = control.get("/deliveries").json()
        assert entry["outcome"] == "dropped"
        redelivered = control.post(f"/deliveries/{entry['delivery_id']}/redeliver")
        assert redelivered.status_code == 202
        assert control.post("/deliveries/nope/redeliver").status_code == 404
        assert control.post("/deliveries/flush", json={}).json() == {"idle": True}
        assert control.delete("/webhook").json() == {"url": None, "hook_id": None}
    [received] = receiver.got
    assert validated(received)["action"] == "requested"


def test_the_switches_are_settings(server: BackgroundServer, sim: GitHubSim) -> None:
    changes = {
        "webhook_delay": 1.5,
        "webhook_duplicate": True,
        "webhook_reorder": 4,
        "webhook_drop": False,
        "webhook_drop_probability": 0.25,
        "webhook_seed": 3,
    }
    answer = httpx.put(f"{server.url_of(0)}/_sim/settings", json=changes).json()
    assert {name: answer[name] for name in changes} == changes
