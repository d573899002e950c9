"""Models an Ollama daemon has pulled, through the official `ollama` client.

One pass is ``GET /api/tags`` (what is installed), ``POST /api/show`` per model
(capabilities, ``model_info`` with ``<architecture>.context_length``, details)
and ``GET /api/ps`` (which models are loaded right now). A model whose
``/api/show`` answers with an error is left out and named in `errors`. If the
daemon stops answering part way, the pass stops there: the snapshot holds the
models described so far and is marked incomplete, so nothing still installed
is taken for removed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import ollama
import pydantic

from modelyard.catalog_ids import catalog_id
from modelyard.discovery.source import SourceSnapshot, context_window
from modelyard.errors import BackendUnavailable
from modelyard.scrub import upstream_text
from modelyard.v1 import common_pb2

log = logging.getLogger(__name__)

DEFAULT_HOST = "http://127.0.0.1:11434"

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

# The daemon stopped answering (refused, reset, timed out): later calls would fail too.
_GONE = (ConnectionError, httpx.TransportError)
# The daemon answered, but not with what the documented API promises.
_BAD_ANSWER = (ollama.ResponseError, httpx.HTTPError, pydantic.ValidationError, ValueError)


class OllamaSource:
    """Discovery over one Ollama daemon; catalog ids are ``<backend>/<name:tag>``."""

    def __init__(
        self, host: str = DEFAULT_HOST, *, backend: str = "ollama", timeout_s: float = 10.0
    ) -> None:
        self.name = backend  # unique in the configuration; what Discover(provider=) names
        self.backend = backend
        self._host = host
        self._timeout_s = timeout_s

    async def discover(self) -> SourceSnapshot:
        async with ollama.AsyncClient(host=self._host, timeout=self._timeout_s) as client:
            return await self._discover(client)

    async def _discover(self, client: ollama.AsyncClient) -> SourceSnapshot:
        try:
            listing = await client.list()
        except (*_GONE, *_BAD_ANSWER) as exc:
            raise BackendUnavailable(
                f"ollama at {self._host}: /api/tags failed: {_describe(exc)}"
            ) from exc

        errors: list[str] = []
        shown: list[tuple[ollama.ListResponse.Model, ollama.ShowResponse]] = []
        for index, listed in enumerate(listing.models):
            if not listed.model:
                errors.append("ollama: /api/tags listed a model without a name; skipped")
                continue
            try:
                shown.append((listed, await client.show(listed.model)))
            except _GONE as exc:
                errors.append(
                    f"ollama: stopped answering at '{listed.model}' (/api/show): "
                    f"{_describe(exc)}; {len(listing.models) - index} model(s) not described"
                )
                return self._snapshot(shown, {}, errors, complete=False)
            except _BAD_ANSWER as exc:
                errors.append(f"ollama: /api/show for '{listed.model}' failed: {_describe(exc)}")

        try:
            running = {m.model: m for m in (await client.ps()).models if m.model}
        except (*_GONE, *_BAD_ANSWER) as exc:
            # Only the "loaded" metadata depends on it: the list itself is whole.
            errors.append(f"ollama: /api/ps failed, load state unknown: {_describe(exc)}")
            running = {}
        return self._snapshot(shown, running, errors, complete=True)

    def _snapshot(
        self,
        shown: list[tuple[ollama.ListResponse.Model, ollama.ShowResponse]],
        running: Mapping[str, ollama.ProcessResponse.Model],
        errors: list[str],
        *,
        complete: bool,
    ) -> SourceSnapshot:
        entries = tuple(
            ollama_entry(
                listed, show, running.get(str(listed.model)), host=self._host, backend=self.backend
            )
            for listed, show in shown
        )
        for error in errors:
            log.warning("%s", error)
        return SourceSnapshot(self.name, entries, tuple(errors), complete)


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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, pydantic.ValidationError):
        return f"unexpected answer ({exc.error_count()} field error(s))"
    if isinstance(exc, json.JSONDecodeError):
        return "answer is not JSON"
    return upstream_text(str(exc)) or type(exc).__name__  # it may quote a URL's password
