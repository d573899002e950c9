"""Every write to the catalog over gRPC refuses an id, version, provider name or enum value
outside the rules, naming the field; nothing of it is stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from conftest import StackFactory

from modelyard_client.errors import InvalidRequest, error_from_rpc
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc

C = common_pb2
R = registry_pb2
# The async stub type exists in the stubs only.
Write = Callable[["registry_pb2_grpc.RegistryServiceAsyncStub"], Awaitable[Any]]


def _model(model_id: str = "acme/m", **fields: Any) -> C.ModelEntry:
    entry = C.ModelEntry(id=model_id, provider="acme", **fields)
    entry.deployments.add(backend="acme", endpoint="127.0.0.1:9")
    return entry


WRITES: list[tuple[str, str, Write]] = [
    (
        "register-dot-dot-id",
        "id",
        lambda s: s.RegisterModel(R.RegisterModelRequest(model=_model("a/../../etc/passwd"))),
    ),
    (
        "register-nul-version",
        "version",
        lambda s: s.RegisterModel(R.RegisterModelRequest(model=_model(version="../../x\0"))),
    ),
    (
        "version-dot-dot",
        "version",
        lambda s: s.RegisterModelVersion(
            R.RegisterModelVersionRequest(model=_model(version="../../x\0"))
        ),
    ),
    (
        "version-control-id",
        "id",
        lambda s: s.RegisterModelVersion(
            R.RegisterModelVersionRequest(model=_model("acme/m\x1b[2J", version="1"))
        ),
    ),
    (
        "pin-nul-version",
        "version",
        lambda s: s.PinModelVersion(R.PinModelVersionRequest(id="acme/m", version="1\0")),
    ),
    (
        "pin-dot-dot-id",
        "id",
        lambda s: s.PinModelVersion(R.PinModelVersionRequest(id="acme/../m", version="1")),
    ),
    (
        "provider-path",
        "name",
        lambda s: s.AddProvider(R.AddProviderRequest(provider=R.Provider(name="../x", kind="k"))),
    ),
    (
        "provider-kind-newline",
        "kind",
        lambda s: s.AddProvider(
            R.AddProviderRequest(provider=R.Provider(name="acme", kind="ollama\nx"))
        ),
    ),
    (
        "register-capability-255",
        "capabilities[0]",
        # 255: a value Capability does not declare.
        lambda s: s.RegisterModel(R.RegisterModelRequest(model=_model(capabilities=[255]))),
    ),
    (
        "health-42",
        "health",
        lambda s: s.UpdateHealth(R.UpdateHealthRequest(id="acme/m", health=42)),  # type: ignore[arg-type]  # the unknown value under test
    ),
    (
        "list-capability-99",
        "capabilities[0]",
        lambda s: s.ListModels(R.ListModelsRequest(capabilities=[99])),  # type: ignore[list-item]  # idem
    ),
]


@pytest.mark.parametrize(("field", "write"), [w[1:] for w in WRITES], ids=[w[0] for w in WRITES])
async def test_a_hostile_write_is_refused_naming_the_field(
    make_stack: StackFactory, field: str, write: Write
) -> None:
    stack = await make_stack(roles=("registry",))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        good = _model(version="1")
        await stub.RegisterModelVersion(R.RegisterModelVersionRequest(model=good))
        before = await stub.ListModels(R.ListModelsRequest(include_unavailable=True))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await write(stub)
        after = await stub.ListModels(R.ListModelsRequest(include_unavailable=True))
        providers = await stub.ListProviders(R.ListProvidersRequest())
    err = error_from_rpc(failed.value)
    assert isinstance(err, InvalidRequest), err
    assert err.field == field
    assert list(after.models) == list(before.models)
    assert list(providers.providers) == []


async def test_a_health_reason_over_its_bound_is_cut(make_stack: StackFactory) -> None:
    stack = await make_stack(roles=("registry",))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await stub.RegisterModel(R.RegisterModelRequest(model=_model()))
        updated = await stub.UpdateHealth(
            R.UpdateHealthRequest(id="acme/m", health=C.HEALTH_STATUS_UNHEALTHY, reason="r" * 5000)
        )
    assert updated.health_reason == "r" * 1023 + "…"
