"""Which models a call tries, in order, and what it raises when none of them served.

A call starts on the model it names (an alias resolved once, to its route's model; the
caller's key checked), or, naming none, on its task type's route or the selector's best
few. After its first failure the chain grows by the request's fallback models, those set
at run time (`SetFallbacks`: the alias's route's, then its first model's) and the file's
(the model's profile's, then the policy's), each model once and only those the caller's
key may use. A context-length refusal passes over the models whose window is no larger.
"""

from __future__ import annotations

from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.route_view import RouteView
from modelyard.gateway.settings import GatewaySettings
from modelyard.security.principal import current_principal
from modelyard.security.scopes import check_model, may_use_model, usable_models
from modelyard.selector.selection import Selector
from modelyard.selector.task_analysis import analyse, check_task_enums
from modelyard_client.errors import (
    AllModelsFailed,
    Attempt,
    ContextLengthExceeded,
    FailedPrecondition,
    ModelNotFound,
    ModelyardError,
)
from modelyard_client.v1 import gateway_pb2, selector_pb2


class ModelChain:
    """The models of a call of `GatewayCore`, from its catalog, routes and selector."""

    def __init__(
        self,
        catalog: CatalogView,
        routes: RouteView | None,
        selector: Selector | None,
        settings: GatewaySettings,
    ) -> None:
        self.catalog = catalog
        self.routes = routes
        self.selector = selector
        self.settings = settings

    def start(self, request: gateway_pb2.GenerateRequest) -> list[str]:
        """The models a call not drawn to a split's arm starts with: the one it names, or,
        naming none, its task type's route or the selector's few the caller's key may use."""
        if request.model:
            return [self.resolve(request.model)]
        return usable_models(current_principal(), self._route_task(request))

    def with_fallbacks(self, chain: list[str], request: gateway_pb2.GenerateRequest) -> list[str]:
        """`chain`, then the request's fallback models, then those set at run time (the
        alias's route's, then its first model's: `SetFallbacks`), then the file's for
        its first model (its profile's, then the policy's), each model once."""
        live: list[str] = []
        if self.routes is not None:
            route = self.routes.for_alias(request.model) if request.model else None
            if route is not None:
                live.extend(route.fallback_models)
            live.extend(self.routes.fallbacks_of(chain[0]))
        configured = self.settings.fallbacks_of(chain[0], request.task.agent_id)
        extra = [*request.fallback_models, *live, *configured]
        # A key limited to some models falls back only to those.
        principal = current_principal()
        resolved = [(name, self.route_of(name)) for name in extra]
        usable = [model for name, model in resolved if may_use_model(principal, name, model)]
        return list(dict.fromkeys([*chain, *usable]))

    def next_model(
        self,
        chain: list[str],
        index: int,
        exc: ModelyardError,
        failures: list[Attempt],
        errors: list[ModelyardError],
    ) -> int:
        """The index of the model to try after `chain[index]` failed with `exc`.

        After a context-length refusal, the models whose known window is no
        larger than the refusing model's are passed over (each recorded as an
        attempt): they cannot take the prompt either.
        """
        index += 1
        if not isinstance(exc, ContextLengthExceeded):
            return index
        refused_by = self._known_window(chain[index - 1])
        while index < len(chain) and refused_by:
            window = self._known_window(chain[index])
            if not window or window > refused_by:
                break
            skipped = ContextLengthExceeded(
                f"model '{chain[index]}' has a context window of {window} tokens, no larger "
                f"than that of '{chain[index - 1]}', which the prompt did not fit",
                provider_code=exc.provider_code,
            )
            failures.append(Attempt.of(chain[index], skipped))
            errors.append(skipped)
            index += 1
        return index

    def _known_window(self, model_id: str) -> int:
        """The catalog's context window of `model_id`; 0 when unknown (or the model is)."""
        try:
            return self.catalog.get(model_id).context_window
        except ModelNotFound:
            return 0

    def resolve(self, model: str) -> str:
        """The catalog id `model` names (`route_of`), which the caller's key may use:
        `PermissionDenied` naming `model` when its key is limited to other models."""
        resolved = self.route_of(model)
        check_model(current_principal(), model, resolved)
        return resolved

    def route_of(self, model: str) -> str:
        """The catalog id `model` names: itself, or the model its alias's route points at.

        Resolved once, when the call starts: a call keeps the model it started
        on though the route moves while it runs.
        """
        if self.routes is None or "/" in model:  # catalog ids always have one, aliases never
            return model
        route = self.routes.for_alias(model)
        return route.model_id if route is not None else model

    def _route_task(self, request: gateway_pb2.GenerateRequest) -> list[str]:
        """No model named: the route of the request's task type, else the selector's choice."""
        if self.routes is not None and self.routes.routes_tasks():
            self.routes.check_fresh()
            task_type = request.task.type
            if task_type:  # named: routed as it is, its enums checked (analyse checks them)
                check_task_enums(request.task)
            else:
                task_type = analyse(request.task, request.input, request.params).type
            route = self.routes.for_task(task_type)
            if route is not None:
                return [route.model_id]
        return self._select(request)

    def _select(self, request: gateway_pb2.GenerateRequest) -> list[str]:
        """No model named: the selector's best few, best first (the rest are fallbacks)."""
        if self.selector is None:
            raise FailedPrecondition("no model named and this gateway has no selector")
        task = selector_pb2.Task()
        task.CopyFrom(request.task)
        task.input.CopyFrom(request.input)
        if not task.max_output_tokens:
            task.max_output_tokens = request.params.max_tokens or self.settings.default_max_tokens
        ranked = self.selector.ranked(
            selector_pb2.SelectRequest(task=task, constraints=request.constraints),
            request.params,  # a response schema requires a model with JSON output
        )
        return ranked[: self.settings.selection_fallbacks + 1]


def chain_failed(
    chain: list[str], failures: list[Attempt], errors: list[ModelyardError]
) -> ModelyardError:
    """What a chain none of whose models served raises: the original failure.

    One model: its first failure, as it came. Unknown models only: NOT_FOUND as
    for one; prompts too long for every window: the first refusal, as for one.
    Any other failure among them may pass on a retry: UNAVAILABLE, each attempt
    (retries included) saying what it met.
    """
    if len(chain) == 1:
        return errors[0]
    if all(isinstance(e, ModelNotFound) for e in errors):
        return ModelNotFound.none_known(failures)
    if all(isinstance(e, ContextLengthExceeded) for e in errors):
        return errors[0]
    return AllModelsFailed(failures)
