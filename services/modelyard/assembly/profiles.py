"""Operator-known model profiles (limits, prices, latency, context) laid over catalog entries."""

from __future__ import annotations

from collections.abc import Iterable

from modelyard.assembly.plan import BackendPlan
from modelyard.catalog_ids import catalog_id
from modelyard.config import ModelProfile
from modelyard_client.v1 import common_pb2


def apply_profiles(entries: Iterable[common_pb2.ModelEntry], plans: Iterable[BackendPlan]) -> None:
    """Overlay each model's configured profile on its entry (matched by catalog id)."""
    profiles = {
        catalog_id(plan.name, model): profile
        for plan in plans
        for model, profile in plan.backend.model_profiles.items()
    }
    for entry in entries:
        profile = profiles.get(entry.id)
        if profile is not None:
            _overlay(entry, profile)


def _overlay(entry: common_pb2.ModelEntry, profile: ModelProfile) -> None:
    if profile.context_window:
        entry.context_window = profile.context_window
    if profile.requests_per_minute is not None:
        entry.limits.requests_per_minute = profile.requests_per_minute
    if profile.tokens_per_minute is not None:
        entry.limits.tokens_per_minute = profile.tokens_per_minute
    if profile.usd_per_1m_input_tokens is not None:
        entry.cost.usd_per_input_token = profile.usd_per_1m_input_tokens / 1e6
    if profile.usd_per_1m_output_tokens is not None:
        entry.cost.usd_per_output_token = profile.usd_per_1m_output_tokens / 1e6
    if profile.usd_per_request is not None:
        entry.cost.usd_per_request = profile.usd_per_request
    if profile.latency_p50_ms is not None:
        entry.performance.latency_ms_p50 = profile.latency_p50_ms
    if profile.latency_p95_ms is not None:
        entry.performance.latency_ms_p95 = profile.latency_p95_ms
    if profile.capabilities:
        del entry.capabilities[:]
        entry.capabilities.extend(
            common_pb2.Capability.Value(f"CAPABILITY_{c.upper()}") for c in profile.capabilities
        )
