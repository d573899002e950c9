"""One rule for which health states take requests: selector, balancer and gateway agree."""

from __future__ import annotations

from typing import TypeAlias

import pytest

from modelyard.gateway.balancing import Balancer
from modelyard.gateway.core import _check_servable
from modelyard.selector.candidates import candidate_of
from modelyard.servable import servable, servable_health
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2

C = common_pb2
Health: TypeAlias = C.HealthStatus.ValueType
SERVABLE: dict[Health, bool] = {
    C.HEALTH_STATUS_UNSPECIFIED: True,
    C.HEALTH_STATUS_HEALTHY: True,
    C.HEALTH_STATUS_DEGRADED: True,
    C.HEALTH_STATUS_UNHEALTHY: False,
    C.HEALTH_STATUS_UNAVAILABLE: False,
}


def test_every_health_state_is_decided() -> None:
    assert set(SERVABLE) == set(C.HealthStatus.values())
    assert {h: servable_health(h) for h in SERVABLE} == SERVABLE


def _model(model_health: Health, deployment_health: Health) -> C.ModelEntry:
    entry = C.ModelEntry(id="p/m", health=model_health)
    entry.deployments.add(backend="p", endpoint="127.0.0.1:9", health=deployment_health)
    return entry


@pytest.mark.parametrize("health", sorted(SERVABLE))
def test_the_selector_counts_a_model_as_its_health_says(health: Health) -> None:
    assert candidate_of(_model(health, C.HEALTH_STATUS_HEALTHY)).healthy is SERVABLE[health]
    assert candidate_of(_model(C.HEALTH_STATUS_HEALTHY, health)).healthy is SERVABLE[health]
    assert servable(_model(health, health)) is SERVABLE[health]


def test_a_model_with_no_deployment_is_not_servable() -> None:
    assert not servable(C.ModelEntry(id="p/m", health=C.HEALTH_STATUS_HEALTHY))


@pytest.mark.parametrize("health", sorted(SERVABLE))
def test_the_balancer_picks_a_deployment_as_its_health_says(health: Health) -> None:
    model = _model(C.HEALTH_STATUS_HEALTHY, health)
    if SERVABLE[health]:
        lease = Balancer().lease(model)
        assert lease.deployment.endpoint == "127.0.0.1:9"
        lease.finish(ok=True)
    else:
        with pytest.raises(BackendUnavailable):
            Balancer().lease(model)


@pytest.mark.parametrize("health", sorted(SERVABLE))
def test_the_gateway_calls_a_model_as_its_health_says(health: Health) -> None:
    model = _model(health, C.HEALTH_STATUS_HEALTHY)
    if SERVABLE[health]:
        _check_servable(model)
    else:
        with pytest.raises(BackendUnavailable) as refused:
            _check_servable(model)
        assert refused.value.message == f"model 'p/m' is {C.HealthStatus.Name(health)}"
