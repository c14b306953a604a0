"""The simulator's records: users, repositories, pull requests, runs, attempts, jobs, steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from issuer.sim.runner import Annotation, JobConsole, LogEntry

OwnerType = Literal["User", "Organization"]


@dataclass(eq=False)
class SimUser:
    login: str
    id: int
    type: OwnerType = "User"


@dataclass(eq=False)
class SimRepo:
    id: int
    full_name: str
    owner: SimUser
    private: bool = False
    fork: bool = False
    parent: SimRepo | None = None
    default_branch: str = "main"
    created_at: float = 0.0

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    @property
    def owner_login(self) -> str:
        return self.owner.login

    @property
    def owner_id(self) -> int:
        return self.owner.id


@dataclass(eq=False)
class SimPullRequest:
    id: int
    number: int
    title: str
    user: SimUser
    base_repository: SimRepo
    base_branch: str
    base_sha: str
    head_repository: SimRepo
    head_branch: str
    head_sha: str
    created_at: float
    state: Literal["open", "closed"] = "open"


@dataclass(eq=False)
class SimStep:
    name: str
    number: int
    started_at: float
    status: str = "in_progress"
    conclusion: str | None = None
    completed_at: float | None = None
    script: str | None = None


@dataclass(eq=False)
class SimJob:
    id: int
    run: SimRun
    run_attempt: int
    name: str
    labels: list[str]
    requested_runner_group: str
    created_at: float
    console: JobConsole
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    runner_group_id: int | None = None
    runner_group_name: str | None = None
    steps: list[SimStep] = field(default_factory=list)

    @property
    def current_step(self) -> SimStep | None:
        if self.steps and self.steps[-1].status == "in_progress":
            return self.steps[-1]
        return None

    @property
    def log(self) -> list[LogEntry]:
        return self.console.entries

    @property
    def annotations(self) -> list[Annotation]:
        return self.console.annotations


@dataclass(eq=False)
class SimAttempt:
    number: int
    triggering_actor: SimUser
    started_at: float
    updated_at: float
    status: str = "queued"
    conclusion: str | None = None
    jobs: list[SimJob] = field(default_factory=list)


@dataclass(eq=False)
class SimRun:
    """A workflow run; `status`, `conclusion` and `jobs` are those of its latest attempt."""

    id: int
    run_number: int
    repository: SimRepo
    head_repository: SimRepo
    event: str
    actor: SimUser
    workflow_name: str
    workflow_id: int
    path: str
    head_branch: str
    head_sha: str
    display_title: str
    check_suite_id: int
    created_at: float
    pull_request: SimPullRequest | None
    attempts: list[SimAttempt] = field(default_factory=list)

    @property
    def latest(self) -> SimAttempt:
        return self.attempts[-1]

    @property
    def run_attempt(self) -> int:
        return self.latest.number

    @property
    def status(self) -> str:
        return self.latest.status

    @status.setter
    def status(self, value: str) -> None:
        self.latest.status = value

    @property
    def conclusion(self) -> str | None:
        return self.latest.conclusion

    @conclusion.setter
    def conclusion(self, value: str | None) -> None:
        self.latest.conclusion = value

    @property
    def triggering_actor(self) -> SimUser:
        return self.latest.triggering_actor

    @property
    def jobs(self) -> list[SimJob]:
        return self.latest.jobs

    @property
    def from_fork(self) -> bool:
        return self.head_repository is not self.repository

    def attempt(self, number: int) -> SimAttempt | None:
        if 1 <= number <= len(self.attempts):
            return self.attempts[number - 1]
        return None
