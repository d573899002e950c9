"""Security errors: a caller without valid credentials, without the right to do this, or
over its budget.

Distinct from `ProviderAuthFailed` / `ProviderAccessDenied`, which are about the
provider's key the gateway holds: these are about the caller's own modelyard key.
"""

from __future__ import annotations

import grpc

from modelyard_client.errors._details import ErrorDetails
from modelyard_client.errors._hierarchy import InvalidRequest, ModelyardError, RateLimited


class Unauthenticated(ModelyardError):
    """The call presented no modelyard API key, or one that is unknown, expired or revoked.

    One message for every case: which one it was is not told to the caller, so a
    guessed key learns nothing (`modelyard.security.authn`).
    """

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(ModelyardError):
    """The caller's key is valid but lacks the right: a scope for this RPC, or this model."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class BudgetExceeded(RateLimited):
    """A spend budget (US dollars per UTC day or month) cannot take this request.

    The request would have reserved its maximum cost (the model's prices at the
    input estimate and `max_tokens`) and the budget of `scope` (``key:<id>`` or
    ``team:<name>``) for `window` ("day" or "month") has not that much left:
    `spent_usd` of `budget_usd` is spent or reserved. It resets at `resets_at`
    (ISO 8601, UTC: the next 00:00 UTC, or the 1st of the next month), which is
    also its `retry_after_s`. Raised before any backend call
    (`modelyard.gateway.limits`). A `RateLimited`: callers that back off on
    rate limits back off here too; lowering `max_tokens` may fit what is left.
    """

    reason = "BUDGET_EXCEEDED"

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        window: str,
        budget_usd: float,
        spent_usd: float,
        resets_at: str,
        retry_after_s: float,
    ) -> None:
        ModelyardError.__init__(self, message)  # the message says when it resets, not "retry"
        self.retry_after_s = retry_after_s
        self.scope = scope
        self.window = window
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self.resets_at = resets_at

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(
            metadata={
                "scope": self.scope,
                "window": self.window,
                "budget_usd": repr(self.budget_usd),
                "spent_usd": repr(self.spent_usd),
                "resets_at": self.resets_at,
            },
            retry_after_s=self.retry_after_s,
        )

    def _restore(self, details: ErrorDetails) -> None:
        super()._restore(details)
        self.scope = details.metadata.get("scope", "")
        self.window = details.metadata.get("window", "")
        self.budget_usd = float(details.metadata.get("budget_usd", "0"))
        self.spent_usd = float(details.metadata.get("spent_usd", "0"))
        self.resets_at = details.metadata.get("resets_at", "")


class ContentBlocked(InvalidRequest):
    """A content filter rule (`security.guardrails.deny_rules`) matched the input or the answer.

    `rule` is the rule's name, `stage` "input" (refused before any backend call)
    or "output" (the answer is cut where the rule matched); the matched text is
    not repeated: it is what the rule keeps out. `field` names the input field.
    """

    reason = "CONTENT_BLOCKED"

    def __init__(self, message: str, *, rule: str, stage: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.rule = rule
        self.stage = stage

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(
            metadata={"rule": self.rule, "stage": self.stage},
            field_violations=self.field_violations(),
        )

    def _restore(self, details: ErrorDetails) -> None:
        super()._restore(details)
        self.rule = details.metadata.get("rule", "")
        self.stage = details.metadata.get("stage", "")


class OutputSchemaMismatch(ModelyardError):
    """The finished answer does not follow the request's `params.response_schema_json`.

    ABORTED as a truncated stream: the caller may hold the answer's text, but not
    an answer to use; a retry may pass (models vary). `schema_path` is where in the
    schema the failed keyword sits (``properties/age/type``), `instance_path` where
    in the answer (``$.age``; ``$`` the whole answer, also when it is not JSON).
    """

    code = grpc.StatusCode.ABORTED
    reason = "OUTPUT_SCHEMA_MISMATCH"

    def __init__(self, message: str, *, schema_path: str, instance_path: str) -> None:
        super().__init__(message)
        self.schema_path = schema_path
        self.instance_path = instance_path

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(
            metadata={"schema_path": self.schema_path, "instance_path": self.instance_path}
        )

    def _restore(self, details: ErrorDetails) -> None:
        self.schema_path = details.metadata.get("schema_path", "")
        self.instance_path = details.metadata.get("instance_path", "")


class TooManyStreams(ModelyardError):
    """The caller's key already holds `limit` open streams (`GenerateStream`) on this gateway.

    `security.input_limits.max_streams_per_key`: one key cannot hold every backend
    slot open by opening streams and reading them slowly. `key` is the key's id
    (or its fingerprint when authentication is off), never the key. Refused before
    any backend call; a stream that ends frees its place at once.
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "TOO_MANY_STREAMS"

    def __init__(self, message: str, *, key: str, limit: int) -> None:
        super().__init__(message)
        self.key = key
        self.limit = limit

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(metadata={"key": self.key, "limit": str(self.limit)})

    def _restore(self, details: ErrorDetails) -> None:
        self.key = details.metadata.get("key", "")
        self.limit = int(details.metadata.get("limit", "0") or 0)


class SlowReaderCut(ModelyardError):
    """A stream's client took nothing for `timeout_s` seconds: the gateway cut it.

    `security.input_limits.slow_reader_timeout`: a client that stops reading holds
    a backend call (and what it generates) for as long as it likes otherwise. The
    gateway ends the backend call at once; the caller reads this status after the
    chunks it had not read yet. ABORTED, as any end once part of an answer was sent.
    """

    code = grpc.StatusCode.ABORTED
    reason = "SLOW_READER"

    def __init__(self, message: str, *, timeout_s: float) -> None:
        super().__init__(message)
        self.timeout_s = timeout_s

    def wire_details(self) -> ErrorDetails:
        return ErrorDetails(metadata={"timeout_s": repr(self.timeout_s)})

    def _restore(self, details: ErrorDetails) -> None:
        self.timeout_s = float(details.metadata.get("timeout_s", "0") or 0)
