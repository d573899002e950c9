"""Checks a `ModelEntry` must pass before the catalog stores it.

Each refusal names the wrong field as a path inside the entry
(``deployments[0].endpoint``), which travels as a ``BadRequest`` field violation.
"""

from __future__ import annotations

import json
import math
import re

from google.protobuf.message import Message

from modelyard.errors import InvalidRequest
from modelyard.v1 import common_pb2

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,254}$")
_ENDPOINT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):\d{1,5}$")


def check_model_id(model_id: str) -> None:
    if not _ID.match(model_id):
        raise InvalidRequest(
            f"model id {model_id!r} is invalid: use 1-255 characters of letters, digits "
            "and . _ : / @ + -, starting with a letter or digit",
            field="id",
        )


def check_entry(entry: common_pb2.ModelEntry) -> None:
    """Raise `InvalidRequest` naming the first field that is wrong."""
    check_model_id(entry.id)
    if not entry.provider:
        raise InvalidRequest(f"model '{entry.id}': provider must not be empty", field="provider")
    for field in ("input_schema_json", "output_schema_json"):
        text = getattr(entry, field)
        if text:
            try:
                schema = json.loads(text)
            except ValueError as exc:
                raise InvalidRequest(
                    f"model '{entry.id}': {field} is not valid JSON: {exc}", field=field
                ) from exc
            if not isinstance(schema, dict):
                raise InvalidRequest(
                    f"model '{entry.id}': {field} must be a JSON object", field=field
                )
    _check_non_negative(entry.id, "cost", entry.cost)
    _check_non_negative(entry.id, "performance", entry.performance)
    _check_non_negative(entry.id, "limits", entry.limits)
    if entry.performance.error_rate > 1:
        raise InvalidRequest(
            f"model '{entry.id}': performance.error_rate must be between 0 and 1",
            field="performance.error_rate",
        )
    for i, dep in enumerate(entry.deployments):
        if not dep.backend:
            raise InvalidRequest(
                f"model '{entry.id}': deployments[{i}].backend must not be empty",
                field=f"deployments[{i}].backend",
            )
        if not _ENDPOINT.match(dep.endpoint) or not 0 < int(dep.endpoint.rsplit(":", 1)[1]) < 65536:
            raise InvalidRequest(
                f"model '{entry.id}': deployments[{i}].endpoint {dep.endpoint!r} must be host:port",
                field=f"deployments[{i}].endpoint",
            )


def _check_non_negative(model_id: str, prefix: str, message: Message) -> None:
    for desc, value in message.ListFields():
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value) or value < 0):
            raise InvalidRequest(
                f"model '{model_id}': {prefix}.{desc.name} must be a finite number >= 0, "
                f"got {value}",
                field=f"{prefix}.{desc.name}",
            )
