"""Looking at a run through GitHub: is it a run we may vouch for, and which challenge codes has
it shown? The run's facts come from GitHub's answer alone, never from a claim.

A look reads only what can have changed since the last one (kept in a :class:`Memo`):
- a completed job's log once (unless the live channel already showed a code in it),
  scanned for the codes of the claims pending once the jobs were listed: a code a completed
  job printed was handed out, so registered, before it was printed, so before the listing
  that shows the job completed;
- with the optional live channel (GitHub's web UI), running jobs' live logs while an
  exchange waits: no REST budget, but unofficial.

A look may also be pointed (:meth:`RunReader.look_at`): GitHub's delivery said which jobs
completed, so only those jobs are read (``GET .../actions/jobs/{id}``: a delivery is a hint,
the job's facts and its log still come from the API), and logs GitHub did not serve yet are
read again on their own backoff, not with the whole run.

Annotations are not read: they arrive with the job's completion on GitHub-hosted runners,
no sooner than its log, and cannot be tied to the step that made them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from issuer.github.channels import LogChannel, LogState, Sighting
from issuer.github.client import GitHubClient
from issuer.github.errors import GitHubNotFound, GitHubUnavailable
from issuer.github.facts import JobFacts, MalformedAnswer, RunFacts
from issuer.github.live import LiveLogChannel
from issuer.oidc.runs import Memo, RunKey

WantedCodes = Callable[[], Awaitable[frozenset[str]]]


class RunRejected(Exception):
    """The run is not one the issuer vouches for; the message tells the workflow's author why."""


@dataclass(frozen=True)
class Look:
    run: RunFacts
    jobs: list[JobFacts]
    found: dict[str, Sighting]
    # Completed jobs whose log GitHub did not serve yet (it finalises it for up to ~30 s),
    # and hinted jobs the API does not show completed yet: to be read again on a backoff.
    not_ready: list[JobFacts] = field(default_factory=list)


class RunReader:
    def __init__(
        self,
        github: GitHubClient,
        *,
        logs: LogChannel | None,
        live: LiveLogChannel | None = None,
    ) -> None:
        self._github = github
        self._logs = logs
        self._live = live

    async def look(
        self,
        key: RunKey,
        memo: Memo,
        *,
        waiting: bool,
        now: float,
        wanted: WantedCodes | None = None,
        known_run: RunFacts | None = None,
        skip_logs: Collection[int] = (),
        list_jobs: bool = True,
    ) -> Look:
        """Read the run and whatever of it may show new codes among ``wanted()`` (the codes
        of the run's pending claims not seen yet, asked for after the jobs are listed);
        ``memo`` is updated in place.

        With ``known_run`` (a recent read of this very attempt) the run is not read again:
        what a token says of it does not change within an attempt, and its jobs tell the rest.
        Logs of ``skip_logs`` are not read (they are on their own backoff). Without
        ``list_jobs``, only the run is read (is it one we vouch for?).
        """
        if not list_jobs:
            run = known_run or await self._read_run(key.repository, key.run_id, key.run_attempt)
            check_run(run, key.repository, key.run_id)
            return Look(run, [], {})
        if known_run is not None and key.run_attempt is not None:
            jobs = await self._jobs(key.repository, key.run_id, key.run_attempt)
            run = known_run
        elif key.run_attempt is None:
            run = await self._read_run(key.repository, key.run_id, None)
            check_run(run, key.repository, key.run_id)
            jobs = await self._jobs(key.repository, run.id, run.run_attempt)
        else:  # the attempt is known: read the run and its jobs at once
            read_run, read_jobs = await asyncio.gather(
                self._read_run(key.repository, key.run_id, key.run_attempt),
                self._jobs(key.repository, key.run_id, key.run_attempt),
                return_exceptions=True,
            )
            if isinstance(read_run, BaseException):
                raise read_run  # the run's own refusal says most
            check_run(read_run, key.repository, key.run_id)
            if isinstance(read_jobs, BaseException):
                raise read_jobs
            run, jobs = read_run, read_jobs
        due = [job for job in self._logs_due(jobs, memo) if job.id not in skip_logs]
        live = []
        if self._live is not None and waiting:
            live = [self._read_live(key, job, memo) for job in jobs if job.status == "in_progress"]
        found, not_ready = await self._read_logs(key.repository, due, memo, wanted, live)
        return Look(run, jobs, found, not_ready)

    async def look_at(
        self,
        key: RunKey,
        memo: Memo,
        *,
        run: RunFacts | None,
        job_ids: Iterable[int] = (),
        jobs: Iterable[JobFacts] = (),
        wanted: WantedCodes | None = None,
    ) -> Look:
        """A pointed look: the jobs ``job_ids`` (a delivery said they completed), read alone
        (or, for several, with one listing of the attempt's jobs), and the logs of ``jobs``
        (read before, their logs not served yet). ``run``: the attempt as read before, or
        None to read it."""
        if run is None:
            run = await self._read_run(key.repository, key.run_id, key.run_attempt)
            check_run(run, key.repository, key.run_id)
        wanted_ids = set(job_ids)
        read: list[JobFacts | None]
        if len(wanted_ids) > 1:  # one page of the attempt's jobs costs what one job does
            listed = await self._jobs(key.repository, run.id, run.run_attempt)
            read = [job for job in listed if job.id in wanted_ids]
        else:
            read = [await self._job(key.repository, job_id) for job_id in wanted_ids]
        # A job of another run or attempt is no job of this look, whatever a delivery said.
        hinted = [
            job
            for job in read
            if job is not None
            and job.run_id == run.id
            and job.run_attempt in (None, run.run_attempt)
        ]
        not_completed = [job for job in hinted if not job.completed]
        due = self._logs_due([*hinted, *jobs], memo)
        found, not_ready = await self._read_logs(key.repository, due, memo, wanted)
        return Look(run, hinted, found, [*not_completed, *not_ready])

    async def _read_logs(
        self,
        repository: str,
        due: list[JobFacts],
        memo: Memo,
        wanted: WantedCodes | None,
        also: Sequence[Awaitable[dict[str, Sighting]]] = (),
    ) -> tuple[dict[str, Sighting], list[JobFacts]]:
        codes = await wanted() if due and wanted is not None else frozenset()
        not_ready: list[JobFacts] = []

        async def read(job: JobFacts) -> dict[str, Sighting]:
            sightings = await self._read_log(repository, job, memo, codes)
            if sightings is None:
                not_ready.append(job)
                return {}
            return sightings

        reads = [*(read(job) for job in due), *also]
        found: dict[str, Sighting] = {}
        for sightings in await asyncio.gather(*reads):
            for code, sighting in sightings.items():
                found.setdefault(code, sighting)
        return found, not_ready

    def _logs_due(self, jobs: list[JobFacts], memo: Memo) -> list[JobFacts]:
        if self._logs is None:
            return []
        return [
            job
            for job in jobs
            if job.completed and job.id not in memo.logs_read and job.id not in memo.sighted_jobs
        ]

    async def _read_log(
        self, repository: str, job: JobFacts, memo: Memo, wanted: frozenset[str]
    ) -> dict[str, Sighting] | None:
        """The codes the log shows; None while GitHub does not serve it yet."""
        assert self._logs is not None
        read = await self._logs.codes(repository, job, wanted)
        if read.state is LogState.NOT_READY:
            return None  # completed moments ago and still being finalised
        memo.logs_read.add(job.id)
        if read.state is LogState.TOO_LARGE:
            memo.logs_too_large.add(job.id)
        return {code: _sighting(job, self._logs.name) for code in read.codes}

    async def _read_live(self, key: RunKey, job: JobFacts, memo: Memo) -> dict[str, Sighting]:
        assert self._live is not None
        codes = await self._live.codes_in_running_job(key.repository, key.run_id, job)
        if codes:
            memo.sighted_jobs.add(job.id)
        return {code: _sighting(job, self._live.name) for code in codes}

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

    async def _job(self, repository: str, job_id: int) -> JobFacts | None:
        """One job as the API shows it; None if GitHub knows no such job there."""
        try:
            page = await self._github.get_json(f"/repos/{repository}/actions/jobs/{job_id}")
            return JobFacts.parse(page.body)
        except GitHubNotFound:
            return None
        except MalformedAnswer as exc:
            raise GitHubUnavailable(
                f"GitHub's answer was malformed: {exc}", retry_after=5
            ) from None

    async def _jobs(self, repository: str, run_id: int, attempt: int) -> list[JobFacts]:
        path = f"/repos/{repository}/actions/runs/{run_id}/attempts/{attempt}/jobs?per_page=100"
        try:
            raw = await self._github.get_all(path, "jobs")
            jobs = [JobFacts.parse(job) for job in raw]
        except GitHubNotFound:
            raise RunRejected(f"the jobs of run {run_id} are not visible") from None
        except MalformedAnswer as exc:
            raise GitHubUnavailable(
                f"GitHub's answer was malformed: {exc}", retry_after=5
            ) from None
        return [job for job in jobs if job.run_attempt in (None, attempt)]


def _sighting(job: JobFacts, channel: str) -> Sighting:
    return Sighting(job.id, job.name, channel, job.runner_group_name)


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
