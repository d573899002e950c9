"""`modelyard models` and `generate` call a server through `modelyard.remote`, not the client."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

import modelyard
from modelyard import cli


def test_no_module_of_modelyard_imports_the_client() -> None:
    importers = []
    for path in Path(modelyard.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] == "modelyard_client" for n in names):
                importers.append(path.name)
    assert importers == []


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
