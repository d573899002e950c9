"""The configuration decides which engines run and what the catalog says about their models."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc
import pytest
from conftest import GEMMA_ID, StackFactory

from modelyard.assembly import Settings
from modelyard.assembly.kinds import KINDS, BackendKind, provider_endpoint
from modelyard.assembly.plan import engines_for, plan_backends
from modelyard.assembly.settings import resolve_settings
from modelyard.backends.admission import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_QUEUE
from modelyard.backends.loaded_models import MIB
from modelyard.backends.local.llama_engine import LlamaEngine
from modelyard.config import LocalBackend, OllamaBackend, parse_config
from modelyard_client.errors import ConfigError, InvalidRequest
from modelyard_client.v1 import registry_pb2, registry_pb2_grpc

YAML = """
model_system:
  backends:
    local:
      n_ctx: 1024
      model_profiles:
        gemma-3-270m-q4_k_m:
          requests_per_minute: 30
          tokens_per_minute: 20000
          usd_per_1m_input_tokens: 0.5
          latency_p50_ms: 40
    openai: {api_key: "${OPENAI_API_KEY}", models: ["gpt-4o-mini"]}
    together: {kind: openai_compat, endpoint: "http://127.0.0.1:9/v1"}
    anthropic: {api_key: "${ANTHROPIC_API_KEY}"}
"""

ENV = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant"}


async def test_plan_maps_each_backend_kind_to_its_engine() -> None:
    settings = Settings(config=parse_config(YAML, env=ENV), discover_ollama=False)
    by_name = {p.name: p for p in await plan_backends(settings)}
    local = by_name["local"].backend
    assert isinstance(local, LocalBackend) and local.n_ctx == 1024
    openai = provider_endpoint("openai", by_name["openai"].backend)
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.models == ("gpt-4o-mini",)
    assert openai.api_key == "sk-test"
    together = provider_endpoint("together", by_name["together"].backend)
    assert together.base_url == "http://127.0.0.1:9/v1"
    assert [p.not_served for p in by_name.values() if p.not_served] == []
    assert by_name["anthropic"].kind is KINDS["anthropic"]  # the Messages API engine's


async def test_model_profiles_reach_the_catalog(make_stack: StackFactory, models_dir: Path) -> None:
    config = parse_config(
        "model_system:\n  backends:\n    local:\n      model_profiles:\n"
        "        gemma-3-270m-q4_k_m: {requests_per_minute: 30, usd_per_1m_output_tokens: 2,"
        " latency_p50_ms: 40, context_window: 1024}\n",
        env={},
    )
    stack = await make_stack(
        roles=("registry", "backend-local"), models_dir=models_dir, config=config
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        entry = await stub.GetModel(registry_pb2.GetModelRequest(id=GEMMA_ID))
    assert entry.limits.requests_per_minute == 30
    assert entry.cost.usd_per_output_token == 2e-6
    assert entry.performance.latency_ms_p50 == 40
    assert entry.context_window == 1024


async def test_the_local_lifecycle_keys_reach_the_engine_and_preload_announces_its_cold_start(
    make_stack: StackFactory, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(
        "model_system:\n  hot_swap:\n    memory_budget_mb: 700\n    idle_timeout_ms: 60000\n"
        f"    preload: [{GEMMA_ID}, ollama/gemma3]\n",
        env={},
    )
    with caplog.at_level(logging.INFO, "modelyard.backends.local.llama_engine"):
        stack = await make_stack(
            roles=("registry", "backend-local"), models_dir=models_dir, config=config
        )
    assert stack.host is not None
    (engine,) = stack.host.engines
    assert isinstance(engine, LlamaEngine)
    assert (engine._models.budget_bytes, engine._models._idle_timeout_s) == (700 * MIB, 60.0)
    assert engine.loaded_models() == [GEMMA_ID]
    assert "local: preload leaves ollama/gemma3 to other backends" in caplog.messages
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        entry = await stub.GetModel(registry_pb2.GetModelRequest(id=GEMMA_ID))
    measured = engine._models.cold_start_ms(GEMMA_ID)
    assert measured is not None and measured > 0
    assert entry.performance.cold_start_ms == measured


async def test_without_a_memory_budget_the_engine_takes_three_quarters_of_the_machine(
    make_stack: StackFactory, models_dir: Path
) -> None:
    stack = await make_stack(roles=("registry", "backend-local"), models_dir=models_dir)
    assert stack.host is not None
    (engine,) = stack.host.engines
    assert isinstance(engine, LlamaEngine)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert engine._models.budget_bytes == memory * 3 // 4
    assert engine.loaded_models() == []


async def test_a_backend_with_no_engine_is_reported_once_per_start(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kind whose table entry has no engine (every built-in kind has one by now).
    monkeypatch.setitem(KINDS, "anthropic", BackendKind("backend-openai-compat"))
    config = parse_config(
        "model_system:\n  backends:\n    anthropic: {api_key: '${ANTHROPIC_API_KEY}'}\n",
        env={"ANTHROPIC_API_KEY": "sk-ant"},
    )
    with caplog.at_level(logging.WARNING, logger="modelyard.assembly.plan"):
        await make_stack(config=config)
    assert [r.getMessage() for r in caplog.records if r.name == "modelyard.assembly.plan"] == [
        "configured backend anthropic (kind anthropic): no engine for this kind yet"
    ]


def test_each_openai_wire_backend_takes_its_own_concurrency_and_queue() -> None:
    config = parse_config(
        """
model_system:
  backends:
    openai: {api_key: "${OPENAI_API_KEY}", max_concurrency: 64, max_queue: 0}
    together: {kind: openai_compat, endpoint: "http://127.0.0.1:9/v1", max_queue: 5}
    ollama: {max_concurrency: 2}
""",
        env=ENV,
    )
    backends = config.backends
    openai = provider_endpoint("openai", backends["openai"])
    assert (openai.max_concurrency, openai.max_queue) == (64, 0)
    together = provider_endpoint("together", backends["together"])
    assert (together.max_concurrency, together.max_queue) == (DEFAULT_MAX_CONCURRENCY, 5)
    ollama = backends["ollama"]
    assert isinstance(ollama, OllamaBackend)
    assert (ollama.max_concurrency, ollama.max_queue) == (2, DEFAULT_MAX_QUEUE)
    assert (DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_QUEUE, config.gateway.max_in_flight) == (
        256,
        512,
        2048,
    )


async def test_with_gateway_workers_each_process_holds_its_share_of_a_backend_s_bounds() -> None:
    config = parse_config(
        """
model_system:
  backends:
    openai: {api_key: "${OPENAI_API_KEY}", max_concurrency: 9, max_queue: 0}
    together: {kind: openai_compat, endpoint: "http://127.0.0.1:9/v1", max_queue: 5}
    anthropic: {api_key: "${ANTHROPIC_API_KEY}", max_concurrency: 1, max_queue: 3}
""",
        env=ENV,
    )

    async def bounds(processes: int) -> dict[str, tuple[int, int]]:
        settings = Settings(config=config, discover_ollama=False, gateway_processes=processes)
        engines = engines_for(await plan_backends(settings), ("backend-openai-compat",))
        found = {}
        for engine in engines:
            admission = engine.admission  # type: ignore[attr-defined]
            found[engine.backend] = (admission.max_concurrency, admission.max_queue)
        return found

    # Three processes call the providers: together no more than each bound, at least
    # one call each, no queue made where none was configured.
    assert await bounds(3) == {"openai": (3, 0), "together": (85, 1), "anthropic": (1, 1)}
    assert await bounds(1) == {"openai": (9, 0), "together": (256, 5), "anthropic": (1, 3)}


def test_a_gateway_process_count_that_is_no_count_is_refused_by_name() -> None:
    for bad in ("0", "two", "-1"):
        with pytest.raises(InvalidRequest, match="MODELYARD_GATEWAY_PROCESSES"):
            resolve_settings({}, {"MODELYARD_GATEWAY_PROCESSES": bad})
    assert resolve_settings({}, {"MODELYARD_GATEWAY_PROCESSES": "4"}).gateway_processes == 4


async def test_the_local_slot_and_queue_keys_reach_the_engine(
    make_stack: StackFactory, models_dir: Path
) -> None:
    config = parse_config(
        "model_system:\n  backends:\n    local: {parallel_slots: 2, max_queue: 3}\n", env={}
    )
    stack = await make_stack(
        roles=("registry", "backend-local"), models_dir=models_dir, config=config
    )
    assert stack.host is not None
    (engine,) = stack.host.engines
    assert isinstance(engine, LlamaEngine)
    admission = engine._admissions[GEMMA_ID]
    assert (admission.max_concurrency, admission.max_queue) == (2, 3)
    assert admission.limits == "backends.local.parallel_slots=2, max_queue=3"
    with pytest.raises(
        ConfigError, match=r"backends\.local\.parallel_slots: must be between 1 and 64"
    ):
        parse_config("model_system:\n  backends:\n    local: {parallel_slots: 0}\n", env={})
