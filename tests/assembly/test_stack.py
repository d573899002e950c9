"""The assembled stack's health: one engine that cannot serve does not take the others down."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.config import parse_config

SERVING = health_pb2.HealthCheckResponse.SERVING


async def _backend_health(stack: Stack) -> int:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="modelyard.v1.BackendService")
        )
    return int(reply.status)


@pytest.mark.skipif(sys.platform == "darwin", reason="CoreML serves on macOS")
async def test_a_backend_service_with_one_usable_engine_keeps_serving(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    config = parse_config(
        f"model_system:\n  backends:\n    coreml: {{models_dir: '{tmp_path}'}}\n", env={}
    )
    stack = await make_stack(
        roles=("registry", "backend-coreml"), config=config, engines=[ScriptedEngine()]
    )
    assert await _backend_health(stack) == SERVING
