"""Guardrails: what a request may hold, and what an answer may say (`security.guardrails`).

On the input, before anything else is done with it (`gateway/guarded.py`),
over every free-text field (`redaction.input_texts`: the text, each chat
message, the structured input's strings, and the same in `task.input`):

- control characters: any of Unicode category Cc (C0, DEL, C1) other than
  tab, newline and carriage return. ``refuse`` (the default) answers
  INVALID_ARGUMENT naming the field and the character, since a stray NUL or
  ESC in a prompt is more often an injection or a broken client than text;
  ``strip`` takes them out and sends the rest;
- size: `max_input_chars`, the characters of every field together
  (`security.input_limits.max_input_bytes` holds whether it is set or not);
- the response schema: a `params.response_schema_json` that is not JSON or
  not a valid JSON Schema is refused here, not after the model answered;
- deny rules that apply to the input: the first whose pattern or term matches
  refuses the request with `ContentBlocked` naming the rule and the field.

On the answer (`AnswerCheck`), as it streams: the deny rules that apply to
the output are matched against each piece together with the end of the text
before it (`LOOKBACK_CHARS`), so a term cut between two pieces is caught; a
match ends the stream with `ContentBlocked` before the piece that completed
it is sent. At the end, the whole answer is validated against the request's
schema (`jsonschema`, the draft the schema names, 2020-12 otherwise); the
finish chunk is held until it passes, and a failure is `OutputSchemaMismatch`
naming the schema path and the answer's path of the first error.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from modelyard.config.security import DenyRule, GuardrailsConfig
from modelyard.gateway.redaction import input_texts, rewrite_texts
from modelyard_client.errors import (
    ContentBlocked,
    InvalidRequest,
    OutputSchemaMismatch,
    RequestTooLarge,
)
from modelyard_client.v1 import common_pb2, gateway_pb2

Chunks = AsyncGenerator[gateway_pb2.GenerateChunk, None]

# How much of the answer before a piece is matched with it: a deny match longer
# than this that spans pieces is not seen (terms and usual patterns are far shorter).
LOOKBACK_CHARS = 1024
# Unicode category Cc (C0, DEL, C1: every Cc there is) less tab, newline, carriage return.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A deny rule ready to match: its name, its regex, where it applies."""

    name: str
    regex: re.Pattern[str]
    on_input: bool
    on_output: bool

    @classmethod
    def of(cls, rule: DenyRule) -> CompiledRule:
        if rule.pattern is not None:
            regex = re.compile(rule.pattern)
        else:  # whole words or phrases, any case
            alternatives = "|".join(re.escape(t) for t in sorted(rule.terms, key=len, reverse=True))
            regex = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
        return cls(rule.name, regex, "input" in rule.applies_to, "output" in rule.applies_to)


def _control_character(text: str) -> tuple[int, str] | None:
    """The first control character of `text` the guardrail refuses, and its index."""
    found = _CONTROLS.search(text)
    return None if found is None else (found.start(), found.group())


def _strip_controls(text: str) -> str:
    return _CONTROLS.sub("", text)


class Guardrails:
    """The guardrail stages of one gateway, as `security.guardrails` configures them."""

    def __init__(self, config: GuardrailsConfig) -> None:
        self.config = config
        self.rules = tuple(CompiledRule.of(r) for r in config.deny_rules)
        self.output_rules = tuple(r for r in self.rules if r.on_output)

    def check_input(self, request: gateway_pb2.GenerateRequest) -> gateway_pb2.GenerateRequest:
        """`request` if it passes, a copy without control characters under ``strip``;
        else the error of the first check it fails (see the module doc)."""
        fields = _input_fields(request)
        if self._controls_to_strip(fields):
            request = _stripped(request)
            fields = _input_fields(request)
        self._check_size(fields)
        if self.config.validate_output_schema and request.params.response_schema_json:
            schema_validator(request.params.response_schema_json)
        self._check_denied(fields)
        return request

    def check_texts(self, fields: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The input checks of free-text `fields` ((path, text): an Embed's inputs) that are
        not a Generate's input: the fields as they go on (control characters stripped under
        ``strip``), else the error of the first check they fail."""
        texts = list(fields)
        if self._controls_to_strip(texts):
            texts = [(path, _strip_controls(text)) for path, text in texts]
        self._check_size(texts)
        self._check_denied(texts)
        return texts

    def _controls_to_strip(self, fields: Sequence[tuple[str, str]]) -> bool:
        """Under ``strip``, whether `fields` hold control characters to take out; under
        ``refuse``, `InvalidRequest` naming the first one."""
        if self.config.control_characters == "strip":
            return any(_control_character(text) for _, text in fields)
        for path, text in fields:
            found = _control_character(text)
            if found is not None:
                index, ch = found
                raise InvalidRequest(
                    f"{path} holds the control character U+{ord(ch):04X} at character "
                    f"{index}; control characters other than tab, newline and carriage "
                    "return are refused (security.guardrails.control_characters)",
                    field=path,
                )
        return False

    def _check_size(self, fields: Sequence[tuple[str, str]]) -> None:
        limit = self.config.max_input_chars
        if limit is not None:
            total = sum(len(text) for _, text in fields)
            if total > limit:
                raise RequestTooLarge(
                    f"the input holds {total} characters of text; the limit is {limit} "
                    "(security.guardrails.max_input_chars)"
                )

    def _check_denied(self, fields: Sequence[tuple[str, str]]) -> None:
        for rule in self.rules:
            if not rule.on_input:
                continue
            for path, text in fields:
                if rule.regex.search(text):
                    raise ContentBlocked(
                        f"{path} matches content filter rule '{rule.name}' "
                        "(security.guardrails.deny_rules): the request is refused",
                        rule=rule.name,
                        stage="input",
                        field=path,
                    )

    def answer_check(self, request: gateway_pb2.GenerateRequest) -> AnswerCheck | None:
        """The checks of this request's answer; None when there are none."""
        schema = None
        if self.config.validate_output_schema and request.params.response_schema_json:
            schema = schema_validator(request.params.response_schema_json)
        if schema is None and not self.output_rules:
            return None
        return AnswerCheck(self.output_rules, schema)


def _input_fields(request: gateway_pb2.GenerateRequest) -> list[tuple[str, str]]:
    """(path, text) of every free-text field of the request's input and task.input."""
    fields = list(input_texts(request.input, "input"))
    if request.HasField("task") and request.task.HasField("input"):  # seldom set
        fields.extend(input_texts(request.task.input, "task.input"))
    return fields


def _stripped(request: gateway_pb2.GenerateRequest) -> gateway_pb2.GenerateRequest:
    out = gateway_pb2.GenerateRequest()
    out.CopyFrom(request)
    for model_input in (out.input, out.task.input):
        rewrite_texts(model_input, _strip_controls)
    return out


def schema_validator(
    schema_json: str, field: str = "params.response_schema_json"
) -> jsonschema.protocols.Validator:
    """A validator of `schema_json`; `InvalidRequest` naming `field` when it is not one."""
    try:
        schema = json.loads(schema_json)
    except ValueError as exc:
        raise InvalidRequest(f"{field} is not JSON: {exc}", field=field) from None
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{field} must be a JSON object (a JSON Schema)", field=field)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(the root)"
        raise InvalidRequest(
            f"{field} is not a valid JSON Schema at {where}: {exc.message}", field=field
        ) from None
    return cls(schema)


class AnswerCheck:
    """One answer's output checks: deny rules as it streams, its schema once it is whole."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        schema: jsonschema.protocols.Validator | None,
    ) -> None:
        self.rules = rules
        self.schema = schema

    async def checked(self, chunks: Chunks) -> Chunks:
        """`chunks`, each piece matched against the output rules before it is sent, and the
        finish chunk held until the whole answer passes the schema."""
        text = ""
        async with aclosing(chunks):
            async for chunk in chunks:
                self._match(text[-LOOKBACK_CHARS:], chunk.text)
                text += chunk.text
                if chunk.finish_reason and self.schema is not None:
                    self._validate(text, chunk.finish_reason)
                yield chunk

    def _match(self, before: str, piece: str) -> None:
        if not piece:
            return
        window = before + piece
        for rule in self.rules:
            for m in rule.regex.finditer(window):
                if m.end() > len(before):  # ends in this piece: not seen before
                    raise ContentBlocked(
                        f"the answer matches content filter rule '{rule.name}' "
                        "(security.guardrails.deny_rules): it is cut there",
                        rule=rule.name,
                        stage="output",
                    )

    def _validate(self, text: str, finish: common_pb2.FinishReason.ValueType) -> None:
        assert self.schema is not None
        why = "it was cut at max_tokens" if finish == common_pb2.FINISH_REASON_LENGTH else ""
        try:
            instance = json.loads(text)
        except ValueError as exc:
            raise OutputSchemaMismatch(
                "the answer is not JSON, so it does not follow params.response_schema_json"
                + (f" ({why})" if why else "")
                + f": {exc}",
                schema_path="",
                instance_path="$",
            ) from None
        error = jsonschema.exceptions.best_match(self.schema.iter_errors(instance))
        if error is None:
            return
        schema_path = "/".join(str(p) for p in error.schema_path)
        raise OutputSchemaMismatch(
            f"the answer does not follow params.response_schema_json at {error.json_path}: "
            f"{_short(error.message)} (schema path {schema_path or '(the root)'})",
            schema_path=schema_path,
            instance_path=error.json_path,
        )


def _short(message: str, limit: int = 300) -> str:
    """A validation message quotes the answer's value: bounded, so an error stays small."""
    return message if len(message) <= limit else message[:limit] + "…"
