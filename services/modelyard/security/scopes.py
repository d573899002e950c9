"""Which scope each RPC needs, and which models a key may use.

`RPC_SCOPES` names every RPC of every service in ``proto/`` (a test fails on
one missing): a call is let in when its principal has one of the RPC's scopes
(`Principal.may`; ADMIN may do everything). An RPC not in the table is
refused while authentication is on: a new RPC is closed until it is given a
row here.

- GENERATE: the data plane and reads (the catalog, routes, swaps' status, the live
  figures).
- ADMIN: everything that changes what serves whom: registry writes, providers,
  health and performance, discovery, backend Load/Unload, swaps, A/B tests,
  fallbacks, keys.
- BACKEND, a service identity (the service key): what the services do to each
  other — a backend announcing its models (RegisterModel, UpdatePerformance),
  the gateway watching the catalog and routes and reporting split outcomes,
  the gateway and hot-swap calling backends (Infer, InferStream, Load,
  Unload). `BackendService` reached directly on a gateway's port so needs
  BACKEND: it does not bypass the gateway's keys and quotas.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelyard.security.principal import ADMIN, BACKEND, GENERATE, Principal
from modelyard_client.errors import PermissionDenied

_G, _A, _B = (GENERATE,), (ADMIN,), (BACKEND,)
_GB = (GENERATE, BACKEND)
_AB = (ADMIN, BACKEND)

# "modelyard.v1.Service/Method" -> the scopes any one of which lets a call in.
RPC_SCOPES: Mapping[str, tuple[str, ...]] = {
    # the data plane
    "modelyard.v1.GatewayService/Generate": _G,
    "modelyard.v1.GatewayService/GenerateStream": _G,
    "modelyard.v1.GatewayService/BatchGenerate": _G,
    "modelyard.v1.GatewayService/Compare": _G,
    "modelyard.v1.GatewayService/Embed": _G,
    "modelyard.v1.GatewayService/GetModelMetrics": _G,  # reads, as the catalog's
    "modelyard.v1.GatewayService/GetProviderMetrics": _G,
    # writes each model's quality to the registry: what serves whom changes
    "modelyard.v1.GatewayService/EvaluateModel": _A,
    "modelyard.v1.SelectorService/Select": _G,
    # the registry
    "modelyard.v1.RegistryService/RegisterModel": _AB,  # a backend announcing itself
    "modelyard.v1.RegistryService/RegisterModelVersion": _A,
    "modelyard.v1.RegistryService/UnregisterModel": _A,
    "modelyard.v1.RegistryService/PinModelVersion": _A,
    "modelyard.v1.RegistryService/UpdateHealth": _A,
    "modelyard.v1.RegistryService/UpdatePerformance": _AB,  # a backend's cold start
    "modelyard.v1.RegistryService/UpdateQuality": _AB,  # a gateway's evaluation
    "modelyard.v1.RegistryService/AddProvider": _A,
    "modelyard.v1.RegistryService/RemoveProvider": _A,
    "modelyard.v1.RegistryService/Discover": _A,
    "modelyard.v1.RegistryService/GetModel": _GB,
    "modelyard.v1.RegistryService/ListModels": _GB,
    "modelyard.v1.RegistryService/ListModelVersions": _G,
    "modelyard.v1.RegistryService/ListProviders": _G,
    "modelyard.v1.RegistryService/WatchModels": _GB,  # the gateway's catalog copy
    # hot-swap
    "modelyard.v1.HotSwapService/GetRoute": _G,
    "modelyard.v1.HotSwapService/ListRoutes": _G,
    "modelyard.v1.HotSwapService/WatchRoutes": _GB,  # the gateway's route copy
    "modelyard.v1.HotSwapService/Swap": _A,
    "modelyard.v1.HotSwapService/Rollback": _A,
    "modelyard.v1.HotSwapService/GetSwap": _G,
    "modelyard.v1.HotSwapService/WatchSwap": _G,
    "modelyard.v1.HotSwapService/ListSwaps": _G,
    "modelyard.v1.HotSwapService/StartABTest": _A,
    "modelyard.v1.HotSwapService/StopABTest": _A,
    "modelyard.v1.HotSwapService/GetABTest": _G,
    "modelyard.v1.HotSwapService/ListABTests": _G,
    "modelyard.v1.HotSwapService/Feedback": _G,
    "modelyard.v1.HotSwapService/ReportOutcomes": _B,  # the gateways' split outcomes
    "modelyard.v1.HotSwapService/SetFallbacks": _A,
    # backends: the gateway's and hot-swap's calls, never a client's
    "modelyard.v1.BackendService/Infer": _B,
    "modelyard.v1.BackendService/InferStream": _B,
    "modelyard.v1.BackendService/Embed": _B,
    "modelyard.v1.BackendService/ListModels": _B,
    "modelyard.v1.BackendService/Health": _B,
    "modelyard.v1.BackendService/Load": _AB,
    "modelyard.v1.BackendService/Unload": _AB,
    # keys
    "modelyard.v1.KeyService/CreateKey": _A,
    "modelyard.v1.KeyService/ListKeys": _A,
    "modelyard.v1.KeyService/GetKey": _A,
    "modelyard.v1.KeyService/RotateKey": _A,
    "modelyard.v1.KeyService/RevokeKey": _A,
    # the audit log: who did what is the admins' to read
    "modelyard.v1.AuditService/QueryAudit": _A,
    "modelyard.v1.AuditService/QueryUsage": _A,
}


def check_rpc(principal: Principal, rpc: str) -> None:
    """Raise `PermissionDenied` unless `principal` may call `rpc` ("modelyard.v1.S/M")."""
    needed = RPC_SCOPES.get(rpc)
    if needed is None:
        raise PermissionDenied(f"{rpc} has no scope yet; it is closed while keys are required")
    if not any(principal.may(scope) for scope in needed):
        raise PermissionDenied(
            f"key '{principal.key_id}' may not call {rpc}: it needs the {' or '.join(needed)} scope"
        )


def may_use_model(principal: Principal | None, requested: str, resolved: str) -> bool:
    """Whether `principal` may use the model a request named `requested` (an alias or a
    catalog id) that resolved to `resolved`. No principal, or one without a model
    list: every model."""
    if principal is None or not principal.models:
        return True
    return requested in principal.models or resolved in principal.models


def check_model(principal: Principal | None, requested: str, resolved: str) -> None:
    """Raise `PermissionDenied` naming the model unless `principal` may use it."""
    if not may_use_model(principal, requested, resolved):
        assert principal is not None
        shown = requested or resolved  # the name the caller used; the route's model else
        raise PermissionDenied(f"key '{principal.key_id}' may not use model '{shown}'")


def usable_models(principal: Principal | None, chain: list[str]) -> list[str]:
    """The models of `chain` (chosen for a request that named none) `principal` may use,
    in order; `PermissionDenied` naming the first when it may use none."""
    usable = [model for model in chain if may_use_model(principal, "", model)]
    if chain and not usable:
        check_model(principal, "", chain[0])
    return usable
