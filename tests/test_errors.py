"""The error hierarchy's reasons and its `google.rpc.Status` form, without a server."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

import modelyard_client.errors
from modelyard_client.errors import (
    RETRY_AFTER_MS_KEY,
    STATUS_DETAILS_KEY,
    BackendUnavailable,
    ModelNotFound,
    ModelyardError,
    NotFound,
    RateLimited,
    RequestTooLarge,
    class_for_reason,
    error_from_details,
    error_from_status,
    registered_classes,
    to_status,
)


def _status(code: grpc.StatusCode, message: str, *details: Message) -> status_pb2.Status:
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return status


def test_a_class_without_its_own_reason_is_refused() -> None:
    with pytest.raises(TypeError, match="Quiet must declare its own `reason`"):

        class Quiet(NotFound):  # would travel as NotFound
            pass


def test_a_class_reusing_a_reason_is_refused() -> None:
    with pytest.raises(TypeError, match="reason 'MODEL_NOT_FOUND' is ModelNotFound's"):

        class Twin(NotFound):
            reason = "MODEL_NOT_FOUND"


def test_every_reason_names_exactly_its_class() -> None:
    for cls in registered_classes():
        assert class_for_reason(cls.reason) is cls


def test_the_module_docstring_table_is_the_registry() -> None:
    doc = modelyard_client.errors.__doc__ or ""
    rows = re.findall(r"^([A-Z]\w+)\s+([A-Z_]+)\s+([A-Z_]+)\b", doc, re.MULTILINE)
    assert {name: (code, reason) for name, code, reason in rows} == {
        cls.__name__: (cls.code.name, cls.reason) for cls in registered_classes()
    }


def test_to_status_packs_error_info_with_the_class_attributes() -> None:
    status = to_status(ModelNotFound("a/b", "the registry"))
    assert (status.code, status.message) == (5, "model 'a/b' is not in the registry")
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    assert info == error_details_pb2.ErrorInfo(
        reason="MODEL_NOT_FOUND", domain="modelyard", metadata={"model_id": "a/b"}
    )


def test_an_unknown_modelyard_reason_falls_back_to_the_code() -> None:
    # A newer server's class this client does not know yet.
    status = _status(
        grpc.StatusCode.NOT_FOUND,
        "adapter 'x' is not loaded",
        error_details_pb2.ErrorInfo(reason="ADAPTER_NOT_FOUND", domain="modelyard"),
    )
    rebuilt = error_from_details(status)
    assert type(rebuilt) is NotFound
    assert rebuilt.message == "adapter 'x' is not loaded"


def test_a_reason_whose_code_disagrees_falls_back_to_the_code() -> None:
    status = _status(
        grpc.StatusCode.UNAVAILABLE,
        "down",
        error_details_pb2.ErrorInfo(reason="MODEL_NOT_FOUND", domain="modelyard"),
    )
    assert type(error_from_details(status)) is BackendUnavailable


def test_a_retry_after_ms_trailer_alone_makes_rate_limited() -> None:
    rebuilt = error_from_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", ((RETRY_AFTER_MS_KEY, "7000"),)
    )
    assert type(rebuilt) is RateLimited
    assert rebuilt.retry_after_s == 7.0


def test_resource_exhausted_without_a_retry_delay_is_request_too_large() -> None:
    assert type(error_from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big")) is RequestTooLarge


def test_a_details_trailer_that_disagrees_with_the_code_is_ignored() -> None:
    stale = to_status(ModelNotFound("a/b")).SerializeToString()
    rebuilt = error_from_status(grpc.StatusCode.INTERNAL, "boom", ((STATUS_DETAILS_KEY, stale),))
    assert type(rebuilt) is ModelyardError
    assert rebuilt.message == "boom"


def test_the_go_client_has_a_constant_for_every_reason() -> None:
    go = Path(__file__).parents[1] / "clients" / "go" / "modelyard" / "errors.go"
    constants = set(re.findall(r'^\s*Reason\w+\s*=\s*"([A-Z_]+)"', go.read_text(), re.MULTILINE))
    assert constants == {cls.reason for cls in registered_classes()}
