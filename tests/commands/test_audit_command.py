"""`modelyard audit`: a running server's audit log, filtered, one line per call."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.cli import main
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc


def _request(model: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = 4
    return request


async def test_it_prints_the_calls_the_filters_select_newest_first(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await make_stack(roles=("registry", "gateway"), engines=[ScriptedEngine()])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        await stub.Generate(_request("scripted/echo"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Generate(_request("scripted/missing"), timeout=10)
    capsys.readouterr()
    args = ["audit", "--address", stack.address, "--rpc", "Generate", "--since", "1h"]
    assert await asyncio.to_thread(main, args) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [line[1:5] for line in lines] == [
        ["open", "GatewayService/Generate", "scripted/missing", "-"],
        ["open", "GatewayService/Generate", "scripted/echo", "scripted/echo"],
    ]
    assert [line[8] for line in lines] == ["NOT_FOUND/MODEL_NOT_FOUND", "OK"]
    assert lines[1][5:7] == ["in=3", "out=3"]

    assert await asyncio.to_thread(main, [*args, "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1] == "(more than 1; narrow the filters or raise --limit)"

    assert await asyncio.to_thread(main, [*args, "--key", "nobody"]) == 0
    assert capsys.readouterr().out == ""


def test_a_bad_since_is_named() -> None:
    with pytest.raises(SystemExit, match="--since: 'yesterday' is not a duration"):
        main(["audit", "--address", "127.0.0.1:1", "--since", "yesterday"])
