"""`dashboard_data`: each part read from its component, field by field.

The models, routes and alerts from real components fed by hand (a catalog copy and a
route copy applied their watch changes, a tracker on a clock the test moves, alert rules
evaluated once); the swaps and A/B tests from a running stack's hot-swap service, read
in-process and, from a gateway in another stack, over gRPC.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.config.schema import AlertThresholds
from modelyard.dashboard.data import DashboardSources, dashboard_data
from modelyard.dashboard.hotswap_readout import LocalHotSwap, RemoteHotSwap
from modelyard.gateway.alerts import AlertRules, Alerts
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.performance import PerformanceTracker
from modelyard.gateway.route_view import RouteView
from modelyard_client.v1 import common_pb2, hotswap_pb2, registry_pb2, selector_pb2

M, N, GONE = "local/m", "local/n", "gone/x"
AT, ELSEWHERE = "10.0.0.1:50051", "10.0.0.2:50051"
H = common_pb2


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _catalog() -> CatalogView:
    view = CatalogView()
    entry = common_pb2.ModelEntry(
        id=M,
        provider="local",
        health=H.HEALTH_STATUS_DEGRADED,
        health_reason="probe failed at 10.0.0.2:50051",
        deployments=[
            common_pb2.Deployment(backend="local", endpoint=AT, health=H.HEALTH_STATUS_HEALTHY),
            common_pb2.Deployment(
                backend="local", endpoint=ELSEWHERE, health=H.HEALTH_STATUS_UNHEALTHY
            ),
        ],
    )
    Change = registry_pb2.ModelChange
    view.apply(Change(kind=Change.KIND_UPSERTED, model=entry, revision=1))
    view.apply(Change(kind=Change.KIND_SYNCED, revision=1, catalog_id="c"))
    return view


def _tracker() -> PerformanceTracker:
    """At 112.0, 12 s after it started: four answers of `M` (125-500 ms, 0.25 USD, 11
    tokens, the first at 62.5 ms) and one failure, and one answer of `GONE`."""
    clock = Clock(100.0)
    tracker = PerformanceTracker(clock=clock)
    clock.now = 112.0
    for latency in (0.125, 0.25, 0.375, 0.5):
        started = 112.0 - latency
        tracker.record(M, "local", AT, started, started + 0.0625, 11, True, 0.25)
    tracker.record(M, "local", AT, 111.5, 0.0, 0, False, 0.0)
    tracker.record(GONE, "gone", AT, 111.75, 111.875, 1, True, 0.0)
    return tracker


def _routes() -> RouteView:
    view = RouteView()
    Change = hotswap_pb2.RouteChange
    split = hotswap_pb2.Split(
        id="t1",
        kind=hotswap_pb2.Split.KIND_AB_TEST,
        arms=[
            hotswap_pb2.ABArm(name="a", model_id=M, weight=0.75),
            hotswap_pb2.ABArm(name="b", model_id=N, weight=0.25),
        ],
    )
    routes = [
        hotswap_pb2.Route(alias="chat", model_id=M, split=split, fallback_models=[N]),
        hotswap_pb2.Route(task_type=selector_pb2.TASK_TYPE_CODE, model_id=N),
        hotswap_pb2.Route(for_model=N, fallback_models=[M]),
        hotswap_pb2.Route(alias="batch", model_id=N),
    ]
    for i, route in enumerate(routes, 1):
        view.apply(Change(kind=Change.KIND_UPSERTED, route=route, revision=i))
    view.apply(Change(kind=Change.KIND_SYNCED, revision=4, table_id="t"))
    return view


def _figures(**given: Any) -> dict[str, Any]:
    zero: dict[str, Any] = {
        "requests": 0,
        "errors": 0,
        "error_rate": 0.0,
        "latency_ms_p50": 0.0,
        "latency_ms_p95": 0.0,
        "ttft_ms_p50": 0.0,
        "tokens_per_second": 0.0,
        "requests_per_second": 0.0,
        "cost_per_request_usd": 0.0,
        "cost_per_hour_usd": 0.0,
    }
    return zero | given


async def test_models_routes_and_alerts_field_by_field() -> None:
    tracker = _tracker()
    thresholds = AlertThresholds(error_rate=0.1, latency_p95_ms=300)
    alerts = Alerts(AlertRules(thresholds, tracker), 5.0, clock=lambda: 1000.0)
    alerts.evaluate()
    sources = DashboardSources(_catalog(), tracker, _routes(), None, alerts, clock=lambda: 7.0)

    reading = await dashboard_data(sources)

    m_live = _figures(
        requests=5,
        errors=1,
        error_rate=0.2,
        latency_ms_p50=250.0,  # nearest rank of 125, 250, 375, 500
        latency_ms_p95=500.0,
        ttft_ms_p50=62.5,
        tokens_per_second=40.0,  # 4 x 10 tokens after the first over 1.0 s of decoding
        requests_per_second=5 / 12,
        cost_per_request_usd=0.25,
        cost_per_hour_usd=pytest.approx(300.0),  # 4 x 0.25 USD in 12 s
    )
    gone_live = _figures(
        requests=1,
        latency_ms_p50=250.0,
        latency_ms_p95=250.0,
        ttft_ms_p50=125.0,
        requests_per_second=1 / 12,
    )
    assert reading["generated_at"] == 7.0 and reading["window_s"] == 12.0
    assert reading["models"] == [  # by id
        {
            "id": GONE,  # unregistered since, still in the window
            "provider": "gone",
            "in_catalog": False,
            "health": "",
            "health_reason": "",
            **gone_live,
            "deployments": [
                {"endpoint": AT, "backend": "", "health": "", "tripped": False} | gone_live
            ],
        },
        {
            "id": M,
            "provider": "local",
            "in_catalog": True,
            "health": "degraded",
            "health_reason": "probe failed at 10.0.0.2:50051",
            **m_live,
            "deployments": [
                {"endpoint": AT, "backend": "local", "health": "healthy", "tripped": False}
                | m_live,
                {"endpoint": ELSEWHERE, "backend": "local", "health": "unhealthy", "tripped": False}
                | _figures(),
            ],
        },
    ]
    assert reading["totals"] == {
        "requests": 6,
        "errors": 1,
        "error_rate": 1 / 6,
        "latency_ms_p95": 500.0,
        "cost_per_hour_usd": pytest.approx(300.0),
    }
    assert reading["routes"] == [
        {
            "alias": "batch",
            "task_type": "",
            "for_model": "",
            "model_id": N,
            "fallback_models": [],
            "split": None,
        },
        {
            "alias": "chat",
            "task_type": "",
            "for_model": "",
            "model_id": M,
            "fallback_models": [N],
            "split": {
                "id": "t1",
                "kind": "ab_test",
                "arms": [
                    {"name": "a", "model_id": M, "weight": 0.75},
                    {"name": "b", "model_id": N, "weight": 0.25},
                ],
            },
        },
        {
            "alias": "",
            "task_type": "code",
            "for_model": "",
            "model_id": N,
            "fallback_models": [],
            "split": None,
        },
        {
            "alias": "",
            "task_type": "",
            "for_model": N,
            "model_id": "",
            "fallback_models": [M],
            "split": None,
        },
    ]
    error_detail = "20.0% of 5 attempts in the last 12s failed (threshold 10.0%)"
    latency_detail = "p95 500 ms over 5 attempts in the last 12s (threshold 300 ms)"
    assert reading["alerts"] == {
        "open": [
            {
                "rule": "error_rate",
                "scope": M,
                "value": 0.2,
                "threshold": 0.1,
                "detail": error_detail,
            },
            {
                "rule": "latency_p95",
                "scope": M,
                "value": 500.0,
                "threshold": 300,
                "detail": latency_detail,
            },
        ],
        "recent": [  # newest first
            {
                "state": "firing",
                "rule": "latency_p95",
                "scope": M,
                "at": 1000.0,
                "text": f"[FIRING] p95 latency on {M}: {latency_detail}",
            },
            {
                "state": "firing",
                "rule": "error_rate",
                "scope": M,
                "at": 1000.0,
                "text": f"[FIRING] error rate on {M}: {error_detail}",
            },
        ],
    }
    assert (reading["swaps"], reading["ab_tests"]) == ([], [])


async def test_without_routes_or_alerts_those_parts_are_empty() -> None:
    reading = await dashboard_data(DashboardSources(CatalogView(), PerformanceTracker()))
    assert reading["models"] == [] and reading["routes"] == []
    assert reading["alerts"] == {"open": [], "recent": []}
    assert reading["totals"]["requests"] == 0


A, B = "scripted/a", "scripted/b"
ALIAS = "chat-default"


async def test_a_running_swap_and_an_ab_test_from_the_hot_swap_service(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(
        [ScriptedEngine((A, B, "scripted/c"))], roles=("registry", "hotswap", "gateway")
    )
    assert stack.routes is not None and stack.swaps is not None and stack.tests is not None
    stack.routes.set_route(ALIAS, 0, A)
    stack.routes.set_route("other", 0, A)
    test = stack.tests.start(
        hotswap_pb2.StartABTestRequest(
            alias=ALIAS,
            arms=[
                hotswap_pb2.ABArm(name="a", model_id=A, weight=0.5),
                hotswap_pb2.ABArm(name="b", model_id=B, weight=0.5),
            ],
            metric="error_rate",
        )
    )
    # A swap that drains for a minute once switched: running throughout the test.
    swap = stack.swaps.start(
        hotswap_pb2.SwapRequest(alias="other", target_model_id=B, grace_period_ms=60_000)
    )
    hotswap = LocalHotSwap(stack.swaps, stack.tests)
    assert stack.view is not None
    reading = await dashboard_data(
        DashboardSources(stack.view, PerformanceTracker(), None, hotswap)
    )

    [shown] = reading["swaps"]
    assert shown == {
        "swap_id": swap.swap_id,
        "alias": "other",
        "task_type": "",
        "from_model_id": A,
        "to_model_id": B,
        "phase": shown["phase"],
        "canary": False,
        "canary_percent": 0.0,
        "started_at": swap.started_at.seconds + swap.started_at.nanos / 1e9,
    }
    assert shown["phase"] in {"preparing", "warming", "validating", "switched", "draining"}
    arm = {"requests": 0, "errors": 0, "error_rate": 0.0, "latency_ms_p50": 0.0}
    arm |= {"latency_ms_p95": 0.0, "cost_usd_per_request": 0.0, "mean_score": 0.0}
    assert reading["ab_tests"] == [
        {
            "id": test.id,
            "alias": ALIAS,
            "metric": "error_rate",
            "running": True,
            "winner": "",
            "confidence": 0.0,
            "alpha": test.alpha,
            "arms": [
                {"name": "a", "model_id": A, "weight": 0.5} | arm,
                {"name": "b", "model_id": B, "weight": 0.5} | arm,
            ],
            "ended_reason": "",
            "started_at": test.started_at.seconds + test.started_at.nanos / 1e9,
        }
    ]
    assert test.alpha > 0

    # A gateway of its own, its routes from that hot-swap service: the same tests, by gRPC.
    gateway = await make_stack(
        roles=("gateway",), registry_address=stack.address, hotswap_address=stack.address
    )
    assert gateway.route_view is not None
    remote = RemoteHotSwap(stack.address)
    assert await remote.ab_tests() == await hotswap.ab_tests()
    # The draining swap, not a canary: the remote reader lists it as the local one reads it.
    [draining] = await remote.running_swaps()
    assert draining.swap_id == swap.swap_id and [draining] == await hotswap.running_swaps()
    # A canary swap, at its first step until its target has answered 50 calls: the remote
    # reader lists it with ListSwaps, as the local one reads it.
    stack.routes.set_route("canaried", 0, A)
    canary = stack.swaps.start(
        hotswap_pb2.SwapRequest(alias="canaried", target_model_id="scripted/c", canary=True)
    )
    async with asyncio.timeout(10):
        while True:
            route = gateway.route_view.for_alias("canaried")
            if route is not None and route.split.id == canary.swap_id:
                break
            await asyncio.sleep(0.02)
    found, draining = await remote.running_swaps()  # newest first
    assert found == stack.swaps.get(canary.swap_id) and draining.swap_id == swap.swap_id
    assert sorted(s.swap_id for s in await hotswap.running_swaps()) == sorted(
        (found.swap_id, draining.swap_id)
    )
    assert found.phase == hotswap_pb2.SwapStatus.PHASE_CANARY and found.canary_percent == 5.0
    assert canary.swap_id in [s.swap_id for s in await hotswap.running_swaps()]
