"""How big an error may be on the wire, and how a text is cut to fit.

Everything a status carries travels in trailers: the message in
``grpc-message`` (percent-encoded: up to three bytes per byte of UTF-8 outside
printable ASCII) and the ``google.rpc.Status`` in ``grpc-status-details-bin``.
gRPC refuses received metadata over 8 KiB at random and over 16 KiB always,
and the caller then sees "received metadata size exceeds hard limit" instead
of the error. With these bounds the two trailers stay under 8 KiB together
even when every character of the message is outside ASCII: a message of
1 KiB (3 KiB percent-encoded, 1 KiB again in the Status), field violations of
1 KiB and ErrorInfo metadata of 2 KiB.

What crosses is scrubbed of credentials first (`modelyard_client.scrub`): the
message here, metadata and field violations in `to_status`.
"""

from __future__ import annotations

from modelyard_client.scrub import scrub

# UTF-8 bytes of an error's message on the wire (the status message, a batch item's).
MESSAGE_LIMIT_BYTES = 1024
# UTF-8 bytes of all ErrorInfo metadata, keys and values together.
METADATA_LIMIT_BYTES = 2048
# UTF-8 bytes of all BadRequest field violations; each one's field and description.
VIOLATIONS_LIMIT_BYTES = 1024
VIOLATION_FIELD_LIMIT_BYTES = 256
VIOLATION_DESCRIPTION_LIMIT_BYTES = 512


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def shorten(text: str, limit_bytes: int) -> str:
    """`text` when its UTF-8 fits in `limit_bytes`; else its head and ``… (N more characters)``,
    the whole within `limit_bytes` (a limit under the marker's ~30 bytes leaves the marker)."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit_bytes:
        return text
    room = max(0, limit_bytes - len(_marker(len(text)).encode()))
    head = data[:room].decode("utf-8", "ignore")  # drops a character cut in two
    return head + _marker(len(text) - len(head))


def cap_message(message: str) -> str:
    """An error message as it crosses the wire: scrubbed of credentials
    (`modelyard_client.scrub.scrub`), then at most `MESSAGE_LIMIT_BYTES`."""
    return shorten(scrub(message), MESSAGE_LIMIT_BYTES)


def _marker(left_out: int) -> str:
    return f"… ({left_out} more characters)"
