"""The OpenAI-compatible HTTP edge, driven by the official `openai` SDK (unchanged) against a
real stack: a scripted model behind the gateway, the edge on a free port."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import openai
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly.stack import Stack
from modelyard.config import parse_config
from modelyard.security.audit import AuditQuery
from modelyard_client.errors import BackendUnavailable, RateLimited
from modelyard_client.v1 import common_pb2

MODEL = "scripted/echo"


async def _edge(make_stack: StackFactory, engine: ScriptedEngine | None = None) -> Stack:
    stack = await make_stack(
        [engine or ScriptedEngine((MODEL,))],
        roles=("registry", "gateway"),
        http_listen="127.0.0.1:0",
    )
    for _ in range(100):  # the engine's model reaches the gateway's catalog copy
        if stack.view is not None and any(m.id == MODEL for m in stack.view.models()):
            break
        await asyncio.sleep(0.02)
    return stack


def _client(stack: Stack, key: str = "sk-test") -> openai.AsyncOpenAI:
    assert stack.edge is not None
    return openai.AsyncOpenAI(base_url=stack.edge.base_url, api_key=key, max_retries=0)


async def test_a_plain_chat_completion(make_stack: StackFactory) -> None:
    stack = await _edge(make_stack)
    async with _client(stack) as client:
        answer = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
    assert answer.choices[0].message.content == "hello world"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == MODEL and answer.object == "chat.completion"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 3)


async def test_a_streamed_chat_completion_with_usage_last(make_stack: StackFactory) -> None:
    stack = await _edge(make_stack)
    async with _client(stack) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello world"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 6


async def test_the_request_reaches_the_model_as_the_contract_has_it(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine((MODEL,))
    stack = await _edge(make_stack, engine)
    async with _client(stack) as client:
        await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
            ],
            temperature=0.5,
            top_p=0.9,
            stop=["\n"],
            seed=7,
            max_completion_tokens=12,
        )
    [(_, model_input, params)] = engine.calls
    assert [(m.role, m.content) for m in model_input.chat.messages] == [
        ("system", "be brief"),
        ("user", "hi"),
    ]
    assert (params.max_tokens, params.seed, list(params.stop)) == (12, 7, ["\n"])
    assert params.temperature == pytest.approx(0.5) and params.top_p == pytest.approx(0.9)


async def test_a_legacy_completion(make_stack: StackFactory) -> None:
    stack = await _edge(make_stack)
    async with _client(stack) as client:
        answer = await client.completions.create(model=MODEL, prompt="hi", max_tokens=4)
    assert answer.choices[0].text == "hello world" and answer.object == "text_completion"


async def test_models_lists_the_catalog(make_stack: StackFactory) -> None:
    stack = await _edge(make_stack)
    async with _client(stack) as client:
        models = [m.id async for m in client.models.list()]
        one = await client.models.retrieve(MODEL)
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("scripted/nothing")
    assert MODEL in models and one.id == MODEL


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"temperature": 3}, "temperature"),
        ({"n": 2}, "n"),
        ({"extra_body": {"frobnicate": True}}, "frobnicate"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_before_any_model_call(
    make_stack: StackFactory, kwargs: dict[str, Any], field: str
) -> None:
    engine = ScriptedEngine((MODEL,))
    stack = await _edge(make_stack, engine)
    request: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    request.update(kwargs)
    async with _client(stack) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(**request)
    assert caught.value.status_code == 400
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == field, error
    assert error["type"] == "invalid_request_error"
    assert engine.calls == []


async def test_malformed_json_and_a_body_over_the_limit(make_stack: StackFactory) -> None:
    stack = await _edge(make_stack)
    assert stack.edge is not None
    url = f"{stack.edge.base_url}/chat/completions"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url, data=b"{not json", headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
            assert "not JSON" in (await r.json())["error"]["message"]
        content = "x" * 3_000_000  # over the input size limit's room for JSON (2 MiB)
        huge = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}]})
        body = io.BytesIO(huge.encode())
        async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413
            assert (await r.json())["error"]["type"] == "invalid_request_error"


async def test_an_unknown_model_is_a_404(make_stack: StackFactory) -> None:
    stack = await _edge(make_stack)
    async with _client(stack) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="scripted/nothing", messages=[{"role": "user", "content": "hi"}]
            )
    assert "scripted/nothing" in str(caught.value)


async def test_a_rate_limit_is_a_429_with_retry_after(make_stack: StackFactory) -> None:
    engine = ScriptedEngine((MODEL,), fail_with=RateLimited("upstream busy", 2.0))
    stack = await _edge(make_stack, engine)
    async with _client(stack) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.response.headers["retry-after-ms"] == "2000"


async def test_a_stream_cut_after_its_first_chunk_ends_with_an_error_not_done(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(
        (MODEL,), pieces=("a", "b", "c"), fail_with=BackendUnavailable("gone"), fail_after=2
    )
    stack = await _edge(make_stack, engine)
    async with _client(stack) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        got: list[str] = []
        with pytest.raises(openai.APIError, match=r"truncated|gone|broke"):
            async for chunk in stream:
                got.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(got) == "ab"  # what arrived, and no finish: the SDK raised instead
    assert stack.audit is not None
    await stack.audit.flush()
    rows, _ = stack.audit.store.query(AuditQuery(rpc="GenerateStream"))
    assert rows and rows[0].code != "OK"


async def test_the_edge_keys_are_the_grpc_keys(make_stack: StackFactory) -> None:
    config = parse_config(
        'model_system:\n  security:\n    auth: {required: true, admin_key: "${A}", '
        'service_key: "${S}"}\n',
        env={"A": "admin-key-for-the-edge-tests", "S": "service-key-for-the-edge-tests"},
    )
    stack = await make_stack(
        [ScriptedEngine((MODEL,))],
        roles=("registry", "gateway"),
        http_listen="127.0.0.1:0",
        config=config,
    )
    async with _client(stack, key="not-a-key") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
    # No key at all is the same refusal.
    assert stack.edge is not None
    async with aiohttp.ClientSession() as http, http.get(f"{stack.edge.base_url}/models") as r:
        assert r.status == 401
        assert (await r.json())["error"]["type"] == "authentication_error"


def test_finish_reasons_map_to_the_apis_names() -> None:
    from modelyard.edges.openai_wire import FINISH

    assert FINISH[common_pb2.FINISH_REASON_TOOL_CALLS] == "tool_calls"
    assert FINISH[common_pb2.FINISH_REASON_LENGTH] == "length"
