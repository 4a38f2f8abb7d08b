#!/usr/bin/env python
"""Regenerate the committed protobuf modules in logger_daemon/protos/.

Usage (from anywhere; paths are resolved relative to the repository root):

    python proto/regenerate.py          # rewrite *_pb2.py / *_pb2.pyi
    python proto/regenerate.py --check  # verify committed modules are current

Sources live in proto/logger_daemon/protos/*.proto and are compiled with
``python -m grpc_tools.protoc -I proto -I <grpc_tools include dir>`` so the
generated imports read ``from logger_daemon.protos import x_pb2`` as-is.

The committed modules come from the protoc of grpcio-tools 1.62.3 (GENERATOR):
the code it writes (no runtime version check) runs on protobuf 4.21.6 and every
later release up to 7.x, which is what lets the package accept protobuf>=4.21.6.
Newer generators write code that refuses any runtime older than themselves.
grpcio-tools 1.62.3 needs no protobuf runtime to generate, so it runs beside
any protobuf:

    pip install --no-deps --target /tmp/protoc-1.62.3 grpcio-tools==1.62.3
    PYTHONPATH=/tmp/protoc-1.62.3 python proto/regenerate.py

``--check`` with that generator compares every file byte for byte; with another
grpcio-tools it compares what the code means, each module's serialized file
descriptor, and that each module names GENERATOR's protobuf version.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PACKAGE = Path("logger_daemon") / "protos"
SOURCE_DIR = PROTO_ROOT / PACKAGE
OUTPUT_DIR = REPO_ROOT / PACKAGE
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi")
#: The grpcio-tools whose protoc writes the committed modules, and the protobuf version it names.
GENERATOR = "1.62.3"
GENERATED_BY = "# Protobuf Python Version: 4.25.1"


def _generator_version() -> str | None:
    try:
        return importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        return None


def _serialized_descriptor(path: Path) -> bytes | None:
    """The serialized FileDescriptorProto a generated module registers: what the code means."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, bytes):
                return argument.value
    return None


def _same(fresh: Path, committed: Path, exact: bool) -> bool:
    if exact:
        return filecmp.cmp(fresh, committed, shallow=False)
    if committed.suffix == ".pyi":  # typing stubs: their style changes with the generator
        return True
    return _serialized_descriptor(fresh) == _serialized_descriptor(committed) is not None and (
        GENERATED_BY in committed.read_text().splitlines()
    )


def _grpc_tools_include() -> Path:
    """Directory holding google/protobuf/*.proto shipped with grpcio-tools."""
    try:
        import grpc_tools
    except ImportError:
        sys.exit("error: grpcio-tools is required (pip install grpcio-tools)")
    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    if not (include / "google" / "protobuf" / "struct.proto").is_file():
        sys.exit(f"error: google/protobuf protos not found under {include}")
    return include


def _sources() -> list[Path]:
    sources = sorted(SOURCE_DIR.glob("*.proto"))
    if not sources:
        sys.exit(f"error: no .proto files in {SOURCE_DIR}")
    return sources


def _generated_files(root: Path) -> dict[str, Path]:
    """Generated modules under root/logger_daemon/protos, keyed by file name."""
    directory = root / PACKAGE
    if not directory.is_dir():
        return {}
    return {p.name: p for p in sorted(directory.iterdir()) if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)}


def generate(out_root: Path) -> dict[str, Path]:
    """Run protoc on every source, writing modules below out_root."""
    include = _grpc_tools_include()
    sources = [str(p.relative_to(REPO_ROOT)) for p in _sources()]
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT.relative_to(REPO_ROOT)}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        *sources,
    ]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        sys.exit(f"error: protoc failed with exit code {result.returncode}")
    return _generated_files(out_root)


def check() -> int:
    """Return 0 if committed modules match a fresh generation, else 1."""
    exact = _generator_version() == GENERATOR
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = _generated_files(REPO_ROOT)
        drifted = []
        for name in sorted(set(fresh) | set(committed)):
            if name not in committed:
                drifted.append(f"{PACKAGE / name} (missing)")
            elif name not in fresh:
                drifted.append(f"{PACKAGE / name} (stale: no matching .proto)")
            elif not _same(fresh[name], committed[name], exact):
                drifted.append(f"{PACKAGE / name} (differs)")
    if drifted:
        print("Generated protobuf modules are out of date:")
        for line in drifted:
            print(f"  {line}")
        print("Run: python proto/regenerate.py")
        return 1
    how = "byte for byte" if exact else f"in their descriptors (grpcio-tools {_generator_version()}, not {GENERATOR})"
    print(f"OK: {len(fresh)} generated files match {SOURCE_DIR.relative_to(REPO_ROOT)} {how}")
    return 0


def regenerate() -> int:
    """Generate into a temp dir, then replace the committed modules."""
    if _generator_version() != GENERATOR:
        sys.exit(
            f"error: the committed modules come from grpcio-tools {GENERATOR} (found {_generator_version()}):\n"
            f"  pip install --no-deps --target /tmp/protoc-{GENERATOR} grpcio-tools=={GENERATOR}\n"
            f"  PYTHONPATH=/tmp/protoc-{GENERATOR} python proto/regenerate.py"
        )
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        for name, path in _generated_files(REPO_ROOT).items():
            if name not in fresh:
                path.unlink()
                print(f"removed {PACKAGE / name}")
        for name, path in fresh.items():
            shutil.copyfile(path, OUTPUT_DIR / name)
    print(f"wrote {len(fresh)} files to {PACKAGE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare committed modules with a fresh generation; exit 1 on drift",
    )
    args = parser.parse_args(argv)
    return check() if args.check else regenerate()


if __name__ == "__main__":
    sys.exit(main())
