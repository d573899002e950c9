"""The gateway's copy of the routes: a task type's route (killing mutmut's survivors in
`gateway.route_view.RouteView.for_task`, and in `.routes`, which no test reached)."""

from __future__ import annotations

from modelyard.gateway.route_view import RouteView
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
