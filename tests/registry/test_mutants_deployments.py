"""A registration whose deployments are wrong is refused whole over the wire: the code, the
whole message naming the model, the field, and nothing stored.

Kills mutmut's survivors in `registry.validation._check_deployments` (docs/testing.md, the
fifth run resumed): 2 and 11 (the message of too many deployments, of an empty backend,
None), 15 (the backend's length and character checks told no model: subject None), 19 and
24 (the backend's characters not checked: `chars` None or left out, so "any").

Through `RegisterModel` on the registry's in-process gRPC server on a free port, as a
backend announcing itself calls it: the refusal a caller reads is the one that crossed it.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from conftest import StackFactory

from modelyard import catalog_limits as limits
from modelyard_client.errors import InvalidRequest, error_from_rpc
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc

C = common_pb2
Spoil = Callable[[C.ModelEntry], object]


def _entry() -> C.ModelEntry:
    entry = C.ModelEntry(id="acme/m", provider="acme")
    entry.deployments.add(backend="ollama", endpoint="127.0.0.1:11434")
    entry.deployments.add(backend="ollama", endpoint="127.0.0.1:11435")
    return entry


def _too_many(entry: C.ModelEntry) -> None:
    del entry.deployments[:]
    for port in range(1, limits.DEPLOYMENTS + 2):
        entry.deployments.add(backend="ollama", endpoint=f"127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("spoil", "field", "message"),
    [
        (
            _too_many,
            "deployments",
            f"model 'acme/m': {limits.DEPLOYMENTS + 1} deployments; "
            f"the limit is {limits.DEPLOYMENTS}",
        ),
        (
            lambda e: setattr(e.deployments[1], "backend", ""),
            "deployments[1].backend",
            "model 'acme/m': deployments[1].backend must not be empty",
        ),
        (
            lambda e: setattr(
                e.deployments[1], "backend", "b" * (limits.DEPLOYMENT_BACKEND_CHARS + 1)
            ),
            "deployments[1].backend",
            f"model 'acme/m': deployments[1].backend is {limits.DEPLOYMENT_BACKEND_CHARS + 1} "
            f"characters; the limit is {limits.DEPLOYMENT_BACKEND_CHARS}",
        ),
        (
            lambda e: setattr(e.deployments[1], "backend", "my ollama"),
            "deployments[1].backend",
            "model 'acme/m': deployments[1].backend holds ' ' (U+0020)",
        ),
        (
            lambda e: setattr(e.deployments[0], "backend", "ollama\n"),
            "deployments[0].backend",
            "model 'acme/m': deployments[0].backend holds '\\n' (U+000A)",
        ),
    ],
    ids=["too-many", "backend-empty", "backend-too-long", "backend-space", "backend-newline"],
)
async def test_a_registration_with_a_bad_deployment_is_refused_whole_naming_model_and_field(
    make_stack: StackFactory, spoil: Spoil, field: str, message: str
) -> None:
    stack = await make_stack(roles=("registry",))
    entry = _entry()
    spoil(entry)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=entry))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert failed.value.details() == message
        err = error_from_rpc(failed.value)
        assert isinstance(err, InvalidRequest)
        assert (err.message, err.field) == (message, field)
        listed = await stub.ListModels(registry_pb2.ListModelsRequest(include_unavailable=True))
    assert list(listed.models) == []


async def test_a_deployment_at_every_bound_with_visible_characters_is_stored(
    make_stack: StackFactory,
) -> None:
    """The refusals above are the bounds' own: one character less, and it is stored."""
    stack = await make_stack(roles=("registry",))
    entry = C.ModelEntry(id="acme/m", provider="acme")
    for port in range(1, limits.DEPLOYMENTS + 1):
        entry.deployments.add(backend="ollama", endpoint=f"127.0.0.1:{port}")
    entry.deployments[1].backend = "b" * limits.DEPLOYMENT_BACKEND_CHARS
    entry.deployments[2].backend = "openai_compat-2.v1"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        stored = await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=entry))
    assert list(stored.deployments) == list(entry.deployments)
