"""Each model's first-piece and stall deadlines: where they come from, and the one-handle timer
that enforces them (`gateway/stream_deadlines.py`), and the errors `BackendPool` makes of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest
from support.scripted_engine import ScriptedEngine

from modelyard.backends.engine import Piece
from modelyard.backends.host import BackendHost
from modelyard.config import parse_config
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.deadline import CallDeadline
from modelyard.gateway.stream_deadlines import (
    PieceDeadlines,
    PieceTimeExpired,
    PieceTimer,
    StreamDeadlines,
)
from modelyard_client.errors import DeadlineExceeded, FirstTokenTimeout, StreamStalled
from modelyard_client.v1 import backend_pb2, common_pb2

_CONFIG = """
model_system:
  gateway:
    timeouts: {first_token_timeout_ms: 2000, stall_timeout_ms: 3000}
  backends:
    hosted:
      kind: openai_compat
      endpoint: http://127.0.0.1:9
      model_profiles:
        slow-first: {first_token_timeout_ms: 45000}
        no-stall: {stall_timeout_ms: 0}
        meta-llama/llama-3.1-8b: {first_token_timeout_ms: 0, stall_timeout_ms: 500}
        priced-only: {usd_per_request: 0.01}
"""


def _deadlines(text: str = _CONFIG) -> StreamDeadlines:
    return StreamDeadlines.from_config(parse_config(text))


# ---- the lookup rules ------------------------------------------------------------------


def test_a_model_without_a_profile_gets_the_gateway_timeouts() -> None:
    assert _deadlines().for_model("hosted/other") == PieceDeadlines(2.0, 3.0)
    assert _deadlines().for_model("priced-only") == PieceDeadlines(2.0, 3.0)  # not an id
    assert _deadlines().for_model("hosted/priced-only") == PieceDeadlines(2.0, 3.0)


def test_a_profile_s_own_value_wins_each_deadline_on_its_own() -> None:
    assert _deadlines().for_model("hosted/slow-first") == PieceDeadlines(45.0, 3.0)


def test_zero_in_a_profile_means_none_though_the_gateway_sets_one() -> None:
    assert _deadlines().for_model("hosted/no-stall") == PieceDeadlines(2.0, None)
    # Profiles are keyed by the provider's model name, which may hold '/'.
    assert _deadlines().for_model("hosted/meta-llama/llama-3.1-8b") == PieceDeadlines(None, 0.5)


def test_zero_in_gateway_timeouts_means_none_and_the_defaults_are_30_s() -> None:
    zero = _deadlines(
        "model_system:\n  gateway:\n    timeouts: {first_token_timeout_ms: 0, stall_timeout_ms: 0}"
    )
    assert zero.for_model("local/x") == PieceDeadlines(None, None)
    assert _deadlines("model_system: {}").for_model("local/x") == PieceDeadlines(30.0, 30.0)
    assert StreamDeadlines().for_model("local/x") == PieceDeadlines(None, None)


def test_a_model_s_own_deadline_keeps_its_reason_when_the_call_set_no_deadline() -> None:
    default = CallDeadline.start(None, 60.0)
    own = FirstTokenTimeout("'a/b' sent nothing")
    assert default.exceeded(own) is own
    stalled = StreamStalled("'a/b' stalled")
    assert default.exceeded(stalled) is stalled
    named = default.exceeded(DeadlineExceeded("late"))
    assert type(named) is DeadlineExceeded
    assert named.message.startswith("no answer within the default deadline of 60s")


# ---- the timer -------------------------------------------------------------------------


class _Source:
    """Pieces on demand: `gaps[i]` seconds before piece i; past the end, never."""

    def __init__(self, *gaps: float) -> None:
        self.gaps = list(gaps)
        self.given = 0

    async def read(self) -> int:
        if self.given >= len(self.gaps):
            await asyncio.get_running_loop().create_future()
        await asyncio.sleep(self.gaps[self.given])
        self.given += 1
        return self.given


async def _expiry(timer: PieceTimer, source: _Source, reads: int = 100) -> PieceTimeExpired:
    with pytest.raises(PieceTimeExpired) as info:
        for _ in range(reads):
            await timer.next(source.read)
    timer.close()
    return info.value


async def test_no_first_piece_within_its_deadline_expires_then() -> None:
    started = time.monotonic()
    expired = await _expiry(PieceTimer(5.0, PieceDeadlines(0.1, None)), _Source())
    assert 0.1 <= time.monotonic() - started < 0.3
    assert (expired.which, expired.seconds, expired.pieces) == ("first_piece", 0.1, 0)


async def test_a_gap_over_the_stall_deadline_expires_naming_the_pieces_that_came() -> None:
    started = time.monotonic()
    source = _Source(0.0, 0.0, 0.0)
    expired = await _expiry(PieceTimer(5.0, PieceDeadlines(None, 0.1)), source)
    assert 0.1 <= time.monotonic() - started < 0.3
    assert (expired.which, expired.seconds, expired.pieces) == ("stall", 0.1, 3)


async def test_a_steady_stream_longer_than_the_stall_deadline_runs_to_its_end() -> None:
    # Ten gaps of 0.04 s under a 0.1 s stall deadline: 0.4 s in all, never one gap over.
    timer = PieceTimer(5.0, PieceDeadlines(0.1, 0.1))
    source = _Source(*[0.04] * 10)
    assert [await timer.next(source.read) for _ in range(10)] == list(range(1, 11))
    timer.close()


async def test_a_first_piece_deadline_longer_than_the_stall_deadline_is_the_first_s() -> None:
    # First piece late for a stall, in time for its own deadline; margins wide enough for a
    # loaded two-core machine (a 0.1 s margin was missed under a full suite beside CI).
    timer = PieceTimer(5.0, PieceDeadlines(1.0, 0.15))
    source = _Source(0.3, 0.02)
    assert [await timer.next(source.read) for _ in range(2)] == [1, 2]
    expired = await _expiry(timer, source)
    assert (expired.which, expired.seconds, expired.pieces) == ("stall", 0.15, 2)


async def test_time_the_caller_holds_a_piece_is_not_a_stall() -> None:
    timer = PieceTimer(5.0, PieceDeadlines(None, 0.05))
    source = _Source(0.0, 0.0)
    await timer.next(source.read)
    await asyncio.sleep(0.15)  # the caller is slow: three stall deadlines pass
    assert await timer.next(source.read) == 2
    timer.close()


async def test_the_whole_call_s_deadline_bounds_a_stream_of_prompt_pieces() -> None:
    started = time.monotonic()
    expired = await _expiry(PieceTimer(0.15, PieceDeadlines(1.0, 1.0)), _Source(*[0.02] * 50))
    assert 0.15 <= time.monotonic() - started < 0.35
    assert (expired.which, expired.seconds) == ("call", 0.15)
    assert 5 <= expired.pieces < 8


async def test_the_call_s_deadline_passing_while_the_caller_reads_ends_the_next_wait() -> None:
    timer = PieceTimer(0.05, PieceDeadlines(None, None))
    source = _Source(0.0, 0.0)
    await timer.next(source.read)
    await asyncio.sleep(0.1)
    expired = await _expiry(timer, source)
    assert (expired.which, source.given) == ("call", 1)  # not read again


async def test_someone_else_s_cancel_stays_a_cancel() -> None:
    timer = PieceTimer(5.0, PieceDeadlines(0.05, None))
    task = asyncio.ensure_future(timer.next(_Source().read))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    timer.close()


# ---- BackendPool: the errors, and the engine's generation cancelled --------------------


class _PausingEngine(ScriptedEngine):
    """Sends `before` pieces, then nothing for a minute; `closed` once its generation ends."""

    def __init__(self, before: int) -> None:
        super().__init__(("hosted/m",))
        self.before = before
        self.closed = asyncio.Event()

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        try:
            for _ in range(self.before):
                yield Piece("t;")
            await asyncio.sleep(60)
        finally:
            self.closed.set()


async def _pool_stream(engine: _PausingEngine, deadlines: PieceDeadlines) -> list[str]:
    pool = BackendPool(StreamDeadlines(models={"hosted/m": deadlines}))
    pool.add_in_process("here:1", BackendHost([engine]))
    deployment = common_pb2.Deployment(backend="scripted", endpoint="here:1")
    texts = []
    async for chunk in pool.infer_stream(
        deployment, backend_pb2.InferRequest(model_id="hosted/m"), 5.0
    ):
        texts.append(chunk.text)
    return texts


async def test_the_pool_names_the_model_the_backend_and_the_seconds_of_a_first_token_timeout() -> (
    None
):
    engine = _PausingEngine(before=0)
    with pytest.raises(FirstTokenTimeout) as info:
        await _pool_stream(engine, PieceDeadlines(0.05, None))
    assert info.value.message == (
        "'hosted/m' on backend 'scripted' (in process) sent nothing within its first-token "
        "deadline of 0.05s"
    )
    assert engine.closed.is_set()  # closed before the error reached us


async def test_the_pool_names_the_pieces_that_had_arrived_when_a_stream_stalled() -> None:
    engine = _PausingEngine(before=20)
    with pytest.raises(StreamStalled) as info:
        await _pool_stream(engine, PieceDeadlines(None, 0.05))
    assert info.value.message == (
        "'hosted/m' on backend 'scripted' (in process) stalled: nothing for 0.05s after "
        "20 pieces (its stall deadline)"
    )
    assert engine.closed.is_set()


async def test_the_pool_looks_up_the_deadlines_of_the_model_asked_for() -> None:
    engine = _PausingEngine(before=1)
    pool = BackendPool(StreamDeadlines(models={"hosted/other": PieceDeadlines(0.01, 0.01)}))
    pool.add_in_process("here:1", BackendHost([engine]))
    stream = pool.infer_stream(
        common_pb2.Deployment(backend="scripted", endpoint="here:1"),
        backend_pb2.InferRequest(model_id="hosted/m"),
        0.2,
    )
    with pytest.raises(DeadlineExceeded) as info:  # only the call's deadline applies to it
        async for _ in stream:
            pass
    assert type(info.value) is DeadlineExceeded
    assert info.value.message == "backend 'scripted' (in process) did not finish within 0.2s"
