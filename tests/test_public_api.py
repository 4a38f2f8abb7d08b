"""The client's public surface, pinned: what a user imports, what the daemon may import, and the one
place each protocol name is defined."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import logger_client
from logger_client import SummaryWriter
from logger_client.protocol import DropReason

REPO = Path(__file__).resolve().parent.parent
#: The client's modules that other packages (the daemon, tests of user code) may import.
PUBLIC_MODULES = {
    "logger_client.protocol",
    "logger_client.settings",
    "logger_client.runtime",
    "logger_client.transport",
    "logger_client.in_memory",
    "logger_client.writer",
    "logger_client.reader",
    "logger_client.reduction",
    "logger_client.testing",
    "logger_client.lightning",
    "logger_client.pytorch_lightning",
    "logger_client.hf",
}


def test_the_package_surface_is_pinned():
    assert logger_client.__all__ == ["SummaryWriter", "__version__", "load"]
    assert logger_client.SummaryWriter is SummaryWriter
    assert logger_client.load is importlib.import_module("logger_client.reader").load
    assert isinstance(logger_client.__version__, str)
    namespace: dict = {}
    exec("from logger_client import *", namespace)
    assert {name for name in namespace if not name.startswith("__")} | {"__version__"} == set(logger_client.__all__)


#: Public modules that import an optional framework (Lightning, transformers): seconds to import.
FRAMEWORK_MODULES = {"logger_client.lightning", "logger_client.pytorch_lightning", "logger_client.hf"}


def test_the_public_modules_are_the_ones_without_an_underscore_and_each_says_what_it_exports():
    found = {
        f"logger_client.{path.stem}"
        for path in (REPO / "logger_client").glob("*.py")
        if not path.stem.startswith("_") and path.stem != "demo"
    }
    assert found == PUBLIC_MODULES
    for name in sorted(PUBLIC_MODULES - FRAMEWORK_MODULES):
        _assert_documented_and_exports_what_it_has(importlib.import_module(name))
    for name in sorted(FRAMEWORK_MODULES):  # read, not imported: see the e2e test below
        tree = ast.parse((REPO / "logger_client" / f"{name.rsplit('.', 1)[1]}.py").read_text())
        assert ast.get_docstring(tree), f"{name} has no docstring"
        defined = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        } | {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
        exported = next(
            ast.literal_eval(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
        )
        assert exported and not set(exported) - defined, f"{name}.__all__ names what it lacks: {exported}"


@pytest.mark.e2e
def test_the_framework_modules_import_and_export_what_they_say():
    pytest.importorskip("lightning")
    pytest.importorskip("transformers")
    for name in sorted(FRAMEWORK_MODULES):
        _assert_documented_and_exports_what_it_has(importlib.import_module(name))


def _assert_documented_and_exports_what_it_has(module: ModuleType) -> None:
    assert module.__doc__, f"{module.__name__} has no docstring"
    exported = getattr(module, "__all__", None)
    assert exported, f"{module.__name__} has no __all__"
    missing = [symbol for symbol in exported if not hasattr(module, symbol)]
    assert not missing, f"{module.__name__}.__all__ names what it lacks: {missing}"


def _client_imports(path: Path) -> list[str]:
    """Every `logger_client...` name a module imports, as `module` or `module:name`."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if alias.name.startswith("logger_client")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("logger_client"):
            names += [f"{node.module}:{alias.name}" for alias in node.names]
    return names


def test_the_daemon_imports_only_public_names_of_the_client():
    private = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "logger_daemon").rglob("*.py"))
        for name in _client_imports(path)
        if any(part.startswith("_") for part in re.split(r"[.:]", name))
    ]
    assert private == []


def test_each_drop_reason_is_spelled_only_in_the_protocol():
    """Counters take `DropReason` members: a reason written as a string elsewhere would be a second
    definition, free to drift."""
    spelled = [
        f"{path.relative_to(REPO)}: {reason.value}"
        for package in ("logger_client", "logger_daemon")
        for path in sorted((REPO / package).rglob("*.py"))
        if path.name != "protocol.py" and "protos" not in path.parts
        for reason in DropReason
        if f'"{reason.value}"' in path.read_text()
    ]
    assert spelled == []


def test_readme_lists_every_drop_reason_and_nothing_else():
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n### Drop reasons\n", 1)[1].split("\n#", 1)[0]
    listed = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert listed == [reason.value for reason in DropReason]


@pytest.mark.e2e
def test_importing_the_client_imports_no_protobuf_torch_or_daemon():
    code = (
        "import logger_client, logger_client.in_memory, sys; "
        "leaked = {'google.protobuf', 'torch', 'logger_daemon', 'tensorboard', 'tensorboardX'} & set(sys.modules); "
        "assert not leaked, leaked; "
        "assert 'logger_client.reader' not in sys.modules, 'the reader loads on first use only'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
