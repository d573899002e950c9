"""The security stages' deadline (killing mutmut's survivor in
`gateway.guarded.GuardedGateway.deadline`, docs/testing.md, the sixth session, which no
test reached): a deadline the client set is the call's, none is the gateway's default.

On a `GuardedGateway` around a real `GatewayCore` (an empty catalog copy: no call made).
"""

from __future__ import annotations

import pytest

from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.guarded import SecurityStages
from modelyard.gateway.settings import GatewaySettings


def test_the_guarded_gateways_deadline_is_the_clients_or_else_the_default() -> None:
    core = GatewayCore(
        CatalogView(), BackendPool(), settings=GatewaySettings(default_deadline_s=30)
    )
    guarded = SecurityStages().around(core, core)
    clients = guarded.deadline(2.5)
    assert (clients.seconds, clients.set_by_caller) == (2.5, True)
    assert clients.remaining() == pytest.approx(2.5, abs=0.5)
    default = guarded.deadline(None)
    assert (default.seconds, default.set_by_caller) == (30, False)
