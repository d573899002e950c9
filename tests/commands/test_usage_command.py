"""`modelyard usage`: a running server's usage as a table (a line per group, the total
last) or one JSON object, filtered and grouped as asked; bad times are named."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.cli import main
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

ECHO, OTHER = "scripted/echo", "scripted/other"


class PricedEngine(ScriptedEngine):
    def models(self) -> list[common_pb2.ModelEntry]:
        entries = super().models()
        for entry in entries:
            entry.cost.usd_per_output_token = 0.25
        return entries


def _request(model: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = 4
    return request


async def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def test_it_prints_a_table_per_model_and_per_key_and_json(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await make_stack(roles=("registry", "gateway"), engines=[PricedEngine((ECHO, OTHER))])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for model in (ECHO, ECHO, OTHER):
            await stub.Generate(_request(model), timeout=10)
        async for _ in stub.GenerateStream(_request(ECHO), timeout=10):
            pass
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Generate(_request("scripted/missing"), timeout=10)
    address = ("--address", stack.address)

    status, out, _ = await _run(capsys, "usage", *address)
    assert status == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == [
        "model",
        "requests",
        "errors",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "p50_ms",
        "p95_ms",
        "ttft_ms",
        "attempts",
    ]
    assert [row[:5] for row in rows[1:]] == [
        [ECHO, "3", "0", "9", "9"],
        ["scripted/missing", "1", "1", "0", "0"],
        [OTHER, "1", "0", "3", "3"],
        ["total", "5", "1", "12", "12"],
    ]
    assert [row[5] for row in rows[1:]] == ["2.250000", "0.000000", "0.750000", "3.000000"]
    assert [row[9] for row in rows[1:]] == ["3", "0", "1", "4"]
    assert all(float(row[8]) > 0 for row in (rows[1], rows[3], rows[4]))  # a first piece came
    assert float(rows[2][8]) == 0  # not found: none

    status, out, _ = await _run(capsys, "usage", *address, "--by", "key", "--model", ECHO)
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["key", "requests"],
        ["open", "3"],
        ["total", "3"],
    ]

    status, out, _ = await _run(capsys, "usage", *address, "--by", "hour", "--json")
    document = json.loads(out)
    assert set(document) == {"groups", "total", "more"} and document["more"] is False
    hour = datetime.now(UTC).strftime("%Y-%m-%dT%H:00Z")
    assert [g["group"] for g in document["groups"]] in ([hour], [hour, hour])  # an hour's turn
    assert int(document["total"]["requests"]) == 5
    assert float(document["total"]["cost_usd"]) == pytest.approx(3.0)
    assert set(document["total"]) >= {"latency_p50_ms", "latency_p95_ms", "mean_ttft_ms"}

    status, out, _ = await _run(capsys, "usage", *address, "--since", "2000-01-01", "--until", "1h")
    assert status == 0 and out.splitlines()[-1].split()[:2] == ["total", "0"]

    status, _, err = await _run(
        capsys, "usage", *address, "--since", "2026-12-02T10:00Z", "--until", "2026-12-02"
    )
    assert status == 1 and "until must be after since [INVALID_ARGUMENT]" in err


def test_a_time_that_is_neither_iso_nor_a_duration_is_named() -> None:
    with pytest.raises(SystemExit, match="--until: 'yesterday' is neither an ISO 8601 time"):
        main(["usage", "--address", "127.0.0.1:1", "--until", "yesterday"])
