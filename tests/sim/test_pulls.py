"""GET /repos/{owner}/{repo}/pulls: how a client finds the pull request of a run from a fork."""

from __future__ import annotations

import httpx
from githubkit_schemas.v2022_11_28.models import PullRequestSimple

from issuer.sim import GitHubSim, SimRepo, SimRun
from tests.sim.support import UPSTREAM


def test_the_pull_request_of_a_fork_run_is_found_by_head_owner_and_branch(
    api: httpx.Client, fork_run: SimRun
) -> None:
    response = api.get(f"{UPSTREAM}/pulls", params={"state": "open", "head": "contributor:patch-1"})
    [pull] = response.json()
    PullRequestSimple.model_validate(pull)
    assert pull["head"]["repo"]["full_name"] == "contributor/octo-repo"
    assert (pull["head"]["ref"], pull["head"]["sha"]) == ("patch-1", fork_run.head_sha)
    assert (pull["base"]["ref"], pull["number"]) == ("main", 1)


def test_another_head_finds_nothing(api: httpx.Client, fork_run: SimRun) -> None:
    assert api.get(f"{UPSTREAM}/pulls", params={"head": "someone:patch-1"}).json() == []


def test_runs_of_one_branch_share_their_pull_request(
    api: httpx.Client, sim: GitHubSim, upstream: SimRepo, fork: SimRepo, fork_run: SimRun
) -> None:
    later = sim.create_run(upstream, head_repository=fork, head_branch="patch-1")
    other = sim.create_run(upstream, head_repository=fork, head_branch="patch-2")
    pulls = api.get(f"{UPSTREAM}/pulls").json()
    assert [(p["number"], p["head"]["sha"]) for p in pulls] == [
        (2, other.head_sha),
        (1, later.head_sha),
    ]
