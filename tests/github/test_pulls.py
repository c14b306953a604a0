"""find_pull_request: the pull request of a run, also of a run from a fork."""

from __future__ import annotations

from issuer.github.facts import PullRequestFacts, RunFacts
from issuer.github.pulls import find_pull_request
from issuer.sim import GitHubSim, SimRepo, SimRun
from tests.github.conftest import MakeClient
from tests.github.support import UPSTREAM


async def run_facts(make_client: MakeClient, run: SimRun) -> RunFacts:
    reader = make_client(("ghp_reader",))
    page = await reader.get_json(f"/repos/{UPSTREAM}/actions/runs/{run.id}")
    return RunFacts.parse(page.body)


async def test_the_pull_request_of_a_fork_run_is_found_through_the_pulls_list(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_reader")
    run = await run_facts(make_client, fork_run)
    assert run.pull_requests == ()
    github = make_client(("ghp_reader",))
    found = await find_pull_request(github, run)
    assert found == PullRequestFacts(number=1, base_ref="main", head_ref="patch-1")


async def test_a_run_that_lists_its_pull_request_gets_it_through_the_same_checks(
    sim: GitHubSim, make_client: MakeClient, upstream: SimRepo
) -> None:
    sim.add_token("ghp_reader")
    same_repo = sim.create_run(upstream, head_branch="feature", base_branch="develop")
    run = await run_facts(make_client, same_repo)
    assert [pr.number for pr in run.pull_requests] == [1]
    github = make_client(("ghp_reader",))
    found = await find_pull_request(github, run)
    assert found == PullRequestFacts(number=1, base_ref="develop", head_ref="feature")
    assert github.counted_requests == 1


async def test_a_run_listing_another_pull_request_gets_its_own_or_none(
    sim: GitHubSim, make_client: MakeClient, upstream: SimRepo, fork_run: SimRun
) -> None:
    """GitHub lists pull requests matched by head branch or SHA: here the fork's pull request
    #1 (its head branch is also ``patch-1``) for an upstream branch's run, whose own is #2."""
    sim.add_token("ghp_reader")
    same_repo = sim.create_run(upstream, head_branch="patch-1", base_branch="develop")
    assert same_repo.pull_request is not None and same_repo.pull_request.number == 2
    same_repo.pull_request = fork_run.pull_request
    run = await run_facts(make_client, same_repo)
    assert [(pr.number, pr.base_ref) for pr in run.pull_requests] == [(1, "main")]
    found = await find_pull_request(make_client(("ghp_reader",)), run)
    assert found == PullRequestFacts(number=2, base_ref="develop", head_ref="patch-1")


async def test_a_pull_request_pushed_to_since_the_run_is_not_named(
    sim: GitHubSim, make_client: MakeClient, upstream: SimRepo, fork: SimRepo, fork_run: SimRun
) -> None:
    sim.add_token("ghp_reader")
    run = await run_facts(make_client, fork_run)
    sim.create_run(upstream, head_repository=fork)  # a new push: the pull request's head moves
    assert await find_pull_request(make_client(("ghp_reader",)), run) is None


async def test_a_closed_pull_request_is_not_named(
    sim: GitHubSim, make_client: MakeClient, upstream: SimRepo, fork_run: SimRun
) -> None:
    sim.add_token("ghp_reader")
    run = await run_facts(make_client, fork_run)
    [pull] = sim.pull_requests(upstream)
    sim.close_pull_request(pull)
    assert await find_pull_request(make_client(("ghp_reader",)), run) is None


async def test_a_same_named_branch_of_another_fork_is_not_taken(
    sim: GitHubSim, make_client: MakeClient, upstream: SimRepo, fork_run: SimRun
) -> None:
    sim.add_token("ghp_reader")
    run = await run_facts(make_client, fork_run)
    other = sim.add_repository("someone/octo-repo", fork_of=upstream)
    sim.create_run(upstream, head_repository=other, head_sha=fork_run.head_sha)
    found = await find_pull_request(make_client(("ghp_reader",)), run)
    assert found is not None and found.number == 1


async def test_a_repeated_search_is_a_conditional_request_that_costs_nothing(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_reader")
    run = await run_facts(make_client, fork_run)
    github = make_client(("ghp_reader",))
    await find_pull_request(github, run)
    await find_pull_request(github, run)
    assert github.counted_requests == 1


async def test_a_repository_github_does_not_show_has_no_pull_request(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_reader")
    run = await run_facts(make_client, fork_run)
    sim.repository(UPSTREAM).private = True  # type: ignore[union-attr]
    assert await find_pull_request(make_client(("ghp_reader",)), run) is None
