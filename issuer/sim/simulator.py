"""The simulated GitHub: its state, and the calls a test makes to drive a workflow run."""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from issuer.sim import hook_payloads
from issuer.sim.credentials import Credential, Credentials, SimApp, import_app_key
from issuer.sim.faults import Fault, FaultQueue
from issuer.sim.logs import render_log
from issuer.sim.model import (
    OwnerType,
    SimAttempt,
    SimJob,
    SimPullRequest,
    SimRepo,
    SimRun,
    SimStep,
    SimUser,
)
from issuer.sim.payloads import Urls
from issuer.sim.ratelimit import RateLimiter
from issuer.sim.runner import Annotation, JobConsole, set_up_lines
from issuer.sim.secondary import SecondaryLimiter, Usage
from issuer.sim.settings import SimSettings
from issuer.sim.webhooks import Attempt, Target, WebhookSender

LogState = Literal["ready", "api_404", "blob_404"]
HOSTED_GROUP = "GitHub Actions"
_PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_target"})
_FULL_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_COLORS = {
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36;1",
}
_SGR = re.compile(r"^[0-9;]+$")
# Deliveries name these when no App was added with `add_app`.
DEFAULT_APP_ID = 100_001
DEFAULT_INSTALLATION_ID = 10_000_001


class _Ids:
    """Distinct, realistically large ids; each kind has its own range, none overlap."""

    def __init__(self) -> None:
        self._counters = {
            "user": itertools.count(5_000_001),
            "workflow": itertools.count(90_000_001),
            "repo": itertools.count(800_000_001),
            "runner": itertools.count(1_000_000_001),
            "run": itertools.count(1_234_567_890),
            "pull": itertools.count(2_100_000_001),
            "job": itertools.count(29_000_000_000),
            "check_suite": itertools.count(31_000_000_001),
            "hook": itertools.count(480_000_001),
        }

    def next(self, kind: str) -> int:
        return next(self._counters[kind])


class GitHubSim:
    """In-memory GitHub. Thread-safe: tests drive it while a server thread reads it."""

    def __init__(
        self,
        settings: SimSettings | None = None,
        *,
        api_prefix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or SimSettings()
        self.api_prefix = "/" + api_prefix.strip("/") if api_prefix.strip("/") else ""
        self.clock = clock
        self.blob_base_url: str | None = None
        # The API's own address once served (serve_sim sets it): the links in webhook
        # deliveries point there, else at api.github.com.
        self.api_base_url: str | None = None
        self.request_log: list[tuple[str, str, int, bool]] = []
        self.lock = threading.RLock()
        self.credentials = Credentials()
        self.rate_limiter = RateLimiter(clock)
        self.secondary = SecondaryLimiter(clock)
        self.faults = FaultQueue()
        self.blob_key = secrets.token_bytes(32)
        self.webhooks = WebhookSender(self.settings)
        self._ids = _Ids()
        self._users: dict[str, SimUser] = {}
        self._repos: dict[str, SimRepo] = {}
        self._repos_by_id: dict[int, SimRepo] = {}
        self._runs: dict[int, SimRun] = {}
        self._jobs: dict[int, SimJob] = {}
        self._run_numbers: dict[int, int] = {}
        self._issue_numbers: dict[int, int] = {}
        self._workflow_ids: dict[tuple[int, str], int] = {}
        self._pulls: list[SimPullRequest] = []
        self._web_sessions: set[str] = set()

    # -- credentials and limits --------------------------------------------------------

    def add_token(self, token: str, *, limit: int = 5000, sees_private: bool = False) -> None:
        """A credential the API accepts; unknown tokens get 401 "Bad credentials"."""
        with self.lock:
            self.credentials.add_token(
                token, limit=limit, user_id=self._ids.next("user"), sees_private=sees_private
            )

    def add_app(
        self,
        app_id: int,
        public_key_pem: str,
        installation_id: int,
        *,
        limit: int = 5000,
        sees_private: bool = False,
    ) -> None:
        """A GitHub App installed once; its JWTs may mint installation tokens."""
        app = SimApp(app_id, import_app_key(public_key_pem), installation_id, limit, sees_private)
        with self.lock:
            self.credentials.add_app(app)

    def fail_next(
        self,
        count: int,
        *,
        status: int | None = None,
        secondary: bool = False,
        retry_after: str | None = "1",
    ) -> None:
        """The next `count` API requests fail: 5xx (default 503), or with `secondary` a
        secondary rate limit (default 403) whose `retry-after` is `retry_after` ("" = blank
        header, None = no header)."""
        chosen = status if status is not None else (403 if secondary else 503)
        with self.lock:
            self.faults.push(count, Fault(chosen, secondary, retry_after))

    def counted_requests(self, token: str | None = None) -> int:
        """Requests that counted against the primary limit (304s don't); None = unauthenticated."""
        with self.lock:
            return self.rate_limiter.counted(self.credentials.bucket_of(token))

    def secondary_refusals(self) -> int:
        """Secondary-limit refusals the simulator gave on its own (too many points a minute or
        requests at once), over all callers; those asked for with `fail_next` are not among
        them (`injected_secondary_refusals`)."""
        with self.lock:
            return self.secondary.refusals()

    def injected_secondary_refusals(self) -> int:
        """Secondary-limit answers given because a test asked (`fail_next(secondary=True)`)."""
        with self.lock:
            return self.secondary.injected

    def secondary_usage(self, token: str | None = None) -> Usage:
        """A caller's secondary-limit record: points spent, points in its busiest 60 s,
        refusals; None = unauthenticated. An installation token answers for its installation."""
        with self.lock:
            return self.secondary.usage(self.credentials.bucket_of(token))

    def requests_in_flight(self, token: str | None = None) -> int:
        """The caller's API requests being answered now (None = unauthenticated)."""
        with self.lock:
            return self.secondary.in_flight(self.credentials.bucket_of(token))

    def secondary_report(self) -> dict[str, Usage]:
        """Every caller's record by bucket (`anonymous`, `user:ID`, `installation:ID`,
        `app:ID`): no token in the names."""
        with self.lock:
            return self.secondary.report()

    def reset_rate_limit(self, token: str | None = None) -> None:
        """Start a fresh window for this caller, as if the hour had passed."""
        with self.lock:
            self.rate_limiter.reset(self.credentials.bucket_of(token))

    def revoke_token(self, token: str) -> None:
        """The token stops working (revoked, or an installation token GitHub dropped): 401."""
        with self.lock:
            self.credentials.revoke(token)

    def installation_tokens(self, installation_id: int) -> list[str]:
        """Every installation token minted for the installation, in order, still valid or not."""
        with self.lock:
            return self.credentials.installation_tokens(installation_id)

    def add_web_session(self, cookie: str) -> None:
        """A signed-in browser session: its `user_session` cookie reads the web UI."""
        with self.lock:
            self._web_sessions.add(cookie)

    def has_web_session(self, cookie: str) -> bool:
        with self.lock:
            return cookie in self._web_sessions

    def authenticate(self, token: str) -> Credential | None:
        with self.lock:
            return self.credentials.lookup(token, self.clock())

    # -- webhook deliveries ------------------------------------------------------------

    def deliver_to(self, url: str | None, secret: str | bytes | None = None) -> None:
        """Send `workflow_job` and `workflow_run` deliveries to `url`, signed with `secret`,
        from now on (None: stop). Each names the installation of the App added first with
        `add_app`, or `DEFAULT_INSTALLATION_ID`."""
        if url is None:
            self.webhooks.deliver_to(None)
            return
        if not secret:
            raise ValueError("a delivery target needs a webhook secret")
        key = secret.encode() if isinstance(secret, str) else secret
        with self.lock:
            hook_id = self._ids.next("hook")
        self.webhooks.deliver_to(Target(url, key, hook_id))

    def deliveries(self) -> list[Attempt]:
        """The delivery log: every delivery sent (or dropped), in the order it happened."""
        return self.webhooks.log()

    def deliveries_idle(self) -> bool:
        """Nothing waiting to be delivered or being delivered."""
        return self.webhooks.idle()

    def flush_deliveries(self, timeout: float = 30.0) -> bool:
        """Wait until every delivery made so far was sent (those held for reordering at once,
        delayed ones once due). False if `timeout` came first."""
        return self.webhooks.flush(timeout)

    def redeliver(self, delivery_id: str) -> None:
        """GitHub's "Redeliver": the same body and delivery id sent again. KeyError if
        unknown."""
        self.webhooks.redeliver(delivery_id)

    def drop_deliveries(self, count: int) -> None:
        """The next `count` deliveries are lost (logged as dropped; `redeliver` still works)."""
        self.webhooks.drop_next(count)

    def _deliver(self, event: str, action: str, build: Callable[[int, Urls], Any]) -> None:
        """Hand a delivery to the sender, built now (under the lock): what the API shows now."""
        if self.webhooks.target is None:
            return
        app = self.credentials.first_app()
        installation_id = app.installation_id if app else DEFAULT_INSTALLATION_ID
        self.webhooks.send(
            event,
            action,
            build(installation_id, self._hook_urls()),
            app.app_id if app else DEFAULT_APP_ID,
        )

    def _hook_urls(self) -> Urls:
        if self.api_base_url is None:
            return Urls(api="https://api.github.com", web="https://github.com")
        web = self.api_base_url if self.api_prefix else "https://github.com"
        return Urls(api=self.api_base_url + self.api_prefix, web=web)

    def _job_event(self, job: SimJob, action: str) -> None:
        self._deliver(
            "workflow_job", action, lambda i, urls: hook_payloads.workflow_job(action, job, i, urls)
        )

    def _run_event(self, run: SimRun, action: str) -> None:
        self._deliver(
            "workflow_run", action, lambda i, urls: hook_payloads.workflow_run(action, run, i, urls)
        )

    # -- repositories ------------------------------------------------------------------

    def add_repository(
        self,
        full_name: str,
        *,
        private: bool = False,
        fork_of: SimRepo | None = None,
        owner_type: OwnerType = "User",
    ) -> SimRepo:
        """A repository; its owner (user or organization) is created on first use."""
        if not _FULL_NAME.match(full_name):
            raise ValueError(f"not an owner/name: {full_name!r}")
        with self.lock:
            if full_name.lower() in self._repos:
                raise ValueError(f"repository {full_name} exists")
            owner = self.user(full_name.split("/")[0], owner_type=owner_type)
            repo = SimRepo(
                id=self._ids.next("repo"),
                full_name=f"{owner.login}/{full_name.split('/')[1]}",
                owner=owner,
                private=private,
                fork=fork_of is not None,
                parent=fork_of,
                created_at=self.clock(),
            )
            self._repos[full_name.lower()] = repo
            self._repos_by_id[repo.id] = repo
            return repo

    def user(self, login: str, *, owner_type: OwnerType = "User") -> SimUser:
        """The user or organization `login`, created with a fresh id on first use."""
        with self.lock:
            found = self._users.get(login.lower())
            if found is None:
                found = self._users[login.lower()] = SimUser(
                    login, self._ids.next("user"), owner_type
                )
            return found

    def repository(self, full_name: str) -> SimRepo | None:
        """Lookups ignore case, as GitHub's URLs do."""
        with self.lock:
            return self._repos.get(full_name.lower())

    def repository_by_id(self, repo_id: int) -> SimRepo | None:
        with self.lock:
            return self._repos_by_id.get(repo_id)

    @staticmethod
    def can_read(repo: SimRepo, credential: Credential | None) -> bool:
        return not repo.private or (credential is not None and credential.sees_private)

    # -- runs --------------------------------------------------------------------------

    def create_run(
        self,
        repository: SimRepo,
        *,
        head_repository: SimRepo | None = None,
        event: str = "pull_request",
        actor: str = "octocat",
        workflow_name: str = "CI",
        path: str = ".github/workflows/ci.yml",
        head_branch: str = "patch-1",
        head_sha: str | None = None,
        display_title: str | None = None,
        base_branch: str = "main",
    ) -> SimRun:
        """A queued run (attempt 1) in `repository`; from a fork when `head_repository` differs."""
        with self.lock:
            now = self.clock()
            head = head_repository or repository
            run_id = self._ids.next("run")
            sha = head_sha or _fake_sha(f"{head.full_name}:{head_branch}:{run_id}")
            title = display_title or f"Update {path.rsplit('/', 1)[-1]}"
            user = self.user(actor)
            pull = None
            if event in _PULL_REQUEST_EVENTS:
                pull = self._pull_request(
                    repository, head, head_branch, sha, base_branch, title, user
                )
            number = self._run_numbers.get(repository.id, 0) + 1
            self._run_numbers[repository.id] = number
            workflow_key = (repository.id, path)
            if workflow_key not in self._workflow_ids:
                self._workflow_ids[workflow_key] = self._ids.next("workflow")
            run = SimRun(
                id=run_id,
                run_number=number,
                repository=repository,
                head_repository=head,
                event=event,
                actor=user,
                workflow_name=workflow_name,
                workflow_id=self._workflow_ids[workflow_key],
                path=path,
                head_branch=head_branch,
                head_sha=sha,
                display_title=title,
                check_suite_id=self._ids.next("check_suite"),
                created_at=now,
                pull_request=pull,
            )
            run.attempts.append(SimAttempt(1, user, started_at=now, updated_at=now))
            self._runs[run.id] = run
            self._run_event(run, "requested")
            return run

    def _pull_request(
        self,
        base: SimRepo,
        head: SimRepo,
        head_branch: str,
        head_sha: str,
        base_branch: str,
        title: str,
        user: SimUser,
    ) -> SimPullRequest:
        for pull in self._pulls:
            if (pull.base_repository, pull.head_repository, pull.head_branch) == (
                base,
                head,
                head_branch,
            ):
                if pull.state == "open":
                    pull.head_sha = head_sha
                    return pull
        number = self._issue_numbers.get(base.id, 0) + 1
        self._issue_numbers[base.id] = number
        pull = SimPullRequest(
            id=self._ids.next("pull"),
            number=number,
            title=title,
            user=user,
            base_repository=base,
            base_branch=base_branch,
            base_sha=_fake_sha(f"{base.full_name}:{base_branch}:{number}"),
            head_repository=head,
            head_branch=head_branch,
            head_sha=head_sha,
            created_at=self.clock(),
        )
        self._pulls.append(pull)
        return pull

    def close_pull_request(self, pull: SimPullRequest) -> None:
        """Closed: gone from `state=open` lists and from its runs' `pull_requests`."""
        with self.lock:
            pull.state = "closed"

    def pull_requests(self, base: SimRepo) -> list[SimPullRequest]:
        with self.lock:
            return [p for p in self._pulls if p.base_repository is base]

    def run(self, run_id: int) -> SimRun | None:
        with self.lock:
            return self._runs.get(run_id)

    def finish_run(self, run: SimRun, conclusion: str = "success") -> None:
        """Complete the latest attempt: its unfinished jobs end with `conclusion`, then the run.

        A run never completes by itself: a test may still add jobs (`needs:`) after others ended.
        """
        with self.lock:
            for job in run.jobs:
                if job.status != "completed":
                    self.finish_job(job, conclusion)
            self._touch(run, status="completed", conclusion=conclusion)
            self._run_event(run, "completed")

    def rerun(self, run: SimRun, *, actor: str | None = None) -> None:
        """A new attempt: queued, no conclusion, no jobs yet. Old attempts stay readable."""
        with self.lock:
            if run.status != "completed":
                raise ValueError(f"run {run.id} is still {run.status}; only completed runs re-run")
            now = self.clock()
            who = self.user(actor) if actor else run.actor
            run.attempts.append(
                SimAttempt(run.run_attempt + 1, who, started_at=now, updated_at=now)
            )
            self._run_event(run, "requested")

    def _touch(
        self, run: SimRun, *, status: str | None = None, conclusion: str | None = None
    ) -> None:
        if status is not None:
            run.status = status
        if conclusion is not None:
            run.conclusion = conclusion
        run.latest.updated_at = self.clock()

    # -- jobs --------------------------------------------------------------------------

    def add_job(
        self,
        run: SimRun,
        name: str,
        *,
        labels: list[str] | None = None,
        runner_group_name: str = HOSTED_GROUP,
    ) -> SimJob:
        """A queued job of the run's current attempt; no runner until it starts."""
        with self.lock:
            if run.status == "completed":
                raise ValueError(f"run {run.id} attempt {run.run_attempt} has completed")
            job = SimJob(
                id=self._ids.next("job"),
                run=run,
                run_attempt=run.run_attempt,
                name=name,
                labels=list(labels) if labels is not None else ["ubuntu-latest"],
                requested_runner_group=runner_group_name,
                created_at=self.clock(),
                console=JobConsole(self.clock),
            )
            run.jobs.append(job)
            self._jobs[job.id] = job
            self._job_event(job, "queued")
            return job

    def job(self, job_id: int) -> SimJob | None:
        with self.lock:
            return self._jobs.get(job_id)

    def start_job(self, job: SimJob) -> None:
        """A runner picks the job up: in_progress, runner named, "Set up job" logged."""
        with self.lock:
            if job.status != "queued":
                raise ValueError(f"job {job.id} is {job.status}, not queued")
            now = self.clock()
            job.status = "in_progress"
            job.started_at = now
            job.runner_id = self._ids.next("runner")
            hosted = job.requested_runner_group == HOSTED_GROUP
            job.runner_name = (
                f"GitHub Actions {job.runner_id}" if hosted else f"runner-{job.runner_id}"
            )
            job.runner_group_id = 0 if hosted else 1
            job.runner_group_name = job.requested_runner_group
            if job.run.status in ("queued", "waiting", "requested", "pending"):
                self._touch(job.run, status="in_progress")
                self._run_event(job.run, "in_progress")
            self._set_up(job)
            self._job_event(job, "in_progress")

    def _set_up(self, job: SimJob) -> None:
        step = SimStep("Set up job", 1, started_at=job.console.now())
        job.steps.append(step)
        console = job.console
        console.begin_step(1)
        for line in set_up_lines(
            job.name, job.runner_name or "", job.runner_group_name or "", job.run.from_fork
        ):
            console.write(line)
        self._complete_step(job, step, "success")

    def start_step(
        self,
        job: SimJob,
        name: str,
        *,
        script: str | None = None,
        env: dict[str, str] | None = None,
        action: str | None = None,
        inputs: dict[str, str] | None = None,
    ) -> None:
        """Begin a step (ending the previous one with success). With `script`, it is a `run:`
        step and the runner first echoes the script, shell and env inside a group; with
        `action` (`OWNER/REPO@REF`), a `uses:` step whose group shows its `with:` inputs
        and env (actions/runner `Handler.PrintActionDetails`)."""
        with self.lock:
            if job.status == "queued":
                self.start_job(job)
            if job.status == "completed":
                raise ValueError(f"job {job.id} has completed")
            if job.current_step is not None:
                self.finish_step(job)
            step = SimStep(name, len(job.steps) + 1, started_at=job.console.now(), script=script)
            job.steps.append(step)
            console = job.console
            console.begin_step(step.number)
            if action is not None:
                console.write(f"##[group]Run {action}")
                if inputs:
                    console.write("with:")
                    for key, value in inputs.items():
                        if value:
                            console.write(f"  {key}: {value}")
                self._write_env(console, env)
                console.write("##[endgroup]")
                return
            if script is None:
                return
            first = script.lstrip(" \t\r\n")
            console.write(f"##[group]Run {first.splitlines()[0] if first else ''}")
            for line in script.replace("\r\n", "\n").rstrip("\n").split("\n"):
                console.write(f"\x1b[36;1m{line}\x1b[0m")
            console.write("shell: /usr/bin/bash -e {0}")
            self._write_env(console, env)
            console.write("##[endgroup]")

    @staticmethod
    def _write_env(console: JobConsole, env: dict[str, str] | None) -> None:
        if env:
            console.write("env:")
            for key, value in env.items():
                console.write(f"  {key}: {value}")

    def elapse(self, job: SimJob, seconds: float) -> None:
        """The job's runner lives ``seconds`` on (a step working, say) without the test
        waiting: its later log lines and step times are that much later."""
        with self.lock:
            job.console.offset += seconds

    def print_line(self, job: SimJob, text: str, *, color: str | None = None) -> None:
        """Output of the current step, processed as the runner processes it."""
        with self.lock:
            if job.current_step is None:
                raise ValueError(f"job {job.id} has no step in progress")
            if color is not None:
                code = color if _SGR.match(color) else _COLORS.get(color)
                if code is None:
                    raise ValueError(f"unknown color {color!r}")
                text = f"\x1b[{code}m{text}\x1b[0m"
            job.console.output(text)

    def finish_step(self, job: SimJob, conclusion: str = "success") -> None:
        with self.lock:
            step = job.current_step
            if step is None:
                raise ValueError(f"job {job.id} has no step in progress")
            if conclusion == "failure" and step.script is not None:
                job.console.issue("failure", "Process completed with exit code 1.")
            self._complete_step(job, step, conclusion)

    def _complete_step(self, job: SimJob, step: SimStep, conclusion: str) -> None:
        step.status = "completed"
        step.conclusion = conclusion
        step.completed_at = job.console.now()

    def finish_job(self, job: SimJob, conclusion: str = "success") -> None:
        """Complete the job; its log becomes readable `finalize_seconds` later."""
        with self.lock:
            if job.status == "completed":
                raise ValueError(f"job {job.id} has completed")
            if job.status == "in_progress":
                if job.current_step is not None:
                    if conclusion == "cancelled":
                        job.console.issue("failure", "The operation was canceled.")
                    step_conclusion = (
                        conclusion if conclusion in ("failure", "cancelled") else "success"
                    )
                    self.finish_step(job, step_conclusion)
                step = SimStep("Complete job", len(job.steps) + 1, started_at=job.console.now())
                job.steps.append(step)
                job.console.begin_step(step.number)
                job.console.write("Cleaning up orphan processes")
                self._complete_step(job, step, "success")
            job.status = "completed"
            job.conclusion = conclusion
            job.completed_at = self.clock()
            self._touch(job.run)
            self._job_event(job, "completed")

    # -- what the API shows ------------------------------------------------------------

    def log_state(self, job: SimJob) -> LogState:
        """Whether the job's log can be downloaded now, and if not, how GitHub says so."""
        with self.lock:
            if job.status != "completed":
                return self.settings.running_log
            if job.started_at is None or job.completed_at is None:
                return "api_404"  # never ran on a runner: there is no log
            if self.clock() < job.completed_at + self.settings.finalize_seconds:
                return "api_404"
            return "ready"

    def job_log(self, job: SimJob) -> str:
        """The log text as the blob serves it (BOM included), whatever its readiness."""
        with self.lock:
            return render_log(job.log)

    def visible_annotations(self, job: SimJob) -> list[Annotation]:
        with self.lock:
            timing = self.settings.annotation_timing
            if timing == "immediate" or job.status == "completed":
                return list(job.annotations)
            if timing == "job_end":
                return []
            done = {s.number for s in job.steps if s.status == "completed"}
            return [a for a in job.annotations if a.step_number in done]


def _fake_sha(seed: str) -> str:
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()
