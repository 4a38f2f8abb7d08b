"""SummaryWriter methods for model graphs (torch, ONNX)."""

from __future__ import annotations

from ._writer_base import WriterBase


class GraphMethods(WriterBase):
    """The `add_*` methods for model graphs (torch, ONNX) (mixed into `SummaryWriter`)."""
