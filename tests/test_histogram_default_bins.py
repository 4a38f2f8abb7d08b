"""Counting the default bins without sorting: the same counts as numpy.histogram, value for value.

Both ways of counting are checked, the C extension's (where built) and numpy.histogram's (without
it), on the values
where a mistake would show: every default edge and its neighbours, signed zeros, subnormals,
NaN, infinities, values beyond the outer edges, and random bit patterns of both float widths.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorboardX
from tensorboardX import summary as tbx

from logger_daemon import histogram
from logger_daemon.histogram import default_bucket_edges, histogram_proto

RNG = np.random.default_rng(15)
EDGES = default_bucket_edges()


@pytest.fixture(params=["native", "numpy"])
def counting(request, monkeypatch):
    if request.param == "native":
        if histogram._native is None:
            pytest.skip("the _histogram extension is not built")
    else:
        monkeypatch.setattr(histogram, "_native", None)
    return request.param


def _near_edges(dtype) -> np.ndarray:
    edges = EDGES.astype(dtype)
    up, down = np.nextafter(edges, dtype(np.inf)), np.nextafter(edges, dtype(-np.inf))
    return np.concatenate([edges, up, down])


def _random_bits(dtype, size: int) -> np.ndarray:
    width = np.dtype(dtype).itemsize
    return RNG.integers(0, 256, size * width, dtype=np.uint8).view(dtype)


CASES = {
    "edges_f64": _near_edges(np.float64),
    "edges_f32": _near_edges(np.float32),
    "edges_f64_as_f32": EDGES.astype(np.float32),
    "special_f64": np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, -5e-324, 1e-320, 1e25, -1e25]),
    "special_f32": np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 3e38, -3e38], np.float32),
    "outer_edges": np.array([EDGES[0], EDGES[-1], np.nextafter(EDGES[-1], np.inf), np.nextafter(EDGES[0], -np.inf)]),
    "bits_f32": _random_bits(np.float32, 200_000),
    "bits_f64": _random_bits(np.float64, 200_000),
    **{
        f"normal_{scale:g}_{np.dtype(dtype).name}": (RNG.standard_normal(50_000) * scale).astype(dtype)
        for scale in (1e-13, 1e-6, 1.0, 1e19)
        for dtype in (np.float32, np.float64)
    },
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_counts_equal_numpy_histogram(name, counting):
    values = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        flat = values.astype(np.float64)
    expected = np.histogram(flat, bins=EDGES)[0]
    counts, extremes = histogram._default_counts(values, flat)
    np.testing.assert_array_equal(counts, expected)
    # The extremes the counting pass gives are numpy's, bit for bit; it leaves NaN and zeros to numpy.
    theirs = (flat.min(), flat.max())
    if extremes is not None:
        assert np.array(extremes).tobytes() == np.array(theirs).tobytes()
    elif counting == "native":
        assert np.isnan(flat).any() or 0.0 in theirs


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64, np.uint8, np.bool_])
def test_protos_equal_tensorboardxs(dtype, counting):
    values = (RNG.standard_normal((30, 40)) * 4).astype(dtype)
    writer = tensorboardX.SummaryWriter(write_to_disk=False)
    theirs = tbx.histogram("w", values, writer.default_bins).value[0].histo
    writer.close()
    ours = histogram_proto(values)
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


def test_every_cell_names_a_bucket():
    # Building a table also checks that no cell holds two edges.
    for itemsize in (4, 8):
        cells = histogram._cells(itemsize)
        assert cells.base.min() >= -1 and cells.base.max() < EDGES.size - 1
