"""Encoders of the first kinds: scalars, histograms, images, text (see `logger_daemon.summaries`)."""

from __future__ import annotations

from logger_client.protocol import RecordKind
from logger_daemon import summaries
from logger_daemon.encoders.base import Encoder, summary_encoder

ENCODERS: dict[int, Encoder] = {
    RecordKind.SCALAR: summary_encoder(
        summaries.scalar, ("display_name", "summary_description", "new_style", "double_precision")
    ),
    RecordKind.HISTOGRAM: summary_encoder(summaries.histogram, ("bins", "max_bins")),
    RecordKind.IMAGE: summary_encoder(summaries.image, ("dataformats",)),
    RecordKind.IMAGES: summary_encoder(summaries.images, ("dataformats",)),
    RecordKind.TEXT: summary_encoder(summaries.text),
}
