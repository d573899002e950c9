"""Alerts through a running stack: `monitoring.alert_thresholds` over the gateway's window,
one firing and one resolved message per incident, posted to a webhook on 127.0.0.1.

The receiver stands for a Slack incoming webhook (Slack API, "Sending messages using
incoming webhooks" and "Reference: Secondary message attachments",
https://api.slack.com/messaging/webhooks and
https://api.slack.com/reference/messaging/attachments, 2025): it takes a JSON POST and
answers ``200 ok``, or, told to, ``500`` with Slack's plain-text body for a failure
on its side. Each stack is a registry and a gateway hosting a `ScriptedEngine`, its
rules evaluated every 0.2 s; calls are sent one at a time (no retry, no circuit
ejection, so each call is one attempt of the window).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from aiohttp import web
from conftest import StackFactory, free_port
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.assembly.settings import limiter_settings
from modelyard.config import parse_config
from modelyard.config.schema import ModelyardConfig
from modelyard.gateway.alerts import MIN_SAMPLES, AlertMessage, Breach
from modelyard.gateway.webhook import Webhook
from modelyard.meters import Meters
from modelyard.meters.instruments import Instrument
from modelyard_client.errors import BackendUnavailable, ConfigError
from modelyard_client.scrub import scrub
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

ROLES = ("registry", "gateway")
MODEL = "scripted/echo"
# The secret part of a Slack hook URL: /services/TEAM/CHANNEL/TOKEN.
HOOK_PATH = "/services/T0ALERTS01/B0ALERTS02/q8Zr2vXkN4wPbY7sLmC3tUe6"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """A webhook on 127.0.0.1 recording each POST: (status answered, JSON body)."""

    fail_first: int = 0  # POSTs answered 500 before the others are taken
    posts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.path != HOOK_PATH:
            self.posts.append((404, body))
            return web.Response(status=404, text="no_service")
        status = 500 if len(self.posts) < self.fail_first else 200
        self.posts.append((status, body))
        return web.Response(status=status, text="ok" if status == 200 else "internal_error")

    def delivered(self, state: str = "") -> list[dict[str, Any]]:
        return [b for s, b in self.posts if s == 200 and (not state or _state(b) == state)]


def _state(body: dict[str, Any]) -> str:
    fields = body["attachments"][0]["fields"]
    return str(next(f["value"] for f in fields if f["title"] == "State"))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.url = f"http://127.0.0.1:{port}{HOOK_PATH}"
    yield found
    await runner.cleanup()


def _config(receiver: Receiver | None, thresholds: str, extra: str = "") -> ModelyardConfig:
    hook = f"\n    alert_webhook: {{url: '{receiver.url}', timeout: 2s}}" if receiver else ""
    return parse_config(
        f"""
model_system:
  gateway:
    retries: {{max_attempts_per_call: 1}}
    circuit: {{consecutive_failures: 1000}}
  monitoring:
    metrics_interval: 200ms
    alert_thresholds: {{{thresholds}}}{hook}{extra}
""",
        env={},
    )


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


async def _calls(stack: Stack, count: int, key: str = "") -> int:
    """`count` Generate calls one after the other; how many were answered."""
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.text = "hi"
    request.params.max_tokens = 8
    metadata = (("x-api-key", key),) if key else ()
    answered = 0
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(count):
            try:
                await gateway.Generate(request, metadata=metadata, timeout=30)
                answered += 1
            except grpc.aio.AioRpcError:
                pass
    return answered


async def _until(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _ours(caplog: pytest.LogCaptureFixture) -> list[str]:
    """modelyard's log lines (the receiver's own access log names its path, as Slack's would)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("modelyard")]


def _counted(meter: Instrument) -> dict[tuple[str, ...], float]:
    """``modelyard.alerts`` by (rule, state, delivery)."""
    return {tuple(v for _, v in attrs): series.value for attrs, series in meter.series.items()}


def _sent(stack: Stack, state: str = "") -> list[AlertMessage]:
    assert stack.alerts is not None
    return [m for m in stack.alerts.sent if not state or m.state == state]


async def test_an_error_rate_incident_fires_once_and_resolves_once(
    make_stack: StackFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = ScriptedEngine((MODEL,), fail_with=BackendUnavailable("upstream 'x' is down"))
    config = _config(receiver, "error_rate: 0.5")
    stack = await make_stack(roles=ROLES, engines=[engine], config=config)
    assert await _calls(stack, MIN_SAMPLES - 1) == 0
    await asyncio.sleep(0.6)  # three evaluations: too few attempts for an incident
    assert _sent(stack) == [] and receiver.posts == []
    assert await _calls(stack, 1) == 0
    await _until(lambda: len(receiver.delivered()) == 1)
    await asyncio.sleep(0.6)  # still failing: the incident is open, nothing more is sent
    [firing] = receiver.delivered()
    assert _state(firing) == "firing" and len(receiver.posts) == 1
    attachment = firing["attachments"][0]
    assert firing["text"].startswith(f"[FIRING] error rate on {MODEL}: 100.0% of 5 attempts")
    assert attachment["color"] == "danger" and attachment["title"] == f"error_rate firing: {MODEL}"
    assert isinstance(attachment["ts"], int) and abs(attachment["ts"] - time.time()) < 60
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields == {
        "State": "firing",
        "Rule": "error_rate",
        "Model": MODEL,
        "Threshold": "0.5",
        "Value": "1",
        "Attempts in window": "5",
    }
    assert all(f["short"] is True for f in attachment["fields"])

    engine.fail_with = None  # it recovers: 6 answers make 5 failures of 11 attempts
    assert await _calls(stack, MIN_SAMPLES + 1) == MIN_SAMPLES + 1
    await _until(lambda: len(receiver.delivered()) == 2)
    await asyncio.sleep(0.6)
    assert [_state(b) for b in receiver.delivered()] == ["firing", "resolved"]
    assert len(receiver.posts) == 2
    resolved = receiver.delivered("resolved")[0]
    assert resolved["attachments"][0]["color"] == "good"
    assert resolved["text"] == (
        f"[RESOLVED] error rate on {MODEL}: 45.5% failed over 11 attempts in the last "
        f"{resolved['text'].rsplit('last ', 1)[1]}"
    )
    logged = _ours(caplog)
    assert sum("alert: [FIRING] error rate" in line for line in logged) == 1
    assert sum("alert: [RESOLVED] error rate" in line for line in logged) == 1
    assert not any("/services/" in line for line in logged)


async def test_a_webhook_answering_500_gets_each_message_once_after_retries(
    make_stack: StackFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_first = 2
    engine = ScriptedEngine((MODEL,), fail_with=BackendUnavailable("upstream 'x' is down"))
    stack = await make_stack(
        roles=ROLES, engines=[engine], config=_config(receiver, "error_rate: 0.5")
    )
    assert await _calls(stack, MIN_SAMPLES) == 0
    await _until(lambda: len(receiver.delivered()) == 1)  # backoff: up to 0.5 s, then 1 s
    engine.fail_with = None
    assert await _calls(stack, MIN_SAMPLES + 1) == MIN_SAMPLES + 1
    await _until(lambda: len(receiver.delivered()) == 2)
    await asyncio.sleep(0.6)
    assert [s for s, _ in receiver.posts] == [500, 500, 200, 200]
    assert [_state(b) for _, b in receiver.posts] == ["firing"] * 3 + ["resolved"]
    assert receiver.posts[0][1] == receiver.posts[2][1]  # the same message, tried again
    assert stack.alerts is not None and isinstance(stack.alerts.sink, Webhook)
    hook = stack.alerts.sink
    assert (hook.delivered, hook.failed_attempts, hook.dropped) == (2, 2, 0)
    assert _counted(stack.meters.alerts) == {
        ("error_rate", "firing", "delivered"): 1,
        ("error_rate", "resolved", "delivered"): 1,
    }
    secret = HOOK_PATH.rsplit("/", 1)[1]
    assert secret not in scrub(f"posting to {receiver.url} failed")  # registered at start
    logged = "\n".join(_ours(caplog))
    assert "alert: [FIRING]" in logged and secret not in logged and "/services/" not in logged


async def test_the_p95_latency_rule_fires_for_a_slow_model(
    make_stack: StackFactory, receiver: Receiver
) -> None:
    engine = ScriptedEngine((MODEL,), delay_s=0.1)  # three pieces: 300 ms an answer
    config = _config(receiver, "latency_p95_ms: 200")
    stack = await make_stack(roles=ROLES, engines=[engine], config=config)
    assert await _calls(stack, MIN_SAMPLES) == MIN_SAMPLES
    await _until(lambda: len(receiver.delivered()) == 1)
    await asyncio.sleep(0.6)
    [firing] = receiver.delivered()
    fields = {f["title"]: f["value"] for f in firing["attachments"][0]["fields"]}
    assert fields["Rule"] == "latency_p95" and fields["Threshold"] == "200"
    assert 300 <= float(fields["Value"]) < 5000
    assert len(receiver.posts) == 1  # neither the error rate nor (off) the cost fired


async def test_the_cost_per_hour_rule_fires_at_the_windows_pace(
    make_stack: StackFactory, receiver: Receiver
) -> None:
    engine = PricedEngine(1.0, model_ids=(MODEL,))  # $1 a call
    config = _config(receiver, "cost_per_hour_usd: 100")
    stack = await make_stack(roles=ROLES, engines=[engine], config=config)
    assert await _calls(stack, MIN_SAMPLES) == MIN_SAMPLES
    await _until(lambda: len(receiver.delivered()) == 1)
    [firing] = receiver.delivered()
    fields = {f["title"]: f["value"] for f in firing["attachments"][0]["fields"]}
    assert fields["Rule"] == "cost_per_hour" and fields["Threshold"] == "100"
    # 5 answers at $1 within the window's first seconds (at most its 60): far above $100/h.
    assert float(fields["Value"]) >= 5 * 60
    [message] = _sent(stack)
    assert message.breach.value == pytest.approx(float(fields["Value"]), rel=1e-5)


async def test_no_cost_incident_when_the_pace_is_below_the_threshold(
    make_stack: StackFactory, receiver: Receiver
) -> None:
    engine = PricedEngine(0.000001, model_ids=(MODEL,))  # a millionth of a dollar a call
    config = _config(receiver, "cost_per_hour_usd: 100")
    stack = await make_stack(roles=ROLES, engines=[engine], config=config)
    assert await _calls(stack, MIN_SAMPLES) == MIN_SAMPLES
    await asyncio.sleep(0.8)
    assert receiver.posts == [] and _sent(stack) == []


async def test_a_budget_at_its_last_alert_fraction_fires_until_its_window_resets(
    make_stack: StackFactory, receiver: Receiver
) -> None:
    engine = PricedEngine(0.01, model_ids=(MODEL,))
    budgets = "\n  security: {budgets: {per_key: {daily_usd: 0.02}, alert_at: [0.5, 1.0]}}"
    config = _config(receiver, "error_rate: 0.5", budgets)
    stack = await make_stack(
        roles=ROLES, engines=[engine], config=config, limiter=limiter_settings(config, {})
    )
    assert stack.limits is not None
    now = NOW
    stack.limits.clock = lambda: now
    assert await _calls(stack, 1, key="alerts-key-0001") == 1  # 50%: logged, no incident
    await asyncio.sleep(0.6)
    assert receiver.posts == []
    assert await _calls(stack, 1, key="alerts-key-0001") == 1  # 100%
    await _until(lambda: len(receiver.delivered()) == 1)
    await asyncio.sleep(0.6)
    [firing] = receiver.delivered()
    fields = {f["title"]: f["value"] for f in firing["attachments"][0]["fields"]}
    assert fields["Rule"] == "budget" and fields["Budget"].endswith(" day")
    assert fields["Value"] == "0.02" and fields["Threshold"] == "0.02"
    assert "100% of its $0.02 daily budget for 2026-12-01" in firing["text"]
    now = NOW + timedelta(days=1)  # the day's window resets
    await _until(lambda: len(receiver.delivered()) == 2)
    await asyncio.sleep(0.6)
    assert [_state(b) for b in receiver.delivered()] == ["firing", "resolved"]
    assert len(receiver.posts) == 2


async def test_without_a_webhook_alerts_are_logged_only(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelyard.gateway.alerts")
    engine = ScriptedEngine((MODEL,), fail_with=BackendUnavailable("upstream 'x' is down"))
    stack = await make_stack(roles=ROLES, engines=[engine], config=_config(None, "error_rate: 0.5"))
    assert stack.alerts is not None and stack.alerts.sink is None
    assert await _calls(stack, MIN_SAMPLES) == 0
    await _until(lambda: len(_sent(stack)) == 1)
    logged = [r.getMessage() for r in caplog.records]
    assert "alerts: no monitoring.alert_webhook set, alerts are logged only" in logged
    firing = [line for line in logged if line.startswith(f"alert: [FIRING] error rate on {MODEL}")]
    assert len(firing) == 1
    assert _counted(stack.meters.alerts) == {("error_rate", "firing", "logged"): 1}


async def test_a_message_the_webhook_never_takes_is_dropped_and_its_resolution_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"  # nothing listens
    meter = Meters().alerts
    hook = Webhook(url, 1.0, 3, base_backoff_s=0.01, meter=meter)
    breach = Breach("error_rate", MODEL, 1.0, 0.5, "100.0% of 5 attempts failed", 5)
    hook.send(AlertMessage("firing", breach, time.time()))
    hook.send(AlertMessage("resolved", breach, time.time(), "0.0% failed"))
    delivery = asyncio.create_task(hook.run())
    try:
        await _until(lambda: hook.dropped == 2)
    finally:
        delivery.cancel()
    assert (hook.delivered, hook.failed_attempts) == (0, 3)  # the firing's tries only
    assert _counted(meter) == {
        ("error_rate", "firing", "dropped"): 1,
        ("error_rate", "resolved", "dropped"): 1,
    }
    assert repr(hook).startswith("Webhook('http://127.0.0.1:") and "/services" not in repr(hook)
    [dropped, unsent] = [line for line in _ours(caplog) if "alert webhook" in line]
    assert "dropped after 3 attempts (last: ClientConnectorError" in dropped
    assert "not sent, its firing was not: [RESOLVED]" in unsent
    assert "/services/" not in dropped + unsent


def test_a_bad_webhook_url_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(
            "model_system: {monitoring: {alert_webhook: {url: 'hooks.slack.com/x'}}}", env={}
        )
    assert "monitoring.alert_webhook.url: 'hooks.slack.com/x' is not a URL" in str(refused.value)
    with pytest.raises(ConfigError) as missing:
        parse_config("model_system: {monitoring: {alert_webhook: {timeout: 2s}}}", env={})
    assert "monitoring.alert_webhook.url: is required" in str(missing.value)


def test_the_alert_keys_act() -> None:
    from modelyard.config.unbuilt import not_implemented

    config = parse_config(
        "model_system: {monitoring: {alert_thresholds: {error_rate: 0.1, cost_per_hour_usd: 5},"
        " alert_webhook: {url: 'https://hooks.example.com/x'}}}",
        env={},
    )
    assert not_implemented(config) == {}
    assert "hooks.example.com" not in repr(config.monitoring.alert_webhook)
    assert json.dumps(config.monitoring.alert_thresholds.cost_per_hour_usd) == "5.0"
