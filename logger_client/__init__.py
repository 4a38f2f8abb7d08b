"""Thin client of the logging daemon: a drop-in `SummaryWriter` that never blocks a training step.

Importing this package imports nothing heavy: `SummaryWriter` (numpy, pyzmq and msgpack; no
protobuf, no torch, no daemon) and `load` (reading logs back, `logger_client.reader`) are
imported on first use. The daemon imports the package's protocol and settings modules and starts
sooner for not loading the writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .reader import load
    from .writer import SummaryWriter

__all__ = ["SummaryWriter", "__version__", "load"]
__version__ = "0.1.0"

#: Attribute -> the module that defines it, imported when the attribute is first asked for.
_LAZY = {"SummaryWriter": ".writer", "load": ".reader"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
