"""Swaps on a running stack: no request cut or failed while an alias moves, and every refusal.

The stack serves registry, hot-swap, gateway and an openai_compat backend in
front of a fake OpenAI upstream (`FakeUpstream`, following OpenAI's streamed
chat completions) serving ``model-a`` and ``model-b``; each answer names the
model that wrote it in every piece, so a stream served by two models would show.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.assembly import Stack
from modelyard.config import ModelyardConfig, parse_config
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    hotswap_pb2_grpc,
)

ROLES = ("registry", "hotswap", "gateway", "backend-openai-compat")
A, B = "custom/model-a", "custom/model-b"
ALIAS = "chat-default"
Status = hotswap_pb2.SwapStatus
_AFTER_SWITCH = (Status.PHASE_SWITCHED, Status.PHASE_DRAINING, Status.PHASE_DONE)
_ORDER = [
    Status.PHASE_PREPARING,
    Status.PHASE_WARMING,
    Status.PHASE_VALIDATING,
    Status.PHASE_SWITCHED,
    Status.PHASE_DRAINING,
    Status.PHASE_DONE,
]


def _phases(statuses: list[Status]) -> list[int]:
    """The phases seen, each once (the Swap answer and the watch's first may repeat one)."""
    phases: list[int] = []
    for status in statuses:
        if not phases or phases[-1] != status.phase:
            phases.append(status.phase)
    return phases


def _config(url: str, hot_swap: str = "") -> ModelyardConfig:
    return parse_config(
        f"""
model_system:
  hot_swap: {{grace_period_ms: 200, validation_timeout_ms: 3000, routes: {{{ALIAS}: {A}}}
              {hot_swap}}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{url}"}}
"""
    )


async def _stack(make_stack: StackFactory, upstream: FakeUpstream, hot_swap: str = "") -> Stack:
    return await make_stack(roles=ROLES, config=_config(upstream.url, hot_swap))


def _request() -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=ALIAS)
    request.input.text = "hi"
    request.params.max_tokens = 8
    return request


def _answer_of(model_id: str) -> str:
    return f"{model_id.split('/', 1)[1]};" * 3  # what the fake writes for that model


async def _swap(
    stub: hotswap_pb2_grpc.HotSwapServiceAsyncStub, target: str, **fields: object
) -> list[Status]:
    """Swap ALIAS to `target`; every status WatchSwap reports until the swap ends."""
    first = await stub.Swap(
        hotswap_pb2.SwapRequest(alias=ALIAS, target_model_id=target, **fields),  # type: ignore[arg-type]
        timeout=5,
    )
    seen = [
        s
        async for s in stub.WatchSwap(hotswap_pb2.GetSwapRequest(swap_id=first.swap_id), timeout=30)
    ]
    return [first, *seen]


@dataclass
class Outcome:
    started: float
    model_id: str
    text: str
    finish: int
    error: str = ""
    ended: float = field(default_factory=time.monotonic)


async def _load(
    stub: gateway_pb2_grpc.GatewayServiceAsyncStub,
    streamed: bool,
    stop: asyncio.Event,
    out: list[Outcome],
) -> None:
    request = _request()
    while not stop.is_set():
        started = time.monotonic()
        try:
            if streamed:
                chunks = [c async for c in stub.GenerateStream(request, timeout=10)]
                text = "".join(c.text for c in chunks)
                out.append(Outcome(started, chunks[0].model_id, text, chunks[-1].finish_reason))
            else:
                r = await stub.Generate(request, timeout=10)
                out.append(Outcome(started, r.model_id, r.text, r.finish_reason))
        except grpc.aio.AioRpcError as exc:
            out.append(Outcome(started, "", "", 0, f"{exc.code().name}: {exc.details()}"))


def _served_whole(outcome: Outcome) -> bool:
    return (
        not outcome.error
        and outcome.finish == common_pb2.FINISH_REASON_STOP
        and outcome.text == _answer_of(outcome.model_id)
    )


async def test_swapping_back_and_forth_under_load_fails_no_request(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    switches: list[tuple[float, str]] = []
    asked: list[float] = []
    async with (
        grpc.aio.insecure_channel(stack.address) as load_channel,
        grpc.aio.insecure_channel(stack.address) as control,
    ):
        gateway = gateway_pb2_grpc.GatewayServiceStub(load_channel)
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(control)
        workers = [
            asyncio.create_task(_load(gateway, streamed=i % 2 == 0, stop=stop, out=outcomes))
            for i in range(32)
        ]
        began = time.monotonic()
        await asyncio.sleep(1.0)
        for target in (B, A, B, A):
            asked.append(time.monotonic())  # no later than the switch
            statuses = await _swap(hotswap, target)
            assert [s.phase for s in statuses][-1] == Status.PHASE_DONE, statuses[-1]
            # The watch may begin after SWITCHED (the fake answers in ms): DRAINING
            # comes after the switch all the same.
            seen = next(s for s in statuses if s.phase in _AFTER_SWITCH)
            assert seen.to_model_id == target
            switches.append((time.monotonic(), target))  # no earlier than the switch
            # A second after the 2 s settle: calls begun then must have ended before the
            # next swap, also when the whole suite's heap makes a collection pause the loop.
            await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*workers)
        elapsed = time.monotonic() - began

    failed = [o for o in outcomes if not _served_whole(o)]
    assert failed == []  # every request answered whole, each by one model throughout
    rate = len(outcomes) / elapsed
    print(f"\n{len(outcomes)} requests in {elapsed:.1f}s ({rate:.0f}/s) across 4 swaps")
    assert rate >= 200
    # Every request made 2 s after a switch (and before the next) took the target.
    for (at, target), next_asked in zip(switches, [*asked[1:], float("inf")], strict=True):
        # Begun 2 s after the switch and ended before the next was asked for: the
        # gateway resolved the alias in between (a call begun just before the next
        # swap may reach the gateway after it).
        late = [o.model_id for o in outcomes if o.started >= at + 2.0 and o.ended < next_asked]
        assert late and set(late) == {target}
    assert {o.model_id for o in outcomes if o.ended < asked[0]} == {A}


async def test_a_swap_whose_validation_fails_leaves_the_old_model_serving(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.echo_model(unfinished=frozenset({"model-b"}))  # B never finishes an answer
    stack = await _stack(make_stack, upstream)
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        workers = [
            asyncio.create_task(_load(gateway, i % 2 == 0, stop, outcomes)) for i in range(8)
        ]
        statuses = await _swap(hotswap_pb2_grpc.HotSwapServiceStub(channel), B)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*workers)
        route = await hotswap_pb2_grpc.HotSwapServiceStub(channel).GetRoute(
            hotswap_pb2.GetRouteRequest(alias=ALIAS), timeout=5
        )
    phases = _phases(statuses)
    assert phases[-1] == Status.PHASE_FAILED
    assert phases[:-1] in ([Status.PHASE_PREPARING], [Status.PHASE_PREPARING, Status.PHASE_WARMING])
    assert statuses[-1].error == (
        "warming: upstream 'custom' ended the stream for 'custom/model-b' after 3 piece(s) "
        "without a finish_reason: the answer is truncated"
    )
    assert route.model_id == A
    assert outcomes and all(_served_whole(o) and o.model_id == A for o in outcomes)


async def test_a_rollback_puts_the_previous_model_back_within_2s(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        done = (await _swap(hotswap, B))[-1]
        assert done.phase == Status.PHASE_DONE
        assert done.warm_ms > 0
        rolled = await hotswap.Rollback(
            hotswap_pb2.RollbackRequest(swap_id=done.swap_id), timeout=5
        )
        asked = time.monotonic()
        assert rolled.phase == Status.PHASE_ROLLED_BACK
        assert rolled.error == f"'{A}' serves alias '{ALIAS}' again"
        while (await gateway.Generate(_request(), timeout=5)).model_id != A:
            assert time.monotonic() - asked < 2.0
            await asyncio.sleep(0.05)
        again = await hotswap.GetSwap(hotswap_pb2.GetSwapRequest(swap_id=done.swap_id), timeout=5)
        assert again.phase == Status.PHASE_ROLLED_BACK
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await hotswap.Rollback(hotswap_pb2.RollbackRequest(swap_id=done.swap_id), timeout=5)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert info.value.details() == (
            f"swap {done.swap_id} has ended rolled_back: nothing to roll back"
        )


async def _refusal(
    stub: hotswap_pb2_grpc.HotSwapServiceAsyncStub, target: str, **fields: object
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Swap(
            hotswap_pb2.SwapRequest(target_model_id=target, **{"alias": ALIAS, **fields}),  # type: ignore[arg-type]
            timeout=5,
        )
    return info.value


async def test_every_bad_swap_is_refused_naming_the_problem_and_the_route_stays(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.echo_model(piece_delay_s=0.5)  # validation takes 1.5 s: a swap stays running
    stack = await _stack(make_stack, upstream)
    assert stack.catalog is not None
    embedder = common_pb2.ModelEntry(
        id="custom/embedder", provider="custom", capabilities=[common_pb2.CAPABILITY_EMBEDDING]
    )
    stack.catalog.register(embedder, upsert=False)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        await asyncio.sleep(0.3)  # the catalog copy hears of the embedder
        cases = [
            (
                await _refusal(stub, "custom/nope"),
                "NOT_FOUND",
                "model 'custom/nope' is not in the catalog",
            ),
            (
                await _refusal(stub, A),
                "FAILED_PRECONDITION",
                f"alias '{ALIAS}' is already served by '{A}'",
            ),
            (
                await _refusal(stub, B, alias="a/b"),
                "INVALID_ARGUMENT",
                "the alias 'a/b' is not 1-63 characters of a-z 0-9 . _ -, "
                "starting with a letter or digit",
            ),
            (
                await _refusal(stub, B, validation_prompts=["x"] * 17),
                "INVALID_ARGUMENT",
                "validation_prompts has 17 entries; the limit is 16",
            ),
        ]
        entry_a = stack.catalog.get(A)
        lacking = ", ".join(
            common_pb2.Capability.Name(c).removeprefix("CAPABILITY_").lower()
            for c in sorted(set(entry_a.capabilities))
        )
        cases.append(
            (
                await _refusal(stub, "custom/embedder"),
                "FAILED_PRECONDITION",
                f"'custom/embedder' lacks what alias '{ALIAS}' serves with '{A}': {lacking}",
            )
        )
        running = await stub.Swap(
            hotswap_pb2.SwapRequest(alias=ALIAS, target_model_id=B), timeout=5
        )
        second = await _refusal(stub, B)
        route = await stub.GetRoute(hotswap_pb2.GetRouteRequest(alias=ALIAS), timeout=5)
        await stub.Rollback(hotswap_pb2.RollbackRequest(swap_id=running.swap_id), timeout=5)
    for refused, code, message in cases:
        assert (refused.code().name, refused.details()) == (code, message)
    assert second.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (second.details() or "").startswith(
        f"alias '{ALIAS}' has swap {running.swap_id} running ("
    )
    assert route.model_id == A


async def test_swaps_turned_off_are_refused(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream, hot_swap=", enabled: false")
    async with grpc.aio.insecure_channel(stack.address) as channel:
        refused = await _refusal(hotswap_pb2_grpc.HotSwapServiceStub(channel), B)
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.details() == "swaps are turned off (hot_swap.enabled: false)"


async def test_a_swap_to_a_new_alias_creates_its_route_after_validation(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.echo_model(piece_delay_s=0.3)  # warming takes ~0.9 s: the watch sees it
    stack = await _stack(make_stack, upstream)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        first = await stub.Swap(
            hotswap_pb2.SwapRequest(alias="fresh", target_model_id=B, grace_period_ms=1), timeout=5
        )
        assert (first.from_model_id, first.phase) == ("", Status.PHASE_PREPARING)
        watched = [
            s
            async for s in stub.WatchSwap(
                hotswap_pb2.GetSwapRequest(swap_id=first.swap_id), timeout=10
            )
        ]
        assert _phases([first, *watched]) == _ORDER
        route = await stub.GetRoute(hotswap_pb2.GetRouteRequest(alias="fresh"), timeout=5)
        assert route.model_id == B
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetSwap(hotswap_pb2.GetSwapRequest(swap_id="nope"), timeout=5)
        assert (info.value.code(), info.value.details()) == (
            grpc.StatusCode.NOT_FOUND,
            "no swap 'nope'",
        )


async def test_list_swaps_shows_a_swap_while_it_prepares_and_keeps_it_once_ended(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.echo_model(piece_delay_s=0.3)  # warming takes ~0.9 s
    stack = await _stack(make_stack, upstream)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        started = await stub.Swap(
            hotswap_pb2.SwapRequest(alias=ALIAS, target_model_id=B, grace_period_ms=1), timeout=5
        )
        running = await stub.ListSwaps(hotswap_pb2.ListSwapsRequest(running_only=True), timeout=5)
        assert [s.swap_id for s in running.swaps] == [started.swap_id]
        assert running.swaps[0].phase in (Status.PHASE_PREPARING, Status.PHASE_WARMING)
        async for _ in stub.WatchSwap(
            hotswap_pb2.GetSwapRequest(swap_id=started.swap_id), timeout=10
        ):
            pass  # until it ends
        listed = await stub.ListSwaps(hotswap_pb2.ListSwapsRequest(), timeout=5)
        assert [(s.swap_id, s.phase) for s in listed.swaps] == [
            (started.swap_id, Status.PHASE_DONE)
        ]
        assert not (
            await stub.ListSwaps(hotswap_pb2.ListSwapsRequest(running_only=True), timeout=5)
        ).swaps
        other = await stub.ListSwaps(hotswap_pb2.ListSwapsRequest(alias="elsewhere"), timeout=5)
        assert not other.swaps
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListSwaps(hotswap_pb2.ListSwapsRequest(limit=5000), timeout=5)
        assert (refused.value.code(), refused.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "limit 5000 is over 1000: ask for fewer",
        )
