"""A real swap between two local GGUF models while a long generation runs on the first.

The same Gemma 3 270M file is served under two ids (two names in one models
directory: two llama.cpp instances, each with its own decode slots). The generation
finishes, with a finish reason, on the model it began on, whether the
backend has room for both models, or for one and the swap drains first, or
for one and the swap is refused.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory

from modelyard.config import ModelyardConfig, parse_config
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    hotswap_pb2_grpc,
)

pytestmark = pytest.mark.slow  # the real llama.cpp engine and model weights

A, B = "local/gemma-a", "local/gemma-b"
Status = hotswap_pb2.SwapStatus


def _request(max_tokens: int) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="chat-default")
    request.input.text = "Count from one to five hundred, in words, separated by commas: one, two,"
    request.params.max_tokens = max_tokens
    request.params.temperature = 0.0
    return request


def _config(max_loaded: int, when_short: str) -> ModelyardConfig:
    return parse_config(
        f"""
model_system:
  hot_swap: {{grace_period_ms: 100, validation_timeout_ms: 120000,
              when_budget_short: {when_short}, routes: {{chat-default: {A}}}}}
  backends: {{local: {{max_loaded: {max_loaded}}}}}
  # A cold load and its first token took over the default 30 s on this two-core
  # machine under a full suite beside other work: the drill is the swap, not the speed.
  gateway: {{timeouts: {{first_token_timeout_ms: 120000}}}}
"""
    )


@pytest.mark.parametrize(
    ("max_loaded", "when_short"),
    [(2, "refuse"), (1, "drain_first"), (1, "refuse")],
    ids=["room-for-both", "room-for-one-drain-first", "room-for-one-refused"],
)
async def test_a_swap_between_local_models_lets_the_running_generation_finish(
    make_stack: StackFactory,
    gemma_path: Path,
    tmp_path: Path,
    max_loaded: int,
    when_short: str,
) -> None:
    """Room for both: the target loads beside the old model and the route moves while the
    generation still streams. Room for one, drain first: the route moves at once, and the
    target's load waits for the old model's generation to end (a model with a call
    running is never unloaded) before it loads and is validated. Room for one, refused:
    the swap fails before the switch, naming the budget; the route stays. In every case
    the running generation finishes whole on the model it began on."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("gemma-a", "gemma-b"):
        (models / f"{name}.gguf").symlink_to(gemma_path)
    stack = await make_stack(
        roles=("registry", "hotswap", "gateway", "backend-local"),
        models_dir=models,
        config=_config(max_loaded, when_short),
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        running = gateway.GenerateStream(_request(max_tokens=300), timeout=300)
        arrivals: list[tuple[float, gateway_pb2.GenerateChunk]] = []
        streaming = asyncio.Event()

        async def read_all() -> None:
            async for chunk in running:
                arrivals.append((time.monotonic(), chunk))
                streaming.set()

        reader = asyncio.create_task(read_all())
        await running.initial_metadata()  # the call has reached the gateway
        await streaming.wait()  # the generation runs on A: A is loaded and busy

        swap = await hotswap.Swap(
            hotswap_pb2.SwapRequest(alias="chat-default", target_model_id=B), timeout=5
        )
        switched_at = None
        async for status in hotswap.WatchSwap(
            hotswap_pb2.GetSwapRequest(swap_id=swap.swap_id), timeout=300
        ):
            if switched_at is None and (
                status.phase in (Status.PHASE_SWITCHED, Status.PHASE_DRAINING)
                or status.switched_first
            ):
                switched_at = time.monotonic()  # no earlier than the switch
            final = status
        await asyncio.wait_for(reader, timeout=300)
        after = await gateway.Generate(_request(max_tokens=4), timeout=120)

    last = arrivals[-1][1]
    assert last.finish_reason in (common_pb2.FINISH_REASON_LENGTH, common_pb2.FINISH_REASON_STOP)
    assert last.usage.output_tokens > 0
    assert {c.model_id for _, c in arrivals if c.model_id} == {A}
    if max_loaded == 1 and when_short == "refuse":
        assert final.phase == Status.PHASE_FAILED
        assert final.error.startswith(
            "preparing: local/gemma-b (450 MiB) cannot load beside local/gemma-a (450 MiB): "
            "this backend holds at most 1 loaded model(s) (max_loaded)"
        ), final.error
        assert switched_at is None
        assert after.model_id == A
        return
    assert final.phase == Status.PHASE_DONE, final.error
    assert final.switched_first == (max_loaded == 1)
    assert final.warm_ms > 0  # B loaded and answered: its cold start
    assert switched_at is not None
    # The generation still streamed once the route had moved: in both cases the
    # switch came before its end (drain first switches at once, then waits to load).
    assert any(at > switched_at for at, _ in arrivals)
    assert after.model_id == B
