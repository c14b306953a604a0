"""The parts of GitHub's run and job objects the issuer relies on, parsed strictly.

Everything a token says comes from here, that is from GitHub's answer, never from a claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class MalformedAnswer(Exception):
    """GitHub's answer lacks a field the issuer needs."""


@dataclass(frozen=True)
class RepoFacts:
    id: int
    full_name: str
    private: bool
    visibility: str
    owner_login: str
    owner_id: int

    @classmethod
    def parse(cls, data: Any) -> RepoFacts:
        try:
            private = bool(data["private"])
            return cls(
                id=int(data["id"]),
                full_name=str(data["full_name"]),
                private=private,
                visibility=str(data.get("visibility") or ("private" if private else "public")),
                owner_login=str(data["owner"]["login"]),
                owner_id=int(data["owner"]["id"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedAnswer(f"repository: {exc!r}") from None


@dataclass(frozen=True)
class PullRequestFacts:
    number: int
    base_ref: str
    head_ref: str


@dataclass(frozen=True)
class RunFacts:
    id: int
    name: str
    path: str
    run_number: int
    run_attempt: int
    status: str
    conclusion: str | None
    event: str
    head_sha: str
    head_branch: str
    actor_login: str
    actor_id: int
    triggering_actor_login: str
    repository: RepoFacts
    head_repository: RepoFacts
    pull_requests: tuple[PullRequestFacts, ...]

    @classmethod
    def parse(cls, data: Any) -> RunFacts:
        try:
            actor = data.get("actor") or {}
            triggering = data.get("triggering_actor") or actor
            head_repo = data.get("head_repository") or data["repository"]
            return cls(
                id=int(data["id"]),
                name=str(data.get("name") or ""),
                path=str(data.get("path") or ""),
                run_number=int(data["run_number"]),
                run_attempt=int(data.get("run_attempt") or 1),
                status=str(data["status"]),
                conclusion=data.get("conclusion"),
                event=str(data["event"]),
                head_sha=str(data["head_sha"]),
                head_branch=str(data.get("head_branch") or ""),
                actor_login=str(actor.get("login", "")),
                actor_id=int(actor.get("id", 0)),
                triggering_actor_login=str(triggering.get("login", "")),
                repository=RepoFacts.parse(data["repository"]),
                head_repository=RepoFacts.parse(head_repo),
                pull_requests=tuple(
                    PullRequestFacts(
                        number=int(pr["number"]),
                        base_ref=str(pr["base"]["ref"]),
                        head_ref=str(pr["head"]["ref"]),
                    )
                    for pr in data.get("pull_requests") or ()
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedAnswer(f"workflow run: {exc!r}") from None


SETUP_STEP = "Set up job"  # the runner's own first step: no workflow command runs in it


def _epoch(value: Any) -> int | None:
    """Whole epoch seconds of one of the API's ISO-8601 times (null: None)."""
    if value is None:
        return None
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


@dataclass(frozen=True)
class StepFacts:
    """A step that ran, with its start and end as the jobs API gives them (whole seconds, the
    runner's clock): what the log's timestamps are checked against."""

    number: int
    name: str
    started_at: int
    completed_at: int

    @classmethod
    def parse_all(cls, steps: Any) -> tuple[StepFacts, ...]:
        ran = []
        for step in steps:
            started, completed = _epoch(step.get("started_at")), _epoch(step.get("completed_at"))
            if started is not None and completed is not None:
                name = str(step.get("name") or "")
                ran.append(cls(int(step["number"]), name, started, completed))
        return tuple(ran)


@dataclass(frozen=True)
class JobFacts:
    id: int
    name: str
    status: str
    run_attempt: int | None
    runner_group_name: str | None
    # Steps of the workflow's own (not the runner's set-up) that have completed, and the
    # number of the step in progress: annotations can only change when these do.
    user_steps_done: int = 0
    step_in_progress: int | None = None
    steps: tuple[StepFacts, ...] = ()  # those with a start and an end
    run_id: int | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @classmethod
    def parse(cls, data: Any) -> JobFacts:
        try:
            steps = data.get("steps") or []
            done = sum(
                1
                for step in steps
                if step.get("status") == "completed" and step.get("name") != SETUP_STEP
            )
            running = [
                int(step["number"])
                for step in steps
                if step.get("status") == "in_progress" and step.get("name") != SETUP_STEP
            ]
            return cls(
                id=int(data["id"]),
                name=str(data.get("name") or ""),
                status=str(data["status"]),
                run_attempt=int(data["run_attempt"]) if data.get("run_attempt") else None,
                runner_group_name=data.get("runner_group_name"),
                user_steps_done=done,
                step_in_progress=running[0] if running else None,
                steps=StepFacts.parse_all(steps),
                run_id=int(data["run_id"]) if data.get("run_id") else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedAnswer(f"job: {exc!r}") from None


@dataclass(frozen=True)
class PullRequestListing:
    """An item of ``GET /repos/{owner}/{repo}/pulls`` (PullRequestSimple), as far as the issuer
    uses it. ``head_repo_id`` is None when the head repository was deleted."""

    number: int
    state: str
    base_ref: str
    base_repo_id: int
    head_ref: str
    head_sha: str
    head_repo_id: int | None

    @classmethod
    def parse(cls, data: Any) -> PullRequestListing:
        try:
            head, base = data["head"], data["base"]
            head_repo = head.get("repo")
            return cls(
                number=int(data["number"]),
                state=str(data["state"]),
                base_ref=str(base["ref"]),
                base_repo_id=int(base["repo"]["id"]),
                head_ref=str(head["ref"]),
                head_sha=str(head["sha"]),
                head_repo_id=int(head_repo["id"]) if head_repo else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedAnswer(f"pull request: {exc!r}") from None

    @property
    def facts(self) -> PullRequestFacts:
        return PullRequestFacts(number=self.number, base_ref=self.base_ref, head_ref=self.head_ref)
