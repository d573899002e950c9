"""Every string and repeated field of the gateway's requests has a bound, checked before
any backend call, refused with INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import StackFactory
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from support.scripted_engine import ScriptedEngine

from modelyard.config.security import InputLimitsConfig
from modelyard.gateway.request_limits import LIMITS, check_bounds
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.validation import check_request
from modelyard_client.errors import InvalidRequest, RequestTooLarge, error_from_rpc
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

Mutate = Callable[[gateway_pb2.GenerateRequest], object]


def _request() -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="scripted/echo")
    request.input.text = "hi"
    request.params.max_tokens = 4
    return request


# The hostile requests: each was accepted and forwarded, or answered with
# "received metadata size exceeds hard limit" instead of the problem.
HOSTILE: dict[str, tuple[Mutate, str, str]] = {
    "10MB-request-id": (
        lambda r: setattr(r, "request_id", "r" * 10_000_000),
        "request_id",
        "request_id is 10000000 characters long; the limit is 128",
    ),
    "10000-stop-strings": (
        lambda r: r.params.stop.extend(["x"] * 10_000),
        "params.stop",
        "params.stop has 10000 entries; the limit is 16",
    ),
    "1MB-response-schema": (
        lambda r: setattr(r.params, "response_schema_json", "{" * 1_000_000),
        "params.response_schema_json",
        "params.response_schema_json is 1000000 characters long; the limit is 65536",
    ),
    "100KB-model-id": (
        lambda r: setattr(r, "model", "m" * 100_000),
        "model",
        "model is 100000 characters long; the limit is 256",
    ),
    "5000-fallback-models": (
        lambda r: r.fallback_models.extend(f"nope/m{i}" for i in range(5_000)),
        "fallback_models",
        "fallback_models has 5000 entries; the limit is 8",
    ),
}


@pytest.mark.parametrize(("mutate", "field", "message"), HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_hostile_field_is_refused_naming_it_before_any_backend_call(
    make_stack: StackFactory, mutate: Mutate, field: str, message: str
) -> None:
    engine = ScriptedEngine()
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    request = _request()
    mutate(request)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == message
    err = error_from_rpc(info.value)
    assert isinstance(err, InvalidRequest)
    assert err.field == field
    assert engine.calls == []


async def test_compare_checks_its_own_fields_before_fanning_out(make_stack: StackFactory) -> None:
    engine = ScriptedEngine()
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    request = gateway_pb2.CompareRequest(models=["scripted/echo", "m" * 257])
    request.input.text = "hi"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Compare(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "models[1] is 257 characters long; the limit is 256"
    assert engine.calls == []


async def test_a_batch_item_over_a_bound_fails_in_its_own_slot(make_stack: StackFactory) -> None:
    engine = ScriptedEngine()
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    hostile = _request()
    hostile.request_id = "r" * 129
    batch = gateway_pb2.BatchGenerateRequest(requests=[_request(), hostile])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).BatchGenerate(batch, timeout=10)
    fine, refused = reply.results
    assert fine.response.text == "hello world"
    assert refused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert refused.error.message == "request_id is 129 characters long; the limit is 128"
    assert len(engine.calls) == 1


# ---- the table itself ---------------------------------------------------------

ROOTS = (
    gateway_pb2.GenerateRequest.DESCRIPTOR,
    gateway_pb2.BatchGenerateRequest.DESCRIPTOR,
    gateway_pb2.CompareRequest.DESCRIPTOR,
    gateway_pb2.EmbedRequest.DESCRIPTOR,
    gateway_pb2.GetModelMetricsRequest.DESCRIPTOR,
    gateway_pb2.GetProviderMetricsRequest.DESCRIPTOR,
    gateway_pb2.EvaluateModelRequest.DESCRIPTOR,
)


def _reachable() -> dict[str, tuple[Descriptor, list[FieldDescriptor]]]:
    """Every field of the gateway's requests (below google.protobuf.*, none): its first
    root and the chain of fields (breadth first) that reaches it."""
    found: dict[str, tuple[Descriptor, list[FieldDescriptor]]] = {}
    queue = [(root, root, list[FieldDescriptor]()) for root in ROOTS]
    seen = {root.full_name for root in ROOTS}
    while queue:
        root, message, chain = queue.pop(0)
        for field in message.fields:
            found.setdefault(field.full_name, (root, [*chain, field]))
            child = field.message_type
            if child is None or child.full_name in seen or child.full_name.startswith("google."):
                continue
            seen.add(child.full_name)
            queue.append((root, child, [*chain, field]))
    return found


REACHABLE = _reachable()


def _build(full_name: str, *, entries: int = 0, chars: int = 0) -> tuple[Message, str]:
    """A request whose field `full_name` holds `entries` entries, or a string (one entry)
    of `chars` characters; and the path `check_bounds` names it by."""
    root, chain = REACHABLE[full_name]
    request: Message = message_factory.GetMessageClass(root)()
    node: Any = request
    path = ""
    for field in chain[:-1]:
        node = getattr(node, field.name)
        if field.is_repeated:
            node = node.add()
            path += f"{field.name}[0]."
        else:
            path += f"{field.name}."
    last = chain[-1]
    path += last.name
    if entries:
        items = getattr(node, last.name)
        for _ in range(entries):
            if last.message_type is not None:
                items.add()
            else:
                items.append("x" if last.type == FieldDescriptor.TYPE_STRING else 1)
        return request, path
    text = "é" * chars  # two bytes each: the bound counts characters
    if last.is_repeated:
        getattr(node, last.name).append(text)
        return request, f"{path}[0]"
    setattr(node, last.name, text)
    return request, path


CHECKED = [
    (name, kind)
    for name, bound in LIMITS.items()
    for kind, limit in (("entries", bound.entries), ("chars", bound.chars))
    if limit is not None
]


@pytest.mark.parametrize(("full_name", "kind"), CHECKED)
def test_each_bound_takes_its_limit_and_refuses_one_more_naming_the_field(
    full_name: str, kind: str
) -> None:
    bound = LIMITS[full_name]
    limit = bound.entries if kind == "entries" else bound.chars
    assert limit is not None
    at_limit, _ = _build(full_name, **{kind: limit})
    check_bounds(at_limit)
    over, path = _build(full_name, **{kind: limit + 1})
    with pytest.raises(InvalidRequest) as refused:
        check_bounds(over)
    assert refused.value.field == path
    size = f"has {limit + 1} entries" if kind == "entries" else f"is {limit + 1} characters long"
    named = (
        f" (security.input_limits.{bound.setting})" if kind == "entries" and bound.setting else ""
    )
    assert refused.value.message == f"{path} {size}; the limit is {limit}{named}"


def test_every_string_bytes_and_repeated_field_of_the_requests_has_a_bound() -> None:
    def needs_bound(field: FieldDescriptor) -> bool:
        return field.is_repeated or field.type in (
            FieldDescriptor.TYPE_STRING,
            FieldDescriptor.TYPE_BYTES,
        )

    structs = {
        name
        for name, (_, chain) in REACHABLE.items()
        if (chain[-1].message_type or chain[-1]).full_name.startswith("google.")
    }
    wanted = {name for name, (_, chain) in REACHABLE.items() if needs_bound(chain[-1])} | structs
    assert wanted - set(LIMITS) == set()
    assert set(LIMITS) - wanted == set()  # no bound on a field the requests no longer have


def test_a_struct_input_is_bounded_by_the_input_size_not_walked() -> None:
    request = gateway_pb2.GenerateRequest()
    request.input.structured.update({"k": "v" * 10_000})
    check_bounds(request)  # its size is the input size check's: RESOURCE_EXHAUSTED there
    assert LIMITS["modelyard.v1.Input.structured"].in_input_size


def test_task_input_is_held_to_the_input_size_limit_too() -> None:
    request = _request()
    request.task.input.text = "x" * 2048
    with pytest.raises(RequestTooLarge) as refused:
        check_request(request, GatewaySettings(InputLimitsConfig(max_input_bytes=1024)))
    assert refused.value.message == (
        "task.input is 2051 bytes; the limit is 1024 bytes (security.input_limits.max_input_bytes)"
    )


# ---- the numbers as documented --------------------------------------------------

ROOT_DIR = Path(__file__).resolve().parents[2]


def _proto_comments() -> dict[str, str]:
    """Each field's comments (the lines just above it and the end of its line), by full name."""
    comments: dict[str, str] = {}
    for proto in sorted((ROOT_DIR / "proto" / "modelyard" / "v1").glob("*.proto")):
        message = ""
        above: list[str] = []
        for raw in proto.read_text().splitlines():
            line = raw.strip()
            opened = re.match(r"message (\w+) \{", line)
            if opened:
                message, above = opened.group(1), []
                continue
            if line.startswith("//"):
                above.append(line.removeprefix("//").strip())
                continue
            field = re.match(r"(?:repeated |optional )?[\w.]+ (\w+) = \d+;\s*(?://(.*))?", line)
            if field and message:
                text = " ".join([*above, field.group(2) or ""])
                comments[f"modelyard.v1.{message}.{field.group(1)}"] = text.lower()
            above = []
    return comments


def test_the_proto_comments_state_every_bound() -> None:
    comments = _proto_comments()
    missing = {
        name: bound.describe()
        for name, bound in LIMITS.items()
        if bound.describe() not in " ".join(comments.get(name, "").split())
    }
    assert missing == {}


def test_the_readme_table_states_every_bound() -> None:
    rows = [
        line for line in (ROOT_DIR / "README.md").read_text().splitlines() if line.startswith("|")
    ]
    missing = {
        name: bound.describe()
        for name, bound in LIMITS.items()
        if not any(
            f"`{name.removeprefix('modelyard.v1.')}`" in row and f"| {bound.describe()}" in row
            for row in rows
        )
    }
    assert missing == {}
