"""Trust relationships in the store: one record per project, written by compare-and-set."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

from issuer.builder.relationships import TrustRelationship, parse_relationship
from issuer.store import Store

_RETRIES = 50


def _key(project: str) -> str:
    return f"builder:trust:{project}"


class TrustStore:
    def __init__(self, store: Store, trusted_issuers: tuple[str, ...]) -> None:
        self._store = store
        self._trusted = trusted_issuers

    def _decode(self, raw: bytes | None) -> list[TrustRelationship]:
        if raw is None:
            return []
        return [
            parse_relationship(item, trusted_issuers=self._trusted, stored=True)
            for item in json.loads(raw)
        ]

    @staticmethod
    def _encode(relationships: Sequence[TrustRelationship]) -> bytes:
        return json.dumps([r.as_json() for r in relationships], separators=(",", ":")).encode()

    async def for_project(self, project: str) -> list[TrustRelationship]:
        """The project's relationships, oldest first (the order they are evaluated in)."""
        return self._decode(await self._store.get(_key(project)))

    async def add(self, relationships: Sequence[TrustRelationship]) -> None:
        """Write new relationships (of any projects), each project's batch at once."""
        by_project: dict[str, list[TrustRelationship]] = {}
        for relationship in relationships:
            by_project.setdefault(relationship.project, []).append(relationship)
        for project, new in by_project.items():
            await self._update(project, _appending(new))

    async def remove(self, project: str, relationship_id: str) -> bool:
        """True if the relationship existed."""
        removed = False

        def without(
            current: list[TrustRelationship],
        ) -> list[TrustRelationship] | None:
            nonlocal removed
            kept = [r for r in current if r.id != relationship_id]
            removed = len(kept) != len(current)
            return kept if removed else None

        await self._update(project, without)
        return removed

    async def _update(
        self,
        project: str,
        change: Callable[[list[TrustRelationship]], list[TrustRelationship] | None],
    ) -> None:
        for _ in range(_RETRIES):
            raw = await self._store.get(_key(project))
            new = change(self._decode(raw))
            if new is None:
                return
            if await self._store.compare_and_set(_key(project), raw, self._encode(new)):
                return
            await asyncio.sleep(0)
        raise RuntimeError("the trust relationships kept changing under this write")


def _appending(
    new: Sequence[TrustRelationship],
) -> Callable[[list[TrustRelationship]], list[TrustRelationship]]:
    return lambda current: [*current, *new]
