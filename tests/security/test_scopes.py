"""The scope table: every RPC of the contract has a row, and each row says what it should."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import modelyard_client.v1
from modelyard.security.principal import ADMIN, BACKEND, GENERATE, OPEN, Principal
from modelyard.security.scopes import (
    RPC_SCOPES,
    check_model,
    check_rpc,
    may_use_model,
    usable_models,
)
from modelyard_client.errors import PermissionDenied


def _contract_rpcs() -> set[str]:
    """Every RPC of every service in proto/modelyard/v1, from the generated descriptors."""
    found = set()
    for info in pkgutil.iter_modules(modelyard_client.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"modelyard_client.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            found |= {f"{service.full_name}/{m.name}" for m in service.methods}
    return found


def test_every_rpc_of_the_contract_has_a_scope_and_no_row_is_stale() -> None:
    rpcs = _contract_rpcs()
    assert len(rpcs) > 40
    assert set(RPC_SCOPES) == rpcs


CONTROL_PLANE = [
    "modelyard.v1.RegistryService/RegisterModelVersion",
    "modelyard.v1.RegistryService/UnregisterModel",
    "modelyard.v1.RegistryService/UpdateHealth",
    "modelyard.v1.RegistryService/AddProvider",
    "modelyard.v1.RegistryService/RemoveProvider",
    "modelyard.v1.RegistryService/Discover",
    "modelyard.v1.RegistryService/PinModelVersion",
    "modelyard.v1.HotSwapService/Swap",
    "modelyard.v1.HotSwapService/Rollback",
    "modelyard.v1.HotSwapService/StartABTest",
    "modelyard.v1.HotSwapService/StopABTest",
    "modelyard.v1.HotSwapService/SetFallbacks",
    "modelyard.v1.KeyService/CreateKey",
    "modelyard.v1.KeyService/ListKeys",
    "modelyard.v1.KeyService/RotateKey",
    "modelyard.v1.KeyService/RevokeKey",
    "modelyard.v1.AuditService/QueryAudit",
    "modelyard.v1.AuditService/QueryUsage",
]


@pytest.mark.parametrize("rpc", CONTROL_PLANE)
def test_the_control_plane_is_admin_only(rpc: str) -> None:
    assert RPC_SCOPES[rpc] == (ADMIN,)


@pytest.mark.parametrize(
    "rpc",
    [
        "modelyard.v1.RegistryService/RegisterModel",
        "modelyard.v1.RegistryService/UpdatePerformance",
        "modelyard.v1.BackendService/Load",
        "modelyard.v1.BackendService/Unload",
    ],
)
def test_what_services_do_to_each_other_takes_admin_or_the_service_identity(rpc: str) -> None:
    assert RPC_SCOPES[rpc] == (ADMIN, BACKEND)


@pytest.mark.parametrize(
    "rpc",
    [
        "modelyard.v1.BackendService/Infer",
        "modelyard.v1.BackendService/InferStream",
        "modelyard.v1.HotSwapService/ReportOutcomes",
    ],
)
def test_backends_and_outcome_reports_need_the_service_identity(rpc: str) -> None:
    assert RPC_SCOPES[rpc] == (BACKEND,)
    generate_key = Principal(key_id="k", scopes=frozenset({GENERATE}))
    with pytest.raises(PermissionDenied, match=f"may not call {rpc}: it needs the backend scope"):
        check_rpc(generate_key, rpc)


def test_a_generate_key_calls_the_data_plane_and_reads() -> None:
    key = Principal(key_id="k", scopes=frozenset({GENERATE}))
    for rpc in (
        "modelyard.v1.GatewayService/GenerateStream",
        "modelyard.v1.RegistryService/ListModels",
        "modelyard.v1.HotSwapService/GetSwap",
    ):
        check_rpc(key, rpc)
    with pytest.raises(PermissionDenied, match="needs the admin scope"):
        check_rpc(key, "modelyard.v1.HotSwapService/Swap")


def test_an_admin_key_may_call_everything_and_the_open_principal_too() -> None:
    admin = Principal(key_id="a", scopes=frozenset({ADMIN}))
    for rpc in RPC_SCOPES:
        check_rpc(admin, rpc)
        check_rpc(OPEN, rpc)


def test_the_service_identity_cannot_administer() -> None:
    service = Principal(key_id="service", scopes=frozenset({BACKEND}))
    check_rpc(service, "modelyard.v1.RegistryService/WatchModels")
    with pytest.raises(PermissionDenied):
        check_rpc(service, "modelyard.v1.RegistryService/UnregisterModel")
    with pytest.raises(PermissionDenied):
        check_rpc(service, "modelyard.v1.GatewayService/Generate")


def test_an_rpc_without_a_row_is_closed() -> None:
    admin = Principal(key_id="a", scopes=frozenset({ADMIN}))
    with pytest.raises(PermissionDenied, match="has no scope yet"):
        check_rpc(admin, "modelyard.v1.NewService/Anything")


LIMITED = Principal(key_id="key_a", scopes=frozenset({GENERATE}), models=frozenset({"p/a", "chat"}))


def test_a_model_list_admits_its_models_by_id_or_alias() -> None:
    assert may_use_model(LIMITED, "p/a", "p/a")
    assert may_use_model(LIMITED, "chat", "p/z")  # the alias is allowed, wherever it points
    assert not may_use_model(LIMITED, "p/b", "p/b")
    assert may_use_model(None, "p/b", "p/b") and may_use_model(OPEN, "p/b", "p/b")


def test_a_model_outside_the_list_is_denied_by_name() -> None:
    with pytest.raises(PermissionDenied) as denied:
        check_model(LIMITED, "p/b", "p/b")
    assert denied.value.message == "key 'key_a' may not use model 'p/b'"


def test_a_chosen_chain_keeps_the_usable_models_or_names_the_first() -> None:
    assert usable_models(LIMITED, ["p/b", "p/a", "p/c"]) == ["p/a"]
    with pytest.raises(PermissionDenied, match="may not use model 'p/b'"):
        usable_models(LIMITED, ["p/b", "p/c"])
