"""What the OpenAI wire's chat body makes of GenerationParams, per provider (`params.py`):
top_k, seed and the usage request per dialect, parameters a provider cannot honour
refused before any call or dropped and named, the response schema as each provider takes
it, cached prompt tokens read from the usage; through a real stack, and against the real
llama_cpp.server for its response_format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from backends.openai_compat.hosted_fakes import MistralUpstream, mistral_last_chunk
from backends.openai_compat.openai_fake import STACK_ROLES, FakeUpstream, StackFor, chunk
from conftest import StackFactory

from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.engine import OpenAICompatEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.config import parse_config
from modelyard_client.errors import InvalidRequest, ProviderProtocolError
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

SCHEMA = {
    "title": "Person",
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}

Collect = Callable[..., Awaitable[list[Piece]]]


def _usage(prompt: int, completion: int, cached: object = None) -> dict[str, object]:
    usage: dict[str, object] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def _answer(upstream: FakeUpstream, text: str = "Hi.", cached: object = None) -> None:
    upstream.stream([chunk(text), chunk(finish_reason="stop"), _usage(9, 2, cached)])


@pytest.fixture
async def engines() -> AsyncIterator[Callable[[str, FakeUpstream], Awaitable[OpenAICompatEngine]]]:
    started: list[OpenAICompatEngine] = []

    async def start(provider: str, upstream: FakeUpstream) -> OpenAICompatEngine:
        endpoint = ProviderEndpoint(provider, f"{upstream.url}/v1", models=("fake-model",))
        engine = OpenAICompatEngine(endpoint)
        await engine.start()
        started.append(engine)
        return engine

    yield start
    for engine in started:
        await engine.close()


@pytest.fixture
def collect(
    engines: Callable[[str, FakeUpstream], Awaitable[OpenAICompatEngine]],
) -> Collect:
    async def run(
        provider: str, upstream: FakeUpstream, params: common_pb2.GenerationParams
    ) -> list[Piece]:
        engine = await engines(provider, upstream)
        model_input = common_pb2.Input(text="Hello")
        return [p async for p in engine.infer_stream(f"{provider}/fake-model", model_input, params)]

    return run


# ---- top_k, seed, the usage request ------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "mistral"])
async def test_top_k_is_refused_naming_it_and_the_provider_before_any_call(
    provider: str, upstream: FakeUpstream, collect: Collect
) -> None:
    _answer(upstream)
    with pytest.raises(InvalidRequest, match=rf"params\.top_k .*provider '{provider}'") as info:
        await collect(provider, upstream, common_pb2.GenerationParams(top_k=40))
    assert info.value.field == "params.top_k"
    assert upstream.bodies == []


async def test_with_drop_unsupported_params_top_k_is_left_out_and_named_on_the_last_piece(
    upstream: FakeUpstream, collect: Collect
) -> None:
    _answer(upstream)
    params = common_pb2.GenerationParams(top_k=40, temperature=0.5, drop_unsupported_params=True)
    pieces = await collect("openai", upstream, params)

    [body] = upstream.bodies
    assert "top_k" not in body and body["temperature"] == 0.5
    assert pieces[-1].dropped_params == ("top_k",)
    assert all(p.dropped_params == () for p in pieces[:-1])
    assert "".join(p.text for p in pieces) == "Hi."


@pytest.mark.parametrize("provider", ["custom", "openrouter"])
async def test_servers_that_take_top_k_are_sent_it(
    provider: str, upstream: FakeUpstream, collect: Collect
) -> None:
    _answer(upstream)
    pieces = await collect(provider, upstream, common_pb2.GenerationParams(top_k=40, seed=7))
    [body] = upstream.bodies
    assert (body["top_k"], body["seed"]) == (40, 7)
    assert body["stream_options"] == {"include_usage": True}
    assert pieces[-1].dropped_params == ()


@pytest.mark.parametrize("field", ["voice", "audio_format"])
@pytest.mark.parametrize("provider", ["openai", "mistral", "openrouter", "custom"])
async def test_speech_parameters_are_no_chat_parameter_anywhere(
    provider: str, field: str, upstream: FakeUpstream, collect: Collect
) -> None:
    params = common_pb2.GenerationParams(**{field: "pcm"})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=rf"params\.{field} ") as info:
        await collect(provider, upstream, params)
    assert info.value.field == f"params.{field}"
    assert upstream.bodies == []


@pytest.fixture
async def mistral() -> AsyncIterator[MistralUpstream]:
    fake = MistralUpstream()
    await fake.start()
    yield fake
    await fake.stop()


async def test_mistral_gets_random_seed_and_no_stream_options_and_its_usage_is_read(
    mistral: MistralUpstream, collect: Collect
) -> None:
    mistral.stream([chunk("Bonjour"), mistral_last_chunk(11, 3)], done=True)
    params = common_pb2.GenerationParams(seed=42, top_k=5, max_tokens=20)
    params.drop_unsupported_params = True
    pieces = await collect("mistral", mistral, params)

    [body] = mistral.bodies
    assert body["random_seed"] == 42
    assert not {"seed", "top_k", "stream_options"} & body.keys()
    assert "".join(p.text for p in pieces) == "Bonjour"
    last = pieces[-1]
    assert (last.input_tokens, last.output_tokens) == (11, 3)
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert last.dropped_params == ("top_k",)


async def test_the_strict_mistral_fake_refuses_what_mistral_refuses(
    mistral: MistralUpstream,
) -> None:
    """The fake is faithful: a field Mistral does not know is its 422 (as `seed` would be),
    which the engine reports naming the field."""
    endpoint = ProviderEndpoint("custom", f"{mistral.url}/v1", models=("fake-model",))
    engine = OpenAICompatEngine(endpoint)  # a generic server's dialect: seed, stream_options
    await engine.start()
    try:
        with pytest.raises(InvalidRequest, match=r"body\.stream_options: Extra inputs"):
            async for _ in engine.infer_stream(
                "custom/fake-model", common_pb2.Input(text="Hi"), common_pb2.GenerationParams()
            ):
                pass
    finally:
        await engine.close()


# ---- the response schema -------------------------------------------------------------------


async def test_mistral_takes_the_json_schema_form_named_by_the_schema_s_title(
    mistral: MistralUpstream, collect: Collect
) -> None:
    mistral.stream([chunk('{"name": "Ada", "age": 36}'), mistral_last_chunk(5, 9)])
    params = common_pb2.GenerationParams(response_schema_json=json.dumps(SCHEMA))
    pieces = await collect("mistral", mistral, params)
    [body] = mistral.bodies  # the strict fake took it: no field Mistral does not know
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Person", "schema": SCHEMA, "strict": True},
    }
    assert json.loads("".join(p.text for p in pieces)) == {"name": "Ada", "age": 36}


@pytest.mark.parametrize("provider", ["openai", "openrouter"])
async def test_openai_and_openrouter_take_the_json_schema_form(
    provider: str, upstream: FakeUpstream, collect: Collect
) -> None:
    _answer(upstream, '{"name": "Ada", "age": 36}')
    untitled = {k: v for k, v in SCHEMA.items() if k != "title"}
    params = common_pb2.GenerationParams(response_schema_json=json.dumps(untitled))
    await collect(provider, upstream, params)
    [body] = upstream.bodies
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": untitled, "strict": True},
    }


async def test_a_generic_server_is_sent_json_object_with_the_schema(
    upstream: FakeUpstream, collect: Collect
) -> None:
    _answer(upstream, '{"name": "Ada", "age": 36}')
    params = common_pb2.GenerationParams(response_schema_json=json.dumps(SCHEMA))
    await collect("custom", upstream, params)
    [body] = upstream.bodies
    assert body["response_format"] == {"type": "json_object", "schema": SCHEMA}


@pytest.mark.parametrize(("schema", "problem"), [("{nope", "is not JSON"), ("[1]", "JSON list")])
async def test_a_schema_that_is_no_json_object_is_refused_before_any_call(
    schema: str, problem: str, upstream: FakeUpstream, collect: Collect
) -> None:
    params = common_pb2.GenerationParams(response_schema_json=schema)
    with pytest.raises(InvalidRequest, match=problem) as info:
        await collect("openai", upstream, params)
    assert info.value.field == "params.response_schema_json"
    assert upstream.bodies == []


# ---- cached prompt tokens ------------------------------------------------------------------


async def test_cached_prompt_tokens_are_the_last_piece_s_cached_input_tokens(
    upstream: FakeUpstream, collect: Collect
) -> None:
    _answer(upstream, cached=1024)
    pieces = await collect("openai", upstream, common_pb2.GenerationParams())
    assert (pieces[-1].input_tokens, pieces[-1].cached_input_tokens) == (9, 1024)
    assert pieces[-1].usage().cached_input_tokens == 1024


async def test_no_cached_tokens_is_zero(upstream: FakeUpstream, collect: Collect) -> None:
    _answer(upstream, cached=0)
    pieces = await collect("openai", upstream, common_pb2.GenerationParams())
    assert pieces[-1].cached_input_tokens == 0


@pytest.mark.parametrize("cached", ["12", -1, 1.5])
async def test_a_cached_count_that_is_no_count_is_a_protocol_error(
    cached: object, upstream: FakeUpstream, collect: Collect
) -> None:
    _answer(upstream, cached=cached)
    with pytest.raises(ProviderProtocolError, match="cached_tokens"):
        await collect("openai", upstream, common_pb2.GenerationParams())


# ---- through a real stack ------------------------------------------------------------------


@pytest.fixture
async def openai_gateway(
    upstream: FakeUpstream, make_stack: StackFactory
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    config = parse_config(
        f"""
model_system:
  backends:
    openai:
      api_key: "${{OPENAI_API_KEY}}"
      base_url: "{upstream.url}/v1"
      models: [fake-model]
""",
        env={"OPENAI_API_KEY": "sk-test"},
    )
    stack = await make_stack(roles=STACK_ROLES, config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _request(model: str = "openai/fake-model", **params: object) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "Hello"
    request.params.CopyFrom(common_pb2.GenerationParams(**params))  # type: ignore[arg-type]
    return request


async def test_dropped_params_and_cached_tokens_reach_the_caller(
    upstream: FakeUpstream, openai_gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    _answer(upstream, cached=4)
    request = _request(top_k=3, drop_unsupported_params=True)
    chunks = [c async for c in openai_gateway.GenerateStream(request, timeout=10)]
    answer = await openai_gateway.Generate(request, timeout=10)

    assert list(chunks[-1].dropped_params) == ["top_k"]
    assert chunks[-1].usage.cached_input_tokens == 4
    assert list(answer.dropped_params) == ["top_k"]
    assert answer.usage.cached_input_tokens == 4
    assert all("top_k" not in b for b in upstream.bodies)


async def test_a_hosted_kinds_answers_are_priced_from_the_catalog_without_discovery(
    upstream: FakeUpstream, make_stack: StackFactory
) -> None:
    """The engine announces gpt-4o-mini with the catalog's $0.15 / $0.60 per 1M tokens
    (`catalog_prices`): this stack runs no discovery source to list them."""
    config = parse_config(
        f"""
model_system:
  backends:
    openai:
      api_key: "${{OPENAI_API_KEY}}"
      base_url: "{upstream.url}/v1"
      models: [gpt-4o-mini]
""",
        env={"OPENAI_API_KEY": "sk-test"},
    )
    stack = await make_stack(roles=STACK_ROLES, config=config)
    _answer(upstream)
    request = _request("openai/gpt-4o-mini")
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        chunks = [c async for c in gateway.GenerateStream(request, timeout=10)]
        answer = await gateway.Generate(request, timeout=10)
    cost = 9 * 0.15e-6 + 2 * 0.6e-6
    assert chunks[-1].usage.cost_usd == pytest.approx(cost)
    assert answer.usage.cost_usd == pytest.approx(cost)


async def test_the_gateway_refuses_top_k_for_openai_before_any_call(
    upstream: FakeUpstream, openai_gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    _answer(upstream)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await openai_gateway.Generate(_request(top_k=3), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "params.top_k" in (info.value.details() or "")
    assert "openai" in (info.value.details() or "")
    assert upstream.bodies == []


async def test_the_gateway_validates_the_answer_against_the_schema_whatever_the_provider(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    """A server that ignores the schema (vLLM reads json_object as JSON mode only) still
    has its answer checked by the gateway (security.guardrails.validate_output_schema)."""
    clients = await stack_for(upstream.url)
    schema = json.dumps(SCHEMA)
    _answer(upstream, '{"name": "Ada"}')  # no age
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(
            _request("custom/fake-model", response_schema_json=schema), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert "does not follow params.response_schema_json" in (info.value.details() or "")

    _answer(upstream, '{"name": "Ada", "age": 36}')
    answer = await clients.gateway.Generate(
        _request("custom/fake-model", response_schema_json=schema), timeout=10
    )
    assert json.loads(answer.text) == {"name": "Ada", "age": 36}


# ---- the real llama_cpp.server ---------------------------------------------------------


@pytest.mark.slow
async def test_llama_cpp_server_follows_the_schema_and_takes_top_k(
    llama_server: str, stack_for: StackFor
) -> None:
    clients = await stack_for(llama_server)
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["colour"],
    }
    request = _request(
        "custom/gemma-3-270m",
        response_schema_json=json.dumps(schema),
        top_k=20,
        temperature=0.0,
        max_tokens=24,
    )
    request.input.text = "Pick a colour."
    answer = await clients.gateway.Generate(request, timeout=120)
    assert json.loads(answer.text)["colour"] in {"red", "green", "blue"}
    assert list(answer.dropped_params) == []
