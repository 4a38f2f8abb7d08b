"""The daemon's summaries against tensorboardX 2.6 (and torch for new-style scalars).

Both sides' Summary bytes are parsed with TensorBoard's own proto classes and compared
field by field; PNGs are compared by their decoded pixels, not their bytes.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import tensorboardX
from google.protobuf import text_format
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary as TbSummary
from tensorboardX import summary as tbx

from logger_daemon import summaries
from logger_daemon.histogram import default_bucket_edges, histogram_proto
from logger_daemon.image_layout import to_hwc
from logger_daemon.png import encode_png

RNG = np.random.default_rng(20240601)


@pytest.fixture(autouse=True)
def _quiet_numpy():
    # tensorboardX's own casts of NaN / out-of-range floats warn; ours do not.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@pytest.fixture(scope="module")
def tbx_default_bins(tmp_path_factory):
    writer = tensorboardX.SummaryWriter(logdir=str(tmp_path_factory.mktemp("tbx")), write_to_disk=False)
    bins = writer.default_bins
    writer.close()
    return bins


def _decoded(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture)


def _as_loaded(summary) -> TbSummary:
    return TbSummary.FromString(summary.SerializeToString())


def assert_equivalent(ours, theirs) -> None:
    """Equal as TensorBoard reads them; images compared by decoded pixels."""
    ours, theirs = _as_loaded(ours), _as_loaded(theirs)
    assert len(ours.value) == len(theirs.value)
    for mine, ref in zip(ours.value, theirs.value):
        if ref.HasField("image"):
            assert mine.HasField("image")
            got, want = _decoded(mine.image.encoded_image_string), _decoded(ref.image.encoded_image_string)
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            mine.image.ClearField("encoded_image_string")
            ref.image.ClearField("encoded_image_string")
    # Text first for a readable diff, then bytes: exact, and NaN-safe unlike ==.
    assert text_format.MessageToString(ours) == text_format.MessageToString(theirs)
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


# -- scalars -------------------------------------------------------------------------

SCALARS = [
    1.5,
    0.0,
    -3.25,
    7,
    True,
    2**40,
    1e-40,
    1e39,
    1e300,
    float("nan"),
    float("inf"),
    -float("inf"),
    np.float16(0.1),
    np.float32(0.1),
    np.float64(0.1),
    np.int8(-5),
    np.int64(123456789),
    np.uint8(200),
    np.bool_(True),
    np.array(2.5),
    np.array([3.0]),
    np.array([[4.0]], np.float32),
]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalar_matches_tensorboardx(value):
    assert_equivalent(summaries.scalar("loss", value), tbx.scalar("loss", value))


@pytest.mark.parametrize("display_name,description", [("Loss", ""), ("", "what it is"), ("L", "D")])
def test_scalar_metadata_matches_tensorboardx(display_name, description):
    ours = summaries.scalar("train/loss", 0.5, display_name=display_name, summary_description=description)
    assert_equivalent(ours, tbx.scalar("train/loss", 0.5, display_name, description))


@pytest.mark.parametrize("tag", ["a b", "/lead/ing", "ünï/cødé", "x:y(1)", "ok-tag.1/x_y"])
def test_scalar_tag_cleaning_matches_tensorboardx(tag):
    assert_equivalent(summaries.scalar(tag, 1.0), tbx.scalar(tag, 1.0))


@pytest.mark.parametrize("double_precision", [False, True])
@pytest.mark.parametrize("value", [0.1, -2.0, np.float32(3.3), 1e300, np.array(7)], ids=repr)
def test_new_style_scalar_matches_torch(value, double_precision):
    torch_summary = pytest.importorskip("torch.utils.tensorboard.summary")
    ours = summaries.scalar("acc", value, new_style=True, double_precision=double_precision)
    theirs = torch_summary.scalar("acc", value, new_style=True, double_precision=double_precision)
    assert_equivalent(ours, theirs)


@pytest.mark.parametrize("value", [np.array([1.0, 2.0]), np.zeros((0,)), "abc", 1 + 2j])
def test_scalar_rejects_non_scalars(value):
    with pytest.raises(ValueError, match="value"):
        summaries.scalar("x", value)


# -- histograms ----------------------------------------------------------------------

ESTIMATORS = ["auto", "fd", "doane", "scott", "rice", "sturges", "sqrt"]

HIST_VALUES: dict[str, np.ndarray] = {
    "normal_f32": RNG.normal(0.0, 1.0, 10_000).astype(np.float32),
    "uniform_f64_2d": RNG.uniform(-5.0, 50.0, (40, 25)),
    "ints": RNG.integers(-100, 100, 3_000),
    "uint8": RNG.integers(0, 256, (7, 11), dtype=np.uint8),
    "float16": RNG.normal(3.0, 0.5, 500).astype(np.float16),
    "bool": RNG.random(100) > 0.3,
    "positive_tiny": RNG.uniform(1e-9, 1e-6, 1_000),
    "constant": np.full(50, 3.0),
    "single": np.array([-0.75]),
    "zeros": np.zeros(10),
    "on_edges": np.array([0.0, 1e-12, -1e-12, 1e-12 * 1.1, 1.0, 2.0, 3.0]),
    "huge": np.array([-1e25, 1e19, 1e25, 0.5]),
}


def _tbx_bins(bins, default_bins):
    return default_bins if isinstance(bins, str) and bins == "tensorflow" else bins


def _check_histogram(values, bins, max_bins, default_bins):
    """Same histogram as tensorboardX, or a ValueError where tensorboardX refuses too."""
    try:
        theirs = tbx.histogram("w", values, _tbx_bins(bins, default_bins), max_bins=max_bins)
    except ValueError:
        with pytest.raises(ValueError, match="values"):
            summaries.histogram("w", values, bins=bins, max_bins=max_bins)
        return
    assert_equivalent(summaries.histogram("w", values, bins=bins, max_bins=max_bins), theirs)


@pytest.mark.parametrize("bins", ["tensorflow", *ESTIMATORS, 1, 7, 30, 1000])
@pytest.mark.parametrize("name", sorted(HIST_VALUES))
def test_histogram_matches_tensorboardx(name, bins, tbx_default_bins):
    _check_histogram(HIST_VALUES[name], bins, None, tbx_default_bins)


def test_histogram_stone_matches_tensorboardx(tbx_default_bins):
    # "stone" is quadratic in numpy; a small input keeps the test fast.
    _check_histogram(RNG.normal(size=300), "stone", None, tbx_default_bins)


@pytest.mark.parametrize(
    "edges",
    [
        [-3.0, -1.0, 0.0, 0.5, 1.0, 3.0],
        [0, 1, 2, 3, 4],
        [-10.0, 10.0],
        [-1.0, 0.0, 0.0, 1.0],
        np.linspace(-2.0, 2.0, 41),
    ],
    ids=["floats", "ints", "one_bin", "repeated_edge", "array"],
)
@pytest.mark.parametrize("name", ["normal_f32", "ints", "single", "on_edges"])
def test_histogram_explicit_edges(name, edges, tbx_default_bins):
    values = HIST_VALUES[name]
    if name == "ints":
        values = values / 50.0
    _check_histogram(values, edges, None, tbx_default_bins)


@pytest.mark.parametrize(
    "bins,max_bins",
    [
        ("tensorflow", 50),
        ("tensorflow", 7),
        ("tensorflow", 1),
        ("tensorflow", 5000),
        (100, 7),
        (100, 10),
        (101, 10),
        (64, 3),
        ("auto", 4),
        ([0.0, 0.1, 0.2, 0.5, 0.9, 1.0], 2),
    ],
)
def test_histogram_max_bins(bins, max_bins, tbx_default_bins):
    values = np.abs(HIST_VALUES["normal_f32"]) / 4.0
    _check_histogram(values, bins, max_bins, tbx_default_bins)


def test_histogram_nan_with_fixed_edges_matches_tensorboardx(tbx_default_bins):
    values = np.array([0.5, np.nan, -2.0, 3.0, np.inf])
    _check_histogram(values, "tensorflow", None, tbx_default_bins)


def test_default_edges_are_tensorboardx_default_bins(tbx_default_bins):
    edges = default_bucket_edges()
    assert edges.tolist() == tbx_default_bins
    assert not edges.flags.writeable


@pytest.mark.parametrize(
    "values,bins,max_bins",
    [
        (np.zeros(0), "tensorflow", None),
        (np.zeros((3, 0)), 10, None),
        (np.array([1.0, np.inf]), "auto", None),
        (np.array([np.nan, np.nan]), "tensorflow", None),
        (np.array([5.0, 6.0]), [0.0, 1.0, 2.0], None),
        (np.array([1.0, 2.0]), [1.0, 0.0], None),
        (np.array([1.0, 2.0]), 10, 0),
    ],
    ids=["empty", "empty_2d", "inf_auto", "all_nan", "outside_edges", "bad_edges", "zero_max_bins"],
)
def test_histogram_rejects_bad_input(values, bins, max_bins, tbx_default_bins):
    with pytest.raises(ValueError, match=r"values|bins"):
        histogram_proto(values, bins, max_bins)
    # tensorboardX refuses the same inputs (its messages name nothing).
    with pytest.raises((ValueError, ZeroDivisionError)):
        tbx.histogram("w", values, _tbx_bins(bins, tbx_default_bins), max_bins=max_bins)


def test_histogram_does_not_modify_input():
    values = HIST_VALUES["uniform_f64_2d"].copy()
    histogram_proto(values, "auto", 3)
    np.testing.assert_array_equal(values, HIST_VALUES["uniform_f64_2d"])


# -- images --------------------------------------------------------------------------


def _unit(shape, dtype=np.float32):
    return RNG.random(shape).astype(dtype)


IMAGES = {
    "chw_f32": (_unit((3, 17, 23)), "CHW"),
    "chw_f64": (_unit((3, 8, 5), np.float64), "CHW"),
    "chw_f16": (_unit((3, 9, 4), np.float16), "CHW"),
    "chw_u8": (RNG.integers(0, 256, (3, 13, 7), dtype=np.uint8), "CHW"),
    "hwc_u8_odd": (RNG.integers(0, 256, (31, 1, 3), dtype=np.uint8), "HWC"),
    "hwc_f32": (_unit((5, 19, 3)), "HWC"),
    "hw_f32": (_unit((6, 11)), "HW"),
    "wh_u8": (RNG.integers(0, 256, (11, 6), dtype=np.uint8), "WH"),
    "one_channel_chw": (_unit((1, 10, 12)), "CHW"),
    "one_channel_hwc_u8": (RNG.integers(0, 256, (4, 9, 1), dtype=np.uint8), "HWC"),
    "rgba_chw": (_unit((4, 7, 9)), "CHW"),
    "rgba_hwc_u8": (RNG.integers(0, 256, (3, 5, 4), dtype=np.uint8), "HWC"),
    "gray_alpha_hwc": (_unit((6, 6, 2)), "HWC"),
    "slightly_outside": (RNG.uniform(-0.05, 1.05, (3, 16, 16)).astype(np.float32), "CHW"),
    "far_outside_f64": (RNG.uniform(-3.0, 4.0, (3, 8, 8)), "CHW"),
    "with_nan": (np.where(RNG.random((3, 4, 4)) > 0.7, np.nan, 0.5).astype(np.float32), "CHW"),
    "ints_0_255": (RNG.integers(0, 256, (3, 5, 5)), "CHW"),
    "int8": (RNG.integers(-128, 128, (3, 5, 5), dtype=np.int8), "CHW"),
    "bool": (RNG.random((3, 6, 7)) > 0.5, "CHW"),
    "lowercase": (_unit((8, 3, 5)), "hcw"),
    "one_pixel": (_unit((3, 1, 1)), "CHW"),
    "non_contiguous": (_unit((3, 20, 30))[:, ::2, ::3], "CHW"),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_matches_tensorboardx(name):
    array, dataformats = IMAGES[name]
    original = array.copy()
    ours = summaries.image("img", array, dataformats=dataformats)
    assert_equivalent(ours, tbx.image("img", array, dataformats=dataformats))
    np.testing.assert_array_equal(array, original)


@pytest.mark.parametrize("count", [1, 5, 8, 9, 16, 17])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_images_grid_matches_tensorboardx(count, channels, layout, dtype):
    shape = (count, channels, 6, 5) if layout == "NCHW" else (count, 6, 5, channels)
    if dtype == np.uint8:
        batch = RNG.integers(0, 256, shape, dtype=np.uint8)
    else:
        batch = RNG.uniform(-0.02, 1.02, shape).astype(dtype)
    ours = summaries.images("batch", batch, dataformats=layout)
    assert_equivalent(ours, tbx.image("batch", batch, dataformats=layout))


def test_images_defaults_to_nchw():
    batch = _unit((3, 3, 4, 4))
    assert_equivalent(summaries.images("b", batch), tbx.image("b", batch, dataformats="NCHW"))


def test_images_of_a_stacked_list_match_tensorboardx():
    # add_images([chw, chw, ...], dataformats="CHW"): the client stacks and prepends "N".
    frames = [_unit((3, 5, 6)) for _ in range(10)]
    ours = summaries.images("list", np.stack(frames), dataformats="NCHW")
    assert_equivalent(ours, tbx.image("list", np.stack(frames), dataformats="NCHW"))


@pytest.mark.parametrize(
    "array,dataformats,argument",
    [
        (np.zeros((3, 4, 5)), "HW", "array"),
        (np.zeros((4, 5)), "CHW", "array"),
        (np.zeros((3, 4, 5)), "CHX", "dataformats"),
        (np.zeros((3, 4, 5)), "CCW", "dataformats"),
        (np.zeros((3, 4, 5)), "C", "dataformats"),
        (np.zeros((1, 2, 3, 4, 5)), "NTCHW", "dataformats"),
        (np.zeros((3, 0, 5)), "CHW", "array"),
        (np.zeros((0, 3, 4, 5)), "NCHW", "array"),
        (np.zeros((5, 4, 5)), "CHW", "array"),
        (np.zeros((2, 2, 4, 5)), "NCHW", "array"),
    ],
)
def test_image_rejects_bad_input(array, dataformats, argument):
    with pytest.raises(ValueError, match=argument):
        summaries.image("img", array, dataformats=dataformats)


def test_to_hwc_keeps_dtype_and_tiles_row_major():
    batch = np.arange(10, dtype=np.int16).reshape(10, 1, 1, 1) + 1
    grid = to_hwc(batch, "NCHW")
    assert grid.dtype == np.int16 and grid.shape == (2, 8, 3)
    np.testing.assert_array_equal(grid[:, :, 0], [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 0, 0, 0, 0, 0, 0]])


# -- text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag,content",
    [
        ("notes", "plain ascii"),
        ("notes", ""),
        ("unicode", "héllo wörld — 日本語 🚀"),
        ("md", "# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"),
        ("a tag with spaces", "tags are not cleaned for text"),
        ("nul", "a\x00b"),
    ],
)
def test_text_matches_tensorboardx(tag, content):
    assert_equivalent(summaries.text(tag, content), tbx.text(tag, content))


def test_text_rejects_unencodable():
    with pytest.raises(ValueError, match="text"):
        summaries.text("t", "lone surrogate \ud800")


# -- PNG encoder ---------------------------------------------------------------------


def _chunks(png: bytes):
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset = 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        data = png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        yield kind, data
        offset += 12 + length


@pytest.mark.parametrize(
    "shape,mode",
    [
        ((7, 9), "L"),
        ((7, 9, 1), "L"),
        ((5, 3, 2), "LA"),
        ((16, 33, 3), "RGB"),
        ((4, 6, 4), "RGBA"),
        ((1, 1, 3), "RGB"),
        ((300, 2, 3), "RGB"),
    ],
)
def test_encode_png_decodes_with_pil(shape, mode):
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    png = encode_png(pixels)
    kinds = [kind for kind, _ in _chunks(png)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.mode == mode
        assert picture.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(picture).reshape(shape), pixels)


def test_encode_png_accepts_any_strides_and_compresses_smooth_images():
    y, x = np.mgrid[0:128, 0:256]
    planes = np.stack([x % 256, y % 256, (x + y) % 256]).astype(np.uint8)  # CHW
    pixels = planes.transpose(1, 2, 0)  # a non-contiguous HWC view
    png = encode_png(pixels)
    np.testing.assert_array_equal(_decoded(png), pixels)
    assert len(png) < pixels.nbytes // 20


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((2, 2, 2, 3), np.uint8),
        np.zeros(4, np.uint8),
    ],
    ids=["float", "5_channels", "empty", "4d", "1d"],
)
def test_encode_png_rejects_bad_pixels(pixels):
    with pytest.raises(ValueError, match="pixels"):
        encode_png(pixels)
