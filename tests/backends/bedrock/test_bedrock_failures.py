"""Every way a Bedrock call fails, as the modelyard error it becomes."""

from __future__ import annotations

import pytest
from backends.bedrock.calls import NOVA_ID, collect
from support.fake_bedrock import (
    ACCESS_KEY_ID,
    REGION,
    FakeBedrock,
    delta,
    exception_event,
    message_start,
    message_stop,
    metadata,
    text_stream,
)

from modelyard.backends.bedrock.engine import BedrockEngine
from modelyard.backends.bedrock.failures import MODEL_NOT_READY_RETRY_S
from modelyard.config import BedrockBackend
from modelyard_client.errors import (
    BackendUnavailable,
    ContentRejected,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    RateLimited,
    StreamTruncated,
)
from modelyard_client.v1 import common_pb2


# ---- HTTP errors ----------------------------------------------------------------------
async def test_throttling_with_retry_after_waits_that_long(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.fail(
        429, "ThrottlingException", "Too many requests, please wait.", {"Retry-After": "7"}
    )
    with pytest.raises(RateLimited) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 7.0
    assert "Too many requests, please wait." in caught.value.message
    assert type(caught.value) is RateLimited


@pytest.mark.parametrize(
    ("status", "error_type"), [(429, "ThrottlingException"), (400, "ServiceQuotaExceededException")]
)
async def test_throttling_without_retry_after_waits_one_second(
    engine: BedrockEngine, bedrock: FakeBedrock, status: int, error_type: str
) -> None:
    bedrock.fail(status, error_type, "Too many tokens, please wait.")
    with pytest.raises(RateLimited) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 1.0


async def test_a_model_not_ready_is_unavailable_with_a_retry_delay(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    # Also 429, but not a rate limit: the model is being loaded.
    bedrock.fail(429, "ModelNotReadyException", "Model is not ready for inference.")
    with pytest.raises(BackendUnavailable) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == MODEL_NOT_READY_RETRY_S
    assert "being loaded" in caught.value.message


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (503, "ServiceUnavailableException"),
        (500, "InternalServerException"),
        (408, "ModelTimeoutException"),
        (502, ""),  # no type: the status decides
    ],
)
async def test_server_side_failures_are_backend_unavailable(
    engine: BedrockEngine, bedrock: FakeBedrock, status: int, error_type: str
) -> None:
    bedrock.fail(status, error_type, "Service is temporarily unavailable.", {"Retry-After": "2"})
    with pytest.raises(BackendUnavailable) as caught:
        await collect(engine)
    assert caught.value.retry_after_s == 2.0
    assert type(caught.value) is BackendUnavailable


async def test_access_denied_names_the_gateways_credentials(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.fail(403, "AccessDeniedException", "You don't have access to the model.")
    with pytest.raises(ProviderAccessDenied) as caught:
        await collect(engine)
    assert "this gateway's AWS credentials" in caught.value.message
    assert "not the caller's" in caught.value.message


async def test_a_missing_resource_is_model_not_found(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.fail(404, "ResourceNotFoundException", "Model has reached end of life.")
    with pytest.raises(ModelNotFound) as caught:
        await collect(engine)
    assert caught.value.model_id == NOVA_ID


async def test_an_invalid_model_identifier_is_model_not_found(engine: BedrockEngine) -> None:
    # The fake, as Bedrock, answers 400 ValidationException for a model id it does not know.
    with pytest.raises(ModelNotFound) as caught:
        await collect(engine, model_id="bedrock/amazon.titan-nothing-v9:0")
    assert caught.value.model_id == "bedrock/amazon.titan-nothing-v9:0"
    assert "The provided model identifier is invalid." in caught.value.message


async def test_an_input_too_long_is_context_length_exceeded(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.fail(400, "ValidationException", "Input is too long for requested model.", in_body=True)
    with pytest.raises(ContextLengthExceeded) as caught:
        await collect(engine)
    assert caught.value.provider_code == "ValidationException"


async def test_another_validation_error_is_an_invalid_request(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.fail(400, "ValidationException", "Extra inputs are not permitted: frobnicate")
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert type(caught.value) is InvalidRequest
    assert "ValidationException: Extra inputs are not permitted: frobnicate" in caught.value.message


async def test_a_model_error_is_a_provider_error(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.fail(424, "ModelErrorException", "The model failed to process the request.")
    with pytest.raises(ProviderError) as caught:
        await collect(engine)
    assert type(caught.value) is ProviderError


async def test_a_type_given_only_in_the_body_is_read_from_there(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.fail(429, "ThrottlingException", "Rate exceeded", in_body=True)
    with pytest.raises(RateLimited):
        await collect(engine)


async def test_upstream_text_is_scrubbed_of_credentials(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.fail(400, "ValidationException", "bad header Authorization: Bearer abcdefghijklmnop")
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine)
    assert "abcdefghijklmnop" not in caught.value.message


# ---- the signature --------------------------------------------------------------------
async def test_a_wrong_secret_fails_the_signature_check(
    bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-the-fake-knows-0000000000")
    engine = BedrockEngine("bedrock", BedrockBackend(region=REGION, endpoint=bedrock.url))
    await engine.start()
    try:
        with pytest.raises(ProviderAuthFailed) as caught:
            await collect(engine)
    finally:
        await engine.close()
    assert type(caught.value) is ProviderAuthFailed
    assert bedrock.refused == ["InvalidSignatureException"]
    assert "signature we calculated does not match" in caught.value.message
    assert "not-the-secret" not in caught.value.message


async def test_an_unknown_access_key_is_an_unrecognised_client(
    bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSOMEONEELSE00001")
    engine = BedrockEngine("bedrock", BedrockBackend(region=REGION, endpoint=bedrock.url))
    await engine.start()
    try:
        with pytest.raises(ProviderAuthFailed):
            await collect(engine)
    finally:
        await engine.close()
    assert bedrock.refused == ["UnrecognizedClientException"]


async def test_a_signature_for_another_region_is_refused(bedrock: FakeBedrock) -> None:
    engine = BedrockEngine("bedrock", BedrockBackend(region="eu-west-1", endpoint=bedrock.url))
    await engine.start()
    try:
        with pytest.raises(ProviderAuthFailed):
            await collect(engine)
    finally:
        await engine.close()
    assert bedrock.refused == ["InvalidSignatureException"]


async def test_no_credentials_anywhere_fails_before_any_call(
    bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    engine = BedrockEngine("bedrock", BedrockBackend(region=REGION, endpoint=bedrock.url))
    await engine.start()
    try:
        assert engine.health().status == common_pb2.HEALTH_STATUS_UNHEALTHY
        assert "found no AWS credentials" in engine.health().reason
        with pytest.raises(ProviderAuthFailed) as caught:
            await collect(engine)
    finally:
        await engine.close()
    assert "AWS_ACCESS_KEY_ID" in caught.value.message
    assert bedrock.requests == [] and bedrock.refused == []


async def test_a_profile_that_does_not_exist_is_reported(
    bedrock: FakeBedrock,
) -> None:
    engine = BedrockEngine(
        "bedrock", BedrockBackend(region=REGION, endpoint=bedrock.url, profile="nowhere")
    )
    await engine.start()
    await engine.close()
    assert engine.health().status == common_pb2.HEALTH_STATUS_UNHEALTHY
    assert "nowhere" in engine.health().reason


async def test_the_signed_request_never_shows_the_secret(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    await collect(engine)
    sent = " ".join(bedrock.requests[0].headers.values())
    assert ACCESS_KEY_ID in sent
    assert bedrock.credentials[ACCESS_KEY_ID][0] not in sent


# ---- inside the stream ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("exception_type", "expected"),
    [
        ("throttlingException", RateLimited),
        ("serviceUnavailableException", BackendUnavailable),
        ("internalServerException", BackendUnavailable),
        ("validationException", InvalidRequest),
    ],
)
async def test_an_exception_event_ends_the_stream_with_its_error(
    engine: BedrockEngine,
    bedrock: FakeBedrock,
    exception_type: str,
    expected: type[Exception],
) -> None:
    bedrock.answer([message_start(), exception_event(exception_type, "went wrong")])
    with pytest.raises(expected) as caught:
        await collect(engine)
    assert type(caught.value) is expected
    assert "went wrong" in str(caught.value)


async def test_a_stream_error_after_text_is_a_truncated_answer(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer(
        [
            message_start(),
            delta("The first half"),
            exception_event(
                "modelStreamErrorException",
                "An error occurred while streaming.",
                originalStatusCode=500,
                originalMessage="boom",
            ),
        ]
    )
    stream = engine.infer_stream(
        NOVA_ID, common_pb2.Input(text="hi"), common_pb2.GenerationParams(max_tokens=8)
    )
    texts = []
    with pytest.raises(StreamTruncated):
        async for piece in stream:
            texts.append(piece.text)
    assert "".join(texts) == "The first half"  # what came before still reaches the caller


async def test_a_stream_error_before_any_text_is_unavailable(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer([message_start(), exception_event("modelStreamErrorException", "broken")])
    with pytest.raises(BackendUnavailable):
        await collect(engine)


async def test_a_stream_that_ends_without_message_stop_is_truncated(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer(text_stream(["one", "two", "three"]))
    bedrock.cut_after(3)  # messageStart and two deltas
    with pytest.raises(StreamTruncated) as caught:
        await collect(engine)
    assert "without a messageStop" in caught.value.message


async def test_a_stream_that_ends_without_its_metadata_is_truncated(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer([message_start(), delta("all"), message_stop("end_turn")])
    with pytest.raises(StreamTruncated) as caught:
        await collect(engine)
    assert "without its metadata" in caught.value.message


async def test_a_connection_dropped_mid_message_is_truncated(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer(text_stream(["one", "two"]))
    bedrock.drop_after(2)
    with pytest.raises(StreamTruncated):
        await collect(engine)


@pytest.mark.parametrize("stop_reason", ["content_filtered", "guardrail_intervened"])
async def test_a_filtered_answer_is_content_rejected(
    engine: BedrockEngine, bedrock: FakeBedrock, stop_reason: str
) -> None:
    bedrock.answer(text_stream(["Sorry, I can't."], stop_reason))
    with pytest.raises(ContentRejected) as caught:
        await collect(engine)
    assert caught.value.provider_code == stop_reason


async def test_a_bad_crc_is_a_protocol_error(engine: BedrockEngine, bedrock: FakeBedrock) -> None:
    broken = bytearray(delta("Hello"))
    broken[-6] ^= 0x01
    bedrock.raw(message_start() + bytes(broken))
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine)
    assert "Checksum mismatch" in caught.value.message


async def test_usage_that_is_no_count_is_a_protocol_error(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer([message_start(), delta("x"), message_stop(), metadata(-1, 2)])
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine)
    assert "usage.inputTokens is -1" in caught.value.message


async def test_an_unreachable_endpoint_is_backend_unavailable() -> None:
    engine = BedrockEngine("bedrock", BedrockBackend(region=REGION, endpoint="http://127.0.0.1:9"))
    await engine.start()
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await collect(engine)
    finally:
        await engine.close()
    assert "unreachable" in caught.value.message


# ---- refused before any call ----------------------------------------------------------
def _chat(*messages: tuple[str, str], name: str = "") -> common_pb2.Input:
    out = common_pb2.Input()
    for role, content in messages:
        out.chat.messages.add(role=role, content=content, name=name)
    return out


@pytest.mark.parametrize(
    ("model_input", "params", "field"),
    [
        (None, common_pb2.GenerationParams(seed=7), "params.seed"),
        (None, common_pb2.GenerationParams(voice="joe"), "params.voice"),
        (None, common_pb2.GenerationParams(audio_format="wav"), "params.audio_format"),
        (None, common_pb2.GenerationParams(temperature=1.5), "params.temperature"),
        (None, common_pb2.GenerationParams(top_p=2.0), "params.top_p"),
        (
            None,
            common_pb2.GenerationParams(response_schema_json="[1]"),
            "params.response_schema_json",
        ),
        (
            None,
            common_pb2.GenerationParams(response_schema_json="{"),
            "params.response_schema_json",
        ),
        (_chat(("tool", "42")), None, "input.chat.messages[0].tool_call_id"),
        (_chat(("user", "hi"), name="ada"), None, "input.chat.messages[0].name"),
        (_chat(("user", "")), None, "input.chat.messages[0].content"),
        (_chat(("system", "Be terse.")), None, "input.chat.messages"),
        (common_pb2.Input(image=common_pb2.Image()), None, "input"),
        (
            _chat(("user", "hi")),
            common_pb2.GenerationParams(continue_final_message=True),
            "params.continue_final_message",
        ),
    ],
)
async def test_what_converse_cannot_take_is_refused_before_any_call(
    engine: BedrockEngine,
    bedrock: FakeBedrock,
    model_input: common_pb2.Input | None,
    params: common_pb2.GenerationParams | None,
    field: str,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, params)
    assert caught.value.field == field
    assert bedrock.requests == [] and bedrock.refused == []


async def test_top_k_on_a_family_without_a_documented_field_is_refused(
    bedrock: FakeBedrock,
) -> None:
    engine = BedrockEngine(
        "bedrock",
        BedrockBackend(
            region=REGION, endpoint=bedrock.url, models=("meta.llama3-70b-instruct-v1:0",)
        ),
    )
    await engine.start()
    try:
        with pytest.raises(InvalidRequest) as caught:
            await collect(
                engine,
                params=common_pb2.GenerationParams(top_k=5),
                model_id="bedrock/meta.llama3-70b-instruct-v1:0",
            )
    finally:
        await engine.close()
    assert caught.value.field == "params.top_k"
    assert (
        "meta.llama3-70b-instruct-v1:0" in caught.value.message
        and "bedrock" in caught.value.message
    )
    assert bedrock.requests == []


async def test_what_converse_has_no_field_for_is_dropped_and_named_when_allowed(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer(text_stream(["Hi."]))
    params = common_pb2.GenerationParams(
        seed=7, voice="joe", temperature=0.5, drop_unsupported_params=True
    )
    pieces = await collect(engine, params=params)
    assert pieces[-1].dropped_params == ("seed", "voice")  # the proto's order
    [sent] = bedrock.requests
    assert sent.body["inferenceConfig"] == {"temperature": 0.5}
    assert set(sent.body) == {"messages", "inferenceConfig"}


async def test_top_k_a_family_has_no_field_for_is_dropped_and_named_when_allowed(
    bedrock: FakeBedrock,
) -> None:
    engine = BedrockEngine(
        "bedrock",
        BedrockBackend(
            region=REGION, endpoint=bedrock.url, models=("meta.llama3-70b-instruct-v1:0",)
        ),
    )
    await engine.start()
    bedrock.models = (*bedrock.models, "meta.llama3-70b-instruct-v1:0")
    bedrock.answer(text_stream(["Hi."]))
    try:
        pieces = await collect(
            engine,
            params=common_pb2.GenerationParams(top_k=5, seed=1, drop_unsupported_params=True),
            model_id="bedrock/meta.llama3-70b-instruct-v1:0",
        )
    finally:
        await engine.close()
    assert pieces[-1].dropped_params == ("top_k", "seed")
    assert "additionalModelRequestFields" not in bedrock.requests[0].body


async def test_a_model_of_another_backend_is_not_found(engine: BedrockEngine) -> None:
    with pytest.raises(ModelNotFound):
        await collect(engine, model_id="openai/gpt-4o")
