"""The hosted catalog's figures on what a hosted engine announces: prices, context window.

Every answer's `usage.cost_usd` is its usage at the model's catalog prices
(`gateway.arm_outcomes.call_cost_usd`), read from the model's registry entry.
That entry is what the serving engine announced, replaced by the registry's
``api`` discovery source when that runs (`registry.discovery_sync`). So a
hosted engine announces the prices of ``discovery/data/api_models.yaml`` itself
(as the Gemini and Bedrock engines always did): with discovery off, or before
its first pass, an answer is still priced rather than free.

The catalog is read once, at the engine's start; an unreadable file is logged
and leaves the entries unpriced, never the engine down (its models are still
served).
"""

from __future__ import annotations

import logging

from modelyard.hosted_catalog import load_catalog
from modelyard_client.errors import CatalogFileError
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)


def catalog_listing(kind: str, backend: str) -> dict[str, common_pb2.ModelEntry]:
    """The catalog's entries of provider `kind` by model name (``{}`` for a kind it does not
    list, or a file it cannot read: logged, naming `backend`)."""
    try:
        provider = load_catalog().providers.get(kind)
    except CatalogFileError as exc:
        log.warning("%s: the hosted catalog is unreadable, its models unpriced: %s", backend, exc)
        return {}
    return {e.name: e for e in provider.entries} if provider is not None else {}


def with_catalog_figures(
    entry: common_pb2.ModelEntry, listed: common_pb2.ModelEntry | None
) -> common_pb2.ModelEntry:
    """`entry` with the catalog's prices, and its context window where the engine knows
    none; unchanged when the catalog does not list the model."""
    if listed is not None:
        entry.cost.CopyFrom(listed.cost)
        if not entry.context_window:
            entry.context_window = listed.context_window
    return entry
