"""Credentials out of every text that leaves a modelyard process: one function, `scrub`.

Whatever a caller, a log, a span or a metric receives passes through `scrub`
first: the wire (`modelyard_client.errors.cap_message`, applied by `to_status` to a
status's message, metadata and field violations, and to a batch item's
error), span statuses (the server interceptor, the gateway's backend calls),
log records (`ScrubbingFilter`, installed on the handlers wherever logging is
configured: `scrub_logging`), and text an upstream said, which is also capped
in length before it becomes part of an error (`upstream_text`).

What it replaces with `MARKER`:

- every value registered with `register_secret`: the provider keys
  (`modelyard.security.secrets.ProviderKeys` registers each one it reads, the
  keys of a rotation too, and every secret field of the configuration: the
  admin and service keys); also the value's
  base64 (standard and URL-safe, at any alignment inside a longer base64
  text) and percent-encoded forms, so an upstream that echoes a header
  encoded still leaks nothing;
- ``Bearer <token>`` and ``Basic <base64>`` credentials;
- key-shaped strings: modelyard's gateway keys ``myk_...``, OpenAI-style
  ``sk-...`` (``sk-proj-``, Anthropic's ``sk-ant-``), AWS access key ids
  ``AKIA...``/``ASIA...``, Google API keys ``AIza...``, GitHub and Slack
  tokens, JWTs, PEM private keys;
- the value after a credential word (``api_key``, ``x-api-key``, ``token``,
  ``secret``, ``password``, ``authorization``, ``credential``...) followed by
  ``:`` or ``=`` (a JSON echo of headers, a query string), and a long run
  holding a digit after such a word and a space;
- the password of a URL's user info (``https://user:PASSWORD@host``).

The replaced part never holds a quote or a backslash, so a JSON text (the
`AllModelsFailed` attempts in ErrorInfo metadata) stays valid JSON.

A leaf module (standard library only): the errors package, which every other
part imports, uses it, so it may import none of them.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from urllib.parse import quote

MARKER = "[REDACTED]"
# Anything an upstream said, as it may appear in an error: at most this many UTF-8 bytes.
UPSTREAM_TEXT_LIMIT_BYTES = 512
# An upstream's text is scrubbed over this many characters before it is cut to its
# limit, so a secret that straddles the cut is replaced whole, not half kept.
_UPSTREAM_SCRUB_WINDOW = 8192
# A registered value shorter than this is not scrubbed by value: replacing every
# "abc" in every log would destroy the text and protect nothing real.
MIN_SECRET_LENGTH = 8

_TOKEN = r"[A-Za-z0-9._~+/=-]"  # RFC 6750 b64token characters, '/' and '=' included
_WORD = (
    r"(?:x[-_])?api[-_]?key|apikey|access[-_]?key(?:[-_]id)?|secret(?:[-_]?key)?|"
    r"client[-_]secret|(?:access|refresh|id|auth|session|bearer)[-_]?token|token|"
    r"password|passwd|pwd|authorization|credentials?|private[-_]key"
)
# (pattern, replacement): each replacement keeps what names the credential.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        MARKER,
    ),
    (re.compile(r"(?i)\b(bearer)\s+" + _TOKEN + r"{6,}"), r"\1 " + MARKER),
    (
        re.compile(r"(?i)\b(basic)\s+(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}"),
        r"\1 " + MARKER,
    ),
    # modelyard's own gateway keys (`modelyard.security.keys.KEY_PREFIX`, token_urlsafe(32)).
    (re.compile(r"\bmyk_[A-Za-z0-9_-]{20,}"), MARKER),
    (re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9_-]{14,}"), MARKER),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MARKER),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), MARKER),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), MARKER),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MARKER),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MARKER),
    (
        re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@\"'\\]*:)(?!\$\{)[^/\s@\"'\\]+@"),
        r"\1" + MARKER + "@",
    ),
    # word, optional closing quote, ':' or '=', optional opening quote: then the value.
    (
        re.compile(
            r"(?i)((?<![A-Za-z0-9])(?:" + _WORD + r")\b[\"']?\s*[:=]\s*[\"']?)"
            r"(?!(?:(?:bearer|basic)\s+)?\[REDACTED\]|\$\{)"
            r"(?:(?:bearer|basic)\s+)?" + _TOKEN + r"{4,}"
        ),
        r"\1" + MARKER,
    ),
    # word, a space, then a long run that holds a digit: "token 3f9a...".
    (
        re.compile(
            r"(?i)((?<![A-Za-z0-9])(?:"
            + _WORD
            + r")\s+)(?="
            + _TOKEN
            + r"*[0-9])"
            + _TOKEN
            + r"{16,}"
        ),
        r"\1" + MARKER,
    ),
    (re.compile(r"(?i)([?&](?:key|sig|signature|code)=)[^&\s\"'\\#]+"), r"\1" + MARKER),
)


class _Registry:
    """The values scrubbed by value, and one pattern matching any of them (longest first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        forms = encoded_forms(value)
        with self._lock:
            if forms <= self._forms:
                return
            self._forms |= forms
            ordered = sorted(self._forms, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(f) for f in ordered))


_registry = _Registry()


def register_secret(value: str) -> None:
    """Scrub `value` (and its encoded forms) from every text from now on.

    Values shorter than `MIN_SECRET_LENGTH` are ignored. A value stays
    registered for the life of the process: a rotated-out key is still a
    secret. Safe from any thread.
    """
    if len(value.strip()) >= MIN_SECRET_LENGTH:
        _registry.add(value.strip())


def encoded_forms(value: str) -> set[str]:
    """`value`, its percent-encoding, and the base64 text that encodes it at any alignment.

    Inside a longer base64 text (``Basic`` credentials, a header echoed
    encoded) the value's bytes start at offset 0, 1 or 2 of a 3-byte group;
    for each, the characters that depend on the value alone are the same
    wherever it appears, in the standard and in the URL-safe alphabet.
    """
    data = value.encode()
    forms = {value, quote(value, safe="")}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode().rstrip("=")
        # The first `lead` characters mix in the bytes before; the last ones the bytes after.
        lead = (offset * 8 + 5) // 6
        end = ((offset + len(data)) * 8) // 6
        middle = encoded[lead:end]
        if len(middle) >= MIN_SECRET_LENGTH:
            forms.add(middle)
            forms.add(middle.replace("+", "-").replace("/", "_"))
    return forms


def scrub(text: str) -> str:
    """`text` with every credential (the module docstring's list) replaced by `MARKER`."""
    pattern = _registry.pattern
    if pattern is not None:
        text = pattern.sub(MARKER, text)
    for credential, replacement in _PATTERNS:
        text = credential.sub(replacement, text)
    return text


def upstream_text(text: str, limit_bytes: int = UPSTREAM_TEXT_LIMIT_BYTES) -> str:
    """What an upstream (or a plug-in) said, fit to put in an error: scrubbed, then cut to
    `limit_bytes` of UTF-8 with ``… (N more characters)`` saying how much was left out."""
    window = scrub(text[:_UPSTREAM_SCRUB_WINDOW])
    left_out = max(len(text) - _UPSTREAM_SCRUB_WINDOW, 0)
    data = window.encode("utf-8", "replace")
    if len(data) <= limit_bytes and not left_out:
        return window
    marker_room = len(_cut_marker(len(text)).encode())
    head = data[: max(limit_bytes - marker_room, 0)].decode("utf-8", "ignore")
    return head + _cut_marker(len(window) - len(head) + left_out)


def _cut_marker(left_out: int) -> str:
    return f"… ({left_out} more characters)"


class ScrubbingFilter(logging.Filter):
    """Scrubs a log record as a handler emits it: its message (arguments merged in), its
    traceback and its stack, at every level.

    The record's message is formatted here once and its arguments dropped, so no
    formatter downstream sees the raw values; the traceback is formatted and
    stored in ``exc_text``, which `logging.Formatter` uses as it is.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_modelyard_scrubbed", False):
            return True  # another handler's filter did it already
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._modelyard_scrubbed = True
        return True


def scrub_logging(logger: logging.Logger | None = None) -> ScrubbingFilter:
    """Install one `ScrubbingFilter` on every handler of `logger` (default: the root logger).

    Call it after the handlers exist (after ``logging.basicConfig``): a filter on a
    handler sees every record that handler emits, whichever logger made it.
    """
    target = logger or logging.getLogger()
    found = next(
        (f for h in target.handlers for f in h.filters if isinstance(f, ScrubbingFilter)), None
    )
    scrubbing = found or ScrubbingFilter()
    for handler in target.handlers:
        if scrubbing not in handler.filters:
            handler.addFilter(scrubbing)
    return scrubbing
