"""Anonymization of a structured input's nested objects (killing mutmut's survivors in
`gateway.redaction._rewrite_value`, docs/testing.md, the sixth session): a string inside
an object inside `input.structured` is replaced by its placeholder, as a top-level one
is, keys in sorted order at every level.

On the redaction stage itself (`Redaction.redact`, what the gateway's path runs first).
"""

from __future__ import annotations

from google.protobuf import json_format

from modelyard.config import parse_config
from modelyard.gateway.redaction import Redaction
from modelyard_client.v1 import gateway_pb2


def test_strings_in_nested_objects_of_a_structured_input_are_replaced() -> None:
    config = parse_config("model_system:\n  security:\n    redaction: {enabled: true}\n")
    stage = Redaction.from_config(config.security.redaction)
    assert stage is not None
    request = gateway_pb2.GenerateRequest(model="custom/model-a")
    request.input.structured.update(
        {
            "to": {"name": "Ada", "mail": "a@example.com", "cc": [{"mail": "b@example.com"}]},
            "note": "write to a@example.com",
        }
    )
    redacted, placeholders = stage.redact(request)
    # Numbered in sorted key order, depth first: "note" before "to", "cc" before "mail".
    assert json_format.MessageToDict(redacted.input.structured) == {
        "note": "write to [EMAIL_1]",
        "to": {"name": "Ada", "mail": "[EMAIL_1]", "cc": [{"mail": "[EMAIL_2]"}]},
    }
    assert placeholders.by_placeholder == {
        "[EMAIL_1]": "a@example.com",
        "[EMAIL_2]": "b@example.com",
    }
