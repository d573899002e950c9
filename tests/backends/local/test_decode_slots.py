"""Parallel decode slots on the real Gemma 3 270M: streams decoded together, a bounded queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import GEMMA_ID

from modelyard.backends.engine import Piece
from modelyard.backends.local.decode_slots import Generation, _overlap, _Stream
from modelyard.backends.local.llama_engine import LlamaEngine
from modelyard_client.errors import ContextLengthExceeded, Overloaded
from modelyard_client.v1 import common_pb2

pytestmark = pytest.mark.slow  # the real llama.cpp engine and model weights


def _text(prompt: str) -> common_pb2.Input:
    return common_pb2.Input(text=prompt)


def _greedy(max_tokens: int, *stop: str) -> common_pb2.GenerationParams:
    return common_pb2.GenerationParams(max_tokens=max_tokens, temperature=0.0, stop=list(stop))


async def _engine(models_dir: Path, slots: int, max_queue: int = 8) -> LlamaEngine:
    engine = LlamaEngine(models_dir, n_ctx=512, parallel_slots=slots, max_queue=max_queue)
    await engine.start()
    await engine.load(GEMMA_ID)
    return engine


async def _timed(pieces: AsyncIterator[Piece]) -> list[tuple[float, Piece]]:
    return [(time.perf_counter(), piece) async for piece in pieces]


async def test_streams_in_their_slots_are_decoded_together(models_dir: Path) -> None:
    engine = await _engine(models_dir, slots=3)
    prompts = ("The capital of France is", "Count: one, two,", "My favourite food is")
    try:
        runs = await asyncio.gather(
            *(_timed(engine.infer_stream(GEMMA_ID, _text(p), _greedy(24))) for p in prompts)
        )
        alone = await _timed(engine.infer_stream(GEMMA_ID, _text(prompts[1]), _greedy(24)))
    finally:
        await engine.close()
    firsts = [run[0][0] for run in runs]
    lasts = [run[-1][0] for run in runs]
    # Decoded one after another, a stream would start only once the one before it ended.
    assert max(firsts) < min(lasts)
    for run in runs:
        last = run[-1][1]
        assert last.finish_reason == common_pb2.FINISH_REASON_LENGTH
        assert last.output_tokens == 24 and last.input_tokens > 0
        assert "".join(p.text for _, p in run).strip()
    # Each stream keeps to its own sequence: the same prompt alone gives the same usage.
    assert alone[-1][1].input_tokens == runs[1][-1][1].input_tokens


async def test_calls_beyond_the_slots_wait_and_beyond_the_queue_are_refused(
    models_dir: Path,
) -> None:
    engine = await _engine(models_dir, slots=1, max_queue=1)
    try:
        first = engine.infer_stream(GEMMA_ID, _text("Count: one, two,"), _greedy(40))
        await anext(first)  # holds the one slot
        waiting = asyncio.ensure_future(
            _timed(engine.infer_stream(GEMMA_ID, _text("Hello"), _greedy(3)))
        )
        await asyncio.sleep(0.05)
        assert not waiting.done()
        with pytest.raises(Overloaded) as refused:
            await anext(engine.infer_stream(GEMMA_ID, _text("Hi"), _greedy(3)))
        assert refused.value.scope == f"model:{GEMMA_ID}"
        assert "backends.local.parallel_slots=1, max_queue=1" in refused.value.message
        rest = [p async for p in first]
        assert rest[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
        waited = await asyncio.wait_for(waiting, 60)
        assert waited[-1][1].output_tokens == 3
    finally:
        await engine.close()


async def test_a_closed_stream_gives_its_slot_to_the_next(models_dir: Path) -> None:
    engine = await _engine(models_dir, slots=1, max_queue=0)
    try:
        stream = engine.infer_stream(GEMMA_ID, _text("Count: one, two,"), _greedy(200))
        assert (await anext(stream)).text
        await stream.aclose()
        again = [p async for p in engine.infer_stream(GEMMA_ID, _text("Hello"), _greedy(2))]
        assert again[-1].output_tokens == 2
    finally:
        await engine.close()


async def test_a_stop_string_ends_the_stream_before_it(models_dir: Path) -> None:
    engine = await _engine(models_dir, slots=2)
    prompt = _text("Write a sentence about the weather:")
    try:
        whole = [p async for p in engine.infer_stream(GEMMA_ID, prompt, _greedy(40))]
        text = "".join(p.text for p in whole)
        assert "e" in text  # the stop below is reached
        cut = [p async for p in engine.infer_stream(GEMMA_ID, prompt, _greedy(40, "e"))]
    finally:
        await engine.close()
    assert "".join(p.text for p in cut) == text[: text.index("e")]
    assert cut[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    assert cut[-1].output_tokens < whole[-1].output_tokens


async def test_a_prompt_longer_than_the_context_is_refused_by_name(models_dir: Path) -> None:
    engine = await _engine(models_dir, slots=1)
    try:
        with pytest.raises(ContextLengthExceeded) as refused:
            await anext(engine.infer_stream(GEMMA_ID, _text("word " * 600), _greedy(1)))
        assert "context holds 512 (backends.local.n_ctx)" in refused.value.message
        fits = [p async for p in engine.infer_stream(GEMMA_ID, _text("Hi"), _greedy(1))]
        assert fits[-1].output_tokens == 1
    finally:
        await engine.close()


def test_text_that_may_start_a_stop_string_is_held_back() -> None:
    assert _overlap("abcE", "END") == 1
    assert _overlap("abcEN", "END") == 2
    assert _overlap("abc", "END") == 0
    assert _overlap("E", "E") == 0  # a whole stop is found, not held

    async def feed() -> list[tuple[str, bool]]:
        stream = _Stream(0, Generation([1], 10, stop=("END",)), asyncio.get_running_loop())
        try:
            return [stream.text(b) for b in (b"abcE", b"N", b"xEN", b"D tail")]
        finally:
            stream.sampler.close()

    assert asyncio.run(feed()) == [("abc", False), ("", False), ("ENx", False), ("", True)]


def test_a_character_split_across_tokens_is_sent_whole() -> None:
    async def feed() -> list[tuple[str, bool]]:
        stream = _Stream(0, Generation([1], 10), asyncio.get_running_loop())
        try:
            euro = "€".encode()
            return [stream.text(euro[:1]), stream.text(euro[1:])]
        finally:
            stream.sampler.close()

    assert asyncio.run(feed()) == [("", False), ("€", False)]
