"""A swap's validation: the target answers a prompt, with a finish reason, within the timeout.

`BackendValidator` is also the swaps' `Loader`: it has the backends serving a
model load it (beside the version it replaces, which the backend's memory
budget must hold too) and unload it.

The prompt goes straight to one of the target's deployments (the backend
that will serve it, through the same `BackendPool` the gateway calls), not
through a gateway: a validation is not a client's request, and spends no
client's rate limit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.balancing import Balancer
from modelyard.servable import servable_health
from modelyard_client.errors import DeadlineExceeded, StreamTruncated
from modelyard_client.v1 import backend_pb2, common_pb2

# Enough for "OK" and a little more; a validation checks that the model answers.
VALIDATION_MAX_TOKENS = 16


class BackendValidator:
    def __init__(self, backends: BackendPool, balancer: Balancer | None = None) -> None:
        self._backends = backends
        self._balancer = balancer or Balancer()

    async def answer(self, model: common_pb2.ModelEntry, prompt: str, timeout_s: float) -> None:
        """Ask `model` `prompt`; a `ModelyardError` unless it finishes within `timeout_s`."""
        model_input = common_pb2.Input()
        model_input.chat.messages.add(role="user", content=prompt)
        request = backend_pb2.InferRequest(
            model_id=model.id,
            input=model_input,
            params=common_pb2.GenerationParams(max_tokens=VALIDATION_MAX_TOKENS),
            request_id=f"swap-validation-{uuid.uuid4().hex[:12]}",
        )
        lease = self._balancer.lease(model)  # BackendUnavailable when no deployment can serve
        ok = False
        finish = common_pb2.FINISH_REASON_UNSPECIFIED
        try:
            async with asyncio.timeout(timeout_s):
                async for chunk in self._backends.infer_stream(
                    lease.deployment, request, timeout_s
                ):
                    finish = chunk.finish_reason or finish
            ok = True
        except TimeoutError:
            raise DeadlineExceeded(
                f"'{model.id}' did not answer a validation prompt within {timeout_s:g}s"
            ) from None
        finally:
            lease.finish(ok)
        if finish == common_pb2.FINISH_REASON_UNSPECIFIED:
            raise StreamTruncated(
                f"'{model.id}' ended its answer to a validation prompt without a finish reason"
            )

    async def prepare(self, model: common_pb2.ModelEntry, keep_loaded: Sequence[str]) -> None:
        """Each servable deployment of `model` loads it beside `keep_loaded`."""
        for deployment in model.deployments:
            if servable_health(deployment.health):
                await self._backends.load(deployment, model.id, keep_loaded)

    async def release(self, model: common_pb2.ModelEntry) -> None:
        """Each deployment of `model` unloads it once its calls have finished."""
        for deployment in model.deployments:
            await self._backends.unload(deployment, model.id)
