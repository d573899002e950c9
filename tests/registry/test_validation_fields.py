"""Each refusal of `check_entry` names the wrong field as a path inside the entry."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard.registry.validation import check_entry
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

C = common_pb2

Mutate = Callable[[common_pb2.ModelEntry], object]


def _entry() -> common_pb2.ModelEntry:
    entry = common_pb2.ModelEntry(id="acme/m", provider="acme")
    entry.deployments.add(backend="ollama", endpoint="127.0.0.1:11434")
    entry.deployments.add(backend="ollama", endpoint="127.0.0.1:11435")
    return entry


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: setattr(e, "id", "-bad"), "id"),
        (lambda e: setattr(e, "provider", ""), "provider"),
        (lambda e: setattr(e, "input_schema_json", "{"), "input_schema_json"),
        (lambda e: setattr(e, "output_schema_json", "[1]"), "output_schema_json"),
        (lambda e: setattr(e.cost, "usd_per_request", -1.0), "cost.usd_per_request"),
        (lambda e: setattr(e.performance, "error_rate", 1.5), "performance.error_rate"),
        (lambda e: setattr(e.deployments[1], "backend", ""), "deployments[1].backend"),
        (lambda e: setattr(e.deployments[1], "endpoint", "nowhere"), "deployments[1].endpoint"),
        (lambda e: setattr(e, "id", "a/../../etc/passwd"), "id"),
        (lambda e: setattr(e, "version", "../../x\0"), "version"),
        (lambda e: e.capabilities.extend([C.CAPABILITY_CHAT, 255]), "capabilities[1]"),
        (lambda e: e.capabilities.append(64), "capabilities[0]"),
        (lambda e: e.input_modalities.append(2**31 - 1), "input_modalities[0]"),
        (lambda e: e.output_modalities.append(-1), "output_modalities[0]"),
        (lambda e: setattr(e, "health", 5), "health"),
        (lambda e: setattr(e.deployments[1], "health", 99), "deployments[1].health"),
    ],
    ids=[
        "id",
        "provider",
        "input-schema",
        "output-schema",
        "negative-cost",
        "error-rate",
        "backend",
        "endpoint",
        "dot-dot-id",
        "dot-dot-nul-version",
        "capability-255",
        "capability-64",
        "input-modality",
        "output-modality",
        "health",
        "deployment-health",
    ],
)
def test_check_entry_names_the_wrong_field(mutate: Mutate, field: str) -> None:
    entry = _entry()
    mutate(entry)
    with pytest.raises(InvalidRequest) as refused:
        check_entry(entry)
    assert refused.value.field == field
