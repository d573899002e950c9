"""The catalog entry of a model an Ollama daemon has pulled, from what its API says.

``/api/tags`` lists the model (size, digest, details), ``/api/show`` describes
it (``capabilities``, ``model_info`` with ``<architecture>.context_length``,
its Modelfile ``parameters``) and ``/api/ps`` says whether it is loaded (docs/api.md
of ollama/ollama). The engine's announcement (`modelyard.backends.ollama.engine`)
and discovery (`modelyard.discovery.ollama`) both describe a model with
`ollama_entry`, so the two never disagree about one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ollama

from modelyard.catalog_ids import catalog_id
from modelyard.catalog_limits import context_window
from modelyard_client.v1 import common_pb2

_C = common_pb2
# Ollama's `capabilities` strings (types/model/capability.go) and what each means here.
# Structured output (`format`) works with every completion model, hence JSON_OUTPUT.
_CAPABILITIES: dict[str, tuple[common_pb2.Capability.ValueType, ...]] = {
    "completion": (
        _C.CAPABILITY_TEXT_GENERATION,
        _C.CAPABILITY_CHAT,
        _C.CAPABILITY_STREAMING,
        _C.CAPABILITY_JSON_OUTPUT,
    ),
    "tools": (_C.CAPABILITY_TOOLS,),
    "vision": (_C.CAPABILITY_VISION,),
    "embedding": (_C.CAPABILITY_EMBEDDING,),
    "thinking": (_C.CAPABILITY_REASONING,),
    "insert": (_C.CAPABILITY_CODE,),  # fill-in-the-middle: code completion
    "audio": (_C.CAPABILITY_SPEECH_TO_TEXT,),
}


def ollama_entry(
    listed: ollama.ListResponse.Model,
    show: ollama.ShowResponse,
    loaded: ollama.ProcessResponse.Model | None,
    *,
    host: str,
    backend: str = "ollama",
) -> common_pb2.ModelEntry:
    """The catalog entry of one installed Ollama model, served by backend `backend`."""
    name = str(listed.model)
    info: Mapping[str, Any] = show.modelinfo or {}
    found = show.details or listed.details
    details: dict[str, Any] = found.model_dump() if found is not None else {}
    arch = str(info.get("general.architecture") or details.get("family") or "")
    reported = show.capabilities
    # Daemons before capabilities were reported (< 0.6.4) only served completion models here.
    caps = list(reported) if reported is not None else ["completion"]

    capabilities: list[common_pb2.Capability.ValueType] = []
    for cap in caps:
        for c in _CAPABILITIES.get(cap, ()):
            if c not in capabilities:
                capabilities.append(c)
    inputs = [_C.MODALITY_TEXT]
    if "vision" in caps:
        inputs.append(_C.MODALITY_IMAGE)
    if "audio" in caps:
        inputs.append(_C.MODALITY_AUDIO)
    outputs = [_C.MODALITY_TEXT] if "completion" in caps else []
    if "embedding" in caps:
        outputs.append(_C.MODALITY_TENSOR)

    metadata = {
        "host": host,
        "format": details.get("format") or "",
        "family": details.get("family") or "",
        "families": ",".join(details.get("families") or ()),
        "parameter_size": details.get("parameter_size") or "",
        "quantization": details.get("quantization_level") or "",
        "parent_model": details.get("parent_model") or "",
        "architecture": arch,
        "parameter_count": str(info.get("general.parameter_count") or ""),
        "digest": listed.digest or "",
        "modified_at": listed.modified_at.isoformat() if listed.modified_at else "",
        "capabilities": ",".join(caps),
        "capabilities_reported": "true" if reported is not None else "false",
        "num_ctx": _parameter(show.parameters, "num_ctx"),
        "loaded": "true" if loaded else "false",
    }
    size = int(listed.size or 0)
    memory = size
    if loaded is not None:
        memory = int(loaded.size or size)
        metadata["size_vram"] = str(int(loaded.size_vram or 0))
        metadata["expires_at"] = loaded.expires_at.isoformat() if loaded.expires_at else ""
        if loaded.context_length:
            metadata["loaded_context_length"] = str(loaded.context_length)

    return common_pb2.ModelEntry(
        id=catalog_id(backend, name),
        name=name,
        provider=backend,
        # The content digest is what changes when a tag is re-pulled; 12 hex like `ollama list`.
        version=(listed.digest or "")[:12],
        capabilities=capabilities,
        input_modalities=inputs,
        output_modalities=outputs,
        context_window=context_window(info.get(f"{arch}.context_length")),
        resources=common_pb2.ResourceRequirements(memory_bytes=memory, disk_bytes=size),
        metadata={k: v for k, v in metadata.items() if v},
    )


def _parameter(parameters: str | None, key: str) -> str:
    """One value from /api/show's `parameters` text ("num_ctx    4096\\nstop ...")."""
    for line in (parameters or "").splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] == key:
            return parts[1].strip()
    return ""
