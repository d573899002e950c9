"""Select over real gRPC, and the gateway choosing, balancing and ejecting in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.config import parse_config
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    selector_pb2,
    selector_pb2_grpc,
)

C = common_pb2


def _model(model_id: str, **fields: Any) -> C.ModelEntry:
    entry = C.ModelEntry(id=model_id, provider=model_id.split("/")[0], **fields)
    entry.deployments.add(backend="scripted", endpoint="127.0.0.1:9")
    return entry


CHEAP = _model(
    "p/cheap",
    capabilities=[C.CAPABILITY_CHAT],
    input_modalities=[C.MODALITY_TEXT],
    context_window=4096,
    cost=C.CostProfile(usd_per_input_token=1e-7, usd_per_output_token=2e-7),
    performance=C.PerformanceProfile(latency_ms_p50=900, error_rate=0.02),
)
FAST = _model(
    "p/fast",
    capabilities=[C.CAPABILITY_CHAT, C.CAPABILITY_VISION],
    input_modalities=[C.MODALITY_TEXT, C.MODALITY_IMAGE],
    context_window=128_000,
    cost=C.CostProfile(usd_per_input_token=5e-6, usd_per_output_token=1.5e-5),
    performance=C.PerformanceProfile(latency_ms_p50=150, error_rate=0.01),
)
SMALL = _model(
    "p/small",
    capabilities=[C.CAPABILITY_CHAT],
    input_modalities=[C.MODALITY_TEXT],
    context_window=512,
    health=C.HEALTH_STATUS_HEALTHY,
)


@pytest.fixture
async def selector(
    make_stack: StackFactory,
) -> AsyncIterator[selector_pb2_grpc.SelectorServiceAsyncStub]:
    yaml = (
        "model_system:\n  backends:\n    p: {kind: openai_compat, endpoint: 'http://127.0.0.1:9/v1'}\n"
        "  selection:\n    agents:\n"
        "      support-bot: {model: p/cheap}\n"
        "      vision-bot: {policy: {weights: {performance: 1}}}\n"
    )
    config = parse_config(yaml, env={})
    stack = await make_stack(roles=("registry", "selector"), config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        for entry in (CHEAP, FAST, SMALL):
            await registry.RegisterModel(registry_pb2.RegisterModelRequest(model=entry))
        # The selector reads a live copy of the catalog: wait until it has all three.
        assert stack.view is not None
        view = stack.view
        wanted = {CHEAP.id, FAST.id, SMALL.id}
        deadline = asyncio.get_running_loop().time() + 10
        while {m.id for m in view.models()} != wanted:
            assert asyncio.get_running_loop().time() < deadline, "catalog copy never had all three"
            await asyncio.sleep(0.02)
        yield selector_pb2_grpc.SelectorServiceStub(channel)


def _chat_task(text: str, **fields: Any) -> selector_pb2.Task:
    task = selector_pb2.Task(**fields)
    task.input.chat.messages.add(role="user", content=text)
    return task


async def test_weights_decide_and_every_candidate_is_explained(
    selector: selector_pb2_grpc.SelectorServiceAsyncStub,
) -> None:
    cheapest = await selector.Select(
        selector_pb2.SelectRequest(
            task=_chat_task("hello"), weights=selector_pb2.SelectionWeights(cost=1)
        )
    )
    # p/small has no price: free beats p/cheap's fraction of a cent.
    assert cheapest.model_id == "p/small"
    assert _totals(cheapest) == pytest.approx({"p/cheap": 0.98, "p/fast": 0.0, "p/small": 1.0})
    fastest = await selector.Select(
        selector_pb2.SelectRequest(
            task=_chat_task("hello"), weights=selector_pb2.SelectionWeights(performance=1)
        )
    )
    assert fastest.model_id == "p/fast"
    # p/small's latency is unknown: the neutral 0.5, between measured fast and slow.
    assert _totals(fastest) == pytest.approx({"p/cheap": 1 / 3, "p/fast": 0.75, "p/small": 0.5})
    for reply, weights in ((cheapest, [0.0, 1.0, 0.0, 0.0]), (fastest, [1.0, 0.0, 0.0, 0.0])):
        for candidate in reply.candidates:
            # Explained: eligible, each criterion with its weight, the total their weighted sum.
            assert (candidate.eligible, candidate.rejection_reason) == (True, "")
            assert [(c.criterion, c.weight) for c in candidate.criteria] == list(
                zip(("performance", "cost", "reliability", "capabilities"), weights, strict=True)
            )
            weighted = sum(c.value * c.weight for c in candidate.criteria)
            assert candidate.total == pytest.approx(weighted)
    assert fastest.analysed_task.type == selector_pb2.TASK_TYPE_CHAT


def _totals(reply: selector_pb2.SelectResponse) -> dict[str, float]:
    return {c.model_id: c.total for c in reply.candidates}


async def test_hard_constraints_drop_candidates_with_reasons(
    selector: selector_pb2_grpc.SelectorServiceAsyncStub,
) -> None:
    image = selector_pb2.Task(required_capabilities=[C.CAPABILITY_VISION])
    image.input.image.data = b"\x89PNG"
    reply = await selector.Select(selector_pb2.SelectRequest(task=image))
    assert reply.model_id == "p/fast"
    dropped = {c.model_id: c.rejection_reason for c in reply.candidates if not c.eligible}
    assert "vision" in dropped["p/cheap"]

    long = _chat_task("x" * 8000)  # ~2000 tokens: too big for p/small
    reply = await selector.Select(
        selector_pb2.SelectRequest(
            task=long, constraints=selector_pb2.Constraints(max_latency_ms=500)
        )
    )
    assert reply.model_id == "p/fast"
    dropped = {c.model_id: c.rejection_reason for c in reply.candidates if not c.eligible}
    assert "context window 512" in dropped["p/small"]
    assert "latency" in dropped["p/cheap"]


async def test_nothing_fits_is_failed_precondition_naming_why(
    selector: selector_pb2_grpc.SelectorServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await selector.Select(
            selector_pb2.SelectRequest(
                task=_chat_task("hi"),
                # p/small has no latency measured yet, which passes a latency limit.
                constraints=selector_pb2.Constraints(
                    max_latency_ms=10, excluded_models=["p/small"]
                ),
            )
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no model meets the constraints" in (info.value.details() or "")


async def test_agents_pinned_or_with_their_own_policy(
    selector: selector_pb2_grpc.SelectorServiceAsyncStub,
) -> None:
    pinned = await selector.Select(
        selector_pb2.SelectRequest(
            task=_chat_task("hi", agent_id="support-bot"),
            weights=selector_pb2.SelectionWeights(performance=1),
        )
    )
    assert pinned.model_id == "p/cheap"
    policy = await selector.Select(
        selector_pb2.SelectRequest(task=_chat_task("hi", agent_id="vision-bot"))
    )
    assert policy.model_id == "p/fast"


async def test_bad_weights_and_unknown_candidates(
    selector: selector_pb2_grpc.SelectorServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as negative:
        await selector.Select(
            selector_pb2.SelectRequest(
                task=_chat_task("hi"), weights=selector_pb2.SelectionWeights(cost=-1)
            )
        )
    assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "weights.cost" in (negative.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await selector.Select(
            selector_pb2.SelectRequest(task=_chat_task("hi"), candidates=["p/nope"])
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    only = await selector.Select(
        selector_pb2.SelectRequest(task=_chat_task("hi"), candidates=["p/small"])
    )
    assert only.model_id == "p/small"


async def test_gateway_chooses_when_no_model_is_named_and_falls_back(
    make_stack: StackFactory,
) -> None:
    broken = ScriptedEngine(
        ("s/quick",), fail_with=BackendUnavailable("upstream 'quick' is down"), pieces=("x",)
    )
    good = ScriptedEngine(("s/plodding",), pieces=("second", " answer"))
    stack = await make_stack(roles=("registry", "gateway"), engines=[broken, good])
    assert stack.view is not None
    latencies = {"s/quick": 10.0, "s/plodding": 500.0}
    async with grpc.aio.insecure_channel(stack.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        # Equal but for latency: only it makes s/quick the favourite (on a tie the lower
        # id, s/plodding, would win).
        for model_id, latency in latencies.items():
            entry = await registry.GetModel(registry_pb2.GetModelRequest(id=model_id))
            entry.performance.latency_ms_p50 = latency
            await registry.RegisterModel(
                registry_pb2.RegisterModelRequest(model=entry, upsert=True)
            )
        view, deadline = stack.view, asyncio.get_running_loop().time() + 10
        # Until the gateway's live catalog copy has both updates.
        while (seen := {m: view.get(m).performance.latency_ms_p50 for m in latencies}) != latencies:
            assert asyncio.get_running_loop().time() < deadline, f"catalog copy has {seen}"
            await asyncio.sleep(0.01)
        request = gateway_pb2.GenerateRequest()
        request.input.text = "hello"
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
    assert (reply.model_id, reply.text) == ("s/plodding", "second answer")
    assert (len(broken.calls), len(good.calls)) == (1, 1)  # the favourite first, then its runner-up
