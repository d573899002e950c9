"""Generate the Python gRPC stubs (with typed .pyi) from proto/ into the client package.

The stubs belong to `modelyard_client` (clients/python/modelyard_client/v1/), which the
server depends on, so the client installs with nothing of the server's. They are
committed, as the Go client's are: the client installs from its own folder with no
generator. protoc names a generated module after its proto file (``modelyard.v1``);
each import of one stub by another is rewritten to the package that holds them
(``modelyard_client.v1``), nothing else: the proto package, the services' method
paths and the serialized descriptors stay ``modelyard.v1``, the wire contract.

With --check nothing is written: the stubs are generated into a temporary directory
and compared with the committed ones; it fails, naming the files, when they differ.
The generators are pinned in scripts/setup (grpcio-tools, mypy-protobuf) so a fresh
machine makes the same bytes.

    scripts/genproto.py [--check]
"""

from __future__ import annotations

import re
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
PACKAGE = ROOT / "clients" / "python" / "modelyard_client" / "v1"
INIT = '"""Generated gRPC stubs of proto/modelyard/v1 (scripts/genproto.py). DO NOT EDIT."""\n'
# `from modelyard.v1 import x_pb2`, `import modelyard.v1.x_pb2`, `modelyard.v1.x_pb2.Name`
# in annotations and the builder's module name: a module path, always followed by a stub.
_MODULE_PATH = re.compile(r"\bmodelyard\.v1(?=\s+import\b|\.\w+_pb2(?:_grpc)?\b)")


def generate(out: Path) -> int:
    """Every stub of proto/modelyard/v1 into `out` (a folder), imports rewritten."""
    sources = sorted(
        str(p.relative_to(PROTO)) for p in (PROTO / "modelyard" / "v1").glob("*.proto")
    )
    well_known = str(files("grpc_tools").joinpath("_proto"))
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "protoc",
            f"-I{PROTO}",
            f"-I{well_known}",
            f"--python_out={raw}",
            f"--grpc_python_out={raw}",
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_out={raw}",
            f"--mypy_grpc_out={raw}",
            *sources,
        ]
        code = protoc.main(args)
        if code != 0:
            print(f"protoc failed with exit code {code}", file=sys.stderr)
            return int(code)
        out.mkdir(parents=True, exist_ok=True)
        for made in sorted((Path(raw) / "modelyard" / "v1").iterdir()):
            text = made.read_text()
            (out / made.name).write_text(_MODULE_PATH.sub("modelyard_client.v1", text))
    (out / "__init__.py").write_text(INIT)
    return 0


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.glob("*.py*") if p.is_file()}


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print("usage: scripts/genproto.py [--check]", file=sys.stderr)
        return 2
    if argv == ["--check"]:
        with tempfile.TemporaryDirectory() as fresh:
            code = generate(Path(fresh))
            if code:
                return code
            made, committed = _contents(Path(fresh)), _contents(PACKAGE)
        differ = sorted(
            n for n in made.keys() | committed.keys() if made.get(n) != committed.get(n)
        )
        if differ:
            print(
                f"the committed Python stubs in {PACKAGE.relative_to(ROOT)} differ from what "
                f"proto/ generates: {', '.join(differ)}; run scripts/genproto.py and commit them",
                file=sys.stderr,
            )
            return 1
        print(f"the committed Python stubs match proto/ ({len(made)} files)")
        return 0
    for stale in PACKAGE.glob("*.py*"):
        stale.unlink()
    code = generate(PACKAGE)
    if code == 0:
        print(f"generated the Python stubs into {PACKAGE.relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
