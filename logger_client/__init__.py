"""Thin client of the logging daemon: a drop-in `SummaryWriter` that never blocks a training step.

Importing this package imports numpy, pyzmq and msgpack only: no protobuf, no torch, no daemon.
`load` (reading logs back, `logger_client.reader`) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .writer import SummaryWriter

if TYPE_CHECKING:
    from .reader import load

__all__ = ["SummaryWriter", "__version__", "load"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The reader is not needed by a training process: it loads only when asked for.
    if name == "load":
        from .reader import load

        globals()["load"] = load
        return load
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"load"})
