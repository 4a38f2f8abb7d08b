"""Histograms as tensorboardX builds them (numpy binning, then TensorBoard's bucket layout).

numpy.histogram sorts its input to bin it against explicit edges, which is most of what a
histogram of the default edges costs. Those edges are spaced so that a float's top bits name at
most one edge near it: where the `_histogram` extension is built, the default bins are counted in
one pass over a table of the float's top bits (`_default_counts`), with the same counts as
numpy.histogram, several times faster. (The same table in numpy takes several passes and is no
faster than numpy.histogram, so without the extension numpy.histogram counts.)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from logger_daemon.protos.histogram_pb2 import HistogramProto


def _load_extension() -> ModuleType | None:
    try:
        from logger_daemon import _histogram
    except ImportError:  # built without a C compiler: numpy.histogram counts
        return None
    return _histogram


_native = _load_extension()

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
    extremes: tuple[float, float] | None = None
    if isinstance(bins, str) and bins == TENSORFLOW_BINS:
        (counts, extremes), edges = _default_counts(np.asarray(values).reshape(-1), flat), default_bucket_edges()
    else:
        try:
            counts, edges = np.histogram(flat, bins=bins)
        except (TypeError, ValueError) as err:  # e.g. non-finite values with an estimator, bad bins
            raise ValueError(f"values/bins: {err}") from err

    minimum, maximum = extremes if extremes is not None else (flat.min(), flat.max())
    # dot, not sum of squares: same rounding as tensorboardX
    return histogram_from_counts(counts, edges, minimum, maximum, flat.size, flat.sum(), flat.dot(flat), max_bins)


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


class _Cells:
    """Per cell of the number line named by a float's top `bits` bits: the default bucket of the
    cell's lowest value (`base`, -1 below the first edge) and the one default edge inside it
    (`threshold`, +inf where there is none). A value's bucket is base + (value >= threshold)."""

    def __init__(self, itemsize: int, bits: int) -> None:
        edges = default_bucket_edges()
        dtype, unsigned = (np.float32, np.uint32) if itemsize == 4 else (np.float64, np.uint64)
        width = itemsize * 8
        starts = np.arange(2**bits, dtype=unsigned) << unsigned(width - bits)
        ends = starts | unsigned((1 << (width - bits)) - 1)
        with np.errstate(invalid="ignore"):
            first, last = starts.view(dtype).astype(np.float64), ends.view(dtype).astype(np.float64)
        low, high = np.fmin(first, last), np.fmax(first, last)  # a negative cell's start is its top
        finite = np.isfinite(low) & np.isfinite(high)
        low, high = np.where(finite, low, 0.0), np.where(finite, high, 0.0)  # never looked up
        below = np.searchsorted(edges, low, "right")  # edges <= the cell's lowest value
        inside = np.searchsorted(edges, high, "right") - below  # edges in (low, high]
        if inside.max() > 1:
            raise AssertionError("a cell holds two default edges")  # the edges' spacing rules it out
        # Cells beyond the last edge are never looked up (their values are not counted).
        self.base = np.minimum(below - 1, edges.size - 2).astype(np.int32)
        self.threshold = np.where(inside == 1, edges[np.minimum(below, edges.size - 1)], np.inf)


@functools.cache
def _cells(itemsize: int) -> _Cells:
    """The tables of float32 (`itemsize` 4) or float64 (8) values."""
    return _Cells(itemsize, 13 if itemsize == 4 else 16)


def _default_counts(values: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, tuple[float, float] | None]:
    """numpy.histogram's counts of `flat` (float64) in the default buckets, and where the pass
    can tell them, `flat.min()` and `flat.max()` (else None). With the extension, counted in one
    pass over `values` (the same numbers in the caller's dtype, flat) where they are float32 (half
    the bytes to read), else over `flat`."""
    edges = default_bucket_edges()
    if _native is None:
        return np.histogram(flat, bins=edges)[0], None
    source = np.ascontiguousarray(values if values.dtype == np.float32 else flat)
    cells = _cells(source.dtype.itemsize)
    counts = np.zeros(edges.size - 1, np.int64)
    extremes = np.empty(2, np.float64)
    low, high = float(edges[0]), float(edges[-1])
    nan = _native.count(source, source.dtype.itemsize, cells.base, cells.threshold, low, high, counts, extremes)
    smallest, largest = extremes.tolist()
    # numpy's min and max return NaN if there is one, and which of 0.0 and -0.0 their own order
    # meets: those are left to numpy. Any other extreme is one value, whatever its bits.
    if nan or smallest == 0.0 or largest == 0.0:
        return counts, None
    return counts, (smallest, largest)
