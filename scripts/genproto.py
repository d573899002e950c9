"""Generate the Python gRPC stubs (with typed .pyi) from proto/ into the client package.

The stubs belong to `modelyard_client` (clients/python/modelyard_client/v1/), which the
server depends on, so the client installs with nothing of the server's. They are build
output, never committed: scripts/setup runs this before it installs the client (a clone
installing the client alone runs it first too). protoc names a generated module after
its proto file (``modelyard.v1``); each import of one stub by another is rewritten to the
package that holds them (``modelyard_client.v1``), nothing else: the proto package, the
services' method paths and the serialized descriptors stay ``modelyard.v1``, the wire
contract.

    scripts/genproto.py
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


def main(argv: list[str]) -> int:
    if argv:
        print("usage: scripts/genproto.py", file=sys.stderr)
        return 2
    for stale in PACKAGE.glob("*.py*"):
        stale.unlink()
    code = generate(PACKAGE)
    if code == 0:
        print(f"generated the Python stubs into {PACKAGE.relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
