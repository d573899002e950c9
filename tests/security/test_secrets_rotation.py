"""A provider key rotated without a restart: a new secrets file, a real SIGHUP, the next call.

The upstream (`EchoUpstream`) first serves only the old key, then, as a
provider does once a key is rotated, only the new one: a call between the
provider's rotation and the reload fails with PROVIDER_AUTH_FAILED, the first
call after SIGHUP succeeds with the new key, and the stack was never restarted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory
from security.echo_upstream import EchoUpstream

from modelyard.config import parse_config
from modelyard.server.runtime import on_reload_signal
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

ROLES = ("registry", "gateway", "backend-openai-compat")


@pytest.fixture
async def echo() -> AsyncIterator[EchoUpstream]:
    fake = EchoUpstream()
    await fake.start()
    yield fake
    await fake.stop()


async def _generate(
    stub: gateway_pb2_grpc.GatewayServiceAsyncStub,
) -> gateway_pb2.GenerateResponse:
    request = gateway_pb2.GenerateRequest(model="echo/ok")
    request.input.text = "hello"
    response: gateway_pb2.GenerateResponse = await stub.Generate(request, timeout=10)
    return response


async def test_sighup_rotates_the_provider_key_for_the_next_call(
    make_stack: StackFactory, echo: EchoUpstream, tmp_path: Path
) -> None:
    old, new = "old" + secrets.token_hex(12), "new" + secrets.token_hex(12)
    file = tmp_path / "provider-keys.env"
    file.write_text(f"ECHO_API_KEY={old}\n")
    echo.accepted_keys = {old}
    text = f"""
model_system:
  security: {{secrets: {{file: "{file}"}}}}
  backends:
    echo: {{kind: openai_compat, endpoint: "{echo.url}", api_key: "${{ECHO_API_KEY}}",
            max_retries: 0}}
"""
    stack = await make_stack(roles=ROLES, config=parse_config(text, env={}))
    loop = asyncio.get_running_loop()
    on_reload_signal(stack.reload_secrets)
    try:
        async with grpc.aio.insecure_channel(stack.address) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            assert (await _generate(stub)).text == "a b c"
            assert echo.keys_seen[-1] == old

            echo.accepted_keys = {new}  # the provider rotated it
            file.write_text(f"ECHO_API_KEY={new}\n")  # the operator mounted the new one
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _generate(stub)  # not re-read yet: the old key, refused
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert echo.keys_seen[-1] == old

            assert stack.secrets is not None
            before = stack.secrets.generation
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):  # the handler runs on the loop as soon as it is free
                if stack.secrets.generation != before:
                    break
                await asyncio.sleep(0.01)
            assert stack.secrets.generation == before + 1

            assert (await _generate(stub)).text == "a b c"
            assert echo.keys_seen[-1] == new
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
