"""Encoders of graphs: a traced model's plain description, or an ONNX model, as a GraphDef."""

from __future__ import annotations

from logger_daemon.encoders.base import Encoder

ENCODERS: dict[int, Encoder] = {}
