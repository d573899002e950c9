"""Canary keys through every error path: found in no log, span, store or answer.

A canary gateway key (a real key, made with `KeyService.CreateKey` and sent
as ``x-api-key``) and canary provider keys (one configured for the
openai-compatible backends in front of `EchoUpstream`, which quotes every
request header, ``Authorization: Bearer <provider key>`` included, in every
error, plainly and base64-encoded; one more that the upstream refuses, so the
backend's start and discovery fail on it) go through every failure reachable
from outside: upstream 400/401/403/404/429/500/503, a plain-text 500, an error
event and a malformed event inside a stream, a stream cut mid-answer, an
upstream that never answers (the first-token deadline, and the caller's own
deadline), connection refused, the gateway's rate limit, a bad request, an
unknown model, a batch, a wrong gateway key, the provider key presented as a
gateway key, and the backend service called directly. At DEBUG, with tracing on.

Then everything is scanned for each canary, as it is, base64-encoded (standard
and URL-safe, at any alignment: every base64 run is decoded at each offset)
and its last 8 characters, judged a leak too (they narrow a search and identify
the key where last-4 is the convention):

- every log record, formatted as the command line's logging writes it (the
  scrubbing filter installed on the root handlers as `modelyard.cli` does);
- every span: name, attributes, status, events and their attributes;
- every file under the data directory (the registry's, the conversations' and
  the key store's SQLite files with their WAL and journal files);
- a real Redis holding the rate-limit buckets and the response cache: every
  key and every value;
- every answer the client got: messages, items, trailing metadata (the
  serialized status too).

Metrics: the gateway's live figures (`gateway/performance.py`, GetModelMetrics)
are numbers kept in memory, keyed by model id and endpoint; what it writes to
the registry's performance profiles lives in its SQLite file, scanned here.
PostgreSQL: modelyard does not use it yet, so there is nothing to scan; a store
added there must join this test.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import secrets
import string
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from conftest import StackFactory, free_port
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from security.echo_upstream import ECHO_MODELS, EchoUpstream
from support.grpc_trailers import trailers
from support.redis_server import RedisServer, redis_server_binary

from modelyard.assembly.settings import limiter_settings
from modelyard.config import parse_config
from modelyard_client.scrub import scrub_logging
from modelyard_client.v1 import (
    backend_pb2,
    backend_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
)

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason="needs redis-server")

ROLES = ("registry", "gateway", "backend-openai-compat")
ADMIN_KEY = "admin-key-for-the-canary-test"
SERVICE_KEY = "service-key-for-the-canary-test"
_ALPHABET = string.ascii_lowercase + string.digits
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_=-]{12,}")


def _canary(prefix: str) -> str:
    """Not key-shaped: only its registration as a configured key can keep it out."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(32))


def _config(echo_url: str, secrets_file: Path, redis_url: str) -> str:
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    return f"""
model_system:
  security:
    secrets: {{file: "{secrets_file}"}}
    auth:
      required: true
      admin_key: "${{ADMIN}}"
      service_key: "${{SERVICE}}"
      refresh_interval: 50ms
  rate_limits:
    redis_url: "{redis_url}"
    per_key: {{requests_per_minute: 10000}}
    per_provider: {{limited: {{requests_per_minute: 1}}}}
  gateway:
    cache: {{enabled: true, redis_url: "{redis_url}"}}
    circuit: {{consecutive_failures: 1000}}
  backends:
    echo:
      kind: openai_compat
      endpoint: "{echo_url}"
      api_key: "${{ECHO_API_KEY}}"
      model_profiles: {{hang: {{first_token_timeout_ms: 300}}}}
    limited: {{kind: openai_compat, endpoint: "{echo_url}", api_key: "${{ECHO_API_KEY}}",
               models: [ok]}}
    gone: {{kind: openai_compat, endpoint: "{gone}", api_key: "${{ECHO_API_KEY}}",
            models: [m]}}
    locked: {{kind: openai_compat, endpoint: "{echo_url}", api_key: "${{LOCKED_API_KEY}}"}}
"""


@pytest.fixture
async def echo() -> AsyncIterator[EchoUpstream]:
    fake = EchoUpstream()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every record at DEBUG, as `modelyard serve` writes them (scrubbing filter on)."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    scrub_logging()
    yield written
    root.removeHandler(handler)
    root.setLevel(level)


class Answers:
    """Everything the client got back: texts, error messages, trailing metadata."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.codes: dict[str, grpc.StatusCode] = {}

    async def call(self, path: str, call: Any) -> None:
        try:
            result = call()
            if hasattr(result, "__aiter__"):
                async for item in result:
                    self.seen.append(item.SerializeToString())
                self.codes[path] = grpc.StatusCode.OK
            else:
                self.seen.append((await result).SerializeToString())
                self.codes[path] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            self.codes[path] = exc.code()
            self.seen.append((exc.details() or "").encode())
            for key, value in trailers(exc).items():
                self.seen.append(key.encode())
                self.seen.append(value if isinstance(value, bytes) else value.encode())


def _request(model: str, **params: Any) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hello"
    request.params.max_tokens = 8
    for name, value in params.items():
        setattr(request.params, name, value)
    return request


async def _every_error_path(
    channel: grpc.aio.Channel, gateway_key: str, provider_key: str, answers: Answers
) -> None:
    gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
    as_canary = (("x-api-key", gateway_key),)
    models = [model for model in ECHO_MODELS if model != "ok"]  # every failure it plays
    for model in models:
        await answers.call(
            f"Generate echo/{model}",
            lambda m=model: gateway.Generate(_request(f"echo/{m}"), metadata=as_canary, timeout=10),
        )
        await answers.call(
            f"GenerateStream echo/{model}",
            lambda m=model: gateway.GenerateStream(
                _request(f"echo/{m}"), metadata=as_canary, timeout=10
            ),
        )
    await answers.call(  # the caller's own deadline, before the model's first-token one
        "Generate echo/hang deadline",
        lambda: gateway.Generate(_request("echo/hang"), metadata=as_canary, timeout=0.15),
    )
    await answers.call(
        "Generate echo/ok cached",  # deterministic: stored in the Redis response cache
        lambda: gateway.Generate(_request("echo/ok", temperature=0.0), metadata=as_canary),
    )
    conversation = _request("echo/ok")
    conversation.conversation_id = "canary-conversation"
    await answers.call(
        "Generate conversation", lambda: gateway.Generate(conversation, metadata=as_canary)
    )
    await answers.call(
        "Generate gone/m", lambda: gateway.Generate(_request("gone/m"), metadata=as_canary)
    )
    for attempt in range(3):  # rpm 1 for this provider: the later calls are rate limited
        await answers.call(
            f"Generate limited/ok {attempt}",
            lambda: gateway.Generate(_request("limited/ok"), metadata=as_canary),
        )
    await answers.call(
        "Generate bad request",
        lambda: gateway.Generate(_request("echo/ok", temperature=9.0), metadata=as_canary),
    )
    await answers.call(
        "Generate unknown model",
        lambda: gateway.Generate(_request("nosuch/model"), metadata=as_canary),
    )
    batch = gateway_pb2.BatchGenerateRequest(
        requests=[_request("echo/status-401"), _request("echo/text-500"), _request("echo/ok")]
    )
    await answers.call("BatchGenerate", lambda: gateway.BatchGenerate(batch, metadata=as_canary))
    compare = gateway_pb2.CompareRequest(models=["echo/status-403", "echo/malformed"])
    compare.input.text = "hello"
    await answers.call("Compare", lambda: gateway.Compare(compare, metadata=as_canary))
    await answers.call(
        "Generate wrong gateway key",
        lambda: gateway.Generate(_request("echo/ok"), metadata=(("x-api-key", gateway_key + "x"),)),
    )
    await answers.call(
        "Generate provider key as gateway key",
        lambda: gateway.Generate(_request("echo/ok"), metadata=(("x-api-key", provider_key),)),
    )
    await answers.call(
        "Generate provider key as bearer",
        lambda: gateway.Generate(
            _request("echo/ok"), metadata=(("authorization", f"Bearer {provider_key}"),)
        ),
    )
    backend = backend_pb2_grpc.BackendServiceStub(channel)
    infer = backend_pb2.InferRequest(model_id="echo/status-401")
    infer.input.text = "hello"
    await answers.call(
        "BackendService.InferStream",
        lambda: backend.InferStream(infer, metadata=(("x-api-key", SERVICE_KEY),), timeout=10),
    )


async def test_no_canary_leaks_through_any_error_path(
    make_stack: StackFactory,
    echo: EchoUpstream,
    redis_server: RedisServer,
    spans: InMemorySpanExporter,
    debug_log: io.StringIO,
    tmp_path: Path,
) -> None:
    provider_key, refused_key = _canary("cnryprov"), _canary("cnrylock")
    echo.accepted_keys = {provider_key}
    secrets_file = tmp_path / "provider-keys.env"
    secrets_file.write_text(f"ECHO_API_KEY={provider_key}\nLOCKED_API_KEY={refused_key}\n")
    config = parse_config(
        _config(echo.url, secrets_file, redis_server.url),
        env={"ADMIN": ADMIN_KEY, "SERVICE": SERVICE_KEY},
    )
    data_dir = tmp_path / "data"
    spans.clear()
    stack = await make_stack(
        roles=ROLES,
        config=config,
        limiter=limiter_settings(config, {}),
        data_dir=data_dir,
        discovery=True,
    )
    answers = Answers()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        keys = keys_pb2_grpc.KeyServiceStub(channel)
        issued: keys_pb2.IssuedKey = await keys.CreateKey(
            keys_pb2.CreateKeyRequest(owner="canary"), metadata=(("x-api-key", ADMIN_KEY),)
        )
        gateway_key = issued.secret
        await _every_error_path(channel, gateway_key, provider_key, answers)
    await asyncio.sleep(0.3)  # the gateway's reports to the registry land
    assert stack.discovery is not None
    await stack.discovery.run_once()  # discovery meets the refused key once more

    # The paths were really taken, and the upstream really echoed the keys.
    assert provider_key in echo.keys_seen and refused_key in echo.keys_seen
    codes = answers.codes
    assert codes["Generate echo/status-401"] == grpc.StatusCode.UNAUTHENTICATED
    assert codes["Generate echo/status-500"] == grpc.StatusCode.UNAVAILABLE
    assert codes["Generate echo/hang"] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert codes["Generate echo/hang deadline"] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert codes["GenerateStream echo/cut"] == grpc.StatusCode.ABORTED
    assert codes["Generate echo/ok cached"] == grpc.StatusCode.OK
    assert codes["Generate gone/m"] == grpc.StatusCode.UNAVAILABLE
    assert codes["Generate limited/ok 2"] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert codes["Generate bad request"] == grpc.StatusCode.INVALID_ARGUMENT
    assert codes["Generate unknown model"] == grpc.StatusCode.NOT_FOUND
    assert codes["Generate wrong gateway key"] == grpc.StatusCode.UNAUTHENTICATED
    assert codes["Generate provider key as gateway key"] == grpc.StatusCode.UNAUTHENTICATED
    assert codes["BackendService.InferStream"] == grpc.StatusCode.UNAUTHENTICATED
    told = b"\n".join(answers.seen)
    assert b"rejected: request headers:" in told  # what the upstream said did reach the caller

    client = redis.Redis.from_url(redis_server.url)
    try:
        stored = _redis_dump(client)
    finally:
        client.close()
    assert any(b"modelyard:cache:" in k for k in stored[::2])  # the cache and ...
    assert len(stored) > 4  # ... the rate-limit buckets are really there
    log_text = debug_log.getvalue()
    assert "rejected: request headers:" in log_text or "Bearer [REDACTED]" in log_text
    files = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    assert any(p.name == "registry.sqlite3" for p in files)

    places: dict[str, bytes] = {
        "the client's answers": told,
        "the log": log_text.encode(),
        "the spans": _spans_text(spans).encode(),
        "Redis": b"\n".join(stored),
        **{f"file {p.relative_to(data_dir)}": data for p, data in files.items()},
    }
    leaks = [
        f"{place} holds the {name} {how}"
        for name, canary in (
            ("gateway key", gateway_key),
            ("provider key", provider_key),
            ("refused provider key", refused_key),
        )
        for place, haystack in places.items()
        for how in _leaks(canary, haystack)
    ]
    assert not leaks, "\n".join(sorted(leaks))


def _redis_dump(redis_client: redis.Redis) -> list[bytes]:
    """Every key and its value (strings, hashes, lists, sets, sorted sets), as bytes."""
    client: Any = redis_client  # decode_responses off: bytes, which redis-py's types do not say
    out: list[bytes] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            value: Any = client.get(key) or b""
        elif kind == b"hash":
            value = b" ".join(k + b"=" + v for k, v in client.hgetall(key).items())
        elif kind == b"list":
            value = b" ".join(client.lrange(key, 0, -1))
        elif kind == b"set":
            value = b" ".join(client.smembers(key))
        elif kind == b"zset":
            value = b" ".join(m for m, _ in client.zrange(key, 0, -1, withscores=True))
        else:
            value = kind
        out += [bytes(key), bytes(value)]
    return out


def _spans_text(spans: InMemorySpanExporter) -> str:
    parts: list[str] = []
    for span in spans.get_finished_spans():
        parts += [span.name, repr(dict(span.attributes or {})), span.status.description or ""]
        for event in span.events:
            parts += [event.name, repr(dict(event.attributes or {}))]
    return "\n".join(parts)


def _leaks(canary: str, haystack: bytes) -> set[str]:
    """How `haystack` holds `canary`: plainly, its last 8 characters, or inside base64."""
    found = set()
    secret, tail = canary.encode(), canary[-8:].encode()
    if secret in haystack:
        found.add("in plain text")
    elif tail in haystack:
        found.add("by its last 8 characters")
    for run in _BASE64_RUN.findall(haystack):
        for alphabet in (run, run.replace(b"-", b"+").replace(b"_", b"/")):
            for start in range(4):
                chunk = alphabet[start:].rstrip(b"=")
                chunk = chunk[: len(chunk) - len(chunk) % 4]
                try:
                    decoded = base64.b64decode(chunk, validate=True)
                except ValueError:
                    continue
                if secret in decoded or tail in decoded:
                    found.add("base64-encoded")
    return found
