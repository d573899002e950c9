"""Debian's headless Chromium (``/usr/bin/chromium``, installed by scripts/setup as root),
driven by its command line: ``--dump-dom`` and ``--screenshot`` after a virtual-time
budget, so the page's timers (its polling) run that long in page time.

Run as root it needs ``--no-sandbox``; on a closed network it hangs without the flags
that stop its background fetches. Each run has a fresh profile directory, starts in a
session of its own and, if it overruns, is killed by that session's id (its renderer and
GPU children with it). No browser is downloaded: without the Debian package the tests
that need it skip, naming the package, except on CI (``CI`` set) where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def require_chromium() -> str:
    """The browser's path; skips (fails on CI) when Debian's chromium is not installed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    why = f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium when run as root"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


async def run_chromium(url: str, *args: str, budget_ms: int = 8000, timeout_s: float = 90) -> str:
    """Chromium's stdout for `url` with `args` (``--dump-dom``: the DOM as the page left
    it after `budget_ms` of page time); RuntimeError with its stderr when it fails."""
    browser = require_chromium()
    profile = tempfile.mkdtemp(prefix="modelyard-chromium-")
    try:
        proc = await asyncio.create_subprocess_exec(
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *args,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the session it leads: its children too
            await proc.wait()
            raise RuntimeError(f"chromium did not finish {url} within {timeout_s}s") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # a child it left behind
        if proc.returncode != 0:
            raise RuntimeError(f"chromium exited {proc.returncode}: {err.decode()[-2000:]}")
        return out.decode()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def screenshot(url: str, path: Path, size: tuple[int, int], budget_ms: int = 8000) -> None:
    """A PNG of `url` at `size` (width, height) after `budget_ms` of page time, at `path`."""
    await run_chromium(
        url, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", budget_ms=budget_ms
    )
