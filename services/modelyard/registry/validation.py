"""Checks a `ModelEntry` must pass before the catalog stores it.

Each refusal names the wrong field as a path inside the entry
(``deployments[0].endpoint``), which travels as a ``BadRequest`` field violation.
The id and version rule is `modelyard.catalog_ids`'s, the bounds are
`modelyard.catalog_limits`'s, and enum values are checked by `modelyard.enum_values`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Literal

from google.protobuf.message import Message

from modelyard import catalog_limits as limits
from modelyard.catalog_ids import (
    ID_RULE,
    VERSION_RULE,
    backend_name_problem,
    catalog_id_problem,
    characters_problem,
    version_problem,
)
from modelyard.enum_values import check_all_known, check_known
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

_ENDPOINT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):\d{1,5}$")
_CAPABILITY = common_pb2.Capability.DESCRIPTOR
_MODALITY = common_pb2.Modality.DESCRIPTOR
_HEALTH = common_pb2.HealthStatus.DESCRIPTOR


def check_model_id(model_id: str) -> None:
    """`InvalidRequest` (field ``id``) unless `model_id` follows the catalog id rule."""
    problem = catalog_id_problem(model_id)
    if problem is not None:
        raise InvalidRequest(
            f"model id {_quoted(model_id)} is invalid: {problem} ({ID_RULE})", field="id"
        )


def check_version(model_id: str, version: str, field: str = "version") -> None:
    """`InvalidRequest` naming `field` unless `version` follows the version rule (or is empty)."""
    problem = version_problem(version)
    if problem is not None:
        raise InvalidRequest(
            f"model '{model_id}': version {_quoted(version)} is invalid: {problem} "
            f"({VERSION_RULE})",
            field=field,
        )


def check_provider_name(name: str, field: str = "name") -> None:
    """`InvalidRequest` unless `name` can be a backend name: providers are backends."""
    problem = backend_name_problem(name)
    if problem is not None:
        raise InvalidRequest(f"provider name {_quoted(name)} is invalid: {problem}", field=field)


def check_text(
    subject: str,
    field: str,
    text: str,
    max_chars: int,
    *,
    chars: Literal["any", "printable", "visible"] = "any",
) -> None:
    """`text` at most `max_chars` long; `chars` "visible": no whitespace or control character
    (`modelyard.catalog_ids.characters_problem`), "printable": no control character."""
    if len(text) > max_chars:
        raise InvalidRequest(
            f"{subject}: {field} is {len(text)} characters; the limit is {max_chars}", field=field
        )
    problem = None
    if chars == "visible":
        problem = characters_problem(text)
    elif chars == "printable":
        bad = next((c for c in text if not c.isprintable()), None)
        problem = None if bad is None else f"holds {bad!r} (U+{ord(bad):04X})"
    if problem is not None:
        raise InvalidRequest(f"{subject}: {field} {problem}", field=field)


def check_entry(entry: common_pb2.ModelEntry) -> None:
    """Raise `InvalidRequest` naming the first field that is wrong."""
    check_model_id(entry.id)
    subject = f"model '{entry.id}'"
    check_version(entry.id, entry.version)
    if not entry.provider:
        raise InvalidRequest(f"{subject}: provider must not be empty", field="provider")
    check_text(subject, "provider", entry.provider, limits.PROVIDER_CHARS, chars="visible")
    check_text(subject, "name", entry.name, limits.NAME_CHARS, chars="printable")
    check_text(subject, "health_reason", entry.health_reason, limits.HEALTH_REASON_CHARS)
    _check_enums(subject, entry)
    for field in ("input_schema_json", "output_schema_json"):
        text = getattr(entry, field)
        check_text(subject, field, text, limits.SCHEMA_JSON_CHARS)
        if text:
            try:
                schema = json.loads(text)
            except ValueError as exc:
                raise InvalidRequest(
                    f"{subject}: {field} is not valid JSON: {exc}", field=field
                ) from exc
            if not isinstance(schema, dict):
                raise InvalidRequest(f"{subject}: {field} must be a JSON object", field=field)
    _check_non_negative(entry.id, "cost", entry.cost)
    _check_non_negative(entry.id, "performance", entry.performance)
    _check_non_negative(entry.id, "limits", entry.limits)
    if entry.performance.error_rate > 1:
        raise InvalidRequest(
            f"{subject}: performance.error_rate must be between 0 and 1",
            field="performance.error_rate",
        )
    check_quality(entry.id, entry.quality)
    _check_metadata(subject, entry)
    _check_deployments(subject, entry)
    size = entry.ByteSize()
    if size > limits.ENTRY_BYTES:
        raise InvalidRequest(
            f"{subject} is {size} bytes encoded; the limit is {limits.ENTRY_BYTES} bytes",
            field=None,  # the whole entry
        )


def _check_enums(subject: str, entry: common_pb2.ModelEntry) -> None:
    repeated = (
        ("capabilities", _CAPABILITY, entry.capabilities),
        ("input_modalities", _MODALITY, entry.input_modalities),
        ("output_modalities", _MODALITY, entry.output_modalities),
    )
    for field, enum, values in repeated:
        if len(values) > limits.ENUM_ENTRIES:
            raise InvalidRequest(
                f"{subject}: {field} has {len(values)} entries; the limit is {limits.ENUM_ENTRIES}",
                field=field,
            )
        check_all_known(enum, values, field, subject)
    check_known(_HEALTH, entry.health, "health", subject)


def _check_metadata(subject: str, entry: common_pb2.ModelEntry) -> None:
    if len(entry.metadata) > limits.METADATA_ENTRIES:
        raise InvalidRequest(
            f"{subject}: metadata has {len(entry.metadata)} keys; the limit is "
            f"{limits.METADATA_ENTRIES}",
            field="metadata",
        )
    for key in sorted(entry.metadata):
        problem = characters_problem(key) if key else "is empty"
        if len(key) > limits.METADATA_KEY_CHARS:
            problem = f"is {len(key)} characters; the limit is {limits.METADATA_KEY_CHARS}"
        if problem is not None:
            raise InvalidRequest(
                f"{subject}: metadata key {_quoted(key)} {problem}", field="metadata"
            )
        check_text(
            subject,
            f"metadata[{_quoted(key)}]",
            entry.metadata[key],
            limits.METADATA_VALUE_CHARS,
        )


def _check_deployments(subject: str, entry: common_pb2.ModelEntry) -> None:
    if len(entry.deployments) > limits.DEPLOYMENTS:
        raise InvalidRequest(
            f"{subject}: {len(entry.deployments)} deployments; the limit is {limits.DEPLOYMENTS}",
            field="deployments",
        )
    for i, dep in enumerate(entry.deployments):
        where = f"deployments[{i}]"
        if not dep.backend:
            raise InvalidRequest(
                f"{subject}: {where}.backend must not be empty", field=f"{where}.backend"
            )
        check_text(
            subject,
            f"{where}.backend",
            dep.backend,
            limits.DEPLOYMENT_BACKEND_CHARS,
            chars="visible",
        )
        check_text(subject, f"{where}.region", dep.region, limits.REGION_CHARS, chars="visible")
        if (
            len(dep.endpoint) > limits.ENDPOINT_CHARS
            or not _ENDPOINT.match(dep.endpoint)
            or not 0 < int(dep.endpoint.rsplit(":", 1)[1]) < 65536
        ):
            raise InvalidRequest(
                f"{subject}: {where}.endpoint {_quoted(dep.endpoint)} must be host:port "
                f"(at most {limits.ENDPOINT_CHARS} characters)",
                field=f"{where}.endpoint",
            )
        check_known(_HEALTH, dep.health, f"{where}.health", subject)


def check_quality(model_id: str, quality: common_pb2.ModelQuality) -> None:
    """An evaluated quality: its score a share, its suite's name bounded and printable."""
    subject = f"model '{model_id}'"
    if not (math.isfinite(quality.score) and 0 <= quality.score <= 1):
        raise InvalidRequest(
            f"{subject}: quality.score must be between 0 and 1, got {quality.score}",
            field="quality.score",
        )
    check_text(
        subject, "quality.suite", quality.suite, limits.QUALITY_SUITE_CHARS, chars="printable"
    )


def _check_non_negative(model_id: str, prefix: str, message: Message) -> None:
    for desc, value in message.ListFields():
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value) or value < 0):
            raise InvalidRequest(
                f"model '{model_id}': {prefix}.{desc.name} must be a finite number >= 0, "
                f"got {value}",
                field=f"{prefix}.{desc.name}",
            )


def _quoted(text: str, keep: int = 80) -> str:
    """`text` quoted for a message, cut to `keep` characters: the message stays small."""
    return repr(text) if len(text) <= keep else f"{text[:keep]!r}... ({len(text)} characters)"
