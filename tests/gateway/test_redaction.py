"""The redaction stage's parts: placeholders per request, and their restoration in a stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

import pytest

from modelyard.config import parse_config
from modelyard.gateway.redaction import Placeholders, Redaction
from modelyard_client.errors import ConfigError
from modelyard_client.v1 import common_pb2, gateway_pb2


def _redaction(yaml: str = "{enabled: true}") -> Redaction:
    config = parse_config(f"model_system:\n  security:\n    redaction: {yaml}\n")
    stage = Redaction.from_config(config.security.redaction)
    assert stage is not None
    return stage


def _request(*contents: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model="custom/model-a")
    for content in contents:
        request.input.chat.messages.add(role="user", content=content)
    return request


async def _chunks(texts: Sequence[str]) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
    for i, text in enumerate(texts):
        chunk = gateway_pb2.GenerateChunk(text=text)
        if i == len(texts) - 1:
            chunk.finish_reason = common_pb2.FINISH_REASON_STOP
        yield chunk


async def _restored(placeholders: Placeholders, texts: Sequence[str]) -> list[str]:
    return [c.text async for c in placeholders.restoring(_chunks(texts))]


def test_placeholders_are_typed_numbered_per_type_and_the_same_for_the_same_value() -> None:
    stage = _redaction()
    request = _request(
        "mail a@example.com, b@example.com",
        "again a@example.com, call +44 20 7946 0958",
    )
    redacted, placeholders = stage.redact(request)
    assert [m.content for m in redacted.input.chat.messages] == [
        "mail [EMAIL_1], [EMAIL_2]",
        "again [EMAIL_1], call [PHONE_1]",
    ]
    assert placeholders.by_placeholder == {
        "[EMAIL_1]": "a@example.com",
        "[EMAIL_2]": "b@example.com",
        "[PHONE_1]": "+44 20 7946 0958",
    }
    assert request.input.chat.messages[0].content == "mail a@example.com, b@example.com"


def test_a_placeholder_the_caller_wrote_is_not_handed_out() -> None:
    redacted, placeholders = _redaction().redact(_request("[EMAIL_1] is mine; a@example.com"))
    assert redacted.input.chat.messages[0].content == "[EMAIL_1] is mine; [EMAIL_2]"
    assert placeholders.restore("[EMAIL_1] [EMAIL_2]") == "[EMAIL_1] a@example.com"


def test_the_task_input_and_structured_strings_are_redacted_too() -> None:
    request = gateway_pb2.GenerateRequest()
    request.input.structured.update({"to": "a@example.com", "cc": ["b@example.com", 3]})
    request.task.input.text = "write to a@example.com"
    redacted, _ = _redaction().redact(request)
    # Keys in sorted order: a map's own order would number them differently call by call.
    assert dict(redacted.input.structured) == {"cc": ["[EMAIL_1]", 3.0], "to": "[EMAIL_2]"}
    assert redacted.task.input.text == "write to [EMAIL_2]"


def test_only_the_configured_types_and_custom_patterns_are_redacted() -> None:
    stage = _redaction(
        "{enabled: true, types: [email],"
        " custom_patterns: [{name: staff_id, pattern: 'EMP-\\d{6}'}]}"
    )
    redacted, _ = stage.redact(_request("EMP-123456 a@example.com +44 20 7946 0958"))
    assert redacted.input.chat.messages[0].content == "[STAFF_ID_1] [EMAIL_1] +44 20 7946 0958"


def test_anonymization_is_off_unless_enabled() -> None:
    config = parse_config("model_system:\n  security: {redaction: {}}\n")
    assert Redaction.from_config(config.security.redaction) is None


def test_a_bad_custom_regex_is_refused_at_load_naming_it() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            "model_system:\n  security:\n    redaction:\n      custom_patterns:\n"
            "        - {name: staff_id, pattern: 'EMP-(\\d{6}'}\n"
        )
    (problem,) = err.value.problems
    assert problem.path == "model_system.security.redaction.custom_patterns[0].pattern"
    assert "'EMP-(\\d{6}' is not a valid regular expression: missing )" in problem.message


async def test_a_placeholder_cut_between_chunks_is_held_until_whole() -> None:
    placeholders = Placeholders()
    placeholders.placeholder("email", "a@example.com")
    texts = await _restored(placeholders, ["write to [EMA", "IL_", "1] now", ""])
    assert texts == ["write to ", "", "a@example.com now", ""]


async def test_holding_is_bounded_by_the_longest_placeholder() -> None:
    placeholders = Placeholders()
    placeholders.placeholder("email", "a@example.com")  # [EMAIL_1]: 9 characters
    texts = await _restored(placeholders, ["a [EMAIL", "_1 is no placeholder at all", "."])
    assert texts == ["a ", "[EMAIL_1 is no placeholder at all", "."]
    # An opening bracket further back than a placeholder is long is never held.
    assert await _restored(placeholders, ["[ABCDEFGHIJ", "K]", ""]) == ["[ABCDEFGHIJ", "K]", ""]


async def test_what_is_held_at_the_finish_goes_out_with_it() -> None:
    placeholders = Placeholders()
    placeholders.placeholder("email", "a@example.com")
    assert await _restored(placeholders, ["ends [EMAIL_", "1]"]) == ["ends ", "a@example.com"]
    assert await _restored(placeholders, ["ends [EMAIL_"]) == ["ends [EMAIL_"]


async def test_a_placeholder_of_no_value_of_this_request_is_left_as_it_is() -> None:
    placeholders = Placeholders()
    placeholders.placeholder("email", "a@example.com")
    assert await _restored(placeholders, ["[EMAIL_2] [EMAIL_1]"]) == ["[EMAIL_2] a@example.com"]
