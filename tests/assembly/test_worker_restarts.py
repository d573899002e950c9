"""`Workers` keeps its processes running: one that exits is started again, waiting longer
each time it keeps dying, and none is started once the workers are stopped. Real child
processes: a small Python program that says it serves, as `modelyard serve` does."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from modelyard.assembly.workers import READY_LINE, Workers

# Says it serves, then exits with status 3 after `seconds` (or waits to be stopped).
CHILD = f"""
import sys, time
print({READY_LINE!r} + "127.0.0.1:1", flush=True)
seconds = float(sys.argv[1])
time.sleep(seconds)
sys.exit(3)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_worker_that_keeps_exiting_is_started_again_with_a_growing_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers = Workers([sys.executable, "-c", CHILD, "0.05"], os.environ, restart_wait_s=0.2)
    await workers.start(1)
    worker = workers.members[0]
    first_pid = worker.pid
    for _ in range(600):  # 30 s at most
        if worker.restarts >= 3:
            break
        await asyncio.sleep(0.05)
    await workers.stop(0.0)
    assert worker.pid != first_pid
    # Each wait twice the one before: a crash loop is not restarted flat out.
    waits = [r.getMessage().rsplit(" in ", 1)[1] for r in caplog.records if "again in" in r.message]
    assert waits[:3] == ["0.2s", "0.4s", "0.8s"], caplog.text
    assert f"gateway worker 1 (pid {first_pid}) exited with status 3" in caplog.text


async def test_a_stop_starts_nothing_again_and_ends_every_process() -> None:
    workers = Workers([sys.executable, "-c", CHILD, "60"], os.environ, restart_wait_s=0.1)
    await workers.start(2)
    pids = [w.pid for w in workers.members]
    assert all(_alive(pid) for pid in pids)
    await workers.stop(5.0)
    assert not any(_alive(pid) for pid in pids)
    await asyncio.sleep(0.3)  # past a restart's wait: nothing came back
    assert [w.restarts for w in workers.members] == [0, 0]
    assert [w.pid for w in workers.members] == pids


async def test_a_worker_that_does_not_serve_again_is_tried_again(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # Serves on the first start only; every later start exits before saying it serves.
    marker = tmp_path / "started"
    child = f"""
import pathlib, sys
marker = pathlib.Path({str(marker)!r})
if marker.exists():
    sys.exit(4)
marker.write_text("")
print({READY_LINE!r} + "127.0.0.1:1", flush=True)
sys.exit(3)
"""
    workers = Workers([sys.executable, "-c", child], os.environ, restart_wait_s=0.1)
    await workers.start(1)
    await asyncio.sleep(1.2)
    await workers.stop(0.0)
    assert workers.members[0].restarts == 0
    assert "gateway worker 1 did not start again: gateway worker 1 exited with status 4" in (
        caplog.text
    )
    assert caplog.text.count("did not start again") >= 2  # tried again after each failure
