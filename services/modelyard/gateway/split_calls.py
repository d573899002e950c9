"""A call to an alias whose route carries a split: which arm takes it.

`split_arm` draws the call's arm from its sticky key; `GatewayCore` sends the
call to that arm's model and reports the outcome of its first attempt
(`arm_outcomes.py`). Nothing here runs for a call without a split.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelyard.gateway.arm_outcomes import ArmCall
from modelyard.gateway.route_view import SplitPlan
from modelyard_client.v1 import gateway_pb2, hotswap_pb2

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
