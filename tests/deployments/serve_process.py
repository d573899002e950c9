"""One `modelyard serve ROLE...` process for deployment tests, stopped by its own PID.

Its stderr goes to a file whose tail a failed start shows; it is ready once it
prints its "modelyard: serving" line (printed once it listens).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from conftest import free_port

START_TIMEOUT_S = 60.0  # a process's start, on a loaded two-core machine


class ServeProcess:
    """`modelyard serve ARGS --listen 127.0.0.1:<free port>` in its own process."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.name = name
        self.args = [*args, "--data-dir", str(workdir / f"{name}-data")]
        self.log = workdir / f"{name}.stderr"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{free_port()}/metrics"  # its --metrics-listen
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        modelyard = str(Path(sys.executable).parent / "modelyard")
        with self.log.open("wb") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                *[modelyard, "serve", *self.args, "--listen", self.address],
                *["--metrics-listen", self.metrics_url.removeprefix("http://").split("/")[0]],
                *["--grace", "1", "--drain-notice", "0", "--log-level", "WARNING"],
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env={k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
            )

    async def serving(self) -> None:
        """Return once the process listens; fail with its stderr's tail if it does not."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while b"modelyard: serving" not in await self.proc.stdout.readline():
                    if self.proc.stdout.at_eof():
                        raise RuntimeError(f"exited with {await self.proc.wait()}")
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{self.name} did not start ({exc!r}): {self.tail()}") from None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()  # this PID only
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def start_all(*processes: ServeProcess) -> None:
    """Start these together and wait until each serves."""
    await asyncio.gather(*(p.start() for p in processes))
    await asyncio.gather(*(p.serving() for p in processes))
