"""The route table: keys, persistence, seeding from the configuration, and its watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
from conftest import StorePlace

from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.route_keys import TASK_TYPES, describe, route_key
from modelyard_client.errors import FailedPrecondition, InvalidRequest, NotFound
from modelyard_client.v1 import hotswap_pb2, selector_pb2

Change = hotswap_pb2.RouteChange
CODE = selector_pb2.TASK_TYPE_CODE


def _table(place: StorePlace) -> RouteTable:
    return RouteTable(HotSwapStore(place("hotswap.sqlite3")))


async def _next(changes: AsyncGenerator[Change, None]) -> Change:
    return await asyncio.wait_for(anext(changes), timeout=5)


def test_a_route_is_stored_read_back_and_survives_a_restart(store_place: StorePlace) -> None:
    table = _table(store_place)
    first = table.set_route("chat-default", 0, "local/gemma")
    assert (first.alias, first.model_id, first.revision) == ("chat-default", "local/gemma", 1)
    assert first.updated_at.seconds > 0
    code = table.set_route("", CODE, "ollama/qwen2.5-coder:7b")
    assert code.revision == 2
    moved = table.set_route("chat-default", 0, "openai/gpt-4o-mini")
    assert moved.revision == 3
    table_id = table.table_id
    table.close()

    again = _table(store_place)
    assert again.table_id == table_id
    assert again.revision == 3
    assert again.get("chat-default") == moved
    assert again.get(task_type=CODE) == code
    # Aliases by name first, then task types.
    assert [r.alias or describe(r) for r in again.routes()] == ["chat-default", "task type code"]


def test_pointing_a_route_where_it_points_makes_no_revision(store_place: StorePlace) -> None:
    table = _table(store_place)
    table.set_route("a", 0, "local/x")
    assert table.set_route("a", 0, "local/x").revision == 1
    assert table.revision == 1


def test_the_configuration_seeds_only_routes_the_table_lacks(store_place: StorePlace) -> None:
    table = _table(store_place)
    assert table.seed({"chat-default": "local/a"}, {CODE: "local/coder"}) == [
        "alias:chat-default",
        "task:TASK_TYPE_CODE",
    ]
    table.set_route("chat-default", 0, "local/b")  # a swap moved it
    table.close()
    again = _table(store_place)
    assert again.seed({"chat-default": "local/a", "new": "local/n"}, {CODE: "local/other"}) == [
        "alias:new"
    ]
    assert again.get("chat-default").model_id == "local/b"  # the swap outlives the restart
    assert again.get(task_type=CODE).model_id == "local/coder"


def test_the_configuration_names_task_types_by_their_short_names() -> None:
    assert TASK_TYPES["code"] == CODE
    assert TASK_TYPES["speech_to_text"] == selector_pb2.TASK_TYPE_SPEECH_TO_TEXT
    assert "unspecified" not in TASK_TYPES
    assert len(TASK_TYPES) == len(selector_pb2.TaskType.values()) - 1


@pytest.mark.parametrize(
    ("alias", "task_type", "message", "field"),
    [
        (
            "openai/gpt-4o",
            0,
            "the alias 'openai/gpt-4o' is not 1-63 characters of a-z 0-9 . _ -, "
            "starting with a letter or digit",
            "alias",
        ),
        ("a" * 64, 0, "the alias is 64 characters, over 63", "alias"),
        ("a", CODE, "a route is for an alias or a task type, not both", "alias"),
        ("", 0, "name a route: set alias or task_type", "alias"),
    ],
)
def test_a_bad_route_name_is_refused_naming_the_field(
    alias: str, task_type: int, message: str, field: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        route_key(alias, task_type)
    assert info.value.message == message
    assert info.value.field == field


def test_an_unknown_task_type_is_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        route_key(task_type=99)
    assert info.value.message.startswith("task_type 99 is not a TaskType value; known: 0 (")
    assert info.value.field == "task_type"


def test_a_route_to_a_bad_model_id_is_refused_and_nothing_is_stored(
    store_place: StorePlace,
) -> None:
    table = _table(store_place)
    table.set_route("a", 0, "local/x")
    with pytest.raises(InvalidRequest) as info:
        table.set_route("a", 0, "no-slash")
    assert info.value.field == "model_id"
    assert info.value.message.startswith("model id 'no-slash' is invalid: ")
    assert table.get("a").model_id == "local/x"
    assert table.revision == 1


def test_a_missing_route_is_not_found_naming_it(store_place: StorePlace) -> None:
    table = _table(store_place)
    with pytest.raises(NotFound) as info:
        table.get("nope")
    assert info.value.message == "no route for alias 'nope'"
    with pytest.raises(NotFound) as info:
        table.get(task_type=CODE)
    assert info.value.message == "no route for task type code"


async def test_a_watch_sends_every_route_then_synced_then_live_changes(
    store_place: StorePlace,
) -> None:
    table = _table(store_place)
    table.set_route("a", 0, "local/x")
    table.set_route("b", 0, "local/y")
    changes = table.watch(0)
    try:
        got = [await _next(changes) for _ in range(3)]
        assert [(c.kind, c.route.alias, c.revision) for c in got] == [
            (Change.KIND_UPSERTED, "a", 1),
            (Change.KIND_UPSERTED, "b", 2),
            (Change.KIND_SYNCED, "", 2),
        ]
        assert got[2].table_id == table.table_id
        table.set_route("a", 0, "local/z")
        live = await _next(changes)
        assert (live.kind, live.route.model_id, live.revision) == (
            Change.KIND_UPSERTED,
            "local/z",
            3,
        )
    finally:
        await changes.aclose()


async def test_a_resumed_watch_sends_only_what_changed_since(store_place: StorePlace) -> None:
    table = _table(store_place)
    table.set_route("a", 0, "local/x")
    table.set_route("b", 0, "local/y")
    table.set_route("a", 0, "local/z")  # a is now at revision 3, b at 2
    changes = table.watch(2, table.table_id)
    try:
        first, synced = await _next(changes), await _next(changes)
        assert (first.route.alias, first.route.model_id, first.revision) == ("a", "local/z", 3)
        assert (synced.kind, synced.revision) == (Change.KIND_SYNCED, 3)
    finally:
        await changes.aclose()


async def test_a_resume_in_another_table_or_ahead_of_it_is_refused(store_place: StorePlace) -> None:
    table = _table(store_place)
    table.set_route("a", 0, "local/x")
    with pytest.raises(FailedPrecondition) as info:
        await anext(table.watch(1, "another"))
    assert info.value.message == (
        f"after_revision 1 counts in route table another, not in this service's table "
        f"{table.table_id} (it started over); resume with after_revision=0"
    )
    with pytest.raises(FailedPrecondition) as info:
        await anext(table.watch(5, table.table_id))
    assert info.value.message == (
        "after_revision 5 is ahead of the route table (revision 1); resume with after_revision=0"
    )


async def test_ending_the_watches_ends_each_stream_after_what_it_holds(
    store_place: StorePlace,
) -> None:
    table = _table(store_place)
    changes = table.watch(0)
    assert (await _next(changes)).kind == Change.KIND_SYNCED
    table.set_route("a", 0, "local/x")
    table.end_watches()
    assert (await _next(changes)).route.alias == "a"
    with pytest.raises(StopAsyncIteration):
        await _next(changes)
