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
across replicas. With the response cache on and no Redis, every process keeps
it in ``<data_dir>/response-cache.db`` (`gateway.shared_answers`). Its metrics are
served on a private loopback port, and the primary's scrape holds them, each
series labelled with its process (``worker="0"`` the primary, `meters.merged`).

A worker that exits while `up` serves (killed, out of memory) is started
again, logged with its new pid: after 1 s, doubling to 30 s while it keeps
exiting within a minute of its start (`Workers`). Its connections are lost
with it (their calls end UNAVAILABLE); new ones go to the processes serving.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.assembly.plan import BackendPlan, engines_for
from modelyard.assembly.settings import GATEWAY_PROCESSES_ENV, SHARED_CACHE_ENV, Settings
from modelyard.backends.host import BackendHost

if TYPE_CHECKING:
    from modelyard.assembly.stack import Stack
    from modelyard.gateway.backend_pool import BackendPool

log = logging.getLogger(__name__)

READY_LINE = "modelyard: serving "  # what `modelyard serve` prints once it serves
METRICS_LINE = "modelyard: metrics at "  # then where its metrics are, when it serves them
START_TIMEOUT_S = 120.0
SHARED_TABLE = "rate-limits.shm"
SHARED_CACHE = "response-cache.db"
PRIMARY_PID_ENV = "MODELYARD_PRIMARY_PID"  # set for the workers `up` starts
PRIMARY_CHECK_S = 1.0
RESTART_WAIT_S = 1.0  # before a worker that exited is started again; doubled while it
MAX_RESTART_WAIT_S = 30.0  # keeps exiting within STEADY_S of its start, to this at most
STEADY_S = 60.0
_following: set[asyncio.Task[None]] = set()


@dataclass
class Worker:
    number: int
    process: asyncio.subprocess.Process
    started_at: float = 0.0  # the event loop's clock when its process started
    restarts: int = 0
    metrics_url: str | None = None  # its private metrics listener, once it said where

    @property
    def pid(self) -> int:
        return self.process.pid


def worker_argv(settings: Settings, public: str, http: str | None, here: str) -> list[str]:
    """``modelyard serve gateway`` sharing `public` (and `http`), its primary at `here`."""
    argv = [
        *(sys.executable, "-m", "modelyard.cli", "serve", "gateway"),
        *("--listen", public, "--http-listen", http or "off"),
        # Its metrics on a private port, read by the primary's scrape (`meters.merged`).
        *("--metrics-listen", "127.0.0.1:0" if settings.metrics_listen else "off"),
        *("--registry", here, "--forward-to", here, "--reuse-port"),
        *("--data-dir", str(settings.data_dir), "--grace", str(settings.grace_s)),
        *("--drain-notice", str(settings.drain_notice_s)),
        *("--default-deadline", str(settings.default_deadline_s)),
        *("--log-level", settings.log_level),
    ]
    if settings.config_path is not None:  # the primary's configuration, read again
        argv += ["--config", str(settings.config_path)]
    if "hotswap" in settings.roles:
        argv += ["--hotswap", here]
    if settings.models_dir is not None:
        argv += ["--models-dir", str(settings.models_dir)]
    return argv


def primary_settings(settings: Settings, processes: int) -> Settings:
    """The `up` process's settings for `processes` gateway processes on one host: its
    limits in a shared table (`shared_table`), its response cache in a shared file
    (`shared_cache`), each process's share of a remote backend's bounds."""
    if processes <= 1:
        return settings
    table = shared_table(settings)
    if table is not None:  # limits shared by every worker, as across replicas
        settings = replace(settings, limiter=replace(settings.limiter, shared_memory=table))
    return replace(settings, gateway_processes=processes, shared_cache=shared_cache(settings))


def shared_table(settings: Settings) -> Path | None:
    """Where the workers' limits live when nothing is configured: a table in the data dir
    (None when Redis or a table is configured: the workers share that)."""
    limiter = settings.limiter
    if limiter.redis_url or limiter.shared_memory is not None:
        return None
    return settings.data_dir / SHARED_TABLE


def shared_cache(settings: Settings) -> Path | None:
    """Where the workers' response cache lives: a SQLite file in the data dir when the
    cache is on and not in Redis (`gateway.shared_answers`); else None."""
    cache = settings.config.gateway.cache
    if not cache.enabled or cache.redis_url:
        return None
    return settings.data_dir / SHARED_CACHE


class Workers:
    """The gateway workers `up` started, each kept running: one that exits while `up`
    serves is started again after `RESTART_WAIT_S` (doubling to `MAX_RESTART_WAIT_S` while
    it keeps dying within `STEADY_S` of its start), and logged with its new pid."""

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        timeout_s: float = START_TIMEOUT_S,
        restart_wait_s: float = RESTART_WAIT_S,
    ) -> None:
        self.argv = argv
        self.env = dict(env)
        self.timeout_s = timeout_s
        self.restart_wait_s = restart_wait_s
        self.members: list[Worker] = []
        self._watches: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self, count: int) -> None:
        """Start `count` workers and wait until each serves; on a failure, stop those started."""
        try:
            for number in range(1, count + 1):
                worker = Worker(number, await self._spawn())
                self.members.append(worker)
                await self._served(worker)
                self._watches.append(asyncio.create_task(self._watch(worker)))
        except BaseException:
            await self.stop(0.0)
            raise

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env=self.env,
        )

    async def _served(self, worker: Worker) -> None:
        worker.started_at = asyncio.get_running_loop().time()
        await asyncio.wait_for(_served(worker), self.timeout_s)

    async def _watch(self, worker: Worker) -> None:
        """Read the worker's stdout to its end (it must never block), and start it again
        each time it exits while the workers are not being stopped."""
        loop = asyncio.get_running_loop()
        wait_s = self.restart_wait_s
        while True:
            code = await _read_to_exit(worker)
            if self._stopping:
                return
            if loop.time() - worker.started_at >= STEADY_S:
                wait_s = self.restart_wait_s  # it had served a while: not a crash loop
            log.warning(
                "gateway worker %d (pid %d) exited with status %d; starting it again in %gs",
                *(worker.number, worker.pid, code, wait_s),
            )
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, MAX_RESTART_WAIT_S)
            if self._stopping:
                return
            worker.process = await self._spawn()
            try:
                await self._served(worker)
            except (OSError, TimeoutError) as exc:
                log.error("gateway worker %d did not start again: %s", worker.number, exc)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                continue
            worker.restarts += 1
            log.warning("gateway worker %d started again (pid %d)", worker.number, worker.pid)

    def metrics(self) -> list[tuple[str, str]]:
        """Each running worker's number and metrics URL (the primary's scrape reads them)."""
        return [
            (str(w.number), w.metrics_url)
            for w in self.members
            if w.metrics_url is not None and w.process.returncode is None
        ]

    async def stop(self, grace_s: float) -> None:
        """SIGTERM each worker (by its pid), wait for them within `grace_s` and a little
        more, then kill the ones still running. None is started again from here on."""
        self._stopping = True
        for watch in self._watches:
            watch.cancel()  # a wait before a restart, or a restart under way, ends here
        await asyncio.gather(*self._watches, return_exceptions=True)
        running = [w for w in self.members if w.process.returncode is None]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        if running:
            waits = [asyncio.ensure_future(_read_to_exit(w)) for w in running]
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


async def _served(worker: Worker) -> None:
    stdout = worker.process.stdout
    assert stdout is not None
    while line := await stdout.readline():
        if line.decode(errors="replace").startswith(READY_LINE):
            return
    code = await worker.process.wait()
    raise OSError(f"gateway worker {worker.number} exited with status {code} before serving")


async def _read_to_exit(worker: Worker) -> int:
    """Read the worker's stdout to its end (noting where it serves its metrics), then its
    exit status."""
    process = worker.process
    stdout = process.stdout
    assert stdout is not None
    while line := await stdout.readline():
        text = line.decode(errors="replace").strip()
        if text.startswith(METRICS_LINE):
            worker.metrics_url = text[len(METRICS_LINE) :]
    worker.metrics_url = None
    return await process.wait()


async def workers_beside(stack: Stack, settings: Settings, count: int) -> Workers:
    """`count` workers sharing `stack`'s public ports, their primary `stack` (started with
    `primary_settings`); none when `count` is 0."""
    public = f"{settings.listen.rsplit(':', 1)[0]}:{stack.server.port}"
    http = None
    if stack.edge is not None and settings.http_listen:
        http = f"{settings.http_listen.rsplit(':', 1)[0]}:{stack.edge.port}"
    env = worker_env(settings.limiter.shared_memory, settings.shared_cache)
    env[GATEWAY_PROCESSES_ENV] = str(settings.gateway_processes)
    workers = Workers(worker_argv(settings, public, http, stack.address_here), env)
    await workers.start(count)
    return workers


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


def worker_env(table: Path | None, cache: Path | None = None) -> dict[str, str]:
    """The workers' environment: this one's, with the shared limits table and the shared
    response cache when there are."""
    from modelyard.ratelimit.config import SHARED_MEMORY_ENV

    env = dict(os.environ)
    env[PRIMARY_PID_ENV] = str(os.getpid())
    if table is not None:
        env[SHARED_MEMORY_ENV] = str(table)
    if cache is not None:
        env[SHARED_CACHE_ENV] = str(cache)
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
