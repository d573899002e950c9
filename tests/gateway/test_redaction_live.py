"""Anonymization through running stacks: nothing personal reaches the upstream or the stores.

Each stack is a registry, a gateway with `security.redaction` on and an
openai_compat backend in front of the fake OpenAI upstream, scripted with
`FakeUpstream.echo_prompt`: its answer is what it was sent, in pieces of five
characters, so the answer shows what left the gateway and restoration is
checkable. `upstream.bodies` records every chat request it received. The
corpus is tests/security/pii_corpus.json, every sample of every type.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory
from ratelimit import conftest as ratelimit_fixtures

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard.gateway.response_cache import MemoryAnswerStore
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

redis_server = ratelimit_fixtures.redis_server  # the session's redis-server
redis_url = ratelimit_fixtures.redis_url  # emptied for each test

ROLES = ("registry", "gateway", "backend-openai-compat")
MODEL = "custom/model-a"
CORPUS = json.loads(
    (Path(__file__).parents[1] / "security" / "pii_corpus.json").read_text(encoding="utf-8")
)
SAMPLES: list[tuple[str, str, str]] = [
    (kind, s["text"], s["value"]) for kind, items in CORPUS["pii"].items() for s in items
]
PROMPT = "\n".join(text for _, text, _ in SAMPLES)
VALUES = [value for _, _, value in SAMPLES]


async def _stack(make_stack: StackFactory, upstream: FakeUpstream, gateway: str = "{}") -> Stack:
    upstream.echo_prompt()
    config = parse_config(
        f"""
model_system:
  security: {{redaction: {{enabled: true}}}}
  gateway: {gateway}
  backends:
    custom: {{kind: openai_compat, endpoint: "{upstream.url}"}}
"""
    )
    return await make_stack(roles=ROLES, config=config)


def _request(text: str = PROMPT, *, restore: bool = False, **fields: Any) -> Any:
    request = gateway_pb2.GenerateRequest(model=MODEL, restore_redacted=restore, **fields)
    request.input.text = text
    request.params.max_tokens = 2000
    request.params.temperature = 0
    return request


async def _generate(stack: Stack, request: Any) -> gateway_pb2.GenerateResponse:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        return await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=20)


async def _stream(stack: Stack, request: Any) -> list[gateway_pb2.GenerateChunk]:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        return [c async for c in stub.GenerateStream(request, timeout=20)]


def stack_data_dir(tmp_path: Path) -> Path:
    """The data directory of the test's first stack (`make_stack` names them data0, ...)."""
    return tmp_path / "data0"


def _sent(upstream: FakeUpstream) -> str:
    """Everything the upstream received, as text."""
    return json.dumps(upstream.bodies, ensure_ascii=False)


def _leaked(text: str) -> list[str]:
    return [value for value in VALUES if value in text]


async def test_every_corpus_sample_is_redacted_before_it_reaches_the_upstream(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    answer = await _generate(stack, _request())
    assert len(upstream.bodies) == 1
    assert _leaked(_sent(upstream)) == []
    assert _leaked(answer.text) == []  # not asked to restore: the placeholders as sent
    for kind in CORPUS["pii"]:
        assert f"[{kind.upper()}_1]" in answer.text


async def test_the_answer_is_restored_when_asked_unary(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    answer = await _generate(stack, _request(restore=True))
    assert _leaked(_sent(upstream)) == []
    assert answer.text == PROMPT  # the echo, every value back in its place


async def test_the_answer_is_restored_when_asked_streamed(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    chunks = await _stream(stack, _request(restore=True))
    assert _leaked(_sent(upstream)) == []
    assert "".join(c.text for c in chunks) == PROMPT
    assert chunks[0].model_id == MODEL  # the first chunk keeps its fields
    assert not any("[" in c.text and "]" not in c.text[c.text.rindex("[") :] for c in chunks[:-1])


async def test_a_placeholder_cut_between_streamed_pieces_is_restored_whole(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    upstream.echo_prompt(piece_chars=4, piece_delay_s=0.005)  # "[EMA", "IL_1", "] ..."
    text = "mail jane.doe@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111"
    chunks = await _stream(stack, _request(text, restore=True))
    assert len(chunks) > 10  # the pieces arrived one by one
    assert "".join(c.text for c in chunks) == text
    assert _leaked(_sent(upstream)) == []
    for value in ("jane.doe@example.com", "+44 20 7946 0958", "4111 1111 1111 1111"):
        assert sum(value in c.text for c in chunks) == 1  # out whole, in one chunk


async def test_the_redis_cache_holds_only_redacted_text_and_a_hit_is_restored_per_request(
    make_stack: StackFactory, upstream: FakeUpstream, redis_url: str
) -> None:
    stack = await _stack(
        make_stack, upstream, f"{{cache: {{enabled: true, redis_url: '{redis_url}'}}}}"
    )
    first = await _generate(stack, _request(restore=True))
    with redis.Redis.from_url(redis_url) as client:
        stored = b"".join(client.get(k) or b"" for k in client.keys("*")).decode()
    assert "[EMAIL_1]" in stored
    assert _leaked(stored) == []
    # Other values of the same kinds in the same places: the same redacted request, a hit,
    # restored with this request's values, not the first one's.
    other = PROMPT.replace("jane.doe@example.com", "max.mustermann@example.de")
    second = await _generate(stack, _request(other, restore=True))
    assert (first.cached, second.cached) == (False, True)
    assert len(upstream.bodies) == 1
    assert second.text == other


async def test_the_memory_cache_holds_only_redacted_text(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream, "{cache: {enabled: true}}")
    first = await _generate(stack, _request(restore=True))
    assert stack.response_cache is not None
    store = stack.response_cache.store
    assert isinstance(store, MemoryAnswerStore)
    stored = "".join(answer.to_json().decode() for _, answer in store._entries.values())
    assert "[EMAIL_1]" in stored
    assert _leaked(stored) == []
    assert first.text == PROMPT


async def test_the_conversation_store_holds_only_redacted_text(
    make_stack: StackFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    stack = await _stack(make_stack, upstream)
    await _generate(stack, _request(restore=True, conversation_id="conv-1"))
    second = await _generate(stack, _request("and again?", restore=True, conversation_id="conv-1"))
    assert second.history_turns == 1
    database = stack_data_dir(tmp_path) / "conversations.sqlite3"
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT messages FROM turns").fetchall()
    stored = json.dumps(rows, ensure_ascii=False)
    assert "[EMAIL_1]" in stored
    assert _leaked(stored) == []
    assert _leaked(_sent(upstream)) == []  # the history is sent as it is stored


async def test_no_log_line_holds_a_value_at_debug(
    make_stack: StackFactory, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stack = await _stack(make_stack, upstream)
    await _stream(stack, _request(restore=True))
    await _generate(stack, _request(restore=True, conversation_id="conv-1"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert _leaked(logged) == []


async def test_without_anonymization_the_prompt_goes_as_it_came(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.echo_prompt()
    config = parse_config(
        "model_system:\n  backends:\n"
        f'    custom: {{kind: openai_compat, endpoint: "{upstream.url}"}}\n'
    )
    stack = await make_stack(roles=ROLES, config=config)
    answer = await _generate(stack, _request(restore=True))
    assert _leaked(_sent(upstream)) == VALUES
    assert answer.text == PROMPT
