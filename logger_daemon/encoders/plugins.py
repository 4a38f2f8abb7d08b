"""Encoders of the plugin kinds: PR curves (and add_curve's curves), hparams, custom scalars, meshes
(see `logger_daemon.plugin_summaries`)."""

from __future__ import annotations

from logger_client.protocol import STEP, VALUE, WALL_TIME, Record, RecordKind
from logger_daemon import plugin_summaries
from logger_daemon.encoders.base import Encoder, summary_encoder
from logger_daemon.event_codec import summary_event

_pr_curve_raw = summary_encoder(plugin_summaries.pr_curve_raw, ("num_thresholds",))
_curve = summary_encoder(plugin_summaries.curve, ("label",))


def _encode_pr_curve_raw(record: Record, run_path: str) -> list[bytes]:
    """add_pr_curve_raw's six rows, or add_curve's points (x, y): both are raw pr_curves tensors."""
    value = record[VALUE]
    if isinstance(value, dict) and "x" in value:
        return _curve(record, run_path)
    return _pr_curve_raw(record, run_path)


def _encode_hparams(record: Record, run_path: str) -> list[bytes]:
    """add_hparams' three summaries, one Event each, as tensorboardX and torch write them."""
    value = record[VALUE]
    if not isinstance(value, dict):
        raise TypeError(f"an HPARAMS value is a map, got {type(value).__name__}")
    return [summary_event(record[WALL_TIME], record[STEP], s) for s in plugin_summaries.hparams(value)]


ENCODERS: dict[int, Encoder] = {
    RecordKind.PR_CURVE: summary_encoder(plugin_summaries.pr_curve, ("num_thresholds",)),
    RecordKind.PR_CURVE_RAW: _encode_pr_curve_raw,
    RecordKind.HPARAMS: _encode_hparams,
    RecordKind.CUSTOM_SCALARS: summary_encoder(plugin_summaries.custom_scalars),
    RecordKind.MESH: summary_encoder(plugin_summaries.mesh, ("json_config",)),
}
