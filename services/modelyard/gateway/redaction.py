"""Anonymization: personal data replaced by placeholders before a request leaves the gateway.

With `security.redaction.enabled`, every value the detectors find
(`modelyard.security.pii`: the configured built-in types and custom patterns)
in the text of a request's input — `input.text`, each chat message's
content and text parts, the string values of `input.structured`, and the same in
`task.input` — becomes ``[TYPE_n]``: typed, numbered from 1 per request and
type, the same value the same placeholder within the request. A number a
placeholder would take that the caller's own text already holds is skipped,
so a literal ``[EMAIL_1]`` the caller wrote is never mistaken for one.

The stage runs first on the gateway's path (`gateway/guarded.py`), so every
thing after it — the response cache (key and stored answer), the conversation
history, split-call outcomes, every log line — sees only redacted text, and a
cached answer holds placeholders that each hit restores with its own request's
values. With `restore_redacted` set, `Placeholders.restoring` turns the
placeholders of the answer back into the values, for the caller only; a
streamed placeholder cut between two chunks is held back until its end comes
(at most the longest placeholder's length less one character is held).

Not redacted: image URLs and binary inputs (a URL rewritten cannot be
fetched), stop sequences, the response schema. A conversation's earlier turns
are stored redacted and sent redacted; their placeholders were numbered in
their own request, so this request's reversal restores only its own values.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field

from google.protobuf import struct_pb2

from modelyard.config.security import RedactionConfig
from modelyard.security.pii import PiiDetectors
from modelyard_client.v1 import common_pb2, gateway_pb2

Chunks = AsyncGenerator[gateway_pb2.GenerateChunk, None]

_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")
_OPEN_PLACEHOLDER = re.compile(r"\[[A-Z0-9_]*\Z")  # the start of one, cut by a chunk's end


@dataclass
class Placeholders:
    """One request's mapping between values and their placeholders."""

    taken: str = ""  # the caller's own text: placeholders it holds are not handed out
    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    by_placeholder: dict[str, str] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_placeholder)

    def placeholder(self, kind: str, value: str) -> str:
        """The placeholder of `value` (of `kind`), the same every time within the request."""
        known = self.by_value.get((kind, value))
        if known is not None:
            return known
        label = kind.upper()
        n = self._counts.get(label, 0)
        while True:
            n += 1
            made = f"[{label}_{n}]"
            if made not in self.taken:
                break
        self._counts[label] = n
        self.by_value[(kind, value)] = made
        self.by_placeholder[made] = value
        return made

    def restore(self, text: str) -> str:
        """`text` with this request's placeholders back to their values (others as they are)."""
        if not self.by_placeholder:
            return text
        return _PLACEHOLDER.sub(lambda m: self.by_placeholder.get(m.group(0), m.group(0)), text)

    @property
    def longest(self) -> int:
        return max((len(p) for p in self.by_placeholder), default=0)

    async def restoring(self, chunks: Chunks) -> Chunks:
        """`chunks` with the placeholders restored; each chunk keeps its other fields."""
        held = ""
        async with aclosing(chunks):
            async for chunk in chunks:
                pending = held + chunk.text
                cut = len(pending) if chunk.finish_reason else _safe_end(pending, self.longest)
                held = pending[cut:]
                chunk.text = self.restore(pending[:cut])
                yield chunk
        # Held text of a stream that ended without a finish chunk is an answer cut
        # short: its error (raised from `chunks`) says so, and nothing half is sent.


def _safe_end(text: str, longest: int) -> int:
    """How much of `text` can go out now: all but a trailing start of a placeholder."""
    start = text.rfind("[", max(0, len(text) - longest + 1))
    if start != -1 and _OPEN_PLACEHOLDER.match(text, start):
        return start
    return len(text)


class Redaction:
    """The anonymization stage, as `security.redaction` configures it."""

    def __init__(self, detectors: PiiDetectors) -> None:
        self.detectors = detectors

    @classmethod
    def from_config(cls, config: RedactionConfig) -> Redaction | None:
        """The stage; None when anonymization is off."""
        if not config.enabled:
            return None
        custom = tuple((p.name, re.compile(p.pattern)) for p in config.custom_patterns)
        return cls(PiiDetectors(frozenset(config.types), custom))

    def redact_text(self, text: str, placeholders: Placeholders) -> str:
        """`text` with every finding replaced by its placeholder."""
        found = self.detectors.find(text)
        if not found:
            return text
        out: list[str] = []
        at = 0
        for match in found:
            out.append(text[at : match.start])
            out.append(placeholders.placeholder(match.kind, match.value))
            at = match.end
        out.append(text[at:])
        return "".join(out)

    def redact(
        self, request: gateway_pb2.GenerateRequest
    ) -> tuple[gateway_pb2.GenerateRequest, Placeholders]:
        """A redacted copy of `request` and its placeholders; `request` is left as it came."""
        redacted = gateway_pb2.GenerateRequest()
        redacted.CopyFrom(request)
        placeholders = Placeholders(taken="\0".join(texts_of(request)))
        for model_input in (redacted.input, redacted.task.input):
            rewrite_texts(model_input, lambda text: self.redact_text(text, placeholders))
        return redacted, placeholders


def texts_of(request: gateway_pb2.GenerateRequest) -> Iterable[str]:
    """The free text of a request's input and task input, as the stages read it."""
    for model_input in (request.input, request.task.input):
        for _, text in input_texts(model_input):
            yield text


def input_texts(model_input: common_pb2.Input, prefix: str = "input") -> Iterable[tuple[str, str]]:
    """(field path, text) of every free-text field of `model_input`."""
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        yield f"{prefix}.text", model_input.text
    elif kind == "chat":
        for i, message in enumerate(model_input.chat.messages):
            yield f"{prefix}.chat.messages[{i}].content", message.content
            for j, part in enumerate(message.parts):  # an image part has no text
                if part.WhichOneof("part") == "text":
                    yield f"{prefix}.chat.messages[{i}].parts[{j}].text", part.text
            for j, call in enumerate(message.tool_calls):  # a tool's arguments are text too
                yield (
                    f"{prefix}.chat.messages[{i}].tool_calls[{j}].arguments_json",
                    (call.arguments_json),
                )
    elif kind == "structured":
        yield from _struct_texts(model_input.structured, f"{prefix}.structured")


def _struct_texts(struct: struct_pb2.Struct, path: str) -> Iterable[tuple[str, str]]:
    for key in sorted(struct.fields):
        yield from _value_texts(struct.fields[key], f"{path}.{key}")


def _value_texts(value: struct_pb2.Value, path: str) -> Iterable[tuple[str, str]]:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        yield path, value.string_value
    elif kind == "struct_value":
        yield from _struct_texts(value.struct_value, path)
    elif kind == "list_value":
        for i, item in enumerate(value.list_value.values):
            yield from _value_texts(item, f"{path}[{i}]")


def rewrite_texts(model_input: common_pb2.Input, rewrite: Callable[[str], str]) -> None:
    """Every free-text field of `model_input` (those `input_texts` reads) set to `rewrite(it)`."""
    kind = model_input.WhichOneof("kind")
    if kind == "text":
        model_input.text = rewrite(model_input.text)
    elif kind == "chat":
        for message in model_input.chat.messages:
            message.content = rewrite(message.content)
            for part in message.parts:
                if part.WhichOneof("part") == "text":
                    part.text = rewrite(part.text)
            for call in message.tool_calls:
                call.arguments_json = rewrite(call.arguments_json)
    elif kind == "structured":
        for key in sorted(model_input.structured.fields):  # numbered in one order
            _rewrite_value(model_input.structured.fields[key], rewrite)


def _rewrite_value(value: struct_pb2.Value, rewrite: Callable[[str], str]) -> None:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        value.string_value = rewrite(value.string_value)
    elif kind == "struct_value":
        for key in sorted(value.struct_value.fields):
            _rewrite_value(value.struct_value.fields[key], rewrite)
    elif kind == "list_value":
        for item in value.list_value.values:
            _rewrite_value(item, rewrite)
