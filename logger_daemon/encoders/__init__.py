"""Every data record kind's encoder, one module per family (see `base` for what an encoder is)."""

from __future__ import annotations

from logger_daemon.encoders import core, graphs, media, plugins, projector, reduced
from logger_daemon.encoders.base import Encoder

__all__ = ["ENCODERS", "Encoder"]

ENCODERS: dict[int, Encoder] = {
    **core.ENCODERS,
    **media.ENCODERS,
    **plugins.ENCODERS,
    **projector.ENCODERS,
    **graphs.ENCODERS,
    **reduced.ENCODERS,
}
