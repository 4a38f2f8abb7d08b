"""Encoders of the plugin kinds: PR curves, hparams, custom scalars, meshes."""

from __future__ import annotations

from logger_daemon.encoders.base import Encoder

ENCODERS: dict[int, Encoder] = {}
