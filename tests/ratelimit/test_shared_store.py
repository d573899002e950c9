"""What only the shared-memory store does: one table for several mappings and processes,
a process killed at any moment blocks no other, and a file it cannot use is named."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelyard.ratelimit import LimiterConfig
from modelyard.ratelimit.config import SHARED_MEMORY_ENV
from modelyard.ratelimit.plan import Bucket, Demand, Scope
from modelyard.ratelimit.shared import SharedBucketStore
from modelyard.ratelimit.spend import Charge, SpendBudget, nano_usd
from modelyard_client.errors import BackendUnavailable, InvalidRequest

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MODEL = Scope.model("p/m")


def rpm(per_minute: float, amount: float = 1) -> Demand:
    return Demand(Bucket(MODEL, "requests", per_minute), amount)


async def test_two_mappings_of_one_file_are_one_set_of_limits(tmp_path: Path) -> None:
    a, b = SharedBucketStore(tmp_path / "limits"), SharedBucketStore(tmp_path / "limits")
    assert (await a.take([rpm(2)])).admitted
    assert (await b.take([rpm(2)])).admitted
    refused = await a.take([rpm(2)])
    [shortfall] = refused.shortfalls
    assert 29.0 < shortfall.wait_s <= 30.0  # one request refills every 30 s
    await b.give_back([rpm(2)])
    assert (await a.take([rpm(2)])).admitted


async def test_each_alert_fraction_is_told_once_across_processes_mappings(
    tmp_path: Path,
) -> None:
    a, b = SharedBucketStore(tmp_path / "limits"), SharedBucketStore(tmp_path / "limits")
    spend = SpendBudget.at(Scope.team("t"), "day", 10.0, NOON, (0.5, 0.8))
    first = await a.reserve([], [Charge(spend, nano_usd(6.0))])
    assert [c.fraction for c in first.crossings] == [0.5]
    second = await b.reserve([], [Charge(spend, nano_usd(1.0))])
    assert second.crossings == ()  # 7.0: nothing new, and 0.5 was told by the other
    third = await b.settle([], [Charge(spend, nano_usd(2.0))])
    assert [(c.fraction, c.spent_nano) for c in third] == [(0.8, nano_usd(9.0))]
    assert a.spent(spend.key) == b.spent(spend.key) == nano_usd(9.0)


def test_processes_sharing_the_file_admit_exactly_what_the_bucket_holds(tmp_path: Path) -> None:
    table = tmp_path / "limits"
    script = textwrap.dedent(
        f"""
        import sys
        from modelyard._native import SharedLimits
        t = SharedLimits({str(table)!r})
        print("READY", flush=True)
        sys.stdin.readline()  # all start together
        print(sum(t.take([("k", 1.0, 30000.0, 0.0)])[0] == 0.0 for _ in range(20000)))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "READY\n"
    admitted = [int(p.communicate("go\n", timeout=120)[0]) for p in procs]
    assert sum(admitted) == 30000, admitted  # 80,000 tries, a bucket that never refills


def test_a_process_killed_while_deciding_blocks_no_other(tmp_path: Path) -> None:
    table = tmp_path / "limits"
    script = textwrap.dedent(
        f"""
        from modelyard._native import SharedLimits
        t = SharedLimits({str(table)!r})
        print("READY", flush=True)
        while True:
            t.take([("k", 1.0, 1e9, 1e9), ("j", 1.0, 1e9, 1e9)])
            t.give_back([("k", 1.0, 1e9, 1e9)])
        """
    )
    check = (
        f"from modelyard._native import SharedLimits; "
        f"print(SharedLimits({str(table)!r}).take([('k', 1.0, 1e9, 1e9)]))"
    )
    for _ in range(5):  # killed at a random point of its loop, often holding the lock
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "READY\n"
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        # In a process of its own: a lock never taken over would hang it, not the suite.
        after = subprocess.run(
            [sys.executable, "-c", check], capture_output=True, text=True, timeout=20
        )
        assert after.stdout == "[0.0]\n", after.stderr


def test_a_lock_left_by_a_process_that_died_is_taken_over(tmp_path: Path) -> None:
    table = tmp_path / "limits"
    SharedBucketStore(table)  # the table, created
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process
    lock_word = 3 * 8  # the header's fourth word holds the lock's owner
    fd = os.open(table, os.O_RDWR)
    try:
        os.pwrite(fd, gone.pid.to_bytes(8, "little"), lock_word)
    finally:
        os.close(fd)
    check = (
        f"from modelyard._native import SharedLimits; "
        f"print(SharedLimits({str(table)!r}).take([('k', 1.0, 10.0, 1.0)]))"
    )
    after = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=20
    )
    assert after.stdout == "[0.0]\n", after.stderr
    assert table.read_bytes()[lock_word : lock_word + 8] == bytes(8)  # released after


def test_a_file_of_another_layout_is_named_and_left_as_it_is(tmp_path: Path) -> None:
    stray = tmp_path / "notes.txt"
    stray.write_text("not a table")
    with pytest.raises(InvalidRequest) as caught:
        SharedBucketStore(stray)
    assert caught.value.message == (
        f"shared limits file {stray}: it is 11 bytes, and a table of 65536 bucket and 65536 "
        "counter slots is 8388672: another slot count or not a modelyard limits table "
        "(remove it while no gateway uses it)"
    )
    assert stray.read_text() == "not a table"
    with pytest.raises(InvalidRequest, match=r"^shared limits file /nonexistent/x: "):
        SharedBucketStore(Path("/nonexistent/x"))


async def test_a_full_table_refuses_to_judge_by_name(tmp_path: Path) -> None:
    store = SharedBucketStore(tmp_path / "limits", slots=1)
    assert (await store.take([rpm(5)])).admitted
    other = Demand(Bucket(Scope.model("p/other"), "requests", 5), 1)
    with pytest.raises(BackendUnavailable) as caught:
        await store.take([other])
    assert caught.value.message == (
        "the shared limits table is full: all 1 bucket slots are in use"
    )


async def test_a_demand_that_never_fits_is_refused_and_takes_nothing(tmp_path: Path) -> None:
    store = SharedBucketStore(tmp_path / "limits")
    outcome = await store.reserve([rpm(5), rpm(5, amount=6)], [])
    assert [s.wait_s for s in outcome.shortfalls] == [math.inf]
    assert store.level(rpm(5)) == 5.0


def test_the_store_is_configured_by_file_or_environment_never_beside_redis(
    tmp_path: Path,
) -> None:
    config = LimiterConfig.from_env({SHARED_MEMORY_ENV: str(tmp_path / "limits")})
    assert config.shared_memory == tmp_path / "limits"
    assert isinstance(config.build_store(), SharedBucketStore)
    assert LimiterConfig.from_env({}).shared_memory is None
    with pytest.raises(InvalidRequest) as caught:
        LimiterConfig(redis_url="redis://127.0.0.1:1/0", shared_memory=tmp_path / "limits")
    assert caught.value.message == (
        "rate_limits: redis_url and shared_memory both given; limits live in one place: "
        "Redis to share them across hosts, shared_memory within one host"
    )
