"""Cross-rank reduction of records per (run, tag, step): the pipeline's stage between check and encode.

Data-parallel ranks often log the same tag at the same step. This stage is where their values will
be combined into one record; for now every record passes through unchanged.
"""

from __future__ import annotations

from typing import Any, TypeVar

Groups = TypeVar("Groups", bound=dict[tuple[Any, str], Any])


def reduce_records(groups: Groups) -> Groups:
    """What a cycle holds per (run, tag) (records and scalar columns, in arrival order); returns
    what is to be encoded."""
    return groups
