"""The deadline of one gateway call: the client's own, else the gateway's default.

A client that sets no deadline would otherwise wait as long as the slowest
bound below the gateway: an OpenAI-compatible provider's 120 s read timeout,
or the gateway's 600 s bound on a backend call, for an upstream that never
answers. The default (`server.default_deadline`, 60 s) applies to the whole
call, its fallback models and a batch's items included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from modelyard_client.errors import DeadlineExceeded

# Long enough for the default 256 tokens at the ~5 tokens/s of a 7B model on a
# laptop CPU, or a long hosted answer; short enough that a caller that set no
# deadline hears of a silent upstream before the provider's own 120 s read
# timeout. A longer generation sets its own deadline, or raises this.
DEFAULT_DEADLINE_S = 60.0


@dataclass(frozen=True)
class CallDeadline:
    """When a call must be answered by (`at`, on `time.monotonic`'s clock), and whose it is."""

    seconds: float
    at: float
    set_by_caller: bool

    @classmethod
    def start(cls, time_remaining: float | None, default_s: float) -> CallDeadline:
        """From now: the client's `time_remaining` (gRPC's; None: it set none), else `default_s`."""
        if time_remaining is None:
            return cls(default_s, time.monotonic() + default_s, set_by_caller=False)
        return cls(time_remaining, time.monotonic() + time_remaining, set_by_caller=True)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def exceeded(self, cause: DeadlineExceeded) -> DeadlineExceeded:
        """`cause`, naming the default deadline when that is the one that passed.

        A client's own deadline needs no naming: gRPC ends the call at it and
        the client knows what it set. A model's own deadline that passed first
        (`FirstTokenTimeout`, `StreamStalled`: subclasses) stays as it is, its
        reason with it.
        """
        if self.set_by_caller or type(cause) is not DeadlineExceeded:
            return cause
        return DeadlineExceeded(
            f"no answer within the default deadline of {self.seconds:g}s (the call set none: "
            f"set a deadline on the call, or server.default_deadline): {cause.message}"
        )
