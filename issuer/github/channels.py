"""The channels through which a run can show the challenge: finished jobs' logs, annotations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from issuer.challenge import annotation_matches, find_in_log
from issuer.github.client import GitHubClient
from issuer.github.errors import GitHubNotFound
from issuer.github.facts import JobFacts


@dataclass(frozen=True)
class Sighting:
    """Where the challenge was seen."""

    job_id: int
    job_name: str
    channel: str
    runner_group_name: str | None


class Channel(Protocol):
    name: str

    async def find(self, repository: str, jobs: list[JobFacts], code: str) -> Sighting | None: ...


class LogChannel:
    """Completed jobs' logs: the documented way to read what a job printed."""

    name = "log"

    def __init__(self, github: GitHubClient) -> None:
        self._github = github

    async def find(self, repository: str, jobs: list[JobFacts], code: str) -> Sighting | None:
        for job in jobs:
            if not job.completed:
                continue  # GitHub serves logs only once a job is complete
            text = await self._github.download_log(repository, job.id)
            if text is not None and find_in_log(text, code) is not None:
                return Sighting(job.id, job.name, self.name, job.runner_group_name)
        return None


class AnnotationChannel:
    """Check-run annotations made by ``::notice::``; they may appear before the job ends."""

    name = "annotation"

    def __init__(self, github: GitHubClient) -> None:
        self._github = github

    async def find(self, repository: str, jobs: list[JobFacts], code: str) -> Sighting | None:
        for job in jobs:
            if job.status == "queued":
                continue
            try:
                annotations = await self._github.get_all(
                    f"/repos/{repository}/check-runs/{job.id}/annotations?per_page=100", None
                )
            except GitHubNotFound:
                continue  # no check run (yet) for this job: nothing to read
            for annotation in annotations:
                if annotation.get("annotation_level") == "notice" and annotation_matches(
                    annotation.get("message"), code
                ):
                    return Sighting(job.id, job.name, self.name, job.runner_group_name)
        return None
