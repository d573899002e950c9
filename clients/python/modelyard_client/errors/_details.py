"""The plain data an error carries, and how its lists travel as JSON.

`ErrorDetails` is what a status holds beyond its code and message; the rest
are attributes of particular classes (`ConfigError.problems`,
`QuotaExceeded.limits`, `AllModelsFailed.attempts`), kept here so the classes'
module is about the classes and their wire reasons.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from modelyard_client.errors._limits import shorten, utf8_size

if TYPE_CHECKING:
    from modelyard_client.errors._hierarchy import ModelyardError


@dataclass(frozen=True)
class FieldViolation:
    """One wrong request field (a path such as ``params.max_tokens``) and what is wrong with it."""

    field: str
    description: str


@dataclass(frozen=True)
class ErrorDetails:
    """What a status carries beyond its code and message, as plain data.

    `metadata` becomes ``ErrorInfo.metadata``, `retry_after_s` a ``RetryInfo``
    and `field_violations` a ``BadRequest`` (see `modelyard_client.errors`).
    """

    metadata: Mapping[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None
    field_violations: tuple[FieldViolation, ...] = ()


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake: the dotted key path (``model_system.backends.ollama.models[1]``) and why."""

    path: str
    message: str
    line: int | None = None  # 1-based line in the source file, when known

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class RefusedLimit:
    """One rate limit that refused a request, as plain data (the wire carries these)."""

    scope: str  # whose budget: "model:openai/gpt-4o", "provider:openai", "key:<digest>"
    label: str  # how messages name the scope: "model 'openai/gpt-4o'"
    limit: str  # "requests_per_minute" or "tokens_per_minute"
    per_minute: float
    wait_s: float  # math.inf: never (the request needs more than the bucket ever holds)

    @property
    def scope_kind(self) -> str:
        """The scope's kind: "key", "model" or "provider"."""
        return self.scope.partition(":")[0]

    def __str__(self) -> str:
        return f"{self.label} {self.limit}={self.per_minute:g}"


def limits_json(limits: Sequence[RefusedLimit]) -> str:
    # JSON has no infinity: a limit that never fits waits `null`.
    return json.dumps(
        [{**asdict(x), "wait_s": x.wait_s if math.isfinite(x.wait_s) else None} for x in limits]
    )


def limits_from_json(text: str) -> tuple[RefusedLimit, ...]:
    return tuple(
        RefusedLimit(**{**x, "wait_s": math.inf if x["wait_s"] is None else x["wait_s"]})
        for x in json.loads(text)
    )


@dataclass(frozen=True)
class Attempt:
    """How one model of a fallback chain failed: its id, its error's code, reason and message."""

    model_id: str
    code: str  # the gRPC status code's name: "UNAVAILABLE"
    reason: str  # the error's reason: "BACKEND_UNAVAILABLE"
    message: str

    @classmethod
    def of(cls, model_id: str, err: ModelyardError) -> Attempt:
        return cls(model_id, err.code.name, err.reason, err.message)


# Below this many bytes a message says too little: leave the later attempts out instead.
_LEAST_ATTEMPT_MESSAGE = 64


def attempts_json(attempts: Sequence[Attempt], budget: int) -> tuple[str, int]:
    """The attempts as a JSON list within `budget` bytes, and how many were left out."""
    for kept in range(len(attempts), 0, -1):
        head = attempts[:kept]
        bare = utf8_size(_dumps([replace(a, message="") for a in head]))
        room = budget - bare
        while room >= _LEAST_ATTEMPT_MESSAGE * kept:
            cap = _fair_share([utf8_size(a.message) for a in head], room)
            text = _dumps([replace(a, message=shorten(a.message, cap)) for a in head])
            if utf8_size(text) <= budget:
                return text, len(attempts) - kept
            room -= utf8_size(text) - budget  # JSON escapes made it longer: shrink by that
    return "[]", len(attempts)


def _fair_share(sizes: Sequence[int], room: int) -> int:
    """The largest cap such that the sizes, each cut to it, add up to at most `room`."""
    left = len(sizes)
    for size in sorted(sizes):
        if size * left > room:
            return room // left
        room -= size
        left -= 1
    return max(sizes, default=0)


def _dumps(attempts: Sequence[Attempt]) -> str:
    return json.dumps([asdict(a) for a in attempts], ensure_ascii=False)
