"""Reading Ollama's streamed answer, chat or completion: NDJSON lines in, `Piece`s out.

Each line is one object (docs/api.md of ollama/ollama, "Chat Request
(Streaming)" and "Generate request (Streaming)"): ``message.content`` (a
completion's ``response``) the next text, ``done`` false until the
last line, which has ``done: true``, ``done_reason`` (``stop``, ``length``)
and the counts: ``prompt_eval_count`` tokens in, ``eval_count`` tokens out.
A line's ``message.tool_calls`` are calls the model made, each whole
(`tools.ToolCalls`); an answer with calls that ends ``stop`` finishes with
FINISH_REASON_TOOL_CALLS.

The answer is finished only by that ``done: true`` line: a body that ends
without it (the daemon stopped, a proxy cut it) is `StreamTruncated`, never a
normal finish. ``done_reason`` ``load`` or ``unload`` on a generation says the
daemon generated nothing (the answer to a request without messages): a
`ProviderProtocolError`, not an empty answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import ollama

from modelyard.backends.engine import FINISH_REASONS, Piece
from modelyard.backends.ollama.tools import ToolCalls
from modelyard_client.errors import ProviderProtocolError, StreamTruncated
from modelyard_client.v1 import common_pb2

# done_reason of the answers to a load and an unload, which generate nothing.
LIFECYCLE_REASONS = frozenset({"load", "unload"})


async def answer_pieces(
    lines: AsyncIterator[ollama.ChatResponse | ollama.GenerateResponse],
    *,
    where: str,
    model_id: str,
    dropped: tuple[str, ...] = (),
) -> AsyncGenerator[Piece, None]:
    """The answer piece by piece; the last has the finish reason, the token counts, the
    tool calls and `dropped` (the parameters left out of the request)."""
    texts = 0
    calls = ToolCalls()
    async for line in lines:
        if isinstance(line, ollama.GenerateResponse):
            text = line.response or ""  # a completion: no message, no tool calls
        else:
            text = (line.message.content if line.message is not None else None) or ""
            if line.message is not None and line.message.tool_calls:
                calls.add(line.message.tool_calls)
        if not line.done:
            if text:
                texts += 1
                yield Piece(text)
            continue
        reason = line.done_reason or "stop"
        if reason in LIFECYCLE_REASONS:
            raise ProviderProtocolError(
                f"{where} answered a generation for '{model_id}' with done_reason "
                f"{reason!r}: nothing was generated"
            )
        called = calls.whole()
        yield Piece(
            text,
            # Ollama ends an answer that called tools with "stop".
            common_pb2.FINISH_REASON_TOOL_CALLS
            if called and reason == "stop"
            else FINISH_REASONS.get(reason, common_pb2.FINISH_REASON_STOP),
            input_tokens=line.prompt_eval_count or 0,
            # A daemon that counts nothing: each streamed line is one token.
            output_tokens=line.eval_count or texts + (1 if text else 0),
            tool_calls=called,
            dropped_params=dropped,
        )
        return
    raise StreamTruncated(
        f"{where} ended the stream for '{model_id}' after {texts} piece(s) without its "
        "done line: the answer is truncated"
    )
