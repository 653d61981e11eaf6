"""Regenerate the Pub/Sub API stubs from ``pubsub_api.proto``: ``python -m bridge.crm.salesforce._pubsub``.

Needs the test extra (grpcio-tools, mypy-protobuf). The proto is compiled from the repository root
so that the generated modules import each other by their full package path.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The repository root: the first folder up that is not a package.
ROOT = next(folder for folder in HERE.parents if not (folder / "__init__.py").exists())
PROTO = HERE / "pubsub_api.proto"
GENERATED = ("pubsub_api_pb2.py", "pubsub_api_pb2.pyi", "pubsub_api_pb2_grpc.py", "pubsub_api_pb2_grpc.pyi")
_PLUGINS = ("protoc-gen-mypy", "protoc-gen-mypy_grpc")


def generate(out_dir: Path) -> list[Path]:
    """Write the generated files under ``out_dir`` (mirroring the repository's layout); return them."""
    from grpc_tools import protoc

    plugins = {name: shutil.which(name, path=str(Path(sys.executable).parent)) for name in _PLUGINS}
    missing = [name for name, path in plugins.items() if path is None]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not found beside {sys.executable}: install the test extra.")
    include = str(resources.files("grpc_tools") / "_proto")
    out = str(out_dir)
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(f"--plugin={name}={path}" for name, path in plugins.items()),
        str(PROTO.relative_to(ROOT)),
    ]
    # protoc resolves the proto's path against the include directories, so it runs from the root.
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed: see its message above.")
    target = out_dir / HERE.relative_to(ROOT)
    return [target / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate(ROOT):
        print(f"wrote {path.relative_to(ROOT)}")
