"""The response cache a host's gateway processes share: one SQLite file, real processes."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

from modelyard.gateway import shared_answers
from modelyard.gateway.response_cache import CachedAnswer
from modelyard.gateway.shared_answers import SharedAnswerStore
from modelyard_client.v1 import common_pb2

STOP = common_pb2.FINISH_REASON_STOP


def _answer(text: str = "Hello") -> CachedAnswer:
    return CachedAnswer("custom/model-a", (text, "!"), STOP, 3, 2)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_answer_another_process_stored_is_a_hit_here(tmp_path: Path) -> None:
    path = tmp_path / "response-cache.db"
    here = SharedAnswerStore(path, 100)
    assert await here.get("k") is None
    writer = f"""
import asyncio
from pathlib import Path
from modelyard.gateway.response_cache import CachedAnswer
from modelyard.gateway.shared_answers import SharedAnswerStore
store = SharedAnswerStore(Path({str(path)!r}), 100)
asyncio.run(store.put("k", CachedAnswer("custom/model-a", ("Hi", " there"), {STOP}, 4, 2), 60))
"""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", writer)
    assert await process.wait() == 0
    assert await here.get("k") == CachedAnswer("custom/model-a", ("Hi", " there"), STOP, 4, 2)
    await here.close()


async def test_an_entry_past_its_ttl_is_a_miss_in_every_process(tmp_path: Path) -> None:
    clock = Clock()
    one = SharedAnswerStore(tmp_path / "c.db", 100, clock)
    two = SharedAnswerStore(tmp_path / "c.db", 100, clock)
    await one.put("k", _answer(), 10.0)
    clock.now += 9.9
    assert await two.get("k") == _answer()
    clock.now += 0.1
    assert await two.get("k") is None
    assert await one.get("k") is None


async def test_past_max_entries_the_least_recently_used_go_first(tmp_path: Path) -> None:
    clock = Clock()
    store = SharedAnswerStore(tmp_path / "c.db", 10, clock)
    writes = shared_answers.TRIM_EVERY  # the last of them trims
    for i in range(writes - 1):
        clock.now += 1.0
        await store.put(f"k{i}", _answer(str(i)), 3600)
    clock.now += 1.0
    assert await store.get("k0") == _answer("0")  # stored first, but used last
    clock.now += 1.0
    await store.put("last", _answer("last"), 3600)
    assert len(store) == 10
    assert await store.get("k0") == _answer("0")
    assert await store.get("k1") is None  # stored second, never used since
    kept = [i for i in range(writes - 1) if await store.get(f"k{i}") is not None]
    assert kept == [0, *range(writes - 9, writes - 1)]  # k0 and the 8 stored last, and "last"


async def test_a_write_lock_held_elsewhere_or_a_bad_entry_is_a_miss_not_an_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    store = SharedAnswerStore(path, 100)
    await store.put("k", _answer(), 60)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write, longer than the busy timeout
    await store.put("j", _answer("j"), 60)  # not written, and no error
    assert await store.get("k") == _answer()  # a read never waits for a writer
    other.execute("UPDATE answers SET answer = ? WHERE key = 'k'", (b"[1, 2]",))
    other.execute("COMMIT")
    assert await store.get("j") is None
    assert await store.get("k") is None  # not an answer: a miss
    other.close()
    await store.close()
