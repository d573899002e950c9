"""The gateway's Embed call: vectors for texts, from one model with CAPABILITY_EMBEDDING.

check the request → resolve the model as Generate resolves it (an alias's route,
the caller's key's models) → refuse a model that makes no embeddings → reserve
rate-limit budget and spend for the input estimate → lease a deployment → the
backend's Embed → settle with the input tokens it counted, priced by
`call_cost_usd`, and note them in the call's audit row.

Every check runs before any backend call: the request's bounds (the table in
`request_limits`: the model, 1 to 2,048 inputs, the request id), no empty
text, the texts' bytes together within the input size limit
(``security.input_limits.max_input_bytes``, as a Generate's input), and
`dimensions` at most `MAX_DIMENSIONS`. The security stages come first
(`GuardedGateway.embed`: guardrails and anonymization over the inputs); the
audit row is the interceptor's, `note_served` adds what the call used.

Retries: the gateway's retry rules on the same model (`retries.step_after`,
`CallTries`: a 429, a 5xx, an upstream unreachable before it answered), each
attempt reserving and settling its own budget as a Generate attempt does. No
fallback to another model: vectors from two models are not comparable, so an
answer from a model the caller did not name would be wrong, not degraded.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from modelyard.config.security import InputLimitsConfig
from modelyard.gateway.arm_outcomes import call_cost_usd
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.deadline import CallDeadline
from modelyard.gateway.request_limits import check_bounds
from modelyard.gateway.retries import CallTries, Step, step_after
from modelyard.model_input import estimate_input_tokens, input_size_bytes
from modelyard.security.audit import note_attempt, note_served
from modelyard_client.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    InvalidRequest,
    ModelyardError,
    RequestTooLarge,
)
from modelyard_client.v1 import backend_pb2, common_pb2, gateway_pb2

# OpenAI's text-embedding-3-large makes 3,072; no model known makes more than 16,384.
MAX_DIMENSIONS = 65_536


def check_embed_request(request: gateway_pb2.EmbedRequest, limits: InputLimitsConfig) -> int:
    """Raise a clear error for bad input, naming the field; else the input token estimate
    (`estimate_input_tokens` of each text, summed). Nothing is called before this passes."""
    check_bounds(request, limits=limits)
    if not request.model:
        raise InvalidRequest(
            "model is empty: name a model with CAPABILITY_EMBEDDING (a catalog id or an alias)",
            field="model",
        )
    if not request.inputs:
        raise InvalidRequest("inputs is empty: give at least one text to embed", field="inputs")
    size = tokens = 0
    for i, text in enumerate(request.inputs):
        if not text:
            raise InvalidRequest(
                f"inputs[{i}] is empty: every input is a text to embed", field=f"inputs[{i}]"
            )
        one = common_pb2.Input(text=text)
        size += input_size_bytes(one)
        tokens += estimate_input_tokens(one)
    if size > limits.max_input_bytes:
        raise RequestTooLarge(
            f"inputs are {size} bytes together; the limit is {limits.max_input_bytes} bytes "
            "(security.input_limits.max_input_bytes)"
        )
    if request.dimensions > MAX_DIMENSIONS:
        raise InvalidRequest(
            f"dimensions {request.dimensions} is above the limit of {MAX_DIMENSIONS:,} "
            "(0: the model's own length)",
            field="dimensions",
        )
    return tokens


def check_embedding_model(model: common_pb2.ModelEntry, named: str) -> None:
    """`InvalidRequest` naming ``model`` when the catalog does not say `model` embeds."""
    if common_pb2.CAPABILITY_EMBEDDING not in model.capabilities:
        alias = f" (the model '{model.id}')" if named != model.id else ""
        raise InvalidRequest(
            f"model '{named}'{alias} does not make embeddings: it lacks CAPABILITY_EMBEDDING; "
            "name an embedding model",
            field="model",
        )


async def embed(
    core: GatewayCore,
    request: gateway_pb2.EmbedRequest,
    deadline: CallDeadline | None = None,
    api_key: str | None = None,
) -> gateway_pb2.EmbedResponse:
    """One vector per input, in order, with the input tokens and what they cost (see the
    module doc); `deadline` None: the gateway's default from now."""
    started = time.perf_counter()
    deadline = deadline or core.deadline(None)
    estimate = check_embed_request(request, core.settings.input_limits)
    core.catalog.check_fresh()
    model = core.servable_entry(request.model)
    check_embedding_model(model, request.model)
    request_id = request.request_id or uuid.uuid4().hex
    backend_request = backend_pb2.BackendEmbedRequest(
        model_id=model.id,
        inputs=request.inputs,
        dimensions=request.dimensions,
        request_id=request_id,
    )
    tries = CallTries(core.retry_budgets)
    while True:
        tries.starting()
        try:
            answer = await _attempt(
                core, model, backend_request, estimate, deadline, api_key, tries
            )
        except ModelyardError as exc:
            if core.in_flight.refused(exc):
                raise
            if step_after(exc, sent=tries.reached_backend) is not Step.RETRY:
                raise
            wait = tries.retry_wait_s(
                exc, model.id, core.settings.max_retries_of(model.id), deadline.remaining()
            )
            if wait is None:
                raise
            if core.events is not None:
                core.events.retry(model.id, exc.reason)
            await asyncio.sleep(wait)
            continue
        return gateway_pb2.EmbedResponse(
            model_id=model.id,
            embeddings=answer.embeddings,
            usage=answer.usage,
            request_id=request_id,
            latency_ms=(time.perf_counter() - started) * 1000,
        )


async def _attempt(
    core: GatewayCore,
    model: common_pb2.ModelEntry,
    request: backend_pb2.BackendEmbedRequest,
    estimate: int,
    deadline: CallDeadline,
    api_key: str | None,
    tries: CallTries,
) -> backend_pb2.BackendEmbedResponse:
    """One attempt on a deployment of `model`: its answer with the usage priced.

    Its reservation (the input estimate, nothing for output) is settled with what
    the backend counted; an attempt the backend refused or failed before answering
    cost nothing and is refunded; one that timed out or was abandoned keeps it
    whole, its cost upstream unknown (as a Generate attempt's)."""
    reservation = await core.limits.reserve(model, estimate, api_key, input_tokens=estimate)
    try:
        lease = core.balancer.lease(model)
    except BaseException:
        await reservation.settle(0, 0.0)
        raise
    used: int = estimate
    used_usd: float | None = None  # unknown until the backend answers
    healthy = True
    timeout = min(deadline.remaining(), core.settings.backend_timeout_s)
    try:
        async with core.in_flight.slot():
            tries.sending(model.id)
            note_attempt()
            answer = await core.backends.embed(lease.deployment, request, timeout)
        usage = answer.usage
        usage.cost_usd = call_cost_usd(usage, model.cost, estimate)  # every answer says it
        # An upstream that counts no input tokens: the estimate is settled and priced.
        used, used_usd = usage.input_tokens or estimate, usage.cost_usd
        note_served(model.id, used, 0, used_usd)
        return answer
    except DeadlineExceeded as exc:
        healthy = False
        raise deadline.exceeded(exc) from exc
    except BackendUnavailable:
        healthy = False
        used, used_usd = 0, 0.0
        raise
    except ModelyardError:
        used, used_usd = 0, 0.0  # an error answer: nothing was spent
        raise
    finally:
        lease.finish(healthy)
        await reservation.settle(used, used_usd)
