"""One watcher per run, whichever replicas its claims and exchanges reach.

The replica holding a run's lease (in the shared store) runs its watch loop: it looks at the
run soon after a claim, at once when an exchange starts waiting, then more and more rarely
while nothing changes (a refused run, say an attempt that does not exist yet, is looked at
again rarely, or when asked), and stops once every claim on the run was seen or expired. The
lease is renewed while the loop works; if its replica dies the lease lapses
and a replica with a waiting exchange takes the run over within seconds.

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
from dataclasses import dataclass
from typing import Any

from issuer.github.channels import Sighting
from issuer.github.client import MAX_LOG_BYTES
from issuer.github.errors import GitHubError, GitHubRateLimited, GitHubUnavailable
from issuer.github.facts import PullRequestFacts, RunFacts
from issuer.oidc.metrics import LOOKS
from issuer.oidc.runs import (
    FAILURE_REJECTED,
    FAILURE_UNAVAILABLE,
    Failure,
    Memo,
    RunKey,
    RunState,
    RunView,
)
from issuer.oidc.tokens import identity_claims
from issuer.oidc.watcher import Look, RunReader, RunRejected
from issuer.store import Get, HashGet, Store, Write, tagged

log = logging.getLogger(__name__)

PullRequestFinder = Callable[[RunFacts], Awaitable[PullRequestFacts | None]]


WATCHED_ELSEWHERE_KEPT = 4096  # runs remembered as watched by another replica, at most


@dataclass(frozen=True)
class Pacing:
    """How often a run is looked at. Conditional reads of an unchanged run cost no budget, so
    while an exchange waits the cap is short; with nobody waiting, looks grow rare."""

    first_look: float = 2.0  # after a claim, unless an exchange asks sooner
    fastest: float = 0.25  # after a change
    slowest_waiting: float = 0.75  # while an exchange waits
    slowest_idle: float = 15.0  # while nobody waits
    backoff: float = 1.5
    min_gap: float = 0.25  # between two looks, however many exchanges arrive
    tick: float = 0.2  # how often the loop and followers check the store
    lease_ttl: float = 4.0
    lease_renewal: float = 1.0
    waiting_window: float = 31.0  # an exchange's long poll lasts at most 30 s
    run_refresh: float = 5.0  # how long a read of the run itself serves later looks


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
    rest: float  # refused, or GitHub unavailable: seconds until the next look unless asked


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._reader = reader
        self._issuer = issuer
        self._ttl = ttl
        self._find_pull_request = find_pull_request
        self.pacing = pacing or Pacing()
        self._clock = clock
        self._holder = secrets.token_hex(8)
        self._watching: dict[str, asyncio.Task[None]] = {}
        self._followers: dict[str, _Follower] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._wanted: dict[str, float] = {}  # of the runs watched here, as the ticker read it
        self._ticker: asyncio.Task[None] | None = None
        self._refreshing: set[asyncio.Task[None]] = set()
        self._watched_elsewhere: dict[str, float] = {}  # run → until when not to ask again
        self._stopping = asyncio.Event()

    def state(self, key: RunKey) -> RunState:
        return RunState(self._store, key, ttl=self._ttl, clock=self._clock)

    # -- claims and exchanges ---------------------------------------------------------------

    async def claimed(
        self, key: RunKey, code: str, expires_at: int, *, also: Sequence[Write] = ()
    ) -> None:
        """A claim now waits on the run: watch it, first look soon. ``also`` are the claim's
        own writes, made in the same round trip, before its code is registered."""
        state = self.state(key)
        await self._store.write_many([*also, *state.claim_writes(code, expires_at)])
        await self._ensure_watched(key, first_look=self.pacing.first_look)

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
            keys += [tagged(tag, "wanted") for tag in watched]
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
            for tag, raw in zip(watched, values[2 * len(followed) :], strict=True):
                if raw is None:
                    continue
                wanted = float(raw)
                if wanted > self._wanted.get(tag, 0.0):
                    self._wanted[tag] = wanted
                    event = self._wakeups.get(tag)
                    if event is not None:
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
        next_look = self._clock() + first_look
        last_look = 0.0
        interval = pace.fastest
        previous: tuple[Any, ...] | None = None
        failures = 0
        recent = _RecentRun()
        lost = asyncio.Event()
        # Renewed on its own beat, so that a slow look never lets the lease lapse.
        heartbeat = asyncio.create_task(self._keep_lease(state, lost))
        try:
            # Inside the try: a store error here too must end in the cleanup below, or the
            # run would stay marked as watched by this replica, and never be looked at again.
            memo = await state.memo()
            first_wanted = await state.wanted_at()
            if first_wanted is not None:
                self._wanted[key.tag] = max(first_wanted, self._wanted.get(key.tag, 0.0))
            while True:
                now = self._clock()
                if lost.is_set():
                    log.warning("lost the lease of %s", key.describe())
                    return
                wanted = self._wanted.get(key.tag)
                waiting = wanted is not None and now - wanted < pace.waiting_window
                asked = wanted is not None and wanted > last_look
                if now >= next_look or (asked and now - last_look >= pace.min_gap):
                    pending = await state.pending_codes()
                    if not pending - memo.sighted_codes:
                        return  # every claim seen or expired
                    last_look = now
                    outcome = await self._look(
                        key,
                        state,
                        memo,
                        waiting=waiting,
                        now=now,
                        failures=failures,
                        recent=recent,
                    )
                    if outcome.rest:
                        failures += 1
                        next_look = self._clock() + outcome.rest
                    else:
                        failures = 0
                        changed = outcome.found_new or outcome.fingerprint != previous
                        previous = outcome.fingerprint
                        slowest = pace.slowest_waiting if waiting else pace.slowest_idle
                        interval = (
                            pace.fastest if changed else min(interval * pace.backoff, slowest)
                        )
                        next_look = now + interval
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
            self._wakeups.pop(key.tag, None)
            with contextlib.suppress(Exception):
                await asyncio.shield(state.release_lease(self._holder))

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
        *,
        waiting: bool,
        now: float,
        failures: int,
        recent: _RecentRun,
    ) -> _Outcome:
        """One look, and what it means for the next."""

        async def wanted() -> frozenset[str]:
            return frozenset(await state.pending_codes() - memo.sighted_codes)

        try:
            known = recent.run if now - recent.read_at < self.pacing.run_refresh else None
            look = await self._reader.look(
                key, memo, waiting=waiting, now=now, wanted=wanted, known_run=known
            )
            if look.run is not known:
                recent.run, recent.read_at = look.run, now
        except RunRejected as exc:
            LOOKS.labels("rejected").inc()
            recent.failure_stored = True
            await state.set_failure(Failure(FAILURE_REJECTED, str(exc), now, now))
            self._notify(key)
            return _Outcome((), found_new=False, rest=self.pacing.slowest_idle)
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
        status = _waiting(look, memo)
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
        return _Outcome((look.run.status, *fingerprint), found_new=bool(new), rest=0.0)

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
