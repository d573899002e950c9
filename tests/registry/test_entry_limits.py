"""Every catalog field has a bound, the whole entry too, well under what consumers receive;
the registry refuses one over it naming the field, and the proto says the same numbers."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory

from modelyard import catalog_limits as limits
from modelyard.registry.validation import check_entry
from modelyard.server.runtime import MAX_MESSAGE_BYTES
from modelyard_client.channel import CHANNEL_OPTIONS, RECEIVE_BYTES
from modelyard_client.errors import InvalidRequest, error_from_rpc
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc

C = common_pb2
Grow = Callable[[C.ModelEntry, int], object]
PROTO = Path(__file__).parents[2] / "proto" / "modelyard" / "v1" / "common.proto"


def _entry() -> C.ModelEntry:
    entry = C.ModelEntry(id="acme/m", provider="acme")
    entry.deployments.add(backend="ollama", endpoint="127.0.0.1:11434")
    return entry


def _schema(n: int) -> str:
    return '{"a":"' + "x" * (n - 8) + '"}'  # a JSON object of exactly n characters


def _deployments(e: C.ModelEntry, n: int) -> None:
    del e.deployments[:]
    for port in range(1, n + 1):
        e.deployments.add(backend="ollama", endpoint=f"127.0.0.1:{port}")


# (field named in the refusal, its bound, how to make the entry hold `n` of it)
CASES: list[tuple[str | None, int, Grow]] = [
    ("id", limits.ID_CHARS, lambda e, n: setattr(e, "id", "acme/" + "m" * (n - 5))),
    ("version", limits.VERSION_CHARS, lambda e, n: setattr(e, "version", "v" * n)),
    ("name", limits.NAME_CHARS, lambda e, n: setattr(e, "name", "n" * n)),
    ("provider", limits.PROVIDER_CHARS, lambda e, n: setattr(e, "provider", "p" * n)),
    (
        "input_schema_json",
        limits.SCHEMA_JSON_CHARS,
        lambda e, n: setattr(e, "input_schema_json", _schema(n)),
    ),
    (
        "health_reason",
        limits.HEALTH_REASON_CHARS,
        lambda e, n: setattr(e, "health_reason", "r" * n),
    ),
    (
        "metadata",
        limits.METADATA_ENTRIES,
        lambda e, n: e.metadata.update({f"k{i}": "v" for i in range(n)}),
    ),
    ("metadata", limits.METADATA_KEY_CHARS, lambda e, n: e.metadata.update({"k" * n: "v"})),
    (
        "metadata['path']",
        limits.METADATA_VALUE_CHARS,
        lambda e, n: e.metadata.update({"path": "/" * n}),
    ),
    (
        "capabilities",
        limits.ENUM_ENTRIES,
        lambda e, n: e.capabilities.extend([C.CAPABILITY_CHAT] * n),
    ),
    ("deployments", limits.DEPLOYMENTS, _deployments),
    (
        "deployments[0].backend",
        limits.DEPLOYMENT_BACKEND_CHARS,
        lambda e, n: setattr(e.deployments[0], "backend", "b" * n),
    ),
    (
        "deployments[0].endpoint",
        limits.ENDPOINT_CHARS,
        lambda e, n: setattr(e.deployments[0], "endpoint", "h" * (n - 6) + ":11434"),
    ),
    (
        "deployments[0].region",
        limits.REGION_CHARS,
        lambda e, n: setattr(e.deployments[0], "region", "r" * n),
    ),
]


@pytest.mark.parametrize(("field", "bound", "grow"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_field_at_its_bound_is_stored_and_one_more_is_refused_naming_it(
    field: str, bound: int, grow: Grow
) -> None:
    at_bound = _entry()
    grow(at_bound, bound)
    check_entry(at_bound)
    over = _entry()
    grow(over, bound + 1)
    with pytest.raises(InvalidRequest) as refused:
        check_entry(over)
    assert refused.value.field == field


def _entry_of_bytes(size: int) -> C.ModelEntry:
    """An entry of exactly `size` bytes encoded, each field within its own bound."""
    entry = _entry()
    pad = limits.METADATA_VALUE_CHARS
    i = 0
    while entry.ByteSize() + pad + 16 < size:
        entry.metadata[f"pad{i}"] = "x" * pad
        i += 1
    entry.metadata["last"] = ""
    entry.metadata["last"] = "x" * (size - entry.ByteSize())
    while entry.ByteSize() > size:  # the value's length prefix may have grown a byte
        entry.metadata["last"] = entry.metadata["last"][:-1]
    assert entry.ByteSize() == size
    return entry


def test_a_whole_entry_over_its_bound_is_refused() -> None:
    check_entry(_entry_of_bytes(limits.ENTRY_BYTES))
    with pytest.raises(InvalidRequest) as refused:
        check_entry(_entry_of_bytes(limits.ENTRY_BYTES + 1))
    assert refused.value.message == (
        f"model 'acme/m' is {limits.ENTRY_BYTES + 1} bytes encoded; "
        f"the limit is {limits.ENTRY_BYTES} bytes"
    )


def test_an_entry_is_far_under_what_every_consumer_receives() -> None:
    # gRPC's default receive limit (4 MiB) included: a channel left at it still reads one.
    assert 16 * limits.ENTRY_BYTES <= 4 * 1024 * 1024
    # What the registry's server may send (an entry stored before these bounds), they read.
    assert RECEIVE_BYTES == MAX_MESSAGE_BYTES
    assert dict(CHANNEL_OPTIONS) == {"grpc.max_receive_message_length": MAX_MESSAGE_BYTES}


async def test_the_registry_refuses_an_entry_no_gateway_could_read(
    make_stack: StackFactory,
) -> None:
    """A 5 MiB entry was stored before, and every gateway's watch then failed on it forever."""
    stack = await make_stack(roles=("registry",))
    huge = _entry()
    huge.metadata["notes"] = "x" * (5 * 1024 * 1024)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=huge))
    err = error_from_rpc(failed.value)
    assert isinstance(err, InvalidRequest)
    assert err.field == "metadata['notes']"
    assert err.message == (
        f"model 'acme/m': metadata['notes'] is {5 * 1024 * 1024} characters; "
        f"the limit is {limits.METADATA_VALUE_CHARS}"
    )
    assert stack.catalog is not None and stack.catalog.list() == []


# ModelEntry's fields as the proto declares them, and the bound their comment must state.
PROTO_BOUNDS = {
    "string name = 2;": f"at most {limits.NAME_CHARS} characters",
    "string provider = 3;": f"at most {limits.PROVIDER_CHARS} characters",
    "string version = 4;": f"1-{limits.VERSION_CHARS} printable characters",
    "string id = 1;": f"at most {limits.ID_CHARS} characters",
    "repeated Capability capabilities = 5;": f"at most {limits.ENUM_ENTRIES} entries",
    "repeated Modality input_modalities = 6;": f"at most {limits.ENUM_ENTRIES} entries",
    "repeated Modality output_modalities = 7;": f"at most {limits.ENUM_ENTRIES} entries",
    "string input_schema_json = 8;": f"at most {limits.SCHEMA_JSON_CHARS:,} characters",
    "string output_schema_json = 9;": f"at most {limits.SCHEMA_JSON_CHARS:,} characters",
    "string health_reason = 15;": f"at most {limits.HEALTH_REASON_CHARS:,} characters",
    "repeated Deployment deployments = 16;": f"at most {limits.DEPLOYMENTS} entries",
    "map<string, string> metadata = 18;": (
        f"at most {limits.METADATA_ENTRIES} keys, each 1-{limits.METADATA_KEY_CHARS} "
        f"printable characters without whitespace; each value at most "
        f"{limits.METADATA_VALUE_CHARS:,} characters"
    ),
    "string backend = 1;": f"at most {limits.DEPLOYMENT_BACKEND_CHARS} characters",
    "string endpoint = 2;": f"at most {limits.ENDPOINT_CHARS} characters",
    "string region = 3;": f"at most {limits.REGION_CHARS} characters",
}


def _documentation(declaration: str, text: str) -> str:
    """The declaration's trailing comment and the comment lines right above it."""
    lines = text.splitlines()
    [i] = [n for n, line in enumerate(lines) if line.strip().startswith(declaration)]
    above: list[str] = []
    j = i - 1
    while lines[j].strip().startswith("//"):
        above.insert(0, lines[j].strip().removeprefix("//").strip())
        j -= 1
    trailing = lines[i].partition("//")[2].strip()
    return " ".join([*above, trailing])


@pytest.mark.parametrize(("declaration", "bound"), PROTO_BOUNDS.items())
def test_the_proto_comments_state_each_bound(declaration: str, bound: str) -> None:
    catalog = PROTO.read_text().partition("message Deployment {")[2]
    assert bound in _documentation(declaration, catalog)


def test_the_proto_states_the_entry_and_receive_bounds() -> None:
    comment = PROTO.read_text().partition("message ModelEntry {")[0].rpartition("}")[2]
    words = re.sub(r"\s*//\s*", " ", comment)
    assert f"{limits.ENTRY_BYTES:,} bytes encoded" in words
    assert f"messages up to {RECEIVE_BYTES // 2**20} MiB" in words
