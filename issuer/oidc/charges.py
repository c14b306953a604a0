"""GitHub points charged to the client addresses that claimed a run.

Every look at a run costs points of GitHub's secondary limit, and a claim is free to make:
without a charge, a stream of never-exchanged claims on runs of strangers would spend the
budget legitimate runs wait on. So the points a look spends are split among the addresses of
the run's live claims (``ISSUER_GITHUB_POINTS_PER_ADDRESS`` per hour each); a run whose every
claimant has spent its share is looked at only at the lowest priority (``Priority.IDLE``): it
still gets points when nobody else needs them, never before a run within its share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from issuer.store import Bump, Store

CHARGE_PREFIX = "gh:charged:"
CHARGE_WINDOW = 3600.0  # a fixed window from an address's first charge


class AddressCharges:
    def __init__(self, store: Store, allowance: int, *, window: float = CHARGE_WINDOW) -> None:
        """``allowance``: points per address per window; 0 charges nothing."""
        self._store = store
        self.allowance = allowance
        self._window = window

    async def charge(self, addresses: Sequence[str], points: int) -> None:
        """Split ``points`` among ``addresses`` (rounded up: each pays at least one)."""
        if not addresses or points <= 0 or self.allowance == 0:
            return
        share = math.ceil(points / len(addresses))
        await self._store.write_many(
            [Bump(CHARGE_PREFIX + address, ttl=self._window, by=share) for address in addresses]
        )

    async def spent(self, addresses: Sequence[str]) -> list[int]:
        if not addresses:
            return []
        values = await self._store.get_many([CHARGE_PREFIX + a for a in addresses])
        return [int(value or 0) for value in values]

    async def all_over(self, addresses: Sequence[str]) -> bool:
        """Whether every one of ``addresses`` has spent its share (False when there is none:
        a run claimed before charges were kept is not punished)."""
        if self.allowance == 0 or not addresses:
            return False
        return all(spent >= self.allowance for spent in await self.spent(addresses))
