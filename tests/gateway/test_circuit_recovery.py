"""A primary model that answers HTTP 500 for a while and then recovers, through a real stack.

Registry, gateway and an openai_compat backend in front of the fake OpenAI
upstream serving ``model-a`` (the primary) and ``model-b`` (the request's
fallback). Every call is sequential, so what the upstream receives during a
call belongs to that call. Times are scaled down from the defaults (30 s open,
at most 30 s) to 0.25 s doubling to at most 1 s, keeping the shape: five
failures open the primary's circuit, its traffic moves to the fallback while
only probes reach it, failed probes double the time out up to the cap, and once
the primary answers again one probe closes the circuit and its traffic returns
within the cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.config import parse_config
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

PRIMARY, FALLBACK = "custom/model-a", "custom/model-b"
FAILURES_TO_OPEN = 5  # CircuitPolicy's default, which this keeps
BASE_S, CAP_S = 0.25, 1.0
RECOVERS_AT_S = 2.0  # after the primary starts failing
ENDS_AT_S = RECOVERS_AT_S + CAP_S + 0.5
# How late a probe may come after its open period ends: the call before it runs
# out, then the next pick takes the probe. Generous for a loaded machine.
PROBE_SLACK_S = 0.3


@dataclass(frozen=True)
class Call:
    started: float  # seconds since the primary started failing
    ended: float
    upstream: tuple[str, ...]  # the models the upstream was asked for, in order
    served_by: str


def _request() -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=PRIMARY, fallback_models=[FALLBACK])
    request.input.text = "hi"
    request.params.max_tokens = 8
    return request


async def _calls_through_an_outage(address: str, upstream: FakeUpstream) -> list[Call]:
    """Calls one after another: the primary fails from 0 s and recovers at RECOVERS_AT_S."""
    calls = []
    async with grpc.aio.insecure_channel(address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        assert (await gateway.Generate(_request(), timeout=10)).model_id == PRIMARY
        upstream.failure_rates["model-a"] = 1.0
        origin = time.monotonic()
        while (started := time.monotonic() - origin) < ENDS_AT_S:
            if started >= RECOVERS_AT_S:
                upstream.failure_rates["model-a"] = 0.0
            seen = len(upstream.bodies)
            response = await gateway.Generate(_request(), timeout=10)
            asked = tuple(body["model"] for body in upstream.bodies[seen:])
            calls.append(Call(started, time.monotonic() - origin, asked, response.model_id))
    return calls


async def test_a_failing_primary_is_probed_with_backoff_and_gets_its_traffic_back(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    # No retry on the same model: each call tries the primary once, then the fallback.
    backend = f'{{kind: openai_compat, endpoint: "{upstream.url}", max_retries: 0}}'
    # Short open periods (gateway.circuit), a lone deployment allowed out (the default).
    circuit = f"{{base_ejection: {BASE_S}s, max_ejection: {CAP_S}s, probe_timeout: 5s}}"
    config = parse_config(
        f"model_system: {{gateway: {{circuit: {circuit}}}, backends: {{custom: {backend}}}}}"
    )
    stack = await make_stack(roles=("registry", "gateway", "backend-openai-compat"), config=config)
    calls = await _calls_through_an_outage(stack.address, upstream)

    failed = ("model-a", "model-b")  # the primary answered 500, the fallback served
    assert all(c.upstream in (failed, ("model-b",), ("model-a",)) for c in calls), calls
    assert [c.upstream for c in calls[:FAILURES_TO_OPEN]] == [failed] * FAILURES_TO_OPEN

    # While it fails, the primary's upstream sees only probes, one per open period,
    # each period twice the last up to the cap; every call is served by the fallback.
    # A period starts when the primary's attempt fails and a probe is picked, both
    # within their calls: between each call's start and end.
    outage = [c for c in calls if c.started < RECOVERS_AT_S]
    assert {c.served_by for c in outage} == {FALLBACK}
    probes = [c for c in outage[FAILURES_TO_OPEN:] if c.upstream == failed]
    assert len(probes) >= 3, calls  # 0.25 s, 0.5 s, 1 s: the cap is reached
    period, last_failure = BASE_S, calls[FAILURES_TO_OPEN - 1]
    for probe in probes:
        assert probe.ended - last_failure.started >= period, calls
        assert probe.started - last_failure.ended < period + PROBE_SLACK_S, calls
        period, last_failure = min(2 * period, CAP_S), probe

    # Recovered: the next probe, one capped period after the last failed one (not
    # twice that), succeeds, and from then on every call goes to the primary alone.
    after = [c for c in calls if c.started >= RECOVERS_AT_S]
    first_back = next(i for i, c in enumerate(after) if c.served_by == PRIMARY)
    back = after[first_back]
    assert [c.upstream for c in after[:first_back]] == [("model-b",)] * first_back
    assert back.ended - last_failure.started >= CAP_S, calls
    assert back.started - last_failure.ended < CAP_S + PROBE_SLACK_S, calls
    assert back.started - RECOVERS_AT_S < CAP_S + PROBE_SLACK_S
    assert len(after[first_back:]) >= 10, calls
    assert all(c.upstream == ("model-a",) for c in after[first_back:]), calls
