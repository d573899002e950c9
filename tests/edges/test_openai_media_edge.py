"""The HTTP edge's speech, transcription and image routes with the official `openai` SDK:
real Piper speaks, real Whisper hears it back, through the edge; images from an engine
that makes them."""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator

import openai
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly.stack import Stack
from modelyard.backends.engine import Piece
from modelyard.config import parse_config
from modelyard_client.v1 import common_pb2

CONFIG = """
model_system:
  backends:
    voice: {kind: piper}
    speech: {kind: whisper, beam_size: 1}
"""
PIPER = "voice/en_US-joe-medium"
WHISPER = "speech/whisper-tiny.en"
PAINTER = "scripted/painter"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


class Painter(ScriptedEngine):
    """Makes one (tiny) image per prompt, as an image model's engine does."""

    def models(self) -> list[common_pb2.ModelEntry]:
        entries = super().models()
        for entry in entries:
            entry.output_modalities[:] = [common_pb2.MODALITY_IMAGE]
        return entries

    async def infer_stream(
        self, model_id: str, model_input: common_pb2.Input, params: common_pb2.GenerationParams
    ) -> AsyncGenerator[Piece, None]:
        self.calls.append((model_id, model_input, params))
        image = common_pb2.Output(images=[common_pb2.Image(data=PNG, mime_type="image/png")])
        yield Piece("", common_pb2.FINISH_REASON_STOP, output=image, images=1)


def _client(stack: Stack) -> openai.AsyncOpenAI:
    assert stack.edge is not None
    return openai.AsyncOpenAI(base_url=stack.edge.base_url, api_key="none", max_retries=0)


async def test_piper_speaks_and_whisper_hears_it_back_over_http(make_stack: StackFactory) -> None:
    stack = await make_stack(
        [Painter((PAINTER,))],
        config=parse_config(CONFIG),
        roles=("registry", "gateway", "backend-local"),
        http_listen="127.0.0.1:0",
    )
    async with _client(stack) as client:
        spoken = await client.audio.speech.create(
            model=PIPER, voice="joe", input="Turn left at the old bridge.", response_format="wav"
        )
        wav = spoken.content
        assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 10_000
        pcm = await client.audio.speech.create(
            model=PIPER, voice="joe", input="Turn left.", response_format="pcm"
        )
        assert pcm.response.headers["content-type"] == "audio/pcm" and len(pcm.content) > 1000
        heard = await client.audio.transcriptions.create(
            model=WHISPER,
            file=("speech.wav", wav, "audio/wav"),
            response_format="verbose_json",
            timestamp_granularities=["segment"],
        )
        assert "bridge" in heard.text.lower()
        assert heard.segments and 0 <= heard.segments[0].start < heard.segments[-1].end
        plain = await client.audio.transcriptions.create(
            model=WHISPER, file=("speech.wav", wav, "audio/wav")
        )
        assert "bridge" in plain.text.lower()
        with pytest.raises(openai.BadRequestError, match="response_format"):
            await client.audio.speech.create(
                model=PIPER, voice="joe", input="hi", response_format="opus"
            )
        with pytest.raises(openai.BadRequestError, match="voice"):
            await client.audio.speech.create(model=PIPER, voice="amy", input="hi")


async def test_an_image_comes_back_as_b64_json(make_stack: StackFactory) -> None:
    painter = Painter((PAINTER,))
    stack = await make_stack(
        [painter, ScriptedEngine(("scripted/echo",))],
        roles=("registry", "gateway"),
        http_listen="127.0.0.1:0",
    )
    async with _client(stack) as client:
        answer = await client.images.generate(model=PAINTER, prompt="a red square")
        assert answer.data is not None and base64.b64decode(answer.data[0].b64_json or "") == PNG
        with pytest.raises(openai.BadRequestError, match="n"):
            await client.images.generate(model=PAINTER, prompt="two", n=2)
        with pytest.raises(openai.BadRequestError, match="does not make images"):
            await client.images.generate(model="scripted/echo", prompt="a red square")
    assert [m for m, _, _ in painter.calls] == [PAINTER]
