"""Build, run and drain a modelyard gRPC server.

Every server gets the modelyard interceptor, ``grpc.health.v1`` and server
reflection. On SIGTERM/SIGINT it refuses new modelyard calls (UNAVAILABLE) and
reports NOT_SERVING for every service, and keeps accepting connections for a
notice window, so load balancers see NOT_SERVING (health checks are still
answered) before connections are refused; then it stops accepting and gives
in-flight calls the rest of `grace_s` seconds to finish. SIGHUP re-reads the
secrets without a restart (`on_reload_signal`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

from modelyard.meters.instruments import Instrument
from modelyard.security.audit import AuditLog
from modelyard.security.authn import Authenticator
from modelyard.server.interceptor import CallGate, ModelyardServerInterceptor

log = logging.getLogger(__name__)

# Generous message limit: multimodal inputs (images, audio) are large, and the
# gateway enforces its own, smaller, configurable request limit with a clear error.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Given the services a server answers itself, the handler of every other one's calls.
ForwarderFactory = Callable[[list[str]], "grpc.GenericRpcHandler[Any, Any]"]

# Calls gRPC holds for a method before this server's event loop takes them. gRPC's
# default cancels calls at random above 1,000 (certainly at 3,000): a burst of
# streams then lost calls as bare CANCELLED that no handler, log or count ever saw.
# Here every call up to this many reaches the interceptor, where the admission
# bounds (`modelyard.backends.admission`) answer RESOURCE_EXHAUSTED with a retry
# delay; only a flood past it meets gRPC's own refusal.
MAX_UNTAKEN_CALLS = 20_000

Registrar = Callable[[grpc.aio.Server], None]


@dataclass
class ServiceBinding:
    """One servicer to host: its full name ("modelyard.v1.GatewayService") and how to add it."""

    name: str
    register: Registrar


def bind(servicer: object) -> ServiceBinding:
    """The binding of a servicer built on a generated `<Service>Servicer` base class.

    The service's full name and its `add_<Service>Servicer_to_server` function
    are read from the generated module the base class lives in, so one helper
    serves every service of the contract.
    """
    for base in type(servicer).__mro__:
        module = sys.modules.get(base.__module__)
        add = getattr(module, f"add_{base.__name__}_to_server", None)
        if add is None or not base.__name__.endswith("Servicer"):
            continue
        service = base.__name__.removesuffix("Servicer")
        messages = sys.modules[base.__module__.removesuffix("_grpc")]
        full_name = messages.DESCRIPTOR.services_by_name[service].full_name
        return ServiceBinding(name=full_name, register=partial(add, servicer))
    raise TypeError(f"{type(servicer).__name__} is not built on a generated gRPC servicer base")


class GenericOnly:
    """A server as a generated ``add_<Service>Servicer_to_server`` sees it: the service's
    generic handler is added, its registered method handlers are not.

    grpc.aio's server (1.6x to 1.85 at least) keeps one pending request-call task per
    registered method and, for every call it takes, waits on all of them
    (``asyncio.wait(..., FIRST_COMPLETED)``): on the embedded stack's port 41 methods of
    seven services, ~40 µs of a call's CPU. With generic handlers alone it waits on one
    task, and finds the method with one dict lookup per service."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(
        self, handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers(tuple(handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        """Left out on purpose (see the class); the generic handler serves these methods."""


class DrainableHealth(health.aio.HealthServicer):  # type: ignore[misc,name-defined]  # untyped in grpc_health
    """``grpc.health.v1`` whose open Watch streams can be ended when the server drains."""

    def __init__(self) -> None:
        super().__init__()
        self._watches: set[asyncio.Task[Any]] = set()
        self._ending = False

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._watches.add(task)
        try:
            await super().Watch(request, context)
        except asyncio.CancelledError:
            if not self._ending:
                raise
            # Ended by the drain: the stream closes with OK after NOT_SERVING was sent.
        finally:
            self._watches.discard(task)

    async def end_watches(self) -> None:
        """End every open Watch (each has been told NOT_SERVING) and wait for them."""
        self._ending = True
        watches = list(self._watches)
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: DrainableHealth
    service_names: list[str]
    calls: CallGate
    # `health_address`'s plaintext server of grpc.health.v1 alone (its port), if any.
    health_server: grpc.aio.Server | None = None
    health_port: int = 0
    private_port: int = 0  # `private_address`'s, if any
    # Run after NOT_SERVING, before the grace period: end streams that never
    # finish by themselves (watches), so they do not hold the drain for its
    # whole grace period.
    before_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def drain(self, grace_s: float, notice_s: float = 0.0) -> None:
        """Refuse new calls and go NOT_SERVING; after `notice_s`, stop accepting and drain.

        For the notice window the server still accepts connections: a health
        check is answered NOT_SERVING and a new modelyard call UNAVAILABLE by
        the interceptor, while the calls in flight go on. Then the server stops
        accepting (connections are refused) and stops once those calls have
        ended, or `grace_s` after the drain began: the notice is part of the
        grace period, never longer, so `grace_s` bounds the whole stop.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        self.calls.close()
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for hook in self.before_stop:
            await hook()
        await asyncio.sleep(min(notice_s, grace_s))
        # Health watches never end by themselves: end them (their watchers have seen
        # NOT_SERVING), so what remains is calls that end on their own.
        await self.health.end_watches()
        # One stop: refuse connections, let the running calls finish until the deadline.
        # (A second, shorter stop racing the first, or a stop(0) as a call's status is
        # still being sent, crashes grpc's core now and then: one stop, with a grace.)
        await self.server.stop(max(deadline - loop.time(), 0.0))
        if self.health_server is not None:  # NOT_SERVING there until the very end
            await self.health_server.stop(0)


async def start_server(
    bindings: Iterable[ServiceBinding],
    address: str,
    *,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    credentials: grpc.ServerCredentials | None = None,
    authenticator: Authenticator | None = None,
    audit: AuditLog | None = None,
    slow_reader_timeout_s: float | None = None,
    health_address: str | None = None,
    requests: Instrument | None = None,
    reuse_port: bool = False,
    private_address: str | None = None,
    forward: ForwarderFactory | None = None,
) -> RunningServer:
    """Start a grpc.aio server on `address` ("127.0.0.1:0" picks a free port).

    `credentials`: TLS or mTLS (`modelyard.security.tls.server_credentials`);
    None serves plaintext. `authenticator`: keys required on every modelyard RPC
    (`modelyard.security.authn`); None: every call runs as `OPEN`. `audit`: every
    modelyard call gets its row there. `slow_reader_timeout_s`: a stream whose client
    takes nothing for that long is cut (`slow_readers.py`); None: never.
    `health_address`: also serve ``grpc.health.v1`` alone there, plaintext and
    unauthenticated, with the same statuses — for probes that speak neither TLS nor
    keys (the kubelet's native gRPC probes); nothing else is reachable on it.
    `requests`: every modelyard call counted by RPC and status (``modelyard.requests``).
    `reuse_port`: SO_REUSEPORT on `address`, for gateway workers sharing one port (off:
    a second server on a port in use is refused). `private_address`: also listen there,
    every service alike (how workers reach this process; its port in `private_port`).
    `forward`: given the services served here, the handler for every other service's
    calls (`forwarding.Forwarder`: a worker's calls for the primary).
    """
    bindings = list(bindings)
    calls = CallGate()
    server = grpc.aio.server(
        interceptors=[
            ModelyardServerInterceptor(
                calls,
                authenticator=authenticator,
                audit=audit,
                slow_reader_timeout_s=slow_reader_timeout_s,
                requests=requests,
            )
        ],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.server.max_pending_requests", MAX_UNTAKEN_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_UNTAKEN_CALLS),
        ],
    )
    # The registrars see the server through `GenericOnly` (its two registration calls).
    handlers = cast(grpc.aio.Server, GenericOnly(server))
    for binding in bindings:
        binding.register(handlers)
    health_servicer = DrainableHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, handlers)
    names = [b.name for b in bindings]
    reflected = [
        *names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    # What `reflection.enable_server_reflection` does for an aio server, through `handlers`.
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        ReflectionServicer(reflected), handlers
    )
    if forward is not None:  # last: the services above answer their own calls
        server.add_generic_rpc_handlers((forward(reflected),))
    port = _listen(server, address, credentials)
    private_port = 0 if private_address is None else _listen(server, private_address, credentials)
    await server.start()
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    transport = "plaintext" if credentials is None else "TLS"
    log.info("serving %s on port %d (%s)", ", ".join(names), port, transport)
    running = RunningServer(server, port, health_servicer, names, calls)
    running.private_port = private_port
    if health_address:
        try:
            running.health_server, running.health_port = await _health_only(
                health_servicer, health_address
            )
        except OSError:
            await server.stop(0)
            raise
    return running


def _listen(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None
) -> int:
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc's only word for "bind failed"
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address}: in use, or not an address of this host")
    return port


async def _health_only(
    health_servicer: DrainableHealth, address: str
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(
        health_servicer, cast(grpc.aio.Server, GenericOnly(server))
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address} (health): in use, or not an address here")
    await server.start()
    log.info("serving grpc.health.v1 alone on port %d (plaintext)", port)
    return server, port


def on_reload_signal(reload: Callable[[], object]) -> None:
    """Run `reload` on every SIGHUP, the operator's "read your secrets again"
    (`modelyard.security.secrets`): no restart, calls in flight go on."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


def stop_signal() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT from now on: taken before the server says it
    serves, so a stop sent the moment it does drains it (and its workers) instead of
    killing it by the signal's default."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
