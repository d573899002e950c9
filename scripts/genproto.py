"""Generate the Python gRPC stubs (with typed .pyi) from proto/ into services/.

Run by the setup script; the output is build output, never committed.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "services"


def main() -> int:
    sources = sorted(
        str(p.relative_to(PROTO)) for p in (PROTO / "modelyard" / "v1").glob("*.proto")
    )
    well_known = str(files("grpc_tools").joinpath("_proto"))
    bin_dir = Path(sys.executable).parent
    args = [
        "protoc",
        f"-I{PROTO}",
        f"-I{well_known}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        *sources,
    ]
    code = protoc.main(args)
    if code != 0:
        print(f"protoc failed with exit code {code}", file=sys.stderr)
        return int(code)
    (OUT / "modelyard" / "v1" / "__init__.py").write_text('"""Generated gRPC stubs."""\n')
    print(f"generated stubs for {len(sources)} proto files into {OUT / 'modelyard' / 'v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
