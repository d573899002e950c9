"""`ListSwaps`'s choice: newest first, running only, one route's, at most a limit; every bad
filter refused naming its field."""

from __future__ import annotations

import pytest

from modelyard.hotswap.swap_list import DEFAULT_LIMIT, listed
from modelyard.hotswap.swaps import ENDED
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import hotswap_pb2, selector_pb2

Status = hotswap_pb2.SwapStatus
CODE = selector_pb2.TASK_TYPE_CODE


def _swap(swap_id: str, phase: int, alias: str = "chat", task_type: int = 0) -> Status:
    return Status(swap_id=swap_id, phase=phase, alias=alias, task_type=task_type)  # type: ignore[arg-type]


SWAPS = [  # oldest first, as the service keeps them
    _swap("s1", Status.PHASE_DONE),
    _swap("s2", Status.PHASE_ROLLED_BACK, alias="other"),
    _swap("s3", Status.PHASE_FAILED, alias="", task_type=CODE),
    _swap("s4", Status.PHASE_WARMING, alias="", task_type=CODE),
    _swap("s5", Status.PHASE_DRAINING),
]


def _ids(**fields: object) -> list[str]:
    request = hotswap_pb2.ListSwapsRequest(**fields)  # type: ignore[arg-type]
    return [s.swap_id for s in listed(SWAPS, request, ENDED)]


def test_every_swap_newest_first_and_the_running_ones() -> None:
    assert _ids() == ["s5", "s4", "s3", "s2", "s1"]
    assert _ids(running_only=True) == ["s5", "s4"]


def test_one_routes_swaps_by_alias_or_task_type() -> None:
    assert _ids(alias="chat") == ["s5", "s1"]
    assert _ids(task_type=CODE) == ["s4", "s3"]
    assert _ids(task_type=CODE, running_only=True) == ["s4"]
    assert _ids(alias="never-swapped") == []


def test_a_limit_keeps_the_newest_and_none_means_the_default() -> None:
    assert _ids(limit=2) == ["s5", "s4"]
    many = [_swap(f"m{i}", Status.PHASE_DONE) for i in range(DEFAULT_LIMIT + 5)]
    answered = listed(many, hotswap_pb2.ListSwapsRequest(), ENDED)
    assert [s.swap_id for s in answered] == [f"m{i}" for i in range(DEFAULT_LIMIT + 4, 4, -1)]
    assert len(listed(many, hotswap_pb2.ListSwapsRequest(limit=1000), ENDED)) == len(many)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"limit": 1001}, "limit", "limit 1001 is over 1000: ask for fewer"),
        (
            {"alias": "chat", "task_type": CODE},
            "alias",
            "a route is for an alias or a task type, not both",
        ),
        ({"task_type": 999}, "task_type", "task_type 999 is not a TaskType value"),
    ],
)
def test_a_bad_filter_is_refused_naming_its_field(
    fields: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _ids(**fields)
    assert refused.value.field == field
    assert refused.value.message.startswith(message)


def test_a_bad_alias_is_refused_naming_it() -> None:
    with pytest.raises(InvalidRequest) as refused:
        _ids(alias="Not An Alias")
    assert refused.value.field == "alias"
    assert "Not An Alias" in refused.value.message
