"""Assemble services into one running gRPC server, from one `Settings`.

`modelyard up` runs every role in one process on one address (the embedded
default); `modelyard serve ROLE` runs some roles per process for the split
deployment, where backends and the gateway find the registry by address.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from grpc_health.v1 import health_pb2

from modelyard.assembly.audit import audit_log
from modelyard.assembly.dashboard import dashboard_reading
from modelyard.assembly.hotswap import ab_tests, route_table, swap_engine
from modelyard.assembly.plan import BackendPlan, discovery_for, engines_for, plan_backends
from modelyard.assembly.profiles import apply_profiles
from modelyard.assembly.selection import selection_settings
from modelyard.assembly.settings import Settings
from modelyard.assembly.stack_meters import alerts_for, gateway_call_meter, start_metrics
from modelyard.assembly.workers import engines_beside
from modelyard.backends.admission import gateway_admission
from modelyard.backends.engine import Engine
from modelyard.backends.host import BackendHost
from modelyard.backends.servicer import BackendServicer
from modelyard.edges.http_edge import EdgeCalls, RunningEdge, start_edge
from modelyard.evaluation.quality import RegistryQuality
from modelyard.gateway.alerts import Alerts
from modelyard.gateway.arm_outcomes import ArmOutcomes
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.balancing import Balancer, CircuitPolicy
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.conversations import Conversations, ConversationStore
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.guarded import SecurityStages
from modelyard.gateway.health_monitor import HealthMonitor
from modelyard.gateway.limits import ModelLimits
from modelyard.gateway.performance import PerformanceTracker
from modelyard.gateway.performance_reports import PerformanceReports
from modelyard.gateway.response_cache import ResponseCache
from modelyard.gateway.route_view import RouteView
from modelyard.gateway.servicer import GatewayServicer
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.standby import Standby
from modelyard.gateway.stream_deadlines import StreamDeadlines
from modelyard.hotswap.abtests import ABTests
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.servicer import HotSwapServicer
from modelyard.hotswap.swaps import Swaps
from modelyard.meters import Meters
from modelyard.meters.gateway_calls import AttemptMeter
from modelyard.meters.prometheus import MetricsListener
from modelyard.meters.resilience import ResilienceMeter
from modelyard.registry.catalog import Catalog
from modelyard.registry.discovery_loop import DiscoveryLoop
from modelyard.registry.servicer import Registry, RegistryServicer
from modelyard.registry.store import CatalogStore
from modelyard.security.audit import AuditLog
from modelyard.security.audit_servicer import AuditServicer
from modelyard.security.auth_mode import keys_required, open_authenticator
from modelyard.security.authn import Authenticator
from modelyard.security.channels import InternalChannels
from modelyard.security.secrets import ProviderKeys
from modelyard.security.servicer import KeyServicer
from modelyard.security.tls import server_credentials
from modelyard.selector.candidates import CandidatePool
from modelyard.selector.selection import Selector
from modelyard.selector.servicer import SelectorServicer
from modelyard.server.forwarding import FORWARDING_OPTIONS, Forwarder
from modelyard.server.runtime import RunningServer, ServiceBinding, bind, start_server
from modelyard.server.service_health import (
    Problem,
    ServiceHealth,
    catalog_problem,
    engines_problem,
)
from modelyard.server.unimplemented import with_unimplemented
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import backend_pb2, common_pb2, gateway_pb2

log = logging.getLogger(__name__)

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
BACKEND_SERVICE = backend_pb2.DESCRIPTOR.services_by_name["BackendService"].full_name
GATEWAY_SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


@dataclass
class Stack:
    server: RunningServer
    address: str
    plans: list[BackendPlan] = field(default_factory=list)
    catalog: Catalog | None = None
    view: CatalogView | None = None
    routes: RouteTable | None = None
    swaps: Swaps | None = None
    tests: ABTests | None = None
    conversations: Conversations | None = None
    host: BackendHost | None = None
    pool: BackendPool | None = None
    limits: ModelLimits | None = None
    discovery: DiscoveryLoop | None = None
    route_view: RouteView | None = None  # the gateway's copy of the routes
    outcomes: ArmOutcomes | None = None  # the gateway's reports of split calls
    response_cache: ResponseCache | None = None  # gateway.cache, when enabled
    authenticator: Authenticator | None = None  # keys required, or the KeyService's store
    secrets: ProviderKeys | None = None  # provider keys; `reload_secrets` re-reads them
    audit: AuditLog | None = None  # security.audit: a row per call, written in batches
    meters: Meters = field(default_factory=Meters)  # every instrument of this process
    quality: RegistryQuality | None = None  # where EvaluateModel stores qualities
    metrics_listener: MetricsListener | None = None  # GET /metrics, at settings.metrics_listen
    edge: RunningEdge | None = None  # the OpenAI-compatible HTTP edge, when served
    performance: PerformanceReports | None = None  # the gateway's live figures to the registry
    health: HealthMonitor | None = None  # the gateway's checks of its deployments
    alerts: Alerts | None = None  # monitoring.alert_thresholds over those figures
    forwarder: Forwarder | None = None  # a worker's: other services' calls to the primary
    beside: BackendHost | None = None  # a worker's own remote-provider engines
    # Where this process itself is reached: `address`, or its private listener's when
    # gateway workers share `address` (`settings.private_listen`).
    address_here: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reload_secrets(self) -> bool:
        """Re-read the provider keys (SIGHUP); engines send the new ones from their next
        call. True when a key changed."""
        return self.secrets.reload() if self.secrets is not None else False

    async def _end_watches(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.catalog:
            self.catalog.end_watches()
        if self.routes:
            self.routes.end_watches()
        if self.tests:
            await self.tests.close()  # running tests keep their figures
        if self.swaps:
            await self.swaps.close()  # running swaps stop; their watches end

    async def stop(self, grace_s: float = 5.0, notice_s: float = 0.0) -> None:
        """NOT_SERVING, end watches, keep accepting connections for `notice_s`, let in-flight
        calls finish within `grace_s` (the notice included), release all."""
        self.server.before_stop.append(self._end_watches)
        if self.outcomes:  # while a hot-swap service in this server still takes calls
            await self.outcomes.flush()
        await self.server.drain(grace_s, notice_s)  # the edge's gate closes with it
        if self.edge:
            await self.edge.stop()
        if self.metrics_listener:  # scraped to the end of the drain
            await self.metrics_listener.stop()
        if self.quality:
            await self.quality.close()
        if self.outcomes:
            await self.outcomes.close()  # what the drained calls added
        if self.host:
            await self.host.close()
        if self.beside:
            await self.beside.close()
        if self.pool:
            await self.pool.close()
        if self.limits:
            await self.limits.close()
        if self.response_cache:
            await self.response_cache.close()
        if self.catalog:
            self.catalog.close()
        if self.routes:
            self.routes.close()
        if self.conversations:
            self.conversations.close()
        if self.authenticator:
            self.authenticator.close()
        if self.audit:
            await self.audit.close()  # the drained calls' rows too
        if self.forwarder:
            await self.forwarder.close()


async def start_stack(settings: Settings, *, engines: Sequence[Engine] = ()) -> Stack:
    """Serve `settings.roles` on `settings.listen`. `engines`: hosted besides the ones the
    configuration brings (embedding modelyard as a library, tests)."""
    roles = settings.roles
    # Every PEM file read before anything opens: a bad one stops the start, named.
    tls = settings.config.security.tls
    credentials, channels = server_credentials(tls), InternalChannels.from_config(tls)
    # Keys required beyond loopback (security.auth); the services then present theirs.
    auth = settings.config.security.auth
    required = keys_required(auth, settings.listen)
    authenticator = None
    if required or "gateway" in roles:  # the gateway serves the KeyService either way
        authenticator = open_authenticator(auth, settings.data_dir, required)
    if required:
        channels = dataclasses.replace(channels, service_key=auth.service_key)
    bindings: list[ServiceBinding] = []
    meters = Meters()  # recorded always; served at settings.metrics_listen, sent by OTLP
    audit = audit_log(settings)
    if audit is not None:
        bindings.append(bind(AuditServicer(audit)))
    catalog = view = host = pool = limits = routes = route_view = conversations = None
    gateway: GatewayServicer | None = None
    outcomes = response_cache = None
    registry = None
    if "hotswap" in roles:
        routes = route_table(settings)
    if "registry" in roles:
        catalog = Catalog(CatalogStore(settings.store_at("registry.sqlite3")))
        registry = Registry(catalog)
        bindings.append(bind(with_unimplemented(RegistryServicer, registry)))
    if {"selector", "gateway", "hotswap"} & set(roles):
        # One live catalog copy feeds the selector, the gateway and the swaps.
        view = live = CatalogView()
        selector = Selector(
            CandidatePool(live.models, lambda: live.revision),
            selection_settings(settings.config.selection),
        )
        if "selector" in roles:
            bindings.append(bind(with_unimplemented(SelectorServicer, selector)))
        # The gateway's calls, and the swaps' validations, under each model's deadlines.
        pool = BackendPool(StreamDeadlines.from_config(settings.config), channels)
        if "gateway" in roles:
            limits = ModelLimits.from_config(settings.limiter)
            circuit = CircuitPolicy.from_config(settings.config.gateway.circuit)
            events = ResilienceMeter(meters)  # retries, fallbacks, hedges, ejections, splits
            # The gateway's live figures: selection, health, alerts and circuits read them.
            tracker = PerformanceTracker()
            balancer = Balancer(settings.balancing, settings.region, circuit, events, tracker)
            in_flight = gateway_admission(settings.config.gateway.max_in_flight)
            if routes is not None or settings.hotswap_address:
                route_view = RouteView()
                outcomes = ArmOutcomes()  # to the service the routes come from
            conversations = Conversations(
                ConversationStore(settings.store_at("conversations.sqlite3"))
            )
            core = GatewayCore(
                live,
                pool,
                limits,
                GatewaySettings.from_config(settings.config, settings.default_deadline_s),
                selector=selector,
                balancer=balancer,
                in_flight=in_flight,
                routes=route_view,
                conversations=conversations,
                outcomes=outcomes,
                performance=tracker,
                attempts=AttemptMeter(meters),
                events=events,
            )
            cache = settings.config.gateway.cache
            if cache.enabled:
                response_cache = ResponseCache.open(
                    ttl_s=cache.ttl,
                    max_entries=cache.max_entries,
                    redis_url=cache.redis_url,
                    shared_file=settings.shared_cache,
                    deterministic_only=cache.deterministic_only,
                )
            stages = SecurityStages.from_config(settings.config.security)  # guardrails, PII
            meter = gateway_call_meter(meters, live, route_view)
            gateway = with_unimplemented(GatewayServicer, core, response_cache, stages, meter)
            bindings.append(bind(gateway))
            assert authenticator is not None and authenticator.store is not None
            bindings.append(bind(KeyServicer(authenticator.store, authenticator)))
    swaps = tests = None
    if routes is not None:
        assert view is not None and pool is not None
        swaps = swap_engine(settings, routes, view, pool, meters.swap_phases)
        tests = ab_tests(settings, routes, view, swaps)
        bindings.append(bind(with_unimplemented(HotSwapServicer, routes, swaps, tests, view)))
    secrets = ProviderKeys.for_config(settings.config)
    plans = await plan_backends(settings, secrets)
    hosted = [*engines_for(plans, roles), *engines]
    if hosted:
        host = BackendHost(hosted)
        bindings.append(bind(BackendServicer(host)))
    if (view or host) and not (catalog or settings.registry_address):
        raise InvalidRequest("this role needs the registry's address (--registry)")
    monitoring = settings.config.monitoring
    if gateway is not None and route_view is None and "standby" in monitoring.recovery:
        raise InvalidRequest(
            "monitoring.recovery 'standby' moves routes through hot-swap, and this stack has "
            "none: add the hotswap role or give its address (--hotswap)"
        )

    forwarder: list[Forwarder] = []
    if settings.forward_to:
        primary = settings.forward_to

        def forward(served: list[str]) -> Forwarder:
            forwarder.append(Forwarder(primary, served, channels, FORWARDING_OPTIONS))
            return forwarder[0]

    server = await start_server(
        bindings,
        settings.listen,
        reuse_port=settings.reuse_port,
        private_address=settings.private_listen,
        forward=forward if settings.forward_to else None,
        credentials=credentials,
        authenticator=authenticator if required else None,
        audit=audit,
        slow_reader_timeout_s=settings.config.security.input_limits.slow_reader_timeout,
        health_address=settings.health_listen,
        requests=meters.requests,
    )
    address = f"{settings.listen.rsplit(':', 1)[0]}:{server.port}"
    if settings.private_listen:  # workers share the public port: this process is here
        address_here = f"{settings.private_listen.rsplit(':', 1)[0]}:{server.private_port}"
    else:
        address_here = address
    # How this process calls itself: by a name its certificate holds, not 0.0.0.0.
    own = address_here.replace("0.0.0.0", "127.0.0.1")
    stack = Stack(
        server,
        address,
        plans,
        catalog=catalog,
        view=view,
        routes=routes,
        swaps=swaps,
        tests=tests,
        conversations=conversations,
        host=host,
        pool=pool,
        limits=limits,
        route_view=route_view,
        outcomes=outcomes,
        response_cache=response_cache,
        authenticator=authenticator,
        secrets=secrets,
        audit=audit,
        meters=meters,
        forwarder=forwarder[0] if forwarder else None,
        address_here=own,
    )
    if audit is not None:  # rows written every flush_interval, old ones pruned hourly
        stack.tasks.append(asyncio.create_task(audit.run()))
    await start_metrics(stack, settings)
    if gateway is not None and settings.http_listen:
        aliases = route_view.aliases if route_view is not None else list
        keys = authenticator if required else None
        hotswap_at = own if routes is not None else settings.hotswap_address
        dashboard = dashboard_reading(stack, gateway.core, hotswap_at, channels)
        calls = EdgeCalls(gateway, server.calls, keys, audit, aliases, dashboard)
        try:
            stack.edge = await start_edge(calls, settings.http_listen, settings.reuse_port)
        except OSError as exc:
            await stack.stop(0)
            raise OSError(f"the HTTP edge cannot listen on {settings.http_listen}: {exc}") from exc
    if required and authenticator is not None:  # revocations seen within refresh_interval
        stack.tasks.append(asyncio.create_task(authenticator.follow(auth.refresh_interval)))
    registry_address = own if catalog else settings.registry_address
    # How other services reach the backends served here.
    advertise = settings.advertise or own
    try:
        if host is not None:
            assert registry_address
            await _start_backends(stack, host, registry_address, advertise, channels)
        if registry is not None and settings.discovery:
            sources = discovery_for(plans, host.engines if host else [], advertise)
            if sources:
                interval = settings.config.registry.discovery_interval
                loop = DiscoveryLoop(registry.catalog, sources, interval)
                registry.discovery = stack.discovery = loop
                stack.tasks.append(asyncio.create_task(loop.run_forever()))
        if settings.forward_to and pool is not None:
            stack.beside = await engines_beside(plans, pool, settings.forward_to)
        if view is not None:
            assert registry_address
            following = view.follow(registry_address, channels=channels)
            stack.tasks.append(asyncio.create_task(following))
            await asyncio.wait_for(view.synced.wait(), timeout=30)
            if gateway is not None:  # its figures, every monitoring.metrics_interval
                interval = settings.config.monitoring.metrics_interval
                reports = PerformanceReports(gateway.core.performance, view, interval)
                stack.performance = reports
                stack.tasks.append(asyncio.create_task(reports.run(registry_address, channels)))
                # EvaluateModel's scores, stored as each model's quality.
                stack.quality = gateway.store_quality = RegistryQuality(registry_address, channels)
                # Each deployment checked every monitoring.health_check_interval.
                core = gateway.core
                standby = None
                if route_view is not None and "standby" in monitoring.recovery:
                    hotswap_at = own if routes is not None else settings.hotswap_address
                    assert hotswap_at
                    standby = Standby(route_view, view, hotswap_at, channels)
                stack.health = HealthMonitor(
                    view,
                    core.backends,
                    core.performance,
                    core.balancer,
                    monitoring.health_check_interval,
                    monitoring.recovery,
                    meters.recoveries,
                    standby,
                )
                stack.tasks.append(
                    asyncio.create_task(stack.health.run(registry_address, channels))
                )
                assert limits is not None
                stack.alerts = alerts_for(settings, gateway.core.performance, limits, meters)
                stack.tasks.append(asyncio.create_task(stack.alerts.run()))
        if route_view is not None:
            hotswap_address = own if routes is not None else settings.hotswap_address
            assert hotswap_address
            following = route_view.follow(hotswap_address, channels=channels)
            stack.tasks.append(asyncio.create_task(following))
            assert outcomes is not None
            outcomes.start(hotswap_address, channels)
            await asyncio.wait_for(route_view.synced.wait(), timeout=30)
        _follow_service_health(stack, settings, gateway is not None)
    except BaseException:
        await stack.stop(0)
        raise
    return stack


def _follow_service_health(stack: Stack, settings: Settings, serves_gateway: bool) -> None:
    """The backend's and the gateway's grpc.health.v1 statuses follow what they can serve,
    checked every monitoring.health_check_interval (`server/service_health.py`)."""
    checks: dict[str, Problem] = {}
    host, view = stack.host, stack.view
    if host is not None:
        checks[BACKEND_SERVICE] = engines_problem(
            # The engines that serve a model: one without any (no GGUF files) has no say.
            lambda: [
                (e.kind, h.status, h.reason)
                for e in host.engines
                if e.models()
                for h in [e.health()]
            ]
        )
    if serves_gateway and view is not None:
        checks[GATEWAY_SERVICE] = catalog_problem(view.models)
    if checks:
        follower = ServiceHealth(
            stack.server.health,
            checks,
            settings.config.monitoring.health_check_interval,
            draining=lambda: not stack.server.calls.open,
        )
        stack.tasks.append(asyncio.create_task(follower.run()))


async def _start_backends(
    stack: Stack,
    host: BackendHost,
    registry_address: str,
    advertise: str,
    channels: InternalChannels,
) -> None:
    """Start the engines, announce their models, and say so when none can serve."""
    await host.start()
    entries = host.models(advertise)
    apply_profiles(entries, stack.plans)
    await host.announce(registry_address, entries, channels)
    if stack.pool is not None:
        stack.pool.add_in_process(advertise, host)
    unavailable = common_pb2.HEALTH_STATUS_UNAVAILABLE
    if all(engine.health().status == unavailable for engine in host.engines):
        # Nothing here can serve (CoreML off macOS): say so to health checkers. One
        # engine that cannot serve does not take the others' models down with it.
        _, reason = host.health()
        log.warning("backend %s cannot serve: %s", host.name, reason)
        await stack.server.health.set(BACKEND_SERVICE, NOT_SERVING)
