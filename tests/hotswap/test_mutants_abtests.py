"""How an A/B test ends: the split it leaves, the promotion's whole reason, the log line
(killing mutmut's survivors in `hotswap.abtests.ABTests._end` and `_promote`).

A real route table in SQLite and real swaps, as in test_abtests.py; the catalog can lose a
model while a test runs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hotswap.swap_fakes import InstantAnswers, SmallCatalog

from modelyard.hotswap.abtests import ABTests
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Swaps, SwapSettings
from modelyard_client.errors import FailedPrecondition, ModelNotFound
from modelyard_client.v1 import common_pb2, hotswap_pb2

A, B = "up/a", "up/b"
Outcome = hotswap_pb2.ArmOutcome


class ShrinkingCatalog(SmallCatalog):
    """A `SmallCatalog` a model can be removed from."""

    def __init__(self, *model_ids: str) -> None:
        super().__init__(*model_ids)
        self.removed: set[str] = set()

    def get(self, model_id: str) -> common_pb2.ModelEntry:
        if model_id in self.removed:
            raise ModelNotFound(model_id)
        return super().get(model_id)


class Lab:
    def __init__(self, path: Path) -> None:
        self.catalog = ShrinkingCatalog(A, B)
        self.routes = RouteTable(HotSwapStore(path))
        self.routes.seed({"chat": A}, {})
        self.swaps = Swaps(
            self.routes,
            self.routes.store,
            self.catalog,
            InstantAnswers(),
            SwapSettings(grace_period_s=0),
        )
        self.tests = ABTests(self.routes, self.routes.store, self.catalog, self.swaps)

    async def close(self) -> None:
        await self.tests.close()
        await self.swaps.close()
        self.routes.close()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    lab = Lab(tmp_path / "hotswap.sqlite3")
    yield lab
    await lab.close()


def _start(lab: Lab, promote: bool = True) -> hotswap_pb2.ABTest:
    return lab.tests.start(
        hotswap_pb2.StartABTestRequest(
            alias="chat",
            arms=[
                hotswap_pb2.ABArm(name="a", model_id=A, weight=0.5),
                hotswap_pb2.ABArm(name="b", model_id=B, weight=0.5),
            ],
            promote_winner=promote,
        )
    )


def _run_until_won(lab: Lab, test: hotswap_pb2.ABTest, faster: str) -> hotswap_pb2.ABTest:
    """Feed outcomes in which arm `faster` is 20 ms faster until the test ends."""
    rng = random.Random(3)
    for n in range(400):
        for arm in ("a", "b"):
            mean = 100 if arm == faster else 120
            lab.tests.record(
                Outcome(
                    split_id=test.id,
                    arm=arm,
                    request_id=f"{arm}-{n}",
                    latency_ms=rng.gauss(mean, 10),
                )
            )
        if not lab.tests.get(test.id).running:
            break
    ended = lab.tests.get(test.id)
    assert not ended.running and ended.winner == faster
    return ended


async def test_a_promoted_winner_is_named_with_its_swap_after_the_reason(lab: Lab) -> None:
    ended = _run_until_won(lab, _start(lab), "b")
    swap_id = ended.promotion_swap_id
    assert swap_id
    assert ended.ended_reason == (f"arm 'b' is better on latency; swap {swap_id} promotes 'up/b'")


async def test_a_winner_that_serves_the_alias_already_is_not_swapped_to(lab: Lab) -> None:
    ended = _run_until_won(lab, _start(lab), "a")
    assert ended.promotion_swap_id == ""
    assert ended.ended_reason == ("arm 'a' is better on latency; 'up/a' serves the alias already")
    assert lab.routes.get("chat").model_id == A


async def test_a_winner_whose_swap_is_refused_ends_the_test_unpromoted_saying_why(
    lab: Lab,
) -> None:
    test = _start(lab)
    lab.catalog.removed.add(B)  # the registry dropped it while the test ran
    ended = _run_until_won(lab, test, "b")
    assert ended.promotion_swap_id == ""
    assert ended.ended_reason == (
        "arm 'b' is better on latency; not promoted: model 'up/b' is not in the catalog"
    )
    assert lab.routes.get("chat").model_id == A


async def test_ending_a_test_leaves_a_split_that_is_not_its_own(lab: Lab) -> None:
    test = _start(lab, promote=False)
    other = hotswap_pb2.Split(
        id="other-1",
        kind=hotswap_pb2.Split.KIND_CANARY,
        arms=[
            hotswap_pb2.ABArm(name="old", model_id=A, weight=0.9),
            hotswap_pb2.ABArm(name="new", model_id=B, weight=0.1),
        ],
    )
    lab.routes.set_route("chat", 0, A, split=other)
    stopped = await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=test.id))
    assert not stopped.running
    assert lab.routes.get("chat").split == other


async def test_the_end_is_logged_with_the_tests_id_and_reason(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelyard.hotswap.abtests")
    test = _start(lab, promote=False)
    await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=test.id))
    ended = [r.getMessage() for r in caplog.records if "ended" in r.getMessage()]
    assert ended == [f"A/B test {test.id} ended: stopped by request; no winner"]


async def test_the_tests_are_listed_oldest_first_ended_or_running(lab: Lab) -> None:
    first = _start(lab, promote=False)
    await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=first.id))
    second = _start(lab, promote=False)
    listed = lab.tests.list()
    assert [(t.id, t.running) for t in listed] == [(first.id, False), (second.id, True)]


async def test_promoting_an_ended_test_without_a_winner_is_refused_saying_so(lab: Lab) -> None:
    test = _start(lab, promote=False)
    await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=test.id))
    with pytest.raises(FailedPrecondition) as refused:
        await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=test.id, promote_winner=True))
    assert refused.value.message == (
        f"A/B test {test.id} has ended and named no winner (stopped by request; no winner); "
        "swap the alias to the model you want instead"
    )
