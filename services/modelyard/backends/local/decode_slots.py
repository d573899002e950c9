"""Parallel generation slots: one llama.cpp context decoding many streams at once.

A loaded GGUF model has one context with `slots` sequences (a unified KV cache
of ``slots x n_ctx`` positions, each stream held to `n_ctx`) and one decode
thread. Every step the thread puts each running stream's last token, and as
much of a newly started stream's prompt as the batch has room for, into one
``llama_batch`` and decodes it once; each stream then draws its next token
with its own sampler chain (llama-cpp-python's defaults: top-k 40, top-p
0.95, min-p 0.05, temperature 0.8; greedy at temperature 0), turns it into
text and hands it to the event loop. This is continuous batching: a stream
joins and leaves between steps and never waits for another to finish.

A stream leaves its slot at end of generation, at `max_tokens`, at a stop
string (the text is cut before it; text that may still become one is held
back), when its context is full, or when its reader closes it; its KV cells
are cleared for the next. Admission in front of the slots (how many wait, and
the refusal beyond) is the engine's; `open` only ever sees a free slot.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from modelyard.backends.engine import Piece
from modelyard_client.errors import FailedPrecondition, ModelyardError
from modelyard_client.v1 import common_pb2

DEFAULT_PARALLEL_SLOTS = 4  # backends.<name>.parallel_slots: streams one model decodes at once
MAX_BATCH_TOKENS = 512  # tokens one decode step takes: running streams first, then prompts
_DEFAULT_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: a random seed per stream


@dataclass(frozen=True)
class Sampling:
    """How one stream draws its tokens (unset values: llama-cpp-python's defaults)."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    seed: int = _DEFAULT_SEED

    def chain(self) -> Any:
        """A new sampler chain (a ``_internals.LlamaSampler``) for one stream."""
        from llama_cpp import _internals

        sampler: Any = cast(Any, _internals).LlamaSampler()
        if self.temperature == 0.0:
            sampler.add_greedy()
            return sampler
        sampler.add_top_k(self.top_k)
        sampler.add_top_p(self.top_p, 1)
        sampler.add_min_p(self.min_p, 1)
        sampler.add_temp(self.temperature)
        sampler.add_dist(self.seed)
        return sampler


@dataclass(frozen=True)
class Generation:
    """What one stream asks for: its prompt as tokens, its bound and its stop strings."""

    prompt: Sequence[int]
    max_tokens: int
    stop: tuple[str, ...] = ()
    sampling: Sampling = Sampling()


class _Stream:
    """One stream in its slot: where its prompt and output are, and where its pieces go."""

    def __init__(self, seq_id: int, generation: Generation, loop: asyncio.AbstractEventLoop):
        self.seq_id = seq_id
        self.generation = generation
        self.sampler = generation.sampling.chain()
        self.loop = loop
        self.pieces: asyncio.Queue[Piece | BaseException | None] = asyncio.Queue()
        self.released = loop.create_future()  # set once its slot is free again
        self.fed = 0  # prompt tokens decoded so far
        self.last_token = -1  # the token the next step decodes, once the prompt is in
        self.output_tokens = 0
        self.closed = False  # its reader left: end it at the next step
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""  # text that may still turn out to start a stop string

    @property
    def length(self) -> int:
        """The positions its sequence holds: the prompt and every token drawn."""
        return self.fed + self.output_tokens

    def send(self, item: Piece | BaseException | None) -> None:
        self.loop.call_soon_threadsafe(self.pieces.put_nowait, item)

    def text(self, piece: bytes) -> tuple[str, bool]:
        """The text `piece` lets out now, and whether a stop string was reached."""
        self._held += self._decoder.decode(piece)
        stops = self.generation.stop
        for stop in stops:
            at = self._held.find(stop)
            if at >= 0:
                out, self._held = self._held[:at], ""
                return out, True
        keep = max((_overlap(self._held, stop) for stop in stops), default=0)
        out = self._held[: len(self._held) - keep]
        self._held = self._held[len(out) :]
        return out, False

    def rest(self) -> str:
        """The text still held back when the stream ends without a stop string."""
        out, self._held = self._held + self._decoder.decode(b"", final=True), ""
        return out


class DecodeSlots:
    """`slots` streams of one loaded model decoded together by one thread.

    `model` is the llama.cpp model pointer and `vocab` its vocabulary; each
    stream may use `n_ctx` positions. `close` stops the thread and frees the
    context; the model itself is its owner's.
    """

    def __init__(self, model: Any, vocab: Any, *, slots: int, n_ctx: int, n_threads: int) -> None:
        import llama_cpp

        self._llama = llama_cpp
        self._vocab = vocab
        self.slots = slots
        self.n_ctx = n_ctx
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = slots * n_ctx
        params.n_batch = params.n_ubatch = MAX_BATCH_TOKENS
        params.n_seq_max = slots
        params.n_outputs_max = slots  # logits for one token per stream (else 512 x the vocab)
        params.n_threads = params.n_threads_batch = n_threads
        params.kv_unified = True
        self._ctx = llama_cpp.llama_init_from_model(model, params)
        if self._ctx is None:
            raise FailedPrecondition(f"llama.cpp could not create a context of {slots} slot(s)")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(MAX_BATCH_TOKENS, 0, 1)
        self._piece = ctypes.create_string_buffer(256)
        self._free = list(range(slots - 1, -1, -1))
        self._streams: list[_Stream] = []
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="llama.cpp decode", daemon=True)
        self._thread.start()

    async def stream(self, generation: Generation) -> AsyncGenerator[Piece, None]:
        """The pieces of `generation`, the last one with its finish reason and usage.

        The caller holds one of the free slots (its admission's); leaving the
        iteration early ends the stream, and its slot is free when this returns.
        """
        if not generation.prompt or len(generation.prompt) >= self.n_ctx:
            raise FailedPrecondition(  # the engine refuses these before; this is the guard
                f"a prompt of {len(generation.prompt)} token(s) does not fit n_ctx {self.n_ctx}"
            )
        loop = asyncio.get_running_loop()
        with self._wake:
            if not self._free:
                raise FailedPrecondition(f"all {self.slots} decode slot(s) are taken")
            stream = _Stream(self._free.pop(), generation, loop)
            self._streams.append(stream)
            self._wake.notify()
        try:
            while (item := await stream.pieces.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stream.closed = True
            with self._wake:
                self._wake.notify()
            await asyncio.shield(stream.released)

    def close(self) -> None:
        """Stop the thread (every stream has ended: leases hold the model) and free the context."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        self._llama.llama_batch_free(self._batch)
        self._llama.llama_free(self._ctx)

    # ---- the decode thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closing and not self._streams:
                    self._wake.wait()
                if self._closing:
                    return
                streams = list(self._streams)
            try:
                self._step(streams)
            except BaseException as exc:  # every stream in the step learns of it
                failure = (
                    exc
                    if isinstance(exc, ModelyardError)
                    else FailedPrecondition(f"llama.cpp generation failed: {exc}")
                )
                for stream in streams:
                    self._end(stream, failure)

    def _step(self, streams: list[_Stream]) -> None:
        for stream in streams:
            if stream.closed:
                self._end(stream, None)
        streams = [s for s in streams if not s.closed]
        batch = self._batch
        batch.n_tokens = 0
        sampled: list[tuple[_Stream, int]] = []
        for stream in streams:  # running streams first: one token each
            if stream.last_token >= 0:
                at = stream.length - 1  # the last token drawn, not yet decoded
                sampled.append((stream, self._add(stream.last_token, at, stream, True)))
        for stream in streams:  # then prompts, as far as the batch has room
            prompt = stream.generation.prompt
            room = MAX_BATCH_TOKENS - batch.n_tokens
            if stream.last_token >= 0 or room <= 0:
                continue
            take = min(room, len(prompt) - stream.fed)
            for i in range(stream.fed, stream.fed + take):
                index = self._add(prompt[i], i, stream, i == len(prompt) - 1)
            stream.fed += take
            if stream.fed == len(prompt):
                sampled.append((stream, index))
        if batch.n_tokens == 0:
            return
        code = self._llama.llama_decode(self._ctx, batch)
        if code != 0:
            raise FailedPrecondition(f"llama.cpp decode failed (code {code})")
        for stream, index in sampled:
            self._next(stream, index)

    def _add(self, token: int, pos: int, stream: _Stream, logits: bool) -> int:
        batch = self._batch
        k = int(batch.n_tokens)
        batch.token[k] = token
        batch.pos[k] = pos
        batch.n_seq_id[k] = 1
        batch.seq_id[k][0] = stream.seq_id
        batch.logits[k] = logits
        batch.n_tokens = k + 1
        return k

    def _next(self, stream: _Stream, index: int) -> None:
        """Draw `stream`'s next token from the logits at `index`, and send its text."""
        llama = self._llama
        token = llama.llama_sampler_sample(stream.sampler.sampler, self._ctx, index)
        if llama.llama_vocab_is_eog(self._vocab, token):
            return self._finish(stream, common_pb2.FINISH_REASON_STOP, stream.rest())
        stream.output_tokens += 1
        stream.last_token = token
        n = llama.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        text, stopped = stream.text(self._piece.raw[: max(n, 0)])
        if stopped:
            return self._finish(stream, common_pb2.FINISH_REASON_STOP, text)
        if stream.output_tokens >= stream.generation.max_tokens or stream.length >= self.n_ctx:
            return self._finish(stream, common_pb2.FINISH_REASON_LENGTH, text + stream.rest())
        if text:
            stream.send(Piece(text))

    def _finish(
        self, stream: _Stream, reason: common_pb2.FinishReason.ValueType, text: str
    ) -> None:
        if text:
            stream.send(Piece(text))
        stream.send(
            Piece(
                "",
                reason,
                input_tokens=len(stream.generation.prompt),
                output_tokens=stream.output_tokens,
            )
        )
        self._end(stream, None)

    def _end(self, stream: _Stream, failure: BaseException | None) -> None:
        """Free `stream`'s slot and KV cells; its reader gets `failure` or the end."""
        with self._wake:
            if stream not in self._streams:
                return
            self._streams.remove(stream)
        self._llama.llama_memory_seq_rm(self._memory, stream.seq_id, -1, -1)
        stream.sampler.close()
        with self._wake:
            self._free.append(stream.seq_id)
        stream.send(failure)
        stream.loop.call_soon_threadsafe(_release, stream.released)


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of `text` that begins `stop` (short of all of it)."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


def _release(released: asyncio.Future[None]) -> None:
    if not released.done():
        released.set_result(None)
