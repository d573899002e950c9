"""A fake AWS Bedrock Runtime for the bedrock engine's tests: ConverseStream, signed.

It follows the Bedrock Runtime API reference, API version 2023-09-30 (pages
read 2026-12-01; the same API is botocore's service model
``bedrock-runtime/2023-09-30``, which this fake's checks were compared with):

- the request: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html,
  ``POST /model/{modelId}/converse-stream`` with the model id percent-encoded
  in the path, a JSON body of ``messages`` (roles user/assistant, content
  ``[{text}]``), ``system``, ``inferenceConfig`` (``maxTokens`` >= 1,
  ``temperature`` and ``topP`` in [0, 1], ``stopSequences``),
  ``additionalModelRequestFields``, ``outputConfig``; anything else refused
  with ValidationException, as Bedrock does;
- authentication: AWS Signature Version 4
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html) for
  the signing name ``bedrock``: the fake recomputes each request's signature
  with botocore's own signer from the credentials it knows and the headers
  the request says it signed, and refuses a request as AWS does: 403
  ``MissingAuthenticationTokenException`` without an Authorization header,
  400 ``IncompleteSignatureException`` for one it cannot parse, 403
  ``UnrecognizedClientException`` ("The security token included in the
  request is invalid.") for an unknown access key or session token, 403
  ``InvalidSignatureException`` for a signature that does not match, a
  scope of another region or service, or a date over 5 minutes off;
- the answer: ``200``, ``Content-Type: application/vnd.amazon.eventstream``,
  AWS event-stream messages (prelude with total and headers length and its
  CRC32, string headers ``:event-type``/``:content-type``/``:message-type``, a
  JSON payload, the message CRC32:
  https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html), the
  events of ConverseStreamOutput: ``messageStart``, ``contentBlockDelta``,
  ``contentBlockStop``, ``messageStop``, ``metadata``, each payload with the
  ``p`` padding field Bedrock adds; exception events with
  ``:message-type exception`` and ``:exception-type`` (``throttlingException``,
  ``modelStreamErrorException``, ...);
- failures (the reference's Errors section): the status, the type in the
  ``x-amzn-ErrorType`` header (``ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/``)
  and a body ``{"message": ...}``, or the type in the body's ``__type``;
  an unknown model id is 400 ValidationException "The provided model
  identifier is invalid.".

Tool use (the reference's ``ToolConfiguration``, ``ToolSpecification``, ``ToolChoice``,
``ToolUseBlock``, ``ToolResultBlock``, ``ContentBlockStart``, ``ToolUseBlockDelta``; the
user guide's "Call a tool with the Converse API",
https://docs.aws.amazon.com/bedrock/latest/userguide/tool-use-inference-call.html):
``toolConfig`` ``{tools: [{toolSpec: {name, description, inputSchema: {json}}}], toolChoice:
{auto: {}} | {any: {}} | {tool: {name}}}``; assistant ``toolUse`` blocks ``{toolUseId, name,
input}``, user ``toolResult`` blocks ``{toolUseId, content: [{text} | {json}], status}``, each
answering a ``toolUse`` of the assistant message just before (all of them), and none of
these blocks without ``toolConfig`` (ValidationException, as Bedrock answers). A streamed
call is ``contentBlockStart`` ``{start: {toolUse: {toolUseId, name}}, contentBlockIndex}``,
``contentBlockDelta`` ``{delta: {toolUse: {input: "<a piece of the JSON>"}}}`` and
``contentBlockStop`` at that index, then ``messageStop`` ``tool_use``. Usage may carry
``cacheReadInputTokens``/``cacheWriteInputTokens``, counted apart from ``inputTokens``.

``POST /model/{modelId}/converse`` (Converse, unary) takes the same request and
answers ``{output: {message: {role, content: [{text}]}}, stopReason, usage,
metrics}``, per the Converse page's Response Syntax.

Unscripted, it answers a known model with a short stream (or answer). A test scripts
other answers (`answer`, `answer_unary`, `fail`, `cut_after`, `drop_after`, `raw`) and reads
what was sent (`requests`).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from support.bedrock_tool_checks import constraint, tools_problem

ACCESS_KEY_ID = "AKIDEXAMPLEBEDROCK01"  # not AKIA-shaped: the scrubber would hide it in asserts
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
MODELS = ("amazon.nova-lite-v1:0", "global.anthropic.claude-sonnet-4-5-20250929-v1:0")
EVENT_STREAM = "application/vnd.amazon.eventstream"
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123"
_SKEW = datetime.timedelta(minutes=5)
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
_TOP_LEVEL = {
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "promptVariables",
    "additionalModelResponseFieldPaths",
    "requestMetadata",
    "performanceConfig",
    "serviceTier",
    "outputConfig",
}
_INFERENCE = {"maxTokens", "temperature", "topP", "stopSequences"}


# ---- the event-stream framing -------------------------------------------------------
def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths, CRC32), string headers, payload, CRC32."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name
        encoded += struct.pack("!BH", 7, len(raw_value)) + raw_value  # 7: string
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack("!I", binascii.crc32(body))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """An event of ConverseStreamOutput, with Bedrock's ``p`` padding in its payload."""
    data = json.dumps({**payload, "p": _PADDING[: 1 + len(event_type) % 20]}).encode()
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_message(headers, data)


def exception_event(exception_type: str, message: str, **extra: Any) -> bytes:
    """An exception event (``throttlingException``, ``modelStreamErrorException``...)."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, json.dumps({"message": message, **extra}).encode())


def message_start() -> bytes:
    return event("messageStart", {"role": "assistant"})


def delta(text: str, index: int = 0) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": text}})


def block_stop(index: int = 0) -> bytes:
    return event("contentBlockStop", {"contentBlockIndex": index})


def message_stop(stop_reason: str = "end_turn") -> bytes:
    return event("messageStop", {"stopReason": stop_reason})


def tool_use_start(index: int, tool_use_id: str, name: str) -> bytes:
    """The start of a call's block: ``contentBlockStart.start.toolUse``."""
    start = {"toolUse": {"toolUseId": tool_use_id, "name": name}}
    return event("contentBlockStart", {"start": start, "contentBlockIndex": index})


def tool_use_delta(index: int, fragment: str) -> bytes:
    """A piece of a call's input JSON: ``contentBlockDelta.delta.toolUse.input``."""
    return event(
        "contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": fragment}}}
    )


def metadata(
    input_tokens: int, output_tokens: int, cache_read: int | None = None, cache_write: int = 0
) -> bytes:
    """The last event: usage (the cache's counts beside ``inputTokens``) and metrics."""
    usage = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens + (cache_read or 0) + cache_write,
    }
    if cache_read is not None:
        usage["cacheReadInputTokens"] = cache_read
        usage["cacheWriteInputTokens"] = cache_write
    return event("metadata", {"usage": usage, "metrics": {"latencyMs": 321}})


def text_stream(
    texts: Sequence[str],
    stop_reason: str = "end_turn",
    input_tokens: int = 7,
    output_tokens: int | None = None,
) -> list[bytes]:
    """A whole answer as Bedrock streams it."""
    out = len(texts) if output_tokens is None else output_tokens
    return [
        message_start(),
        *(delta(t) for t in texts),
        block_stop(),
        message_stop(stop_reason),
        metadata(input_tokens, out),
    ]


def converse_output(
    text: str,
    stop_reason: str = "end_turn",
    input_tokens: int = 7,
    output_tokens: int = 4,
    tool_uses: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A Converse (unary) answer, as the API reference's Response Syntax shows it (its
    `tool_uses`, ``{toolUseId, name, input}``, as ``toolUse`` blocks after the text)."""
    content: list[dict[str, Any]] = [{"text": text}] if text else []
    content += [{"toolUse": use} for use in tool_uses]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
        "metrics": {"latencyMs": 321},
    }


# ---- the server --------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    """One ConverseStream request as the fake got it (after its signature was checked)."""

    model_id: str  # decoded from the path
    raw_path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeBedrock:
    """Bedrock Runtime on 127.0.0.1, one region, the credentials in `credentials`."""

    region: str = REGION
    models: tuple[str, ...] = MODELS
    # access key id -> (secret key, session token or "")
    credentials: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {ACCESS_KEY_ID: (SECRET_ACCESS_KEY, "")}
    )
    requests: list[Received] = field(default_factory=list)  # signed and accepted
    refused: list[str] = field(default_factory=list)  # error types of refused signatures
    url: str = ""
    _messages: list[bytes] | None = None
    _error: tuple[int, str, str, dict[str, str], bool] | None = None
    _cut_after: int | None = None
    _drop_after: int | None = None
    _raw: bytes | None = None
    _unary: Any = None
    _runner: web.AppRunner | None = None

    # ---- scripting -------------------------------------------------------------
    def answer(self, messages: Sequence[bytes]) -> None:
        """Stream these event-stream messages, whole, then end the body."""
        self._messages = list(messages)

    def fail(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        in_body: bool = False,
    ) -> None:
        """Answer with an AWS error: the type in ``x-amzn-ErrorType`` (or the body's
        ``__type`` when `in_body`) and ``{"message": ...}``."""
        self._error = (status, error_type, message, headers or {}, in_body)

    def cut_after(self, messages: int) -> None:
        """Send only the first `messages` messages, then end the body cleanly."""
        self._cut_after = messages

    def drop_after(self, messages: int) -> None:
        """Send the first `messages` messages and half the next, then close the connection."""
        self._drop_after = messages

    def answer_unary(self, body: Any) -> None:
        """Answer Converse (unary) calls with this JSON body (`converse_output` builds one)."""
        self._unary = body

    def raw(self, data: bytes) -> None:
        """Send these bytes as the event-stream body (framing a test breaks on purpose)."""
        self._raw = data

    # ---- answering -------------------------------------------------------------
    async def _accept(self, request: web.Request) -> web.Response | None:
        """What every call goes through: the signature, the body, the scripted error."""
        data = await request.read()
        refused = self._check_signature(request, data)
        if refused is not None:
            return refused
        model_id = unquote(request.match_info["model_id"])
        try:
            body = json.loads(data)
        except ValueError:
            return aws_error(400, "ValidationException", "Malformed input request.")
        self.requests.append(Received(model_id, request.raw_path, dict(request.headers), body))
        if self._error is not None:
            status, type_, message, headers, in_body = self._error
            return aws_error(status, type_, message, headers, in_body=in_body)
        if model_id not in self.models:
            return aws_error(
                400, "ValidationException", "The provided model identifier is invalid."
            )
        problem = _body_problem(body)
        if problem is not None:
            return aws_error(400, "ValidationException", problem)
        return None

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        refused = await self._accept(request)
        if refused is not None:
            return refused
        body = self._unary if self._unary is not None else converse_output("Hello from Bedrock")
        return web.json_response(body, headers={"x-amzn-RequestId": "fake-request-id"})

    async def _converse_stream(self, request: web.Request) -> web.StreamResponse:
        refused = await self._accept(request)
        if refused is not None:
            return refused
        resp = web.StreamResponse(
            headers={"Content-Type": EVENT_STREAM, "x-amzn-RequestId": "fake-request-id"}
        )
        await resp.prepare(request)
        if self._raw is not None:
            await resp.write(self._raw)
            await resp.write_eof()
            return resp
        messages = self._messages or text_stream(["Hello", " from", " Bedrock"])
        for i, frame in enumerate(messages):
            if self._cut_after is not None and i >= self._cut_after:
                break
            if self._drop_after is not None and i >= self._drop_after:
                await resp.write(frame[: len(frame) // 2])
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(frame)
        await resp.write_eof()
        return resp

    def _check_signature(self, request: web.Request, data: bytes) -> web.Response | None:
        """None when the request is signed right by known credentials; else AWS's refusal."""
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return self._refuse(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        parts = _AUTH.fullmatch(authorization)
        amz_date = request.headers.get("X-Amz-Date", "")
        if parts is None or not amz_date:
            return self._refuse(
                400,
                "IncompleteSignatureException",
                f"Authorization header requires 'Credential', 'Signature', 'SignedHeaders' "
                f"and X-Amz-Date; got '{authorization[:40]}'",
            )
        known = self.credentials.get(parts["key"])
        token = request.headers.get("X-Amz-Security-Token", "")
        if known is None or known[1] != token:
            return self._refuse(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        try:
            signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.UTC
            )
        except ValueError:
            return self._refuse(
                403, "InvalidSignatureException", f"Invalid X-Amz-Date '{amz_date}'"
            )
        now = datetime.datetime.now(datetime.UTC)
        if abs(now - signed_at) > _SKEW:
            return self._refuse(
                403,
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than "
                f"{(now - _SKEW).strftime('%Y%m%dT%H%M%SZ')}",
            )
        if (
            parts["date"] != amz_date[:8]
            or parts["region"] != self.region
            or parts["service"] != "bedrock"
        ):
            return self._refuse(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, service 'bedrock' and date "
                f"{amz_date[:8]}.",
            )
        signed = parts["signed"].split(";")
        if "host" not in signed or any(name not in request.headers for name in signed):
            return self._refuse(403, "InvalidSignatureException", "Signed headers are missing.")
        copy = AWSRequest(
            method=request.method,
            url=f"http://{request.host}{request.raw_path}",
            data=data,
            headers={name: request.headers[name] for name in signed},
        )
        copy.context["timestamp"] = amz_date
        signer = SigV4Auth(
            Credentials(parts["key"], known[0], token or None), "bedrock", self.region
        )
        expected = signer.signature(
            signer.string_to_sign(copy, signer.canonical_request(copy)), copy
        )
        if not hmac.compare_digest(expected, parts["signature"]):
            return self._refuse(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.",
            )
        return None

    def _refuse(self, status: int, type_: str, message: str) -> web.Response:
        self.refused.append(type_)
        return aws_error(status, type_, message, namespace="com.amazon.coral.service")

    # ---- serving ---------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/model/{model_id}/converse-stream", self._converse_stream)
        app.router.add_post("/model/{model_id}/converse", self._converse)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def aws_error(
    status: int,
    type_: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    in_body: bool = False,
    namespace: str = "com.amazon.bedrock",
) -> web.Response:
    """An AWS JSON error: the type in the header, or in the body's ``__type``."""
    body: dict[str, Any] = {"message": message}
    out = {"x-amzn-RequestId": "fake-request-id", **(headers or {})}
    if in_body:
        body["__type"] = f"{namespace}#{type_}"
    else:
        out["x-amzn-ErrorType"] = f"{type_}:http://internal.amazon.com/coral/{namespace}/"
    return web.json_response(body, status=status, headers=out)


def _body_problem(body: Any) -> str | None:
    """Bedrock's ValidationException text for a body Converse refuses, or None."""
    if not isinstance(body, dict):
        return "Malformed input request, please reformat your input and try again."
    extra = sorted(set(body) - _TOP_LEVEL)
    if extra:
        return f"Malformed input request: extraneous key [{extra[0]}] is not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return (
            "A conversation must start with a user message. Try again with a conversation "
            "that starts with a user message."
        )
    problem = tools_problem(body)
    if problem:
        return problem
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return constraint(f"messages.{i + 1}.member.role")
        content = m.get("content")
        if not isinstance(content, list):
            return f"The text field in the ContentBlock object at messages.{i}.content is blank."
        for j, block in enumerate(content):
            if isinstance(block, dict) and "image" in block:
                problem = _image_problem(block["image"], f"messages.{i + 1}.member.content.{j + 1}")
                if problem:
                    return problem
            elif isinstance(block, dict) and ("toolUse" in block or "toolResult" in block):
                continue  # checked by tools_problem
            elif not (
                isinstance(block, dict) and isinstance(block.get("text"), str) and block["text"]
            ):
                return (
                    f"The text field in the ContentBlock object at messages.{i}.content is blank."
                )
    inference = body.get("inferenceConfig", {})
    if not isinstance(inference, dict) or set(inference) - _INFERENCE:
        return "Malformed input request: inferenceConfig has extraneous keys"
    for key in ("temperature", "topP"):
        value = inference.get(key, 0)
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            return constraint(f"inferenceConfig.{key}")
    if "maxTokens" in inference and (
        type(inference["maxTokens"]) is not int or inference["maxTokens"] < 1
    ):
        return constraint("inferenceConfig.maxTokens")
    return None


_IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")  # ImageBlock.format's valid values


def _image_problem(image: Any, path: str) -> str | None:
    """The ValidationException of an ``ImageBlock`` (API reference: ``format`` png | jpeg |
    gif | webp, ``source`` a union of ``bytes`` (base64 in JSON) or ``s3Location``)."""
    if not isinstance(image, dict) or image.get("format") not in _IMAGE_FORMATS:
        return constraint(f"{path}.member.image.format")
    source = image.get("source")
    if not isinstance(source, dict) or len(source) != 1 or "bytes" not in source:
        return constraint(f"{path}.member.image.source")
    try:
        if not base64.b64decode(source["bytes"], validate=True):
            return constraint(f"{path}.member.image.source.bytes")
    except (ValueError, TypeError):
        return "Malformed input request: image source bytes are not valid base64"
    return None
