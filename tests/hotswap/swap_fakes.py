"""What the swap and A/B test tests stand in for: a small catalog, a validator that answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from modelyard_client.errors import ModelNotFound
from modelyard_client.v1 import common_pb2

Capability: TypeAlias = common_pb2.Capability.ValueType


class SmallCatalog:
    """These models, each with `capabilities` (chat) unless `special` gives it others."""

    def __init__(
        self,
        *model_ids: str,
        capabilities: Sequence[Capability] = (common_pb2.CAPABILITY_CHAT,),
        special: Mapping[str, Sequence[Capability]] | None = None,
    ) -> None:
        self._ids = model_ids
        self._capabilities = capabilities
        self._special = special or {}

    def get(self, model_id: str) -> common_pb2.ModelEntry:
        if model_id not in self._ids:
            raise ModelNotFound(model_id)
        return common_pb2.ModelEntry(
            id=model_id,
            capabilities=self._special.get(model_id, self._capabilities),
            deployments=[common_pb2.Deployment(endpoint="x")],
        )


class InstantAnswers:
    """Every validation prompt answered at once."""

    async def answer(self, model: common_pb2.ModelEntry, prompt: str, timeout_s: float) -> None:
        return None
