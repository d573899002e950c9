"""Errors to ``google.rpc.Status`` and back: the one place either direction happens."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import cast

import grpc
from google.rpc import error_details_pb2, status_pb2

from modelyard_client.errors._details import (
    ErrorDetails,
    FieldViolation,
)
from modelyard_client.errors._hierarchy import (
    RETRY_AFTER_MS_KEY,
    AlreadyExists,
    BackendUnavailable,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidRequest,
    ModelyardError,
    NotFound,
    ProviderError,
    RateLimited,
    RequestTooLarge,
    StreamTruncated,
    Unimplemented,
    class_for_reason,
)
from modelyard_client.errors._limits import (
    METADATA_LIMIT_BYTES,
    VIOLATION_DESCRIPTION_LIMIT_BYTES,
    VIOLATION_FIELD_LIMIT_BYTES,
    VIOLATIONS_LIMIT_BYTES,
    cap_message,
    shorten,
    utf8_size,
)
from modelyard_client.scrub import scrub

log = logging.getLogger(__name__)

# ErrorInfo.domain of every error a modelyard service sends.
DOMAIN = "modelyard"
# Trailer holding the serialized google.rpc.Status (what grpcio-status reads and writes).
STATUS_DETAILS_KEY = "grpc-status-details-bin"

Trailers = Iterable[tuple[str, str | bytes]]

_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}

# A status with no modelyard ErrorInfo (another server, or the transport) maps by code.
_BY_CODE: dict[grpc.StatusCode, type[ModelyardError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: BackendUnavailable,
    grpc.StatusCode.UNKNOWN: ProviderError,
    grpc.StatusCode.ABORTED: StreamTruncated,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def to_status(err: ModelyardError) -> status_pb2.Status:
    """`err` as a ``google.rpc.Status``: code, message, ErrorInfo, and RetryInfo / BadRequest.

    The one place an error's size is bounded for the wire (`_limits`): the
    message is cut at 1 KiB saying how much was left out, field violations
    and metadata are kept within their own bounds. Every text is scrubbed of
    credentials first (`modelyard_client.scrub.scrub`).
    """
    wire = err.wire_details()
    status = status_pb2.Status(code=err.code.value[0], message=cap_message(err.message))
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason=err.reason, domain=DOMAIN, metadata=_bounded_metadata(err, wire.metadata)
        )
    )
    if wire.retry_after_s is not None and math.isfinite(wire.retry_after_s):
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(round(wire.retry_after_s * 1e9))
        status.details.add().Pack(retry)
    if wire.field_violations:
        bad = error_details_pb2.BadRequest()
        used = 0
        for v in wire.field_violations:
            field = shorten(scrub(v.field), VIOLATION_FIELD_LIMIT_BYTES)
            description = shorten(scrub(v.description), VIOLATION_DESCRIPTION_LIMIT_BYTES)
            used += utf8_size(field) + utf8_size(description)
            if bad.field_violations and used > VIOLATIONS_LIMIT_BYTES:
                break  # the first ones are kept: a ConfigError sorts them in file order
            bad.field_violations.add(field=field, description=description)
        status.details.add().Pack(bad)
    return status


def _bounded_metadata(err: ModelyardError, metadata: Mapping[str, str]) -> dict[str, str]:
    """`metadata` within `METADATA_LIMIT_BYTES`: the largest values dropped until it fits.

    A last resort: a class whose attributes can grow keeps them within the
    bound itself (`AllModelsFailed` shortens its attempts), so that the caller
    still rebuilds them.
    """
    # Scrubbed: an attempt's message (`AllModelsFailed`) may quote an upstream. The
    # scrubber never replaces a quote or a backslash, so JSON values stay JSON.
    kept = {key: scrub(value) for key, value in metadata.items()}
    size = sum(utf8_size(k) + utf8_size(v) for k, v in kept.items())
    while size > METADATA_LIMIT_BYTES:
        key = max(kept, key=lambda k: utf8_size(kept[k]))
        log.warning(
            "%s: ErrorInfo metadata %r (%d bytes) left out: over the limit of %d bytes",
            type(err).__name__,
            key,
            utf8_size(kept[key]),
            METADATA_LIMIT_BYTES,
        )
        size -= utf8_size(key) + utf8_size(kept.pop(key))
    return kept


def error_from_details(
    status: status_pb2.Status, trailing_metadata: Trailers = ()
) -> ModelyardError:
    """The error a ``google.rpc.Status`` describes, as the exact class the server raised.

    The class comes from the modelyard ErrorInfo's reason. Without one (or with a
    reason or code this version does not know) the status code picks the class,
    still reading RetryInfo, BadRequest and the ``retry-after-ms`` trailer.
    """
    code = _CODE_BY_VALUE.get(status.code, grpc.StatusCode.UNKNOWN)
    info: error_details_pb2.ErrorInfo | None = None
    retry_after_s: float | None = None
    violations: list[FieldViolation] = []
    for any_detail in status.details:
        # Unpack is False for a detail of another type; unknown types are skipped.
        candidate, retry, bad = (
            error_details_pb2.ErrorInfo(),
            error_details_pb2.RetryInfo(),
            error_details_pb2.BadRequest(),
        )
        if any_detail.Unpack(candidate):
            if candidate.domain == DOMAIN and info is None:
                info = candidate
        elif any_detail.Unpack(retry):
            retry_after_s = retry.retry_delay.ToNanoseconds() / 1e9
        elif any_detail.Unpack(bad):
            violations += (FieldViolation(v.field, v.description) for v in bad.field_violations)
    if retry_after_s is None:
        retry_ms = dict(trailing_metadata).get(RETRY_AFTER_MS_KEY)
        if retry_ms is not None:
            retry_after_s = int(retry_ms) / 1000
    details = ErrorDetails(
        metadata=dict(info.metadata) if info else {},
        retry_after_s=retry_after_s,
        field_violations=tuple(violations),
    )
    cls = class_for_reason(info.reason) if info else None
    if cls is None or cls.code != code:
        cls = _class_for_code(code, details)
    return cls.from_details(status.message, details)


def _class_for_code(code: grpc.StatusCode, details: ErrorDetails) -> type[ModelyardError]:
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimited if details.retry_after_s is not None else RequestTooLarge
    return _BY_CODE.get(code, ModelyardError)


def error_from_status(
    code: grpc.StatusCode, details: str, trailing_metadata: Trailers | None = None
) -> ModelyardError:
    """The error behind a failed call's code, details and trailers (see `error_from_details`).

    A ``grpc-status-details-bin`` trailer that disagrees with the code is ignored.
    """
    trailers = tuple(trailing_metadata or ())
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            if status.code == code.value[0]:
                return error_from_details(status, trailers)
    return error_from_details(status_pb2.Status(code=code.value[0], message=details), trailers)


def error_from_rpc(exc: grpc.RpcError) -> ModelyardError:
    """The modelyard error behind a failed call (blocking or ``grpc.aio``)."""
    call = cast(grpc.Call, exc)  # grpc raises objects that are both RpcError and Call
    trailers = tuple((key, value) for key, value in call.trailing_metadata() or ())
    return error_from_status(call.code(), call.details() or "", trailers)


@contextmanager
def remote_errors() -> Iterator[None]:
    """Raise a failed call inside the block as the modelyard error the server raised."""
    try:
        yield
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None
