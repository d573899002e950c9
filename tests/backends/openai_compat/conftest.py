"""Fixtures for the openai_compat backend: a fake upstream, stacks in front of one, and a
llama.cpp server that does not stall on its own log output."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from backends.openai_compat.openai_fake import STACK_ROLES, Clients, FakeUpstream, StackFor
from conftest import StackFactory

from modelyard.config import default_config
from modelyard_client.v1 import backend_pb2_grpc, gateway_pb2_grpc, registry_pb2_grpc


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A running fake upstream serving one model, ``fake-model``."""
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def stack_for(make_stack: StackFactory) -> AsyncIterator[StackFor]:
    """Start registry + gateway + openai_compat backend in front of an upstream URL."""
    channels: list[grpc.aio.Channel] = []

    async def start(url: str, **env: str) -> Clients:
        stack = await make_stack(
            roles=STACK_ROLES, config=default_config({"CUSTOM_AI_PROVIDER_URL": url, **env})
        )
        channel = grpc.aio.insecure_channel(stack.address)
        channels.append(channel)
        return Clients(
            stack,
            gateway_pb2_grpc.GatewayServiceStub(channel),
            backend_pb2_grpc.BackendServiceStub(channel),
            registry_pb2_grpc.RegistryServiceStub(channel),
        )

    yield start
    for channel in channels:
        await channel.close(grace=None)
