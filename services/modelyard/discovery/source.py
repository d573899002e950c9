"""What every discovery source hands the registry: one snapshot of the models it found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from modelyard.catalog_ids import catalog_id_problem, version_problem
from modelyard.catalog_limits import context_window as context_window  # sources take it here
from modelyard_client.v1 import common_pb2


@dataclass(frozen=True)
class SourceSnapshot:
    """Everything one source reported in one discovery pass.

    `entries` are complete catalog entries without deployments. `errors` name
    the items (a corrupt file, a model Ollama would not describe) that were
    left out while the rest were listed. `complete` is False when the source
    failed part way: the consumer must then not take a model's absence from
    `entries` to mean it is gone. An entry whose id or version breaks the
    catalog's rule (`modelyard.catalog_ids`) is moved to `errors` when the
    snapshot is made.
    """

    source: str
    entries: tuple[common_pb2.ModelEntry, ...]
    errors: tuple[str, ...] = ()
    complete: bool = True

    def __post_init__(self) -> None:
        # Whatever the source (a file named oddly, an upstream's model list), an entry
        # whose id or version breaks the catalog's rule never reaches the registry.
        kept, refused = [], []
        for entry in self.entries:
            problem = _id_problem(entry)
            if problem is None:
                kept.append(entry)
            else:
                refused.append(f"{self.source}: {_shown(entry.id)} left out: {problem}")
        if refused:
            object.__setattr__(self, "entries", tuple(kept))
            object.__setattr__(self, "errors", (*self.errors, *refused))


def _id_problem(entry: common_pb2.ModelEntry) -> str | None:
    problem = catalog_id_problem(entry.id)
    if problem is not None:
        return f"invalid catalog id: {problem}"
    problem = version_problem(entry.version)
    return None if problem is None else f"invalid version {_shown(entry.version)}: {problem}"


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else f"{text[:80]!r}..."


class DiscoverySource(Protocol):
    """A place models are found: an Ollama daemon, a directory of files, a provider list."""

    name: str

    async def discover(self) -> SourceSnapshot:
        """One pass over the source.

        Never raises for a problem with one item (that goes into `errors`);
        raises `modelyard_client.errors.BackendUnavailable`, naming the source and the
        cause, when the source as a whole cannot be reached or read.
        """
        ...
