"""The fake's event-stream encoder, checked against botocore's decoder (the real framing)."""

from __future__ import annotations

import binascii
import json
import struct

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from support.fake_bedrock import delta, encode_message, exception_event, text_stream


def _decode(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    framing = EventStreamBuffer()
    framing.add_data(data)
    return [(dict(m.headers), m.payload) for m in framing]  # type: ignore[call-overload]


def test_a_message_decodes_to_its_headers_and_payload() -> None:
    message = encode_message({":event-type": "messageStart", "x": "é"}, b'{"role":"assistant"}')
    assert _decode(message) == [
        ({":event-type": "messageStart", "x": "é"}, b'{"role":"assistant"}')
    ]


def test_the_prelude_states_the_lengths_and_both_crcs_cover_what_they_should() -> None:
    message = encode_message({"a": "b"}, b"payload")
    total, headers_length, prelude_crc = struct.unpack("!III", message[:12])
    assert (total, headers_length) == (len(message), 1 + 1 + 1 + 2 + 1)
    assert prelude_crc == binascii.crc32(message[:8])
    assert struct.unpack("!I", message[-4:])[0] == binascii.crc32(message[:-4])


def test_a_whole_answer_decodes_as_bedrock_events_in_order() -> None:
    decoded = _decode(b"".join(text_stream(["Hi", "!"], input_tokens=3, output_tokens=2)))
    kinds = [headers[":event-type"] for headers, _ in decoded]
    assert kinds == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert all(h[":message-type"] == "event" for h, _ in decoded)
    assert json.loads(decoded[1][1])["delta"] == {"text": "Hi"}
    assert json.loads(decoded[-1][1])["usage"] == {
        "inputTokens": 3,
        "outputTokens": 2,
        "totalTokens": 5,
    }


def test_an_exception_event_names_its_type() -> None:
    [(headers, payload)] = _decode(exception_event("throttlingException", "slow down"))
    assert headers[":message-type"] == "exception"
    assert headers[":exception-type"] == "throttlingException"
    assert json.loads(payload) == {"message": "slow down"}


def test_a_flipped_payload_byte_fails_the_message_crc() -> None:
    message = bytearray(delta("Hello"))
    message[-6] ^= 0x01
    with pytest.raises(ChecksumMismatch):
        _decode(bytes(message))
