"""`modelyard abtest start|status|stop` and `feedback` against a real in-process stack.

The stack serves registry, hot-swap, gateway and an openai_compat backend in
front of a fake OpenAI upstream serving ``model-a`` and ``model-b``; ALIAS
routes to model-a from the configuration. Each command is `cli.main` in a
thread (its calls are blocking gRPC; the stack serves on this test's loop).
The arms' figures come from outcomes the test reports to the hot-swap service
itself (`ReportOutcomes`, as a gateway would), so they are exact.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard import cli
from modelyard.assembly import Stack
from modelyard.commands import abtest
from modelyard.config import ModelyardConfig, parse_config
from modelyard_client.v1 import hotswap_pb2, hotswap_pb2_grpc

ROLES = ("registry", "hotswap", "gateway", "backend-openai-compat")
A, B = "custom/model-a", "custom/model-b"
ALIAS = "chat-default"
ARMS = ("--arm", f"control={A}:0.5", "--arm", f"variant={B}:0.5")
HEADER = (
    "arm model weight requests errors error_rate p50_ms p95_ms ttft_p50_ms "
    "usd_per_request mean_score scores"
)


def _config(url: str) -> ModelyardConfig:
    return parse_config(
        f"""
model_system:
  hot_swap: {{grace_period_ms: 50, validation_timeout_ms: 3000, routes: {{{ALIAS}: {A}}}}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{url}"}}
"""
    )


async def _stack(make_stack: StackFactory, upstream: FakeUpstream) -> Stack:
    return await make_stack(roles=ROLES, config=_config(upstream.url))


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


def _stub(channel: grpc.aio.Channel) -> hotswap_pb2_grpc.HotSwapServiceAsyncStub:
    return hotswap_pb2_grpc.HotSwapServiceStub(channel)


async def _route(address: str) -> hotswap_pb2.Route:
    async with grpc.aio.insecure_channel(address) as channel:
        return await _stub(channel).GetRoute(hotswap_pb2.GetRouteRequest(alias=ALIAS), timeout=10)


async def _tests(address: str) -> list[hotswap_pb2.ABTest]:
    async with grpc.aio.insecure_channel(address) as channel:
        response = await _stub(channel).ListABTests(hotswap_pb2.ListABTestsRequest(), timeout=10)
        return list(response.tests)


async def _report(address: str, *outcomes: hotswap_pb2.ArmOutcome) -> int:
    """Report calls as a gateway would; how many a running split took."""
    async with grpc.aio.insecure_channel(address) as channel:
        response = await _stub(channel).ReportOutcomes(
            hotswap_pb2.OutcomeBatch(outcomes=outcomes), timeout=10
        )
        return response.accepted


async def _running_test(address: str) -> str:
    """The id of the A/B test a command in another thread is starting."""
    for _ in range(500):
        running = [t.id for t in await _tests(address) if t.running]
        if running:
            return running[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no A/B test started")


def _test_id(first_line: str) -> str:
    """The id in ``abtest ID: alias ...``."""
    assert first_line.startswith("abtest ")
    return first_line.removeprefix("abtest ").split(":", 1)[0]


async def _start(stack: Stack, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    """Start an A/B test of model-a against model-b on ALIAS; its id."""
    assert await _cli("abtest", "start", ALIAS, *ARMS, *flags, "--address", stack.address) == 0
    return _test_id(capsys.readouterr().out.splitlines()[0])


def _words(lines: list[str]) -> list[str]:
    """Each line with its runs of spaces as one (a table's column widths follow its cells)."""
    return [" ".join(line.split()) for line in lines]


async def test_start_with_two_arms_splits_the_route(
    make_stack: StackFactory, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, upstream)
    argv = ["abtest", "start", ALIAS, *ARMS, "--metric", "error_rate", "--sticky", "user"]
    assert await _cli(*argv, "--address", stack.address) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    test_id = _test_id(lines[0])
    assert lines == [
        f"abtest {test_id}: alias '{ALIAS}' by error_rate, running",
        f"  arm control: {A}, weight 0.5",
        f"  arm variant: {B}, weight 0.5",
    ]
    route = await _route(stack.address)
    assert (route.model_id, route.ab_test_id, route.split.id) == (A, test_id, test_id)
    assert route.split.kind == hotswap_pb2.Split.KIND_AB_TEST
    assert route.split.sticky_by == hotswap_pb2.STICKY_BY_USER
    assert [(a.name, a.model_id, a.weight) for a in route.split.arms] == [
        ("control", A, 0.5),
        ("variant", B, 0.5),
    ]


async def test_weights_that_do_not_sum_to_1_are_refused(
    make_stack: StackFactory, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, upstream)
    before = await _route(stack.address)
    arms = ["--arm", f"control={A}:0.5", "--arm", f"variant={B}:0.6"]
    assert await _cli("abtest", "start", ALIAS, *arms, "--address", stack.address) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "modelyard: the arms' weights sum to 1.1, not 1 [INVALID_ARGUMENT]"
    ]
    assert await _route(stack.address) == before
    assert await _tests(stack.address) == []


async def test_an_arm_on_a_model_not_in_the_catalog_is_refused(
    make_stack: StackFactory, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, upstream)
    arms = ["--arm", f"control={A}:0.5", "--arm", "variant=custom/nope:0.5"]
    assert await _cli("abtest", "start", ALIAS, *arms, "--address", stack.address) == 2
    assert capsys.readouterr().err.splitlines() == [
        "modelyard: model 'custom/nope' is not in the catalog (arms[1].model_id) [NOT_FOUND]"
    ]
    assert not (await _route(stack.address)).HasField("split")


@pytest.mark.parametrize(
    "arm",
    [
        "control",
        f"control={A}",
        f"control={A}:half",
        f"={A}:0.5",
        "control=:0.5",
        f"control{A}:0.5",
    ],
)
def test_bad_arm_syntax_is_a_usage_error_before_any_call(
    arm: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 1: a call made would fail UNAVAILABLE (exit 1), not exit 2.
    argv = ["abtest", "start", ALIAS, "--arm", f"ok={B}:0.5", "--arm", arm]
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--address", "127.0.0.1:1"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        f"argument --arm: {arm!r} is not NAME=MODEL:WEIGHT (e.g. control=local/gemma:0.5)"
        in captured.err
    )


def test_an_arm_keeps_a_model_id_with_a_colon_whole() -> None:
    arm = abtest.arm("big=ollama/llama3:8b:0.25")
    assert (arm.name, arm.model_id, arm.weight) == ("big", "ollama/llama3:8b", 0.25)


async def test_status_of_one_test_gives_each_arms_figures(
    make_stack: StackFactory, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, upstream)
    test_id = await _start(stack, capsys, "--metric", "score", "--max-requests", "100")
    outcomes = [
        hotswap_pb2.ArmOutcome(
            split_id=test_id,
            arm="control",
            request_id="c1",
            latency_ms=100,
            ttft_ms=20,
            cost_usd=0.001,
        ),
        hotswap_pb2.ArmOutcome(
            split_id=test_id,
            arm="control",
            request_id="c2",
            latency_ms=300,
            ttft_ms=40,
            cost_usd=0.003,
        ),
        hotswap_pb2.ArmOutcome(split_id=test_id, arm="variant", request_id="v1", failed=True),
        hotswap_pb2.ArmOutcome(
            split_id=test_id, arm="variant", request_id="v2", latency_ms=50, cost_usd=0.002
        ),
    ]
    assert await _report(stack.address, *outcomes) == 4
    assert await _cli("feedback", "c1", "0.5", "--address", stack.address) == 0
    assert await _cli("feedback", "c2", "1", "--address", stack.address) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"feedback 0.5 for request 'c1': A/B test {test_id}, arm control",
        f"feedback 1 for request 'c2': A/B test {test_id}, arm control",
    ]

    assert await _cli("abtest", "status", test_id, "--address", stack.address) == 0
    lines = capsys.readouterr().out.splitlines()
    assert _words(lines) == [
        f"abtest {test_id}: alias '{ALIAS}' by score, running",
        "alpha 0.05, min 30 samples per arm, sticky by request, max 100 requests, no time limit",
        HEADER,
        f"control {A} 0.5 2 0 0.0 % 100.0 300.0 20.0 0.002000 0.75 2",
        f"variant {B} 0.5 2 1 50.0 % 50.0 50.0 0.0 0.001000 - 0",
        "winner: none yet (confidence 0.0 %)",
    ]
    # The arms' table is aligned: every row's cells start where the header's do.
    table = lines[2:5]
    starts = [table[0].index(name) for name in ("model", "requests", "scores")]
    for row in table[1:]:
        assert all(row[start - 2 : start] == "  " and row[start] != " " for start in starts)


async def test_status_without_an_id_lists_every_test(
    make_stack: StackFactory, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, upstream)
    assert await _cli("abtest", "status", "--address", stack.address) == 0
    assert capsys.readouterr().out.splitlines() == ["no A/B tests"]

    first = await _start(stack, capsys)
    win = hotswap_pb2.ArmOutcome(split_id=first, arm="control", latency_ms=10)
    assert await _report(stack.address, win, win) == 2
    assert await _cli("abtest", "stop", first, "--address", stack.address) == 0
    capsys.readouterr()
    second = await _start(stack, capsys, "--metric", "cost")
    capsys.readouterr()
    assert await _cli("abtest", "status", "--address", stack.address) == 0
    arms = f"control={A}:0.5,variant={B}:0.5"
    assert _words(capsys.readouterr().out.splitlines()) == [
        "id alias metric state requests winner confidence arms",
        f"{first} {ALIAS} latency ended 2 - 0.0 % {arms}",
        f"{second} {ALIAS} cost running 0 - 0.0 % {arms}",
    ]


async def test_stop_ends_the_test_and_its_split(
    make_stack: StackFactory, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, upstream)
    test_id = await _start(stack, capsys)
    argv = ["abtest", "stop", test_id, "--promote-winner", "--address", stack.address]
    assert await _cli(*argv) == 1  # no winner yet: nothing to promote, the test goes on
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"modelyard: A/B test {test_id} has no winner yet, so there is none to promote; "
        "stop it without promote_winner, or let it run [FAILED_PRECONDITION]"
    ]
    assert (await _route(stack.address)).ab_test_id == test_id

    assert await _cli("abtest", "stop", test_id, "--address", stack.address) == 0
    lines = _words(capsys.readouterr().out.splitlines())
    assert lines[0] == (
        f"abtest {test_id}: alias '{ALIAS}' by latency, ended: stopped by request; no winner"
    )
    assert lines[-1] == "winner: none (confidence 0.0 %)"
    route = await _route(stack.address)
    assert (route.model_id, route.ab_test_id, route.HasField("split")) == (A, "", False)


async def test_stop_of_an_unknown_test_reports_the_error(
    make_stack: StackFactory, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, upstream)
    assert await _cli("abtest", "stop", "0123456789abcdef", "--address", stack.address) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["modelyard: no A/B test '0123456789abcdef' [NOT_FOUND]"]


async def test_watch_follows_the_test_until_its_budget_is_spent(
    make_stack: StackFactory,
    upstream: FakeUpstream,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(abtest, "ABTEST_POLL_S", 0.05)
    stack = await _stack(make_stack, upstream)
    argv = ["abtest", "start", ALIAS, *ARMS, "--max-requests", "4", "--watch"]
    command = asyncio.create_task(_cli(*argv, "--address", stack.address))
    test_id = await _running_test(stack.address)
    outcomes = [
        hotswap_pb2.ArmOutcome(split_id=test_id, arm=arm, latency_ms=ms)
        for arm, ms in (("control", 100), ("variant", 50), ("control", 200), ("variant", 60))
    ]
    assert await _report(stack.address, *outcomes) == 4
    assert await command == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines() == [
        f"abtest {test_id}: alias '{ALIAS}' by latency, running",
        f"  arm control: {A}, weight 0.5",
        f"  arm variant: {B}, weight 0.5",
        "control: 2 requests, 0 errors, p50 100.0 ms, p95 200.0 ms"
        " | variant: 2 requests, 0 errors, p50 50.0 ms, p95 60.0 ms"
        " | winner: none (confidence 0.0 %)",
        f"abtest {test_id}: alias '{ALIAS}' by latency, "
        "ended: the request budget of 4 is spent; no winner",
    ]


async def test_watch_ends_with_the_winner_swapped_in(
    make_stack: StackFactory,
    upstream: FakeUpstream,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(abtest, "ABTEST_POLL_S", 0.05)
    stack = await _stack(make_stack, upstream)
    flags = ["--min-samples", "5", "--promote-winner", "--watch"]
    command = asyncio.create_task(
        _cli("abtest", "start", ALIAS, *ARMS, *flags, "--address", stack.address)
    )
    test_id = await _running_test(stack.address)
    outcomes = [
        hotswap_pb2.ArmOutcome(split_id=test_id, arm=arm, latency_ms=ms + jitter)
        for jitter in (0, 3, 1, 4, 2)
        for arm, ms in (("control", 300), ("variant", 100))
    ]
    assert await _report(stack.address, *outcomes) == 10  # the 10th finds the winner
    assert await command == 0
    lines = capsys.readouterr().out.splitlines()
    test = (await _tests(stack.address))[0]
    swap_id = test.promotion_swap_id
    assert swap_id
    assert lines[3:] == [
        "control: 5 requests, 0 errors, p50 302.0 ms, p95 304.0 ms"
        " | variant: 5 requests, 0 errors, p50 102.0 ms, p95 104.0 ms"
        f" | winner: variant (confidence {test.confidence * 100:.1f} %)",
        f"abtest {test_id}: alias '{ALIAS}' by latency, ended: arm 'variant' is better on "
        f"latency; swap {swap_id} promotes '{B}'",
        f"  promoted by swap {swap_id}",
    ]
    assert test.confidence > 0.95

    assert await _cli("abtest", "status", test_id, "--address", stack.address) == 0
    detail = _words(capsys.readouterr().out.splitlines())
    assert detail[-2:] == [
        f"winner: variant (confidence {test.confidence * 100:.1f} %)",
        f"promoted by swap {swap_id}",
    ]
    for _ in range(500):  # the promotion is a swap like any other: validated, then switched
        if (await _route(stack.address)).model_id == B:
            break
        await asyncio.sleep(0.02)
    assert (await _route(stack.address)).model_id == B


async def test_feedback_for_an_unknown_request_is_not_found(
    make_stack: StackFactory, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await _stack(make_stack, upstream)
    await _start(stack, capsys)
    started = time.monotonic()
    assert await _cli("feedback", "no-such-request", "1", "--address", stack.address) == 1
    assert time.monotonic() - started >= 1.0  # the service waited for a late report first
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "modelyard: no A/B test served request 'no-such-request' (feedback is taken for the "
        "last 100,000 requests A/B tests served) [NOT_FOUND]"
    ]
