"""Points of GitHub's budget charged to the addresses that claimed a run (issue 16)."""

from __future__ import annotations

from issuer.oidc.charges import AddressCharges
from issuer.store import Store


async def test_a_looks_points_are_split_among_the_runs_claimants(store: Store) -> None:
    charges = AddressCharges(store, allowance=100)
    await charges.charge(["192.0.2.1", "198.51.100.7"], 6)
    assert await charges.spent(["192.0.2.1", "198.51.100.7"]) == [3, 3]


async def test_every_claimant_pays_at_least_a_point(store: Store) -> None:
    charges = AddressCharges(store, allowance=100)
    await charges.charge(["192.0.2.1", "198.51.100.7", "203.0.113.9"], 1)
    assert await charges.spent(["192.0.2.1", "198.51.100.7", "203.0.113.9"]) == [1, 1, 1]


async def test_an_address_that_spent_its_share_is_over(store: Store) -> None:
    charges = AddressCharges(store, allowance=10)
    await charges.charge(["192.0.2.1"], 10)
    assert await charges.all_over(["192.0.2.1"])


async def test_a_run_is_held_back_only_when_every_claimant_is_over(store: Store) -> None:
    charges = AddressCharges(store, allowance=10)
    await charges.charge(["192.0.2.1"], 10)
    assert not await charges.all_over(["192.0.2.1", "198.51.100.7"])


async def test_a_run_without_known_claimants_is_not_held_back(store: Store) -> None:
    assert not await AddressCharges(store, allowance=10).all_over([])


async def test_an_allowance_of_zero_charges_nothing(store: Store) -> None:
    charges = AddressCharges(store, allowance=0)
    await charges.charge(["192.0.2.1"], 50)
    assert await charges.spent(["192.0.2.1"]) == [0]
    assert not await charges.all_over(["192.0.2.1"])
