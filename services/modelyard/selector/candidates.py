"""Catalog entries as native selection candidates, rebuilt only when the catalog changes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from google.protobuf.descriptor import EnumDescriptor

from modelyard._native import Candidate, CandidateSet
from modelyard.enum_values import unknown_value
from modelyard.model_input import BYTES_PER_TOKEN
from modelyard.servable import servable
from modelyard_client.errors import ModelyardError
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)


def mask(enum: EnumDescriptor, values: Iterable[int], field: str = "") -> int:
    """A bitmask with bit `v` set for each value `v` of `enum`.

    Raises `ValueError` naming `field` for a value `enum` does not declare: an
    unknown value has no bit (the native masks are 64 bits, the enums far fewer).
    """
    values = list(values)
    found = unknown_value(enum, values)
    if found is not None:
        i, value = found
        raise ValueError(f"{field}[{i}] {value} is not a {enum.name} value")
    out = 0
    for value in values:
        out |= 1 << value
    return out


def candidate_of(entry: common_pb2.ModelEntry) -> Candidate:
    """The native candidate of `entry`; raises `ValueError` or `ModelyardError` for a field
    the native core cannot take (an entry stored before the registry checked it)."""
    perf, cost = entry.performance, entry.cost
    first = entry.deployments[0] if entry.deployments else common_pb2.Deployment()
    return Candidate(
        entry.id,
        capabilities=mask(common_pb2.Capability.DESCRIPTOR, entry.capabilities, "capabilities"),
        modalities=mask(common_pb2.Modality.DESCRIPTOR, entry.input_modalities, "input_modalities"),
        context_window=entry.context_window,
        latency_ms=perf.latency_ms_p50,
        tokens_per_second=perf.tokens_per_second,
        # Selection estimates cost by tokens: a text-to-speech model bills the characters
        # spoken, about `BYTES_PER_TOKEN` of them to an input token.
        usd_per_input_token=cost.usd_per_input_token + cost.usd_per_character * BYTES_PER_TOKEN,
        usd_per_output_token=cost.usd_per_output_token,
        usd_per_request=cost.usd_per_request,
        reliability=1.0 - perf.error_rate,
        quality=entry.quality.score,
        memory_bytes=entry.resources.memory_bytes,
        backend=first.backend,
        region=first.region,
        healthy=servable(entry),
    )


def candidates_of(
    entries: Iterable[common_pb2.ModelEntry],
) -> tuple[list[common_pb2.ModelEntry], list[Candidate]]:
    """The entries that make candidates, and their candidates, in the same order.

    An entry that cannot be one is left out with a logged reason: one bad record
    must not fail every selection.
    """
    kept: list[common_pb2.ModelEntry] = []
    candidates: list[Candidate] = []
    for entry in entries:
        try:
            candidate = candidate_of(entry)
        except (ValueError, OverflowError, ModelyardError) as exc:
            reason = exc.message if isinstance(exc, ModelyardError) else str(exc)
            log.warning("selection leaves out model '%s': %s", entry.id, reason)
            continue
        kept.append(entry)
        candidates.append(candidate)
    return kept, candidates


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
            entries, candidates = candidates_of(sorted(self._models(), key=lambda e: e.id))
            self._set = CandidateSet(candidates) if candidates else None
            self._entries, self._built_at = entries, revision
        return self._entries, self._set
