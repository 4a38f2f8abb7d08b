"""SummaryWriter methods for embeddings for TensorBoard's projector."""

from __future__ import annotations

from ._writer_base import WriterBase


class ProjectorMethods(WriterBase):
    """The `add_*` methods for embeddings for TensorBoard's projector (mixed into `SummaryWriter`)."""
