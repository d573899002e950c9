"""Backend kinds from outside the project: installed plug-ins under `modelyard.engines`.

The example package in examples/modelyard-echo-provider is really installed by
pip into a directory of its own, then found through its entry point; the
misbehaving plug-ins are a hand-written distribution (a module and its
.dist-info), found the same way.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory

from modelyard.assembly.plugins import PluginEngine, plugin_engine
from modelyard.backends.engine import EngineHealth, Piece
from modelyard.config import ConfigError, PluginBackend, parse_config
from modelyard.config.backends import KINDS
from modelyard.model_input import estimate_input_tokens
from modelyard.plugins import BaseProvider, Finish, GenerationParams, Message, installed_plugins
from modelyard_client.errors import (
    BackendUnavailable,
    InvalidRequest,
    ProviderError,
    StreamTruncated,
)
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "modelyard-echo-provider"
ECHO_POINT = "'echo' (modelyard_echo_provider:EchoProvider from modelyard-echo-provider 0.1.0)"

ECHO_YAML = """
model_system:
  backends:
    echo1:
      kind: echo
      options: {prefix: ">> "}
"""


@pytest.fixture(scope="session")
def echo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the example plug-in was pip-installed into (built from a copy of its
    source, so the build leaves nothing in the working tree)."""
    work = tmp_path_factory.mktemp("echo-plugin")
    source = work / "source"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "--no-build-isolation", "--target", str(site), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return site


@pytest.fixture
def echo_installed(echo_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(echo_site))
    importlib.invalidate_caches()
    yield echo_site
    sys.modules.pop("modelyard_echo_provider", None)


MISFITS = """
from modelyard.plugins import BaseProvider


class NotAProvider:
    pass


class FailsToInitialize(BaseProvider):
    async def initialize(self):
        raise ConnectionError("no route to the model server")

    def generate_text(self, model, messages, params):
        return "never"


class Crashes(BaseProvider):
    def list_models(self):
        return ["flaky"]

    def generate_text(self, model, messages, params):
        raise RuntimeError("socket closed")
"""


@pytest.fixture
def misfits_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A hand-written distribution `misfit-plugins` with three entry points."""
    site = tmp_path / "misfits"
    dist_info = site / "misfit_plugins-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (site / "misfit_plugins.py").write_text(MISFITS)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: misfit-plugins\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[modelyard.engines]\n"
        "notaprovider = misfit_plugins:NotAProvider\n"
        "broken = misfit_plugins:FailsToInitialize\n"
        "crashes = misfit_plugins:Crashes\n"
        "missing = misfit_plugins_gone:Provider\n"
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    sys.modules.pop("misfit_plugins", None)


def _backend(config_yaml: str, name: str) -> PluginBackend:
    backend = parse_config(config_yaml, env={}).backends[name]
    assert isinstance(backend, PluginBackend)
    return backend


def _installed() -> str:
    return ", ".join(sorted(installed_plugins())) or "none"


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    return [str(p) for p in caught.value.problems]


# ---- (a) the example installs and its entry point is found ----------------------------------
def test_the_pip_installed_example_is_found_by_its_entry_point(echo_installed: Path) -> None:
    point = installed_plugins()["echo"]
    assert point.value == "modelyard_echo_provider:EchoProvider"
    assert point.dist is not None and point.dist.name == "modelyard-echo-provider"
    assert issubclass(point.load(), BaseProvider)


# ---- (b) configuration ------------------------------------------------------------------------
def test_a_kind_naming_an_installed_plugin_parses_to_a_plugin_backend(
    echo_installed: Path,
) -> None:
    config = parse_config(
        ECHO_YAML.replace(
            'options: {prefix: ">> "}',
            'options: {prefix: ">> "}\n      api_key: "${ECHO_KEY}"\n'
            '      endpoint: "http://127.0.0.1:9"\n      models: [shout]',
        ),
        env={"ECHO_KEY": "k-1"},
    )
    backend = config.backends["echo1"]
    assert backend == PluginBackend(
        kind="echo",
        options={"prefix": ">> "},
        api_key="k-1",
        endpoint="http://127.0.0.1:9",
        models=("shout",),
    )
    assert config.model_ids() == ["echo1/shout"]


def test_a_backend_named_after_a_plugin_needs_no_kind(echo_installed: Path) -> None:
    assert _backend("model_system: {backends: {echo: {}}}", "echo") == PluginBackend(kind="echo")


def test_an_unknown_kind_lists_the_built_in_kinds_and_the_installed_plugins(
    echo_installed: Path, misfits_installed: Path
) -> None:
    assert _problems("model_system: {backends: {echo1: {kind: ecko}}}") == [
        f"model_system.backends.echo1.kind: 'ecko' is not one of {', '.join(KINDS)}"
        " (did you mean 'echo'?); installed plug-ins (modelyard.engines): "
        "broken, crashes, echo, missing, notaprovider"
    ]


def test_an_unknown_backend_name_lists_the_installed_plugins() -> None:
    # Without the example on sys.path: "none", unless this environment has plug-ins.
    assert _problems("model_system: {backends: {echo: {}}}") == [
        f"model_system.backends.echo: unknown backend 'echo'; name a known kind"
        f" ({', '.join(KINDS)}) or add kind: openai_compat;"
        f" installed plug-ins (modelyard.engines): {_installed()}"
    ]


def test_a_plugin_api_key_must_come_from_the_environment(echo_installed: Path) -> None:
    assert _problems("model_system: {backends: {echo1: {kind: echo, api_key: sk-123}}}") == [
        "model_system.backends.echo1.api_key: put secrets in the environment, e.g. ${ECHO1_API_KEY}"
    ]


def test_plugin_options_are_strings(echo_installed: Path) -> None:
    assert _problems("model_system: {backends: {echo1: {kind: echo, options: {n: 3}}}}") == [
        "model_system.backends.echo1.options.n: must be a string, not the number 3"
    ]


def test_an_empty_optional_key_turns_the_plugin_backend_off(echo_installed: Path) -> None:
    config = parse_config(
        'model_system: {backends: {echo1: {kind: echo, api_key: "${ECHO_KEY:-}"}}}', env={}
    )
    assert config.backends["echo1"].disabled_reason == "api_key is empty"
    assert config.active_backends() == {}


# ---- loading the entry point --------------------------------------------------------------
def test_an_entry_point_that_is_not_a_base_provider_is_refused_naming_it(
    misfits_installed: Path,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plugin_engine("odd", PluginBackend(kind="notaprovider"))
    assert caught.value.message == (
        "model_system.backends.odd.kind: plug-in 'notaprovider' "
        "(misfit_plugins:NotAProvider from misfit-plugins 0.1) is "
        "<class 'misfit_plugins.NotAProvider'>, not a subclass of modelyard.plugins.BaseProvider"
    )


def test_an_entry_point_that_cannot_be_imported_is_refused_naming_it(
    misfits_installed: Path,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plugin_engine("gone", PluginBackend(kind="missing"))
    assert caught.value.message == (
        "model_system.backends.gone.kind: plug-in 'missing' "
        "(misfit_plugins_gone:Provider from misfit-plugins 0.1) could not be loaded: "
        "ModuleNotFoundError: No module named 'misfit_plugins_gone'"
    )


def test_a_plugin_uninstalled_since_the_config_was_read_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        plugin_engine("echo1", PluginBackend(kind="echo"))
    assert caught.value.message == (
        "model_system.backends.echo1.kind: no plug-in 'echo' is installed "
        f"(entry points in modelyard.engines: {_installed()})"
    )


def test_a_plugin_refusing_its_options_stops_the_start(echo_installed: Path) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plugin_engine("echo1", PluginBackend(kind="echo", options={"colour": "red"}))
    assert caught.value.message == (
        f"model_system.backends.echo1: plug-in {ECHO_POINT} refused its configuration: "
        "ValueError: unknown option(s) colour; this plug-in takes prefix"
    )


# ---- the adapter: health, usage, errors ------------------------------------------------------
async def test_health_is_healthy_after_initialize(echo_installed: Path) -> None:
    engine = plugin_engine("echo1", _backend(ECHO_YAML, "echo1"))
    assert engine.health() == EngineHealth(common_pb2.HEALTH_STATUS_UNSPECIFIED, "not started")
    await engine.start()
    assert engine.health() == EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)
    assert [m.id for m in engine.models()] == ["echo1/mirror", "echo1/shout"]


async def test_a_failed_initialize_leaves_the_backend_unavailable_with_the_reason(
    misfits_installed: Path,
) -> None:
    engine = plugin_engine("b1", PluginBackend(kind="broken", models=("m",)))
    await engine.start()
    reason = (
        "plug-in 'broken' (misfit_plugins:FailsToInitialize) of backend 'b1' failed to "
        "initialize: ConnectionError: no route to the model server"
    )
    assert engine.health() == EngineHealth(common_pb2.HEALTH_STATUS_UNAVAILABLE, reason)
    [entry] = engine.models()
    assert (entry.id, entry.health, entry.health_reason) == (
        "b1/m",
        common_pb2.HEALTH_STATUS_UNAVAILABLE,
        reason,
    )
    with pytest.raises(BackendUnavailable, match=r"^plug-in 'broken' .* no route"):
        await _collect(engine, "b1/m", _text_input("hi"))


class Counted(BaseProvider):
    """A streaming provider that reports nothing itself: the counts come from count_tokens."""

    def list_models(self) -> list[str]:
        return ["m"]

    async def generate_text(
        self, model: str, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str | Finish]:
        self.seen = (model, list(messages), params)
        for piece in ("one", " two", ""):
            yield piece

    def count_tokens(self, model: str, text: str) -> int:
        return len(text.split()) * 10


class Whole(BaseProvider):
    """Answers in one plain string and does not count tokens."""

    def list_models(self) -> list[str]:
        return ["m"]

    async def generate_text(
        self, model: str, messages: Sequence[Message], params: GenerationParams
    ) -> str:
        return "abcdefghi"  # 9 bytes: 3 tokens at 4 bytes per token, rounded up


class Breaks(BaseProvider):
    def list_models(self) -> list[str]:
        return ["m"]

    async def generate_text(
        self, model: str, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str]:
        yield "partial"
        raise OSError("socket closed")


async def _engine(provider: type[BaseProvider]) -> PluginEngine:
    engine = PluginEngine(
        "p1", PluginBackend(kind="inline"), provider("p1", {}), entry_point="tests:Inline"
    )
    await engine.start()
    return engine


def _text_input(text: str) -> common_pb2.Input:
    return common_pb2.Input(text=text)


async def _collect(
    engine: PluginEngine,
    model_id: str,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams | None = None,
) -> list[Piece]:
    stream = engine.infer_stream(model_id, model_input, params or common_pb2.GenerationParams())
    return [piece async for piece in stream]


async def test_pieces_stream_in_order_and_the_provider_counts_the_usage() -> None:
    engine = await _engine(Counted)
    chat = common_pb2.Input()
    chat.chat.messages.add(role="system", content="be brief")
    chat.chat.messages.add(role="user", content="count to two", name="ann")
    params = common_pb2.GenerationParams(max_tokens=5, temperature=0.5, stop=["."])
    pieces = await _collect(engine, "p1/m", chat, params)
    assert pieces == [
        Piece("one"),
        Piece(" two"),
        Piece("", common_pb2.FINISH_REASON_STOP, input_tokens=50, output_tokens=20),
    ]
    provider = engine._provider
    assert isinstance(provider, Counted)
    assert provider.seen == (
        "m",
        [Message("system", "be brief"), Message("user", "count to two", "ann")],
        GenerationParams(max_tokens=5, temperature=0.5, stop=(".",)),
    )


async def test_a_provider_that_does_not_count_gets_the_projects_estimate() -> None:
    engine = await _engine(Whole)
    model_input = _text_input("hello there")
    pieces = await _collect(engine, "p1/m", model_input)
    assert pieces == [
        Piece("abcdefghi"),
        Piece(
            "",
            common_pb2.FINISH_REASON_STOP,
            input_tokens=estimate_input_tokens(model_input),
            output_tokens=3,
        ),
    ]


async def test_a_plugin_exception_becomes_a_provider_error_naming_the_plugin(
    misfits_installed: Path,
) -> None:
    engine = plugin_engine("c1", PluginBackend(kind="crashes"))
    await engine.start()
    with pytest.raises(ProviderError) as caught:
        await _collect(engine, "c1/flaky", _text_input("hi"))
    assert type(caught.value) is ProviderError
    assert caught.value.message == (
        "plug-in 'crashes' (misfit_plugins:Crashes) of backend 'c1' failed for 'c1/flaky': "
        "RuntimeError: socket closed"
    )


async def test_an_exception_after_some_pieces_is_a_truncated_stream() -> None:
    engine = await _engine(Breaks)
    stream = engine.infer_stream("p1/m", _text_input("hi"), common_pb2.GenerationParams())
    assert await anext(stream) == Piece("partial")
    with pytest.raises(StreamTruncated) as caught:
        await anext(stream)
    assert caught.value.message == (
        "plug-in 'inline' (tests:Inline) of backend 'p1' failed after part of the answer for "
        "'p1/m': OSError: socket closed: the answer is truncated"
    )


# ---- (c) through a real in-process stack -------------------------------------------------
def _request(model: str, *, max_tokens: int = 0) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.params.max_tokens = max_tokens
    return request


async def test_plugin_models_are_in_the_catalog_as_backend_slash_model(
    make_stack: StackFactory, echo_installed: Path
) -> None:
    stack = await make_stack(config=parse_config(ECHO_YAML, env={}))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        listed = await stub.ListModels(registry_pb2.ListModelsRequest(), timeout=10)
    assert [(m.id, m.name, m.provider) for m in listed.models] == [
        ("echo1/mirror", "mirror", "echo1"),
        ("echo1/shout", "shout", "echo1"),
    ]
    shout = listed.models[1]
    assert list(shout.capabilities) == [
        common_pb2.CAPABILITY_TEXT_GENERATION,
        common_pb2.CAPABILITY_CHAT,
        common_pb2.CAPABILITY_STREAMING,
    ]
    assert list(shout.input_modalities) == [common_pb2.MODALITY_TEXT]
    assert list(shout.output_modalities) == [common_pb2.MODALITY_TEXT]
    assert [d.backend for d in shout.deployments] == ["echo"]


async def test_generate_through_the_gateway_returns_the_plugins_exact_answer(
    make_stack: StackFactory, echo_installed: Path
) -> None:
    stack = await make_stack(config=parse_config(ECHO_YAML, env={}))
    request = _request("echo1/shout")
    request.input.text = "hello plug-in world"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        response = await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)
    assert response.text == ">> HELLO PLUG-IN WORLD"
    assert response.model_id == "echo1/shout"
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP
    # The plug-in counts a word as a token: 3 words in, 4 out (with the prefix).
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 4)


async def test_generate_stream_arrives_in_pieces_and_stops_at_max_tokens(
    make_stack: StackFactory, echo_installed: Path
) -> None:
    stack = await make_stack(config=parse_config(ECHO_YAML, env={}))
    request = _request("echo1/mirror", max_tokens=3)
    for role, content in [
        ("system", "mirror me"),
        ("user", "first"),
        ("assistant", "tsrif"),
        ("user", "abc def ghi"),
    ]:
        request.input.chat.messages.add(role=role, content=content)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        chunks = [chunk async for chunk in stub.GenerateStream(request, timeout=10)]
    assert [c.text for c in chunks] == [">>", " ihg", " fed", ""]
    assert [c.finish_reason for c in chunks] == [0, 0, 0, common_pb2.FINISH_REASON_LENGTH]
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (7, 3)


async def test_a_plugin_failure_reaches_the_caller_as_a_provider_error(
    make_stack: StackFactory, misfits_installed: Path
) -> None:
    config = parse_config("model_system: {backends: {c1: {kind: crashes}}}", env={})
    stack = await make_stack(config=config)
    request = _request("c1/flaky")
    request.input.text = "hi"
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    assert caught.value.details() == (
        "plug-in 'crashes' (misfit_plugins:Crashes) of backend 'c1' failed for 'c1/flaky': "
        "RuntimeError: socket closed"
    )
