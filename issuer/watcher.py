"""Looking at a claim's run through GitHub: is it a run we may vouch for, and did it print the
challenge? The run's facts come from GitHub's answer alone, never from the claim."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from issuer.github.channels import Channel, Sighting
from issuer.github.client import GitHubClient
from issuer.github.errors import GitHubNotFound, GitHubUnavailable
from issuer.github.facts import JobFacts, MalformedAnswer, RunFacts


class RunRejected(Exception):
    """The run is not one the issuer vouches for; the message tells the workflow's author why."""


@dataclass(frozen=True)
class Look:
    run: RunFacts
    jobs: list[JobFacts]
    sighting: Sighting | None


class RunWatcher:
    def __init__(self, github: GitHubClient, channels: Sequence[Channel]) -> None:
        self._github = github
        self._channels = channels

    async def look(self, repository: str, run_id: int, run_attempt: int | None, code: str) -> Look:
        run = await self._read_run(repository, run_id, run_attempt)
        check_run(run, repository, run_id)
        jobs = await self._jobs(repository, run)
        for channel in self._channels:
            sighting = await channel.find(repository, jobs, code)
            if sighting is not None:
                return Look(run, jobs, sighting)
        return Look(run, jobs, None)

    async def _read_run(self, repository: str, run_id: int, attempt: int | None) -> RunFacts:
        path = f"/repos/{repository}/actions/runs/{run_id}"
        if attempt is not None:
            path += f"/attempts/{attempt}"
        try:
            page = await self._github.get_json(path)
            return RunFacts.parse(page.body)
        except GitHubNotFound:
            what = f"attempt {attempt} of run {run_id}" if attempt else f"run {run_id}"
            raise RunRejected(
                f"GitHub knows no {what} in {repository}, or the repository is private: "
                "check GITHUB_REPOSITORY, GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT"
            ) from None
        except MalformedAnswer as exc:
            raise GitHubUnavailable(
                f"GitHub's answer was malformed: {exc}", retry_after=5
            ) from None

    async def _jobs(self, repository: str, run: RunFacts) -> list[JobFacts]:
        path = (
            f"/repos/{repository}/actions/runs/{run.id}/attempts/{run.run_attempt}/jobs"
            "?per_page=100"
        )
        try:
            raw = await self._github.get_all(path, "jobs")
            jobs = [JobFacts.parse(job) for job in raw]
        except GitHubNotFound:
            raise RunRejected(f"the jobs of run {run.id} are not visible") from None
        except MalformedAnswer as exc:
            raise GitHubUnavailable(
                f"GitHub's answer was malformed: {exc}", retry_after=5
            ) from None
        return [job for job in jobs if job.run_attempt in (None, run.run_attempt)]


def check_run(run: RunFacts, repository: str, run_id: int) -> None:
    """Refuse a run the issuer must not vouch for, saying what the author can change."""
    if run.id != run_id or run.repository.full_name.lower() != repository.lower():
        raise RunRejected(f"run {run_id} belongs to {run.repository.full_name}, not {repository}")
    if run.event != "pull_request":
        raise RunRejected(
            f"this run was triggered by {run.event}, not pull_request: the issuer only vouches "
            "for pull_request runs"
        )
    if run.repository.private or run.repository.visibility != "public":
        raise RunRejected(
            f"{run.repository.full_name} is not public: the issuer reads only public runs"
        )
    if run.status == "completed":
        raise RunRejected(
            f"run {run.id} attempt {run.run_attempt} has completed ({run.conclusion}): "
            "exchange the claim while the run is still in progress"
        )
