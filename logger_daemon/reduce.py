"""Cross-rank reduction of records per (run, tag, step): the pipeline's stage between check and encode.

Data-parallel ranks often log the same tag at the same step. This stage is where their values will
be combined into one record; for now every record passes through unchanged.
"""

from __future__ import annotations

from logger_client._wire import Record

RecordGroups = dict[tuple[object, str], list[Record]]


def reduce_records(groups: RecordGroups) -> RecordGroups:
    """Records grouped by (run, tag), each group in arrival order; returns what is to be encoded."""
    return groups
