"""EvaluateModel through a real stack: each case on each model, scores stored as quality,
the selector's choice turned by them; refusals before any call; the CLI."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard import cli
from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

POOR, GOOD, JUDGE = "scripted/a-poor", "scripted/b-good", "scripted/judge"
Q = "Capital of France?"
SUITE = gateway_pb2.EvaluationSuite(
    name="capitals",
    judge_model=JUDGE,
    cases=[
        gateway_pb2.EvaluationCase(id="paris", prompt=Q, scorer="contains", expected="paris"),
        gateway_pb2.EvaluationCase(
            id="pattern", prompt=Q, scorer="regex", expected="^Pa", weight=3
        ),
        gateway_pb2.EvaluationCase(id="graded", prompt=Q, scorer="judge", expected="names Paris"),
    ],
)


async def _stack(make_stack: StackFactory) -> Stack:
    engines = [
        ScriptedEngine((POOR,), pieces=("Lon", "don")),
        ScriptedEngine((GOOD,), pieces=("Pa", "ris")),
        ScriptedEngine((JUDGE,), pieces=("yes",)),
    ]
    # Only the capabilities criterion, which quality feeds: the live figures of these
    # equally quick models cannot tip the choice either way.
    config = parse_config("model_system:\n  selection: {weights: {capabilities: 1}}\n")
    return await make_stack(engines, config=config, roles=("registry", "selector", "gateway"))


async def _until(check: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)


def _unnamed() -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest()  # no model: the selector chooses
    request.input.text = "Capital of France?"
    request.params.max_tokens = 8
    return request


async def test_scores_are_stored_as_quality_and_turn_the_selectors_choice(
    make_stack: StackFactory,
) -> None:
    stack = await _stack(make_stack)
    assert stack.view is not None
    view = stack.view
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        before = await gateway.Generate(_unnamed(), timeout=10)
        assert before.model_id == POOR  # a tie, and the id decides
        request = gateway_pb2.EvaluateModelRequest(models=[POOR, GOOD], inline=SUITE)
        answer = await gateway.EvaluateModel(request, timeout=30)
        assert answer.suite == "capitals"
        poor, good = answer.models
        assert [(c.case_id, c.score) for c in poor.cases] == [
            ("paris", 0.0),
            ("pattern", 0.0),
            ("graded", 1.0),  # the scripted judge says yes to anything
        ]
        assert poor.cases[0].answer == "London" and "lacks 'paris'" in poor.cases[0].detail
        assert poor.score == pytest.approx(1 / 5)  # weights 1, 3, 1
        assert [c.score for c in good.cases] == [1.0, 1.0, 1.0] and good.score == 1.0
        assert poor.stored and good.stored
        await _until(lambda: view.get(GOOD).quality.score == 1.0)
        stored = view.get(POOR).quality
        assert stored.score == pytest.approx(0.2)
        assert (stored.suite, stored.cases) == ("capitals", 3)
        assert stored.evaluated_at.seconds > 0
        after = await gateway.Generate(_unnamed(), timeout=10)
    assert after.model_id == GOOD


async def test_a_dry_run_stores_nothing_and_bad_requests_call_no_model(
    make_stack: StackFactory,
) -> None:
    stack = await _stack(make_stack)
    assert stack.view is not None
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        dry = gateway_pb2.EvaluateModelRequest(models=[GOOD], inline=SUITE, dry_run=True)
        answer = await gateway.EvaluateModel(dry, timeout=30)
        assert answer.models[0].score == 1.0 and not answer.models[0].stored
        bad_case = gateway_pb2.EvaluateModelRequest(models=[GOOD])
        bad_case.inline.CopyFrom(SUITE)
        bad_case.inline.cases[1].expected = "(unclosed"
        unknown = gateway_pb2.EvaluateModelRequest(models=["nope/missing"], inline=SUITE)
        too_many = gateway_pb2.EvaluateModelRequest(models=[GOOD] * 17, suite="basics")
        for request, code in (
            (bad_case, grpc.StatusCode.INVALID_ARGUMENT),
            (unknown, grpc.StatusCode.NOT_FOUND),
            (too_many, grpc.StatusCode.INVALID_ARGUMENT),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gateway.EvaluateModel(request, timeout=10)
            assert refused.value.code() == code
    assert not stack.view.get(GOOD).HasField("quality")


async def test_the_cli_runs_a_suite_file_and_prints_the_scores(
    make_stack: StackFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack)
    suite = tmp_path / "capitals.yaml"
    suite.write_text(
        "name: capitals\ncases:\n"
        "  - {id: paris, prompt: 'Capital of France?', scorer: contains, expected: paris}\n"
    )
    argv = ["eval", str(suite), POOR, GOOD, "--dry-run", "--address", stack.address]
    assert await asyncio.to_thread(cli.main, argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "suite capitals"
    assert f"{POOR}: 0.000 (1 cases, not stored)" in out
    assert f"{GOOD}: 1.000 (1 cases, not stored)" in out
    assert await asyncio.to_thread(cli.main, [*argv, "--json"]) == 0
    (document,) = json.loads(capsys.readouterr().out)
    assert [m["model_id"] for m in document["models"]] == [POOR, GOOD]
