"""What every discovery source produces, and the interface it implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from modelyard.v1 import common_pb2


@dataclass(frozen=True)
class SourceSnapshot:
    """Everything one source found in one pass."""

    source: str  # "ollama", "gguf:/path", "coreml:/path", "openai_compat:custom", "api:openai"
    entries: tuple[common_pb2.ModelEntry, ...]  # complete entries, without deployments
    errors: tuple[str, ...] = ()  # per-item problems that did not stop the rest
    # False when the source failed part way: the consumer must then not mark
    # missing models unavailable.
    complete: bool = True


class DiscoverySource(Protocol):
    name: str

    async def discover(self) -> SourceSnapshot:
        """One pass; raises BackendUnavailable if the source as a whole cannot be reached."""
        ...
