"""The one exception hierarchy of modelyard.

Every class carries the gRPC status code it becomes at a service boundary. The
server interceptor (`modelyard.server.interceptor`) turns them into statuses and
the client (`error_from_status`) turns statuses back into the same classes, so a
caller in Python catches `ModelNotFound` whether the model was missing locally or
three hops away. The native module raises these classes too, never a bare
`Exception`.
"""

from __future__ import annotations

from typing import TypeVar

import grpc

# Trailing-metadata key that carries a rate limit's retry delay in milliseconds.
RETRY_AFTER_MS_KEY = "retry-after-ms"


class ModelyardError(Exception):
    """Base of every error modelyard raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """Extra trailers sent with the status (for example a retry delay)."""
        return ()


class InvalidRequest(ModelyardError):
    """The request is malformed or its values are out of range."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class RequestTooLarge(ModelyardError):
    """The request exceeds a configured size limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotFound(ModelyardError):
    """The thing asked for does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class ModelNotFound(NotFound):
    """No model with this id is known."""

    def __init__(self, model_id: str, where: str = "the catalog") -> None:
        super().__init__(f"model '{model_id}' is not in {where}")
        self.model_id = model_id


class AlreadyExists(ModelyardError):
    """An entity with this identity exists and the call may not replace it."""

    code = grpc.StatusCode.ALREADY_EXISTS


class RateLimited(ModelyardError):
    """A rate limit or quota rejected the request; retry after `retry_after_s`."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(f"{message}; retry after {retry_after_s:.3f}s")
        self.retry_after_s = retry_after_s

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((RETRY_AFTER_MS_KEY, str(max(1, round(self.retry_after_s * 1000)))),)


class NoSuitableModel(ModelyardError):
    """Selection found no candidate that meets the constraints."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class FailedPrecondition(ModelyardError):
    """The system is not in a state where the call can run (model not loaded...)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class BackendUnavailable(ModelyardError):
    """A backend service or upstream provider cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class ProviderError(ModelyardError):
    """An upstream provider answered with an error of its own."""

    code = grpc.StatusCode.UNKNOWN


class StreamTruncated(ProviderError):
    """An upstream ended a stream before it said it was finished.

    ABORTED, not OK: the caller holds a partial answer and must not take it for
    a complete one (llama.cpp's server does this when a second request
    interrupts the first).
    """

    code = grpc.StatusCode.ABORTED


class DeadlineExceeded(ModelyardError):
    """The request ran out of time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(ModelyardError):
    """The RPC is part of the contract but not built yet."""

    code = grpc.StatusCode.UNIMPLEMENTED


_BY_CODE: dict[grpc.StatusCode, type[ModelyardError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: BackendUnavailable,
    grpc.StatusCode.UNKNOWN: ProviderError,
    grpc.StatusCode.ABORTED: StreamTruncated,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def error_from_status(
    code: grpc.StatusCode,
    details: str,
    trailing_metadata: tuple[tuple[str, str | bytes], ...] | None = None,
) -> ModelyardError:
    """Rebuild the modelyard error a remote service raised from its status."""
    trailers = dict(trailing_metadata or ())
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_ms = trailers.get(RETRY_AFTER_MS_KEY)
        if retry_ms is not None:
            limited = _plain(RateLimited, details)  # the details already say the wait
            limited.retry_after_s = int(retry_ms) / 1000
            return limited
        return _plain(RequestTooLarge, details)
    if code == grpc.StatusCode.NOT_FOUND:
        return _plain(ModelNotFoundRemote, details)
    cls = _BY_CODE.get(code, ModelyardError)
    return _plain(cls, details)


class ModelNotFoundRemote(ModelNotFound):
    """`ModelNotFound` rebuilt from a NOT_FOUND status (the model id is in the text)."""


E = TypeVar("E", bound=ModelyardError)


def _plain(cls: type[E], details: str) -> E:
    """An instance of `cls` carrying `details` as they came, whatever its constructor adds."""
    err = cls.__new__(cls)
    ModelyardError.__init__(err, details)
    return err
