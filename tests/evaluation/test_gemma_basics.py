"""The shipped suite on the real local Gemma 3 270M (llama.cpp): every case runs, each
score is what its scorer says of the answer, and the mean is stored as the quality."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from conftest import GEMMA_ID, StackFactory

from modelyard.evaluation.scorers import score
from modelyard.evaluation.suites import resolve
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, registry_pb2, registry_pb2_grpc


async def test_the_basics_suite_runs_on_gemma_and_stores_its_quality(
    make_stack: StackFactory, models_dir: Path
) -> None:
    stack = await make_stack(roles=("registry", "gateway", "backend-local"), models_dir=models_dir)
    request = gateway_pb2.EvaluateModelRequest(models=[GEMMA_ID], suite="basics", concurrency=1)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        answer = await gateway_pb2_grpc.GatewayServiceStub(channel).EvaluateModel(
            request, timeout=600
        )
        (entry,) = [
            m
            for m in (
                await registry_pb2_grpc.RegistryServiceStub(channel).ListModels(
                    registry_pb2.ListModelsRequest()
                )
            ).models
            if m.id == GEMMA_ID
        ]
    (gemma,) = answer.models
    suite = resolve(request)
    assert [c.case_id for c in gemma.cases] == [c.id for c in suite.cases]
    for case, result in zip(suite.cases, gemma.cases, strict=True):
        assert not result.error, result
        assert result.latency_ms > 0
        # What the scorer makes of the answer the model gave (the answer may be cut at
        # 1,024 characters in the result; these cases' answers are a few tokens).
        assert result.score == score(case, result.answer, result.latency_ms).value, result
    assert gemma.cases[-1].score == 1.0  # it answers within the latency case's budget
    assert gemma.score == pytest.approx(sum(c.score for c in gemma.cases) / len(gemma.cases))
    assert gemma.stored
    assert entry.quality.suite == "basics" and entry.quality.cases == 6
    assert entry.quality.score == pytest.approx(gemma.score)
