"""The audit log through a real stack: a row per call (data and control plane), queried by
filters through the admin RPC, append-only in the database, never a prompt or an answer."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.config import ModelyardConfig, parse_config
from modelyard_client.errors import PermissionDenied, error_from_rpc
from modelyard_client.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

ROLES = ("registry", "gateway")
GENERATE = "modelyard.v1.GatewayService/Generate"
PROMPT = "the canary prompt: my card is 4111 1111 1111 1111"
ANSWER = ("secret", " answer", " words")
ADMIN_KEY = "admin-key-for-the-audit-tests"


class PricedEngine(ScriptedEngine):
    """The scripted engine with prices, so an answer has a cost to record."""

    def models(self) -> list[common_pb2.ModelEntry]:
        entries = super().models()
        for entry in entries:
            entry.cost.usd_per_input_token = 0.001
            entry.cost.usd_per_output_token = 0.002
        return entries


def _config(extra: str = "") -> ModelyardConfig:
    return parse_config(
        f"model_system:\n  security:\n    audit: {{flush_interval: 50ms}}\n{extra}",
        env={"ADMIN": ADMIN_KEY},
    )


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    engine = PricedEngine(pieces=ANSWER, input_tokens=7)
    return await make_stack(roles=ROLES, engines=[engine], config=_config())


@pytest.fixture
async def channel(stack: Stack) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield channel


def _request(model: str = "scripted/echo", text: str = PROMPT) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = text
    request.params.max_tokens = 8
    return request


async def _query(
    channel: grpc.aio.Channel, key: str | None = None, **filters: Any
) -> list[audit_pb2.AuditEntry]:
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    metadata = (("x-api-key", key),) if key else ()
    reply = await stub.QueryAudit(
        audit_pb2.QueryAuditRequest(**filters), metadata=metadata, timeout=10
    )
    return list(reply.entries)


async def test_a_generate_is_recorded_with_who_what_tokens_cost_and_outcome(
    channel: grpc.aio.Channel,
) -> None:
    before = time.time()
    answer = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(_request(), timeout=10)
    assert answer.text == "".join(ANSWER)
    (entry,) = await _query(channel, rpc="Generate")
    assert entry.rpc == GENERATE
    assert entry.key_id == "open"  # authentication off
    assert (entry.model_requested, entry.model_served) == ("scripted/echo", "scripted/echo")
    assert (entry.tokens_in, entry.tokens_out) == (7, 3)
    assert entry.cost_usd == pytest.approx(7 * 0.001 + 3 * 0.002)
    assert (entry.code, entry.reason) == ("OK", "")
    assert before - 1 <= entry.at.seconds <= time.time()
    assert 0 < entry.latency_ms < 10_000


async def test_a_failure_is_recorded_with_its_code_and_reason(channel: grpc.aio.Channel) -> None:
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Generate(_request("scripted/missing"), timeout=10)
    (entry,) = await _query(channel, outcome="MODEL_NOT_FOUND")
    assert (entry.rpc, entry.code, entry.reason) == (GENERATE, "NOT_FOUND", "MODEL_NOT_FOUND")
    assert (entry.model_requested, entry.model_served) == ("scripted/missing", "")
    assert (entry.tokens_in, entry.tokens_out, entry.cost_usd) == (0, 0, 0.0)


async def test_a_control_plane_call_is_recorded_and_the_filters_select_rows(
    channel: grpc.aio.Channel,
) -> None:
    entry = common_pb2.ModelEntry(id="manual/registered", provider="manual")
    await registry_pb2_grpc.RegistryServiceStub(channel).RegisterModel(
        registry_pb2.RegisterModelRequest(model=entry), timeout=10
    )
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    await stub.Generate(_request(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Generate(_request("scripted/missing"), timeout=10)

    (registered,) = await _query(channel, rpc="RegisterModel", model="manual/registered")
    assert registered.rpc == "modelyard.v1.RegistryService/RegisterModel"
    assert (registered.model_requested, registered.code, registered.key_id) == (
        "manual/registered",
        "OK",
        "open",
    )
    by_model = await _query(channel, model="scripted/echo")  # the backend announced it too
    assert [(e.rpc, e.model_served) for e in by_model] == [
        (GENERATE, "scripted/echo"),
        ("modelyard.v1.RegistryService/RegisterModel", ""),
    ]
    assert await _query(channel, model="scripted/ech") == []  # a whole name, not a part
    assert [e.code for e in await _query(channel, rpc="Generate")] == ["NOT_FOUND", "OK"]
    assert [e.code for e in await _query(channel, rpc=GENERATE, outcome="ok")] == ["OK"]
    assert await _query(channel, key_id="someone-else") == []
    assert len(await _query(channel, key_id="open", limit=2)) == 2
    since = await _query(channel, since={"seconds": int(time.time()) + 60})
    assert since == []
    newest_first = await _query(channel)
    assert [e.seq for e in newest_first] == sorted((e.seq for e in newest_first), reverse=True)


async def test_the_audit_file_never_holds_the_prompt_or_the_answer(
    stack: Stack, channel: grpc.aio.Channel, tmp_path: Path
) -> None:
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    await stub.Generate(_request(), timeout=10)
    async for _ in stub.GenerateStream(_request(), timeout=10):
        pass
    with pytest.raises(grpc.aio.AioRpcError):  # an error path with the prompt in the request
        await stub.Generate(_request("scripted/missing"), timeout=10)
    rows = await _query(channel)
    assert len([r for r in rows if r.rpc.startswith("modelyard.v1.GatewayService/")]) == 3
    await stack.stop(0)
    content = _audit_files(tmp_path)
    assert b"GatewayService/Generate" in content
    for secret in (PROMPT, "4111 1111", "canary", "".join(ANSWER), " answer"):
        assert secret.encode() not in content, secret


def _audit_files(root: Path) -> bytes:
    """Every byte of the audit databases under `root`, write-ahead logs included."""
    files = list(root.glob("*/audit.sqlite3*"))
    assert files
    return b"".join(f.read_bytes() for f in files)


def test_the_database_refuses_update_and_delete(tmp_path: Path) -> None:
    from modelyard.security.audit import AuditRecord, AuditStore

    store = AuditStore(tmp_path / "audit.sqlite3")
    store.append([AuditRecord(rpc=GENERATE, at=time.time(), key_id="k1").row()])
    db = sqlite3.connect(tmp_path / "audit.sqlite3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only: UPDATE is refused"):
        db.execute("UPDATE audit SET key_id = 'someone-else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only: DELETE is refused"):
        db.execute("DELETE FROM audit")
    assert db.execute("SELECT key_id FROM audit").fetchall() == [("k1",)]
    store.close()


def test_retention_prunes_only_old_rows_and_the_trigger_stays(tmp_path: Path) -> None:
    from modelyard.security.audit import AuditQuery, AuditRecord, AuditStore

    store = AuditStore(tmp_path / "audit.sqlite3")
    now = time.time()
    store.append(
        [
            AuditRecord(rpc=GENERATE, at=now - 91 * 86_400, key_id="old").row(),
            AuditRecord(rpc=GENERATE, at=now - 89 * 86_400, key_id="kept").row(),
            AuditRecord(rpc=GENERATE, at=now, key_id="new").row(),
        ]
    )
    assert store.prune(now - 90 * 86_400) == 1
    rows, more = store.query(AuditQuery())
    assert ([r.key_id for r in rows], more) == (["new", "kept"], False)
    db = sqlite3.connect(tmp_path / "audit.sqlite3")
    with pytest.raises(sqlite3.DatabaseError, match="DELETE is refused"):
        db.execute("DELETE FROM audit WHERE key_id = 'kept'")
    store.close()


async def test_a_generate_does_not_wait_for_the_disk(tmp_path: Path) -> None:
    from modelyard.security.audit import AuditLog, AuditQuery, AuditStore

    audit = AuditLog(AuditStore(tmp_path / "audit.sqlite3"), flush_interval_s=3600)
    for _ in range(1000):
        with audit.call(GENERATE):
            pass
    rows, _ = audit.store.query(AuditQuery())
    assert rows == []  # nothing written on the call's path: all of it waits for the writer
    assert await audit.flush() == 1000
    await audit.close()


# ---- with keys required ------------------------------------------------------------

AUTH = """  security:
    audit: {flush_interval: 50ms}
    auth: {required: true, admin_key: "${ADMIN}", service_key: "${SERVICE}"}
"""


async def test_with_keys_the_key_id_is_recorded_and_reading_the_log_needs_admin(
    make_stack: StackFactory,
) -> None:
    config = parse_config(
        f"model_system:\n{AUTH}", env={"ADMIN": ADMIN_KEY, "SERVICE": "service-key-audit-tests"}
    )
    stack = await make_stack(roles=ROLES, engines=[ScriptedEngine()], config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        keys = keys_pb2_grpc.KeyServiceStub(channel)
        issued = await keys.CreateKey(
            keys_pb2.CreateKeyRequest(owner="ana"), metadata=(("x-api-key", ADMIN_KEY),)
        )
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        await stub.Generate(_request(), metadata=(("x-api-key", issued.secret),), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError):  # no key: refused, and recorded
            await stub.Generate(_request(), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await _query(channel, key=issued.secret)
        await asyncio.sleep(0)
        rows = await _query(channel, key=ADMIN_KEY, rpc="Generate")
    assert isinstance(error_from_rpc(denied.value), PermissionDenied)
    assert [(r.key_id, r.code) for r in rows] == [
        ("", "UNAUTHENTICATED"),
        (issued.key.id, "OK"),
    ]


async def test_rows_a_failed_write_held_are_written_by_the_next_flush(tmp_path: Path) -> None:
    from modelyard.security.audit import AuditLog, AuditQuery, AuditStore

    store = AuditStore(tmp_path / "audit.sqlite3")
    audit = AuditLog(store, flush_interval_s=3600)
    with audit.call(GENERATE):
        pass
    real_append = store.append

    def full_disk(rows: list[Any]) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    store.append = full_disk  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        await audit.flush()
    store.append = real_append  # type: ignore[method-assign]
    with audit.call(GENERATE):
        pass
    assert await audit.flush() == 2
    rows, _ = store.query(AuditQuery())
    assert len(rows) == 2
    await audit.close()
