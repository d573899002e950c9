"""What `GatewayService.EvaluateModel` does: resolve the models, run the suite, store each
model's mean score as its quality in the registry.

A requested name is a catalog id or an alias (the model its route serves now); the
quality is stored under the catalog id, so the selector reads it whatever the alias
later points at. Storing goes through the registry's `UpdateQuality` (the gateway's
service credentials); a store that fails is reported, not raised: the scores stand.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from google.protobuf.timestamp_pb2 import Timestamp

from modelyard.evaluation.runner import Ask, evaluate
from modelyard.evaluation.suites import resolve
from modelyard_client.errors import ModelyardError
from modelyard_client.v1 import common_pb2, gateway_pb2

log = logging.getLogger(__name__)

StoreQuality = Callable[[str, common_pb2.ModelQuality], Awaitable[object]]
# The catalog id a requested name means now (a catalog id, or an alias's model); raises
# `ModelNotFound` for a name that is neither.
CatalogId = Callable[[str], str]


async def evaluate_models(
    request: gateway_pb2.EvaluateModelRequest,
    ask: Ask,
    catalog_id: CatalogId,
    store: StoreQuality | None,
) -> gateway_pb2.EvaluateModelResponse:
    """Refused before any call when the suite or a model is wrong (`InvalidRequest`,
    `NotFound`, `ModelNotFound` naming it); otherwise every model's evaluation."""
    suite = resolve(request)
    models = [catalog_id(name) for name in request.models]
    evaluations = await evaluate(ask, models, suite, request.concurrency)
    if not request.dry_run:
        now = Timestamp()
        now.GetCurrentTime()
        for evaluation in evaluations:
            if store is None:
                continue  # no registry to write to (a gateway without one cannot start)
            quality = common_pb2.ModelQuality(
                score=evaluation.score,
                suite=suite.name,
                cases=len(evaluation.cases),
                evaluated_at=now,
            )
            try:
                await store(evaluation.model_id, quality)
            except ModelyardError as err:
                log.warning("quality of %s not stored: %s", evaluation.model_id, err.message)
                continue
            evaluation.stored = True
    return gateway_pb2.EvaluateModelResponse(suite=suite.name, models=evaluations)
