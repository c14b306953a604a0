"""One watcher per run, whichever replicas its claims and exchanges reach.

The replica holding a run's lease (in the shared store) runs its watch loop. It looks at the
run soon after a claim (is it a run we vouch for?), and after that only while an exchange
waits on it, or when GitHub's delivery says one of its jobs completed:

- a run nobody waits for costs nothing: no look until an exchange waits or a delivery comes;
- a refused run (404, private, not a pull request...) is not looked at again unless an
  exchange asks after the refusal;
- while an exchange waits, a repository whose deliveries arrive is not polled: a
  ``workflow_job`` ``completed`` delivery points the watcher at that job (read at once, and
  only that job), and a slow safety poll covers lost deliveries; other repositories are
  polled, often after a change and more rarely while nothing changes;
- a completed job's log GitHub does not serve yet (it finalises it for up to ~30 s) is read
  again on its own backoff, not with the whole run.

Every request a look makes draws on the credential's shared budget at the look's priority
(:mod:`issuer.github.pacing`: waiting, then just finished, then the rest), and its points are
charged to the addresses that claimed the run (:mod:`issuer.oidc.charges`): a run whose every
claimant spent its share draws at the lowest priority. The loop stops once every claim on the
run was seen or expired. The lease is renewed while the loop works; if its replica dies the
lease lapses and a replica with a waiting exchange takes the run over within seconds.

Exchanges wait on a per-process follower of the run, which notices changes made by any
replica through a version counter, so a thousand waiting exchanges cost one store read per
tick per run, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from issuer.github.channels import Sighting
from issuer.github.client import MAX_LOG_BYTES
from issuer.github.errors import GitHubError, GitHubRateLimited, GitHubUnavailable
from issuer.github.facts import JobFacts, PullRequestFacts, RunFacts
from issuer.github.meter import metered
from issuer.github.pacing import Priority, paced_as
from issuer.oidc.charges import AddressCharges
from issuer.oidc.metrics import LOOKS
from issuer.oidc.runs import (
    FAILURE_REJECTED,
    FAILURE_UNAVAILABLE,
    RUN_HINT,
    Failure,
    Memo,
    RunKey,
    RunState,
    RunView,
    hooked_key,
)
from issuer.oidc.tokens import identity_claims
from issuer.oidc.watcher import Look, RunReader, RunRejected, WantedCodes
from issuer.store import Get, HashGet, Store, Write, tagged

log = logging.getLogger(__name__)

PullRequestFinder = Callable[[RunFacts], Awaitable[PullRequestFacts | None]]


WATCHED_ELSEWHERE_KEPT = 4096  # runs remembered as watched by another replica, at most


@dataclass(frozen=True)
class Pacing:
    """How often a run is looked at. Every request costs points of GitHub's secondary limit
    (a 304 too), so a run is polled only while an exchange waits, and not at all where
    deliveries arrive (but for a slow safety poll)."""

    first_look: float = 2.0  # after a claim, unless an exchange asks sooner
    fastest: float = 0.25  # after a change
    slowest_waiting: float = 0.75  # while an exchange waits
    idle_check: float = 15.0  # nobody waits: only whether every claim is done (no GitHub read)
    backoff: float = 1.5
    min_gap: float = 0.25  # between two looks, however many exchanges arrive
    tick: float = 0.2  # how often the loop and followers check the store
    lease_ttl: float = 4.0
    lease_renewal: float = 1.0
    waiting_window: float = 31.0  # an exchange's long poll lasts at most 30 s
    run_refresh: float = 5.0  # how long a read of the run itself serves later looks
    # Where deliveries arrive: the whole run is read this often while an exchange waits, for
    # deliveries GitHub lost (it does not retry them); a read of the run serves this long.
    safety_poll: float = 10.0
    hooked_check: float = 5.0  # how often the loop asks whether the repository's deliveries arrive
    log_retry_first: float = 0.25  # a log not served yet: read again after this, doubling,
    log_retry_longest: float = 4.0  # at most this far apart,
    log_retry_for: float = 45.0  # for this long after the first try (then the polls take it)
    charges_check: float = 5.0  # how often the loop re-reads its claimants' charges


@dataclass
class _RecentRun:
    """What the watch loop last read of the run itself, and last wrote of it: a look writes
    only what changed."""

    run: RunFacts | None = None
    read_at: float = float("-inf")
    memo: bytes | None = None
    status: str | None = None
    failure_stored: bool = True  # unknown when the loop starts: another holder may have failed
    pull: tuple[PullRequestFacts | None] | None = None  # the run's pull request, once known


@dataclass(frozen=True)
class _Outcome:
    fingerprint: tuple[Any, ...]  # of the run and its jobs: a change means look again soon
    found_new: bool
    rest: float  # GitHub unavailable: seconds until the next look
    rejected: bool = False  # refused: no look until an exchange asks again
    not_ready: tuple[JobFacts, ...] = ()


@dataclass
class _Retry:
    """A job to read again: its log was not served yet, or the API did not show it completed
    although a delivery said so."""

    job: JobFacts
    first: float
    delay: float
    at: float


@dataclass
class _Loop:
    """What one watch loop keeps between its looks."""

    next_poll: float
    last_look: float = 0.0
    interval: float = 0.0
    previous: tuple[Any, ...] | None = None
    failures: int = 0
    looked: bool = False  # the first look (is it a run we vouch for?) is done
    rejected_at: float | None = None
    not_before: float = 0.0  # GitHub asked for a rest
    next_check: float = 0.0
    hints_seen: float = 0.0
    hinted_jobs: set[int] = field(default_factory=set)
    run_hinted: bool = False
    retries: dict[int, _Retry] = field(default_factory=dict)
    hooked: bool = False
    hooked_read_at: float = float("-inf")
    demoted: bool = False
    claimants: list[str] = field(default_factory=list)
    charges_read_at: float = float("-inf")
    pointed: bool = False  # the look under way was pointed by a delivery or a retry

    def take_hints(self, hints: set[str]) -> None:
        for hint in hints:
            if hint == RUN_HINT:
                self.run_hinted = True
            elif hint.isdigit():
                self.hinted_jobs.add(int(hint))

    def retries_due(self, now: float) -> list[_Retry]:
        return [retry for retry in self.retries.values() if retry.at <= now]

    def retry(self, jobs: tuple[JobFacts, ...], now: float, pace: Pacing) -> None:
        """Read these jobs again later, each on its own doubling delay, for a while."""
        for job in jobs:
            known = self.retries.get(job.id)
            if known is None:
                first = pace.log_retry_first
                self.retries[job.id] = _Retry(job, now, first, now + first)
                continue
            if now - known.first >= pace.log_retry_for:
                del self.retries[job.id]  # the polls, or a safety poll, take it from here
                continue
            known.job = job
            known.delay = min(known.delay * 2, pace.log_retry_longest)
            known.at = now + known.delay


class RunWatches:
    """This replica's watch loops and followers."""

    def __init__(
        self,
        store: Store,
        reader: RunReader,
        *,
        issuer: str,
        ttl: float,
        find_pull_request: PullRequestFinder | None = None,
        pacing: Pacing | None = None,
        charges: AddressCharges | None = None,
        deliveries: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``deliveries``: GitHub's webhook deliveries are received (``POST /github/webhook``),
        so repositories whose deliveries arrive need not be polled."""
        self._store = store
        self._reader = reader
        self._issuer = issuer
        self._ttl = ttl
        self._find_pull_request = find_pull_request
        self.pacing = pacing or Pacing()
        self._charges = charges
        self._deliveries = deliveries
        self._clock = clock
        self._holder = secrets.token_hex(8)
        self._watching: dict[str, asyncio.Task[None]] = {}
        self._followers: dict[str, _Follower] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._wanted: dict[str, float] = {}  # of the runs watched here, as the ticker read it
        self._hinted: dict[str, float] = {}  # likewise: when a delivery last pointed at the run
        self._ticker: asyncio.Task[None] | None = None
        self._refreshing: set[asyncio.Task[None]] = set()
        self._watched_elsewhere: dict[str, float] = {}  # run → until when not to ask again
        self._stopping = asyncio.Event()

    def state(self, key: RunKey) -> RunState:
        return RunState(self._store, key, ttl=self._ttl, clock=self._clock)

    # -- claims and exchanges ---------------------------------------------------------------

    async def claimed(
        self,
        key: RunKey,
        code: str,
        expires_at: int,
        *,
        also: Sequence[Write] = (),
        claimant: str | None = None,
    ) -> None:
        """A claim now waits on the run: watch it, first look soon. ``also`` are the claim's
        own writes, made in the same round trip, before its code is registered; the run's
        looks are charged in part to ``claimant`` (the client's address)."""
        state = self.state(key)
        await self._store.write_many([*also, *state.claim_writes(code, expires_at, claimant)])
        await self._ensure_watched(key, first_look=self.pacing.first_look)

    def hinted(self, key: RunKey) -> None:
        """A delivery pointed at the run (its hint is written): if it is watched here, look
        now rather than at the next tick (another replica's ticker notices within one)."""
        if key.tag in self._watching:
            self._hinted[key.tag] = max(self._clock(), self._hinted.get(key.tag, 0.0))
            self._wake(key)

    @contextlib.asynccontextmanager
    async def waiting(self, key: RunKey, code: str) -> AsyncIterator[Waiter]:
        """While an exchange for ``code`` waits on the run: it is woken when the run changes,
        with a view of the run read once for every exchange waiting here. Enter before the
        exchange's own first read of the run, so that no change after it goes unnoticed."""
        follower = self._followers.get(key.tag)
        if follower is None:
            follower = _Follower(key)
            self._followers[key.tag] = follower
        follower.add(code)
        try:
            yield Waiter(follower, code)
        finally:
            follower.remove(code)
            if not follower.codes:
                self._followers.pop(key.tag, None)

    async def asked(self, key: RunKey) -> None:
        """An exchange waits on the run now, having written ``RunState.want_write()``: make
        sure the run is watched, and looked at now."""
        if key.tag in self._watching:  # known here at once, not at the ticker's next read
            self._wanted[key.tag] = max(self._clock(), self._wanted.get(key.tag, 0.0))
        self._wake(key)
        await self._ensure_watched(key, first_look=0.0)
        self._ensure_ticker()

    async def close(self) -> None:
        """Stop every loop here and hand leases back, so another replica takes over at once."""
        self._stopping.set()
        for task in list(self._refreshing):
            task.cancel()
        for follower in list(self._followers.values()):
            follower.changed(None)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for task in list(self._watching.values()):
            task.cancel()
        for task in list(self._watching.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the lease ----------------------------------------------------------------------------

    async def _ensure_watched(self, key: RunKey, *, first_look: float, force: bool = False) -> None:
        """Watch the run here unless another replica does. Having just found it watched
        elsewhere, do not ask the store again for a while (every claim and exchange asks),
        unless ``force``: the ticker saw the lease lapse."""
        if self._stopping.is_set() or key.tag in self._watching:
            return
        now = self._clock()
        if not force and now < self._watched_elsewhere.get(key.tag, 0.0):
            return
        if not await self.state(key).take_lease(self._holder, self.pacing.lease_ttl):
            self._remember_watched_elsewhere(key.tag, now)
            return
        self._watched_elsewhere.pop(key.tag, None)
        self._watching[key.tag] = asyncio.create_task(self._watch(key, first_look))
        self._ensure_ticker()

    def _remember_watched_elsewhere(self, tag: str, now: float) -> None:
        if len(self._watched_elsewhere) >= WATCHED_ELSEWHERE_KEPT:
            self._watched_elsewhere = {
                t: until for t, until in self._watched_elsewhere.items() if until > now
            }
        self._watched_elsewhere[tag] = now + self.pacing.lease_renewal

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        """One loop per process for every run followed or watched here: each tick reads all
        their ``version``, ``lease`` and ``wanted`` keys in one round trip, wakes exchanges
        whose run changed, takes over runs whose watcher is gone, and tells watch loops
        that an exchange asked for a look."""
        while self._followers or self._watching:
            await asyncio.sleep(self.pacing.tick)
            followed = list(self._followers.values())
            watched = list(self._watching)
            keys: list[str] = []
            for follower in followed:
                state = self.state(follower.key)
                keys += [state.version_key, state.lease_key]
            keys += [tagged(tag, part) for tag in watched for part in ("wanted", "hinted")]
            try:
                values = await self._store.get_many(keys)
            except Exception:  # a store hiccup: the next tick tries again
                log.warning("reading the runs' state failed", exc_info=True)
                continue
            changed = []
            for index, follower in enumerate(followed):
                version, lease = values[2 * index], values[2 * index + 1]
                seen = int(version or 0)
                if seen != follower.version:
                    follower.version = seen
                    changed.append(follower)
                if lease is None and follower.key.tag not in self._watching:
                    with contextlib.suppress(Exception):
                        await self._ensure_watched(follower.key, first_look=0.0, force=True)
            read = values[2 * len(followed) :]
            for index, tag in enumerate(watched):
                woken = False
                for times, raw in (
                    (self._wanted, read[2 * index]),
                    (self._hinted, read[2 * index + 1]),
                ):
                    if raw is not None and float(raw) > times.get(tag, 0.0):
                        times[tag] = float(raw)
                        woken = True
                event = self._wakeups.get(tag)
                if woken and event is not None:
                    event.set()
            if changed:
                await self._refresh(changed)

    async def _refresh(self, followers: list[_Follower]) -> None:
        """Read the view of every run in ``followers`` in one round trip, then wake their
        exchanges with it. If the read fails they are woken without one, to read their own."""
        reads: list[Get | HashGet] = []
        asked: list[tuple[_Follower, list[str], int]] = []
        for follower in followers:
            codes = sorted(follower.codes)
            asked.append((follower, codes, len(reads)))
            reads += self.state(follower.key).view_reads(codes)
        try:
            values = await self._store.read_many(reads)
        except Exception:
            log.warning("reading the runs' changes failed", exc_info=True)
            for follower in followers:
                follower.changed(None)
            return
        for follower, codes, start in asked:
            end = start + 2 + len(codes)
            follower.changed(RunState.view_of(codes, values[start:end]))

    def _wake(self, key: RunKey) -> None:
        event = self._wakeups.get(key.tag)
        if event is not None:
            event.set()

    def _notify(self, key: RunKey) -> None:
        """The watch loop here changed the run: wake this replica's exchanges now, not at
        the next tick."""
        follower = self._followers.get(key.tag)
        if follower is not None:
            task = asyncio.create_task(self._refresh([follower]))
            self._refreshing.add(task)
            task.add_done_callback(self._refreshing.discard)

    # -- the watch loop -------------------------------------------------------------------------

    async def _watch(self, key: RunKey, first_look: float) -> None:
        state = self.state(key)
        pace = self.pacing
        wakeup = self._wakeups.setdefault(key.tag, asyncio.Event())
        loop = _Loop(next_poll=self._clock() + first_look, interval=pace.fastest)
        recent = _RecentRun()
        lost = asyncio.Event()
        # Renewed on its own beat, so that a slow look never lets the lease lapse.
        heartbeat = asyncio.create_task(self._keep_lease(state, lost))
        try:
            # Inside the try: a store error here too must end in the cleanup below, or the
            # run would stay marked as watched by this replica, and never be looked at again.
            memo = await state.memo()
            # What was asked for, or pointed at, before this loop began (another replica's).
            started = (
                (self._wanted, await state.wanted_at()),
                (self._hinted, await state.hinted_at()),
            )
            for seen, at in started:
                if at is not None and at > seen.get(key.tag, 0.0):
                    seen[key.tag] = at
            loop.next_check = self._clock() + pace.idle_check
            while True:
                now = self._clock()
                if lost.is_set():
                    log.warning("lost the lease of %s", key.describe())
                    return
                if self._hinted.get(key.tag, 0.0) > loop.hints_seen:
                    loop.hints_seen = self._hinted[key.tag]
                    loop.take_hints(await state.take_hints())
                work = await self._work_due(key, loop, now)
                if work is None and now >= loop.next_check:
                    work = "check"
                if work is not None:
                    loop.next_check = now + pace.idle_check
                    pending = await state.pending_codes()
                    if not pending - memo.sighted_codes:
                        return  # every claim seen or expired
                    if work != "check":
                        await self._one_look(key, state, memo, loop, recent, work, now)
                        continue  # what came in during the look (a hint, say) is due now
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), pace.tick)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watching %s failed", key.describe())
        finally:
            heartbeat.cancel()
            self._watching.pop(key.tag, None)
            self._wanted.pop(key.tag, None)
            self._hinted.pop(key.tag, None)
            self._wakeups.pop(key.tag, None)
            with contextlib.suppress(Exception):
                await asyncio.shield(state.release_lease(self._holder))

    def _waiting(self, key: RunKey, now: float) -> bool:
        wanted = self._wanted.get(key.tag)
        return wanted is not None and now - wanted < self.pacing.waiting_window

    async def _work_due(self, key: RunKey, loop: _Loop, now: float) -> str | None:
        """``"poll"`` (the run and its jobs), ``"pointed"`` (the jobs a delivery named, the
        logs on their backoff), or None: nothing to read from GitHub now."""
        pace = self.pacing
        if now < loop.not_before:
            return None  # GitHub asked for a rest
        wanted = self._wanted.get(key.tag)
        asked = wanted is not None and wanted > loop.last_look
        soon_enough = now - loop.last_look >= pace.min_gap
        if not loop.looked:
            if loop.hinted_jobs or loop.run_hinted:
                return "pointed"  # a delivery came first: the run and that job, at once
            return "poll" if now >= loop.next_poll or (asked and soon_enough) else None
        if loop.rejected_at is not None:
            # A refused run costs nothing more, unless an exchange asks after the refusal.
            return (
                "poll" if wanted is not None and wanted > loop.rejected_at and soon_enough else None
            )
        if loop.hinted_jobs or loop.run_hinted or loop.retries_due(now):
            return "pointed"
        if not self._waiting(key, now):
            return None  # nobody waits: nothing to read
        hooked = await self._hooked(key, loop, now)
        if hooked:
            # Deliveries say when a job completes: only a slow safety poll, for lost ones.
            return "poll" if now >= loop.last_look + pace.safety_poll else None
        return "poll" if now >= loop.next_poll or (asked and soon_enough) else None

    async def _hooked(self, key: RunKey, loop: _Loop, now: float) -> bool:
        """Whether GitHub's deliveries arrive for the run's repository (read now and then)."""
        if not self._deliveries:
            return False
        if now - loop.hooked_read_at >= self.pacing.hooked_check:
            loop.hooked_read_at = now
            try:
                loop.hooked = await self._store.get(hooked_key(key.repository)) is not None
            except Exception:  # a store hiccup: poll, as without deliveries
                loop.hooked = False
        return loop.hooked

    async def _one_look(
        self,
        key: RunKey,
        state: RunState,
        memo: Memo,
        loop: _Loop,
        recent: _RecentRun,
        work: str,
        now: float,
    ) -> None:
        """One look at GitHub, at the priority it deserves, charged to the run's claimants;
        then when to look next."""
        pace = self.pacing
        loop.pointed = work == "pointed"
        await self._read_charges(state, loop, now)
        hooked = await self._hooked(key, loop, now)
        # Where deliveries arrive, a poll after the first look is the safety poll, for a
        # delivery GitHub lost: it yields to every look that can bring a token sooner.
        safety = work == "poll" and hooked and loop.looked

        def priority() -> Priority:
            if loop.demoted or safety:
                return Priority.IDLE  # every claimant spent its share, or a safety poll
            if self._waiting(key, self._clock()):
                return Priority.WAITING
            return Priority.FINISHED if loop.pointed else Priority.IDLE

        hinted: set[int] = set()
        run_hinted = False
        if work == "pointed":
            # The run's facts do not change within an attempt; its status does, and a
            # workflow_run delivery (a run hint) says when.
            known = None if loop.run_hinted else recent.run
            retries = loop.retries_due(now)
            job_ids = set(loop.hinted_jobs) | {r.job.id for r in retries if not r.job.completed}
            logs = [r.job for r in retries if r.job.completed and r.job.id not in job_ids]
            hinted, run_hinted = set(loop.hinted_jobs), loop.run_hinted
            loop.hinted_jobs.clear()
            loop.run_hinted = False
            for retry in retries:
                retry.at = float("inf")  # until this look says again

            async def read(wanted: WantedCodes) -> Look:
                return await self._reader.look_at(
                    key, memo, run=known, job_ids=sorted(job_ids), jobs=logs, wanted=wanted
                )
        else:
            refresh = pace.safety_poll if hooked else pace.run_refresh
            known = recent.run if now - recent.read_at < refresh else None
            waiting_retries = {job_id for job_id, r in loop.retries.items() if r.at > now}
            waiting = self._waiting(key, now)
            # Where deliveries arrive, the first look asks only whether the run is one we
            # vouch for: a delivery will say when a job completed (a safety poll, if lost).
            list_jobs = loop.looked or not hooked

            async def read(wanted: WantedCodes) -> Look:
                return await self._reader.look(
                    key,
                    memo,
                    waiting=waiting,
                    now=now,
                    wanted=wanted,
                    known_run=known,
                    skip_logs=waiting_retries,
                    list_jobs=list_jobs,
                )

        loop.last_look = now
        with paced_as(priority), metered() as meter:
            outcome = await self._look(key, state, memo, read, now, loop.failures, recent)
        loop.looked = True
        if self._charges is not None and meter.points:
            try:
                await self._charges.charge(loop.claimants, meter.points)
            except Exception:  # a store hiccup: the charge is lost, the look is not
                log.warning("charging the look at %s failed", key.describe())
        done = self._clock()
        if outcome.rejected:
            loop.rejected_at = now
            loop.retries.clear()
            return
        loop.rejected_at = None
        if outcome.rest:
            loop.failures += 1
            loop.not_before = loop.next_poll = done + outcome.rest
            for retry in loop.retries.values():
                retry.at = min(retry.at, loop.not_before)
            if work == "pointed":  # GitHub could not be read: the hints still stand
                loop.hinted_jobs |= hinted
                loop.run_hinted = loop.run_hinted or run_hinted
            return
        loop.failures = 0
        loop.retry(outcome.not_ready, done, pace)
        for job_id in [j for j, r in loop.retries.items() if r.at == float("inf")]:
            del loop.retries[job_id]  # read this time
        if work == "pointed":
            return  # a pointed look says nothing of the whole run: the polls go on as they were
        changed = outcome.found_new or outcome.fingerprint != loop.previous
        loop.previous = outcome.fingerprint
        loop.interval = (
            pace.fastest if changed else min(loop.interval * pace.backoff, pace.slowest_waiting)
        )
        loop.next_poll = now + loop.interval

    async def _read_charges(self, state: RunState, loop: _Loop, now: float) -> None:
        """Who claimed the run, and whether each of them spent its share (read now and then)."""
        if self._charges is None or self._charges.allowance == 0:
            return  # looks are not charged
        if now - loop.charges_read_at < self.pacing.charges_check:
            return
        loop.charges_read_at = now
        try:
            loop.claimants = await state.claimants()
            loop.demoted = await self._charges.all_over(loop.claimants)
        except Exception:  # a store hiccup: keep what was known
            log.warning("reading the charges of %s failed", state.key.describe())

    async def _keep_lease(self, state: RunState, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.pacing.lease_renewal)
            try:
                if not await state.renew_lease(self._holder, self.pacing.lease_ttl):
                    lost.set()
                    self._wake(state.key)
                    return
            except Exception:  # a store hiccup: the next beat tries again
                log.warning("renewing the lease of %s failed", state.key.describe())

    async def _look(
        self,
        key: RunKey,
        state: RunState,
        memo: Memo,
        read: Callable[[WantedCodes], Awaitable[Look]],
        now: float,
        failures: int,
        recent: _RecentRun,
    ) -> _Outcome:
        """One look (``read``), and what it means for the next."""

        async def wanted() -> frozenset[str]:
            return frozenset(await state.pending_codes() - memo.sighted_codes)

        try:
            look = await read(wanted)
            if look.run is not recent.run:
                recent.run, recent.read_at = look.run, now
        except RunRejected as exc:
            LOOKS.labels("rejected").inc()
            recent.failure_stored = True
            await state.set_failure(Failure(FAILURE_REJECTED, str(exc), now, now))
            self._notify(key)
            return _Outcome((), found_new=False, rest=0.0, rejected=True)
        except GitHubRateLimited as exc:  # GitHub said when: ask no sooner
            LOOKS.labels("rate_limited").inc()
            recent.failure_stored = True
            return await self._unavailable(key, state, str(exc), float(exc.retry_after), now)
        except GitHubUnavailable as exc:  # an outage: look again soon, then less and less
            LOOKS.labels("unavailable").inc()
            recent.failure_stored = True
            rest = min(float(exc.retry_after), 0.5 * 2.0**failures)
            return await self._unavailable(key, state, str(exc), rest, now)
        except GitHubError as exc:  # an answer we cannot use: not the workflow's fault
            LOOKS.labels("unavailable").inc()
            recent.failure_stored = True
            log.warning("unusable GitHub answer for %s: %s", key.describe(), exc)
            return await self._unavailable(
                key, state, str(exc), min(30.0, 0.5 * 2.0**failures), now
            )
        LOOKS.labels("ok").inc()
        new = {code: s for code, s in look.found.items() if code not in memo.sighted_codes}
        identities = await self._identities(key, state, look, new, recent) if new else {}
        memo.sighted_codes.update(new)
        encoded = memo.encode()
        status = _waiting(look, memo) if look.jobs or recent.status is None else recent.status
        writes = state.look_writes(
            sightings=identities,
            memo=None if encoded == recent.memo else encoded,
            status=None if status == recent.status else status,
            clear_failure=recent.failure_stored,
        )
        if writes:
            await self._store.write_many(writes)
        recent.memo, recent.status, recent.failure_stored = encoded, status, False
        if new:
            self._notify(key)
        fingerprint = tuple((j.id, j.status, j.step_in_progress) for j in look.jobs)
        return _Outcome(
            (look.run.status, *fingerprint),
            found_new=bool(new),
            rest=0.0,
            not_ready=tuple(look.not_ready),
        )

    async def _unavailable(
        self, key: RunKey, state: RunState, message: str, rest: float, now: float
    ) -> _Outcome:
        # The rest runs from when the look gave up, not from when it began.
        until = self._clock() + rest
        await state.set_failure(Failure(FAILURE_UNAVAILABLE, message, now, until))
        self._notify(key)
        return _Outcome((), found_new=False, rest=rest)

    async def _identities(
        self, key: RunKey, state: RunState, look: Look, new: dict[str, Sighting], recent: _RecentRun
    ) -> dict[str, dict[str, Any]]:
        """The identity claims of each code seen for the first time."""
        pull = recent.pull or await self._pull_request(state, look.run)
        recent.pull = pull
        identities = {
            code: identity_claims(
                issuer=self._issuer,
                run=look.run,
                sighting=sighting,
                pull_request=pull[0] if pull else None,
            )
            for code, sighting in new.items()
        }
        for sighting in {(s.job_id, s.channel) for s in new.values()}:
            log.info(
                "challenge seen in %s, job %s, via %s", key.describe(), sighting[0], sighting[1]
            )
        return identities

    async def _pull_request(
        self, state: RunState, run: RunFacts
    ) -> tuple[PullRequestFacts | None] | None:
        """The run's pull request, in a 1-tuple (there may be none), found once per run and
        only through the finder's checks, whether the run lists pull requests (they need not be
        the one that ran) or not (a fork's); None if the lookup failed, to be tried again."""
        if self._find_pull_request is None:
            return (None,)
        cached = await state.pull_request()
        if cached is not None:
            return (PullRequestFacts(**cached) if cached else None,)
        try:
            pull = await self._find_pull_request(run)
        except GitHubError as exc:
            log.warning("the pull request of run %s could not be found: %s", run.id, exc)
            return None
        await state.set_pull_request(pull.__dict__ if pull else {})
        return (pull,)


class _Follower:
    """Per process and run: the exchanges waiting here, woken when the run changes with one
    view of the run read for all of them."""

    def __init__(self, key: RunKey) -> None:
        self.key = key
        self.codes: dict[str, int] = {}  # code → exchanges waiting for it here
        self.version: int | None = None  # the run's version as last read
        self.generation = 0  # how many changes were noticed
        self.view: RunView | None = None  # read after the latest change; None: read your own
        self._changed = asyncio.Event()  # set, and replaced, at each change

    def add(self, code: str) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1

    def remove(self, code: str) -> None:
        left = self.codes.get(code, 0) - 1
        if left > 0:
            self.codes[code] = left
        else:
            self.codes.pop(code, None)

    def changed(self, view: RunView | None) -> None:
        if view is not None and self.view is not None and view.version < self.view.version:
            return  # an older read that finished late: a newer view is already out
        self.view = view
        self.generation += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def next_change(self, seen: int, seconds: float) -> int:
        """The generation after ``seen``, as soon as there is one, or after ``seconds``."""
        if self.generation == seen:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(seconds, 0.0))
        return self.generation


class Waiter:
    """One exchange's view of its run's follower: it never misses a change made between
    reading the store and starting to wait, because it remembers the last one it saw."""

    def __init__(self, follower: _Follower, code: str) -> None:
        self._follower = follower
        self._code = code
        self._seen = follower.generation

    def saw(self, version: int) -> None:
        """The exchange read the run at ``version``: the follower's first baseline."""
        if self._follower.version is None:
            self._follower.version = version

    async def wait(self, seconds: float) -> RunView | None:
        """Until something changed on the run since the last wait, or ``seconds`` passed.
        After a change: the run's view if it holds this exchange's code; None otherwise
        (time ran out, or no view came with the change): then read the store yourself."""
        before = self._seen
        self._seen = await self._follower.next_change(before, seconds)
        view = self._follower.view
        if self._seen == before or view is None or self._code not in view.sightings:
            return None
        return view


def _waiting(look: Look, memo: Memo) -> str:
    """What the run is waiting for, for the workflow's author."""
    running = [job.name for job in look.jobs if not job.completed][:5]
    done = sum(job.completed for job in look.jobs)
    waiting = f"; still running: {', '.join(running)}" if running else ""
    too_large = [job.name for job in look.jobs if job.id in memo.logs_too_large][:5]
    unread = (
        f"; not read, their logs being over {MAX_LOG_BYTES // (1024 * 1024)} MiB: "
        f"{', '.join(too_large)}"
        if too_large
        else ""
    )
    return (
        f"the challenge line has not been seen in run {look.run.id} attempt "
        f"{look.run.run_attempt} yet ({done} of {len(look.jobs)} jobs completed{waiting}{unread}): "
        "GitHub serves a job's log only once the job has completed, so print the line in a "
        "parallel job that completes (the relay: `issuer token relay`), in the client's own step"
    )
