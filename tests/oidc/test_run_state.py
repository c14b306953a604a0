"""What a look writes about its run: its sightings and its memo stand or fall together."""

from __future__ import annotations

from issuer.oidc.runs import MEMO_FIELD, Memo, RunKey, RunState
from issuer.store import HashPut, MemoryStore, tagged

KEY = RunKey("octo-org/octo-repo", 42, 1)


def test_a_looks_sightings_and_memo_are_one_write_of_one_hash() -> None:
    state = RunState(MemoryStore(), KEY, ttl=600)
    memo = Memo(logs_read={7}, sighted_codes={"code-a"})
    writes = state.look_writes(
        sightings={"code-a": {"job_id": "7"}}, memo=memo.encode(), status=None, clear_failure=False
    )
    [hash_write] = [w for w in writes if isinstance(w, HashPut)]
    assert hash_write.key == tagged(KEY.tag, "sightings")
    assert set(hash_write.fields) == {"code-a", MEMO_FIELD}


async def test_the_memo_reads_back_from_the_sightings_hash() -> None:
    store = MemoryStore()
    state = RunState(store, KEY, ttl=600)
    memo = Memo(logs_read={7}, logs_too_large={8}, sighted_codes={"code-a"})
    await store.write_many(
        state.look_writes(sightings={}, memo=memo.encode(), status=None, clear_failure=False)
    )
    assert await state.memo() == memo
    await store.close()
