"""A call to an alias whose route carries a split: which arm takes it, and what it reports.

`split_arm` draws the call's arm from its sticky key; `arm_attempt` wraps the
arm model's attempt and reports its outcome (`arm_outcomes.py`) once it ends.
`GatewayCore` uses both; nothing here runs for a call without a split.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping

from modelyard.gateway.arm_outcomes import ArmCall, ArmOutcomes
from modelyard.gateway.route_view import SplitPlan
from modelyard_client.errors import BackendUnavailable, ModelNotFound
from modelyard_client.v1 import gateway_pb2, hotswap_pb2

# Refusals before the backend call that are the arm's model's doing (unknown, not
# servable, no usable deployment): they count against the arm. Any other refusal
# before it (the request's own fault, the caller's budget) is not the arm's.
ARM_CANNOT_SERVE = (BackendUnavailable, ModelNotFound)
_STICKY = hotswap_pb2.StickyBy


def split_arm(
    splits: Mapping[str, SplitPlan],
    request: gateway_pb2.GenerateRequest,
    request_id: str,
    api_key: str | None,
    streamed: bool,
) -> ArmCall | None:
    """The arm of the split on `request.model`'s route that takes this call; None when
    that route has no split (or the model is a catalog id, or none is named).

    The arm is drawn from the call's sticky key, by the split's `sticky_by`:
    the conversation, the caller's API key or the end user, else (no such
    key, or `sticky_by` REQUEST) the request id, so the call is drawn alone.
    """
    plan = splits.get(request.model)
    if plan is None:
        return None
    sticky_by = plan.sticky_by
    key = ""
    if sticky_by == _STICKY.STICKY_BY_CONVERSATION:
        key = request.conversation_id
    elif sticky_by == _STICKY.STICKY_BY_API_KEY:
        key = api_key or ""
    elif sticky_by == _STICKY.STICKY_BY_USER:
        key = request.user
    index = plan.arm_for(key or request_id)
    model_id = plan.model_ids[index]
    return ArmCall(plan.split_id, plan.names[index], model_id, request_id, streamed)


async def arm_attempt(
    attempt: AsyncGenerator[gateway_pb2.GenerateChunk, None],
    arm: ArmCall,
    outcomes: ArmOutcomes | None,
) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
    """`attempt` (the arm model's), reporting its outcome once it ends (None: routed, not
    reported).

    Failed: the arm's model failed the call, once it was sent to its backend
    (a backend error, a truncated or cut stream, the deadline passed) or
    because the model cannot serve (`ARM_CANNOT_SERVE`), fallback models
    or not. Not reported: a refusal before the backend for the request's own
    fault (invalid for the model, the caller's rate limit), and a call the
    caller cancels before its answer finished.
    """

    def report(outcome: hotswap_pb2.ArmOutcome) -> None:
        if outcomes is not None:
            outcomes.record(outcome)

    usage = None
    try:
        async for chunk in attempt:
            if not arm.first_piece_at:
                arm.first_piece_at = time.perf_counter()
            if chunk.finish_reason:
                usage = chunk.usage
            yield chunk
    except Exception as exc:
        if arm.reached_backend or isinstance(exc, ARM_CANNOT_SERVE):
            report(arm.outcome(failed=True))
        raise
    except BaseException:  # cancelled, or closed by the caller
        if usage is not None:  # the whole answer had reached the caller
            report(arm.outcome(failed=False, usage=usage))
        raise
    report(arm.outcome(failed=False, usage=usage))
