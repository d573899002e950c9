"""Spend budgets through running stacks: concurrent callers never spend past a budget, on one
gateway and on three sharing a real Redis; settlements book exactly what answers cost.

Each stack is a registry, a gateway and an openai_compat backend in front of the
fake OpenAI upstream (`FakeUpstream.echo_model`: three pieces, then ``stop``, no
usage: the backend counts the three pieces as output tokens and the gateway its
input estimate, 1 token for "hi"). custom/model-a costs $0.01 a request, $1 per
million input and $2 per million output tokens. Calls go through the gateway's
gRPC API with an API key and no authentication (they run as `OPEN`, so the key's
fingerprint is the budget's scope and `security.budgets.per_key` its budget),
except in the last test, which requires keys and makes them through the KeyService.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import grpc
import pytest
import redis
from backends.openai_compat.openai_fake import FakeUpstream, chunk, usage_chunk
from conftest import StackFactory
from ratelimit import conftest as ratelimit_fixtures

from modelyard.assembly import Stack
from modelyard.assembly.settings import limiter_settings
from modelyard.config import parse_config
from modelyard.ratelimit.config import REDIS_TIMEOUT_ENV
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Scope
from modelyard.ratelimit.redis_store import DEFAULT_KEY_PREFIX
from modelyard.ratelimit.spend import SpendBudget, nano_usd
from modelyard_client.errors import BudgetExceeded, error_from_rpc
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, keys_pb2, keys_pb2_grpc

redis_server = ratelimit_fixtures.redis_server
redis_url = ratelimit_fixtures.redis_url

ROLES = ("registry", "gateway", "backend-openai-compat")
MODEL = "custom/model-a"
KEY = "budget-key-0001"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# What an echo answer costs: 1 input token, 3 output tokens, the request fee.
ANSWER_NANO = nano_usd(1e-6 + 3 * 2e-6 + 0.01)
BUDGET_NANO = 100 * ANSWER_NANO  # a budget worth 100 answers


async def _stack(
    make_stack: StackFactory, upstream: FakeUpstream, redis_url: str = "", budget_nano: int = 0
) -> Stack:
    # Fail closed, with time to spare on a loaded machine: a budget answered from the
    # per-replica fallback would not be shared, and the test must not pass that way.
    shared = (
        f"\n  rate_limits: {{redis_url: '{redis_url}', on_redis_failure: fail_closed}}"
        if redis_url
        else ""
    )
    config = parse_config(
        f"""
model_system:
  backends:
    custom:
      kind: openai_compat
      endpoint: "{upstream.url}"
      model_profiles:
        model-a: {{usd_per_request: 0.01, usd_per_1m_input_tokens: 1, usd_per_1m_output_tokens: 2}}
  security:
    budgets:
      per_key: {{daily_usd: {(budget_nano or BUDGET_NANO) / 1e9!r}}}
      alert_at: [0.5, 0.8, 1.0]{shared}
"""
    )
    limiter = limiter_settings(config, {REDIS_TIMEOUT_ENV: "10"})
    stack = await make_stack(roles=ROLES, config=config, limiter=limiter)
    assert stack.limits is not None
    stack.limits.clock = lambda: NOW
    return stack


def _request(max_tokens: int) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.text = "hi"
    request.params.max_tokens = max_tokens
    return request


async def _generate_all(
    addresses: list[str], count: int, max_tokens: int
) -> tuple[int, list[grpc.aio.AioRpcError]]:
    """`count` concurrent Generate calls spread over `addresses`; how many were answered, and
    the errors of the others."""
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in channels]
    metadata = (("x-api-key", KEY),)

    async def one(i: int) -> grpc.aio.AioRpcError | None:
        try:
            await stubs[i % len(stubs)].Generate(
                _request(max_tokens), metadata=metadata, timeout=60
            )
        except grpc.aio.AioRpcError as err:
            return err
        return None

    try:
        results = await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        for channel in channels:
            await channel.close(None)
    errors = [r for r in results if r is not None]
    return count - len(errors), errors


def _budget() -> SpendBudget:
    return SpendBudget.at(Scope.api_key(KEY), "day", BUDGET_NANO / 1e9, NOW)


def _spent_locally(stack: Stack) -> int:
    assert stack.limits is not None and isinstance(stack.limits.store, LocalBucketStore)
    return stack.limits.store.spent(_budget().key)


def _spent_in_redis(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.hget(DEFAULT_KEY_PREFIX + _budget().key, "spent") or 0)


def _check_refusals(errors: list[grpc.aio.AioRpcError]) -> None:
    assert {e.code() for e in errors} <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
    for err in errors:
        refused = error_from_rpc(err)
        assert isinstance(refused, BudgetExceeded), refused
        assert (refused.scope, refused.window) == (str(Scope.api_key(KEY)), "day")
        assert refused.resets_at == "2026-12-02T00:00:00Z"
        assert refused.budget_usd == BUDGET_NANO / 1e9


async def test_200_concurrent_calls_on_one_gateway_spend_exactly_the_budget(
    make_stack: StackFactory, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "modelyard.ratelimit.spend")
    stack = await _stack(make_stack, upstream)
    # max_tokens 3: each call reserves what its answer costs, so exactly 100 fit.
    answered, errors = await _generate_all([stack.address], 200, max_tokens=3)
    assert (answered, len(errors)) == (100, 100)
    _check_refusals(errors)
    assert len(upstream.bodies) == 100  # refused before any backend call
    assert _spent_locally(stack) == BUDGET_NANO
    assert stack.limits is not None
    assert [a.fraction for a in stack.limits.alerts.recent] == [0.5, 0.8, 1.0]
    assert [r.getMessage().split(" has reached ")[1][:3] for r in caplog.records] == [
        "50%",
        "80%",
        "100",
    ]


async def test_200_concurrent_calls_on_three_gateways_sharing_redis_spend_the_budget_once(
    make_stack: StackFactory, upstream: FakeUpstream, redis_url: str
) -> None:
    stacks = [await _stack(make_stack, upstream, redis_url) for _ in range(3)]
    answered, errors = await _generate_all([s.address for s in stacks], 200, max_tokens=3)
    assert (answered, len(errors)) == (100, 100)
    _check_refusals(errors)
    assert len(upstream.bodies) == 100
    assert _spent_in_redis(redis_url) == BUDGET_NANO
    # Each fraction was crossed by one call on one gateway, and reported there only.
    alerts = [a.fraction for s in stacks if s.limits for a in s.limits.alerts.recent]
    assert sorted(alerts) == [0.5, 0.8, 1.0]


async def test_reservations_at_the_maximum_never_let_concurrent_calls_pass_the_budget(
    make_stack: StackFactory, upstream: FakeUpstream, redis_url: str
) -> None:
    # max_tokens 30: each call holds 30 output tokens' worth until its answer (3) settles.
    stacks = [await _stack(make_stack, upstream, redis_url) for _ in range(3)]
    answered, errors = await _generate_all([s.address for s in stacks], 200, max_tokens=30)
    _check_refusals(errors)
    assert answered == len(upstream.bodies) >= 1
    spent = _spent_in_redis(redis_url)
    # Every refund came back exactly: what is stored is the answers' cost, within the budget.
    assert spent == answered * ANSWER_NANO
    assert spent <= BUDGET_NANO


async def test_a_settlement_books_the_upstreams_usage_and_a_cut_answer_keeps_its_reservation(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    stack = await _stack(make_stack, upstream)
    answer_events = [chunk("twelve in, five out", model="model-a"), chunk(finish_reason="stop")]
    upstream.stream([*answer_events, usage_chunk(12, 5)])
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        metadata = (("x-api-key", KEY),)
        answer = await stub.Generate(_request(100), metadata=metadata, timeout=30)
        assert (answer.usage.input_tokens, answer.usage.output_tokens) == (12, 5)
        # Reserved 1 input + 100 output tokens; settled to 12 + 5: the rest came back exactly.
        assert _spent_locally(stack) == nano_usd(12e-6 + 5 * 2e-6 + 0.01) == 10_022_000
        upstream.stream_then_drop([chunk("cut", model="model-a")])
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Generate(_request(100), metadata=metadata, timeout=30)
    attempts = len(upstream.bodies) - 1  # a cut stream is retried; each attempt is kept whole
    assert attempts >= 1
    reserved = nano_usd(1e-6 + 100 * 2e-6 + 0.01)
    assert _spent_locally(stack) == 10_022_000 + attempts * reserved


ADMIN_KEY = "admin-key-for-the-budget-tests"


async def test_gateway_keys_are_limited_by_their_own_budget_and_their_teams(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    # Keys required: each call runs as its key's principal (id, team, own budget).
    config = parse_config(
        f"""
model_system:
  backends:
    custom:
      kind: openai_compat
      endpoint: "{upstream.url}"
      model_profiles:
        model-a: {{usd_per_request: 0.01, usd_per_1m_input_tokens: 1, usd_per_1m_output_tokens: 2}}
  security:
    auth: {{required: true, admin_key: "${{ADMIN}}", service_key: "${{SERVICE}}"}}
    budgets:
      teams: {{research: {{daily_usd: {3.5 * ANSWER_NANO / 1e9!r}}}}}
""",
        env={"ADMIN": ADMIN_KEY, "SERVICE": "service-key-for-the-budget-tests"},
    )
    stack = await make_stack(roles=ROLES, config=config, limiter=limiter_settings(config, {}))
    assert stack.limits is not None
    stack.limits.clock = lambda: NOW
    async with grpc.aio.insecure_channel(stack.address) as channel:
        keys = keys_pb2_grpc.KeyServiceStub(channel)
        admin = (("x-api-key", ADMIN_KEY),)
        own = await keys.CreateKey(
            keys_pb2.CreateKeyRequest(
                owner="ana", team="research", daily_budget_usd=2.5 * ANSWER_NANO / 1e9
            ),
            metadata=admin,
        )
        other = await keys.CreateKey(
            keys_pb2.CreateKeyRequest(owner="bo", team="research"), metadata=admin
        )
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)

        async def generate(issued: keys_pb2.IssuedKey) -> BudgetExceeded | None:
            try:
                await gateway.Generate(
                    _request(3), metadata=(("x-api-key", issued.secret),), timeout=30
                )
            except grpc.aio.AioRpcError as err:
                refused = error_from_rpc(err)
                assert isinstance(refused, BudgetExceeded), refused
                return refused
            return None

        # Ana's own budget holds two answers: the third is refused by her key.
        assert [await generate(own), await generate(own)] == [None, None]
        by_key = await generate(own)
        assert by_key is not None and by_key.scope == f"key:{own.key.id}"
        assert f"key '{own.key.id}' has spent" in by_key.message
        # The team holds three and a half: Bo gets one more, then the team refuses.
        assert await generate(other) is None
        by_team = await generate(other)
    assert by_team is not None and by_team.scope == "team:research"
    assert by_team.spent_usd == 3 * ANSWER_NANO / 1e9
    assert len(upstream.bodies) == 3
