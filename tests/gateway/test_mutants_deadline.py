"""The deadline of one gateway call (`gateway/deadline.py` `CallDeadline`): its exact
figures, which mutation testing found checked only through whole calls (docs/testing.md).

The instants are taken on a clock frozen for the test (`time.monotonic` as the module
sees it), so a deadline's `at` and what `remaining` gives are exact, not "about".
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from modelyard.gateway import deadline as deadline_module
from modelyard.gateway.deadline import CallDeadline
from modelyard_client.errors import DeadlineExceeded, FirstTokenTimeout, StreamStalled


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    frozen = _Clock(1000.0)
    monkeypatch.setattr(deadline_module, "time", SimpleNamespace(monotonic=frozen.monotonic))
    return frozen


def test_a_call_that_set_no_deadline_gets_the_default_from_now(clock: _Clock) -> None:
    deadline = CallDeadline.start(None, 60.0)
    assert deadline == CallDeadline(60.0, 1060.0, set_by_caller=False)
    assert deadline.set_by_caller is False


def test_the_callers_own_deadline_is_kept_from_now_whatever_the_default(clock: _Clock) -> None:
    deadline = CallDeadline.start(2.5, 60.0)
    assert deadline == CallDeadline(2.5, 1002.5, set_by_caller=True)
    assert deadline.set_by_caller is True


def test_what_remains_is_the_time_to_the_deadline_then_zero(clock: _Clock) -> None:
    deadline = CallDeadline.start(2.5, 60.0)
    assert deadline.remaining() == 2.5
    clock.now = 1002.0
    assert deadline.remaining() == 0.5
    clock.now = 1002.5
    assert deadline.remaining() == 0.0
    clock.now = 1010.0
    assert deadline.remaining() == 0.0


def test_a_passed_default_deadline_is_named_with_its_seconds_and_the_cause(clock: _Clock) -> None:
    cause = DeadlineExceeded("the backend sent nothing")
    named = CallDeadline.start(None, 60.0).exceeded(cause)
    assert type(named) is DeadlineExceeded
    assert named.message == (
        "no answer within the default deadline of 60s (the call set none: set a deadline on "
        "the call, or server.default_deadline): the backend sent nothing"
    )
    assert str(named) == named.message


def test_the_callers_own_deadline_passing_is_left_as_it_came(clock: _Clock) -> None:
    cause = DeadlineExceeded("the backend sent nothing")
    assert CallDeadline.start(2.5, 60.0).exceeded(cause) is cause


@pytest.mark.parametrize("set_by_caller", [False, True])
@pytest.mark.parametrize(
    "cause", [FirstTokenTimeout("no first token in 5s"), StreamStalled("nothing for 2s")]
)
def test_a_models_own_deadline_keeps_its_reason_whoever_set_the_calls(
    clock: _Clock, cause: DeadlineExceeded, set_by_caller: bool
) -> None:
    deadline = CallDeadline.start(2.5 if set_by_caller else None, 60.0)
    assert deadline.exceeded(cause) is cause
