"""Models an OpenAI-compatible endpoint lists at ``GET /v1/models``.

OpenAI's answer carries only ``id``, ``created`` and ``owned_by``. Several
servers add more, read here when present: ``context_length`` and ``pricing``
(USD per token, as strings) and ``architecture.input_modalities`` from
OpenRouter, ``max_model_len`` from vLLM, ``meta.n_ctx_train`` from llama.cpp.
Ids are the `openai_compat` backend's: ``<provider>/<model id>``. The list is
fetched by that backend's `list_models`, the one its engine starts with.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from modelyard.backends.openai_compat.embeddings import is_embedding_model
from modelyard.backends.openai_compat.media import SHAPES, media_kind
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import list_models
from modelyard.catalog_ids import catalog_id
from modelyard.discovery.source import SourceSnapshot, context_window
from modelyard_client.errors import BackendUnavailable, ModelyardError
from modelyard_client.v1 import common_pb2

C = common_pb2
_MODALITIES = {"text": C.MODALITY_TEXT, "image": C.MODALITY_IMAGE, "audio": C.MODALITY_AUDIO}


class OpenAICompatSource:
    """Discovery over one OpenAI-compatible endpoint."""

    def __init__(self, provider: ProviderEndpoint, *, timeout_s: float = 10.0) -> None:
        self.provider = provider
        self.name = f"openai_compat:{provider.name}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def discover(self) -> SourceSnapshot:
        try:
            async with aiohttp.ClientSession(headers=self.provider.headers()) as http:
                listed = await list_models(http, self.provider, self._timeout)
        except ModelyardError as exc:  # whatever the upstream did, this source is unreachable
            url = f"{self.provider.base_url}/models"
            raise BackendUnavailable(f"{self.name}: GET {url} failed: {exc.message}") from exc
        entries = tuple(self._entry(item) for item in listed.models)
        errors = tuple(f"{self.name}: data[{i}] has no model id; skipped" for i in listed.unnamed)
        return SourceSnapshot(self.name, entries, errors)

    def _entry(self, item: dict[str, Any]) -> common_pb2.ModelEntry:
        model = str(item["id"])
        arch = _object(item, "architecture")
        inputs = [_MODALITIES[m] for m in arch.get("input_modalities") or () if m in _MODALITIES]
        media = media_kind(model)  # images, speech, transcription: the engine's `media`
        if media is not None:
            shape = SHAPES[media]
            caps, outputs = list(shape.capabilities), list(shape.outputs)
            inputs = list(shape.inputs)
        elif is_embedding_model(model):
            caps = [C.CAPABILITY_EMBEDDING]
            outputs = [C.MODALITY_TENSOR]
        else:
            caps = [C.CAPABILITY_CHAT, C.CAPABILITY_STREAMING]
            outputs = [C.MODALITY_TEXT]
            if C.MODALITY_IMAGE in inputs:
                caps.append(C.CAPABILITY_VISION)
        pricing = _object(item, "pricing")
        meta = _object(item, "meta")
        context = item.get("context_length") or item.get("max_model_len") or meta.get("n_ctx_train")
        metadata = {
            "base_url": self.provider.base_url,
            "owned_by": str(item.get("owned_by") or ""),
            "created": str(item.get("created") or ""),
        }
        return common_pb2.ModelEntry(
            id=catalog_id(self.provider.name, model),
            name=model,
            provider=self.provider.name,
            capabilities=caps,
            input_modalities=inputs or [C.MODALITY_TEXT],
            output_modalities=outputs,
            context_window=context_window(context),
            cost=common_pb2.CostProfile(
                usd_per_input_token=_price(pricing.get("prompt")),
                usd_per_output_token=_price(pricing.get("completion")),
                usd_per_request=_price(pricing.get("request")),
                usd_per_image=_price(pricing.get("image")),
            ),
            metadata={k: v for k, v in metadata.items() if v},
        )


def _object(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    return value if isinstance(value, dict) else {}


def _price(value: Any) -> float:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return 0.0
    return price if price > 0 else 0.0  # OpenRouter's "-1" marks variable pricing
