"""Usage through a real stack, on SQLite and on PostgreSQL: the records QueryUsage sums
equal the requests sent (per model, per key, per hour), their tokens and costs add up
to what each answer said, streams have a time to the first piece, a call that fell
back once made two attempts (retries and hedges count too: the fake OpenAI upstream of
tests/backends/openai_compat/openai_fake.py, its documented 500 error body), and bad
filters are refused naming the field."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard.security.audit import AuditRecord, AuditStore
from modelyard.security.usage import Grouping, UsageQuery, usage_of
from modelyard.storage import DatabaseUrl
from modelyard_client.errors import (
    InvalidRequest,
    ModelyardError,
    PermissionDenied,
    ProviderError,
    error_from_rpc,
)
from modelyard_client.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
)

ECHO, OTHER, FLAKY, MISSING = "scripted/echo", "scripted/other", "scripted/flaky", "scripted/gone"
# USD per input and per output token, different for each model so sums cannot pass by luck.
PRICES = {ECHO: (0.001, 0.002), OTHER: (0.01, 0.03), FLAKY: (0.5, 0.5)}
ADMIN_KEY = "admin-key-for-the-usage-tests"
DATA_PLANE = "modelyard.v1.GatewayService/"


class MeteredEngine(ScriptedEngine):
    """Scripted answers (3 pieces, 7 input tokens) with each model's prices; FLAKY's
    provider fails before its first piece (a `ProviderError`: the gateway falls over)."""

    def models(self) -> list[common_pb2.ModelEntry]:
        entries = super().models()
        for entry in entries:
            entry.cost.usd_per_input_token, entry.cost.usd_per_output_token = PRICES[entry.id]
        return entries

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Any, None]:
        if model_id == FLAKY:
            self.calls.append((model_id, model_input, params))
            raise ProviderError("the scripted provider broke")
        async for piece in super().infer_stream(model_id, model_input, params):
            yield piece


def _config() -> Any:
    return parse_config(
        """model_system:
  security:
    audit: {flush_interval: 50ms}
    auth: {required: true, admin_key: "${ADMIN}", service_key: "${SERVICE}"}
""",
        env={"ADMIN": ADMIN_KEY, "SERVICE": "service-key-for-the-usage-tests"},
    )


def _request(model: str, *fallbacks: str, text: str = "hello") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, fallback_models=fallbacks)
    request.input.text = text
    request.params.max_tokens = 8
    return request


def _key(secret: str | None) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", secret),) if secret else ()


class Sent:
    """What the test sent and what each answer said it used, per model and per key."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()  # (grouping, group) -> calls
        self.errors: Counter[tuple[str, str]] = Counter()
        self.tokens: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.cost: defaultdict[tuple[str, str], float] = defaultdict(float)

    def add(self, model: str, key_id: str, usage: common_pb2.Usage | None) -> None:
        for group in (("model", model), ("key", key_id)):
            self.requests[group] += 1
            if usage is None:
                self.errors[group] += 1
                continue
            self.tokens[group][0] += usage.input_tokens
            self.tokens[group][1] += usage.output_tokens
            self.cost[group] += usage.cost_usd


async def _send_the_mix(channel: grpc.aio.Channel) -> tuple[Sent, dict[str, str]]:
    """Unary and streamed calls of two keys on two models, a call that falls back once,
    an unknown model, a refused request and a call without a key."""
    keys = keys_pb2_grpc.KeyServiceStub(channel)
    ids, secrets = {}, {}
    for owner in ("ana", "bob"):
        issued = await keys.CreateKey(
            keys_pb2.CreateKeyRequest(owner=owner), metadata=_key(ADMIN_KEY), timeout=10
        )
        ids[owner], secrets[owner] = issued.key.id, issued.secret
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    sent = Sent()

    async def unary(owner: str | None, request: gateway_pb2.GenerateRequest, model: str) -> None:
        key_id = ids[owner] if owner else ""
        try:
            answer = await stub.Generate(request, metadata=_key(secrets.get(owner or "")))
        except grpc.aio.AioRpcError:
            sent.add(model, key_id, None)
            return
        assert answer.model_id == model
        sent.add(model, key_id, answer.usage)

    async def stream(owner: str, request: gateway_pb2.GenerateRequest) -> None:
        chunks = [c async for c in stub.GenerateStream(request, metadata=_key(secrets[owner]))]
        assert chunks[0].model_id == request.model and chunks[-1].finish_reason
        sent.add(request.model, ids[owner], chunks[-1].usage)

    await unary("ana", _request(ECHO), ECHO)
    await unary("ana", _request(ECHO, text="a longer prompt, to count more"), ECHO)
    await stream("ana", _request(ECHO))
    await unary("ana", _request(OTHER), OTHER)
    await stream("bob", _request(OTHER))
    await unary("bob", _request(FLAKY, ECHO), ECHO)  # served by its fallback
    await unary("bob", _request(MISSING), MISSING)  # NOT_FOUND: grouped by what it asked for
    refused = _request(ECHO)
    refused.params.temperature = 5  # INVALID_ARGUMENT before any attempt
    await unary("ana", refused, ECHO)
    # UNAUTHENTICATED: no key id, and the request is not read, so no model either
    await unary(None, _request(ECHO), "")
    return sent, ids


async def _usage(channel: grpc.aio.Channel, **fields: Any) -> audit_pb2.QueryUsageResponse:
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    reply: audit_pb2.QueryUsageResponse = await stub.QueryUsage(
        audit_pb2.QueryUsageRequest(**fields), metadata=_key(ADMIN_KEY), timeout=10
    )
    return reply


async def _entries(channel: grpc.aio.Channel) -> list[audit_pb2.AuditEntry]:
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    reply = await stub.QueryAudit(
        audit_pb2.QueryAuditRequest(limit=1000), metadata=_key(ADMIN_KEY), timeout=10
    )
    return [e for e in reply.entries if e.rpc.startswith(DATA_PLANE)]


def _nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) * percent + 99) // 100 - 1]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> DatabaseUrl | None:
    """Where the stack keeps its stores (the audit log with them): None, SQLite files."""
    if request.param == "sqlite":
        return None
    url: DatabaseUrl = request.getfixturevalue("postgres_url")
    return url


async def test_usage_equals_the_requests_sent_and_their_costs_add_up(
    make_stack: StackFactory, database: DatabaseUrl | None, tmp_path: Path
) -> None:
    engine = MeteredEngine((ECHO, OTHER, FLAKY), input_tokens=7, delay_s=0.005)
    stack = await make_stack(
        roles=("registry", "gateway"), engines=[engine], config=_config(), database_url=database
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        sent, ids = await _send_the_mix(channel)
        by_model = await _usage(channel, group_by=audit_pb2.USAGE_GROUPING_MODEL)
        by_key = await _usage(channel, group_by=audit_pb2.USAGE_GROUPING_KEY)
        by_hour = await _usage(channel, group_by=audit_pb2.USAGE_GROUPING_HOUR)
        by_day = await _usage(channel, group_by=audit_pb2.USAGE_GROUPING_DAY)
        unspecified = await _usage(channel)
        anas = await _usage(channel, key_id=ids["ana"], group_by=audit_pb2.USAGE_GROUPING_MODEL)
        others = await _usage(channel, model=OTHER, group_by=audit_pb2.USAGE_GROUPING_KEY)
        future = await _usage(channel, since={"seconds": int(time.time()) + 3600})
        entries = await _entries(channel)

    for grouping, reply in (("model", by_model), ("key", by_key)):
        got = {g.group: g for g in reply.groups}
        expected = {group for kind, group in sent.requests if kind == grouping}
        assert set(got) == expected, grouping
        for name, group in got.items():
            assert group.requests == sent.requests[grouping, name], (grouping, name)
            assert group.errors == sent.errors[grouping, name], (grouping, name)
            assert [group.tokens_in, group.tokens_out] == sent.tokens[grouping, name]
            assert group.cost_usd == pytest.approx(sent.cost[grouping, name], rel=1e-9)
    assert [g.group for g in by_model.groups] == ["", ECHO, MISSING, OTHER]
    assert by_model.groups[1].requests == 5  # 4 served and the refused one
    assert {g.group: g.requests for g in by_key.groups} == {"": 1, ids["ana"]: 5, ids["bob"]: 3}

    total = by_model.total
    assert (total.group, total.requests, total.errors) == ("", 9, 3)
    assert sum(g.cost_usd for g in by_model.groups) == pytest.approx(total.cost_usd, rel=1e-9)
    assert total.cost_usd == pytest.approx(sum(sent.cost[k] for k in sent.cost if k[0] == "key"))
    assert total.tokens_out == sum(g.tokens_out for g in by_key.groups) == 6 * 3  # 6 served
    # One attempt per served call, two for the one that fell back; none for the refused.
    assert total.attempts == 7
    assert {g.group: g.attempts for g in by_model.groups} == {"": 0, ECHO: 5, OTHER: 2, MISSING: 0}
    assert by_key.total.cost_usd == pytest.approx(total.cost_usd, rel=1e-9)  # summed in
    by_key.total.cost_usd = total.cost_usd  # another order: the last digit may differ
    assert by_key.total == total and unspecified.groups == by_model.groups

    assert len(entries) == 9
    fell_back = [e for e in entries if e.model_requested == FLAKY]
    assert [(e.model_served, e.attempts, e.code) for e in fell_back] == [(ECHO, 2, "OK")]
    for entry in entries:
        if entry.code == "OK":  # a first piece came, within the call
            assert 0 < entry.ttft_ms <= entry.latency_ms, entry
        else:
            assert (entry.ttft_ms, entry.attempts) == (0.0, 0), entry
    streams = [e for e in entries if e.rpc.endswith("/GenerateStream")]
    assert len(streams) == 2 and all(e.ttft_ms >= 5 for e in streams)  # the first piece's delay
    # The percentiles and the mean are exact over the rows (nearest rank).
    for group in by_model.groups:
        rows = [e for e in entries if (e.model_served or e.model_requested) == group.group]
        latencies = [e.latency_ms for e in rows]
        assert group.latency_p50_ms == pytest.approx(_nearest_rank(latencies, 50))
        assert group.latency_p95_ms == pytest.approx(_nearest_rank(latencies, 95))
        ttfts = [e.ttft_ms for e in rows if e.ttft_ms > 0]
        assert group.mean_ttft_ms == pytest.approx(sum(ttfts) / len(ttfts) if ttfts else 0.0)
    assert total.latency_p95_ms == pytest.approx(_nearest_rank([e.latency_ms for e in entries], 95))

    hours = Counter(_hour(e.at.seconds) for e in entries)
    assert {g.group: g.requests for g in by_hour.groups} == hours
    assert sum(g.requests for g in by_day.groups) == 9
    assert all(len(g.group) == len("2026-12-02") for g in by_day.groups)

    assert {g.group: g.requests for g in anas.groups} == {ECHO: 4, OTHER: 1}
    assert anas.total.requests == sent.requests["key", ids["ana"]]
    assert {g.group: g.requests for g in others.groups} == {ids["ana"]: 1, ids["bob"]: 1}
    assert (list(future.groups), future.total.requests, future.total.cost_usd) == ([], 0, 0.0)
    if database is not None:  # the log is the PostgreSQL server's, not a file's
        assert _audit_files(tmp_path) == []


def _audit_files(root: Path) -> list[Path]:
    return list(root.glob("*/audit.sqlite3"))


def _hour(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:00Z")


async def test_bad_filters_are_refused_naming_the_field(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(roles=("registry", "gateway"), engines=[MeteredEngine((ECHO,))])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)

        async def refusal(**fields: Any) -> ModelyardError:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.QueryUsage(audit_pb2.QueryUsageRequest(**fields), timeout=10)
            return error_from_rpc(failed.value)

        now = int(time.time())
        backwards = await refusal(since={"seconds": now}, until={"seconds": now - 60})
        unknown = await refusal(group_by=99)
        long = await refusal(model="m" * 257)
    assert isinstance(backwards, InvalidRequest) and backwards.field == "until"
    assert "until must be after since" in backwards.message
    assert isinstance(unknown, InvalidRequest) and unknown.field == "group_by"
    assert "USAGE_GROUPING_HOUR" in unknown.message
    assert isinstance(long, InvalidRequest) and long.field == "model"


async def test_usage_needs_an_admin_key(make_stack: StackFactory) -> None:
    stack = await make_stack(
        roles=("registry", "gateway"), engines=[MeteredEngine((ECHO,))], config=_config()
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        issued = await keys_pb2_grpc.KeyServiceStub(channel).CreateKey(
            keys_pb2.CreateKeyRequest(owner="ana"), metadata=_key(ADMIN_KEY), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await audit_pb2_grpc.AuditServiceStub(channel).QueryUsage(
                audit_pb2.QueryUsageRequest(), metadata=_key(issued.secret), timeout=10
            )
        assert (await _usage(channel)).total.requests == 0  # CreateKey is no usage
    assert isinstance(error_from_rpc(denied.value), PermissionDenied)


def test_hours_and_days_are_cut_at_the_utc_boundary_on_both_engines(
    store_place: Any,
) -> None:
    """A call 0.4 s before an hour's end is that hour's (PostgreSQL's CAST rounds)."""
    store = AuditStore(store_place("audit.sqlite3"))
    midnight = datetime(2026, 12, 2, tzinfo=UTC).timestamp()
    at = (midnight - 0.4, midnight, midnight + 3599.6, midnight + 3600.2)
    store.append(
        [AuditRecord(rpc=DATA_PLANE + "Generate", at=t, latency_ms=t - midnight).row() for t in at]
    )
    hours = usage_of(store, UsageQuery(group_by=Grouping.HOUR))
    assert [(g.group, g.requests) for g in hours.groups] == [
        ("2026-12-01T23:00Z", 1),
        ("2026-12-02T00:00Z", 2),
        ("2026-12-02T01:00Z", 1),
    ]
    days = usage_of(store, UsageQuery(group_by=Grouping.DAY))
    assert [(g.group, g.requests) for g in days.groups] == [("2026-12-01", 1), ("2026-12-02", 3)]
    window = usage_of(store, UsageQuery(since=midnight, until=midnight + 3600))
    assert window.total.requests == 2
    store.close()


# ---- attempts: each retry and each hedge is one --------------------------------------

A, B = "custom/model-a", "custom/model-b"


async def _one_call(stack: Stack, request: gateway_pb2.GenerateRequest) -> audit_pb2.AuditEntry:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        chunks = [c async for c in stub.GenerateStream(request, timeout=20)]
        assert chunks[0].model_id == B and chunks[-1].finish_reason
        (entry,) = await _entries(channel)
        usage = await _usage(channel)
    assert usage.total.attempts == entry.attempts
    return entry


def _upstream_stack_config(upstream: FakeUpstream, setting: str) -> Any:
    return parse_config(
        f"""
model_system:
  backends:
    custom:
      kind: openai_compat
      endpoint: "{upstream.url}"
      {setting}
"""
    )


async def test_each_retry_and_the_fallback_is_an_attempt(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    upstream.failure_rates["model-a"] = 1.0  # HTTP 500 with OpenAI's error body, every time
    stack = await make_stack(
        roles=("registry", "gateway", "backend-openai-compat"),
        config=_upstream_stack_config(upstream, "max_retries: 2"),
    )
    entry = await _one_call(stack, _request(A, B))
    sent = [body["model"] for body in upstream.bodies]
    assert sent == ["model-a", "model-a", "model-a", "model-b"]  # 2 retries, then the fallback
    assert (entry.model_served, entry.attempts, entry.code) == (B, 4, "OK")
    assert entry.ttft_ms > 0


async def test_a_hedge_is_an_attempt(make_stack: StackFactory, upstream: FakeUpstream) -> None:
    upstream.delays_s["model-a"] = 2.0
    stack = await make_stack(
        roles=("registry", "gateway", "backend-openai-compat"),
        config=_upstream_stack_config(upstream, "model_profiles: {model-a: {hedge_delay_ms: 100}}"),
    )
    entry = await _one_call(stack, _request(A, B))
    assert [body["model"] for body in upstream.bodies] == ["model-a", "model-b"]
    assert (entry.model_served, entry.attempts) == (B, 2)
    assert 100 <= entry.ttft_ms < 2000  # the hedge's first piece, after the hedge delay
