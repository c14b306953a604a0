"""Live builders per project, per run and per head repository: one fork's author with many
claims on their own run (or runs) cannot hold every builder of a project."""

from __future__ import annotations

import json

import pytest

from issuer.builder.buildtokens import BuildTokens
from issuer.builder.registry import BuilderRegistry, Full, Limits, Slot
from issuer.store import RedisStore

NOW = 1_000_000
PROJECT = "octo-org/octo-repo"
GENEROUS = Limits(project=100, run=2, head_repository=3)


@pytest.fixture
def registry(redis_store: RedisStore) -> BuilderRegistry:
    return BuilderRegistry(redis_store, BuildTokens(redis_store), clock=lambda: NOW)


def slot(n: int, run: str = "octo-org/octo-repo#1", head: str = "fork-a/octo-repo") -> Slot:
    return Slot(f"b-{n}", NOW + 600 + n, run, head)


async def test_one_run_gets_no_more_builders_than_the_run_limit(
    registry: BuilderRegistry,
) -> None:
    assert await registry.reserve(PROJECT, slot(1), GENEROUS) is None
    assert await registry.reserve(PROJECT, slot(2), GENEROUS) is None
    assert await registry.reserve(PROJECT, slot(3), GENEROUS) == Full("run", 2, 601)


async def test_another_run_still_gets_a_builder_when_one_run_is_at_its_limit(
    registry: BuilderRegistry,
) -> None:
    for n in (1, 2):
        await registry.reserve(PROJECT, slot(n), GENEROUS)
    other = slot(3, run="octo-org/octo-repo#2", head="fork-b/octo-repo")
    assert await registry.reserve(PROJECT, other, GENEROUS) is None


async def test_one_head_repository_gets_no_more_builders_than_its_limit_across_runs(
    registry: BuilderRegistry,
) -> None:
    for n in (1, 2, 3):
        assert await registry.reserve(
            PROJECT, slot(n, run=f"octo-org/octo-repo#{n}"), GENEROUS
        ) is (None)
    fourth = slot(4, run="octo-org/octo-repo#4")
    assert await registry.reserve(PROJECT, fourth, GENEROUS) == Full("head_repository", 3, 601)


async def test_the_project_limit_still_holds_over_every_run(registry: BuilderRegistry) -> None:
    limits = Limits(project=2, run=2, head_repository=3)
    await registry.reserve(PROJECT, slot(1, run="r#1", head="a/r"), limits)
    await registry.reserve(PROJECT, slot(2, run="r#2", head="b/r"), limits)
    assert await registry.reserve(PROJECT, slot(3, run="r#3", head="c/r"), limits) == Full(
        "project", 2, 601
    )


async def test_a_released_builder_frees_its_runs_place(
    registry: BuilderRegistry,
) -> None:
    for n in (1, 2):
        await registry.reserve(PROJECT, slot(n), GENEROUS)
    await registry.unreserve(PROJECT, "b-1")
    assert await registry.reserve(PROJECT, slot(3), GENEROUS) is None


async def test_the_run_limit_counts_within_a_project(registry: BuilderRegistry) -> None:
    for n in (1, 2):
        await registry.reserve(PROJECT, slot(n), GENEROUS)
    assert await registry.reserve("octo-org/other", slot(3), GENEROUS) is None


async def test_a_live_record_of_the_previous_version_still_counts_for_the_project(
    registry: BuilderRegistry, redis_store: RedisStore
) -> None:
    await redis_store.set(f"builder:live:{PROJECT}", json.dumps({"b-old": NOW + 60}).encode())
    limits = Limits(project=1, run=2, head_repository=3)
    assert await registry.reserve(PROJECT, slot(1), limits) == Full("project", 1, 60)
    assert await registry.live(PROJECT) == {"b-old": NOW + 60}
