"""Thin client of the logging daemon: a drop-in `SummaryWriter` that never blocks a training step.

Importing this package imports numpy, pyzmq and msgpack only: no protobuf, no torch, no daemon.
"""

from .writer import SummaryWriter

__all__ = ["SummaryWriter", "__version__"]
__version__ = "0.1.0"
