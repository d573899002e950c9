"""Keys through a real stack: who gets in, what each key may do, and the hijack refused.

A stack (registry, hot-swap, gateway, an openai_compat backend) with keys
required on loopback, in front of the fake OpenAI upstream serving
``model-a`` and ``model-b``. Keys are made through the KeyService with the
bootstrap admin key, as an operator would. The "attacker" is a recording
BackendService of its own on another port: a hijack would send it prompts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory

from modelyard.assembly import Stack
from modelyard.config import ModelyardConfig, parse_config
from modelyard.security.authn import REFUSED
from modelyard_client.errors import InvalidRequest, ModelyardError, error_from_rpc
from modelyard_client.v1 import (
    backend_pb2,
    backend_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    hotswap_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

ROLES = ("registry", "hotswap", "gateway", "backend-openai-compat")
A, B = "custom/model-a", "custom/model-b"
ALIAS = "chat-a"
ADMIN_KEY = "admin-key-for-the-stack-tests"
SERVICE_KEY = "service-key-for-the-stack-tests"
CARD = "4111 1111 1111 1111"  # what the victims' prompts carry


def _config(url: str) -> ModelyardConfig:
    return parse_config(
        f"""
model_system:
  hot_swap: {{routes: {{{ALIAS}: {A}}}}}
  backends:
    custom: {{kind: openai_compat, endpoint: "{url}"}}
  security:
    auth:
      required: true
      admin_key: "${{ADMIN}}"
      service_key: "${{SERVICE}}"
      refresh_interval: 50ms
""",
        env={"ADMIN": ADMIN_KEY, "SERVICE": SERVICE_KEY},
    )


@pytest.fixture
async def stack(make_stack: StackFactory, upstream: FakeUpstream) -> Stack:
    return await make_stack(roles=ROLES, config=_config(upstream.url))


@pytest.fixture
async def channel(stack: Stack) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield channel


def _key(key: str | None) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),) if key else ()


async def _failure(call: Any) -> ModelyardError:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    return error_from_rpc(failed.value)


async def _create(channel: grpc.aio.Channel, **fields: Any) -> keys_pb2.IssuedKey:
    stub = keys_pb2_grpc.KeyServiceStub(channel)
    request = keys_pb2.CreateKeyRequest(owner="ana", **fields)
    issued: keys_pb2.IssuedKey = await stub.CreateKey(request, metadata=_key(ADMIN_KEY))
    return issued


def _generate_request(model: str, text: str = "hi") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = text
    request.params.max_tokens = 8
    return request


async def _generate(
    channel: grpc.aio.Channel, model: str, key: str | None, text: str = "hi"
) -> gateway_pb2.GenerateResponse:
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    response: gateway_pb2.GenerateResponse = await stub.Generate(
        _generate_request(model, text), metadata=_key(key), timeout=10
    )
    return response


async def test_a_key_made_by_the_admin_generates_and_the_other_cases_are_refused_alike(
    channel: grpc.aio.Channel,
) -> None:
    valid = await _create(channel)
    assert (await _generate(channel, A, valid.secret)).model_id == A
    expiring = await _create(channel, expires_in_s=0.2)
    revoked = await _create(channel)
    await keys_pb2_grpc.KeyServiceStub(channel).RevokeKey(
        keys_pb2.RevokeKeyRequest(id=revoked.key.id), metadata=_key(ADMIN_KEY)
    )
    await asyncio.sleep(0.25)
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    cases = {
        "unknown": "myk_" + "u" * 43,
        "expired": expiring.secret,
        "revoked": revoked.secret,
        "missing": None,
    }
    refusals = {}
    for name, key in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Generate(_generate_request(A), metadata=_key(key), timeout=10)
        refusals[name] = (failed.value.code(), failed.value.details())
    assert set(refusals.values()) == {(grpc.StatusCode.UNAUTHENTICATED, REFUSED)}, refusals
    bearer = (("authorization", f"Bearer {valid.secret}"),)
    assert (await stub.Generate(_generate_request(B), metadata=bearer)).model_id == B


async def test_a_key_scoped_to_model_a_cannot_call_model_b(channel: grpc.aio.Channel) -> None:
    issued = await _create(channel, models=[A])
    assert (await _generate(channel, A, issued.secret)).model_id == A
    err = await _failure(_generate(channel, B, issued.secret))
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert err.message == f"key '{issued.key.id}' may not use model '{B}'"


async def test_a_key_scoped_to_an_alias_uses_the_alias_but_not_other_models(
    channel: grpc.aio.Channel,
) -> None:
    issued = await _create(channel, models=[ALIAS])
    assert (await _generate(channel, ALIAS, issued.secret)).model_id == A
    err = await _failure(_generate(channel, B, issued.secret))
    assert err.message == f"key '{issued.key.id}' may not use model '{B}'"


async def test_a_scoped_key_falls_back_only_to_models_it_may_use(
    channel: grpc.aio.Channel, upstream: FakeUpstream
) -> None:
    """model-a fails; B is a fallback the key may not use, so the call fails, B untouched."""
    issued = await _create(channel, models=[A])
    request = _generate_request(A)
    request.fallback_models.append(B)
    upstream.fail(500, {"error": {"message": "down", "type": "server_error"}})
    with pytest.raises(grpc.aio.AioRpcError):
        await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(
            request, metadata=_key(issued.secret), timeout=10
        )
    assert {body["model"] for body in upstream.bodies} == {"model-a"}


async def test_a_generate_key_cannot_register_a_model_or_swap_a_route(
    channel: grpc.aio.Channel, stack: Stack
) -> None:
    issued = await _create(channel)
    registry = registry_pb2_grpc.RegistryServiceStub(channel)
    entry = common_pb2.ModelEntry(id="evil/model", provider="evil")
    entry.deployments.add(backend="openai_compat", endpoint="127.0.0.1:1")
    register = registry.RegisterModel(
        registry_pb2.RegisterModelRequest(model=entry), metadata=_key(issued.secret)
    )
    err = await _failure(register)
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert err.message == (
        f"key '{issued.key.id}' may not call modelyard.v1.RegistryService/RegisterModel: "
        "it needs the admin or backend scope"
    )
    swap = hotswap_pb2_grpc.HotSwapServiceStub(channel).Swap(
        hotswap_pb2.SwapRequest(alias=ALIAS, target_model_id=B), metadata=_key(issued.secret)
    )
    err = await _failure(swap)
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert "modelyard.v1.HotSwapService/Swap: it needs the admin scope" in err.message
    assert stack.routes is not None
    assert stack.routes.get(ALIAS).model_id == A  # the route did not move
    assert stack.catalog is not None
    assert "evil/model" not in {m.id for m in stack.catalog.list()}


async def test_a_generate_key_cannot_make_keys(channel: grpc.aio.Channel) -> None:
    issued = await _create(channel)
    create = keys_pb2_grpc.KeyServiceStub(channel).CreateKey(
        keys_pb2.CreateKeyRequest(owner="me", scopes=["admin"]), metadata=_key(issued.secret)
    )
    assert (await _failure(create)).code == grpc.StatusCode.PERMISSION_DENIED


class RecordingBackend(backend_pb2_grpc.BackendServiceServicer):
    """The attacker's server: keeps every prompt sent to it and answers something."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def InferStream(
        self, request: backend_pb2.InferRequest, context: Any
    ) -> AsyncIterator[backend_pb2.InferChunk]:
        self.prompts.append(request.input.text)
        yield backend_pb2.InferChunk(text="pwned", finish_reason=common_pb2.FINISH_REASON_STOP)

    async def Infer(self, request: backend_pb2.InferRequest, context: Any) -> Any:
        self.prompts.append(request.input.text)
        return backend_pb2.InferResponse(text="pwned")


@pytest.fixture
async def attacker() -> AsyncIterator[tuple[str, RecordingBackend]]:
    server = grpc.aio.server()
    recording = RecordingBackend()  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
    backend_pb2_grpc.add_BackendServiceServicer_to_server(recording, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", recording
    await server.stop(0)


@pytest.mark.parametrize("caller", ["unauthenticated", "generate-key"])
@pytest.mark.parametrize("merge", [False, True], ids=["replace", "merge"])
async def test_the_hijack_is_refused_and_no_prompt_reaches_the_foreign_endpoint(
    channel: grpc.aio.Channel,
    stack: Stack,
    upstream: FakeUpstream,
    attacker: tuple[str, RecordingBackend],
    caller: str,
    merge: bool,
) -> None:
    endpoint, recording = attacker
    victim = await _create(channel)
    key = None if caller == "unauthenticated" else (await _create(channel)).secret
    assert stack.catalog is not None
    before = stack.catalog.get(A)
    hijacked = common_pb2.ModelEntry()
    hijacked.CopyFrom(before)
    del hijacked.deployments[:]
    hijacked.deployments.add(backend="openai_compat", endpoint=endpoint)
    register = registry_pb2_grpc.RegistryServiceStub(channel).RegisterModel(
        registry_pb2.RegisterModelRequest(model=hijacked, upsert=True, merge_deployments=merge),
        metadata=_key(key),
    )
    err = await _failure(register)
    expected = "UNAUTHENTICATED" if key is None else "PERMISSION_DENIED"
    assert err.code.name == expected
    assert stack.catalog.get(A) == before  # nothing changed
    for _ in range(5):
        answer = await _generate(channel, A, victim.secret, text=f"my card is {CARD}")
        assert answer.model_id == A and "pwned" not in answer.text
    assert recording.prompts == []
    assert sum(CARD in str(body) for body in upstream.bodies) == 5


async def test_backend_infer_on_the_gateways_port_needs_the_service_identity(
    channel: grpc.aio.Channel, upstream: FakeUpstream
) -> None:
    issued = await _create(channel)
    stub = backend_pb2_grpc.BackendServiceStub(channel)
    request = backend_pb2.InferRequest(model_id=A)
    request.input.text = "hi"
    request.params.max_tokens = 8
    err = await _failure(stub.Infer(request, metadata=_key(issued.secret)))
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert "BackendService/Infer: it needs the backend scope" in err.message
    stream = stub.InferStream(request, metadata=_key(issued.secret))
    assert (await _failure(_drain(stream))).code == grpc.StatusCode.PERMISSION_DENIED
    assert (await _failure(stub.Infer(request))).code == grpc.StatusCode.UNAUTHENTICATED
    assert upstream.bodies == []  # none of them reached the provider
    answer = await stub.Infer(request, metadata=_key(SERVICE_KEY))  # the gateway's own way
    assert answer.text


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


async def test_the_admin_lists_rotates_and_revokes_and_lists_never_show_a_secret(
    channel: grpc.aio.Channel,
) -> None:
    stub = keys_pb2_grpc.KeyServiceStub(channel)
    admin = _key(ADMIN_KEY)
    issued = await _create(channel, team="search", models=[A], requests_per_minute=30)
    listed = await stub.ListKeys(keys_pb2.ListKeysRequest(), metadata=admin)
    assert [k.id for k in listed.keys] == [issued.key.id]
    assert issued.secret not in str(listed)
    assert (listed.keys[0].team, list(listed.keys[0].models)) == ("search", [A])
    assert listed.keys[0].requests_per_minute == 30
    rotated = await stub.RotateKey(
        keys_pb2.RotateKeyRequest(id=issued.key.id, grace_s=60), metadata=admin
    )
    assert rotated.secret != issued.secret
    assert (await _generate(channel, A, issued.secret)).model_id == A  # in its grace
    assert (await _generate(channel, A, rotated.secret)).model_id == A
    revoked = await stub.RevokeKey(keys_pb2.RevokeKeyRequest(id=issued.key.id), metadata=admin)
    assert revoked.HasField("revoked_at")
    for secret in (issued.secret, rotated.secret):  # at once, on this server
        err = await _failure(_generate(channel, A, secret))
        assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert (await stub.ListKeys(keys_pb2.ListKeysRequest(), metadata=admin)).keys == []


async def test_a_wrong_create_names_its_field(channel: grpc.aio.Channel) -> None:
    create = keys_pb2_grpc.KeyServiceStub(channel).CreateKey(
        keys_pb2.CreateKeyRequest(owner="ana", scopes=["root"]), metadata=_key(ADMIN_KEY)
    )
    err = await _failure(create)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown scope(s) ['root']" in err.message


async def test_an_expiry_no_timestamp_holds_is_refused_and_the_listing_stays_readable(
    channel: grpc.aio.Channel,
) -> None:
    stub = keys_pb2_grpc.KeyServiceStub(channel)
    admin = _key(ADMIN_KEY)
    for seconds in (1e308, 3.2e9, -1.0):  # past 100 years, or before now
        err = await _failure(
            stub.CreateKey(
                keys_pb2.CreateKeyRequest(owner="ana", expires_in_s=seconds), metadata=admin
            )
        )
        assert isinstance(err, InvalidRequest) and err.field == "expires_in_s", err
    await _create(channel, expires_in_s=3.1e9)  # just under 100 years: a date it holds
    listed = await stub.ListKeys(keys_pb2.ListKeysRequest(), metadata=admin)
    assert [k.owner for k in listed.keys] == ["ana"]


async def test_a_loopback_stack_without_keys_required_stays_open_and_makes_keys_ahead(
    make_stack: StackFactory, upstream: FakeUpstream
) -> None:
    backend = f'{{kind: openai_compat, endpoint: "{upstream.url}"}}'
    text = f"model_system: {{backends: {{custom: {backend}}}}}"
    stack = await make_stack(roles=ROLES, config=parse_config(text, env={}))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        assert (await _generate(channel, A, None)).model_id == A
        assert (await _generate(channel, A, "myk_anything-at-all")).model_id == A
        issued = await keys_pb2_grpc.KeyServiceStub(channel).CreateKey(
            keys_pb2.CreateKeyRequest(owner="ana")
        )
        assert issued.secret.startswith("myk_")


async def test_revocation_through_the_cli_is_seen_at_once(
    channel: grpc.aio.Channel, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelyard.cli import main

    def cli(*args: str) -> tuple[int, str]:
        code = main(["keys", *args, "--address", stack.address, "--api-key", ADMIN_KEY])
        return code, capsys.readouterr().out

    code, out = await asyncio.to_thread(cli, "create", "--owner", "bo", "--model", A)
    assert code == 0
    secret = out.split("secret (shown once): ")[1].strip()
    key_id = out.split("\t")[0]
    assert (await _generate(channel, A, secret)).model_id == A
    code, out = await asyncio.to_thread(cli, "list")
    assert key_id in out and secret not in out and f"models={A}" in out
    started = time.monotonic()
    code, _ = await asyncio.to_thread(cli, "revoke", key_id)
    assert code == 0
    err = await _failure(_generate(channel, A, secret))
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert time.monotonic() - started < 1.0


async def test_the_client_and_the_cli_present_their_key(
    channel: grpc.aio.Channel, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelyard.cli import main
    from modelyard_client import GatewayClient

    issued = await _create(channel)

    def client_generate(key: str | None) -> str:
        with GatewayClient(stack.address, timeout_s=10, api_key=key) as client:
            return client.generate(A, "hi").model_id

    assert await asyncio.to_thread(client_generate, issued.secret) == A
    with pytest.raises(ModelyardError) as refused:
        await asyncio.to_thread(client_generate, None)
    assert refused.value.message == REFUSED

    def cli_models(*flags: str) -> int:
        return main(["models", "--address", stack.address, *flags])

    assert await asyncio.to_thread(cli_models, "--api-key", issued.secret) == 0
    assert A in capsys.readouterr().out


async def test_a_split_alias_never_sends_a_scoped_key_to_an_arm_it_may_not_use(
    channel: grpc.aio.Channel, stack: Stack, upstream: FakeUpstream
) -> None:
    """ALIAS split between A and B; a key for B only: B answers, or PERMISSION_DENIED."""
    issued = await _create(channel, models=[B])
    assert stack.routes is not None and stack.route_view is not None
    split = hotswap_pb2.Split(
        id="ab-1",
        kind=hotswap_pb2.Split.KIND_AB_TEST,
        arms=[
            hotswap_pb2.ABArm(name="a", model_id=A, weight=0.5),
            hotswap_pb2.ABArm(name="b", model_id=B, weight=0.5),
        ],
    )
    stored = stack.routes.set_route(ALIAS, 0, A, split=split)
    deadline = time.monotonic() + 5
    while stack.route_view.revision < stored.revision:  # the gateway sees the split
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    outcomes = []
    for i in range(20):
        request = _generate_request(ALIAS)
        request.request_id = f"call-{i}"
        try:
            answer = await stub.Generate(request, metadata=_key(issued.secret), timeout=10)
            outcomes.append(answer.model_id)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
            assert err.details() == f"key '{issued.key.id}' may not use model '{ALIAS}'"
            outcomes.append("denied")
    assert set(outcomes) == {B, "denied"}  # 20 draws: both arms came up
    assert {body["model"] for body in upstream.bodies} == {"model-b"}
