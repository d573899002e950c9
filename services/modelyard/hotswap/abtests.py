"""A/B tests: an alias's calls split between models until one is honestly the better.

`start` checks the request (2-4 arms with valid unique names and known
models that offer what the alias serves, weights summing to 1, a known
metric, no swap or other test on the alias) and puts a `Split` on the
alias's route: the gateways divide its calls by the weights, sticky by the
chosen key, and report each call's outcome (`record`). Feedback scores
(`feedback`) are tied to the arm that served the request.

After every result the arms are compared on the test's metric, every pair
by an anytime-valid sequential test (`MeanComparison`, alpha split evenly
over the pairs): a winner is the arm that beats every other one. The test
then ends on its own, and, with `promote_winner`, the winner is swapped in as
the alias's model (a swap, validated like any other). A test also ends when
its request budget or its time is spent (no winner: said so), when stopped,
or when the service restarts (its figures up to then kept).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from modelyard.catalog_ids import name_problem
from modelyard.hotswap.arm_stats import LOWER_IS_BETTER, METRICS, ArmStats, metric_value
from modelyard.hotswap.routes import RouteTable, current_split
from modelyard.hotswap.sequential import MeanComparison
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Catalog, Swaps, check_capabilities
from modelyard.route_keys import route_key
from modelyard_client.errors import FailedPrecondition, InvalidRequest, ModelNotFound, NotFound
from modelyard_client.v1 import hotswap_pb2

log = logging.getLogger(__name__)

Split = hotswap_pb2.Split
MAX_ARMS = 4
WEIGHT_TOLERANCE = 1e-6
# Requests an A/B test served, remembered for their feedback (oldest forgotten first).
REMEMBERED_REQUESTS = 100_000
# Feedback may arrive before the gateway's report of its call (reports go in
# batches every 100 ms): it waits this long for the call to be reported.
FEEDBACK_WAIT_S = 1.0


@dataclass(frozen=True)
class ABDefaults:
    """`hot_swap.ab_tests`: what a `StartABTest` request leaves unset."""

    alpha: float = 0.05
    min_samples_per_arm: int = 30


@dataclass
class _Running:
    test: hotswap_pb2.ABTest
    arms: list[ArmStats]
    comparisons: dict[tuple[int, int], MeanComparison]
    timer: asyncio.TimerHandle | None = None
    total: int = 0
    by_name: dict[str, int] = field(default_factory=dict)


class ABTests:
    def __init__(
        self,
        routes: RouteTable,
        store: HotSwapStore,
        catalog: Catalog,
        swaps: Swaps,
        defaults: ABDefaults | None = None,
    ) -> None:
        self._routes = routes
        self._store = store
        self._catalog = catalog
        self._swaps = swaps
        self.defaults = defaults or ABDefaults()
        self._tests: dict[str, hotswap_pb2.ABTest] = {}
        self._running: dict[str, _Running] = {}
        self._served: OrderedDict[str, tuple[str, str]] = OrderedDict()  # request -> (test, arm)
        self._awaited: dict[str, asyncio.Event] = {}
        for test in store.load_tests():
            if test.running:
                why = "the hot-swap service restarted; the figures up to then are kept"
                test = _ended(test, why)
                store.put_test(test)
                log.warning("A/B test %s: %s", test.id, test.ended_reason)
            self._tests[test.id] = test
        for route in routes.routes():
            split = route.split
            if split.kind == Split.KIND_AB_TEST and split.arms:
                routes.set_route(route.alias, 0, route.model_id)  # its test ended above

    # ---- reading ------------------------------------------------------------

    def get(self, test_id: str) -> hotswap_pb2.ABTest:
        running = self._running.get(test_id)
        if running is not None:
            return self._snapshot(running)
        try:
            return self._tests[test_id]
        except KeyError:
            raise NotFound(f"no A/B test '{test_id}'") from None

    def list(self) -> list[hotswap_pb2.ABTest]:
        """Every test, running or ended, oldest first."""
        return [self.get(test_id) for test_id in self._tests]

    # ---- starting -----------------------------------------------------------

    def start(self, request: hotswap_pb2.StartABTestRequest) -> hotswap_pb2.ABTest:
        route_key(alias=request.alias)  # a bad alias is refused here
        metric = request.metric or "latency"
        if metric not in METRICS:
            raise InvalidRequest(
                f"metric '{metric}' is not one of {', '.join(METRICS)}", field="metric"
            )
        alpha = request.alpha or self.defaults.alpha
        if not 0 < alpha <= 0.5:
            raise InvalidRequest(f"alpha must be in (0, 0.5], not {alpha:g}", field="alpha")
        self._check_arms(request)
        route = self._routes.find(alias=request.alias)
        if route is None:
            raise FailedPrecondition(
                f"alias '{request.alias}' has no route: an A/B test splits an alias that "
                "serves already (its model is the control)"
            )
        if current_split(route):
            raise FailedPrecondition(
                f"alias '{request.alias}' is split by {describe_split(route.split)} already; "
                "stop it first"
            )
        self._swaps.check_idle(request.alias)
        for i, arm in enumerate(request.arms):
            try:
                target = self._catalog.get(arm.model_id)
            except ModelNotFound:
                raise ModelNotFound(arm.model_id, f"the catalog (arms[{i}].model_id)") from None
            if target.id != route.model_id:
                check_capabilities(
                    self._catalog, f"alias '{request.alias}'", route.model_id, target
                )
        test = hotswap_pb2.ABTest(
            id=uuid.uuid4().hex[:16],
            alias=request.alias,
            arms=request.arms,
            metric=metric,
            running=True,
            alpha=alpha,
            min_samples_per_arm=request.min_samples_per_arm or self.defaults.min_samples_per_arm,
            max_requests=request.max_requests,
            max_duration_ms=request.max_duration_ms,
            sticky_by=request.sticky_by or hotswap_pb2.STICKY_BY_REQUEST,
            promote_winner=request.promote_winner,
        )
        test.started_at.GetCurrentTime()
        pairs = math.comb(len(test.arms), 2)
        running = _Running(
            test=test,
            arms=[ArmStats(arm.name, arm.model_id) for arm in test.arms],
            comparisons={
                (i, j): MeanComparison(
                    alpha=alpha / pairs,
                    lower_is_better=LOWER_IS_BETTER[metric],
                    min_samples=int(test.min_samples_per_arm),
                )
                for i, j in itertools.combinations(range(len(test.arms)), 2)
            },
            by_name={arm.name: i for i, arm in enumerate(test.arms)},
        )
        self._store.put_test(test)
        self._tests[test.id] = test
        self._running[test.id] = running
        split = Split(id=test.id, kind=Split.KIND_AB_TEST, arms=test.arms, sticky_by=test.sticky_by)
        self._routes.set_route(request.alias, 0, route.model_id, split=split)
        if test.max_duration_ms:
            running.timer = asyncio.get_running_loop().call_later(
                test.max_duration_ms / 1000, self._time_up, test.id
            )
        log.info(
            "A/B test %s on alias '%s': %s by %s",
            test.id,
            test.alias,
            ", ".join(f"{a.name}={a.model_id} ({a.weight:g})" for a in test.arms),
            metric,
        )
        return self._snapshot(running)

    @staticmethod
    def _check_arms(request: hotswap_pb2.StartABTestRequest) -> None:
        arms = request.arms
        if not 2 <= len(arms) <= MAX_ARMS:
            raise InvalidRequest(
                f"an A/B test has 2-{MAX_ARMS} arms, not {len(arms)}", field="arms"
            )
        names: set[str] = set()
        models: set[str] = set()
        for i, arm in enumerate(arms):
            problem = name_problem("the arm name", arm.name)
            if problem is not None:
                raise InvalidRequest(f"arms[{i}].name: {problem}", field=f"arms[{i}].name")
            if arm.name in names:
                raise InvalidRequest(
                    f"arms[{i}].name '{arm.name}' names two arms", field=f"arms[{i}].name"
                )
            if arm.model_id in models:
                raise InvalidRequest(
                    f"arms[{i}].model_id '{arm.model_id}' is in two arms: they would not differ",
                    field=f"arms[{i}].model_id",
                )
            if not (math.isfinite(arm.weight) and arm.weight > 0):
                raise InvalidRequest(
                    f"arms[{i}].weight must be above 0, not {arm.weight:g}",
                    field=f"arms[{i}].weight",
                )
            names.add(arm.name)
            models.add(arm.model_id)
        total = math.fsum(arm.weight for arm in arms)
        if abs(total - 1) > WEIGHT_TOLERANCE:
            raise InvalidRequest(f"the arms' weights sum to {total:g}, not 1", field="arms.weight")

    # ---- results ------------------------------------------------------------

    def record(self, outcome: hotswap_pb2.ArmOutcome) -> bool:
        """Count one call a test's split routed; False when no running test has that split."""
        running = self._running.get(outcome.split_id)
        if running is None:
            return False
        index = running.by_name.get(outcome.arm)
        if index is None:
            return False
        running.arms[index].add(outcome)
        running.total += 1
        if outcome.request_id:
            self._remember(outcome.request_id, running.test.id, outcome.arm)
        value = metric_value(running.test.metric, outcome)
        if value is not None:
            self._compare(running, index, value)
        budget = running.test.max_requests
        if running.test.id in self._running and budget and running.total >= budget:
            self._end(running, f"the request budget of {budget} is spent")
        return True

    def flush(self) -> None:
        """Store the running tests' figures (once per batch of outcomes, not per call)."""
        for running in self._running.values():
            self._store.put_test(self._snapshot(running))

    async def feedback(self, request: hotswap_pb2.FeedbackRequest) -> hotswap_pb2.FeedbackResponse:
        if not math.isfinite(request.score):
            raise InvalidRequest(
                f"score must be a finite number, not {request.score}", field="score"
            )
        if not request.request_id:
            raise InvalidRequest("request_id is empty", field="request_id")
        served = self._served.get(request.request_id)
        if served is None and self._running:  # its report may still be on its way
            event = self._awaited.setdefault(request.request_id, asyncio.Event())
            try:
                async with asyncio.timeout(FEEDBACK_WAIT_S):
                    await event.wait()
            except TimeoutError:
                pass
            finally:
                self._awaited.pop(request.request_id, None)
            served = self._served.get(request.request_id)
        if served is None:
            raise NotFound(
                f"no A/B test served request '{request.request_id}' (feedback is taken for "
                f"the last {REMEMBERED_REQUESTS:,} requests A/B tests served)"
            )
        test_id, arm = served
        running = self._running.get(test_id)
        if running is None:
            raise FailedPrecondition(
                f"A/B test {test_id}, which served request '{request.request_id}', has ended: "
                f"{self._tests[test_id].ended_reason}"
            )
        index = running.by_name[arm]
        running.arms[index].scores.add(request.score)
        if running.test.metric == "score":
            self._compare(running, index, request.score)
        return hotswap_pb2.FeedbackResponse(ab_test_id=test_id, arm=arm)

    def _remember(self, request_id: str, test_id: str, arm: str) -> None:
        self._served[request_id] = (test_id, arm)
        while len(self._served) > REMEMBERED_REQUESTS:
            self._served.popitem(last=False)
        event = self._awaited.get(request_id)
        if event is not None:
            event.set()

    def _compare(self, running: _Running, index: int, value: float) -> None:
        for (i, j), comparison in running.comparisons.items():
            if index == i:
                comparison.add("a", value)
            elif index == j:
                comparison.add("b", value)
        winner = _winner(running)
        if winner is not None:
            name = running.test.arms[winner].name
            self._end(running, f"arm '{name}' is better on {running.test.metric}", winner)

    # ---- ending -------------------------------------------------------------

    async def stop(self, request: hotswap_pb2.StopABTestRequest) -> hotswap_pb2.ABTest:
        test = self.get(request.id)
        running = self._running.get(request.id)
        if running is None:
            if not request.promote_winner:
                return test
            if not test.winner or test.promotion_swap_id:
                done = "promoted it already" if test.promotion_swap_id else "named no winner"
                raise FailedPrecondition(
                    f"A/B test {request.id} has ended and {done} ({test.ended_reason}); "
                    "swap the alias to the model you want instead"
                )
            # Ended on its winner without promote_winner: promote it now.
            promoted = hotswap_pb2.ABTest()
            promoted.CopyFrom(test)
            model_id = next(a.model_id for a in test.arms if a.name == test.winner)
            promoted.promotion_swap_id = self._promote(promoted, model_id)
            self._store.put_test(promoted)
            self._tests[test.id] = promoted
            return promoted
        winner = _winner(running)
        if request.promote_winner and winner is None:
            raise FailedPrecondition(
                f"A/B test {request.id} has no winner yet, so there is none to promote; "
                "stop it without promote_winner, or let it run"
            )
        return self._end(running, "stopped by request", winner, promote=request.promote_winner)

    def _time_up(self, test_id: str) -> None:
        running = self._running.get(test_id)
        if running is not None:
            self._end(running, f"its {running.test.max_duration_ms} ms are up")

    def _end(
        self, running: _Running, reason: str, winner: int | None = None, promote: bool = False
    ) -> hotswap_pb2.ABTest:
        test = running.test
        del self._running[test.id]
        if running.timer is not None:
            running.timer.cancel()
        why = reason if winner is not None else f"{reason}; no winner"
        ended = _ended(self._snapshot(running), why)
        route = self._routes.find(alias=test.alias)
        if route is not None and route.split.id == test.id:
            self._routes.set_route(test.alias, 0, route.model_id)  # the split ends
        if winner is not None and (promote or test.promote_winner):
            ended.promotion_swap_id = self._promote(ended, test.arms[winner].model_id)
        self._store.put_test(ended)
        self._tests[test.id] = ended
        log.info("A/B test %s ended: %s", test.id, ended.ended_reason)
        return ended

    def _promote(self, test: hotswap_pb2.ABTest, model_id: str) -> str:
        route = self._routes.find(alias=test.alias)
        if route is not None and route.model_id == model_id:
            test.ended_reason += f"; '{model_id}' serves the alias already"
            return ""
        try:
            swap = self._swaps.start(
                hotswap_pb2.SwapRequest(alias=test.alias, target_model_id=model_id)
            )
        except (FailedPrecondition, NotFound, InvalidRequest) as exc:
            test.ended_reason += f"; not promoted: {exc.message}"
            return ""
        test.ended_reason += f"; swap {swap.swap_id} promotes '{model_id}'"
        return swap.swap_id

    def _snapshot(self, running: _Running) -> hotswap_pb2.ABTest:
        test = hotswap_pb2.ABTest()
        test.CopyFrom(running.test)
        test.results.extend(arm.result() for arm in running.arms)
        winner = _winner(running)
        if winner is not None:
            test.winner = test.arms[winner].name
        test.confidence = _confidence(running, winner)
        return test

    async def close(self) -> None:
        for running in self._running.values():
            if running.timer is not None:
                running.timer.cancel()
        self.flush()


def _winner(running: _Running) -> int | None:
    """The arm that every comparison it is in has decided for; None when there is none."""
    for arm in range(len(running.arms)):
        if all(
            c.decided and (c.better == "a") == (i == arm)
            for (i, j), c in running.comparisons.items()
            if arm in (i, j)
        ):
            return arm
    return None


def _confidence(running: _Running, winner: int | None) -> float:
    """1 - the winner's weakest comparison's p-value over all pairs (the best arm's, before)."""
    pairs = len(running.comparisons)
    if winner is None:
        best = [min(c.p_value for c in running.comparisons.values())]
    else:
        best = [c.p_value for (i, j), c in running.comparisons.items() if winner in (i, j)]
    return max(0.0, 1.0 - min(1.0, max(best) * pairs))


def _ended(test: hotswap_pb2.ABTest, reason: str) -> hotswap_pb2.ABTest:
    ended = hotswap_pb2.ABTest()
    ended.CopyFrom(test)
    ended.running = False
    ended.ended_reason = reason
    ended.finished_at.GetCurrentTime()
    return ended


def describe_split(split: hotswap_pb2.Split) -> str:
    if split.kind == Split.KIND_CANARY:
        return f"canary swap {split.id}"
    return f"A/B test {split.id}"
