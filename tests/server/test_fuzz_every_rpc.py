"""Hostile bytes on every RPC: answered with a deliberate code, the server healthy, the log short.

Thousands of messages, seeded: valid requests of each RPC's request type
(filled from its descriptor, with odd values: huge strings, negative and
extreme numbers, NaN and infinities, enum numbers the contract does not
name), then truncated, bit-flipped, overwritten, spliced and plain random
variants of them, sent as raw bytes to every RPC of every service of the
contract on one in-process stack. The RPCs are read from the generated
descriptors of every ``modelyard.v1`` module, so a new RPC or a new service
is fuzzed without a word here (and a service the stack does not serve fails
the test). Every failure must come through the interceptor's error mapping (a
``google.rpc.Status`` with a modelyard ``ErrorInfo``) and none may be
INTERNAL or UNKNOWN (an undecodable message is INVALID_ARGUMENT); afterwards
the server is SERVING, still answers a valid Generate, and the whole run
logged a few lines.

The seed is fixed, printed, and taken from ``MODELYARD_FUZZ_SEED`` when set,
to replay or widen a run.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import pkgutil
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

import grpc
import pytest
from conftest import StackFactory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from support.scripted_engine import ScriptedEngine

import modelyard_client.v1
from modelyard.server import undecodable
from modelyard_client.errors import DOMAIN
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

SEED = int(os.environ.get("MODELYARD_FUZZ_SEED") or 20_261_201)
VARIANTS_PER_RPC = 160  # about 7,000 messages over the contract's 45 RPCs (CPU-bound: 2 cores)
VALID_SHARE = 0.35  # of each RPC's messages: valid requests, freshly filled
CONCURRENCY = 48
CALL_TIMEOUT_S = 5.0
STREAM_TIMEOUT_S = 1.0  # a watch that parses may wait for changes past it
STREAM_READS = 3  # responses read from a stream before the client cancels it
# Warnings and errors the run may log besides the undecodable-request summaries
# (one per `LOG_INTERVAL_S` at most, counted apart). INFO lines of calls that did
# what they ask (a key created) are the service's record of them, not noise.
MAX_LOG_LINES = 5


def _contract() -> list[ModuleType]:
    """Every generated message module of the contract (``modelyard.v1.*_pb2``)."""
    names = sorted(m.name for m in pkgutil.iter_modules(modelyard_client.v1.__path__))
    return [
        importlib.import_module(f"modelyard_client.v1.{name}")
        for name in names
        if name.endswith("_pb2")
    ]


# Strings the filler draws from: some name the model the fuzz may change
# (unregister, mark unhealthy, re-register elsewhere); none names KEPT.
STRINGS = ("scripted/echo", "echo", "hi", "", "local/none", "a" * 40, "é✓", "\x00\u202e")
HUGE_SHARE = 0.004  # of strings and bytes: 64 KiB to 1 MiB of them
HUGE_BYTES = (1 << 16, 1 << 20)
KEPT = "scripted/keep"  # the model the final Generate asks for


@dataclass(frozen=True)
class Rpc:
    path: str  # "/modelyard.v1.GatewayService/Generate"
    request: Descriptor
    streaming: bool

    @property
    def watch(self) -> bool:
        """A stream that stays open for changes (WatchModels, WatchRoutes)."""
        return self.path.rpartition("/")[2].startswith("Watch")


def _rpcs() -> list[Rpc]:
    return [
        Rpc(f"/{service.full_name}/{method.name}", method.input_type, method.server_streaming)
        for module in _contract()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


# ---- valid requests, filled from the descriptor ----------------------------


MAX_DEPTH = 3  # nested messages filled below the request


def _fill(message: Message, rng: random.Random, depth: int = 0) -> None:
    """Set a random selection of `message`'s fields to values the wire allows."""
    descriptor = message.DESCRIPTOR
    chosen = {o.name: rng.choice(o.fields) for o in descriptor.oneofs}
    fields = cast("list[FieldDescriptor]", list(descriptor.fields))
    for field in fields:
        oneof = field.containing_oneof
        if (oneof is not None and chosen[oneof.name] is not field) or rng.random() < 0.3:
            continue
        nested = field.message_type
        if nested is not None and depth == MAX_DEPTH:
            continue
        if nested is not None and nested.GetOptions().map_entry:
            _fill_map_entry(getattr(message, field.name), nested, rng, depth)
        elif field.is_repeated:
            container = getattr(message, field.name)
            for _ in range(rng.randint(1, 2)):
                if nested is not None:
                    _fill(container.add(), rng, depth + 1)
                else:
                    container.append(_scalar(field, rng))
        elif nested is not None:
            getattr(message, field.name).SetInParent()
            _fill(getattr(message, field.name), rng, depth + 1)
        else:
            setattr(message, field.name, _scalar(field, rng))


def _fill_map_entry(container: Any, entry: Descriptor, rng: random.Random, depth: int) -> None:
    key = _scalar(entry.fields_by_name["key"], rng)
    value_field = entry.fields_by_name["value"]
    if value_field.message_type is not None:
        _fill(container[key], rng, depth + 1)
    else:
        container[key] = _scalar(value_field, rng)


# Values the wire allows that a careless reader does not expect: an enum number
# the contract does not name (proto3 keeps it), integers at their type's ends,
# floats that are no number.
ODD_ENUMS = (-1, 99, 2**31 - 1)
ODD_SIGNED = (-1, -(2**31), 2**31 - 1, 2**63 - 1, -(2**63))
ODD_UNSIGNED = (2**32 - 1, 2**64 - 1)
ODD_FLOATS = (-1.0, 1e308, float("inf"), float("-inf"), float("nan"))
UNSIGNED = {
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
}
BITS_32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}


def _scalar(field: FieldDescriptor, rng: random.Random) -> Any:
    kind = field.type
    odd = rng.random() < 0.15
    if kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES) and (
        rng.random() < HUGE_SHARE
    ):
        size = rng.randint(*HUGE_BYTES)
        return "x" * size if kind == FieldDescriptor.TYPE_STRING else rng.randbytes(size)
    if kind == FieldDescriptor.TYPE_STRING:
        return rng.choice(STRINGS)
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.randint(0, 8))
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_ENUM:
        named = cast(EnumDescriptor, field.enum_type).values
        return rng.choice(ODD_ENUMS) if odd else rng.choice(named).number
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return rng.choice(ODD_FLOATS) if odd else rng.choice((0.0, 0.5, 1.0, 100.0))
    if not odd:
        return rng.randint(0, 1000)
    unsigned = kind in UNSIGNED
    value = rng.choice(ODD_UNSIGNED if unsigned else ODD_SIGNED)
    if kind in BITS_32:  # the end of the field's own range
        value = (2**32 - 1 if unsigned else 2**31 - 1) if value > 0 else -(2**31)
    return value


# ---- hostile variants --------------------------------------------------------


def _truncated(raw: bytes, rng: random.Random) -> bytes:
    return raw[: rng.randrange(len(raw))] if raw else raw


def _bit_flipped(raw: bytes, rng: random.Random) -> bytes:
    if not raw:
        return bytes([rng.randrange(256)])
    out = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _overwritten(raw: bytes, rng: random.Random) -> bytes:
    """Random bytes over a random stretch (lengths, tags and UTF-8 broken at once)."""
    if not raw:
        return rng.randbytes(4)
    start = rng.randrange(len(raw))
    return raw[:start] + rng.randbytes(rng.randint(1, 6)) + raw[start + rng.randint(1, 6) :]


def _spliced(raw: bytes, rng: random.Random, other: bytes) -> bytes:
    return raw[: rng.randint(0, len(raw))] + other[rng.randint(0, len(other)) :]


def _random(raw: bytes, rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(0, 64))


Mutation = Callable[[bytes, random.Random], bytes]
MUTATIONS: dict[str, Mutation] = {
    "truncated": _truncated,
    "bit-flipped": _bit_flipped,
    "overwritten": _overwritten,
    "random": _random,
}


def _messages(rpc: Rpc, rng: random.Random) -> list[tuple[str, bytes]]:
    """`VARIANTS_PER_RPC` requests: about a third valid (freshly filled), the rest mutated."""
    cls: type[Message] = GetMessageClass(rpc.request)
    valid = [cls().SerializeToString()]  # the empty request
    out = [("valid", valid[0])]
    names = [*MUTATIONS, "spliced"]
    while len(out) < VARIANTS_PER_RPC:
        if rng.random() < VALID_SHARE:
            message = cls()
            _fill(message, rng)
            valid.append(message.SerializeToString())
            out.append(("valid", valid[-1]))
            continue
        name = rng.choice(names)
        raw = rng.choice(valid)
        if name == "spliced":
            out.append((name, _spliced(raw, rng, rng.choice(valid))))
        else:
            out.append((name, MUTATIONS[name](raw, rng)))
    return out


# ---- sending -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    rpc: str
    variant: str
    raw: bytes
    code: grpc.StatusCode
    details: str
    reason: str | None  # the modelyard ErrorInfo reason; None when the status carries none

    @property
    def undecodable(self) -> bool:
        """Refused as bytes that are not the RPC's request message."""
        return self.code == grpc.StatusCode.INVALID_ARGUMENT and self.details.startswith(
            "the request is not a valid "
        )


def _reason(exc: grpc.aio.AioRpcError) -> str | None:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]  # grpc_status-stubs: grpc.Call only
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == DOMAIN:
            return info.reason
    return None


RAW = {"request_serializer": None, "response_deserializer": None}  # bytes both ways


async def _send(channel: grpc.aio.Channel, rpc: Rpc, variant: str, raw: bytes) -> Answer:
    def answer(code: grpc.StatusCode, details: str = "", reason: str | None = None) -> Answer:
        return Answer(rpc.path, variant, raw, code, details, reason)

    try:
        if not rpc.streaming:
            await channel.unary_unary(rpc.path, **RAW)(raw, timeout=CALL_TIMEOUT_S)
            return answer(grpc.StatusCode.OK)
        # Only a watch is held open by design; any other stream gets a call's full time.
        timeout = STREAM_TIMEOUT_S if rpc.watch else CALL_TIMEOUT_S
        call = channel.unary_stream(rpc.path, **RAW)(raw, timeout=timeout)
        reads = 0
        async for _ in call:
            reads += 1
            if reads == STREAM_READS:
                call.cancel()  # the client's choice: a live stream is an answer
                return answer(grpc.StatusCode.OK, "streamed")
        return answer(grpc.StatusCode.OK)
    except grpc.aio.AioRpcError as exc:
        if rpc.watch and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return answer(grpc.StatusCode.OK, "held open")  # a watch waiting for changes
        return answer(exc.code(), exc.details() or "", _reason(exc))


async def _send_all(address: str, work: list[tuple[Rpc, str, bytes]]) -> list[Answer]:
    slots = asyncio.Semaphore(CONCURRENCY)
    async with grpc.aio.insecure_channel(address) as channel:

        async def one(rpc: Rpc, variant: str, raw: bytes) -> Answer:
            async with slots:
                return await _send(channel, rpc, variant, raw)

        return list(await asyncio.gather(*(one(*item) for item in work)))


def _deliberate(answer: Answer) -> bool:
    """Answered on purpose: OK, or a failure the interceptor mapped, never INTERNAL or UNKNOWN."""
    if answer.code == grpc.StatusCode.OK:
        return True
    if answer.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        return False
    return answer.reason is not None and answer.reason != "INTERNAL"


def _report(bad: list[Answer]) -> str:
    """Each distinct failure once: RPC, code, reason, details, how often, one input to replay."""
    seen: dict[tuple[str, grpc.StatusCode, str | None, str], list[Answer]] = {}
    for a in bad:
        seen.setdefault((a.rpc, a.code, a.reason, a.details), []).append(a)
    lines = [f"{len(bad)} answer(s) not deliberate:"]
    for (rpc, code, reason, details), group in sorted(seen.items(), key=lambda kv: kv[0][0]):
        lines.append(
            f"  {rpc} {code.name} reason={reason} x{len(group)}: {details!r} "
            f"(e.g. {group[0].variant} {group[0].raw.hex()})"
        )
    return "\n".join(lines)


def _causes(records: list[logging.LogRecord]) -> str:
    """What the server logged for its unhandled errors: each exception once, with its RPCs."""
    causes: dict[str, Counter[str]] = {}
    for record in records:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            rpc = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
            causes.setdefault(f"{type(exc).__name__}: {exc}", Counter())[rpc] += 1
    lines = [f"\n  server: {cause} in {dict(rpcs)}" for cause, rpcs in sorted(causes.items())]
    return "".join(lines)


async def test_hostile_bytes_on_every_rpc_get_deliberate_answers_and_leave_the_server_well(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    engine = ScriptedEngine(model_ids=("scripted/echo", KEPT))
    stack = await make_stack(engines=[engine], roles=("registry", "selector", "hotswap", "gateway"))
    rng = random.Random(SEED)
    rpcs = _rpcs()
    work = [(rpc, variant, raw) for rpc in rpcs for variant, raw in _messages(rpc, rng)]
    rng.shuffle(work)
    caplog.set_level(logging.INFO)
    caplog.clear()

    began = time.monotonic()
    answers = await _send_all(stack.address, work)
    took_s = time.monotonic() - began

    codes = Counter(a.code.name for a in answers)
    print(
        f"seed {SEED} (MODELYARD_FUZZ_SEED): {len(answers)} messages to {len(rpcs)} RPCs "
        f"in {took_s:.1f}s: {dict(codes)}"
    )
    # Every RPC of every service the stack serves; each reached past parsing.
    assert {r.path[1:].partition("/")[0] for r in rpcs} == set(stack.server.service_names)
    parsed = Counter(a.rpc for a in answers if not a.undecodable)
    assert [r.path for r in rpcs if parsed[r.path] == 0] == []
    assert [a for a in answers if a.undecodable and a.variant == "valid"] == []
    bad = [a for a in answers if not _deliberate(a)]
    assert not bad, _report(bad) + _causes(caplog.records)

    # The server is well: serving, and a valid Generate succeeds.
    summaries = [r for r in caplog.records if r.name == undecodable.__name__]
    lines = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name != undecodable.__name__
    ]
    async with grpc.aio.insecure_channel(stack.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        request = gateway_pb2.GenerateRequest(model=KEPT)
        request.input.text = "still there?"
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=5)
    assert reply.text == "hello world"
    assert len(lines) < MAX_LOG_LINES, "\n".join(lines[:20])
    assert len(summaries) <= took_s / undecodable.LOG_INTERVAL_S + 2
