"""Gateway workers: `modelyard up --workers N` serves the gateway from N processes on one port.

The primary is the `up` process: every service, on the public address with
SO_REUSEPORT and on a private loopback listener. It then starts N - 1
workers, each ``modelyard serve gateway`` on the same public gRPC and HTTP
ports (SO_REUSEPORT: the kernel hands each new connection to one of the
processes), so the gateway's work runs on N cores. A worker keeps its own
live catalog and route copies from the primary (over the private address),
calls the backends where the primary announced them (the private address),
and passes every call for a service it does not serve (registry, selector,
hot-swap, backends) to the primary whole (`server.forwarding`). Rate limits
and spend budgets are shared through the host's shared-memory table
(`rate_limits.shared_memory`, set to ``<data_dir>/rate-limits.shm`` unless
Redis or a table is configured), so they hold across the workers exactly as
across replicas. Each worker keeps its own response cache and serves no
metrics of its own (``--metrics-listen off``): the primary's are its own calls.

On SIGTERM the primary stops the workers first (each drains its calls within
the grace period), then itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.assembly.plan import BackendPlan, engines_for
from modelyard.assembly.settings import Settings
from modelyard.backends.host import BackendHost

if TYPE_CHECKING:
    from modelyard.assembly.stack import Stack
    from modelyard.gateway.backend_pool import BackendPool

log = logging.getLogger(__name__)

READY_LINE = "modelyard: serving "  # what `modelyard serve` prints once it serves
START_TIMEOUT_S = 120.0
SHARED_TABLE = "rate-limits.shm"
PRIMARY_PID_ENV = "MODELYARD_PRIMARY_PID"  # set for the workers `up` starts
PRIMARY_CHECK_S = 1.0
_following: set[asyncio.Task[None]] = set()


@dataclass
class Worker:
    number: int
    process: asyncio.subprocess.Process
    drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


def worker_argv(settings: Settings, public: str, http: str | None, here: str) -> list[str]:
    """``modelyard serve gateway`` sharing `public` (and `http`), its primary at `here`."""
    argv = [
        *(sys.executable, "-m", "modelyard.cli", "serve", "gateway"),
        *("--listen", public, "--http-listen", http or "off", "--metrics-listen", "off"),
        *("--registry", here, "--forward-to", here, "--reuse-port"),
        *("--data-dir", str(settings.data_dir), "--grace", str(settings.grace_s)),
        *("--drain-notice", str(settings.drain_notice_s)),
        *("--default-deadline", str(settings.default_deadline_s)),
        *("--log-level", settings.log_level),
    ]
    if "hotswap" in settings.roles:
        argv += ["--hotswap", here]
    if settings.models_dir is not None:
        argv += ["--models-dir", str(settings.models_dir)]
    return argv


def shared_table(settings: Settings) -> Path | None:
    """Where the workers' limits live when nothing is configured: a table in the data dir
    (None when Redis or a table is configured: the workers share that)."""
    limiter = settings.limiter
    if limiter.redis_url or limiter.shared_memory is not None:
        return None
    return settings.data_dir / SHARED_TABLE


async def start_workers(
    count: int, argv: list[str], env: Mapping[str, str], timeout_s: float = START_TIMEOUT_S
) -> list[Worker]:
    """Start `count` workers and wait until each serves; on a failure, stop those started."""
    workers: list[Worker] = []
    try:
        for number in range(1, count + 1):
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, env=env
            )
            worker = Worker(number, process)
            workers.append(worker)
            await asyncio.wait_for(_served(worker), timeout_s)
            worker.drain = asyncio.create_task(_drain(worker))
    except BaseException:
        await stop_workers(workers, 0.0)
        raise
    return workers


async def _served(worker: Worker) -> None:
    stdout = worker.process.stdout
    assert stdout is not None
    while line := await stdout.readline():
        if line.decode(errors="replace").startswith(READY_LINE):
            return
    code = await worker.process.wait()
    raise OSError(f"gateway worker {worker.number} exited with status {code} before serving")


async def _drain(worker: Worker) -> None:
    """Read the worker's stdout to its end (its start-up lines; it must never block)."""
    stdout = worker.process.stdout
    assert stdout is not None
    while await stdout.readline():
        pass
    code = await worker.process.wait()
    if code not in (0, -signal.SIGTERM):
        log.warning(
            "gateway worker %d (pid %d) exited with status %d", worker.number, worker.pid, code
        )


async def stop_workers(workers: list[Worker], grace_s: float) -> None:
    """SIGTERM each worker (by its pid), wait for them within `grace_s` and a little more,
    then kill the ones still running."""
    running = [w for w in workers if w.process.returncode is None]
    for worker in running:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGTERM)
    if running:
        waits = [asyncio.ensure_future(w.process.wait()) for w in running]
        _, late = await asyncio.wait(waits, timeout=grace_s + 5.0)
        for worker in running:
            if worker.process.returncode is None:
                log.warning(
                    "gateway worker %d (pid %d) did not stop: killed", worker.number, worker.pid
                )
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
        if late:
            await asyncio.wait(late)
    for worker in workers:
        if worker.drain is not None:
            await worker.drain


async def workers_beside(
    stack: Stack, settings: Settings, count: int, table: Path | None
) -> list[Worker]:
    """`count` workers sharing `stack`'s public ports, their primary `stack` (`table`: where
    they share the limits, when nothing is configured); none when `count` is 0."""
    if not count:
        return []
    public = f"{settings.listen.rsplit(':', 1)[0]}:{stack.server.port}"
    http = None
    if stack.edge is not None and settings.http_listen:
        http = f"{settings.http_listen.rsplit(':', 1)[0]}:{stack.edge.port}"
    argv = worker_argv(settings, public, http, stack.address_here)
    return await start_workers(count, argv, worker_env(table))


async def engines_beside(
    plans: list[BackendPlan], pool: BackendPool, primary: str
) -> BackendHost | None:
    """A gateway worker's own remote-provider engines (the primary's, built again from the
    same configuration): its calls to those models go out from here, not through the
    primary. Not announced: the primary's deployments name them."""
    engines = engines_for(plans, ("backend-openai-compat",))
    if not engines:
        return None
    host = BackendHost(engines)
    await host.start()
    pool.add_beside(primary, host)
    return host


def worker_env(table: Path | None) -> dict[str, str]:
    """The workers' environment: this one's, with the shared limits table when there is one."""
    from modelyard.ratelimit.config import SHARED_MEMORY_ENV

    env = dict(os.environ)
    env[PRIMARY_PID_ENV] = str(os.getpid())
    if table is not None:
        env[SHARED_MEMORY_ENV] = str(table)
    return env


def follow_primary(stopping: asyncio.Event) -> None:
    """In a worker `up` started (`MODELYARD_PRIMARY_PID`): set `stopping` once that
    process is gone (this one reparented), so no worker outlives a primary that died
    without stopping it. Elsewhere nothing."""
    primary = os.environ.get(PRIMARY_PID_ENV)
    if not primary:
        return

    async def watch() -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), PRIMARY_CHECK_S)
            if not stopping.is_set() and os.getppid() != int(primary):
                log.warning("the primary (pid %s) is gone: this gateway worker stops", primary)
                stopping.set()

    task = asyncio.get_running_loop().create_task(watch())
    _following.add(task)
    task.add_done_callback(_following.discard)
