"""Stopping the GGUF metadata reader ends a read in progress: a process exit never waits on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import wait
from pathlib import Path

from modelyard.discovery import gguf_files


def test_stop_reader_pool_terminates_a_read_in_progress() -> None:
    pool = gguf_files._reader_pool()
    pool.submit(time.sleep, 60)  # a vocabulary that takes a minute to parse
    deadline = time.monotonic() + 30
    while not pool._processes and time.monotonic() < deadline:  # spawned on first submit
        time.sleep(0.05)
    [worker] = list(pool._processes.values())
    started = time.monotonic()
    gguf_files.stop_reader_pool()
    # ended when its sentinel is ready; join would race the pool's own thread reaping it
    assert wait([worker.sentinel], timeout=10), "the reader is still running"
    assert time.monotonic() - started < 10
    assert gguf_files._POOL is None  # the next discovery pass starts a fresh reader


_PARENT = """
import time
from modelyard.discovery import gguf_files
pool = gguf_files._reader_pool()
pool.submit(time.sleep, 0).result()
print(*pool._processes, flush=True)
time.sleep(120)
"""


def _ended(pid: int) -> bool:
    """Gone, or a zombie its new parent has not reaped yet."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\\nState:\\tZ" in status


def test_the_reader_ends_when_its_process_is_killed_outright() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert not _ended(worker)
    finally:
        parent.kill()  # SIGKILL: no pool shutdown runs
        parent.wait()
    for _ in range(200):  # the worker looks for its parent once a second
        if _ended(worker):
            break
        time.sleep(0.05)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError(f"the reader {worker} outlived its killed parent by 10 s")
