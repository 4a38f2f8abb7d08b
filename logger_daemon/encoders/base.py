"""What an encoder is: a checked data record, and the directory of its run, in; the serialized
Events to append to the run's event file out (in order; none for a kind that writes only files
beside it). Encoders run on the pipeline's thread and raise ValueError or TypeError on values they
refuse (counted as `encode_error`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from logger_client.protocol import STEP, TAG, VALUE, WALL_TIME, Record, record_options
from logger_daemon.event_codec import summary_event

#: (record, run directory) -> serialized Events.
Encoder = Callable[[Record, str], list[bytes]]


def summary_encoder(function: Callable[..., Any], option_names: Sequence[str] = ()) -> Encoder:
    """The encoder of a summary function `function(tag, value, **options) -> Summary`: one Event at
    the record's step and wall time. Options other than `option_names` are ignored."""

    def encode(record: Record, run_path: str) -> list[bytes]:
        options = record_options(record)
        chosen = {name: options[name] for name in option_names if name in options}
        summary = function(record[TAG], record[VALUE], **chosen)
        return [summary_event(record[WALL_TIME], record[STEP], summary)]

    return encode
