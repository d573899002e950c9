"""`modelyard routes`, `swap`, `swap-status`, `swaps` and `rollback` against a real in-process
stack.

Each command is `cli.main` in a thread: its calls are blocking gRPC, and the
stack serves on this test's event loop. A canary swap's steps are judged on
outcomes the test reports to the hot-swap service itself (`ReportOutcomes`,
as a gateway would), so what each step decides does not hang on the gateway.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard import cli
from modelyard.assembly import Stack
from modelyard.config import default_config
from modelyard.config.schema import CanaryConfig, HotSwapConfig, ModelyardConfig
from modelyard_client import remote
from modelyard_client.v1 import hotswap_pb2, hotswap_pb2_grpc, selector_pb2

ALIAS = "chat-default"


def _config(
    canary: CanaryConfig | None = None, rollback_on_failure: bool = True
) -> ModelyardConfig:
    # Built directly: the file's check wants each route's backend configured, and
    # the scripted engine is a test's, not the file's.
    hot_swap = HotSwapConfig(
        routes={ALIAS: "scripted/echo"},
        task_routes={"code": "scripted/other"},
        grace_period_ms=50,
        canary=canary or CanaryConfig(),
        rollback_on_failure=rollback_on_failure,
    )
    return dataclasses.replace(default_config({}), hot_swap=hot_swap)


async def _stack(
    make_stack: StackFactory, delay_s: float = 0.0, config: ModelyardConfig | None = None
) -> Stack:
    # `delay_s` per streamed piece: the target's first answer (WARMING) lasts long
    # enough for the command to be watching before it ends.
    engine = ScriptedEngine(("scripted/echo", "scripted/other"), delay_s=delay_s)
    return await make_stack(
        roles=("registry", "hotswap", "gateway"), engines=[engine], config=config or _config()
    )


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def _route(
    address: str, task_type: selector_pb2.TaskType.ValueType | None = None
) -> hotswap_pb2.Route:
    """ALIAS's route, or `task_type`'s."""
    request = hotswap_pb2.GetRouteRequest(task_type=task_type) if task_type else None
    async with grpc.aio.insecure_channel(address) as channel:
        route: hotswap_pb2.Route = await hotswap_pb2_grpc.HotSwapServiceStub(channel).GetRoute(
            request or hotswap_pb2.GetRouteRequest(alias=ALIAS), timeout=10
        )
        return route


async def _swap_status(address: str, swap_id: str) -> hotswap_pb2.SwapStatus:
    async with grpc.aio.insecure_channel(address) as channel:
        status: hotswap_pb2.SwapStatus = await hotswap_pb2_grpc.HotSwapServiceStub(channel).GetSwap(
            hotswap_pb2.GetSwapRequest(swap_id=swap_id), timeout=10
        )
        return status


def _swap_id(first_line: str) -> str:
    """The id in ``swap ID: alias ...``."""
    assert first_line.startswith("swap ")
    return first_line.removeprefix("swap ").split(":", 1)[0]


async def _swap_done(stack: Stack, capsys: pytest.CaptureFixture[str]) -> str:
    """Swap ALIAS to scripted/other, to the end; the swap's id."""
    code = await _cli("swap", ALIAS, "scripted/other", "--address", stack.address)
    assert code == 0
    return _swap_id(capsys.readouterr().out.splitlines()[0])


async def test_routes_lists_every_route(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack)
    assert await _cli("routes", "--address", stack.address) == 0
    alias = await _route(stack.address)
    code = await _route(stack.address, selector_pb2.TASK_TYPE_CODE)
    assert capsys.readouterr().out.splitlines() == [
        f"{ALIAS}\tscripted/echo\trev={alias.revision}",
        f"task:code\tscripted/other\trev={code.revision}",
    ]
    assert sorted([alias.revision, code.revision]) == [1, 2]


async def test_routes_says_when_there_are_none(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await make_stack(roles=("registry", "hotswap", "gateway"), engines=[ScriptedEngine()])
    assert await _cli("routes", "--address", stack.address) == 0
    assert capsys.readouterr().out.splitlines() == ["no routes"]


async def test_swap_prints_each_phase_and_moves_the_route(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, delay_s=0.2)
    argv = ["swap", ALIAS, "scripted/other", "--grace-ms", "50", "--prompt", "Say OK."]
    code = await _cli(*argv, "--prompt", "Say it again.", "--address", stack.address)
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    lines = captured.out.splitlines()
    swap_id = _swap_id(lines[0])
    status = await _swap_status(stack.address, swap_id)
    warm = f"{status.warm_ms:.0f}"
    head = f"swap {swap_id}: alias '{ALIAS}' scripted/echo → scripted/other"
    assert lines == [
        f"{head}, preparing",
        "preparing → warming",
        f"warming → validating (warm {warm} ms)",
        "validating → switched",
        "switched → draining",
        "draining → done",
        f"{head}, done (warm {warm} ms)",
    ]
    assert (await _route(stack.address)).model_id == "scripted/other"

    assert await _cli("swap-status", swap_id, "--address", stack.address) == 0
    assert capsys.readouterr().out.splitlines() == [f"{head}, done (warm {warm} ms)"]


async def test_swap_to_an_unknown_model_is_refused(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack)
    assert await _cli("swap", ALIAS, "scripted/nope", "--address", stack.address) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "modelyard: model 'scripted/nope' is not in the catalog [NOT_FOUND]"
    ]
    assert (await _route(stack.address)).model_id == "scripted/echo"


async def test_swap_that_fails_validation_exits_1_naming_why(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, delay_s=0.2)
    argv = ["swap", ALIAS, "scripted/other", "--validation-timeout-ms", "100"]
    assert await _cli(*argv, "--address", stack.address) == 1
    lines = capsys.readouterr().out.splitlines()
    swap_id = _swap_id(lines[0])
    head = f"swap {swap_id}: alias '{ALIAS}' scripted/echo → scripted/other"
    assert lines == [
        f"{head}, preparing",
        "preparing → warming",
        "warming → failed",
        f"{head}, failed: warming: 'scripted/other' did not answer a validation prompt within 0.1s",
    ]
    assert (await _route(stack.address)).model_id == "scripted/echo"


async def test_ctrl_c_stops_following_but_not_the_swap(
    make_stack: StackFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = await _stack(make_stack)
    watched = remote.watch_swap

    def interrupted(
        channel: grpc.Channel, swap_id: str, timeout_s: float | None = None
    ) -> Iterator[hotswap_pb2.SwapStatus]:
        for status in watched(channel, swap_id, timeout_s):
            yield status
            raise KeyboardInterrupt  # Ctrl-C after the first status

    monkeypatch.setattr(remote, "watch_swap", interrupted)
    assert await _cli("swap", ALIAS, "scripted/other", "--address", stack.address) == 130
    captured = capsys.readouterr()
    swap_id = _swap_id(captured.out.splitlines()[0])
    assert captured.err.splitlines() == [
        f"modelyard: stopped following swap {swap_id}; it goes on "
        f"(modelyard swap-status {swap_id}); to undo it: modelyard rollback {swap_id}"
    ]
    for _ in range(200):
        status = await _swap_status(stack.address, swap_id)
        if status.phase == hotswap_pb2.SwapStatus.PHASE_DONE:
            break
        await asyncio.sleep(0.02)
    assert status.phase == hotswap_pb2.SwapStatus.PHASE_DONE
    assert (await _route(stack.address)).model_id == "scripted/other"


async def test_rollback_puts_the_previous_model_back(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack)
    swap_id = await _swap_done(stack, capsys)
    warm = f"{(await _swap_status(stack.address, swap_id)).warm_ms:.0f}"
    assert await _cli("rollback", swap_id, "--address", stack.address) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"swap {swap_id}: alias '{ALIAS}' scripted/echo → scripted/other, rolled_back "
        f"(warm {warm} ms): 'scripted/echo' serves alias '{ALIAS}' again"
    ]
    assert (await _route(stack.address)).model_id == "scripted/echo"


async def test_rollback_of_an_unknown_swap_reports_the_error(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack)
    assert await _cli("rollback", "0123456789abcdef", "--address", stack.address) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["modelyard: no swap '0123456789abcdef' [NOT_FOUND]"]


async def test_swaps_lists_them_newest_first_running_or_one_routes(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack)
    assert await _cli("swaps", "--address", stack.address) == 0
    assert capsys.readouterr().out.splitlines() == ["no swaps"]
    first = await _swap_done(stack, capsys)
    code_swap = await _cli("swap", "task:code", "scripted/echo", "--address", stack.address)
    assert code_swap == 2  # `swap` takes an alias: "task:code" is not one
    capsys.readouterr()
    async with grpc.aio.insecure_channel(stack.address) as channel:
        started = await hotswap_pb2_grpc.HotSwapServiceStub(channel).Swap(
            hotswap_pb2.SwapRequest(
                task_type=selector_pb2.TASK_TYPE_CODE, target_model_id="scripted/echo"
            ),
            timeout=10,
        )
    for _ in range(500):  # until the task type's swap has ended
        if (await _swap_status(stack.address, started.swap_id)).phase in (
            hotswap_pb2.SwapStatus.PHASE_DONE,
            hotswap_pb2.SwapStatus.PHASE_FAILED,
        ):
            break
        await asyncio.sleep(0.02)
    done = await _swap_status(stack.address, started.swap_id)
    assert done.phase == hotswap_pb2.SwapStatus.PHASE_DONE
    warm = f"{done.warm_ms:.0f}"
    first_warm = f"{(await _swap_status(stack.address, first)).warm_ms:.0f}"
    assert await _cli("swaps", "--address", stack.address) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"swap {started.swap_id}: task 'code' scripted/other → scripted/echo, done "
        f"(warm {warm} ms)",
        f"swap {first}: alias '{ALIAS}' scripted/echo → scripted/other, done "
        f"(warm {first_warm} ms)",
    ]
    assert await _cli("swaps", "--task", "code", "--address", stack.address) == 0
    assert [_swap_id(line) for line in capsys.readouterr().out.splitlines()] == [started.swap_id]
    assert await _cli("swaps", "--alias", ALIAS, "--limit", "1", "--address", stack.address) == 0
    assert [_swap_id(line) for line in capsys.readouterr().out.splitlines()] == [first]
    assert await _cli("swaps", "--running", "--address", stack.address) == 0
    assert capsys.readouterr().out.splitlines() == ["no swaps"]
    assert await _cli("swaps", "--task", "poetry", "--address", stack.address) == 2
    assert capsys.readouterr().err.startswith("modelyard: --task 'poetry' is not a task type: ")


# ---- canary swaps -----------------------------------------------------------

Status = hotswap_pb2.SwapStatus


def _canary_config(*steps: float, rollback_on_failure: bool = True) -> ModelyardConfig:
    """Steps judged after 5 calls on the new version, with no time to wait."""
    canary = CanaryConfig(steps=steps, step_requests=5, step_ms=0)
    return _config(canary, rollback_on_failure)


async def _canary_at(address: str, percent: float, swap_id: str = "") -> str:
    """Wait until a canary swap on ALIAS runs its step at `percent` (its split is on the
    route, so outcomes now count for that step); the swap's id."""
    for _ in range(500):
        route = await _route(address)
        split = route.split
        if split.kind == hotswap_pb2.Split.KIND_CANARY and (not swap_id or split.id == swap_id):
            status = await _swap_status(address, split.id)
            if status.phase == Status.PHASE_CANARY and status.canary_percent == percent:
                return split.id
        await asyncio.sleep(0.02)
    raise AssertionError(f"no canary step at {percent} % on alias '{ALIAS}'")


async def _report(address: str, swap_id: str, *, new_failed: bool) -> None:
    """Five calls on each version, as a gateway reports them: the new one's all failed
    with `new_failed`; every call that succeeds takes 10 ms."""
    outcomes = [
        hotswap_pb2.ArmOutcome(
            split_id=swap_id,
            arm=arm,
            request_id=f"{arm}-{i}",
            failed=new_failed and arm == "new",
            latency_ms=10,
        )
        for arm in ("old", "new")
        for i in range(5)
    ]
    async with grpc.aio.insecure_channel(address) as channel:
        response = await hotswap_pb2_grpc.HotSwapServiceStub(channel).ReportOutcomes(
            hotswap_pb2.OutcomeBatch(outcomes=outcomes), timeout=10
        )
    assert response.accepted == len(outcomes)


REGRESSED = (
    "the new version regressed at 50 %: error rate 100.0% against 0.0% "
    "(more than 5.0% above, beyond chance)"
)


def _advanced(percent: int) -> str:
    return (
        f"at {percent} % the new version's 5 calls: error rate 0.0% (old 0.0%), "
        "p95 10.0 ms (old 10.0 ms)"
    )


async def test_canary_swap_that_regresses_is_rolled_back_and_exits_1(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, delay_s=0.2, config=_canary_config(50, 100))
    argv = ["swap", ALIAS, "scripted/other", "--canary", "--address", stack.address]
    command = asyncio.create_task(_cli(*argv))
    swap_id = await _canary_at(stack.address, 50)
    await _report(stack.address, swap_id, new_failed=True)
    assert await command == 1
    captured = capsys.readouterr()
    assert captured.err == ""
    status = await _swap_status(stack.address, swap_id)
    warm = f"{status.warm_ms:.0f}"
    head = f"swap {swap_id}: alias '{ALIAS}' scripted/echo → scripted/other"
    assert captured.out.splitlines() == [
        f"{head}, preparing",
        "preparing → warming",
        f"warming → validating (warm {warm} ms)",
        "validating → canary",
        "canary 50 %",
        f"step 50 %: rollback — {REGRESSED}",
        "canary → rolled_back",
        f"{head}, rolled_back (warm {warm} ms): {REGRESSED}",
    ]
    route = await _route(stack.address)
    assert (route.model_id, route.HasField("split")) == ("scripted/echo", False)

    assert await _cli("swap-status", swap_id, "--address", stack.address) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{head}, rolled_back (warm {warm} ms): {REGRESSED}",
        f"  step 50 %: rollback — {REGRESSED}",
    ]


async def test_canary_swap_that_holds_up_advances_step_by_step_to_done(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, delay_s=0.2, config=_canary_config(25, 50, 100))
    argv = ["swap", ALIAS, "scripted/other", "--canary", "--grace-ms", "50"]
    command = asyncio.create_task(_cli(*argv, "--address", stack.address))
    swap_id = await _canary_at(stack.address, 25)
    await _report(stack.address, swap_id, new_failed=False)
    await _canary_at(stack.address, 50, swap_id)
    await _report(stack.address, swap_id, new_failed=False)
    assert await command == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    status = await _swap_status(stack.address, swap_id)
    warm = f"{status.warm_ms:.0f}"
    head = f"swap {swap_id}: alias '{ALIAS}' scripted/echo → scripted/other"
    assert captured.out.splitlines() == [
        f"{head}, preparing",
        "preparing → warming",
        f"warming → validating (warm {warm} ms)",
        "validating → canary",
        "canary 25 %",
        f"step 25 %: advance — {_advanced(25)}",
        "canary 50 %",
        f"step 50 %: advance — {_advanced(50)}",
        "canary → switched",
        "switched → draining",
        "draining → done",
        f"{head}, done (warm {warm} ms)",
    ]
    route = await _route(stack.address)
    assert (route.model_id, route.HasField("split")) == ("scripted/other", False)


async def test_canary_swap_held_waits_for_a_rollback(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _canary_config(50, 100, rollback_on_failure=False)
    stack = await _stack(make_stack, delay_s=0.2, config=config)
    argv = ["swap", ALIAS, "scripted/other", "--canary", "--address", stack.address]
    command = asyncio.create_task(_cli(*argv))
    swap_id = await _canary_at(stack.address, 50)
    await _report(stack.address, swap_id, new_failed=True)
    for _ in range(500):  # the step decided, the swap held at it
        if (await _swap_status(stack.address, swap_id)).steps:
            break
        await asyncio.sleep(0.02)
    assert not command.done()  # still following: a person decides
    assert await _cli("rollback", swap_id, "--address", stack.address) == 0
    assert await command == 1
    status = await _swap_status(stack.address, swap_id)
    warm = f"{status.warm_ms:.0f}"
    head = f"swap {swap_id}: alias '{ALIAS}' scripted/echo → scripted/other"
    stopped = "stopped during the canary at 50 %: 'scripted/echo' serves every call again"
    lines = capsys.readouterr().out.splitlines()
    rolled_back = f"{head}, rolled_back (warm {warm} ms): {stopped}"
    assert lines.pop(lines.index(rolled_back)) == rolled_back  # `rollback`'s own line
    assert lines == [
        f"{head}, preparing",
        "preparing → warming",
        f"warming → validating (warm {warm} ms)",
        "validating → canary",
        "canary 50 %",
        f"step 50 %: hold — {REGRESSED}",
        f"held at 50 % for a person to decide; modelyard rollback {swap_id} puts "
        "'scripted/echo' back",
        "canary → rolled_back",
        rolled_back,
    ]
    assert (await _route(stack.address)).model_id == "scripted/echo"
