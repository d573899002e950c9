"""`modelyard_client.scrub`: which credentials are replaced, what is left alone, where it applies
(the wire's choke point `to_status` / `cap_message`, the log filter)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import secrets
from urllib.parse import quote

import pytest
from google.rpc import error_details_pb2

from modelyard.security.keys import new_secret
from modelyard_client.errors import AllModelsFailed, Attempt, InvalidRequest, cap_message, to_status
from modelyard_client.scrub import (
    MARKER,
    MIN_SECRET_LENGTH,
    ScrubbingFilter,
    register_secret,
    scrub,
    scrub_logging,
    upstream_text,
)


def _fresh_secret() -> str:
    """A value no pattern matches: only its registration can catch it."""
    return "canary" + secrets.token_hex(10)


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("Authorization: Bearer abc.def-ghi_123", f"Authorization: Bearer {MARKER}"),
        ("{'authorization': 'bearer zzzzzzzz'}", f"{{'authorization': 'bearer {MARKER}'}}"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: Basic {MARKER}"),
        ("key sk-proj-abcdefghijklmnop1234 here", f"key {MARKER} here"),
        ("sk-ant-api03-abcdefghijklmnopqrstu", MARKER),
        ("id AKIAIOSFODNN7EXAMPLE.", f"id {MARKER}."),
        ("AIzaSyA1234567890abcdefghijklmnopqrstu", MARKER),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", MARKER),
        ("xoxb-1234567890-abcdefghij", MARKER),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9",
            f"jwt {MARKER}",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- after",
            f"{MARKER} after",
        ),
        ('{"x-api-key": "abcdefgh12"}', f'{{"x-api-key": "{MARKER}"}}'),
        ("OPENAI_API_KEY=abcd1234 rest", f"OPENAI_API_KEY={MARKER} rest"),
        ("password: hunter22", f"password: {MARKER}"),
        ("client_secret=s3cr3tvalue", f"client_secret={MARKER}"),
        ("token 3f9a8b7c6d5e4f3a2b1c0d9e", f"token {MARKER}"),
        ("https://user:hunter22@host/v1", f"https://user:{MARKER}@host/v1"),
        ("redis://:pw123456@cache:6379/0", f"redis://:{MARKER}@cache:6379/0"),
        ("GET /v1/x?key=abc123&model=m", f"GET /v1/x?key={MARKER}&model=m"),
    ],
)
def test_credentials_are_replaced_by_the_marker(text: str, scrubbed: str) -> None:
    assert scrub(text) == scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "the token limit is 4096 tokens",
        "max_tokens=16 input_tokens: 12345 tokens_per_minute=600",
        "Basic authentication failed",
        "backends.openai.api_key: put secrets in the environment, e.g. ${OPENAI_API_KEY}",
        "put the password in the environment, e.g. redis://:${REDIS_PASSWORD}@host:6379",
        "api_key is empty",
        "upstream 'custom' at http://127.0.0.1:8000/v1 is unreachable: timed out",
        "api key '...abcd' is over its limit of 60 requests per minute",
        "model 'openai/gpt-4o-mini' is not in the catalog",
    ],
)
def test_ordinary_messages_are_left_alone(text: str) -> None:
    assert scrub(text) == text


def test_a_gateway_key_is_key_shaped() -> None:
    key = new_secret()
    assert scrub(f"presented {key}!") == f"presented {MARKER}!"


def test_a_registered_value_is_replaced_plain_percent_encoded_and_in_base64() -> None:
    value = _fresh_secret() + "/+="
    assert scrub(value) == value  # not yet: nothing about it looks like a key
    register_secret(value)
    assert scrub(f"a {value} b") == f"a {MARKER} b"
    assert value not in scrub(quote(value, safe=""))
    for prefix in (b"", b"x", b"xy", b"Bearer "):  # every alignment inside a base64 text
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(prefix + value.encode() + b"tail").decode()
            cleaned = scrub(f"echo {encoded}")
            assert MARKER in cleaned
            decodable = cleaned.replace(MARKER, "")
            assert value[:MIN_SECRET_LENGTH] not in _lenient_b64decode(decodable)


def _lenient_b64decode(text: str) -> str:
    """Every 4-character-aligned run of what is left, decoded, for a search by eye."""
    out = []
    for word in text.split():
        clean = word.replace("-", "+").replace("_", "/").rstrip("=")
        for start in range(4):
            chunk = clean[start:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            with contextlib.suppress(ValueError):
                out.append(base64.b64decode(chunk).decode("latin-1"))
    return " ".join(out)


def test_a_short_value_is_not_registered() -> None:
    register_secret("abc1234")  # 7 characters: replacing it everywhere would protect nothing
    assert scrub("abc1234") == "abc1234"


def test_json_stays_json() -> None:
    value = _fresh_secret()
    register_secret(value)
    text = json.dumps({"message": f'echo {{"Authorization": "Bearer {value}", "k": "{value}"}}'})
    assert value not in scrub(text)
    assert json.loads(scrub(text))["message"].count(MARKER) == 2


def test_upstream_text_is_scrubbed_then_capped() -> None:
    value = _fresh_secret()
    register_secret(value)
    text = "x" * 490 + value + "y" * 5000  # the secret straddles the 512-byte cut
    shown = upstream_text(text)
    assert len(shown.encode()) <= 512
    assert value[:8] not in shown
    assert shown.endswith("more characters)")
    assert upstream_text("short") == "short"


def test_the_wire_carries_no_secret_in_message_metadata_or_field_violations() -> None:
    value = _fresh_secret()
    register_secret(value)
    said = f"upstream said Authorization: Bearer {value}"
    failed = AllModelsFailed([Attempt("a/m", "UNAVAILABLE", "BACKEND_UNAVAILABLE", said)])
    status = to_status(failed)
    assert value not in status.message
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    attempts = json.loads(info.metadata["attempts"])  # still JSON
    assert attempts[0]["message"] == f"upstream said Authorization: Bearer {MARKER}"
    bad = to_status(InvalidRequest(f"bad {value}", field="params.stop"))
    violations = error_details_pb2.BadRequest()
    assert bad.details[1].Unpack(violations)
    assert violations.field_violations[0].description == f"bad {MARKER}"
    assert cap_message(f"k={value}") == f"k={MARKER}"


def test_log_records_are_scrubbed_at_debug_with_arguments_and_tracebacks() -> None:
    value = _fresh_secret()
    register_secret(value)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("modelyard.test_scrub")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        assert scrub_logging(logger) is scrub_logging(logger)  # one filter, installed once
        assert len(handler.filters) == 1
        logger.debug("calling with %s", {"Authorization": f"Bearer {value}"})
        try:
            raise RuntimeError(f"upstream echoed {value}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert value not in written
    assert f"DEBUG calling with {{'Authorization': 'Bearer {MARKER}'}}" in written
    assert f"RuntimeError: upstream echoed {MARKER}" in written


def test_the_filter_scrubs_a_record_once_for_every_handler() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", ("abcdefgh1",), None)
    scrubbing = ScrubbingFilter()
    assert scrubbing.filter(record)
    assert record.getMessage() == f"token={MARKER}"
    record.msg = "changed"  # a second handler's filter leaves it as the first left it
    assert scrubbing.filter(record)
    assert record.getMessage() == "changed"
