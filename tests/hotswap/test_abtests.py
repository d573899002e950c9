"""A/B tests over a real route table in SQLite, fed outcomes as the gateways report them.

The catalog holds three chat models and one without chat; swaps (for
promotion) validate through a validator that answers at once.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hotswap.swap_fakes import InstantAnswers, SmallCatalog

from modelyard.hotswap import abtests as abtests_module
from modelyard.hotswap.abtests import ABTests
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Swaps, SwapSettings
from modelyard_client.errors import FailedPrecondition, InvalidRequest, ModelNotFound, NotFound
from modelyard_client.v1 import common_pb2, hotswap_pb2

A, B, C, EMBED = "up/a", "up/b", "up/c", "up/embed"
Outcome = hotswap_pb2.ArmOutcome


CATALOG = SmallCatalog(A, B, C, EMBED, special={EMBED: [common_pb2.CAPABILITY_EMBEDDING]})


class Lab:
    def __init__(self, path: Path) -> None:
        self.routes = RouteTable(HotSwapStore(path))
        self.routes.seed({"chat": A}, {})
        self.swaps = Swaps(
            self.routes,
            self.routes.store,
            CATALOG,
            InstantAnswers(),
            SwapSettings(grace_period_s=0),
        )
        self.tests = ABTests(self.routes, self.routes.store, CATALOG, self.swaps)

    async def close(self) -> None:
        await self.tests.close()
        await self.swaps.close()
        self.routes.close()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    lab = Lab(tmp_path / "hotswap.sqlite3")
    yield lab
    await lab.close()


def _arms(*arms: tuple[str, str, float]) -> list[hotswap_pb2.ABArm]:
    return [hotswap_pb2.ABArm(name=n, model_id=m, weight=w) for n, m, w in arms]


def _start(lab: Lab, **fields: object) -> hotswap_pb2.ABTest:
    request = hotswap_pb2.StartABTestRequest(alias="chat", arms=_arms(("a", A, 0.5), ("b", B, 0.5)))
    for name, value in fields.items():
        if name == "arms":
            del request.arms[:]
            request.arms.extend(value)  # type: ignore[arg-type]  # a list of ABArm
        else:
            setattr(request, name, value)
    return lab.tests.start(request)


def _feed(lab: Lab, test: hotswap_pb2.ABTest, arm: str, latency_ms: float, n: int = 0) -> bool:
    return lab.tests.record(
        Outcome(split_id=test.id, arm=arm, request_id=f"{arm}-{n}", latency_ms=latency_ms)
    )


async def test_a_started_test_splits_the_alias_by_its_arms(lab: Lab) -> None:
    test = _start(lab, sticky_by=hotswap_pb2.STICKY_BY_CONVERSATION)
    route = lab.routes.get("chat")
    assert route.model_id == A  # what serves once the split ends
    assert route.ab_test_id == test.id
    assert route.split.id == test.id and route.split.kind == hotswap_pb2.Split.KIND_AB_TEST
    assert [(a.name, a.model_id, a.weight) for a in route.split.arms] == [
        ("a", A, 0.5),
        ("b", B, 0.5),
    ]
    assert route.split.sticky_by == hotswap_pb2.STICKY_BY_CONVERSATION
    assert test.running and test.metric == "latency" and test.alpha == 0.05
    assert test.min_samples_per_arm == 30
    assert [r.name for r in test.results] == ["a", "b"]


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        (
            {"arms": _arms(("a", A, 0.5), ("b", B, 0.6))},
            InvalidRequest,
            "the arms' weights sum to 1.1, not 1",
        ),
        ({"arms": _arms(("a", A, 1.0))}, InvalidRequest, "an A/B test has 2-4 arms, not 1"),
        (
            {"arms": _arms(("a", A, 0.5), ("a", B, 0.5))},
            InvalidRequest,
            "arms[1].name 'a' names two arms",
        ),
        (
            {"arms": _arms(("a", A, 0.5), ("b", A, 0.5))},
            InvalidRequest,
            "arms[1].model_id 'up/a' is in two arms: they would not differ",
        ),
        (
            {"arms": _arms(("a", A, 1.0), ("b", B, 0.0))},
            InvalidRequest,
            "arms[1].weight must be above 0, not 0",
        ),
        (
            {"arms": _arms(("a", A, 0.5), ("b", "up/nope", 0.5))},
            ModelNotFound,
            "model 'up/nope' is not in the catalog (arms[1].model_id)",
        ),
        (
            {"arms": _arms(("a", A, 0.5), ("b", EMBED, 0.5))},
            FailedPrecondition,
            "'up/embed' lacks what alias 'chat' serves with 'up/a': chat",
        ),
        ({"metric": "vibes"}, InvalidRequest, "metric 'vibes' is not one of latency, error_rate"),
        ({"alpha": 0.7}, InvalidRequest, "alpha must be in (0, 0.5], not 0.7"),
        (
            {"alias": "nowhere"},
            FailedPrecondition,
            "alias 'nowhere' has no route: an A/B test splits an alias that serves already",
        ),
    ],
)
async def test_a_bad_test_is_refused_naming_the_problem_and_the_route_stays(
    lab: Lab, fields: dict[str, object], error: type[Exception], message: str
) -> None:
    before = lab.routes.get("chat")
    with pytest.raises(error) as caught:
        _start(lab, **fields)
    assert message in str(caught.value)
    assert lab.routes.get("chat") == before
    assert lab.tests.list() == []


async def test_a_second_test_or_a_swap_on_a_split_alias_is_refused(lab: Lab) -> None:
    test = _start(lab)
    with pytest.raises(FailedPrecondition, match=f"split by A/B test {test.id} already"):
        _start(lab)
    with pytest.raises(FailedPrecondition, match=f"is split by A/B test {test.id}: stop it first"):
        lab.swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    assert lab.routes.get("chat").split.id == test.id


async def test_a_test_is_refused_while_a_swap_runs_on_the_alias(lab: Lab) -> None:
    lab.swaps.settings = SwapSettings(grace_period_s=60)
    swap = lab.swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    with pytest.raises(FailedPrecondition, match=f"alias 'chat' has swap {swap.swap_id} running"):
        _start(lab, arms=_arms(("a", A, 0.5), ("c", C, 0.5)))


async def test_a_slower_arm_loses_early_with_the_configured_confidence(lab: Lab) -> None:
    test = _start(lab)
    rng = random.Random(7)
    calls = 0
    while lab.tests.get(test.id).running and calls < 2000:
        calls += 1
        _feed(lab, test, "a", rng.gauss(100, 10), calls)
        _feed(lab, test, "b", rng.gauss(110, 10), calls)  # one standard deviation slower
    ended = lab.tests.get(test.id)
    assert ended.winner == "a"
    assert ended.confidence >= 0.95
    assert not ended.running
    assert ended.ended_reason == "arm 'a' is better on latency"
    assert calls < 120  # early: a fixed-sample design for this effect needs about as many
    assert ended.results[0].latency_ms_p50 < ended.results[1].latency_ms_p50
    # The split has ended; the alias's own model serves again, and nothing was promoted.
    route = lab.routes.get("chat")
    assert (route.model_id, route.split.id, route.ab_test_id) == (A, "", "")
    assert ended.promotion_swap_id == ""
    # Outcomes for an ended test are dropped.
    assert not _feed(lab, test, "a", 1.0)


async def test_a_winner_is_promoted_through_a_swap(lab: Lab) -> None:
    test = _start(lab, promote_winner=True)
    rng = random.Random(3)
    for n in range(400):
        _feed(lab, test, "a", rng.gauss(120, 10), n)
        _feed(lab, test, "b", rng.gauss(100, 10), n)
        if not lab.tests.get(test.id).running:
            break
    ended = lab.tests.get(test.id)
    assert ended.winner == "b"
    assert ended.promotion_swap_id
    assert ended.ended_reason.endswith(f"; swap {ended.promotion_swap_id} promotes 'up/b'")
    swap = lab.swaps.get(ended.promotion_swap_id)
    assert (swap.from_model_id, swap.to_model_id) == (A, B)


async def test_identical_arms_name_a_winner_in_at_most_5_percent_of_seeded_runs(
    tmp_path: Path,
) -> None:
    runs, false_winners = 200, 0
    for seed in range(runs):
        lab = Lab(tmp_path / f"h{seed}.sqlite3")
        test = _start(lab, arms=_arms(("a", A, 0.34), ("b", B, 0.33), ("c", C, 0.33)))
        rng = random.Random(seed)
        for n in range(300):  # checked after every result
            for arm in "abc":
                _feed(lab, test, arm, rng.gauss(100, 10), n)
        if lab.tests.get(test.id).winner:
            false_winners += 1
        await lab.close()
    assert false_winners <= 0.05 * runs


async def test_error_rate_compares_failures(lab: Lab) -> None:
    test = _start(lab, metric="error_rate")
    rng = random.Random(11)
    for _ in range(3000):
        for arm, rate in (("a", 0.02), ("b", 0.2)):
            lab.tests.record(
                Outcome(split_id=test.id, arm=arm, failed=rng.random() < rate, latency_ms=5)
            )
        if not lab.tests.get(test.id).running:
            break
    ended = lab.tests.get(test.id)
    assert ended.winner == "a"
    b = ended.results[1]
    assert b.errors > 0 and b.error_rate == pytest.approx(b.errors / b.requests)


async def test_the_request_budget_ends_a_test_without_a_winner(lab: Lab) -> None:
    test = _start(lab, max_requests=10)
    for n in range(5):
        _feed(lab, test, "a", 10.0, n)
        _feed(lab, test, "b", 10.0, n)
    ended = lab.tests.get(test.id)
    assert not ended.running and ended.winner == ""
    assert ended.ended_reason == "the request budget of 10 is spent; no winner"
    assert sum(r.requests for r in ended.results) == 10
    assert lab.routes.get("chat").split.id == ""


async def test_the_time_limit_ends_a_test(lab: Lab) -> None:
    import asyncio

    test = _start(lab, max_duration_ms=50)
    await asyncio.sleep(0.2)
    ended = lab.tests.get(test.id)
    assert not ended.running
    assert ended.ended_reason == "its 50 ms are up; no winner"


async def test_feedback_is_scored_on_the_arm_that_served_the_request(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(abtests_module, "FEEDBACK_WAIT_S", 0.05)
    test = _start(lab, metric="score")
    _feed(lab, test, "b", 10.0, 1)
    answer = await lab.tests.feedback(hotswap_pb2.FeedbackRequest(request_id="b-1", score=4.0))
    assert (answer.ab_test_id, answer.arm) == (test.id, "b")
    result = lab.tests.get(test.id).results[1]
    assert (result.scores, result.mean_score) == (1, 4.0)

    with pytest.raises(NotFound, match="no A/B test served request 'nope'"):
        await lab.tests.feedback(hotswap_pb2.FeedbackRequest(request_id="nope", score=1.0))
    with pytest.raises(InvalidRequest, match="score must be a finite number, not nan"):
        await lab.tests.feedback(hotswap_pb2.FeedbackRequest(request_id="b-1", score=float("nan")))


async def test_feedback_before_its_report_waits_for_it(lab: Lab) -> None:
    import asyncio

    test = _start(lab)
    waiting = asyncio.create_task(
        lab.tests.feedback(hotswap_pb2.FeedbackRequest(request_id="late", score=1.0))
    )
    await asyncio.sleep(0.05)
    lab.tests.record(Outcome(split_id=test.id, arm="a", request_id="late", latency_ms=3))
    assert (await waiting).arm == "a"


async def test_a_higher_score_wins_on_the_score_metric(lab: Lab) -> None:
    test = _start(lab, metric="score")
    rng = random.Random(5)
    for n in range(500):
        for arm, mean in (("a", 3.0), ("b", 3.5)):
            if not lab.tests.get(test.id).running:
                break
            _feed(lab, test, arm, 10.0, n)
            await lab.tests.feedback(
                hotswap_pb2.FeedbackRequest(request_id=f"{arm}-{n}", score=rng.gauss(mean, 1))
            )
    ended = lab.tests.get(test.id)
    assert ended.winner == "b"
    with pytest.raises(FailedPrecondition, match=f"A/B test {test.id}, which served request"):
        await lab.tests.feedback(hotswap_pb2.FeedbackRequest(request_id="a-0", score=1.0))


async def test_stopping_ends_the_split_and_promoting_needs_a_winner(lab: Lab) -> None:
    test = _start(lab)
    with pytest.raises(FailedPrecondition, match="has no winner yet, so there is none to promote"):
        await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=test.id, promote_winner=True))
    assert lab.tests.get(test.id).running
    stopped = await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=test.id))
    assert not stopped.running and stopped.ended_reason == "stopped by request; no winner"
    assert lab.routes.get("chat").split.id == ""
    with pytest.raises(NotFound, match="no A/B test 'x'"):
        lab.tests.get("x")


async def test_a_restart_ends_a_running_test_and_keeps_its_figures(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "h.sqlite3")
    test = _start(lab)
    for n in range(3):
        _feed(lab, test, "a", 10.0, n)
    lab.tests.flush()  # as after each batch of reports
    await lab.close()

    lab = Lab(tmp_path / "h.sqlite3")
    after = lab.tests.get(test.id)
    assert not after.running
    assert after.ended_reason == "the hot-swap service restarted; the figures up to then are kept"
    assert after.results[0].requests == 3
    route = lab.routes.get("chat")
    assert (route.model_id, route.split.id) == (A, "")
    await lab.close()


async def test_a_winner_found_without_promotion_can_be_promoted_on_stop(lab: Lab) -> None:
    test = _start(lab)
    rng = random.Random(3)
    for n in range(400):
        _feed(lab, test, "a", rng.gauss(120, 10), n)
        _feed(lab, test, "b", rng.gauss(100, 10), n)
        if not lab.tests.get(test.id).running:
            break
    ended = lab.tests.get(test.id)
    assert (ended.winner, ended.promotion_swap_id) == ("b", "")
    promoted = await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=test.id, promote_winner=True))
    assert promoted.promotion_swap_id
    assert lab.swaps.get(promoted.promotion_swap_id).to_model_id == B
    with pytest.raises(FailedPrecondition, match="has ended and promoted it already"):
        await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=test.id, promote_winner=True))


async def test_feedback_with_no_test_running_is_refused_at_once(lab: Lab) -> None:
    import time

    started = time.monotonic()
    with pytest.raises(NotFound, match="no A/B test served request 'x'"):
        await lab.tests.feedback(hotswap_pb2.FeedbackRequest(request_id="x", score=1.0))
    assert time.monotonic() - started < 0.5
