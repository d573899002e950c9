"""An error's wire form stays under gRPC's metadata limit, whatever its message and attributes.

gRPC refuses trailers over 8 KiB at random and over 16 KiB always: the
caller then sees "received metadata size exceeds hard limit" instead of the
error. The message crosses the wire cut at 1 KiB saying how much was left
out, and the details (ErrorInfo metadata, BadRequest) are bounded too.
"""

from __future__ import annotations

import re

import grpc
import pytest
from conftest import StackFactory
from google.rpc import error_details_pb2
from support.scripted_engine import ScriptedEngine

from modelyard_client.errors import (
    MESSAGE_LIMIT_BYTES,
    METADATA_LIMIT_BYTES,
    STATUS_DETAILS_KEY,
    AllModelsFailed,
    Attempt,
    BackendUnavailable,
    ConfigError,
    ConfigProblem,
    ErrorDetails,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    ProviderError,
    QuotaExceeded,
    RefusedLimit,
    cap_message,
    error_from_details,
    error_from_rpc,
    to_status,
)
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

HUGE_BODY = "upstream 'acme' answered HTTP 500: <html>" + "x" * 100_000


def _request(model: str, *fallbacks: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, fallback_models=fallbacks)
    request.input.text = "hi"
    request.params.max_tokens = 4
    return request


async def _refusal(address: str, request: gateway_pb2.GenerateRequest) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
    return info.value


async def test_a_huge_upstream_error_arrives_cut_at_1_kib_saying_how_much_was_left_out(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(fail_with=ProviderError(HUGE_BODY))
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    refused = await _refusal(stack.address, _request("scripted/echo"))
    assert refused.code() == grpc.StatusCode.UNKNOWN
    details = refused.details() or ""
    cut = re.fullmatch(r"(.*)… \((\d+) more characters\)", details, re.DOTALL)
    assert cut is not None
    head, left_out = cut.group(1), int(cut.group(2))
    assert HUGE_BODY.startswith(head)
    assert left_out == len(HUGE_BODY) - len(head)
    assert 1000 <= len(details.encode()) <= 1024
    err = error_from_rpc(refused)
    assert type(err) is ProviderError
    assert err.message == details


async def test_every_failed_attempt_of_a_long_chain_arrives_with_its_message_shortened(
    make_stack: StackFactory,
) -> None:
    ids = [f"scripted/m{i}" for i in range(9)]  # the model and 8 fallbacks, the most allowed
    engines = [
        ScriptedEngine((model,), fail_with=BackendUnavailable(f"{model} is down: " + "y" * 5_000))
        for model in ids
    ]
    stack = await make_stack(roles=("registry", "gateway"), engines=engines)
    refused = await _refusal(stack.address, _request(ids[0], *ids[1:]))
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    err = error_from_rpc(refused)
    assert isinstance(err, AllModelsFailed)
    assert [a.model_id for a in err.attempts] == ids
    assert err.omitted == 0
    for model, attempt in zip(ids, err.attempts, strict=True):
        assert (attempt.code, attempt.reason) == ("UNAVAILABLE", "BACKEND_UNAVAILABLE")
        assert attempt.message.startswith(f"{model} is down: yyy")
        assert attempt.message.endswith(" more characters)")
    assert len((refused.details() or "").encode()) <= 1024


# ---- the bounds, without a server -------------------------------------------------

SOFT_METADATA_LIMIT = 8 * 1024  # above this gRPC starts refusing received metadata


def _percent_encoded_size(message: str) -> int:
    """The size of ``grpc-message``: bytes outside printable ASCII, and '%', take three."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in message.encode())


def _trailer_size(err: ModelyardError) -> int:
    status = to_status(err)
    return (
        len("grpc-message")
        + _percent_encoded_size(status.message)
        + len(STATUS_DETAILS_KEY)
        + len(status.SerializeToString())
    )


WIDE = "é" * 100_000  # two bytes of UTF-8, six percent-encoded, per character

HOSTILE: dict[str, ModelyardError] = {
    "message": ProviderError(WIDE),
    "invalid-request": InvalidRequest(WIDE, field="f" * 10_000),
    "model-id": ModelNotFound("m" * 100_000),
    "config-problems": ConfigError(
        [ConfigProblem(f"backends.b{i}." + "k" * 300, WIDE[:2_000], line=i) for i in range(500)],
        source="/etc/" + "d" * 5_000,
    ),
    "quota-labels": QuotaExceeded(
        [
            RefusedLimit(f"model:{'m' * 3_000}{i}", f"model '{'m' * 3_000}'", "tpm", 1.0, 2.0)
            for i in range(6)
        ],
        40,
    ),
    "attempts": AllModelsFailed(
        [Attempt(f"{'a' * 250}/{i}", "UNAVAILABLE", "BACKEND_UNAVAILABLE", WIDE) for i in range(11)]
    ),
}


@pytest.mark.parametrize("err", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_error_stays_under_the_soft_metadata_limit_and_rebuilds_as_itself(
    err: ModelyardError,
) -> None:
    status = to_status(err)
    assert len(status.message.encode()) <= MESSAGE_LIMIT_BYTES
    assert _trailer_size(err) < SOFT_METADATA_LIMIT
    assert type(error_from_details(status)) is type(err)


def test_a_message_within_the_limit_crosses_untouched() -> None:
    exact = "é" * (MESSAGE_LIMIT_BYTES // 2)  # exactly 1024 bytes
    assert cap_message(exact) == exact
    assert to_status(ProviderError(exact)).message == exact


def test_a_message_cut_in_a_character_keeps_whole_characters_and_counts_the_rest() -> None:
    # 2,000 bytes; room for 1024 - 26 bytes (the marker for 1000) = 499 whole "é".
    cut = cap_message("é" * 1_000)
    assert cut == "é" * 499 + "… (501 more characters)"
    assert len(cut.encode()) == 1023


def test_the_longest_attempt_messages_are_shortened_first() -> None:
    short = Attempt("a/short", "NOT_FOUND", "MODEL_NOT_FOUND", "model 'a/short' is not known")
    long = Attempt("b/long", "UNAVAILABLE", "BACKEND_UNAVAILABLE", "z" * 10_000)
    rebuilt = error_from_details(to_status(AllModelsFailed([short, long])))
    assert isinstance(rebuilt, AllModelsFailed)
    first, second = rebuilt.attempts
    assert first == short
    head, _, marker = second.message.partition("… (")
    assert head == "z" * len(head)
    assert marker == f"{10_000 - len(head)} more characters)"
    assert len(to_status(rebuilt).details[0].value) <= METADATA_LIMIT_BYTES + 64


def test_attempts_whose_ids_alone_overflow_are_left_out_and_counted() -> None:
    attempts = [
        Attempt(f"{'a' * 250}/{i}", "UNAVAILABLE", "BACKEND_UNAVAILABLE", "down") for i in range(11)
    ]
    rebuilt = error_from_details(to_status(AllModelsFailed(attempts)))
    assert isinstance(rebuilt, AllModelsFailed)
    assert 0 < len(rebuilt.attempts) < 11
    assert [a.model_id for a in rebuilt.attempts] == [a.model_id for a in attempts][
        : len(rebuilt.attempts)
    ]
    assert rebuilt.omitted == 11 - len(rebuilt.attempts)


def test_metadata_over_the_bound_loses_its_largest_value_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A class that does not keep its metadata within the bound itself.
    def unbounded(self: ModelyardError) -> ErrorDetails:
        return ErrorDetails(metadata={"model_id": "m" * 100_000, "small": "s"})

    monkeypatch.setattr(ModelNotFound, "wire_details", unbounded)
    status = to_status(ModelNotFound("hostile"))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert dict(info.metadata) == {"small": "s"}
    assert "ModelNotFound: ErrorInfo metadata 'model_id' (100000 bytes) left out" in caplog.text


def test_a_huge_model_id_arrives_shortened_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rebuilt = error_from_details(to_status(ModelNotFound("m" * 100_000)))
    assert isinstance(rebuilt, ModelNotFound)
    head, _, marker = rebuilt.model_id.partition("… (")
    assert head == "m" * len(head) and len(rebuilt.model_id.encode()) <= 1024
    assert marker == f"{100_000 - len(head)} more characters)"
    assert caplog.text == ""


def test_field_violations_keep_the_first_within_the_bound() -> None:
    problems = [ConfigProblem(f"key{i}", "w" * 100, line=i + 1) for i in range(50)]
    status = to_status(ConfigError(problems))
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    fields = [v.field for v in bad.field_violations]
    assert fields == [f"key{i}" for i in range(len(fields))]
    assert len(fields) == 1024 // (len("key0") + 100)  # 104 bytes each (key10 on: 105)


async def test_a_batch_items_error_is_cut_like_a_status_message(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(fail_with=ProviderError(HUGE_BODY))
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    batch = gateway_pb2.BatchGenerateRequest(requests=[_request("scripted/echo")] * 64)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        reply = await gateway_pb2_grpc.GatewayServiceStub(channel).BatchGenerate(batch, timeout=10)
    assert {r.error.message for r in reply.results} == {cap_message(HUGE_BODY)}
