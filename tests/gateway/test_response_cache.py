"""The response cache's rules, on a `CachedGateway` over a real core in this process.

The core serves two `ScriptedEngine` models through an in-process `BackendHost`;
`engine.calls` counts the calls that reached a model. The store is the
in-memory LRU unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
from support.scripted_engine import ScriptedEngine

from modelyard.backends.engine import Piece
from modelyard.backends.host import BackendHost
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.response_cache import (
    KEY_PREFIX,
    CachedAnswer,
    CachedGateway,
    MemoryAnswerStore,
    ResponseCache,
)
from modelyard.gateway.route_view import RouteView
from modelyard_client.errors import BackendUnavailable, InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2, gateway_pb2, hotswap_pb2, registry_pb2

A, B = "scripted/a", "scripted/b"
ENDPOINT = "127.0.0.1:1"  # never dialled: the pool calls the host in this process
Change = registry_pb2.ModelChange
RouteChange = hotswap_pb2.RouteChange


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _gateway(
    engine: ScriptedEngine,
    *,
    deterministic_only: bool = True,
    store: MemoryAnswerStore | None = None,
    routes: RouteView | None = None,
) -> CachedGateway:
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process(ENDPOINT, host)
    view = CatalogView()
    for revision, entry in enumerate(engine.models(), 1):
        entry.health = common_pb2.HEALTH_STATUS_HEALTHY
        entry.deployments.add(
            backend="scripted", endpoint=ENDPOINT, health=common_pb2.HEALTH_STATUS_HEALTHY
        )
        view.apply(Change(kind=Change.KIND_UPSERTED, revision=revision, model=entry))
    core = GatewayCore(view, pool, routes=routes)
    store = MemoryAnswerStore(100) if store is None else store  # an empty one is falsy
    cache = ResponseCache(store, ttl_s=60, deterministic_only=deterministic_only)
    return CachedGateway(core, cache)


def _engine(**kwargs: Any) -> ScriptedEngine:
    return ScriptedEngine((A, B), **kwargs)


def _request(
    model: str = A, *, temperature: float | None = 0.0, **params: Any
) -> gateway_pb2.GenerateRequest:
    """A deterministic request (temperature 0) unless the arguments say otherwise."""
    request = gateway_pb2.GenerateRequest(model=model, request_id="call-1")
    request.input.text = "hi"
    request.params.max_tokens = 8
    if temperature is not None:  # None: the model's default
        request.params.temperature = temperature
    for name, value in params.items():
        setattr(request.params, name, value)
    return request


async def _chunks(gateway: CachedGateway, request: gateway_pb2.GenerateRequest) -> list[Any]:
    return [c async for c in gateway.generate_stream(request)]


# ---- the key ------------------------------------------------------------------


async def test_the_same_request_with_other_ids_user_and_fallbacks_is_served_from_the_cache() -> (
    None
):
    engine = _engine()
    gateway = await _gateway(engine)
    first = await gateway.generate(_request())
    again = _request()
    again.request_id = "call-2"
    again.user = "someone-else"
    again.fallback_models.append(B)
    second = await gateway.generate(again)
    assert len(engine.calls) == 1
    assert (first.cached, second.cached) == (False, True)
    assert (second.text, second.model_id, second.request_id) == ("hello world", A, "call-2")
    assert second.finish_reason == common_pb2.FINISH_REASON_STOP


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", 0.5), ("top_p", 0.9), ("top_k", 5), ("max_tokens", 9), ("seed", 7)],
)
async def test_another_generation_parameter_is_another_key(field: str, value: float) -> None:
    engine = _engine()
    gateway = await _gateway(engine, deterministic_only=False)
    await gateway.generate(_request())
    answer = await gateway.generate(_request(A, **{field: value}))
    assert not answer.cached
    assert len(engine.calls) == 2


async def test_another_input_or_model_is_another_key() -> None:
    engine = _engine()
    gateway = await _gateway(engine)
    await gateway.generate(_request())
    other_text = _request()
    other_text.input.text = "hi!"
    assert not (await gateway.generate(other_text)).cached
    assert not (await gateway.generate(_request(B))).cached
    assert len(engine.calls) == 3


async def test_max_tokens_left_at_0_is_keyed_as_the_default_it_gets() -> None:
    gateway = await _gateway(_engine())
    cache, core = gateway.cache, gateway.core
    left = cache.key(_request(max_tokens=0), core)
    given = cache.key(_request(max_tokens=core.settings.default_max_tokens), core)
    assert left is not None and given is not None
    assert left == given


def _routes(*routes: hotswap_pb2.Route) -> RouteView:
    view = RouteView()
    view.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=0))
    for revision, route in enumerate(routes, 1):
        view.apply(RouteChange(kind=RouteChange.KIND_UPSERTED, route=route, revision=revision))
    return view


async def test_an_alias_is_keyed_by_the_model_its_route_points_at() -> None:
    routes = _routes(hotswap_pb2.Route(alias="chat", model_id=B))
    gateway = await _gateway(_engine(), routes=routes)
    by_alias = gateway.cache.key(_request("chat"), gateway.core)
    by_id = gateway.cache.key(_request(B), gateway.core)
    assert by_alias is not None and by_id is not None
    assert (by_alias, by_alias.model_id) == (by_id, B)


async def test_an_alias_with_a_split_a_conversation_or_no_model_is_not_cached() -> None:
    split = hotswap_pb2.Route(alias="tested", model_id=A)
    split.split.id = "ab-1"
    split.split.arms.add(name="a", model_id=A, weight=0.5)
    split.split.arms.add(name="b", model_id=B, weight=0.5)
    gateway = await _gateway(_engine(), routes=_routes(split))
    in_conversation = _request()
    in_conversation.conversation_id = "conv-1"
    for request in (_request("tested"), in_conversation, _request("")):
        assert gateway.cache.key(request, gateway.core) is None


# ---- which calls are cached ---------------------------------------------------


@pytest.mark.parametrize(
    ("params", "cached"),
    [
        ({"temperature": 0.7}, False),
        ({"temperature": None}, False),  # the model's default temperature
        ({"temperature": 0.7, "seed": 3}, True),
        ({"temperature": None, "seed": 0}, True),  # a seed set to 0 is still set
    ],
)
async def test_only_temperature_0_or_a_seed_is_cached_by_default(
    params: dict[str, Any], cached: bool
) -> None:
    engine = _engine()
    gateway = await _gateway(engine)
    await gateway.generate(_request(**params))
    assert (await gateway.generate(_request(**params))).cached is cached
    assert len(engine.calls) == (1 if cached else 2)


async def test_with_deterministic_only_off_a_sampled_request_is_cached() -> None:
    engine = _engine()
    gateway = await _gateway(engine, deterministic_only=False)
    await gateway.generate(_request(temperature=0.7))
    assert (await gateway.generate(_request(temperature=0.7))).cached
    assert len(engine.calls) == 1


async def test_no_cache_neither_stores_nor_reads() -> None:
    engine = _engine()
    gateway = await _gateway(engine)
    bypass = _request()
    bypass.no_cache = True
    await gateway.generate(bypass)
    assert not (await gateway.generate(_request())).cached  # the bypass stored nothing
    assert not (await gateway.generate(bypass)).cached  # and reads nothing stored
    assert len(engine.calls) == 3


async def test_an_invalid_request_is_refused_though_its_key_is_stored() -> None:
    gateway = await _gateway(_engine())
    await gateway.generate(_request())
    too_long = _request()
    too_long.request_id = "x" * 129  # not in the key: only validation can refuse it
    with pytest.raises(InvalidRequest, match="request_id"):
        await gateway.generate(too_long)


async def test_a_failed_answer_is_not_stored() -> None:
    engine = _engine(fail_with=BackendUnavailable("down"), fail_after=1)
    gateway = await _gateway(engine)
    for _ in range(2):
        with pytest.raises(Exception, match="down"):
            await gateway.generate(_request())
    engine.fail_with = None
    assert not (await gateway.generate(_request())).cached
    assert len(engine.calls) == 3


async def test_a_fallback_models_answer_is_not_stored_under_the_first_models_key() -> None:
    engine = ScriptedEngine((B,))  # A is in the catalog but no engine serves it
    gateway = await _gateway(engine)
    gateway.core.catalog.apply(
        Change(
            kind=Change.KIND_UPSERTED,
            revision=9,
            model=common_pb2.ModelEntry(
                id=A,
                health=common_pb2.HEALTH_STATUS_HEALTHY,
                deployments=[common_pb2.Deployment(backend="gone", endpoint="127.0.0.1:1")],
            ),
        )
    )
    request = _request(A)
    request.fallback_models.append(B)
    first = await gateway.generate(request)
    second = await gateway.generate(request)
    assert (first.model_id, second.model_id, second.cached) == (B, B, False)
    assert len(engine.calls) == 2


async def test_a_stream_the_caller_closes_early_is_not_stored() -> None:
    engine = _engine()
    gateway = await _gateway(engine)
    stream = gateway.generate_stream(_request())
    assert (await anext(stream)).text == "hello"
    await stream.aclose()
    assert not (await gateway.generate(_request())).cached


async def test_a_hit_for_a_model_the_catalog_no_longer_has_goes_to_the_core() -> None:
    gateway = await _gateway(_engine())
    await gateway.generate(_request())
    gateway.core.catalog.apply(
        Change(kind=Change.KIND_REMOVED, revision=9, model=common_pb2.ModelEntry(id=A))
    )
    with pytest.raises(ModelNotFound):
        await gateway.generate(_request())


async def test_a_new_version_of_the_model_is_another_key() -> None:
    engine = _engine()
    gateway = await _gateway(engine)
    await gateway.generate(_request())
    entry = common_pb2.ModelEntry()
    entry.CopyFrom(gateway.core.catalog.get(A))
    entry.version = "2"
    gateway.core.catalog.apply(Change(kind=Change.KIND_UPSERTED, revision=9, model=entry))
    assert not (await gateway.generate(_request())).cached
    assert (await gateway.generate(_request())).cached
    assert len(engine.calls) == 2


# ---- the replay ---------------------------------------------------------------


async def test_a_hit_replays_the_same_pieces_marked_cached_once_and_costing_nothing() -> None:
    gateway = await _gateway(_engine(input_tokens=5))
    missed = await _chunks(gateway, _request())
    hit = await _chunks(gateway, _request())
    assert [c.text for c in hit] == [c.text for c in missed] == ["hello", " ", "world", ""]
    assert [c.cached for c in hit] == [True, False, False, False]
    assert (hit[0].model_id, hit[0].request_id) == (A, "call-1")
    last = hit[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (last.usage.input_tokens, last.usage.output_tokens, last.usage.cost_usd) == (5, 3, 0)


async def test_a_hit_without_a_request_id_gets_one_of_its_own() -> None:
    gateway = await _gateway(_engine())
    request = _request()
    request.request_id = ""
    first = await gateway.generate(request)
    second = await gateway.generate(request)
    assert second.cached
    assert len(second.request_id) == 32 and second.request_id != first.request_id


def test_a_stored_answer_reads_back_from_its_json_and_a_foreign_value_is_refused() -> None:
    answer = CachedAnswer(A, ("a", "b"), common_pb2.FINISH_REASON_LENGTH, 2, 8)
    assert CachedAnswer.from_json(answer.to_json()) == answer
    for raw in (b"{}", b"[1, 2]", b'["m", [], 1, 0, 0]', b'["m", ["a"], 1, -1, 0]', b"\xff"):
        with pytest.raises(ValueError):
            CachedAnswer.from_json(raw)
    assert KEY_PREFIX == "modelyard:cache:v1:"


# ---- the in-memory store ------------------------------------------------------


def _answer(text: str) -> CachedAnswer:
    return CachedAnswer(A, (text,), common_pb2.FINISH_REASON_STOP, 1, 1)


async def test_the_lru_drops_the_least_recently_used_entry_beyond_its_bound() -> None:
    store = MemoryAnswerStore(max_entries=2)
    await store.put("a", _answer("a"), 60)
    await store.put("b", _answer("b"), 60)
    assert await store.get("a") is not None  # "a" is now the more recently used
    await store.put("c", _answer("c"), 60)
    assert len(store) == 2
    assert await store.get("b") is None
    assert await store.get("a") == _answer("a")
    assert await store.get("c") == _answer("c")


async def test_an_entry_expires_at_its_ttl() -> None:
    clock = FakeClock()
    store = MemoryAnswerStore(max_entries=10, clock=clock)
    await store.put("a", _answer("a"), 10)
    clock.now += 9.999
    assert await store.get("a") == _answer("a")
    clock.now += 0.001
    assert await store.get("a") is None
    assert len(store) == 0  # an expired entry is dropped when it is found


async def test_an_expired_answer_is_asked_of_the_model_again() -> None:
    clock = FakeClock()
    engine = _engine()
    gateway = await _gateway(engine, store=MemoryAnswerStore(10, clock=clock))
    await gateway.generate(_request())
    clock.now += 59
    assert (await gateway.generate(_request())).cached
    clock.now += 1  # the gateway's TTL is 60 s
    assert not (await gateway.generate(_request())).cached
    assert len(engine.calls) == 2


class _SpeakingEngine(ScriptedEngine):
    """Answers with audio beside the text, as a text-to-speech model does."""

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        self.calls.append((model_id, model_input, params))
        audio = common_pb2.Output(audio=common_pb2.Audio(data=b"RIFF", mime_type="audio/wav"))
        yield Piece("", common_pb2.FINISH_REASON_STOP, output=audio, characters=2)


async def test_an_answer_with_audio_is_not_stored() -> None:
    engine = _SpeakingEngine((A, B))
    gateway = await _gateway(engine)
    answers = [await gateway.generate(_request()) for _ in range(2)]
    assert [a.output.audio.data for a in answers] == [b"RIFF", b"RIFF"]
    assert not answers[1].cached and len(engine.calls) == 2
