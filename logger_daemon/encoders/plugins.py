"""Encoders of the plugin kinds: PR curves (see `logger_daemon.plugin_summaries`)."""

from __future__ import annotations

from logger_client.protocol import RecordKind
from logger_daemon import plugin_summaries
from logger_daemon.encoders.base import Encoder, summary_encoder

ENCODERS: dict[int, Encoder] = {
    RecordKind.PR_CURVE: summary_encoder(plugin_summaries.pr_curve, ("num_thresholds",)),
    RecordKind.PR_CURVE_RAW: summary_encoder(plugin_summaries.pr_curve_raw, ("num_thresholds",)),
}
