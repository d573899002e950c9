"""The shared response cache's failures and trims (killing mutmut's survivors in
`gateway.shared_answers.SharedAnswerStore.put`, `._failed`, docs/testing.md, the tenth
session): a failed read or write is logged naming the file, what failed and why, once a
minute at most; a trim drops the expired entries, not only those past `max_entries`.

On a real `SharedAnswerStore` over a SQLite file; its log clock (`time.monotonic`) is a
fake one, set by hand.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from modelyard.gateway import shared_answers
from modelyard.gateway.response_cache import CachedAnswer
from modelyard.gateway.shared_answers import SharedAnswerStore
from modelyard_client.v1 import common_pb2

CLOSED = "Cannot operate on a closed database."


def _answer(text: str = "Hello") -> CachedAnswer:
    return CachedAnswer("custom/model-a", (text, "!"), common_pb2.FINISH_REASON_STOP, 3, 2)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == shared_answers.__name__ and r.levelno == logging.WARNING
    ]


async def test_a_failure_is_logged_naming_the_file_what_failed_and_why_once_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log_clock = Clock(0.0)  # the first failure is logged whatever the clock reads
    monkeypatch.setattr(shared_answers, "time", SimpleNamespace(monotonic=log_clock))
    path = tmp_path / "c.db"
    store = SharedAnswerStore(path, 100, time.time)
    await store.close()  # every read and write fails from now on
    caplog.set_level(logging.WARNING, logger=shared_answers.__name__)
    assert await store.get("k") is None
    assert _warnings(caplog) == [f"the shared response cache at {path}: could not read: {CLOSED}"]
    log_clock.now = shared_answers.LOG_EVERY_S - 0.5
    await store.put("k", _answer(), 60)  # within the minute: not logged
    assert await store.get("k") is None
    assert len(_warnings(caplog)) == 1
    log_clock.now = shared_answers.LOG_EVERY_S  # exactly a minute after the first
    await store.put("k", _answer(), 60)
    assert _warnings(caplog)[1:] == [
        f"the shared response cache at {path}: could not write: {CLOSED}"
    ]
    log_clock.now = 2 * shared_answers.LOG_EVERY_S - 0.5
    assert await store.get("k") is None
    assert len(_warnings(caplog)) == 2


async def test_a_trim_drops_every_expired_entry_though_there_are_fewer_than_max_entries(
    tmp_path: Path,
) -> None:
    clock = Clock(1_000_000.0)
    store = SharedAnswerStore(tmp_path / "c.db", 100, clock)
    for i in range(shared_answers.TRIM_EVERY - 1):
        await store.put(f"k{i}", _answer(str(i)), 10.0)
    assert len(store) == shared_answers.TRIM_EVERY - 1
    clock.now += 10.0  # every entry so far expires now
    await store.put("last", _answer("last"), 10.0)  # the TRIM_EVERY-th write: a trim
    assert len(store) == 1
    assert await store.get("last") == _answer("last")


async def test_a_hit_a_second_after_its_entrys_last_use_marks_it_used(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    store = SharedAnswerStore(tmp_path / "c.db", 2, clock)
    await store.put("a", _answer("a"), 3600)  # used at 0
    clock.now += 0.5
    for _ in range(shared_answers.TRIM_EVERY - 2):
        await store.put("b", _answer("b"), 3600)  # used at 0.5
    clock.now += shared_answers.USED_EVERY_S - 0.5  # exactly a second after "a" was used
    assert await store.get("a") == _answer("a")  # marks "a" used at 1.0
    clock.now += 0.2
    await store.put("c", _answer("c"), 3600)  # the TRIM_EVERY-th write: 2 entries are kept
    assert len(store) == 2
    assert await store.get("b") is None  # the least recently used
    assert await store.get("a") == _answer("a")
