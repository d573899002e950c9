"""clients/python installs and runs on its own: nothing of the server, only grpcio, protobuf
and googleapis-common-protos (and what they need: grpcio's typing-extensions), against a
running stack.

The package is built and installed from a copy of its folder into a target folder
(pip, no index, no dependencies); a second folder holds links to exactly the files of
its dependencies' distributions as installed here. An interpreter started with
``-I -S`` (no site-packages, no PYTHONPATH) and only those two folders on its path then
calls the stack with the sync and async clients and gets the server's errors as their
own classes.
"""

from __future__ import annotations

import json
import shutil
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
RUN = Path(__file__).with_name("standalone_client_run.py")
DEPENDENCIES = {"grpcio", "protobuf", "googleapis-common-protos"}


def _name(spec: str) -> str:
    for stop in "<>=!~[; (":
        spec = spec.split(stop)[0]
    return spec.strip().lower()


def _declared() -> set[str]:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    return {_name(spec) for spec in project["dependencies"]}


def _closure(names: set[str]) -> set[str]:
    """`names` and what they require in turn (extras left out), as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or ():
            if "extra ==" not in spec:
                todo.append(_name(spec))
    return seen


def _link_distribution(name: str, into: Path) -> None:
    """Link every top-level file and folder `name`'s installed distribution put there,
    and inside the shared ``google`` namespace only its own folders."""
    dist = metadata.distribution(name)
    for file in dist.files or ():
        parts = file.parts
        # google/protobuf, google/rpc, ...: the namespace shared by several distributions
        top = Path(*parts[:2]) if parts[0] == "google" and len(parts) > 2 else Path(parts[0])
        target = into / top
        if target.exists() or target.is_symlink() or ".." in parts:
            continue
        source = Path(str(dist.locate_file(top)))
        if not source.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)


def test_the_client_declares_only_grpc_protobuf_and_the_google_rpc_protos() -> None:
    assert _declared() == DEPENDENCIES


async def test_the_client_alone_calls_a_running_stack(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    stack = await make_stack([ScriptedEngine(pieces=("hel", "lo"))], roles=("registry", "gateway"))
    source = tmp_path / "source"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    installed, deps = tmp_path / "installed", tmp_path / "deps"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    await _run([*pip, "--no-build-isolation", "--target", str(installed), str(source)])
    needed = _closure(DEPENDENCIES)
    assert needed <= DEPENDENCIES | {"typing-extensions"}  # grpcio's own
    for name in needed:
        _link_distribution(name, deps)
    code = (
        "import sys, runpy; "
        f"sys.path[:0] = [{str(installed)!r}, {str(deps)!r}]; "
        f"sys.argv = ['run', {stack.address!r}]; "
        f"runpy.run_path({str(RUN)!r}, "
        "run_name='__main__')"
    )
    run = await _run([sys.executable, "-I", "-S", "-c", code])  # no site, no PYTHON* variables
    found = json.loads(run)

    assert found["server_importable"] is False
    assert found["models"] == ["scripted/echo"]
    assert found["text"] == "hello" and found["streamed"] == ["hel", "lo"]
    assert found["not_found"] == ["ModelNotFound", "nope/missing", "NOT_FOUND"]
    assert found["invalid"] == ["InvalidRequest", "params.max_tokens"]
    assert found["async_text"] == "hello" and found["async_streamed"] == ["hel", "lo"]
    assert found["async_models"] == 1 and found["async_not_found"] == "nope/missing"
    allowed = (str(installed), str(deps), sysconfig.get_paths()["stdlib"], str(RUN))
    outside = [f for f in found["modules"] if not f.startswith(allowed)]
    assert outside == []
    assert any(f.startswith(str(installed / "modelyard_client" / "v1")) for f in found["modules"])


async def _run(argv: list[str]) -> str:
    """`argv`'s standard output; the stack's servers keep serving on this loop meanwhile."""
    import asyncio

    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode == 0, err.decode()
    return out.decode()
