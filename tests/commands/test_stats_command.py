"""`modelyard stats`: a running gateway's live figures as a table, as JSON, and redrawn
with --watch until Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly.stack import Stack
from modelyard.cli import main
from modelyard.commands.stats import refreshes
from modelyard_client.errors import ProviderProtocolError
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc


def _request(model: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = 4
    return request


async def _served(make_stack: StackFactory) -> Stack:
    """A stack whose gateway answered scripted/echo 3 times and failed scripted/bad once."""
    engines = [
        ScriptedEngine(("scripted/echo",)),
        ScriptedEngine(("scripted/bad",), fail_with=ProviderProtocolError("garbled answer")),
    ]
    stack = await make_stack(roles=("registry", "gateway"), engines=engines)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for _ in range(3):
            await gateway.Generate(_request("scripted/echo"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError):
            await gateway.Generate(_request("scripted/bad"), timeout=10)
    return stack


async def test_the_table_has_a_row_per_model_and_deployment(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _served(make_stack)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["stats", "--address", stack.address]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("window: the last ")
    assert lines[1].split() == [
        "model",
        "provider",
        "requests",
        "errors",
        "error_rate",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "ttft_p50_ms",
        "ttft_p95_ms",
        "tokens/s",
        "req/s",
        "usd/request",
    ]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == [
        "scripted/bad",
        f"@{stack.address}",
        "scripted/echo",
        f"@{stack.address}",
    ]
    assert rows[0][1:6] == ["scripted", "1", "1", "100.0", "%"]
    assert rows[2][1:6] == ["scripted", "3", "0", "0.0", "%"]
    assert rows[3][1:3] == ["3", "0"]  # the deployment's row: no provider column
    assert float(rows[2][6]) > 0  # p50 ms

    args = ["stats", "--address", stack.address, "--providers"]
    assert await asyncio.to_thread(main, args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["provider", "models", "requests", "errors"]
    assert lines[2].split()[:4] == ["scripted", "2", "4", "1"]


async def test_json_prints_the_models_as_the_proto_has_them(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _served(make_stack)
    capsys.readouterr()
    args = ["stats", "--address", stack.address, "--model", "scripted/echo", "--json"]
    assert await asyncio.to_thread(main, args) == 0
    [model] = json.loads(capsys.readouterr().out)
    assert model["model_id"] == "scripted/echo" and model["provider"] == "scripted"
    assert model["figures"]["requests"] == "3"  # uint64: a string in proto JSON
    assert model["figures"]["errors"] == "0" and model["figures"]["latency_ms_p50"] > 0
    assert [d["endpoint"] for d in model["deployments"]] == [stack.address]

    args = ["stats", "--address", stack.address, "--model", "scripted/missing"]
    assert await asyncio.to_thread(main, args) == 1
    assert "model 'scripted/missing' is not in the catalog" in capsys.readouterr().err


async def test_watch_redraws_until_ctrl_c(make_stack: StackFactory) -> None:
    stack = await _served(make_stack)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "modelyard.cli", "stats", "--address", stack.address, "--watch", "0.2"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readuntil(b"scripted/echo"), 30)
        second = await asyncio.wait_for(proc.stdout.readuntil(b"scripted/echo"), 30)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert b"modelyard stats, " in first and b"every 0.2s (Ctrl-C to stop)" in first
    assert b"modelyard stats, " in second  # redrawn: a second heading and table
    assert b"\x1b[2J" not in first + second  # not a terminal: nothing cleared
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err


def test_refreshes_render_each_interval_the_given_number_of_times() -> None:
    calls: list[int] = []

    def render() -> str:
        calls.append(len(calls))
        return f"table {len(calls)}"

    assert list(refreshes(render, 0.01, rounds=3)) == ["table 1", "table 2", "table 3"]


def test_mistaken_flags_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="--model and --providers do not go together"):
        main(["stats", "--address", "127.0.0.1:1", "--model", "a/b", "--providers"])
    with pytest.raises(SystemExit):
        main(["stats", "--watch", "0"])
    assert "'0' is not a number of seconds above 0" in capsys.readouterr().err
