"""BatchGenerate and Compare: many generations at once, one result per item.

An item that fails does not fail the batch: its slot holds the status code
and message the item would have got on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from modelyard.config.security import InputLimitsConfig
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.deadline import CallDeadline
from modelyard.gateway.guarded import GuardedGateway
from modelyard.gateway.request_limits import check_bounds
from modelyard_client.errors import InvalidRequest, ModelyardError, cap_message
from modelyard_client.v1 import common_pb2, gateway_pb2

# Items of one batch run at most this many at a time.
BATCH_CONCURRENCY = 8


async def generate_batch(
    core: GatewayCore | GuardedGateway,
    requests: Sequence[gateway_pb2.GenerateRequest],
    deadline: CallDeadline | None = None,
    api_key: str | None = None,
) -> list[gateway_pb2.BatchItemResult]:
    """Every item charged to the caller's API key, as if sent one by one, within the one
    deadline of the whole call (None: the default deadline from now)."""
    if not requests:
        raise InvalidRequest("the batch is empty", field="requests")
    limit = _input_limits(core).max_batch_items
    if len(requests) > limit:
        raise InvalidRequest(
            f"the batch has {len(requests)} items; the limit is {limit} "
            "(security.input_limits.max_batch_items)",
            field="requests",
        )
    return await _each(core, requests, deadline, api_key)


async def _each(
    core: GatewayCore | GuardedGateway,
    requests: Sequence[gateway_pb2.GenerateRequest],
    deadline: CallDeadline | None,
    api_key: str | None,
) -> list[gateway_pb2.BatchItemResult]:
    """Every item generated, `BATCH_CONCURRENCY` at a time, each failure in its own slot."""
    deadline = deadline or core.deadline(None)
    gate = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def one(request: gateway_pb2.GenerateRequest) -> gateway_pb2.BatchItemResult:
        async with gate:
            try:
                return gateway_pb2.BatchItemResult(
                    response=await core.generate(request, deadline, api_key)
                )
            except ModelyardError as exc:
                return gateway_pb2.BatchItemResult(
                    error=gateway_pb2.ItemError(
                        code=exc.code.value[0], message=cap_message(exc.message)
                    )
                )

    return list(await asyncio.gather(*(one(r) for r in requests)))


async def compare(
    core: GatewayCore | GuardedGateway,
    request: gateway_pb2.CompareRequest,
    deadline: CallDeadline | None = None,
    api_key: str | None = None,
) -> list[gateway_pb2.BatchItemResult]:
    """The same input on every model in `request.models`, concurrently."""
    # The whole call's (models within security.input_limits.max_compare_models): every
    # item would carry the same input and params.
    check_bounds(request, limits=_input_limits(core))
    if len(request.models) < 1:
        raise InvalidRequest("compare needs at least one model")
    if len(set(request.models)) != len(request.models):
        raise InvalidRequest("compare lists a model more than once")
    items = [
        gateway_pb2.GenerateRequest(
            model=model, input=request.input, params=request.params or common_pb2.GenerationParams()
        )
        for model in request.models
    ]
    return await _each(core, items, deadline, api_key)


def _input_limits(core: GatewayCore | GuardedGateway) -> InputLimitsConfig:
    """The gateway's `security.input_limits`, through the security stages or not."""
    return (core.core if isinstance(core, GuardedGateway) else core).settings.input_limits
