"""Stopping the GGUF metadata reader ends a read in progress: a process exit never waits on it."""

from __future__ import annotations

import time
from multiprocessing.connection import wait

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
