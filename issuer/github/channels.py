"""The channels through which a run shows challenge codes: completed jobs' logs, and the
annotations that ``::notice::`` makes. Each answers every code it finds, so that one read
serves every claim waiting on the run. What a challenge looks like is the issuer's to say: each
channel is given the function that finds codes in what it reads."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from issuer.github.client import GitHubClient
from issuer.github.errors import GitHubNotFound
from issuer.github.facts import JobFacts


@dataclass(frozen=True)
class Sighting:
    """Where a challenge was seen."""

    job_id: int
    job_name: str
    channel: str
    runner_group_name: str | None


LOG = "log"
ANNOTATION = "annotation"


class LogChannel:
    """Completed jobs' logs: the documented way to read what a job printed."""

    name = LOG

    def __init__(self, github: GitHubClient, find_codes: Callable[[str], Iterable[str]]) -> None:
        self._github = github
        self._find_codes = find_codes

    async def codes(self, repository: str, job: JobFacts) -> set[str] | None:
        """The codes the job's steps printed; None while GitHub does not serve the log yet."""
        text = await self._github.download_log(repository, job.id)
        return None if text is None else set(self._find_codes(text))


class AnnotationChannel:
    """Check-run annotations made by ``::notice::``; they may appear before the job ends."""

    name = ANNOTATION

    def __init__(
        self, github: GitHubClient, code_in_message: Callable[[str | None], str | None]
    ) -> None:
        self._github = github
        self._code_in_message = code_in_message

    async def codes(self, repository: str, job: JobFacts) -> set[str]:
        try:
            annotations = await self._github.get_all(
                f"/repos/{repository}/check-runs/{job.id}/annotations?per_page=100", None
            )
        except GitHubNotFound:
            return set()  # no check run (yet) for this job: nothing to read
        found: set[str] = set()
        for annotation in annotations:
            if not isinstance(annotation, dict) or annotation.get("annotation_level") != "notice":
                continue
            code = self._code_in_message(annotation.get("message"))
            if code is not None:
                found.add(code)
        return found
