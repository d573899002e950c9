"""The exception classes, each with its gRPC status code and its wire reason.

A class declares `code` (the status it becomes), `reason` (the stable
``google.rpc.ErrorInfo`` reason that names it on the wire) and, when it carries
attributes, how they travel: `wire_details` says what to send beyond the
message, `_restore` sets the attributes back from what arrived. Declaring a
class registers its reason; `class_for_reason` is the one lookup.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import grpc

from modelyard_client.errors._details import (
    Attempt,
    ConfigProblem,
    ErrorDetails,
    FieldViolation,
    RefusedLimit,
    attempts_json,
    limits_from_json,
    limits_json,
)
from modelyard_client.errors._limits import METADATA_LIMIT_BYTES, shorten

# Trailing-metadata key that carries a rate limit's retry delay in milliseconds
# (for plain clients; ours read google.rpc.RetryInfo).
RETRY_AFTER_MS_KEY = "retry-after-ms"
# Trailing-metadata key naming the scopes whose limits refused ("model:x,key:anonymous").
RATE_LIMIT_SCOPES_KEY = "rate-limit-scopes"


_BY_REASON: dict[str, type[ModelyardError]] = {}


def class_for_reason(reason: str) -> type[ModelyardError] | None:
    """The class that declared `reason`, or None for a reason this version does not know."""
    return _BY_REASON.get(reason)


def registered_classes() -> list[type[ModelyardError]]:
    """Every class with a reason, in declaration order."""
    return list(_BY_REASON.values())


class ModelyardError(Exception):
    """Base of every error modelyard raises on purpose (and what an unexpected one becomes)."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # An inherited reason would send the subclass over the wire as its parent.
        if "reason" not in cls.__dict__:
            raise TypeError(f"{cls.__name__} must declare its own `reason`")
        taken = _BY_REASON.get(cls.reason)
        if taken is not None:
            raise TypeError(f"{cls.__name__}: reason {cls.reason!r} is {taken.__name__}'s")
        _BY_REASON[cls.reason] = cls

    def wire_details(self) -> ErrorDetails:
        """What the status carries beyond code and message so a client can rebuild this error."""
        return ErrorDetails()

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """Plain trailers sent with the status, for clients that read no details."""
        return ()

    @classmethod
    def from_details(cls, message: str, details: ErrorDetails) -> Self:
        """This error as a remote service raised it: its message verbatim, its attributes back.

        Constructors compose their message from parts (a model id, a list of
        limits); a rebuilt error keeps the text the server sent instead, so it
        is built without `__init__` and `_restore` sets the attributes.
        """
        err = cls.__new__(cls)
        ModelyardError.__init__(err, message)
        err._restore(details)
        return err

    def _restore(self, details: ErrorDetails) -> None:
        """Set the attributes `wire_details` sent (classes with attributes override both)."""


_BY_REASON[ModelyardError.reason] = ModelyardError  # subclasses register in __init_subclass__


class InvalidRequest(ModelyardError):
    """The request is malformed or its values are out of range.

    `field` names the wrong field (``params.max_tokens``) when the check knows
    it; it travels as a ``BadRequest`` field violation.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def field_violations(self) -> tuple[FieldViolation, ...]:
        return (FieldViolation(self.field, self.message),) if self.field else ()

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(field_violations=self.field_violations())

    def _restore(self, details: ErrorDetails) -> None:
        violations = details.field_violations
        self.field = violations[0].field if len(violations) == 1 else None


class ConfigError(InvalidRequest):
    """The configuration is invalid; `problems` holds every mistake found, not only the first.

    On the wire each problem is a field violation (key path, message); the
    source file and the line numbers ride in ``ErrorInfo.metadata``.
    """

    reason = "INVALID_CONFIG"

    def __init__(self, problems: Sequence[ConfigProblem], source: str | None = None) -> None:
        # In file order, which is how people fix them; problems without a line last.
        self.problems = tuple(sorted(problems, key=lambda p: p.line or 1 << 62))
        self.source = source
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per problem, ``FILE:LINE: path: message`` when the place is known."""
        out = []
        for problem in self.problems:
            where = self.source or ""
            if where and problem.line is not None:
                where = f"{where}:{problem.line}"
            out.append(f"{where}: {problem}" if where else str(problem))
        return out

    def field_violations(self) -> tuple[FieldViolation, ...]:
        return tuple(FieldViolation(p.path, p.message) for p in self.problems)

    def wire_details(self) -> ErrorDetails:
        metadata = {"lines": json.dumps([p.line for p in self.problems])}
        if self.source is not None:
            metadata["source"] = self.source
        return ErrorDetails(metadata=metadata, field_violations=self.field_violations())

    def _restore(self, details: ErrorDetails) -> None:
        lines = json.loads(details.metadata.get("lines", "[]"))
        violations = details.field_violations
        if len(lines) != len(violations):
            lines = [None] * len(violations)
        self.field = None
        self.problems = tuple(
            ConfigProblem(v.field, v.description, line)
            for v, line in zip(violations, lines, strict=True)
        )
        self.source = details.metadata.get("source")


class ConfigFileUnreadable(ConfigError):
    """The file is missing or cannot be read (as opposed to read and found wrong)."""

    reason = "CONFIG_FILE_UNREADABLE"


class ProviderRefusal(InvalidRequest):
    """A provider refused the input itself; retrying it on the same model cannot help.

    `provider_code` is the provider's own code for it (OpenAI's
    ``context_length_exceeded``, ``content_policy_violation``), carried in
    ErrorInfo metadata; empty when the provider gave none.
    """

    reason = "PROVIDER_REFUSED"

    def __init__(self, message: str, provider_code: str = "", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.provider_code = provider_code

    def wire_details(self) -> ErrorDetails:
        metadata = {"provider_code": self.provider_code} if self.provider_code else {}
        return ErrorDetails(metadata=metadata, field_violations=self.field_violations())

    def _restore(self, details: ErrorDetails) -> None:
        super()._restore(details)
        self.provider_code = details.metadata.get("provider_code", "")


class ContextLengthExceeded(ProviderRefusal):
    """The input and the answer's budget do not fit the model's context window: known
    before the call, or answered so by the provider. A model with a larger window may
    serve it; this one never will."""

    reason = "CONTEXT_LENGTH_EXCEEDED"


class ContentRejected(ProviderRefusal):
    """The provider's content policy refused the input (or the answer it would give)."""

    reason = "CONTENT_REJECTED"


class RequestTooLarge(ModelyardError):
    """The request exceeds a configured size limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "REQUEST_TOO_LARGE"


class QuotaNeverFits(RequestTooLarge):
    """The request needs more than a full bucket holds: waiting will not help.

    `limits` are the limits it can never fit; `tokens` what it reserves.
    """

    reason = "QUOTA_NEVER_FITS"

    def __init__(self, limits: Sequence[RefusedLimit], tokens: int) -> None:
        self.limits = tuple(x for x in limits if math.isinf(x.wait_s))
        self.tokens = tokens
        super().__init__(
            f"this request reserves {tokens} tokens (estimated input + max_tokens), more than "
            f"{', '.join(map(str, self.limits))} ever allows at once: "
            "lower max_tokens or shorten the input"
        )

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(
            metadata={"limits": limits_json(self.limits), "tokens": str(self.tokens)}
        )

    def _restore(self, details: ErrorDetails) -> None:
        self.limits = limits_from_json(details.metadata.get("limits", "[]"))
        self.tokens = int(details.metadata.get("tokens", "0"))


class NotFound(ModelyardError):
    """The thing asked for does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


# A ModelNotFound's `model_id` in ErrorInfo metadata, at most: half the bound.
MODEL_ID_LIMIT_BYTES = METADATA_LIMIT_BYTES // 2


class ModelNotFound(NotFound):
    """No model with this id is known (`model_id`; `where` says which list was searched)."""

    reason = "MODEL_NOT_FOUND"

    def __init__(self, model_id: str, where: str = "the catalog") -> None:
        super().__init__(f"model '{model_id}' is not in {where}")
        self.model_id = model_id

    @classmethod
    def none_known(cls, attempts: Sequence[Attempt]) -> Self:
        """No model of a fallback chain is known: `model_id` is the first one asked for,
        the message names each with where it was missing."""
        err = cls.__new__(cls)
        NotFound.__init__(
            err,
            "no model of the fallback chain is known: " + " | ".join(a.message for a in attempts),
        )
        err.model_id = attempts[0].model_id
        return err

    def wire_details(self) -> ErrorDetails:
        # The id is the caller's: a huge one arrives shortened (no catalog id is over
        # 255 characters), not left out with a warning logged for every such call.
        return ErrorDetails(metadata={"model_id": shorten(self.model_id, MODEL_ID_LIMIT_BYTES)})

    def _restore(self, details: ErrorDetails) -> None:
        self.model_id = details.metadata.get("model_id", "")


class AlreadyExists(ModelyardError):
    """An entity with this identity exists and the call may not replace it."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class RateLimited(ModelyardError):
    """A rate limit or quota rejected the request; retry after `retry_after_s`."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(f"{message}; retry after {retry_after_s:.3f}s")
        self.retry_after_s = retry_after_s

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(retry_after_s=self.retry_after_s)

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return _retry_trailer(self.retry_after_s)

    def _restore(self, details: ErrorDetails) -> None:
        self.retry_after_s = details.retry_after_s or 0.0  # to the nanosecond (RetryInfo)


def _retry_trailer(retry_after_s: float | None) -> tuple[tuple[str, str], ...]:
    """The plain ``retry-after-ms`` trailer (at least 1 ms), or nothing without a delay."""
    if retry_after_s is None or not math.isfinite(retry_after_s):
        return ()
    return ((RETRY_AFTER_MS_KEY, str(max(1, round(retry_after_s * 1000)))),)


class Overloaded(RateLimited):
    """A bounded queue was full: the call was refused before anything was sent for it.

    `scope` names the queue: ``upstream:<backend name>`` (the calls one
    upstream runs at once and those waiting for it: ``backends.<name>.
    max_concurrency`` and ``max_queue``) or ``gateway`` (every call one gateway
    holds: ``gateway.max_in_flight``). A `RateLimited`, so a caller that backs
    off on rate limits backs off here too, for `retry_after_s`: the admission's
    estimate of when room frees up (`modelyard.backends.admission`).
    """

    reason = "OVERLOADED"

    def __init__(self, message: str, retry_after_s: float, scope: str) -> None:
        super().__init__(message, retry_after_s)
        self.scope = scope

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(metadata={"scope": self.scope}, retry_after_s=self.retry_after_s)

    def _restore(self, details: ErrorDetails) -> None:
        super()._restore(details)
        self.scope = details.metadata.get("scope", "")


class QuotaExceeded(RateLimited):
    """Rate limits refused the request; retry after the longest of their waits.

    `limits` are every refusing limit (the message names them all); `tokens`
    what the request reserves.
    """

    reason = "QUOTA_EXCEEDED"

    def __init__(self, limits: Sequence[RefusedLimit], tokens: int) -> None:
        self.limits = tuple(limits)
        self.tokens = tokens
        super().__init__(
            f"rate limit reached: {', '.join(map(str, self.limits))} "
            f"(this request reserves 1 request and {tokens} tokens)",
            max(x.wait_s for x in self.limits),
        )

    def scopes(self) -> str:
        """The refusing scopes, once each, comma-separated ("model:x,key:anonymous")."""
        return ",".join(dict.fromkeys(x.scope for x in self.limits))

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(
            metadata={
                "limits": limits_json(self.limits),
                "scopes": self.scopes(),
                "tokens": str(self.tokens),
            },
            retry_after_s=self.retry_after_s,
        )

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (*super().trailing_metadata(), (RATE_LIMIT_SCOPES_KEY, self.scopes()))

    def _restore(self, details: ErrorDetails) -> None:
        super()._restore(details)
        self.limits = limits_from_json(details.metadata.get("limits", "[]"))
        self.tokens = int(details.metadata.get("tokens", "0"))
        if self.limits:  # exact, where RetryInfo rounds to nanoseconds
            self.retry_after_s = max(x.wait_s for x in self.limits)


class FailedPrecondition(ModelyardError):
    """The system is not in a state where the call can run (model not loaded...)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class NoSuitableModel(ModelyardError):
    """Selection found no candidate that meets the constraints."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "NO_SUITABLE_MODEL"


class WatcherFellBehind(FailedPrecondition):
    """A catalog watcher fell behind: it read too slowly and was cut off, or resumes from a
    revision the change log no longer keeps. The message says where to resume."""

    reason = "WATCHER_FELL_BEHIND"


class MemoryBudgetExceeded(FailedPrecondition):
    """A local backend cannot hold a model beside the ones that must stay loaded with it.

    A backend's loaded models share a budget: `budget_mb` MiB of memory
    (``hot_swap.memory_budget_mb``) and at most `max_loaded` models
    (``backends.<name>.max_loaded``). `sizes_mb` is the estimated size, in MiB
    rounded up, of `model_id` (first) and of each model a ``Load`` asked to keep
    loaded beside it (a swap's current version), in that order; only `model_id`
    when it is larger than the whole budget. The backend refused rather than
    evict one of them, and nothing was unloaded.

    FAILED_PRECONDITION, not RESOURCE_EXHAUSTED: the same call cannot succeed on a
    retry until the state changes (a model unloaded, the budget raised), and a
    RESOURCE_EXHAUSTED without a retry delay reads as a request too large.
    """

    reason = "MEMORY_BUDGET_EXCEEDED"

    def __init__(
        self, model_id: str, sizes_mb: Mapping[str, int], budget_mb: int, max_loaded: int
    ) -> None:
        self.model_id = model_id
        self.sizes_mb = dict(sizes_mb)
        self.budget_mb = budget_mb
        self.max_loaded = max_loaded
        super().__init__(self._explain())

    def _explain(self) -> str:
        sized = {m: f"{m} ({mb} MiB)" for m, mb in self.sizes_mb.items()}
        asked = sized.get(self.model_id, self.model_id)
        beside = [s for m, s in sized.items() if m != self.model_id]
        if not beside:
            return f"{asked} is larger than the whole memory budget of {self.budget_mb} MiB"
        if len(sized) > self.max_loaded:
            return (
                f"{asked} cannot load beside {', '.join(beside)}: this backend holds at most "
                f"{self.max_loaded} loaded model(s) (max_loaded)"
            )
        return (
            f"{asked} cannot load beside {', '.join(beside)}: together "
            f"{sum(self.sizes_mb.values())} MiB, over the memory budget of {self.budget_mb} MiB"
        )

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(
            metadata={
                "model_id": self.model_id,
                "sizes_mb": json.dumps(self.sizes_mb),
                "budget_mb": str(self.budget_mb),
                "max_loaded": str(self.max_loaded),
            }
        )

    def _restore(self, details: ErrorDetails) -> None:
        self.model_id = details.metadata.get("model_id", "")
        self.sizes_mb = {
            str(m): int(mb) for m, mb in json.loads(details.metadata.get("sizes_mb", "{}")).items()
        }
        self.budget_mb = int(details.metadata.get("budget_mb", "0"))
        self.max_loaded = int(details.metadata.get("max_loaded", "0"))


class BackendUnavailable(ModelyardError):
    """A backend service or upstream provider cannot be reached, or says it cannot serve now.

    `retry_after_s` is set when the upstream said when to come back (an HTTP
    503's ``Retry-After``); it travels as ``RetryInfo``. None sends none.
    """

    code = grpc.StatusCode.UNAVAILABLE
    reason = "BACKEND_UNAVAILABLE"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        if retry_after_s is not None:
            message = f"{message}; retry after {retry_after_s:.3f}s"
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(retry_after_s=self.retry_after_s)

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return _retry_trailer(self.retry_after_s)

    def _restore(self, details: ErrorDetails) -> None:
        self.retry_after_s = details.retry_after_s


class AllModelsFailed(BackendUnavailable):
    """Every model in the fallback chain failed before streaming began; `attempts`, in order.

    UNAVAILABLE even when some of the models are unknown (their attempts say
    NOT_FOUND): the others may serve on a retry. A chain of unknown models
    only is `ModelNotFound.none_known`.

    On the wire the attempts share the metadata bound (2 KiB): the longest
    messages are shortened first (``… (N more characters)``), and should the
    model ids alone not fit, the last attempts are left out and `omitted`
    counts them (0 otherwise).
    """

    reason = "ALL_MODELS_FAILED"

    def __init__(self, attempts: Sequence[Attempt]) -> None:
        self.attempts = tuple(attempts)
        self.omitted = 0
        super().__init__(
            "every model failed: " + " | ".join(f"{a.model_id}: {a.message}" for a in self.attempts)
        )

    def wire_details(self) -> ErrorDetails:
        attempts, omitted = attempts_json(self.attempts, METADATA_LIMIT_BYTES - 64)
        metadata = {"attempts": attempts}
        if omitted:
            metadata["attempts_omitted"] = str(omitted)
        return ErrorDetails(metadata=metadata)

    def _restore(self, details: ErrorDetails) -> None:
        super()._restore(details)
        self.attempts = tuple(
            Attempt(**a) for a in json.loads(details.metadata.get("attempts", "[]"))
        )
        self.omitted = int(details.metadata.get("attempts_omitted", "0"))


class RateLimiterUnavailable(ModelyardError):
    """The shared rate-limit store cannot be reached and the policy is to refuse (fail_closed)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "RATE_LIMITER_UNAVAILABLE"


class ProviderError(ModelyardError):
    """An upstream provider answered with an error of its own."""

    code = grpc.StatusCode.UNKNOWN
    reason = "PROVIDER_ERROR"


class ProviderAuthFailed(ProviderError):
    """An upstream did not accept the API key the gateway holds for it (HTTP 401).

    UNAUTHENTICATED, the code of a refused credential (issue 9). The credential
    is the provider's key in the gateway's configuration, not the caller's: the
    reason (PROVIDER_AUTH_FAILED) and the message say so, and a client must not
    drop or renew its own token over it. Retrying cannot help until an operator
    fixes the key.
    """

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "PROVIDER_AUTH_FAILED"


class ProviderAccessDenied(ProviderAuthFailed):
    """An upstream accepted the gateway's API key for it but refused it this call (HTTP 403).

    PERMISSION_DENIED, with `ProviderAuthFailed`'s caution: the provider's key
    lacks the permission (a model, a region), not the caller.
    """

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PROVIDER_ACCESS_DENIED"


class ProviderProtocolError(ProviderError):
    """An upstream answered what its wire format does not allow (a malformed SSE event).

    UNKNOWN, gRPC's code for a fault whose cause lies in another system, as for
    every `ProviderError`; the reason says which fault: the provider broke its
    protocol. Not INTERNAL, which is modelyard's own fault and carries no
    detail, nor STREAM_TRUNCATED: the stream did not end early, it went wrong.
    """

    reason = "PROVIDER_PROTOCOL_ERROR"


class StreamTruncated(ProviderError):
    """An upstream ended a stream before it said it was finished.

    ABORTED, not OK: the caller holds a partial answer and must not take it for
    a complete one (llama.cpp's server does this when a second request
    interrupts the first).
    """

    code = grpc.StatusCode.ABORTED
    reason = "STREAM_TRUNCATED"


class DeadlineExceeded(ModelyardError):
    """The request ran out of time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class FirstTokenTimeout(DeadlineExceeded):
    """A model sent nothing within its time to first token: a silent upstream, failed
    over rather than retried on the same route."""

    reason = "FIRST_TOKEN_TIMEOUT"


class StreamStalled(DeadlineExceeded):
    """A stream that had started sent nothing for longer than its stall deadline."""

    reason = "STREAM_STALLED"


class Unimplemented(ModelyardError):
    """The RPC is part of the contract but not built yet."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "UNIMPLEMENTED"


class CatalogFileError(ModelyardError, ValueError):
    """The API-provider data file breaks its format; the message names the key path."""

    reason = "CATALOG_FILE_INVALID"
