"""Encoders of values combined across ranks (`logger_daemon.reduce`): a merged histogram, with how
many ranks went into it in `node_name` (combined scalars go through the scalar columns)."""

from __future__ import annotations

from logger_client.protocol import STEP, TAG, VALUE, WALL_TIME, Record
from logger_client.reduction import ranks_note
from logger_daemon.aggregate import HistogramPartial
from logger_daemon.encoders.base import Encoder
from logger_daemon.event_codec import summary_event
from logger_daemon.protos.summary_pb2 import Summary
from logger_daemon.reduce import REDUCED_HISTOGRAM
from logger_daemon.summaries import clean_tag


def encode_merged_histogram(record: Record, run_path: str) -> list[bytes]:
    """A histogram of every value of the ranks that logged the tag at this step."""
    partial: HistogramPartial = record[VALUE]
    value = Summary.Value(tag=clean_tag(record[TAG]), histo=partial.proto(), node_name=ranks_note(partial.ranks))
    return [summary_event(record[WALL_TIME], record[STEP], Summary(value=[value]))]


ENCODERS: dict[int, Encoder] = {REDUCED_HISTOGRAM: encode_merged_histogram}
