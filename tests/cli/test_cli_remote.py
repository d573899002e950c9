"""`modelyard models` and `generate` call a server through `modelyard_client.remote`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard import cli


async def test_models_lists_the_catalog(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await make_stack(roles=("registry", "gateway"), engines=[ScriptedEngine()])
    assert await asyncio.to_thread(cli.main, ["models", "--address", stack.address]) == 0
    assert capsys.readouterr().out == "scripted/echo\tscripted\tctx=4096\thealthy\n"


async def test_generate_streams_the_answer(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await make_stack(roles=("registry", "gateway"), engines=[ScriptedEngine()])
    argv = ["generate", "scripted/echo", "hi", "--address", stack.address]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert capsys.readouterr().out == "hello world\n"


async def test_generate_reports_the_server_error_with_its_code(
    make_stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await make_stack(roles=("registry", "gateway"), engines=[ScriptedEngine()])
    argv = ["generate", "nope/missing", "hi", "--address", stack.address]
    assert await asyncio.to_thread(cli.main, argv) == 1
    err = capsys.readouterr().err
    assert err == "modelyard: model 'nope/missing' is not in the catalog [NOT_FOUND]\n"
