"""SummaryWriter methods for audio, video, images with boxes, figures, raw histograms and tensors."""

from __future__ import annotations

from ._writer_base import WriterBase


class MediaMethods(WriterBase):
    """Mixed into `SummaryWriter`: audio, video, images with boxes, figures, raw histograms, tensors."""
