"""Shared fixtures: the real Gemma model, free ports, in-process stacks, a llama.cpp server."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.postgres_server import PostgresServer, postgres_bin_dir

from modelyard.assembly import Settings, Stack, start_stack
from modelyard.backends.engine import Engine
from modelyard.config import default_config
from modelyard.storage import DatabaseUrl

GEMMA_ID = "local/gemma-3-270m-q4_k_m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """A models directory holding the real Gemma 3 270M GGUF (assembled once per machine)."""
    from modelyard.backends.local.model_files import ensure_default_model

    base = Path(
        os.environ.get("MODELYARD_TEST_MODELS_DIR")
        or Path.home() / ".cache" / "modelyard-test" / "models"
    )
    ensure_default_model(base)
    return base


@pytest.fixture(scope="session")
def gemma_path(models_dir: Path) -> Path:
    return models_dir / "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (tests/support/postgres_server.py)."""
    if postgres_bin_dir() is None:
        pytest.skip("needs PostgreSQL's server binaries (scripts/setup installs them)")
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> DatabaseUrl:
    """A fresh, empty database on the session's PostgreSQL server."""
    return DatabaseUrl.parse(postgres_server.fresh_database())


# What `store_place` yields: where a store named by its file name keeps its tables.
StorePlace = Callable[[str], Path | DatabaseUrl]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_place(request: pytest.FixtureRequest, tmp_path: Path) -> StorePlace:
    """The same store test on both engines: `place("r.sqlite3")` is that file under
    tmp_path, or a fresh PostgreSQL database (the same one for the same name)."""
    if request.param == "sqlite":
        return lambda name: tmp_path / name
    server: PostgresServer = request.getfixturevalue("postgres_server")
    made: dict[str, DatabaseUrl] = {}

    def place(name: str) -> DatabaseUrl:
        if name not in made:
            made[name] = DatabaseUrl.parse(server.fresh_database())
        return made[name]

    return place


# What `make_stack` yields: keyword arguments are `Settings` fields (and `engines`).
StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A running fake OpenAI upstream serving ``model-a`` and ``model-b``, each answer naming
    its model (`FakeUpstream.echo_model`). tests/backends/openai_compat has its own, scripted
    per test."""
    fake = FakeUpstream(models=["model-a", "model-b"])
    fake.echo_model()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def make_stack(tmp_path: Path) -> AsyncIterator[StackFactory]:
    """Start in-process stacks on free ports; every one is stopped after the test."""
    started: list[Stack] = []

    async def factory(engines: Sequence[Engine] = (), **overrides: Any) -> Stack:
        """`overrides`: `Settings` fields; `engines`: hosted besides the configured ones."""
        settings = Settings(
            config=default_config({}),  # no provider keys from this machine's environment
            listen="127.0.0.1:0",
            data_dir=tmp_path / f"data{len(started)}",
            assemble_default_model=False,
            discover_ollama=False,
            discovery=False,  # reading GGUF metadata costs seconds; its own tests turn it on
        )
        stack = await start_stack(dataclasses.replace(settings, **overrides), engines=engines)
        started.append(stack)
        return stack

    yield factory
    for stack in reversed(started):
        await stack.stop(0)


@pytest.fixture(scope="session")
def llama_server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `python -m llama_cpp.server` serving Gemma on 127.0.0.1; yields its base URL."""
    port = free_port()
    # A file, not a pipe: llama.cpp logs ~135 kB while loading and would block on a full pipe.
    log_path = tmp_path_factory.mktemp("llama-server") / "stderr.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gemma_path),
            "--model_alias",
            "gemma-3-270m",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--interrupt_requests",
            "true",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                err = log_path.read_text(errors="replace")
                raise RuntimeError(f"llama_cpp.server exited early: {err[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not answer within 120s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Every span the test module's code ends, from the global tracer provider."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
