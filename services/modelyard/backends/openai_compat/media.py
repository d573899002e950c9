"""The OpenAI wire beyond chat: image generation, text to speech and transcription.

Which endpoint a model takes is its name's to say (an upstream's model list
says nothing of it, as for embeddings): ``gpt-image-*`` and ``dall-e-*`` make
images (`images`), ``tts-*`` and ``*-tts*`` speak (`speech`), ``whisper-*``
and ``*-transcribe*`` transcribe (`transcripts`); every other model chats.
`media_kind` is computed once per model when the engine learns its names, so
that a chat call pays one dict lookup for the dispatch (`OpenAICompatEngine`).

These calls are not the hot path: they go over the engine's aiohttp session,
in one of its admission slots, with the chat path's error mapping
(`upstream.raise_for_status`). `media_pieces` runs one call and yields its
pieces; `post` opens the request and turns a failure before any answer into
the error it means.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from modelyard.backends.engine import Piece
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import raise_for_status, unreachable
from modelyard_client.v1 import common_pb2

C = common_pb2
IMAGES, SPEECH, TRANSCRIPTION = "images", "speech", "transcription"


@dataclass(frozen=True)
class MediaShape:
    """What a kind of media model announces: capabilities, and modalities in and out."""

    capabilities: tuple[common_pb2.Capability.ValueType, ...]
    inputs: tuple[common_pb2.Modality.ValueType, ...]
    outputs: tuple[common_pb2.Modality.ValueType, ...]


SHAPES = {
    IMAGES: MediaShape((C.CAPABILITY_IMAGE_GENERATION,), (C.MODALITY_TEXT,), (C.MODALITY_IMAGE,)),
    SPEECH: MediaShape(
        (C.CAPABILITY_TEXT_TO_SPEECH, C.CAPABILITY_STREAMING),
        (C.MODALITY_TEXT,),
        (C.MODALITY_AUDIO,),
    ),
    TRANSCRIPTION: MediaShape(
        (C.CAPABILITY_SPEECH_TO_TEXT,), (C.MODALITY_AUDIO,), (C.MODALITY_TEXT,)
    ),
}


def media_kind(name: str) -> str | None:
    """IMAGES, SPEECH or TRANSCRIPTION for a model name that says it is one; None for a
    chat (or embedding) model. ``gpt-4o-mini-tts`` speaks, ``gpt-4o-transcribe`` and
    ``gpt-4o-mini-transcribe`` transcribe, ``gpt-image-1`` and ``dall-e-3`` draw."""
    lower = name.lower().rsplit("/", 1)[-1]  # "openai/tts-1" as a router names it
    if lower.startswith(("gpt-image-", "dall-e-", "chatgpt-image")):
        return IMAGES
    if lower.startswith("tts-") or "-tts" in lower:
        return SPEECH
    if lower.startswith("whisper") or "-transcribe" in lower:
        return TRANSCRIPTION
    return None


@dataclass(frozen=True)
class MediaCall:
    """One call's upstream: the engine's session, provider, timeout and ids."""

    http: aiohttp.ClientSession
    provider: ProviderEndpoint
    timeout: aiohttp.ClientTimeout
    model_id: str  # the catalog id, for errors
    name: str  # the upstream's model name, sent as ``model``

    @property
    def where(self) -> str:
        return f"upstream '{self.provider.name}'"

    @asynccontextmanager
    async def post(
        self, path: str, content_type: str = "", **request: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``POST <base_url><path>`` with the key as it is now (and `content_type` over the
        session's JSON one: a multipart body's boundary); a status other than 200 is the
        error `raise_for_status` names, a call that never got an answer
        `BackendUnavailable`. What goes wrong once the body is being read is the caller's."""
        url = f"{self.provider.base_url}{path}"
        headers = self.provider.headers()
        if content_type:
            headers = {**headers, "Content-Type": content_type}
        try:
            resp = await self.http.post(url, timeout=self.timeout, headers=headers, **request)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable(self.provider, exc) from exc
        async with resp:
            if resp.status != 200:
                try:
                    await raise_for_status(self.provider, resp, model=self.model_id)
                except (aiohttp.ClientError, TimeoutError) as exc:  # the error body broke off
                    raise unreachable(self.provider, exc) from exc
            yield resp


def token_count(value: Any) -> int:
    """A usage count of an answer: a positive whole number, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_of(answer: Any) -> dict[str, Any]:
    """An answer's ``usage`` object, or an empty one."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    return usage if isinstance(usage, dict) else {}


def media_pieces(
    kind: str,
    call: MediaCall,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
) -> AsyncGenerator[Piece, None]:
    """The pieces of one media call of `kind`; its request is checked before anything is
    sent (`InvalidRequest` naming the field)."""
    if kind == IMAGES:
        from modelyard.backends.openai_compat.images import image_pieces

        return image_pieces(call, model_input, params)
    if kind == SPEECH:
        from modelyard.backends.openai_compat.speech import speech_pieces

        return speech_pieces(call, model_input, params)
    from modelyard.backends.openai_compat.transcripts import transcript_pieces

    return transcript_pieces(call, model_input, params)
