"""Two replicas on a Redis Cluster of three masters: the whole flow works, every multi-key
operation staying within one hash slot."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from issuer.github.pacing import bucket_key
from issuer.sim import GitHubSim
from issuer.store import RedisStore
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import bearer, fork_run
from tests.faults.support import RedisCluster, exchange_until_done, replica_env, replicas


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    nodes = RedisCluster()
    yield nodes
    nodes.stop()


def test_claims_are_exchanged_across_replicas_on_a_redis_cluster(
    sim: GitHubSim, github: BackgroundServer, cluster: RedisCluster
) -> None:
    with replicas(replica_env(cluster.url, github.url_of(0))) as (first, second):
        jwks = [httpx.get(f"{p.url}/.well-known/jwks").json() for p in (first, second)]
        assert jwks[0] == jwks[1] and jwks[0]["keys"]
        tokens = []
        for index in range(6):  # six runs: their hash tags land on different masters
            pr = fork_run(sim)
            made, asked = (first, second) if index % 2 else (second, first)
            claim = httpx.post(f"{made.url}/claim", json=pr.claim_body())
            assert claim.status_code == 201, claim.text
            pr.print_and_finish(pr.job("claim"), claim.json()["challenge_line"])
            claim_id = claim.json()["claim_id"]
            answer = exchange_until_done(f"{asked.url}/exchange", claim_id)
            assert answer.status_code == 200, answer.text
            tokens.append(answer.json()["token"])
            again = httpx.post(f"{made.url}/exchange", headers=bearer(claim.json()))
            assert again.json()["token"] == answer.json()["token"], again.text
        assert len(set(tokens)) == 6
        assert cluster.nodes_holding_keys() == 3
        logs = first.stop() + second.stop()
        assert "CROSSSLOT" not in logs and "Traceback" not in logs


async def test_a_draw_over_several_credentials_buckets_runs_on_one_cluster_node(
    cluster: RedisCluster,
) -> None:
    store = RedisStore.from_url(cluster.url, prefix="issuer:")
    keys = [bucket_key("token-1a2b3c4d"), bucket_key("app-1-inst-2")]
    try:
        paid = [await store.draw(keys, 1, rate=1e-6, capacity=2) for _ in range(5)]
    finally:
        await store.close()
    assert [draw.index for draw in paid] == [0, 1, 0, 1, None]
