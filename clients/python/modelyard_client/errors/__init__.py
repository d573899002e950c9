"""The one exception hierarchy of modelyard, and how it crosses the wire.

Every class carries the gRPC status code it becomes at a service boundary and a
stable reason. The server interceptor (`modelyard.server.interceptor`) turns an
error into a ``google.rpc.Status`` (`to_status`) sent in the
``grpc-status-details-bin`` trailer, Google's richer error model; every caller
of a remote service (`modelyard_client`, the gateway's calls to backends and
the registry) turns it back with `error_from_rpc` into the same class with the
same attributes, so a caller catches `ModelNotFound` and reads its `model_id`
whether the model was missing locally or three hops away. The native module
raises these classes too, never a bare `Exception`.

What the status carries:

- ``google.rpc.ErrorInfo``: ``domain`` "modelyard", ``reason`` from the table
  below, ``metadata`` with the class's attributes (strings; lists as JSON).
- ``google.rpc.RetryInfo``: ``retry_delay`` of `RateLimited` and its subclasses
  (their `retry_after_s`), and of a `BackendUnavailable` whose upstream said
  when to retry (an HTTP 503's ``Retry-After``). Plain clients also get the
  ``retry-after-ms`` trailer, and ``rate-limit-scopes`` for `QuotaExceeded`.
- ``google.rpc.BadRequest``: one field violation for an `InvalidRequest` whose
  `field` is known (``params.max_tokens``), one per problem of a `ConfigError`
  (key path and message).

What it may say: every text crosses scrubbed of credentials first (the
configured keys, bearer tokens, key-shaped strings: `modelyard_client.scrub`), the
message in `cap_message`, metadata and field violations in `to_status`.

How big it may be (`_limits.py`; gRPC refuses received metadata over 8 KiB at
random, over 16 KiB always): the message crosses the wire cut at 1 KiB of
UTF-8 (`cap_message`), its head kept and ``… (N more characters)`` saying how
much was left out, in the status and in a batch item's error alike; field
violations take at most 1 KiB (a field's path 256 bytes, a description 512),
the first ones kept; ErrorInfo metadata at most 2 KiB. `AllModelsFailed`
fits its attempts in that by shortening the longest messages, then leaving
out the last attempts (``attempts_omitted``); any other metadata over the
bound loses its largest values, logged.

=========================  ===================  ========================  ==========================
class                      code                 reason                    metadata
=========================  ===================  ========================  ==========================
ModelyardError             INTERNAL             INTERNAL
InvalidRequest             INVALID_ARGUMENT     INVALID_REQUEST
ProviderRefusal            INVALID_ARGUMENT     PROVIDER_REFUSED          provider_code
ContextLengthExceeded      INVALID_ARGUMENT     CONTEXT_LENGTH_EXCEEDED   provider_code
ContentRejected            INVALID_ARGUMENT     CONTENT_REJECTED          provider_code
ConfigError                INVALID_ARGUMENT     INVALID_CONFIG            source, lines
ConfigFileUnreadable       INVALID_ARGUMENT     CONFIG_FILE_UNREADABLE    source, lines
RequestTooLarge            RESOURCE_EXHAUSTED   REQUEST_TOO_LARGE
QuotaNeverFits             RESOURCE_EXHAUSTED   QUOTA_NEVER_FITS          limits, tokens
NotFound                   NOT_FOUND            NOT_FOUND
ModelNotFound              NOT_FOUND            MODEL_NOT_FOUND           model_id
AlreadyExists              ALREADY_EXISTS       ALREADY_EXISTS
RateLimited                RESOURCE_EXHAUSTED   RATE_LIMITED
QuotaExceeded              RESOURCE_EXHAUSTED   QUOTA_EXCEEDED            limits, scopes, tokens
Overloaded                 RESOURCE_EXHAUSTED   OVERLOADED                scope
FailedPrecondition         FAILED_PRECONDITION  FAILED_PRECONDITION
NoSuitableModel            FAILED_PRECONDITION  NO_SUITABLE_MODEL
WatcherFellBehind          FAILED_PRECONDITION  WATCHER_FELL_BEHIND
MemoryBudgetExceeded       FAILED_PRECONDITION  MEMORY_BUDGET_EXCEEDED    model_id, sizes_mb,
                                                                          budget_mb, max_loaded
BackendUnavailable         UNAVAILABLE          BACKEND_UNAVAILABLE
AllModelsFailed            UNAVAILABLE          ALL_MODELS_FAILED         attempts, attempts_omitted
RateLimiterUnavailable     UNAVAILABLE          RATE_LIMITER_UNAVAILABLE
ProviderError              UNKNOWN              PROVIDER_ERROR
ProviderAuthFailed         UNAUTHENTICATED      PROVIDER_AUTH_FAILED
ProviderAccessDenied       PERMISSION_DENIED    PROVIDER_ACCESS_DENIED
ProviderProtocolError      UNKNOWN              PROVIDER_PROTOCOL_ERROR
StreamTruncated            ABORTED              STREAM_TRUNCATED
DeadlineExceeded           DEADLINE_EXCEEDED    DEADLINE_EXCEEDED
FirstTokenTimeout          DEADLINE_EXCEEDED    FIRST_TOKEN_TIMEOUT
StreamStalled              DEADLINE_EXCEEDED    STREAM_STALLED
Unimplemented              UNIMPLEMENTED        UNIMPLEMENTED
CatalogFileError           INTERNAL             CATALOG_FILE_INVALID
Unauthenticated            UNAUTHENTICATED      UNAUTHENTICATED
PermissionDenied           PERMISSION_DENIED    PERMISSION_DENIED
BudgetExceeded             RESOURCE_EXHAUSTED   BUDGET_EXCEEDED           scope, window, budget_usd,
                                                                          spent_usd, resets_at
ContentBlocked             INVALID_ARGUMENT     CONTENT_BLOCKED           rule, stage
OutputSchemaMismatch       ABORTED              OUTPUT_SCHEMA_MISMATCH    schema_path, instance_path
TooManyStreams             RESOURCE_EXHAUSTED   TOO_MANY_STREAMS          key, limit
SlowReaderCut              ABORTED              SLOW_READER               timeout_s
=========================  ===================  ========================  ==========================

JSON metadata: ``attempts`` is a list of ``{"model_id", "code", "reason",
"message"}``, one per model of the fallback chain in the order tried (an
`Attempt` each; ``attempts_omitted``, sent only when not 0, how many more
the bound left out); ``limits`` a list of ``{"scope", "label", "limit",
"per_minute", "wait_s"}`` (a `RefusedLimit` each; ``wait_s`` null: never
fits); ``sizes_mb`` an object of catalog id → estimated MiB, the model asked
for first (a `MemoryBudgetExceeded`); ``lines`` the problems' line numbers,
in the order of the field violations (null: unknown).

An unexpected exception becomes INTERNAL with reason INTERNAL and the message
``internal error in <rpc>``: nothing of the exception leaves the server. A
status without a modelyard ErrorInfo (another server, the transport itself)
or with a reason this version does not know is rebuilt by its code:
INVALID_ARGUMENT `InvalidRequest`, NOT_FOUND `NotFound`, RESOURCE_EXHAUSTED
`RateLimited` when a retry delay came with it and `RequestTooLarge` otherwise,
ALREADY_EXISTS, FAILED_PRECONDITION, UNAVAILABLE, UNKNOWN, ABORTED,
DEADLINE_EXCEEDED and UNIMPLEMENTED the class of that code in the table, any
other code `ModelyardError`.
"""

from modelyard_client.errors._details import (
    Attempt,
    ConfigProblem,
    ErrorDetails,
    FieldViolation,
    RefusedLimit,
)
from modelyard_client.errors._hierarchy import (
    RATE_LIMIT_SCOPES_KEY,
    RETRY_AFTER_MS_KEY,
    AllModelsFailed,
    AlreadyExists,
    BackendUnavailable,
    CatalogFileError,
    ConfigError,
    ConfigFileUnreadable,
    ContentRejected,
    ContextLengthExceeded,
    DeadlineExceeded,
    FailedPrecondition,
    FirstTokenTimeout,
    InvalidRequest,
    MemoryBudgetExceeded,
    ModelNotFound,
    ModelyardError,
    NoSuitableModel,
    NotFound,
    Overloaded,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    ProviderRefusal,
    QuotaExceeded,
    QuotaNeverFits,
    RateLimited,
    RateLimiterUnavailable,
    RequestTooLarge,
    StreamStalled,
    StreamTruncated,
    Unimplemented,
    WatcherFellBehind,
    class_for_reason,
    registered_classes,
)
from modelyard_client.errors._limits import MESSAGE_LIMIT_BYTES, METADATA_LIMIT_BYTES, cap_message
from modelyard_client.errors._security import (
    BudgetExceeded,
    ContentBlocked,
    OutputSchemaMismatch,
    PermissionDenied,
    SlowReaderCut,
    TooManyStreams,
    Unauthenticated,
)
from modelyard_client.errors._wire import (
    DOMAIN,
    STATUS_DETAILS_KEY,
    error_from_details,
    error_from_rpc,
    error_from_status,
    remote_errors,
    to_status,
)

__all__ = [  # noqa: RUF022 (grouped by role, sorted within a group)
    # the hierarchy
    "AllModelsFailed",
    "AlreadyExists",
    "BackendUnavailable",
    "BudgetExceeded",
    "CatalogFileError",
    "ConfigError",
    "ConfigFileUnreadable",
    "ContentBlocked",
    "ContentRejected",
    "ContextLengthExceeded",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FirstTokenTimeout",
    "InvalidRequest",
    "MemoryBudgetExceeded",
    "ModelNotFound",
    "ModelyardError",
    "NoSuitableModel",
    "NotFound",
    "OutputSchemaMismatch",
    "Overloaded",
    "PermissionDenied",
    "ProviderAccessDenied",
    "ProviderAuthFailed",
    "ProviderError",
    "ProviderProtocolError",
    "ProviderRefusal",
    "QuotaExceeded",
    "QuotaNeverFits",
    "RateLimited",
    "RateLimiterUnavailable",
    "RequestTooLarge",
    "SlowReaderCut",
    "StreamStalled",
    "StreamTruncated",
    "TooManyStreams",
    "Unauthenticated",
    "Unimplemented",
    "WatcherFellBehind",
    # the data the errors carry
    "Attempt",
    "ConfigProblem",
    "ErrorDetails",
    "FieldViolation",
    "RefusedLimit",
    # the wire
    "DOMAIN",
    "MESSAGE_LIMIT_BYTES",
    "METADATA_LIMIT_BYTES",
    "RATE_LIMIT_SCOPES_KEY",
    "RETRY_AFTER_MS_KEY",
    "STATUS_DETAILS_KEY",
    "cap_message",
    "class_for_reason",
    "error_from_details",
    "error_from_rpc",
    "error_from_status",
    "registered_classes",
    "remote_errors",
    "to_status",
]
