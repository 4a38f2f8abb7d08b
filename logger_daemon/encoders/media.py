"""Encoders of media and raw kinds: audio (WAV), video (GIF), images with boxes, raw histograms,
tensors."""

from __future__ import annotations

from logger_daemon.encoders.base import Encoder

ENCODERS: dict[int, Encoder] = {}
