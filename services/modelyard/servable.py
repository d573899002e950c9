"""Which health states may be sent requests: one rule for selecting, balancing and calling.

Unspecified counts as servable (nothing has reported otherwise yet), and so
does degraded (slow or partly failing, still answering). Unhealthy and
unavailable never are.
"""

from __future__ import annotations

from modelyard_client.v1 import common_pb2

SERVABLE_HEALTH = frozenset(
    {
        common_pb2.HEALTH_STATUS_UNSPECIFIED,
        common_pb2.HEALTH_STATUS_HEALTHY,
        common_pb2.HEALTH_STATUS_DEGRADED,
    }
)


def servable_health(health: common_pb2.HealthStatus.ValueType) -> bool:
    """Whether a model or deployment in this health state may be sent requests."""
    return health in SERVABLE_HEALTH


def servable(entry: common_pb2.ModelEntry) -> bool:
    """The model may be sent requests and at least one of its deployments may too."""
    return servable_health(entry.health) and any(
        servable_health(d.health) for d in entry.deployments
    )
