"""Histograms as tensorboardX builds them (numpy binning, then TensorBoard's bucket layout)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from logger_daemon.protos.histogram_pb2 import HistogramProto

__all__ = ["TENSORFLOW_BINS", "Bins", "default_bucket_edges", "histogram_from_counts", "histogram_proto"]

Bins = str | int | Sequence[float] | np.ndarray

# The bins name that selects TensorBoard's fixed exponential bucket edges.
TENSORFLOW_BINS = "tensorflow"


@functools.cache
def default_bucket_edges() -> np.ndarray:
    """TensorBoard's default edges: 0 and +-1e-12 * 1.1**k up to 1e20 (as tensorboardX builds them).

    Built by repeated multiplication, not powers, so every edge is bit-identical to
    tensorboardX's. The array is shared: it is read-only.
    """
    positive = []
    edge = 1e-12
    while edge < 1e20:
        positive.append(edge)
        edge *= 1.1
    edges = np.array([-e for e in reversed(positive)] + [0.0] + positive)
    edges.flags.writeable = False
    return edges


def histogram_proto(values: np.ndarray, bins: Bins = TENSORFLOW_BINS, max_bins: int | None = None) -> HistogramProto:
    """Histogram ``values`` (any shape, any real dtype) into a HistogramProto.

    ``bins`` is "tensorflow" (TensorBoard's default edges), a numpy bin-estimator name
    ("auto", "fd", ...), a number of equal-width bins, or a sequence of edges. When
    there are more than ``max_bins`` bins, neighbouring bins are merged. The result
    equals tensorboardX's ``make_histogram`` on the same input.
    Raises ValueError naming the argument when ``values`` is empty or nothing can be
    binned, or when numpy refuses ``bins``.
    """
    if max_bins is not None and max_bins < 1:
        raise ValueError(f"max_bins: must be a positive number of bins or None, got {max_bins}")
    # tensorboardX converts to float64 first; edges, sums and counts all depend on it.
    flat = np.asarray(values).astype(np.float64, copy=False).reshape(-1)
    if flat.size == 0:
        raise ValueError("values: cannot make a histogram of an empty array")
    if isinstance(bins, str) and bins == TENSORFLOW_BINS:
        bins = default_bucket_edges()
    try:
        counts, edges = np.histogram(flat, bins=bins)
    except (TypeError, ValueError) as err:  # e.g. non-finite values with an estimator, bad bins
        raise ValueError(f"values/bins: {err}") from err

    # dot, not sum of squares: same rounding as tensorboardX
    return histogram_from_counts(counts, edges, flat.min(), flat.max(), flat.size, flat.sum(), flat.dot(flat), max_bins)


def histogram_from_counts(
    counts: np.ndarray,
    edges: np.ndarray,
    minimum: float,
    maximum: float,
    num: float,
    total: float,
    sum_squares: float,
    max_bins: int | None = None,
) -> HistogramProto:
    """The HistogramProto of values that numpy bucketed into `counts` over `edges`, with their
    statistics given: as `histogram_proto` lays it out (bins merged past `max_bins`, empty ends
    trimmed). Counts of several sets of values over the same edges add up to theirs together."""
    if max_bins is not None and counts.size > max_bins:
        counts, edges = _merge_bins(counts, edges, max_bins)

    counts, edges = _trim_empty(counts, edges)
    if counts.size == 0 or edges.size == 0:
        raise ValueError("values: no value falls inside the histogram's bins")

    return HistogramProto(
        min=minimum,
        max=maximum,
        num=num,
        sum=total,
        sum_squares=sum_squares,
        bucket_limit=edges.tolist(),
        bucket=counts.tolist(),
    )


def _merge_bins(counts: np.ndarray, edges: np.ndarray, max_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge runs of ``n // max_bins`` bins, zero-padding the last run (tensorboardX's rule,
    which can leave more than ``max_bins`` bins)."""
    group = counts.size // max_bins
    short = counts.size % group
    if short:
        counts = np.concatenate([counts, np.zeros(group - short, counts.dtype)])
    merged = counts.reshape(-1, group).sum(axis=1)
    merged_edges = np.empty(merged.size + 1, edges.dtype)
    merged_edges[:-1] = edges[:-1:group]
    merged_edges[-1] = edges[-1]
    return merged, merged_edges


def _trim_empty(counts: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop empty bins at both ends, keeping one empty bin on the left.

    TensorBoard stores only right edges, so the kept left bin carries the left edge of
    the first non-empty bin. Degenerate cases (no non-empty bin) follow tensorboardX.
    """
    nonempty = np.flatnonzero(counts)
    if nonempty.size:
        start, end = int(nonempty[0]), int(nonempty[-1]) + 1
    else:
        start, end = counts.size, 1
    if start > 0:
        kept = counts[start - 1 : end]
    else:
        kept = np.concatenate([np.zeros(1, counts.dtype), counts[:end]])
    return kept, edges[start : end + 1]
