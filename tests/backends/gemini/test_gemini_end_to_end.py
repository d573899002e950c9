"""`gemini` and `vertex` backends in a real in-process stack, configured as a user would,
through GatewayService.GenerateStream and Generate, against the fake Gemini server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory
from support.fake_gemini import (
    API_KEY,
    MODEL,
    PROJECT,
    REGION,
    FakeGemini,
    google_error,
    response,
    write_service_account,
)

from modelyard.config import parse_config
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

ROLES = ("registry", "gateway", "backend-openai-compat")
# gemini-2.5-flash in api_models.yaml: USD 0.30 per million input tokens, 2.50 per million out.
USD_IN, USD_OUT = 0.30 / 1e6, 2.50 / 1e6


@pytest.fixture
async def channel(
    fake: FakeGemini, make_stack: StackFactory, tmp_path: Path
) -> AsyncIterator[grpc.aio.Channel]:
    key_file = write_service_account(tmp_path, fake)
    config = parse_config(
        f"""
model_system:
  backends:
    gemini:
      api_key: "${{GEMINI_API_KEY}}"
      base_url: "{fake.url}"
      models: [{MODEL}]
    vertex:
      project: {PROJECT}
      region: {REGION}
      credentials_file: "{key_file}"
      endpoint: "{fake.url}"
      models: [{MODEL}]
""",
        env={"GEMINI_API_KEY": API_KEY},
    )
    stack = await make_stack(roles=ROLES, config=config)
    async with grpc.aio.insecure_channel(stack.address) as opened:
        yield opened


@pytest.fixture
def gateway(channel: grpc.aio.Channel) -> gateway_pb2_grpc.GatewayServiceAsyncStub:
    return gateway_pb2_grpc.GatewayServiceStub(channel)


def _request(model: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.chat.messages.add(role="system", content="Be terse.")
    request.input.chat.messages.add(role="user", content="Name a river.")
    request.params.max_tokens = 32
    return request


@pytest.mark.parametrize("backend", ["gemini", "vertex"])
async def test_both_backends_announce_the_model_with_the_catalogs_prices(
    channel: grpc.aio.Channel, backend: str
) -> None:
    registry = registry_pb2_grpc.RegistryServiceStub(channel)
    listed = await registry.ListModels(registry_pb2.ListModelsRequest(provider=backend))
    [entry] = [m for m in listed.models if m.id == f"{backend}/{MODEL}"]
    assert entry.name == MODEL
    assert [d.backend for d in entry.deployments] == [backend]
    assert entry.cost.usd_per_input_token == pytest.approx(USD_IN)
    assert entry.cost.usd_per_output_token == pytest.approx(USD_OUT)
    assert entry.context_window == 1_048_576


@pytest.mark.parametrize("backend", ["gemini", "vertex"])
async def test_generate_stream_reaches_the_model_and_streams_its_answer_back(
    fake: FakeGemini, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub, backend: str
) -> None:
    fake.stream([response("The ", usage=(9, 1)), response("Rhine.", finish="STOP", usage=(9, 2))])
    chunks = [c async for c in gateway.GenerateStream(_request(f"{backend}/{MODEL}"), timeout=10)]

    assert "".join(c.text for c in chunks) == "The Rhine."
    last = chunks[-1]
    assert last.model_id == f"{backend}/{MODEL}"
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (last.usage.input_tokens, last.usage.output_tokens) == (9, 2)
    [call] = fake.calls
    assert call.path.endswith(f"/models/{MODEL}:streamGenerateContent")
    assert call.body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert call.body["contents"] == [{"role": "user", "parts": [{"text": "Name a river."}]}]
    assert call.body["generationConfig"] == {"maxOutputTokens": 32}
    if backend == "gemini":
        assert call.headers["x-goog-api-key"] == API_KEY
    else:
        assert call.path.startswith(f"/v1/projects/{PROJECT}/locations/{REGION}/")
        assert call.headers["Authorization"] == f"Bearer {fake.issued[-1]}"


@pytest.mark.parametrize("backend", ["gemini", "vertex"])
async def test_generate_returns_the_whole_answer_with_usage(
    fake: FakeGemini, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub, backend: str
) -> None:
    fake.stream(
        [response("Hi", usage=(7, 1)), response(" there", finish="MAX_TOKENS", usage=(7, 2))]
    )
    answer = await gateway.Generate(_request(f"{backend}/{MODEL}"), timeout=10)
    assert answer.text == "Hi there"
    assert answer.model_id == f"{backend}/{MODEL}"
    assert answer.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (7, 2)


async def test_a_safety_block_reaches_the_caller_as_invalid_argument_content_rejected(
    fake: FakeGemini, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    fake.stream([{"promptFeedback": {"blockReason": "SAFETY"}}])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request(f"gemini/{MODEL}"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "promptFeedback.blockReason SAFETY" in (caught.value.details() or "")


async def test_a_bad_request_is_refused_before_the_model_is_called(
    fake: FakeGemini, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    fake.fail(500, google_error(500, "INTERNAL", "must not be reached"))
    request = _request(f"vertex/{MODEL}")
    request.params.stop.extend(["1", "2", "3", "4", "5", "6"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 5 stop sequences" in (caught.value.details() or "")
    assert fake.calls == []
