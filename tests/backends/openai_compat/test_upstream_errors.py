"""What a provider's error body and retry headers say (`upstream.py`), one rule per test."""

from __future__ import annotations

import json

from modelyard.backends.openai_compat.upstream import error_detail, refusal_for, retry_after_s
from modelyard_client.errors import ContentRejected, ContextLengthExceeded


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after_s({"retry-after-ms": "250", "Retry-After": "3"}) == 0.25


def test_an_unusable_retry_after_ms_leaves_retry_after() -> None:
    assert retry_after_s({"retry-after-ms": "soon", "Retry-After": "3"}) == 3.0


def test_openais_body_gives_its_message_and_code() -> None:
    body = {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    assert error_detail(json.dumps(body)) == ("too long", "context_length_exceeded")


def test_anthropics_body_gives_its_message_and_no_code() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert error_detail(json.dumps(body)) == ("Overloaded", "")


def test_a_body_that_is_not_json_is_its_own_detail() -> None:
    assert error_detail("<html>Bad Gateway</html>") == ("<html>Bad Gateway</html>", "")


def test_refusal_codes_keep_the_providers_code() -> None:
    too_long = refusal_for("context_length_exceeded", "m")
    assert isinstance(too_long, ContextLengthExceeded)
    assert too_long.provider_code == "context_length_exceeded"
    for code in ("content_policy_violation", "content_filter"):
        rejected = refusal_for(code, "m")
        assert isinstance(rejected, ContentRejected)
        assert rejected.provider_code == code
    assert refusal_for("rate_limit_exceeded", "m") is None
