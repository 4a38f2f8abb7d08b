"""The encoder of embeddings: the projector's files beside the run's events."""

from __future__ import annotations

from logger_daemon.encoders.base import Encoder

ENCODERS: dict[int, Encoder] = {}
