"""The dashboard on a running stack: the page in Debian's headless Chromium against live
traffic (the DOM lists the models, each chart drew points, the routes, the A/B test and
the alert show), a screenshot kept as an artifact, and its data guarded like the admin
RPCs when keys are required.

The stack is a registry, a hot-swap service and a gateway with its HTTP edge on a free
port, hosting `ScriptedEngine`s: two priced models behind the alias ``chat-default``
under an A/B test, and one whose every call fails (its error rate fires an alert). The
traffic goes through the edge's ``/v1/chat/completions`` while the browser polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from conftest import StackFactory
from support.chromium import require_chromium, run_chromium, screenshot
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard.edges.dashboard import page_html
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2, hotswap_pb2, keys_pb2, keys_pb2_grpc

A, B, FLAKY = "scripted/a", "scripted/b", "scripted/flaky"
ALIAS = "chat-default"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # gitignored
CHARTS = ("chart-latency", "chart-errors", "chart-cost")
ADMIN_KEY, SERVICE_KEY = "admin-key-for-the-dashboard-tests", "service-key-for-the-dashboard"


class PricedEngine(ScriptedEngine):
    """A scripted engine whose models cost `usd_per_request` a call."""

    def __init__(self, usd_per_request: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usd_per_request = usd_per_request

    def models(self) -> list[common_pb2.ModelEntry]:
        entries = super().models()
        for entry in entries:
            entry.cost.usd_per_request = self.usd_per_request
        return entries


class Elements(HTMLParser):
    """Every element of a dumped DOM with its attributes, and the text of each table cell."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.cells: list[str] = []
        self._in_cell = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "td":
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1] += data

    def values(self, attribute: str) -> list[str]:
        return [attrs[attribute] for _, attrs in self.elements if attribute in attrs]

    def by_id(self, element_id: str) -> dict[str, str]:
        [found] = [attrs for _, attrs in self.elements if attrs.get("id") == element_id]
        return found


async def _stack(make_stack: StackFactory, auth: str = "") -> Stack:
    config = parse_config(
        f"""
model_system:
  gateway:
    retries: {{max_attempts_per_call: 1}}
    circuit: {{consecutive_failures: 1000}}
  monitoring:
    metrics_interval: 200ms
    health_check_interval: 1s{auth}
""",
        env={"A": ADMIN_KEY, "S": SERVICE_KEY},
    )
    engines = [
        PricedEngine(0.002, model_ids=(A, B)),
        ScriptedEngine((FLAKY,), fail_with=BackendUnavailable("upstream 'flaky' is down")),
    ]
    stack = await make_stack(
        engines,
        roles=("registry", "hotswap", "gateway"),
        http_listen="127.0.0.1:0",
        config=config,
    )
    async with asyncio.timeout(10):  # the engines' models reach the gateway's catalog copy
        while True:
            if stack.view is not None and len(stack.view.models()) == 3:
                return stack
            await asyncio.sleep(0.02)


async def _ab_test(stack: Stack) -> hotswap_pb2.ABTest:
    """`ALIAS` routed to model a, then split half and half with b; once the gateway sees it."""
    assert stack.routes is not None and stack.tests is not None and stack.route_view is not None
    stack.routes.set_route(ALIAS, 0, A)
    test = stack.tests.start(
        hotswap_pb2.StartABTestRequest(
            alias=ALIAS,
            arms=[
                hotswap_pb2.ABArm(name="a", model_id=A, weight=0.5),
                hotswap_pb2.ABArm(name="b", model_id=B, weight=0.5),
            ],
        )
    )
    async with asyncio.timeout(5):
        while True:
            route = stack.route_view.for_alias(ALIAS)
            if route is not None and route.split.id == test.id:
                return test
            await asyncio.sleep(0.01)


async def _chat(http: aiohttp.ClientSession, stack: Stack, model: str) -> int:
    assert stack.edge is not None
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    async with http.post(f"{stack.edge.base_url}/chat/completions", json=body) as answer:
        await answer.read()
        return answer.status


@contextlib.asynccontextmanager
async def _traffic(stack: Stack) -> AsyncIterator[list[int]]:
    """Calls to the alias, to each model, and to the failing one, until the block ends;
    yields the statuses answered so far."""
    statuses: list[int] = []

    async def send() -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                for model in (ALIAS, A, B, FLAKY):
                    statuses.append(await _chat(http, stack, model))
                await asyncio.sleep(0.05)

    task = asyncio.create_task(send())
    try:
        async with asyncio.timeout(10):  # the first round, and the alert it fires
            while True:
                if len(statuses) >= 24 and stack.alerts is not None and stack.alerts.incidents.open:
                    break
                await asyncio.sleep(0.05)
        yield statuses
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_page_in_chromium_shows_the_models_charts_routes_tests_and_alerts(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    require_chromium()
    stack = await _stack(make_stack)
    test = await _ab_test(stack)
    assert stack.routes is not None and stack.swaps is not None
    stack.routes.set_route("other", 0, A)  # swapped to b, then draining for a minute
    swap = stack.swaps.start(
        hotswap_pb2.SwapRequest(alias="other", target_model_id=B, grace_period_ms=60_000)
    )
    assert stack.edge is not None
    url = stack.edge.dashboard_url
    async with _traffic(stack) as statuses:
        dom = Elements(await run_chromium(url, "--dump-dom", budget_ms=10_000))
        shot = tmp_path / "dashboard.png"
        await screenshot(url, shot, (1400, 1300))
    assert set(statuses) == {200, 503}  # answers, and the failing model's refusals

    assert dom.values("data-model-id") == [A, B, FLAKY]
    [body] = [attrs for tag, attrs in dom.elements if tag == "body"]
    assert int(body["data-readings"]) >= 2  # it polled again and kept the readings
    for chart in CHARTS:
        drawn = dom.by_id(chart)
        assert int(drawn["data-series"]) == 3, chart  # a line per model with traffic
        assert int(drawn["data-points"]) >= 3, chart  # each model's readings drew points
    circles = sum(1 for tag, _ in dom.elements if tag == "circle")
    assert circles == sum(int(dom.by_id(c)["data-points"]) for c in CHARTS)
    assert dom.values("data-route") == [ALIAS, "other"]
    assert dom.values("data-ab-test-id") == [test.id]
    assert dom.values("data-swap-id") == [swap.swap_id]
    assert "error_rate scripted/flaky" in dom.values("data-alert")
    assert "ab_test " + test.id in " ".join(dom.cells)  # the route's split

    # The screenshot, kept where a CI run uploads it from.
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    ARTIFACTS.mkdir(exist_ok=True)
    kept = ARTIFACTS / "dashboard.png"
    shutil.copyfile(shot, kept)
    print(f"dashboard screenshot: {kept}")


async def test_the_data_is_open_on_the_open_default_and_the_page_is_the_packaged_one(
    make_stack: StackFactory,
) -> None:
    stack = await _stack(make_stack)
    assert stack.edge is not None
    assert stack.edge.dashboard_url == f"http://127.0.0.1:{stack.edge.port}/dashboard"
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.edge.dashboard_url) as page:
            assert page.status == 200 and page.content_type == "text/html"
            assert await page.read() == page_html()
        async with http.get(f"{stack.edge.dashboard_url}/data") as answer:
            assert answer.status == 200
            assert answer.headers["Cache-Control"] == "no-store"
            reading = await answer.json()
    assert [m["id"] for m in reading["models"]] == [A, B, FLAKY]
    assert reading["routes"] == [] and reading["ab_tests"] == [] and reading["swaps"] == []


async def test_a_deployment_the_health_monitor_trips_shows_tripped_and_unhealthy(
    make_stack: StackFactory,
) -> None:
    stack = await _stack(make_stack)
    assert stack.edge is not None
    data = f"{stack.edge.dashboard_url}/data"
    async with _traffic(stack), aiohttp.ClientSession() as http:
        async with asyncio.timeout(20):  # two failed probes, a second apart, trip it
            while True:
                async with http.get(data) as answer:
                    models = {m["id"]: m for m in (await answer.json())["models"]}
                [deployment] = models[FLAKY]["deployments"]
                if deployment["tripped"] and models[FLAKY]["health"] == "unhealthy":
                    break
                await asyncio.sleep(0.2)
    assert "upstream 'flaky' is down" in models[FLAKY]["health_reason"]
    assert deployment["health"] == "healthy"  # the deployment's own, as its backend announced
    assert [d["tripped"] for d in models[A]["deployments"]] == [False]
    assert models[A]["health"] == "healthy"


AUTH = """
  security:
    auth: {required: true, admin_key: "${A}", service_key: "${S}"}"""


async def test_with_keys_required_the_data_needs_an_admin_key(make_stack: StackFactory) -> None:
    stack = await _stack(make_stack, AUTH)
    assert stack.edge is not None
    data = f"{stack.edge.dashboard_url}/data"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        keys = keys_pb2_grpc.KeyServiceStub(channel)
        issued = await keys.CreateKey(
            keys_pb2.CreateKeyRequest(owner="ana"), metadata=(("x-api-key", ADMIN_KEY),)
        )
    async with aiohttp.ClientSession() as http:
        async with http.get(data) as none:
            assert none.status == 401
            assert (await none.json())["error"]["type"] == "authentication_error"
        async with http.get(data, headers={"Authorization": "Bearer not-a-key"}) as wrong:
            assert wrong.status == 401
        async with http.get(data, headers={"Authorization": f"Bearer {issued.secret}"}) as user:
            assert user.status == 403  # a generate key: not the admin scope
            message = (await user.json())["error"]["message"]
            assert message == (
                f"key '{issued.key.id}' may not read the dashboard: it needs the admin scope"
            )
        async with http.get(data, headers={"x-api-key": ADMIN_KEY}) as admin:
            assert admin.status == 200
            assert [m["id"] for m in (await admin.json())["models"]] == [A, B, FLAKY]
        async with http.get(stack.edge.dashboard_url) as page:  # the page holds no data
            assert page.status == 200


async def test_the_page_takes_the_admin_key_from_the_url_fragment(
    make_stack: StackFactory,
) -> None:
    require_chromium()
    stack = await _stack(make_stack, AUTH)
    assert stack.edge is not None
    url = stack.edge.dashboard_url
    keyed = Elements(await run_chromium(f"{url}#key={ADMIN_KEY}", "--dump-dom", budget_ms=4000))
    assert keyed.values("data-model-id") == [A, B, FLAKY]
    # Without it the data is refused: the page says so and shows the field for a key.
    bare = await run_chromium(url, "--dump-dom", budget_ms=4000)
    assert Elements(bare).values("data-model-id") == []
    assert "401: " in bare and "an admin key is needed" in bare
    [form] = [attrs for tag, attrs in Elements(bare).elements if attrs.get("id") == "key-form"]
    assert "hidden" not in form
