"""The security stages' deadline (killing mutmut's survivor in
`gateway.guarded.GuardedGateway.deadline`, docs/testing.md, the sixth session, which no
test reached): a deadline the client set is the call's, none is the gateway's default.
An Embed reaches the core with the call's deadline and key (`GuardedGateway.embed`, the
tenth session).

On a `GuardedGateway` around a real `GatewayCore` (an empty catalog copy: no call made).
"""

from __future__ import annotations

import pytest

from modelyard.gateway import guarded as guarded_module
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.deadline import CallDeadline
from modelyard.gateway.guarded import SecurityStages
from modelyard.gateway.settings import GatewaySettings
from modelyard_client.v1 import gateway_pb2


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


async def test_an_embed_reaches_the_core_with_the_callers_deadline_and_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`GuardedGateway.embed` hands `embeddings.embed` the core, the request, and the
    call's own deadline and API key (killing `embed` 27, 28 and 32: the default deadline
    and no key, so no per-key limit, would be used)."""
    core = GatewayCore(CatalogView(), BackendPool(), settings=GatewaySettings())
    guarded = SecurityStages().around(core, core)
    calls: list[tuple[object, gateway_pb2.EmbedRequest, object, object]] = []

    async def embed(
        core: GatewayCore,
        request: gateway_pb2.EmbedRequest,
        deadline: CallDeadline | None = None,
        api_key: str | None = None,
    ) -> gateway_pb2.EmbedResponse:
        calls.append((core, request, deadline, api_key))
        return gateway_pb2.EmbedResponse(model_id="scripted/embed")

    monkeypatch.setattr(guarded_module, "embed", embed)
    request = gateway_pb2.EmbedRequest(model="scripted/embed", inputs=["one", "two"])
    deadline = guarded.deadline(2.5)
    answer = await guarded.embed(request, deadline, "key-1")
    assert answer == gateway_pb2.EmbedResponse(model_id="scripted/embed")
    assert calls == [(core, request, deadline, "key-1")]
    assert calls[0][1] is request  # nothing to redact: the caller's request itself
