"""The gateway's copy of the routes: a task type's route (killing mutmut's survivors in
`gateway.route_view.RouteView.for_task`, and in `.routes`, which no test reached); a split
no call could be drawn on, left out and logged saying why (`SplitPlan.of`, `_plans`: the
tenth session, docs/testing.md); a watch resumes after the copy's revision in its table
(`RouteView._open`, against a hot-swap service that records what it was asked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from modelyard.gateway import route_view
from modelyard.gateway.route_view import RouteView, SplitPlan
from modelyard_client.v1 import hotswap_pb2, selector_pb2

RouteChange = hotswap_pb2.RouteChange
CODE, CHAT = selector_pb2.TASK_TYPE_CODE, selector_pb2.TASK_TYPE_CHAT


def _view(*routes: hotswap_pb2.Route) -> RouteView:
    view = RouteView()
    view.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=0))
    for revision, route in enumerate(routes, 1):
        view.apply(RouteChange(kind=RouteChange.KIND_UPSERTED, route=route, revision=revision))
    return view


def test_a_task_type_has_its_own_route_and_no_other_types() -> None:
    view = _view(
        hotswap_pb2.Route(task_type=CODE, model_id="scripted/coder"),
        hotswap_pb2.Route(alias="chat-default", model_id="scripted/echo"),
    )
    route = view.for_task(CODE)
    assert route is not None
    assert (route.task_type, route.model_id) == (CODE, "scripted/coder")
    assert view.for_task(CHAT) is None
    assert view.for_task(0) is None  # no task type: never routed by task


def test_a_route_naming_no_task_type_is_no_route_for_an_unknown_task() -> None:
    # The service never stores one (route_key refuses it); were one streamed, a request whose
    # task type stays unspecified is still not routed by it.
    view = _view(hotswap_pb2.Route(model_id="scripted/stray"))
    assert view.for_task(0) is None


def test_routes_lists_every_route_the_copy_holds() -> None:
    alias = hotswap_pb2.Route(alias="chat-default", model_id="scripted/echo")
    task = hotswap_pb2.Route(task_type=CODE, model_id="scripted/coder")
    view = _view(alias, task)
    assert sorted(view.routes(), key=lambda r: r.model_id) == [
        hotswap_pb2.Route(task_type=CODE, model_id="scripted/coder"),
        hotswap_pb2.Route(alias="chat-default", model_id="scripted/echo"),
    ]
    assert _view().routes() == []


def _split_route(*arms: tuple[str, str, float]) -> hotswap_pb2.Route:
    route = hotswap_pb2.Route(alias="chat-ab", model_id="scripted/echo")
    route.split.id = "ab-1"
    for name, model_id, weight in arms:
        route.split.arms.add(name=name, model_id=model_id, weight=weight)
    return route


@pytest.mark.parametrize(
    ("arms", "why"),
    [
        ((("a", "m/a", 0.5), ("b", "", 0.5)), "arm 1 ('b') names no model"),
        ((("a", "m/a", 0.5), ("b", "m/b", -1.0)), "arm 1 ('b') has weight -1.0"),
        ((("a", "m/a", math.nan), ("b", "m/b", 0.5)), "arm 0 ('a') has weight nan"),
        ((("a", "m/a", 0.5), ("b", "m/b", math.inf)), "arm 1 ('b') has weight inf"),
        ((("a", "m/a", 0.0), ("b", "m/b", 0.0)), "every arm's weight is 0"),
    ],
    ids=["no-model", "negative", "nan", "infinite", "all-zero"],
)
def test_a_split_no_call_could_be_drawn_on_is_left_out_and_logged_saying_why(
    arms: tuple[tuple[str, str, float], ...], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=route_view.__name__)
    with pytest.raises(ValueError) as refused:
        SplitPlan.of(_split_route(*arms).split)
    assert str(refused.value) == why
    view = _view(_split_route(*arms))  # a live change: the alias is served by its model
    assert dict(view.splits) == {}
    view.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=2))  # a snapshot: the same
    assert dict(view.splits) == {}
    assert [r.getMessage() for r in caplog.records if r.name == route_view.__name__] == [
        f"split 'ab-1' of alias 'chat-ab' is ignored ({why}): the alias is served by scripted/echo"
    ] * 2


def test_a_snapshot_of_routes_without_a_split_plans_nothing_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=route_view.__name__)
    view = _view(
        hotswap_pb2.Route(alias="chat-default", model_id="scripted/echo"),
        _split_route(("a", "m/a", 1.0)),
    )
    view.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=3))
    assert list(view.splits) == ["chat-ab"]
    assert caplog.records == []


class _RecordingWatch:
    """A hot-swap service's WatchRoutes that keeps each request and answers it with
    `changes` (by default one SYNCED at the revision asked for)."""

    def __init__(self, *changes: hotswap_pb2.RouteChange) -> None:
        self.changes = changes
        self.asked: list[hotswap_pb2.WatchRoutesRequest] = []

    async def watch(
        self, request: hotswap_pb2.WatchRoutesRequest, context: Any
    ) -> AsyncIterator[hotswap_pb2.RouteChange]:
        self.asked.append(request)
        for change in self.changes or (
            RouteChange(
                kind=RouteChange.KIND_SYNCED, revision=request.after_revision, table_id="table-1"
            ),
        ):
            yield change


async def _follow_once(view: RouteView, service: _RecordingWatch) -> None:
    """`view` follows `service` until its watch has been answered once (SYNCED)."""
    handler = grpc.unary_stream_rpc_method_handler(
        service.watch,
        request_deserializer=hotswap_pb2.WatchRoutesRequest.FromString,
        response_serializer=RouteChange.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "modelyard.v1.HotSwapService", {"WatchRoutes": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    view.synced.clear()
    following = asyncio.create_task(view.follow(f"127.0.0.1:{port}", retry_s=60))
    try:
        await asyncio.wait_for(view.synced.wait(), timeout=10)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await server.stop(0)


async def test_a_watch_resumes_after_the_copys_revision_in_its_table() -> None:
    view = _view(hotswap_pb2.Route(alias="chat-default", model_id="scripted/echo"))
    view.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=7, table_id="table-1"))
    service = _RecordingWatch()
    await _follow_once(view, service)
    assert service.asked == [hotswap_pb2.WatchRoutesRequest(after_revision=7, table_id="table-1")]


async def test_a_snapshot_read_by_the_watch_brings_its_splits_at_synced() -> None:
    view = RouteView()  # revision 0: the watch reads a full snapshot aside
    split = _split_route(("a", "m/a", 1.0))
    service = _RecordingWatch(
        RouteChange(kind=RouteChange.KIND_UPSERTED, route=split, revision=1),
        RouteChange(
            kind=RouteChange.KIND_UPSERTED,
            route=hotswap_pb2.Route(alias="chat-default", model_id="scripted/echo"),
            revision=2,
        ),
        RouteChange(kind=RouteChange.KIND_SYNCED, revision=2, table_id="table-1"),
    )
    await _follow_once(view, service)
    assert service.asked == [hotswap_pb2.WatchRoutesRequest()]
    assert sorted(view.aliases()) == ["chat-ab", "chat-default"]
    assert dict(view.splits) == {"chat-ab": SplitPlan.of(split.split)}


def test_a_split_in_a_half_read_snapshot_is_not_planned_before_synced() -> None:
    view = RouteView()
    view._pending = {}  # as `follow` does at revision 0: the snapshot is read aside
    split = _split_route(("a", "m/a", 1.0))
    view.apply(RouteChange(kind=RouteChange.KIND_UPSERTED, route=split, revision=1))
    assert (view.for_alias("chat-ab"), dict(view.splits)) == (None, {})
    view.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=1, table_id="table-1"))
    assert view.for_alias("chat-ab") == split
    assert dict(view.splits) == {"chat-ab": SplitPlan.of(split.split)}
