"""Partial aggregates: what several ranks' values for one (run, tag, step) combine into, in a form
that combines again (a node's ranks, then the nodes at the root) to the same result as all the
ranks' values combined at once.

Sums are exact: a partial sum is a short list of floats whose exact sum is the exact sum of the
values (`expansion`), and a result is that exact sum rounded once (`exact_sum`, `math.fsum`). So a
mean does not depend on how the ranks were grouped into nodes, nor in which order they came.

A histogram partial holds, for bins of fixed edges (TensorBoard's default, or edges given), the
bucket counts over those edges (counts of several ranks add up), with min, max, count, sum and sum
of squares; for bins numpy derives from the data (a number of bins, an estimator) it holds the
values themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from logger_daemon.histogram import TENSORFLOW_BINS, default_bucket_edges, histogram_from_counts, histogram_proto
from logger_daemon.protos.summary_pb2 import HistogramProto

__all__ = ["HistogramPartial", "exact_parts", "exact_sum", "expansion", "merge_histograms"]


def exact_sum(values: Sequence[float]) -> float:
    """The exact sum of `values`, rounded once; with infinities or NaN, as float addition gives."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):  # inf - inf, or an exact sum beyond float range
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.sum(np.asarray(values, dtype=np.float64)))


def expansion(values: Sequence[float]) -> list[float]:
    """Floats, usually one or two, whose exact sum is the exact sum of `values`: a partial sum that
    loses nothing when it is summed again with others."""
    parts = [exact_sum(values)]
    if not math.isfinite(parts[0]):
        return parts
    rest = [*values, -parts[0]]
    try:
        while True:  # each remainder is below the previous one's rounding: a few rounds at most
            remainder = math.fsum(rest)
            if remainder == 0.0:
                return parts
            parts.append(remainder)
            rest.append(-remainder)
    except (OverflowError, ValueError):
        return parts


def exact_parts(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each entry i (`values[edges[i]:edges[i + 1]]`, at least one value): a rounded sum and
    further parts (`extra`, of entry `extra_of`) whose exact sum with it is the exact sum of its
    values. A cascade of error-free TwoSums, one column of all entries at a time."""
    sizes = np.diff(edges)
    entry_of = np.repeat(np.arange(sizes.size), sizes)
    grid = np.zeros((sizes.size, int(sizes.max()) if sizes.size else 0))
    grid[entry_of, np.arange(values.size) - edges[:-1][entry_of]] = values
    total = grid[:, 0].copy() if grid.shape[1] else np.zeros(0)
    errors = []
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(1, grid.shape[1]):
            x = grid[:, j]
            added = total + x
            virtual = added - total
            errors.append((total - (added - virtual)) + (x - virtual))
            total = added
    if not errors:
        return total, np.empty(0, np.int64), np.empty(0)
    stacked = np.stack(errors, axis=1)
    # An overflowed sum has no finite parts: its rounded (infinite) sum is what float addition gives.
    kept = (stacked != 0) & np.isfinite(stacked) & np.isfinite(total)[:, None]
    entries, _ = np.nonzero(kept)
    return total, entries.astype(np.int64), stacked[kept]


@dataclass
class HistogramPartial:
    """What a histogram of several ranks' values needs from some of them."""

    bins: Any
    max_bins: int | None
    minimum: float
    maximum: float
    num: int
    sum_parts: list[float]
    sum_squares_parts: list[float]
    #: Bucket counts over `edges`, for bins of fixed edges; else None and `values` holds the values.
    counts: np.ndarray | None = None
    edges: np.ndarray | None = None
    values: np.ndarray | None = None
    #: How many ranks went into it.
    ranks: int = 1

    @classmethod
    def of_values(
        cls, values: np.ndarray, bins: Any = TENSORFLOW_BINS, max_bins: int | None = None
    ) -> HistogramPartial:
        """One rank's values (any shape, any real dtype), as tensorboardX would take them."""
        flat = np.asarray(values).astype(np.float64, copy=False).reshape(-1)
        if flat.size == 0:
            raise ValueError("values: cannot make a histogram of an empty array")
        partial = cls(
            bins,
            max_bins,
            float(flat.min()),
            float(flat.max()),
            int(flat.size),
            [float(flat.sum())],
            [float(flat.dot(flat))],
        )
        edges = _fixed_edges(bins)
        if edges is None:
            partial.values = flat
        else:
            partial.edges = edges
            partial.counts = np.histogram(flat, bins=edges)[0].astype(np.int64)
        return partial

    def proto(self) -> HistogramProto:
        """The histogram of every value that went into this partial."""
        total, squares = exact_sum(self.sum_parts), exact_sum(self.sum_squares_parts)
        if self.counts is not None and self.edges is not None:
            return histogram_from_counts(
                self.counts, self.edges, self.minimum, self.maximum, self.num, total, squares, self.max_bins
            )
        assert self.values is not None
        proto = histogram_proto(self.values, self.bins, self.max_bins)
        proto.sum, proto.sum_squares = total, squares
        return proto


def _fixed_edges(bins: Any) -> np.ndarray | None:
    if isinstance(bins, str):
        return default_bucket_edges() if bins == TENSORFLOW_BINS else None
    if isinstance(bins, (list, tuple, np.ndarray)):
        return np.asarray(bins, dtype=np.float64)
    return None  # a number of bins: their edges come from the values


def merge_histograms(partials: Sequence[HistogramPartial]) -> HistogramPartial:
    """One partial of several, in order (the first one's bins apply to all)."""
    first = partials[0]
    if len(partials) == 1:
        return first
    minimum = min(p.minimum for p in partials) if not any(math.isnan(p.minimum) for p in partials) else math.nan
    maximum = max(p.maximum for p in partials) if not any(math.isnan(p.maximum) for p in partials) else math.nan
    merged = HistogramPartial(
        first.bins,
        first.max_bins,
        minimum,
        maximum,
        sum(p.num for p in partials),
        expansion([x for p in partials for x in p.sum_parts]),
        expansion([x for p in partials for x in p.sum_squares_parts]),
        ranks=sum(p.ranks for p in partials),
    )
    with_edges = next((p for p in partials if p.edges is not None), None)
    if with_edges is None:
        merged.values = np.concatenate([p.values for p in partials if p.values is not None])
        return merged
    edges = with_edges.edges
    assert edges is not None
    total = np.zeros(len(edges) - 1, np.int64)
    for p in partials:
        if p.counts is not None and p.edges is not None and np.array_equal(p.edges, edges):
            total += p.counts
        elif p.values is not None:  # a rank that asked for other bins: its values in these
            total += np.histogram(p.values, bins=edges)[0]
        else:
            raise ValueError("histograms of one tag and step were bucketed with different edges")
    merged.bins, merged.max_bins = with_edges.bins, with_edges.max_bins
    merged.edges, merged.counts = edges, total
    return merged
