"""An answer that broke off, continued by a prefill-capable model (`GatewayCore._continued`,
`gateway/continuation.py`): the cases mutation testing found unchecked (docs/testing.md).

Which model of the chain continues (the first after the one that broke off that takes an
assistant prefill, is servable, holds the input, the text sent and what is left of
max_tokens in its window, and did not answer already), what it is sent (the input as chat
messages, the text so far as the assistant's, the request's id and key, the rest of
max_tokens), what is logged, and the cut the caller gets when the continuation fails
partway (every chunk and character that reached it counted). The core runs on a real
`CatalogView`, `BackendPool`, `Balancer` and in-process `BackendHost` serving
`ScriptedEngine`s, as tests/gateway/test_mutants_core.py's does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
from support.scripted_engine import ScriptedEngine

from modelyard.backends.host import BackendHost
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.conversations import Conversations, ConversationStore
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.limits import ModelLimits
from modelyard.gateway.settings import GatewaySettings
from modelyard.model_input import estimate_input_tokens
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Bucket, QuotaConfig, Rates, demands_for
from modelyard_client.errors import BackendUnavailable, StreamTruncated
from modelyard_client.v1 import backend_pb2, common_pb2, gateway_pb2, registry_pb2

Change = registry_pb2.ModelChange
ENDPOINT = "127.0.0.1:1"  # never dialled: the pool calls the host in this process
A, X, B = "scripted/a", "scripted/x", "scripted/b"
PREFILL = common_pb2.CAPABILITY_ASSISTANT_PREFILL
DELIVERED = "one two "  # A's two pieces before it breaks off: 3 tokens, as estimated
A_FAILS = "upstream reset the connection"
CORE_LOG = "modelyard.gateway.core"


class RecordingPool(BackendPool):
    """A `BackendPool` that keeps every backend request it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[backend_pb2.InferRequest] = []

    def infer_stream(
        self,
        deployment: common_pb2.Deployment,
        request: backend_pb2.InferRequest,
        timeout_s: float,
    ) -> AsyncGenerator[backend_pb2.InferChunk, None]:
        self.requests.append(request)
        return super().infer_stream(deployment, request, timeout_s)


def _breaking(model_id: str = A, delay_s: float = 0.0) -> ScriptedEngine:
    """Streams "one ", "two ", then fails: the answer that breaks off."""
    return ScriptedEngine(
        (model_id,),
        pieces=("one ", "two ", "three "),
        fail_with=BackendUnavailable(A_FAILS),
        fail_after=2,
        delay_s=delay_s,
    )


def _continuing(model_id: str = B) -> ScriptedEngine:
    return ScriptedEngine((model_id,), pieces=("three ", "four"))


def _entry(
    engine: ScriptedEngine,
    *,
    prefill: bool = True,
    window: int | None = None,
    health: common_pb2.HealthStatus.ValueType = common_pb2.HEALTH_STATUS_HEALTHY,
) -> common_pb2.ModelEntry:
    entry = engine.models()[0]
    if prefill:
        entry.capabilities.append(PREFILL)
    if window is not None:
        entry.context_window = window
    entry.health = health
    entry.deployments.append(
        common_pb2.Deployment(
            backend="scripted", endpoint=ENDPOINT, health=common_pb2.HEALTH_STATUS_HEALTHY
        )
    )
    return entry


async def _core(
    served: list[tuple[ScriptedEngine, common_pb2.ModelEntry]],
    *,
    settings: GatewaySettings | None = None,
    limits: ModelLimits | None = None,
    conversations: Conversations | None = None,
) -> tuple[GatewayCore, RecordingPool]:
    host = BackendHost([engine for engine, _ in served])
    await host.start()
    pool = RecordingPool()
    pool.add_in_process(ENDPOINT, host)
    view = CatalogView()
    for revision, (_, entry) in enumerate(served, start=1):
        view.apply(Change(kind=Change.KIND_UPSERTED, revision=revision, model=entry))
    core = GatewayCore(view, pool, limits, settings=settings, conversations=conversations)
    return core, pool


def _request(*fallbacks: str, max_tokens: int = 20) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=A, fallback_models=fallbacks, request_id="req-1")
    request.input.text = "Count."
    request.params.max_tokens = max_tokens
    return request


async def _texts(core: GatewayCore, request: gateway_pb2.GenerateRequest) -> list[str]:
    return [chunk.text async for chunk in core.generate_stream(request)]


async def _cut(core: GatewayCore, request: gateway_pb2.GenerateRequest) -> StreamTruncated:
    with pytest.raises(StreamTruncated) as info:
        await _texts(core, request)
    return info.value


def _requests_bucket(
    entry: common_pb2.ModelEntry, api_key: str | None, quotas: QuotaConfig
) -> Bucket:
    """The requests-per-minute bucket of `api_key`'s (None: the anonymous callers') quota."""
    (bucket,) = [
        d.bucket for d in demands_for(entry, api_key, 1, quotas) if d.bucket.unit == "requests"
    ]
    assert bucket.scope.kind == "key"
    return bucket


def _sent_as_prefill(engine: ScriptedEngine) -> list[tuple[str, str]]:
    """The messages of the one call `engine` had, as (role, content)."""
    [(_, model_input, params)] = engine.calls
    assert params.continue_final_message
    return [(m.role, m.content) for m in model_input.chat.messages]


def test_the_delivered_text_is_three_tokens() -> None:
    assert estimate_input_tokens(common_pb2.Input(text=DELIVERED)) == 3  # what the tests count


# --- what the continuing model is sent --------------------------------------------------


async def test_the_continuation_gets_the_input_the_text_so_far_and_the_rest_of_max_tokens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = _breaking(), _continuing()
    core, pool = await _core([(a, _entry(a)), (b, _entry(b))])
    with caplog.at_level(logging.WARNING, logger=CORE_LOG):
        texts = await _texts(core, _request(B))
    assert texts == ["one ", "two ", "three ", "four", ""]
    assert _sent_as_prefill(b) == [("user", "Count."), ("assistant", DELIVERED)]
    [(_, _, params)] = b.calls
    assert params.max_tokens == 17  # 20, less the 3 tokens delivered
    assert [(r.model_id, r.request_id) for r in pool.requests] == [(A, "req-1"), (B, "req-1")]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            CORE_LOG,
            logging.WARNING,
            f"the answer of '{A}' for request req-1 broke off after 2 chunks ({A_FAILS}); "
            f"continuing it on '{B}' from the 8 characters delivered",
        )
    ]


async def test_without_max_tokens_the_continuation_gets_the_default_less_the_text() -> None:
    a, b = _breaking(), _continuing()
    core, _ = await _core([(a, _entry(a)), (b, _entry(b))], settings=GatewaySettings())
    assert GatewaySettings().default_max_tokens == 256
    await _texts(core, _request(B, max_tokens=0))
    [(_, _, params)] = b.calls
    assert params.max_tokens == 253


async def test_one_token_left_of_max_tokens_is_still_continued() -> None:
    a, b = _breaking(), _continuing()
    core, _ = await _core([(a, _entry(a)), (b, _entry(b))])
    texts = await _texts(core, _request(B, max_tokens=4))
    assert texts == ["one ", "two ", "three ", "four", ""]
    [(_, _, params)] = b.calls
    assert params.max_tokens == 1


async def test_no_token_left_of_max_tokens_leaves_the_cut() -> None:
    a, b = _breaking(), _continuing()
    core, _ = await _core([(a, _entry(a)), (b, _entry(b))])
    cut = await _cut(core, _request(B, max_tokens=3))
    assert cut.message == (
        f"the answer of '{A}' was cut short after 2 chunks (8 characters) had reached the "
        f"caller: {A_FAILS}"
    )
    assert b.calls == []


async def test_a_chat_input_is_continued_with_its_messages_then_the_text_so_far() -> None:
    a, b = _breaking(), _continuing()
    core, _ = await _core([(a, _entry(a)), (b, _entry(b))])
    request = _request(B)
    request.input.chat.messages.add(role="system", content="Be brief.")
    request.input.chat.messages.add(role="user", content="Count.")
    texts = await _texts(core, request)
    assert texts == ["one ", "two ", "three ", "four", ""]
    assert _sent_as_prefill(b) == [
        ("system", "Be brief."),
        ("user", "Count."),
        ("assistant", DELIVERED),
    ]


async def test_the_continuation_draws_on_the_callers_key_not_the_anonymous_budget() -> None:
    a, b = _breaking(), _continuing()
    quotas = QuotaConfig(per_key=Rates(requests_per_minute=6))
    store = LocalBucketStore()
    entry_a, entry_b = _entry(a), _entry(b)
    core, _ = await _core([(a, entry_a), (b, entry_b)], limits=ModelLimits(quotas, store))
    texts = [c.text async for c in core.generate_stream(_request(B), api_key="key-1")]
    assert texts == ["one ", "two ", "three ", "four", ""]

    assert store.level(_requests_bucket(entry_b, None, quotas)) == 6.0  # never drawn on
    key_level = store.level(_requests_bucket(entry_b, "key-1", quotas))
    assert 4.0 <= key_level < 4.5  # A's request and B's, and 0.1 a second refilled


# --- which model continues -------------------------------------------------------------


async def test_the_first_capable_model_after_the_one_that_broke_off_continues() -> None:
    a, x, b = _breaking(), _continuing(X), _continuing()
    core, _ = await _core([(a, _entry(a)), (x, _entry(x)), (b, _entry(b))])
    texts = await _texts(core, _request(X, B))
    assert texts == ["one ", "two ", "three ", "four", ""]
    assert (len(x.calls), len(b.calls)) == (1, 0)


async def test_models_that_cannot_continue_are_passed_over_for_one_that_can() -> None:
    """Unknown to the catalog, unservable, without the capability: each passed over in turn."""
    a, sick, plain, b = _breaking(), _continuing("scripted/sick"), _continuing(X), _continuing()
    core, _ = await _core(
        [
            (a, _entry(a)),
            (sick, _entry(sick, health=common_pb2.HEALTH_STATUS_UNHEALTHY)),
            (plain, _entry(plain, prefill=False)),
            (b, _entry(b)),
        ]
    )
    texts = await _texts(core, _request("scripted/unknown", "scripted/sick", X, B))
    assert texts == ["one ", "two ", "three ", "four", ""]
    assert (sick.calls, plain.calls, len(b.calls)) == ([], [], 1)


def _needed(max_tokens: int) -> int:
    """What a continuation of `_request`'s answer must fit: its input as chat (the question,
    the text delivered) and what is left of `max_tokens`."""
    chat = common_pb2.Input()
    chat.chat.messages.add(role="user", content="Count.")
    chat.chat.messages.add(role="assistant", content=DELIVERED)
    return estimate_input_tokens(chat) + max_tokens - 3


async def test_a_window_too_small_by_one_token_is_passed_over_and_an_exact_one_continues() -> None:
    needed = _needed(20)
    a, small, exact = _breaking(), _continuing(X), _continuing()
    core, _ = await _core(
        [
            (a, _entry(a)),
            (small, _entry(small, window=needed - 1)),
            (exact, _entry(exact, window=needed)),
        ]
    )
    texts = await _texts(core, _request(X, B))
    assert texts == ["one ", "two ", "three ", "four", ""]
    assert (small.calls, len(exact.calls)) == ([], 1)


async def test_a_hedge_that_answered_and_broke_off_is_not_asked_to_continue_itself() -> None:
    """A is hedged by X after 50 ms; X answers first and breaks off: B continues, not X."""
    slow_a = ScriptedEngine((A,), pieces=("late",), delay_s=5.0)
    x, b = _breaking(X), _continuing()
    settings = GatewaySettings(hedge_delays={A: 0.05})
    core, _ = await _core(
        [(slow_a, _entry(slow_a)), (x, _entry(x)), (b, _entry(b))], settings=settings
    )
    texts = await _texts(core, _request(X, B))
    assert texts == ["one ", "two ", "three ", "four", ""]
    assert (len(x.calls), len(b.calls)) == (1, 1)


async def test_a_hedge_draws_on_the_callers_key() -> None:
    slow_a = ScriptedEngine((A,), pieces=("late",), delay_s=5.0)
    x = ScriptedEngine((X,), pieces=("quick",))
    quotas = QuotaConfig(per_key=Rates(requests_per_minute=6))
    store = LocalBucketStore()
    entry_x = _entry(x)
    core, _ = await _core(
        [(slow_a, _entry(slow_a)), (x, entry_x)],
        settings=GatewaySettings(hedge_delays={A: 0.05}),
        limits=ModelLimits(quotas, store),
    )
    texts = [c.text async for c in core.generate_stream(_request(X), api_key="key-1")]
    assert texts == ["quick", ""]

    assert store.level(_requests_bucket(entry_x, None, quotas)) == 6.0  # never drawn on
    key_level = store.level(_requests_bucket(entry_x, "key-1", quotas))
    assert 4.0 <= key_level < 4.5  # A's request and X's, and 0.1 a second refilled


# --- a continuation that fails ---------------------------------------------------------


async def test_a_continuation_failing_partway_leaves_a_cut_counting_all_that_was_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = _breaking()
    b = ScriptedEngine(
        (B,),
        pieces=("three ", "four ", "five"),
        fail_with=BackendUnavailable("B went away"),
        fail_after=3,
    )
    core, _ = await _core([(a, _entry(a)), (b, _entry(b))])
    with caplog.at_level(logging.WARNING, logger=CORE_LOG):
        cut = await _cut(core, _request(B))
    # 2 chunks and 8 characters of A's, 3 and 15 of B's.
    assert cut.message == (
        f"the answer of '{A}' was cut short after 5 chunks (23 characters) had reached the "
        f"caller: {A_FAILS}"
    )
    assert isinstance(cut.__cause__, BackendUnavailable)
    assert cut.__cause__.message == A_FAILS
    assert [r.getMessage() for r in caplog.records][1:] == [
        f"continuing request req-1 on '{B}' failed after 3 chunks: B went away"
    ]


async def test_a_continuation_failing_before_its_first_chunk_leaves_the_original_cut() -> None:
    a = _breaking()
    b = ScriptedEngine((B,), pieces=("three ",), fail_with=BackendUnavailable("B went away"))
    core, _ = await _core([(a, _entry(a)), (b, _entry(b))])
    cut = await _cut(core, _request(B))
    assert cut.message == (
        f"the answer of '{A}' was cut short after 2 chunks (8 characters) had reached the "
        f"caller: {A_FAILS}"
    )


# --- a conversation's turn ---------------------------------------------------------------


async def test_a_continued_conversation_turn_is_stored_whole(tmp_path: Path) -> None:
    a, b = _breaking(), _continuing()
    conversations = Conversations(ConversationStore(tmp_path / "c.sqlite3"))
    core, _ = await _core([(a, _entry(a)), (b, _entry(b))], conversations=conversations)
    request = _request(B)
    request.conversation_id = "c1"
    texts = await _texts(core, request)
    assert texts == ["one ", "two ", "three ", "four", ""]
    assert _sent_as_prefill(b) == [("user", "Count."), ("assistant", DELIVERED)]
    later = _request()
    later.conversation_id = "c1"
    later.input.text = "Again."
    history = conversations.with_history(later, _entry(b), 20).request
    assert [(m.role, m.content) for m in history.input.chat.messages] == [
        ("user", "Count."),
        ("assistant", "one two three four"),
        ("user", "Again."),
    ]
    conversations.close()
