"""An entry stored with an unknown health value (before the registry refused them) is not servable,
and saying so never fails: UNAVAILABLE naming the value, not INTERNAL."""

from __future__ import annotations

import pytest

from modelyard.gateway.core import _check_servable
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2


def test_an_unknown_stored_health_is_unavailable_naming_the_value() -> None:
    entry = common_pb2.ModelEntry(id="p/m", provider="p")
    entry.health = 99  # type: ignore[assignment]  # what an old catalog may hold
    entry.deployments.add(backend="b", endpoint="127.0.0.1:1")
    with pytest.raises(BackendUnavailable) as info:
        _check_servable(entry)
    assert info.value.message == "model 'p/m' is unknown HealthStatus value 99"
