"""SummaryWriter methods for PR curves, hparams, custom scalars, meshes, curves; scalars to JSON."""

from __future__ import annotations

from ._writer_base import WriterBase


class PluginMethods(WriterBase):
    """Mixed into `SummaryWriter`: PR curves, hparams, custom scalars, meshes, curves, scalars to JSON."""
