"""How `GatewayCore` builds a call's chain, at the points mutation testing found unchecked
(docs/testing.md, the fourth run): a request naming no model takes its task type's route
(the type it names, else the one analysed from its input), and after a context-length
refusal the models whose window is no larger are passed over, each recorded as an
attempt saying why.

The core runs on a real `CatalogView`, `RouteView`, `BackendPool` and in-process
`BackendHost` with a `ScriptedEngine`, and no selector: a request the routes do not
take fails with the core's own "no selector" refusal, so the route is the only way
to an answer.
"""

from __future__ import annotations

import pytest
from support.scripted_engine import ScriptedEngine

from modelyard.backends.host import BackendHost
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.route_view import RouteView
from modelyard_client.errors import (
    AllModelsFailed,
    ContextLengthExceeded,
    FailedPrecondition,
    InvalidRequest,
    ModelyardError,
)
from modelyard_client.v1 import common_pb2, gateway_pb2, hotswap_pb2, registry_pb2, selector_pb2

Change = registry_pb2.ModelChange
RouteChange = hotswap_pb2.RouteChange
ENDPOINT = "127.0.0.1:1"  # never dialled: the pool calls the host in this process
CHAT_MODEL, CODER = "scripted/echo", "scripted/coder"
CODE, CHAT = selector_pb2.TASK_TYPE_CODE, selector_pb2.TASK_TYPE_CHAT
UNNAMED = selector_pb2.TASK_TYPE_UNSPECIFIED
CODE_FENCE = "fix this:\n```python\nprint(1\n```"  # analysed as a code task
NO_SELECTOR = "no model named and this gateway has no selector"


def _catalog(entries: list[common_pb2.ModelEntry], deployed: set[str]) -> CatalogView:
    view = CatalogView()
    for revision, entry in enumerate(entries, 1):
        entry.health = common_pb2.HEALTH_STATUS_HEALTHY
        if entry.id in deployed:
            entry.deployments.add(
                backend="scripted", endpoint=ENDPOINT, health=common_pb2.HEALTH_STATUS_HEALTHY
            )
        view.apply(Change(kind=Change.KIND_UPSERTED, revision=revision, model=entry))
    return view


async def _pool(engine: ScriptedEngine) -> BackendPool:
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process(ENDPOINT, host)
    return pool


def _task_routes(*routes: tuple[selector_pb2.TaskType.ValueType, str]) -> RouteView:
    view = RouteView()
    view.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=0))
    for revision, (task_type, model_id) in enumerate(routes, 1):
        route = hotswap_pb2.Route(task_type=task_type, model_id=model_id)
        view.apply(RouteChange(kind=RouteChange.KIND_UPSERTED, route=route, revision=revision))
    return view


def _request(
    text: str, task_type: selector_pb2.TaskType.ValueType = UNNAMED
) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest()  # no model named
    request.input.text = text
    request.params.max_tokens = 4
    request.task.type = task_type
    return request


async def _answer(core: GatewayCore, request: gateway_pb2.GenerateRequest) -> str:
    """The id of the model that answered."""
    return (await core.generate(request)).model_id


async def _failure(core: GatewayCore, request: gateway_pb2.GenerateRequest) -> ModelyardError:
    with pytest.raises(ModelyardError) as info:
        await core.generate(request)
    return info.value


# --- a task type's route -----------------------------------------------------------------


@pytest.fixture
async def code_routed() -> tuple[GatewayCore, ScriptedEngine]:
    """A core whose one route sends code tasks to the coder; no selector."""
    engine = ScriptedEngine((CHAT_MODEL, CODER))
    view = _catalog(engine.models(), {CHAT_MODEL, CODER})
    core = GatewayCore(view, await _pool(engine), routes=_task_routes((CODE, CODER)))
    return core, engine


async def test_a_named_task_type_takes_its_route_whatever_the_input_looks_like(
    code_routed: tuple[GatewayCore, ScriptedEngine],
) -> None:
    core, engine = code_routed
    assert await _answer(core, _request("hello there", CODE)) == CODER
    assert [model for model, _, _ in engine.calls] == [CODER]


async def test_a_named_task_type_is_not_replaced_by_the_one_analysed(
    code_routed: tuple[GatewayCore, ScriptedEngine],
) -> None:
    """A chat task with a code fence in it is a chat task: no route, so the selector's."""
    core, engine = code_routed
    error = await _failure(core, _request(CODE_FENCE, CHAT))
    assert (type(error), error.message) == (FailedPrecondition, NO_SELECTOR)
    assert engine.calls == []


async def test_a_task_type_not_named_is_analysed_from_the_input_and_routed(
    code_routed: tuple[GatewayCore, ScriptedEngine],
) -> None:
    core, engine = code_routed
    assert await _answer(core, _request(CODE_FENCE)) == CODER
    assert [model for model, _, _ in engine.calls] == [CODER]


async def test_a_task_type_without_a_route_goes_to_the_selector(
    code_routed: tuple[GatewayCore, ScriptedEngine],
) -> None:
    core, engine = code_routed
    error = await _failure(core, _request("hello there"))  # analysed: chat, not routed
    assert (type(error), error.message) == (FailedPrecondition, NO_SELECTOR)
    assert engine.calls == []


def test_routes_of_task_types_are_told_apart_from_aliases() -> None:
    aliases_only = RouteView()
    aliases_only.apply(RouteChange(kind=RouteChange.KIND_SYNCED, revision=0))
    route = hotswap_pb2.Route(alias="chat", model_id=CHAT_MODEL)
    aliases_only.apply(RouteChange(kind=RouteChange.KIND_UPSERTED, route=route, revision=1))
    assert aliases_only.routes_tasks() is False
    assert _task_routes((CODE, CODER)).routes_tasks() is True


# --- the context-window skip after a refusal ---------------------------------------------


async def test_models_no_larger_than_the_refusing_one_are_passed_over_each_saying_why() -> None:
    """A refuses the prompt at 4,096 tokens; B (4,096: equal) and C (2,048) are passed over
    unasked, each attempt naming its window and the model before it; D (8,192) is tried,
    and fails for want of a deployment, so the call fails with every attempt."""
    refusal = ContextLengthExceeded("the prompt does not fit 4096 tokens", provider_code="ctx")
    engine = ScriptedEngine(("m/a", "m/b", "m/c"), fail_with=refusal)
    entries = engine.models()
    entries[2].context_window = 2048
    wide = common_pb2.ModelEntry(id="m/d", provider="scripted", context_window=8192)
    core = GatewayCore(_catalog([*entries, wide], {"m/a", "m/b", "m/c"}), await _pool(engine))
    request = _request("hi")
    request.model = "m/a"
    request.fallback_models.extend(["m/b", "m/c", "m/d"])
    error = await _failure(core, request)
    assert isinstance(error, AllModelsFailed)
    assert [(a.model_id, a.reason, a.message) for a in error.attempts] == [
        ("m/a", "CONTEXT_LENGTH_EXCEEDED", "the prompt does not fit 4096 tokens"),
        (
            "m/b",
            "CONTEXT_LENGTH_EXCEEDED",
            "model 'm/b' has a context window of 4096 tokens, no larger than that of 'm/a', "
            "which the prompt did not fit",
        ),
        (
            "m/c",
            "CONTEXT_LENGTH_EXCEEDED",
            "model 'm/c' has a context window of 2048 tokens, no larger than that of 'm/b', "
            "which the prompt did not fit",
        ),
        ("m/d", "BACKEND_UNAVAILABLE", "model 'm/d' has no deployment: no backend serves it"),
    ]
    assert [model for model, _, _ in engine.calls] == ["m/a"]


async def test_a_routed_task_naming_an_unknown_modality_is_refused_before_any_backend_call(
    code_routed: tuple[GatewayCore, ScriptedEngine],
) -> None:
    core, engine = code_routed
    request = _request("hello there", CODE)
    request.task.input_modality = 99  # type: ignore[assignment]
    error = await _failure(core, request)
    assert isinstance(error, InvalidRequest)
    assert error.message.startswith("task.input_modality 99 is not a Modality value; known: ")
    assert engine.calls == []
