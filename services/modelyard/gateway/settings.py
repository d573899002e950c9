"""Limits and defaults of the gateway's request path."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.gateway.deadline import DEFAULT_DEADLINE_S


@dataclass(frozen=True)
class GatewaySettings:
    # Inputs larger than this are refused with RESOURCE_EXHAUSTED before any backend call.
    max_input_bytes: int = 1024 * 1024
    # max_tokens above this is refused as absurd, whatever the model.
    max_tokens_ceiling: int = 1_000_000
    # Used when the request leaves max_tokens at 0, also for rate-limit reservation.
    default_max_tokens: int = 256
    # The deadline of a call whose client sets none (server.default_deadline; CallDeadline).
    default_deadline_s: float = DEFAULT_DEADLINE_S
    # Upper bound on one backend call, whatever deadline the client set.
    backend_timeout_s: float = 600.0
    # With no model named: how many runners-up of the selection to fall back to.
    selection_fallbacks: int = 2
