"""How a route is named: by its alias or its task type, one key rule for every reader.

The hot-swap service's table, the gateway's copy of it and the configuration
all key a route the same way: ``alias:chat-default``, ``task:TASK_TYPE_CODE``,
or ``model:ollama/gemma3:4b`` for a model's own fallback list. They never
meet, since an alias is a name (`catalog_ids.name_problem`: no ``:``, no
``/``), task keys are fixed, and model keys have their own prefix.
"""

from __future__ import annotations

from modelyard.catalog_ids import catalog_id_problem, name_problem
from modelyard.enum_values import check_known, value_name
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import hotswap_pb2, selector_pb2

_TASK_TYPES = selector_pb2.TaskType.DESCRIPTOR
# Task types by the names the configuration uses: "chat", "code", "speech_to_text".
TASK_TYPES: dict[str, int] = {
    v.name.removeprefix("TASK_TYPE_").lower(): v.number for v in _TASK_TYPES.values if v.number
}


def alias_key(alias: str) -> str:
    """The key of an alias's route (`route_key` checks the alias first)."""
    return f"alias:{alias}"


def task_key(task_type: int) -> str:
    """The key of a task type's route (`route_key` checks the task type first)."""
    return f"task:{value_name(_TASK_TYPES, task_type)}"


def model_key(model_id: str) -> str:
    """The key of a model's fallback list (`route_key` checks the id first)."""
    return f"model:{model_id}"


def route_key(alias: str = "", task_type: int = 0, for_model: str = "") -> str:
    """The key of the route for `alias`, `task_type` or `for_model` (exactly one is set).

    `InvalidRequest` naming the field for a bad alias, an unknown task type, a
    bad catalog id, more than one or none.
    """
    if for_model:
        if alias or task_type:
            raise InvalidRequest(
                "a route is for an alias, a task type or a model, not more than one",
                field="for_model",
            )
        problem = catalog_id_problem(for_model)
        if problem is not None:
            raise InvalidRequest(
                f"for_model {for_model!r} is invalid: {problem}", field="for_model"
            )
        return model_key(for_model)
    if alias and task_type:
        raise InvalidRequest("a route is for an alias or a task type, not both", field="alias")
    if alias:
        problem = name_problem("the alias", alias)
        if problem is not None:
            raise InvalidRequest(problem, field="alias")
        return alias_key(alias)
    if task_type:
        check_known(_TASK_TYPES, task_type, "task_type")
        return task_key(task_type)
    raise InvalidRequest("name a route: set alias or task_type", field="alias")


def describe(route: hotswap_pb2.Route) -> str:
    """How messages name a route: "alias 'chat-default'", "task type code", "model 'a/b'"."""
    if route.alias:
        return f"alias '{route.alias}'"
    if route.for_model:
        return f"model '{route.for_model}'"
    return (
        f"task type {value_name(_TASK_TYPES, route.task_type).removeprefix('TASK_TYPE_').lower()}"
    )
