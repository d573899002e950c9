"""Hedged attempts at the edges: both answering at once, a loser that fails to close, a race
cancelled from outside (killing mutmut's survivors in `gateway.hedging.race`); and through a
core, which model hedges, its log line and its retry budget (`GatewayCore._hedged`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

import pytest
from support.scripted_engine import ScriptedEngine

from modelyard.backends.host import BackendHost
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.hedging import Won, race
from modelyard.gateway.settings import GatewaySettings
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2, gateway_pb2, registry_pb2

Change = registry_pb2.ModelChange


class Attempt:
    """An attempt whose first piece comes when `go` is set (or that fails then). Closing it
    (cancelled or `aclose`) takes `cleanup_s` and may fail with `close_error`; `cleaned`
    says the cleanup ran to its end."""

    def __init__(
        self,
        name: str,
        go: asyncio.Event,
        fail: Exception | None = None,
        cleanup_s: float = 0.0,
        close_error: Exception | None = None,
    ) -> None:
        self.name = name
        self.go = go
        self.fail = fail
        self.cleanup_s = cleanup_s
        self.close_error = close_error
        self.cleaned = False

    async def stream(self) -> AsyncGenerator[str, None]:
        try:
            await self.go.wait()
            if self.fail is not None:
                raise self.fail
            yield f"{self.name}:1"
            yield f"{self.name}:2"
        except (asyncio.CancelledError, GeneratorExit):
            if self.cleanup_s:
                await asyncio.sleep(self.cleanup_s)
            self.cleaned = True
            if self.close_error is not None:
                raise self.close_error from None
            raise


async def _rest(stream: AsyncGenerator[str, None]) -> list[str]:
    return [piece async for piece in stream]


async def _race_both_at_once(
    primary: Attempt, hedge: Attempt, go: asyncio.Event
) -> Won[str] | None:
    """Race `primary` against `hedge` started after 10 ms; `go` is set as the hedge starts,
    so both get their first piece (or fail) in the same loop turn."""

    def start_hedge() -> AsyncGenerator[str, None]:
        go.set()
        return hedge.stream()

    return await race(primary.stream(), 0.01, start_hedge)


async def test_when_both_answer_at_once_the_primary_wins_and_the_hedge_is_closed() -> None:
    # Ten races: which of two same-turn tasks a set yields first varies with their addresses.
    for _ in range(10):
        go = asyncio.Event()
        primary, hedge = Attempt("p", go), Attempt("h", go)
        won = await _race_both_at_once(primary, hedge, go)
        assert won is not None
        assert (won.first, won.hedged) == ("p:1", False)
        assert await _rest(won.stream) == ["p:2"]
        assert hedge.cleaned  # its first piece came but it was closed, not left open
        assert not primary.cleaned


async def test_when_the_primary_fails_as_the_hedge_answers_the_hedge_wins() -> None:
    go = asyncio.Event()
    primary = Attempt("p", go, fail=BackendUnavailable("p is down"))
    hedge = Attempt("h", go)
    won = await _race_both_at_once(primary, hedge, go)
    assert won is not None
    assert (won.first, won.hedged) == ("h:1", True)
    assert await _rest(won.stream) == ["h:2"]


async def test_a_primary_that_wins_against_a_waiting_hedge_streams_on_and_closes_the_hedge() -> (
    None
):
    go, never = asyncio.Event(), asyncio.Event()
    primary, hedge = Attempt("p", go), Attempt("h", never)

    def start_hedge() -> AsyncGenerator[str, None]:
        asyncio.get_running_loop().call_later(0.02, go.set)  # the primary answers 20 ms later
        return hedge.stream()

    won = await race(primary.stream(), 0.01, start_hedge)
    assert won is not None and (won.first, won.hedged) == ("p:1", False)
    assert await _rest(won.stream) == ["p:2"]
    assert hedge.cleaned


async def test_a_loser_that_fails_to_close_does_not_fail_the_winner() -> None:
    go = asyncio.Event()
    primary = Attempt("p", go)
    hedge = Attempt("h", go, close_error=RuntimeError("cleanup failed"))
    won = await _race_both_at_once(primary, hedge, go)
    assert won is not None
    assert (won.first, won.hedged) == ("p:1", False)
    assert hedge.cleaned


async def test_a_cancelled_race_returns_only_once_both_attempts_have_closed() -> None:
    never = asyncio.Event()
    primary = Attempt("p", never, cleanup_s=0.0)
    hedge = Attempt("h", never, cleanup_s=0.05)
    started = asyncio.Event()

    def start_hedge() -> AsyncGenerator[str, None]:
        started.set()
        return hedge.stream()

    task = asyncio.ensure_future(race(primary.stream(), 0.01, start_hedge))
    await started.wait()
    await asyncio.sleep(0.01)  # both attempts wait for their first piece
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled()
    assert (primary.cleaned, hedge.cleaned) == (True, True)


# ---- through the core: which model hedges, and the log line ----------------------------

A, B, C = "scripted/a", "scripted/b", "scripted/c"


async def _core(engines: dict[str, ScriptedEngine], hedge_delays: dict[str, float]) -> GatewayCore:
    """A core over one in-process backend per engine, each serving its models."""
    pool = BackendPool()
    view = CatalogView()
    revision = 0
    for endpoint, engine in engines.items():
        host = BackendHost([engine])
        await host.start()
        pool.add_in_process(endpoint, host)
        for entry in engine.models():
            revision += 1
            entry.health = common_pb2.HEALTH_STATUS_HEALTHY
            entry.deployments.add(
                backend="scripted", endpoint=endpoint, health=common_pb2.HEALTH_STATUS_HEALTHY
            )
            view.apply(Change(kind=Change.KIND_UPSERTED, revision=revision, model=entry))
    return GatewayCore(view, pool, settings=GatewaySettings(hedge_delays=hedge_delays))


async def test_a_slow_model_is_hedged_with_the_next_model_of_its_chain_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="modelyard.gateway.core")
    slow = ScriptedEngine((A,), delay_s=2.0)
    fast = ScriptedEngine((B, C))
    core = await _core({"127.0.0.1:1": slow, "127.0.0.1:2": fast}, {A: 0.05})
    request = gateway_pb2.GenerateRequest(model=A, request_id="call-1", fallback_models=[B, C])
    request.input.text = "hi"
    request.params.max_tokens = 8
    answer = await core.generate(request)
    assert (answer.model_id, answer.text) == (B, "hello world")
    assert [model for model, _, _ in fast.calls] == [B]
    hedging = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hedging")]
    assert hedging == ["hedging 'scripted/a' with 'scripted/b' for request call-1"]
    # The hedge is a retry of the upstream, and a request sent to it (the primary the other).
    budgets = core.retry_budgets
    assert budgets.for_model(B).counts(budgets.clock()) == (2, 1)
