"""The maintained list of hosted providers' models: ``discovery/data/api_models.yaml``.

Providers cannot all be asked what they serve (and their model lists carry no
prices), so the catalog of OpenAI, Anthropic, Mistral, Gemini/Vertex, Bedrock,
Cohere, OpenRouter and ElevenLabs models is kept in a data file with its
`as_of` date. This module reads and checks it; discovery offers its models
(`discovery.api_providers`) and the hosted engines read their own kind's
entries (context windows, prices, capabilities) from it. A top-level module of
its own, so that both can import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelyard.catalog_ids import catalog_id
from modelyard_client.errors import CatalogFileError
from modelyard_client.v1 import common_pb2

DATA_FILE = Path(__file__).parent / "discovery" / "data" / "api_models.yaml"

_MODEL_KEYS = {
    "name",
    "context_window",
    "input_unit",
    "capabilities",
    "input",
    "output",
    "usd_per_mtok_in",
    "usd_per_mtok_out",
    "usd_per_mtok_cached_in",
    "usd_per_kchar",
    "usd_per_audio_hour",
    "usd_per_image",
}
_PROVIDER_KEYS = {"key_env", "pricing_page", "region", "models"}


@dataclass(frozen=True)
class ProviderCatalog:
    name: str
    key_env: tuple[str, ...]
    entries: tuple[common_pb2.ModelEntry, ...]


@dataclass(frozen=True)
class ApiCatalog:
    as_of: str
    providers: dict[str, ProviderCatalog]


def load_catalog(path: Path = DATA_FILE) -> ApiCatalog:
    """Parse and validate the data file into catalog entries (raises `CatalogFileError`)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogFileError(f"{path}: {exc}") from exc
    doc = _mapping(raw, str(path), {"as_of", "providers"})
    as_of = str(_required(doc, "as_of", str(path)))
    providers = _mapping(_required(doc, "providers", str(path)), "providers", None)
    out = {}
    for name, body in providers.items():
        out[str(name)] = _provider(str(name), body, as_of)
    return ApiCatalog(as_of, out)


def _provider(name: str, body: Any, as_of: str) -> ProviderCatalog:
    where = f"providers.{name}"
    doc = _mapping(body, where, _PROVIDER_KEYS)
    key_env = _required(doc, "key_env", where)
    if not isinstance(key_env, list) or not all(isinstance(v, str) and v for v in key_env):
        raise CatalogFileError(f"{where}.key_env: must be a list of variable names")
    models = _required(doc, "models", where)
    if not isinstance(models, list):
        raise CatalogFileError(f"{where}.models: must be a list")
    shared = {"as_of": as_of, "pricing_page": str(doc.get("pricing_page", ""))}
    if doc.get("region"):
        shared["region"] = str(doc["region"])
    entries = tuple(_model(name, m, f"{where}.models[{i}]", shared) for i, m in enumerate(models))
    return ProviderCatalog(name, tuple(key_env), entries)


def _model(provider: str, body: Any, where: str, shared: dict[str, str]) -> common_pb2.ModelEntry:
    doc = _mapping(body, where, _MODEL_KEYS)
    name = _required(doc, "name", where)
    if not isinstance(name, str) or not name:
        raise CatalogFileError(f"{where}.name: must be a non-empty string")
    capabilities = [
        _enum(common_pb2.Capability, "CAPABILITY_", c, f"{where}.capabilities")
        for c in _list(doc, "capabilities", where)
    ]
    inputs = [
        _enum(common_pb2.Modality, "MODALITY_", m, f"{where}.input")
        for m in _list(doc, "input", where)
    ]
    outputs = [
        _enum(common_pb2.Modality, "MODALITY_", m, f"{where}.output")
        for m in _list(doc, "output", where)
    ]
    context = _number(doc, "context_window", where)
    if context != int(context) or not 0 <= context < 2**32:
        raise CatalogFileError(f"{where}.context_window: must be a whole number of tokens")
    unit = str(doc.get("input_unit", "token"))
    if unit not in ("token", "character"):
        raise CatalogFileError(f"{where}.input_unit: must be 'token' or 'character'")
    metadata = {**shared, "input_unit": unit}
    return common_pb2.ModelEntry(
        id=catalog_id(provider, name),
        name=name,
        provider=provider,
        capabilities=capabilities,
        input_modalities=inputs,
        output_modalities=outputs,
        context_window=int(context),
        cost=common_pb2.CostProfile(
            usd_per_input_token=_number(doc, "usd_per_mtok_in", where) / 1e6,
            usd_per_output_token=_number(doc, "usd_per_mtok_out", where) / 1e6,
            # Input read from the provider's prompt cache (`Usage.cached_input_tokens`).
            usd_per_cached_input_token=_number(doc, "usd_per_mtok_cached_in", where) / 1e6,
            # Text to speech bills the characters spoken (`Usage.characters`).
            usd_per_character=_number(doc, "usd_per_kchar", where) / 1e3,
            usd_per_audio_second=_number(doc, "usd_per_audio_hour", where) / 3600,
            usd_per_image=_number(doc, "usd_per_image", where),  # images made (`Usage.images`)
        ),
        metadata=metadata,
    )


def _mapping(value: Any, where: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CatalogFileError(f"{where}: must be a mapping")
    if allowed is not None:
        unknown = sorted(set(map(str, value)) - allowed)
        if unknown:
            raise CatalogFileError(f"{where}.{unknown[0]}: unknown key")
    return value


def _required(doc: dict[str, Any], key: str, where: str) -> Any:
    if key not in doc or doc[key] is None:
        raise CatalogFileError(f"{where}.{key}: required")
    return doc[key]


def _list(doc: dict[str, Any], key: str, where: str) -> list[str]:
    value = _required(doc, key, where)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise CatalogFileError(f"{where}.{key}: must be a non-empty list of names")
    return value


def _number(doc: dict[str, Any], key: str, where: str) -> float:
    value = doc.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CatalogFileError(f"{where}.{key}: must be a number >= 0")
    return float(value)


def _enum(enum: Any, prefix: str, name: str, where: str) -> Any:
    try:
        return enum.Value(prefix + name.upper())
    except ValueError:
        raise CatalogFileError(f"{where}: unknown name '{name}'") from None
