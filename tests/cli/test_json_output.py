"""`--json` on every listing command, and `--address` on every client command, as a user
runs them: each command is its own process (``python -m modelyard.cli``) calling a real
in-process stack (registry, hot-swap, gateway and an openai_compat backend in front of the
fake OpenAI upstream of tests/backends/openai_compat/openai_fake.py, serving ``model-a``
and ``model-b``), with keys required so `keys list` and `audit` have something to say."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory, free_port

from modelyard.assembly import Stack
from modelyard.config import ModelyardConfig, parse_config
from modelyard_client.v1 import hotswap_pb2, hotswap_pb2_grpc

ROLES = ("registry", "hotswap", "gateway", "backend-openai-compat")
A, B = "custom/model-a", "custom/model-b"
ALIAS = "chat-default"
ADMIN_KEY = "admin-key-for-the-json-tests"


def _config(url: str) -> ModelyardConfig:
    return parse_config(
        f"""
model_system:
  hot_swap: {{grace_period_ms: 50, validation_timeout_ms: 3000, routes: {{{ALIAS}: {A}}}}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{url}"}}
  security:
    auth:
      required: true
      admin_key: "${{ADMIN}}"
      service_key: "${{SERVICE}}"
""",
        env={"ADMIN": ADMIN_KEY, "SERVICE": "service-key-for-the-json-tests"},
    )


@pytest.fixture
async def stack(make_stack: StackFactory, upstream: FakeUpstream) -> Stack:
    return await make_stack(roles=ROLES, config=_config(upstream.url))


def _env(address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(MODELYARD_ADDRESS=address, MODELYARD_API_KEY=ADMIN_KEY)
    return env


async def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """The command in its own process; the stack keeps serving on this test's loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "modelyard.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _json(env: dict[str, str], *argv: str) -> list[dict[str, Any]]:
    result = await _cli(env, *argv, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # the whole of stdout is one document
    assert isinstance(document, list)
    return document


async def test_every_listing_prints_one_json_document_with_the_proto_field_names(
    stack: Stack,
) -> None:
    env = _env(stack.address)

    models = await _json(env, "models")
    assert sorted(m["id"] for m in models) == [A, B]
    assert {m["deployments"][0]["backend"] for m in models} == {"openai_compat"}
    assert {m["health"] for m in models} == {"HEALTH_STATUS_HEALTHY"}
    assert "context_window" in models[0] and "input_modalities" in models[0]  # zero values too

    routes = await _json(env, "routes")
    assert [(r["alias"], r["model_id"]) for r in routes] == [(ALIAS, A)]
    assert "fallback_models" in routes[0] and "ab_test_id" in routes[0]

    assert await _json(env, "abtest", "status") == []
    started = await _cli(
        env, "abtest", "start", ALIAS, "--arm", f"control={A}:0.5", "--arm", f"variant={B}:0.5"
    )
    assert started.returncode == 0, started.stderr
    tests = await _json(env, "abtest", "status")
    assert [(t["alias"], t["running"]) for t in tests] == [(ALIAS, True)]
    assert [(a["name"], a["model_id"], a["weight"]) for a in tests[0]["arms"]] == [
        ("control", A, 0.5),
        ("variant", B, 0.5),
    ]
    one = await _json(env, "abtest", "status", tests[0]["id"])
    assert [t["id"] for t in one] == [tests[0]["id"]] and int(one[0]["min_samples_per_arm"]) > 0

    created = await _cli(env, "keys", "create", "--owner", "ana", "--model", A)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.split("secret (shown once): ")[1].strip()
    keys = await _json(env, "keys", "list")
    assert [(k["owner"], k["models"], k["scopes"]) for k in keys] == [("ana", [A], ["generate"])]
    assert secret not in json.dumps(keys)

    audit = await _json(env, "audit", "--rpc", "CreateKey")
    assert [(e["rpc"].rpartition("/")[2], e["code"]) for e in audit] == [("CreateKey", "OK")]


async def test_swap_status_json_is_the_swap_with_its_steps(stack: Stack) -> None:
    env = _env(stack.address)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        status = await stub.Swap(
            hotswap_pb2.SwapRequest(alias=ALIAS, target_model_id=B),
            metadata=(("x-api-key", ADMIN_KEY),),
            timeout=10,
        )
    swaps = await _json(env, "swap-status", status.swap_id)
    assert len(swaps) == 1
    swap = swaps[0]
    assert (swap["swap_id"], swap["alias"], swap["to_model_id"]) == (status.swap_id, ALIAS, B)
    assert swap["from_model_id"] == A and swap["phase"].startswith("PHASE_")
    assert "steps" in swap and "canary_percent" in swap


async def test_address_flag_wins_over_the_variable_on_every_client_command(
    stack: Stack,
) -> None:
    """MODELYARD_ADDRESS names a port nothing listens on: each command reaches the stack
    with --address, and without it says it could not reach the server."""
    nowhere = _env(f"127.0.0.1:{free_port()}")
    commands = [
        ["models"],
        ["routes"],
        ["abtest", "status"],
        ["keys", "list"],
        ["audit", "--limit", "1"],
        ["swap-status", "no-such-swap"],
    ]
    for argv in commands:
        reached = await _cli(nowhere, *argv, "--address", stack.address)
        if argv[0] == "swap-status":  # the stack answered: it knows no such swap
            assert reached.returncode == 1 and "NOT_FOUND" in reached.stderr, reached.stderr
        else:
            assert reached.returncode == 0, (argv, reached.stderr)
    missed = await _cli(nowhere, "routes")
    assert missed.returncode == 1 and "UNAVAILABLE" in missed.stderr, missed.stderr


def test_every_client_command_takes_address() -> None:
    """Each command that calls a server has --address (and so the TLS and key flags)."""
    from modelyard import cli

    parser = cli._parser()
    # Start a server, or call none of modelyard's (test-provider calls a backend's engine itself).
    servers = {"up", "serve", "config", "certs", "test-provider"}
    missing = []
    for name, sub in _subcommands(parser):
        if name.split()[0] not in servers and "--address" not in sub._option_string_actions:
            missing.append(name)
    assert missing == []


def _subcommands(parser: Any, prefix: str = "") -> list[tuple[str, Any]]:
    import argparse

    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = _subcommands(sub, f"{prefix}{name} ")
                found += inner or [(f"{prefix}{name}", sub)]
    return found
