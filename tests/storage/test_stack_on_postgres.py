"""A stack on PostgreSQL (`Settings.database_url`) keeps its catalog, routes and
conversations across a restart, in the database and not in its data directory.

A real in-process stack (registry, hot-swap, gateway) with a scripted engine,
stopped and started again on a new, empty data directory against the same
PostgreSQL database.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Settings, Stack, resolve_settings, start_stack
from modelyard.cli import STARTUP_MISTAKE
from modelyard.config import ConfigError, default_config, load_config
from modelyard.config.schema import HotSwapConfig
from modelyard.storage import DatabaseUrl
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    hotswap_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

Status = hotswap_pb2.SwapStatus
QUIET = ("--listen", "127.0.0.1:0", "--log-level", "ERROR", "--metrics-listen", "off")


async def _start(data_dir: Path, url: DatabaseUrl, engine: ScriptedEngine, port: int) -> Stack:
    """The stack on `port` (the same both times: the catalog keeps its deployments' address)."""
    config = dataclasses.replace(
        default_config({}),
        hot_swap=HotSwapConfig(routes={"chat": "scripted/echo"}, grace_period_ms=1),
    )
    settings = Settings(
        config=config,
        listen=f"127.0.0.1:{port}",
        roles=("registry", "hotswap", "gateway"),
        data_dir=data_dir,
        database_url=url,
        assemble_default_model=False,
        discover_ollama=False,
        discovery=False,
    )
    return await start_stack(settings, engines=[engine])


def _turn(text: str, conversation: str = "c1") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="chat", conversation_id=conversation)
    request.input.chat.messages.add(role="user", content=text)
    request.params.max_tokens = 8
    return request


async def test_catalog_routes_and_a_conversation_survive_a_restart_on_postgresql(
    tmp_path: Path, postgres_url: DatabaseUrl
) -> None:
    engine = ScriptedEngine(("scripted/echo", "scripted/other"), pieces=("ok",))
    kept = common_pb2.ModelEntry(id="custom/kept", provider="custom", context_window=1234)
    kept.deployments.add(backend="custom", endpoint="127.0.0.1:1")
    port = free_port()
    stack = await _start(tmp_path / "first", postgres_url, engine, port)
    try:
        async with grpc.aio.insecure_channel(stack.address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            await registry.RegisterModel(registry_pb2.RegisterModelRequest(model=kept), timeout=5)
            hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
            swap = await hotswap.Swap(
                hotswap_pb2.SwapRequest(alias="chat", target_model_id="scripted/other"),
                timeout=5,
            )
            statuses = [
                s
                async for s in hotswap.WatchSwap(
                    hotswap_pb2.GetSwapRequest(swap_id=swap.swap_id), timeout=30
                )
            ]
            assert statuses[-1].phase == Status.PHASE_DONE, statuses[-1].error
            gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
            while (await gateway.Generate(_turn("x", "probe"), timeout=5)).model_id != (
                "scripted/other"
            ):
                pass  # until the gateway's copy of the routes has the switch
            first = await gateway.Generate(_turn("my name is Ada"), timeout=5)
    finally:
        await stack.stop(0)
    assert (first.model_id, first.history_turns) == ("scripted/other", 0)

    stack = await _start(tmp_path / "second", postgres_url, engine, port)  # a new data dir
    try:
        async with grpc.aio.insecure_channel(stack.address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            got = await registry.GetModel(registry_pb2.GetModelRequest(id="custom/kept"), timeout=5)
            route = await hotswap_pb2_grpc.HotSwapServiceStub(channel).GetRoute(
                hotswap_pb2.GetRouteRequest(alias="chat"), timeout=5
            )
            gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
            again = await gateway.Generate(_turn("what is my name?"), timeout=5)
    finally:
        await stack.stop(0)
    assert got.context_window == 1234
    assert route.model_id == "scripted/other"  # the swap's switch, not the configuration's seed
    assert (again.model_id, again.history_turns) == ("scripted/other", 1)
    assert [(m.role, m.content) for m in engine.calls[-1][1].chat.messages] == [
        ("user", "my name is Ada"),
        ("assistant", "ok"),
        ("user", "what is my name?"),
    ]
    for data_dir in (tmp_path / "first", tmp_path / "second"):
        left = {p.name for p in data_dir.glob("*.sqlite3")} if data_dir.exists() else set()
        assert not left & {"registry.sqlite3", "hotswap.sqlite3", "conversations.sqlite3"}


def test_the_url_comes_from_the_variable_before_the_file_and_a_bad_one_stops_the_start(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model_system:\n  server: {database_url: 'postgresql://f@db:5432/file'}\n")
    env = {"MODELYARD_CONFIG": str(config), "MODELYARD_DATA_DIR": str(tmp_path)}
    from_file = resolve_settings({}, env)
    assert from_file.database_url == DatabaseUrl("postgresql://f@db:5432/file")
    assert from_file.store_at("registry.sqlite3") == from_file.database_url
    env["MODELYARD_DATABASE_URL"] = "postgresql://v:pw@db:5432/env"
    assert resolve_settings({}, env).database_url == DatabaseUrl("postgresql://v:pw@db:5432/env")
    assert resolve_settings({}, {}).database_url is None
    assert resolve_settings({}, {"MODELYARD_DATA_DIR": str(tmp_path)}).store_at("r.sqlite3") == (
        tmp_path / "r.sqlite3"
    )


def test_serve_refuses_a_database_it_cannot_reach_naming_the_variable(tmp_path: Path) -> None:
    modelyard = str(Path(sys.executable).parent / "modelyard")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_DATABASE_URL"] = f"postgresql://my:pw-s3cret@127.0.0.1:{free_port()}/my"
    done = subprocess.run(
        [modelyard, "serve", "registry", "--data-dir", str(tmp_path), *QUIET],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == STARTUP_MISTAKE, done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        "modelyard: cannot start: MODELYARD_DATABASE_URL / server.database_url: cannot connect "
        "to PostgreSQL at postgresql://my:[REDACTED]@127.0.0.1:"
    ), done.stderr
    assert done.stderr.rstrip().endswith(
        "Connection refused; Is the server running on that host and accepting TCP/IP connections?"
    ), done.stderr
    assert "pw-s3cret" not in done.stderr + done.stdout
    env["MODELYARD_DATABASE_URL"] = "mysql://my:pw-s3cret@db/my"
    done = subprocess.run(
        [modelyard, "serve", "registry", "--data-dir", str(tmp_path), *QUIET],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (
        STARTUP_MISTAKE,
        "modelyard: cannot start: MODELYARD_DATABASE_URL / server.database_url: "
        "'mysql://my:[REDACTED]@db/my' is not a PostgreSQL URL "
        "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE)\n",
    )


def test_config_check_names_a_database_url_that_is_not_postgresql(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model_system:\n  server: {database_url: 'mysql://u:pw-x1@db/my'}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(str(config), {})
    assert refused.value.lines() == [
        f"{config}:2: model_system.server.database_url: 'mysql://u:[REDACTED]@db/my' is not a "
        "PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
    ]
