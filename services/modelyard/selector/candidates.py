"""Catalog entries as native selection candidates, rebuilt only when the catalog changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from modelyard._native import Candidate, CandidateSet
from modelyard.servable import servable
from modelyard.v1 import common_pb2


def mask(values: Iterable[int]) -> int:
    """A bitmask with bit `v` set for each enum value `v`."""
    out = 0
    for value in values:
        out |= 1 << value
    return out


def candidate_of(entry: common_pb2.ModelEntry) -> Candidate:
    perf, cost = entry.performance, entry.cost
    first = entry.deployments[0] if entry.deployments else common_pb2.Deployment()
    return Candidate(
        entry.id,
        capabilities=mask(entry.capabilities),
        modalities=mask(entry.input_modalities),
        context_window=entry.context_window,
        latency_ms=perf.latency_ms_p50,
        tokens_per_second=perf.tokens_per_second,
        usd_per_input_token=cost.usd_per_input_token,
        usd_per_output_token=cost.usd_per_output_token,
        usd_per_request=cost.usd_per_request,
        reliability=1.0 - perf.error_rate,
        memory_bytes=entry.resources.memory_bytes,
        backend=first.backend,
        region=first.region,
        healthy=servable(entry),
    )


class CandidatePool:
    """The native candidate set for the current catalog, rebuilt when its revision moves."""

    def __init__(
        self,
        models: Callable[[], list[common_pb2.ModelEntry]],
        revision: Callable[[], int],
    ) -> None:
        self._models = models
        self._revision = revision
        self._built_at = -1
        self._entries: list[common_pb2.ModelEntry] = []
        self._set: CandidateSet | None = None

    def current(self) -> tuple[list[common_pb2.ModelEntry], CandidateSet | None]:
        revision = self._revision()
        if revision != self._built_at:
            entries = sorted(self._models(), key=lambda e: e.id)
            self._set = CandidateSet([candidate_of(e) for e in entries]) if entries else None
            self._entries, self._built_at = entries, revision
        return self._entries, self._set
