"""End to end: our SummaryWriter against tensorboardX (and torch.utils.tensorboard), read back by TensorBoard.

Each parity case makes the same calls on two writers: ours (through a real daemon, auto-started by
the client in the test's private runtime directory) and the reference writer, each into its own
log root. Both roots are then loaded with TensorBoard's own `EventAccumulator` (keeping every event)
and compared run by run: tags, steps, wall times, values, histogram fields, image sizes, colorspace
and decoded pixels, text strings and summary metadata.

The rest covers the writer's life cycle (context manager, default and aliased log directories,
purge_step, filename_suffix, write_to_disk=False, reopening after close), argument errors raised at
the call, and that data logged before `flush()` is readable the moment `flush()` returns.
"""

from __future__ import annotations

import io
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
import tensorboardX
from conftest import wait_for
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.util import tensor_util

from logger_client import SummaryWriter
from logger_client.runtime import daemon_running

pytestmark = pytest.mark.e2e

#: size_guidance 0 for every kind: the accumulator keeps every event, no reservoir sampling.
KEEP_ALL = dict.fromkeys((ea.COMPRESSED_HISTOGRAMS, ea.IMAGES, ea.AUDIO, ea.SCALARS, ea.HISTOGRAMS, ea.TENSORS), 0)
HISTOGRAM_FIELDS = ("min", "max", "num", "sum", "sum_squares", "bucket_limit", "bucket")
WALLTIME = 1_700_000_000.125  # explicit wall times, passed identically to both writers


@pytest.fixture(autouse=True)
def _quiet_reference_writers():
    # tensorboardX logs a warning per cleaned tag and numpy may warn on casts; neither matters here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- reading log roots back with TensorBoard's loader ---------------------------------------------


def event_files(directory: str) -> list[str]:
    return sorted(name for name in os.listdir(directory) if "tfevents" in name)


def load_runs(root: str) -> dict[str, ea.EventAccumulator]:
    """Every run under `root` (a directory holding event files), named by its path relative to root."""
    runs = {}
    for directory, _, files in os.walk(root):
        if any("tfevents" in name for name in files):
            accumulator = ea.EventAccumulator(directory, size_guidance=KEEP_ALL)
            accumulator.Reload()
            runs[os.path.relpath(directory, root)] = accumulator
    return runs


def decode_png(encoded: bytes) -> tuple[str, np.ndarray]:
    with Image.open(io.BytesIO(encoded)) as picture:
        assert picture.format == "PNG"
        return picture.mode, np.asarray(picture)


def raw_image_colorspaces(directory: str) -> dict[str, list[tuple[int, int]]]:
    """(step, colorspace) of each image value, from the raw events (the accumulator drops colorspace)."""
    found: dict[str, list[tuple[int, int]]] = {}
    for name in event_files(directory):
        for event in LegacyEventFileLoader(os.path.join(directory, name)).Load():
            for value in event.summary.value:
                if value.HasField("image"):
                    found.setdefault(value.tag, []).append((event.step, value.image.colorspace))
    return found


def snapshot(root: str) -> dict[str, dict[str, Any]]:
    """What TensorBoard reads from `root`, per run, as plain comparable data.

    Runs without any data are left out: tensorboardX creates an event file holding only the file
    version in its log directory at construction, even when everything goes to add_scalars sub-runs;
    the daemon creates a run's file on its first record. TensorBoard shows neither.
    """
    result = {}
    for run, acc in load_runs(root).items():
        tags = acc.Tags()
        if not any(tags.values()):
            continue
        data: dict[str, Any] = {
            "tags": {kind: sorted(value) if isinstance(value, list) else value for kind, value in tags.items()}
        }
        data["scalars"] = {tag: [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)] for tag in tags[ea.SCALARS]}
        data["histograms"] = {
            tag: [
                (e.step, e.wall_time, {field: getattr(e.histogram_value, field) for field in HISTOGRAM_FIELDS})
                for e in acc.Histograms(tag)
            ]
            for tag in tags[ea.HISTOGRAMS]
        }
        data["images"] = {
            tag: [
                {
                    "step": e.step,
                    "wall_time": e.wall_time,
                    "width": e.width,
                    "height": e.height,
                    "pixels": decode_png(e.encoded_image_string),
                }
                for e in acc.Images(tag)
            ]
            for tag in tags[ea.IMAGES]
        }
        data["tensors"] = {
            tag: [
                (e.step, e.wall_time, e.tensor_proto.dtype, tensor_util.make_ndarray(e.tensor_proto))
                for e in acc.Tensors(tag)
            ]
            for tag in tags[ea.TENSORS]
        }
        data["metadata"] = {}
        for tag in sorted(set().union(*(v for v in tags.values() if isinstance(v, list)))):
            try:
                metadata = acc.SummaryMetadata(tag)
            except KeyError:
                continue
            data["metadata"][tag] = (
                metadata.plugin_data.plugin_name,
                metadata.plugin_data.content,
                metadata.display_name,
                metadata.summary_description,
            )
        data["colorspace"] = raw_image_colorspaces(os.path.join(root, run))
        result[run] = data
    return result


def assert_same(ours: Any, theirs: Any, path: str = "") -> None:
    """Recursive equality with a path in the message; arrays by dtype, shape and elements; NaN == NaN."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: {type(ours).__name__} vs dict"
        assert sorted(ours) == sorted(theirs), f"{path}: keys {sorted(ours)} (ours) != {sorted(theirs)} (reference)"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{path}/{key}")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)), f"{path}: {type(ours).__name__} vs {type(theirs).__name__}"
        assert len(ours) == len(theirs), f"{path}: {len(ours)} items (ours) != {len(theirs)} (reference)"
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{index}]")
    elif isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), f"{path}: {type(ours).__name__} vs ndarray"
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, (
            f"{path}: {ours.dtype}{ours.shape} (ours) != {theirs.dtype}{theirs.shape} (reference)"
        )
        if ours.dtype.kind in "OSU":
            assert ours.tolist() == theirs.tolist(), f"{path}: {ours.tolist()!r} != {theirs.tolist()!r}"
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=path)
    elif isinstance(theirs, float) and math.isnan(theirs):
        assert isinstance(ours, float) and math.isnan(ours), f"{path}: {ours!r} (ours) != nan (reference)"
    elif path.endswith("/sum_squares"):
        # A dot product: its last bits depend on how many BLAS threads split it, in tensorboardX's
        # process as in the daemon's (which runs one). Buckets, sum, min and max stay exact.
        assert math.isclose(ours, theirs, rel_tol=1e-12), f"{path}: {ours!r} (ours) != {theirs!r} (reference)"
    else:
        assert ours == theirs, f"{path}: {ours!r} (ours) != {theirs!r} (reference)"


# -- the parity cases ------------------------------------------------------------------------------
#
# Each case is a function of a writer that makes its calls with data built afresh from a fixed seed,
# so both writers receive equal inputs; `expect` names (run, kind, tag) that must be in both results,
# so that a comparison of two empty results cannot pass.


def _torch():
    return pytest.importorskip("torch")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


class Case:
    def __init__(
        self,
        name: str,
        calls: Callable[[Any], None],
        expect: list[tuple[str, str, str]],
        reference: str = "tensorboardX",
        marks: tuple = (),
    ) -> None:
        self.name, self.calls, self.expect, self.reference = name, calls, expect, reference
        self.marks = marks

    def param(self):
        return pytest.param(self, id=self.name, marks=self.marks)


def _scalar_plain(w):
    for step in range(20):
        w.add_scalar("loss", 1.0 / (step + 1), step, walltime=WALLTIME + step)
        w.add_scalar("train accuracy%", step * 3, step, walltime=WALLTIME + step)  # cleaned to train_accuracy_
        w.add_scalar("/leading/slash", -step, np.int64(step), walltime=WALLTIME + step)  # leading "/" dropped
    w.add_scalar("no_step", 0.5, walltime=WALLTIME)  # step None is step 0
    w.add_scalar("big", 1e30, 3, walltime=WALLTIME)
    w.add_scalar("nan", float("nan"), 1, walltime=WALLTIME)
    w.add_scalar("inf", float("-inf"), 1, walltime=WALLTIME)


def _scalar_many(w):
    # More records than one batch (4096 per message by default), interleaved over tags.
    for step in range(5000):
        w.add_scalar("many/a", step * 0.001, step, walltime=WALLTIME + step)
        w.add_scalar("many/b", -step, step, walltime=WALLTIME + step)


def _scalar_numpy(w):
    values = [
        np.float32(0.1),
        np.float64(1 / 3),
        np.int64(7),
        np.int32(-2),
        np.float16(0.5),
        np.array(2.25),
        np.array([4.5]),
        np.uint8(200),
    ]
    for step, value in enumerate(values):
        w.add_scalar("numpy", value, step, walltime=WALLTIME + step)


def _scalar_torch(w):
    torch = _torch()
    values = [
        torch.tensor(2.5),
        torch.tensor(1 / 3, dtype=torch.float64),
        torch.tensor(3),
        torch.tensor(0.25, requires_grad=True) * 2,
        torch.tensor([1.5]),
        torch.tensor(0.7, dtype=torch.float16),
    ]
    for step, value in enumerate(values):
        w.add_scalar("torch", value, step, walltime=WALLTIME + step)


def _scalar_metadata(w):
    for step in range(3):
        w.add_scalar(
            "described",
            step * 0.5,
            step,
            walltime=WALLTIME + step,
            display_name="Described loss",
            summary_description="the **loss**, described",
        )
        w.add_scalar("named only", step, step, walltime=WALLTIME + step, display_name="Only a name")


def _scalar_new_style(w):
    for step in range(5):
        w.add_scalar("new style", 1 / 3 + step, step, walltime=WALLTIME + step, new_style=True)
        w.add_scalar("new/ratio", np.float32(0.1) * step, step, walltime=WALLTIME + step, new_style=True)


def _scalar_new_style_double(w):
    for step in range(5):
        w.add_scalar("double", 1 / 3 + step, step, walltime=WALLTIME + step, new_style=True, double_precision=True)


def _scalar_double_only(w):
    for step in range(3):  # double_precision without new_style: torch writes a float32 simple_value
        w.add_scalar("double_only", 1 / 3 + step, step, walltime=WALLTIME + step, double_precision=True)


def _scalars_flat(w):
    for step in range(10):
        w.add_scalars(
            "loss",
            {"train": 1.0 / (step + 1), "val": 1.5 / (step + 1), "test": np.float32(step)},
            step,
            walltime=WALLTIME + step,
        )
        w.add_scalar("loss", step, step, walltime=WALLTIME + step)  # the main run has a "loss" tag too


def _scalars_nested(w):
    for step in range(6):
        w.add_scalars(
            "loss/by split",
            {"train": step, "val/clean": step * 2.0, "val/noisy": -step},
            step,
            walltime=WALLTIME + step,
        )
        w.add_scalars("lr", {"group0": 0.1 * 0.5**step}, step, walltime=WALLTIME + step)


def _histogram(bins, values=None, max_bins=None):
    def calls(w):
        data = _rng(1).normal(loc=0.5, scale=2.0, size=1000) if values is None else values()
        for step in range(2):
            w.add_histogram("weights", data * (step + 1), step, bins=bins, walltime=WALLTIME + step, max_bins=max_bins)

    return calls


def _histogram_values(make):
    def calls(w):
        w.add_histogram("values", make(), 3, walltime=WALLTIME)
        w.add_histogram("values_auto", make(), 3, bins="auto", walltime=WALLTIME)

    return calls


def _histogram_torch(w):
    torch = _torch()
    data = _rng(4).normal(size=(32, 17))
    w.add_histogram("float32", torch.tensor(data, dtype=torch.float32, requires_grad=True), 0, walltime=WALLTIME)
    w.add_histogram("float64", torch.tensor(data), 0, bins="auto", walltime=WALLTIME)
    w.add_histogram("int64", torch.arange(-50, 200), 0, bins=16, walltime=WALLTIME)


def _histogram_edge_cases(w):
    w.add_histogram("constant", np.full(100, 3.0), 0, walltime=WALLTIME)
    w.add_histogram("constant_auto", np.full(100, -2.0), 0, bins="auto", walltime=WALLTIME)
    w.add_histogram("single", np.array([0.25]), 0, walltime=WALLTIME)
    w.add_histogram("zeros", np.zeros(10), 0, walltime=WALLTIME)
    w.add_histogram("wide", np.array([-1e15, -1.0, 0.0, 1e-9, 5.0, 1e18]), 0, walltime=WALLTIME)


def _inverted(image):
    """A second, different picture of the same kind (numpy or torch, uint8 or float)."""
    return 255 - image if str(image.dtype).endswith("uint8") else 1.0 - image


def _image(make, dataformats, tag="image"):
    def calls(w):
        w.add_image(tag, make(), 0, walltime=WALLTIME, dataformats=dataformats)
        w.add_image(tag, _inverted(make()), 1, walltime=WALLTIME + 1, dataformats=dataformats)

    return calls


def _float_image(*shape, seed=2):
    return lambda: _rng(seed).random(shape)


def _uint8_image(*shape, seed=3):
    return lambda: _rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _torch_image(*shape, dtype="float32"):
    def make():
        torch = _torch()
        if dtype == "uint8":
            return torch.tensor(_uint8_image(*shape)(), dtype=torch.uint8)
        return torch.tensor(_float_image(*shape)(), dtype=torch.float32)

    return make


def _images(make, dataformats="NCHW"):
    def calls(w):
        w.add_images("batch", make(), 0, walltime=WALLTIME, dataformats=dataformats)

    return calls


def _images_list_chw(w):
    images = [_rng(seed).random((3, 6, 5)) for seed in range(5)]
    w.add_images("from_list", images, 0, walltime=WALLTIME, dataformats="CHW")


def _images_list_hwc(w):
    images = [_rng(seed).integers(0, 256, size=(6, 5, 3), dtype=np.uint8) for seed in range(3)]
    w.add_images("from_list", images, 0, walltime=WALLTIME, dataformats="HWC")


def _text(w):
    w.add_text("notes", "plain text", 0, walltime=WALLTIME)
    w.add_text("notes", "Ünïcödé — 日本語テキスト, emoji 🚀🔥, RTL שלום", 1, walltime=WALLTIME + 1)
    w.add_text(
        "notes",
        "# Title\n\n**bold** _it_ `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- x\n- y",
        2,
        walltime=WALLTIME + 2,
    )
    w.add_text("run config", "lr=0.1, batch=32", 0, walltime=WALLTIME)  # text tags are not cleaned
    w.add_text("empty", "", 0, walltime=WALLTIME)
    w.add_text("whitespace", "  indented\n\ttabbed  \n", 0, walltime=WALLTIME)


def _everything_interleaved(w):
    rng = _rng(9)
    for step in range(4):
        w.add_scalar("loss", 1.0 / (step + 1), step, walltime=WALLTIME + step)
        w.add_scalars("split", {"a": step, "b": -step}, step, walltime=WALLTIME + step)
        w.add_histogram("h", rng.normal(size=50), step, walltime=WALLTIME + step)
        w.add_image("img", rng.random((3, 4, 4)), step, walltime=WALLTIME + step)
        w.add_text("t", f"step {step}", step, walltime=WALLTIME + step)


HIST_BINS = [
    "tensorflow",
    "auto",
    "fd",
    "doane",
    "scott",
    "stone",
    "rice",
    "sturges",
    "sqrt",
    10,
    1,
    [-4.0, -1.0, 0.0, 0.5, 2.0, 8.0],
    np.linspace(-3, 3, 13),
]

CASES = [
    Case(
        "scalar-plain",
        _scalar_plain,
        [(".", "scalars", "loss"), (".", "scalars", "train_accuracy_"), (".", "scalars", "leading/slash")],
    ),
    Case("scalar-many-batches", _scalar_many, [(".", "scalars", "many/a"), (".", "scalars", "many/b")]),
    Case("scalar-numpy", _scalar_numpy, [(".", "scalars", "numpy")]),
    Case("scalar-torch", _scalar_torch, [(".", "scalars", "torch")]),
    Case(
        "scalar-display_name-description",
        _scalar_metadata,
        [(".", "scalars", "described"), (".", "scalars", "named_only")],
    ),
    Case(
        "scalar-new_style",
        _scalar_new_style,
        [(".", "tensors", "new style"), (".", "tensors", "new/ratio")],
        reference="torch",
    ),
    Case(
        "scalar-new_style-double_precision", _scalar_new_style_double, [(".", "tensors", "double")], reference="torch"
    ),
    Case("scalar-double_precision-only", _scalar_double_only, [(".", "scalars", "double_only")], reference="torch"),
    Case(
        "scalars-flat",
        _scalars_flat,
        [
            ("loss/train", "scalars", "loss"),
            ("loss/val", "scalars", "loss"),
            ("loss/test", "scalars", "loss"),
            (".", "scalars", "loss"),
        ],
    ),
    Case(
        "scalars-main_tag-with-slash",
        _scalars_nested,
        [
            ("loss/by split/train", "scalars", "loss/by_split"),
            ("loss/by split/val/clean", "scalars", "loss/by_split"),
            ("lr/group0", "scalars", "lr"),
        ],
    ),
    *[
        Case(
            f"histogram-bins-{bins if not isinstance(bins, (list, np.ndarray)) else 'edges-' + type(bins).__name__}",
            _histogram(bins),
            [(".", "histograms", "weights")],
        )
        for bins in HIST_BINS
    ],
    Case("histogram-max_bins-int", _histogram(100, max_bins=7), [(".", "histograms", "weights")]),
    Case("histogram-max_bins-tensorflow", _histogram("tensorflow", max_bins=30), [(".", "histograms", "weights")]),
    Case("histogram-max_bins-auto", _histogram("auto", max_bins=3), [(".", "histograms", "weights")]),
    Case("histogram-max_bins-larger-than-bins", _histogram(5, max_bins=50), [(".", "histograms", "weights")]),
    Case(
        "histogram-float32",
        _histogram_values(lambda: _rng(5).normal(size=(20, 30)).astype(np.float32)),
        [(".", "histograms", "values"), (".", "histograms", "values_auto")],
    ),
    Case(
        "histogram-float64", _histogram_values(lambda: _rng(5).normal(size=(20, 30))), [(".", "histograms", "values")]
    ),
    Case(
        "histogram-int64",
        _histogram_values(lambda: _rng(6).integers(-100, 1000, size=500)),
        [(".", "histograms", "values")],
    ),
    Case(
        "histogram-int32",
        _histogram_values(lambda: _rng(6).integers(0, 5, size=(7, 9)).astype(np.int32)),
        [(".", "histograms", "values")],
    ),
    Case(
        "histogram-uint8",
        _histogram_values(lambda: _rng(6).integers(0, 256, size=300).astype(np.uint8)),
        [(".", "histograms", "values")],
    ),
    Case("histogram-bool", _histogram_values(lambda: _rng(6).random(40) > 0.3), [(".", "histograms", "values")]),
    # Foreign byte order: small (numpy's copy) and past the streaming copy's threshold.
    Case(
        "histogram-big-endian",
        _histogram_values(lambda: _rng(5).normal(size=300).astype(">f4")),
        [(".", "histograms", "values")],
    ),
    Case(
        "histogram-big-endian-large",
        _histogram_values(lambda: _rng(5).normal(size=70_000).astype(">f8")),
        [(".", "histograms", "values")],
    ),
    Case(
        "image-CHW-float-big-endian",
        _image(lambda: _float_image(3, 5, 7)().astype(">f4"), "CHW"),
        [(".", "images", "image")],
    ),
    Case(
        "histogram-large",
        _histogram("tensorflow", values=lambda: _rng(8).standard_cauchy(400_000)),
        [(".", "histograms", "weights")],
    ),
    Case(
        "histogram-torch",
        _histogram_torch,
        [(".", "histograms", "float32"), (".", "histograms", "float64"), (".", "histograms", "int64")],
    ),
    Case(
        "histogram-edge-cases",
        _histogram_edge_cases,
        [(".", "histograms", "constant"), (".", "histograms", "single"), (".", "histograms", "wide")],
    ),
    Case("image-CHW-float", _image(_float_image(3, 5, 7), "CHW"), [(".", "images", "image")]),
    Case("image-HWC-float", _image(_float_image(5, 7, 3), "HWC"), [(".", "images", "image")]),
    Case("image-HW-float", _image(_float_image(5, 7), "HW"), [(".", "images", "image")]),
    Case("image-CHW-uint8", _image(_uint8_image(3, 6, 4), "CHW"), [(".", "images", "image")]),
    Case("image-HWC-uint8", _image(_uint8_image(6, 4, 3), "HWC"), [(".", "images", "image")]),
    Case("image-HW-uint8", _image(_uint8_image(6, 4), "HW"), [(".", "images", "image")]),
    Case("image-1-channel-CHW", _image(_float_image(1, 5, 7), "CHW"), [(".", "images", "image")]),
    Case("image-1-channel-HWC-uint8", _image(_uint8_image(5, 7, 1), "HWC"), [(".", "images", "image")]),
    Case("image-4-channel-CHW-float", _image(_float_image(4, 5, 7), "CHW"), [(".", "images", "image")]),
    Case("image-4-channel-HWC-uint8", _image(_uint8_image(5, 7, 4), "HWC"), [(".", "images", "image")]),
    Case("image-2-channel-HWC-float", _image(_float_image(5, 7, 2), "HWC"), [(".", "images", "image")]),
    Case(
        "image-HWC-float16",
        _image(lambda: _float_image(6, 5, 3)().astype(np.float16), "HWC"),
        [(".", "images", "image")],
    ),
    Case(
        "image-HWC-float32",
        _image(lambda: _float_image(6, 5, 3)().astype(np.float32), "HWC"),
        [(".", "images", "image")],
    ),
    Case("image-large-CHW", _image(_float_image(3, 300, 400), "CHW"), [(".", "images", "image")]),
    Case(
        "image-float-out-of-range",
        _image(lambda: _rng(13).uniform(-0.5, 1.5, size=(3, 6, 5)), "CHW"),
        [(".", "images", "image")],
    ),
    Case("image-WHC", _image(_float_image(7, 5, 3), "WHC"), [(".", "images", "image")]),
    Case("image-WH-uint8", _image(_uint8_image(7, 5), "WH"), [(".", "images", "image")]),
    Case(
        "image-lowercase-hwc-tag-cleaned",
        _image(_float_image(4, 4, 3), "hwc", tag="my image!"),
        [(".", "images", "my_image_")],
    ),
    Case("image-torch-CHW-float", _image(_torch_image(3, 5, 7), "CHW"), [(".", "images", "image")]),
    Case("image-torch-HWC-uint8", _image(_torch_image(5, 7, 3, dtype="uint8"), "HWC"), [(".", "images", "image")]),
    Case("images-NCHW", _images(_float_image(3, 3, 5, 7)), [(".", "images", "batch")]),
    Case("images-NHWC-uint8", _images(_uint8_image(4, 5, 7, 3), "NHWC"), [(".", "images", "batch")]),
    Case("images-list-CHW", _images_list_chw, [(".", "images", "from_list")]),
    Case("images-list-HWC", _images_list_hwc, [(".", "images", "from_list")]),
    Case("images-N8-one-full-row", _images(_float_image(8, 3, 4, 5)), [(".", "images", "batch")]),
    Case("images-N11-wraps-grid", _images(_float_image(11, 3, 4, 5)), [(".", "images", "batch")]),
    Case("images-N17-1-channel", _images(_uint8_image(17, 1, 3, 2)), [(".", "images", "batch")]),
    Case("images-N10-4-channel-NHWC", _images(_float_image(10, 3, 4, 4), "NHWC"), [(".", "images", "batch")]),
    Case("images-NWHC", _images(_float_image(3, 5, 4, 3), "NWHC"), [(".", "images", "batch")]),
    Case("images-torch-NCHW", _images(_torch_image(9, 3, 4, 5)), [(".", "images", "batch")]),
    Case("text", _text, [(".", "tensors", "notes/text_summary"), (".", "tensors", "run config/text_summary")]),
    Case(
        "everything-interleaved",
        _everything_interleaved,
        [
            (".", "scalars", "loss"),
            ("split/a", "scalars", "split"),
            (".", "histograms", "h"),
            (".", "images", "img"),
            (".", "tensors", "t/text_summary"),
        ],
    ),
]


def reference_writer(kind: str, logdir: str):
    if kind == "torch":
        _torch()
        from torch.utils.tensorboard import SummaryWriter as TorchSummaryWriter

        return TorchSummaryWriter(log_dir=logdir)
    return tensorboardX.SummaryWriter(logdir=logdir)


@pytest.mark.parametrize("case", [case.param() for case in CASES])
def test_parity(case: Case, runtime_dir: str, tmp_path) -> None:
    ours_root, theirs_root = str(tmp_path / "ours"), str(tmp_path / "theirs")
    ours = SummaryWriter(ours_root)
    case.calls(ours)
    assert ours.flush() is True
    assert ours.close() is True

    theirs = reference_writer(case.reference, theirs_root)
    case.calls(theirs)
    theirs.flush()
    theirs.close()

    ours_data, theirs_data = snapshot(ours_root), snapshot(theirs_root)
    for run, kind, tag in case.expect:
        assert tag in theirs_data.get(run, {}).get("tags", {}).get(kind, []), (
            f"the reference has no {kind} tag {tag!r} in run {run!r}: {sorted(theirs_data)}"
        )
    assert sorted(ours_data) == sorted(theirs_data), "runs differ"
    assert_same(ours_data, theirs_data)
    assert ours.stats()["records_dropped"] == {}


def test_double_precision_keeps_float64(runtime_dir: str, logdir: str) -> None:
    """new_style + double_precision stores the float64 value itself, not its float32 rounding."""
    value = 1 / 3
    assert float(np.float32(value)) != value
    with SummaryWriter(logdir) as writer:
        writer.add_scalar("double", value, 0, new_style=True, double_precision=True)
        writer.add_scalar("single", value, 0, new_style=True)
    acc = load_runs(logdir)["."]
    (double,), (single,) = acc.Tensors("double"), acc.Tensors("single")
    assert tensor_util.make_ndarray(double.tensor_proto).item() == value
    assert tensor_util.make_ndarray(single.tensor_proto).item() == float(np.float32(value))
    assert acc.SummaryMetadata("double").plugin_data.plugin_name == "scalars"


def test_image_pixels_are_the_input(runtime_dir: str, logdir: str) -> None:
    """Independent of the reference: a uint8 HWC image decodes to exactly the array logged."""
    pixels = _rng(11).integers(0, 256, size=(9, 13, 3), dtype=np.uint8)
    with SummaryWriter(logdir) as writer:
        writer.add_image("exact", pixels, 0, dataformats="HWC")
        writer.add_image("exact_chw", pixels.transpose(2, 0, 1), 1)
    acc = load_runs(logdir)["."]
    for tag in ("exact", "exact_chw"):
        (event,) = acc.Images(tag)
        assert (event.width, event.height) == (13, 9)
        mode, decoded = decode_png(event.encoded_image_string)
        assert mode == "RGB"
        np.testing.assert_array_equal(decoded, pixels)


# -- the writer's life cycle -------------------------------------------------------------------------


def test_context_manager_matches_tensorboardX(runtime_dir: str, tmp_path) -> None:
    roots = {}
    for name, cls in (("ours", SummaryWriter), ("theirs", tensorboardX.SummaryWriter)):
        roots[name] = str(tmp_path / name)
        with cls(roots[name]) as writer:
            assert isinstance(writer, cls)
            for step in range(5):
                writer.add_scalar("x", step * 2.0, step, walltime=WALLTIME + step)
    # Leaving the block closed the writer: everything is on disk, no flush() needed.
    ours, theirs = snapshot(roots["ours"]), snapshot(roots["theirs"])
    assert [s for s, _, _ in theirs["."]["scalars"]["x"]] == [0, 1, 2, 3, 4]
    assert_same(ours, theirs)


def test_get_logdir_and_log_dir_alias(runtime_dir: str, tmp_path) -> None:
    given = str(tmp_path / "a" / "run1")
    ours, theirs = SummaryWriter(given), tensorboardX.SummaryWriter(given + "_tbx")
    try:
        assert ours.get_logdir() == given
        assert theirs.logdir == given + "_tbx"  # tensorboardX has no get_logdir()
    finally:
        ours.close()
        theirs.close()

    alias = str(tmp_path / "alias")
    with SummaryWriter(log_dir=alias) as writer:
        assert writer.get_logdir() == alias
        writer.add_scalar("y", 1.0, 0)
    assert load_runs(alias)["."].Scalars("y")[0].value == 1.0
    # logdir wins over log_dir, as in tensorboardX.
    both = SummaryWriter(logdir=str(tmp_path / "first"), log_dir=str(tmp_path / "second"))
    try:
        assert both.get_logdir() == str(tmp_path / "first")
        assert (
            both.get_logdir()
            == tensorboardX.SummaryWriter(
                logdir=str(tmp_path / "first"), log_dir=str(tmp_path / "second"), write_to_disk=False
            ).logdir
        )
    finally:
        both.close()


DEFAULT_LOGDIR = re.compile(r"runs/(?P<stamp>[A-Z][a-z]{2}\d{2}_\d{2}-\d{2}-\d{2})_(?P<rest>.*)")


@pytest.mark.parametrize("comment", ["", "_lr0.1_bs32"])
def test_default_logdir(runtime_dir: str, tmp_path, monkeypatch, comment: str) -> None:
    monkeypatch.chdir(tmp_path)
    before = datetime.now().replace(microsecond=0)
    writer = SummaryWriter(comment=comment)
    try:
        writer.add_scalar("z", 3.0, 0)
    finally:
        writer.close()
    after = datetime.now()
    logdir = writer.get_logdir()
    match = DEFAULT_LOGDIR.fullmatch(logdir)
    assert match, logdir
    assert match["rest"] == socket.gethostname() + comment
    stamp = datetime.strptime(match["stamp"], "%b%d_%H-%M-%S").replace(year=before.year)
    assert before - timedelta(seconds=1) <= stamp <= after
    # Relative to the working directory at construction, as tensorboardX's.
    acc = load_runs(str(tmp_path / "runs"))
    assert list(acc) == [os.path.relpath(logdir, "runs")]
    assert acc[os.path.relpath(logdir, "runs")].Scalars("z")[0].value == 3.0
    reference = DEFAULT_LOGDIR.fullmatch(tensorboardX.SummaryWriter(comment=comment, write_to_disk=False).logdir)
    assert reference and reference["rest"] == match["rest"]


def _purge_session(writer_cls, logdir: str) -> None:
    first = writer_cls(logdir)
    for step in range(10):
        first.add_scalar("loss", float(step), step, walltime=WALLTIME + step)
        first.add_histogram("h", np.arange(step + 1), step, walltime=WALLTIME + step)
    first.close()
    if writer_cls is tensorboardX.SummaryWriter:
        # tensorboardX names its file by the second and opens it with "wb": a second writer in the
        # same second would truncate the first file. Start the resumed session in the next second.
        start = int(time.time())
        wait_for(lambda: int(time.time()) > start, timeout_s=3, message="the next second")
    resumed = writer_cls(logdir, purge_step=5)
    for step in range(5, 10):
        resumed.add_scalar("loss", 100.0 + step, step, walltime=WALLTIME + 100 + step)
        resumed.add_histogram("h", np.arange(100 + step), step, walltime=WALLTIME + 100 + step)
    resumed.close()


def test_purge_step(runtime_dir: str, tmp_path) -> None:
    ours_root, theirs_root = str(tmp_path / "ours"), str(tmp_path / "theirs")
    _purge_session(SummaryWriter, ours_root)
    _purge_session(tensorboardX.SummaryWriter, theirs_root)
    ours, theirs = snapshot(ours_root), snapshot(theirs_root)
    expected = [(s, WALLTIME + s, float(s)) for s in range(5)] + [
        (s, WALLTIME + 100 + s, 100.0 + s) for s in range(5, 10)
    ]
    assert theirs["."]["scalars"]["loss"] == expected  # the reference behaves as TensorBoard documents
    assert ours["."]["scalars"]["loss"] == expected
    assert [h[0] for h in ours["."]["histograms"]["h"]] == list(range(10))
    assert_same(ours, theirs)


def test_default_walltime_is_the_time_of_the_call(runtime_dir: str, logdir: str) -> None:
    with SummaryWriter(logdir) as writer:
        writer.add_scalar("warm_up", 0.0, 0)  # connects (and starts the daemon) before timing
        before = time.time()
        writer.add_scalar("s", 1.0, 0)
        writer.add_scalars("m", {"k": 1.0}, 0)
        writer.add_histogram("h", np.arange(5), 0)
        writer.add_image("i", np.zeros((3, 2, 2)), 0)
        writer.add_images("j", np.zeros((2, 3, 2, 2)), 0)
        writer.add_text("t", "x", 0)
        after = time.time()
        assert writer.flush() is True
    runs = load_runs(logdir)
    main = runs["."]
    times = [
        main.Scalars("s")[0].wall_time,
        runs["m/k"].Scalars("m")[0].wall_time,
        main.Histograms("h")[0].wall_time,
        main.Images("i")[0].wall_time,
        main.Images("j")[0].wall_time,
        main.Tensors("t/text_summary")[0].wall_time,
    ]
    assert all(before <= t <= after for t in times), (before, times, after)


def test_reuse_after_close_continues_the_run(runtime_dir: str, logdir: str) -> None:
    """tensorboardX reopens on use after close(); every step of both sessions stays readable."""
    writer = SummaryWriter(logdir)
    for step in range(5):
        writer.add_scalar("loss", float(step), step)
    assert writer.close() is True
    for step in range(5, 10):
        writer.add_scalar("loss", float(step), step)
    assert writer.close() is True
    assert [e.step for e in load_runs(logdir)["."].Scalars("loss")] == list(range(10))


def test_add_scalars_after_close_reopens_too(runtime_dir: str, logdir: str) -> None:
    writer = SummaryWriter(logdir)
    writer.add_scalars("loss", {"train": 1.0, "val": 2.0}, 0)
    assert writer.close() is True
    writer.add_scalars("loss", {"train": 3.0, "val": 4.0}, 1)
    assert writer.close() is True
    runs = load_runs(logdir)
    assert [(e.step, e.value) for e in runs["loss/train"].Scalars("loss")] == [(0, 1.0), (1, 3.0)]
    assert [(e.step, e.value) for e in runs["loss/val"].Scalars("loss")] == [(0, 2.0), (1, 4.0)]
    assert writer.stats()["records_dropped"] == {}


def test_event_files_sort_in_creation_order(runtime_dir: str, tmp_path) -> None:
    root = tmp_path / "runs"
    for index in range(9):  # the daemon's first nine files, elsewhere
        with SummaryWriter(str(root / f"other{index}")) as other:
            other.add_scalar("x", 0.0, 0)
    # Start at the beginning of a second so the two files of interest very likely share it.
    wait_for(lambda: time.time() % 1.0 < 0.3, timeout_s=3, message="the start of a second")
    run = str(root / "resumed")
    with SummaryWriter(run) as first:  # the daemon's file number 9
        for step in range(5):
            first.add_scalar("loss", float(step), step)
    with SummaryWriter(run) as second:  # file number 10, continuing the steps
        for step in range(5, 10):
            second.add_scalar("loss", float(step), step)
    names = event_files(run)
    if len(names) != 2:
        pytest.fail(f"expected one event file per session, got {names}")
    if len({name.split(".")[3] for name in names}) != 1:
        pytest.skip("the clock crossed a second between the two files; the names then sort correctly")
    steps = [e.step for e in ea.EventAccumulator(run, size_guidance=KEEP_ALL).Reload().Scalars("loss")]
    assert steps == list(range(10))


@pytest.mark.parametrize("suffix", [".mysuffix", "_rank3"])
def test_filename_suffix(runtime_dir: str, tmp_path, suffix: str) -> None:
    for name, cls in (("ours", SummaryWriter), ("theirs", tensorboardX.SummaryWriter)):
        root = str(tmp_path / name)
        with cls(root, filename_suffix=suffix) as writer:
            writer.add_scalar("a", 1.0, 0)
            writer.add_scalars("b", {"c": 2.0}, 0)
        for directory in (root, os.path.join(root, "b", "c")):
            names = event_files(directory)
            assert len(names) == 1 and names[0].endswith(suffix), (name, directory, names)
            assert names[0].startswith("events.out.tfevents."), names
    assert_same(snapshot(str(tmp_path / "ours"))["."]["tags"], snapshot(str(tmp_path / "theirs"))["."]["tags"])


def test_write_to_disk_false_writes_nothing(runtime_dir: str, tmp_path) -> None:
    logdir = tmp_path / "nothing"
    writer = SummaryWriter(str(logdir), write_to_disk=False)
    writer.add_scalar("a", 1.0, 0)
    writer.add_scalars("b", {"c": 1.0}, 0)
    writer.add_histogram("h", np.arange(10), 0)
    writer.add_image("i", np.zeros((3, 4, 4)), 0)
    writer.add_images("j", np.zeros((2, 3, 4, 4)), 0)
    writer.add_text("t", "x", 0)
    assert writer.flush() is True
    assert writer.close() is True
    # The arguments are still checked.
    with pytest.raises(TypeError, match="tag"):
        writer.add_scalar(3, 1.0)  # type: ignore[arg-type]  # wrong on purpose
    assert not logdir.exists()
    assert list(tmp_path.iterdir()) == []
    assert not daemon_running(runtime_dir), "write_to_disk=False started a daemon"


# -- argument errors, raised at the call ---------------------------------------------------------------

IMAGE = np.zeros((3, 4, 5))

BAD_CALLS = [
    ("add_scalar-tag-int", lambda w: w.add_scalar(5, 1.0), TypeError, "tag"),
    ("add_scalar-tag-bytes", lambda w: w.add_scalar(b"loss", 1.0), TypeError, "tag"),
    ("add_scalar-value-str", lambda w: w.add_scalar("a", "1.0"), TypeError, "scalar_value"),
    ("add_scalar-value-None", lambda w: w.add_scalar("a", None), TypeError, "scalar_value"),
    ("add_scalar-value-vector", lambda w: w.add_scalar("a", np.arange(3.0)), ValueError, "scalar_value"),
    ("add_scalar-value-complex", lambda w: w.add_scalar("a", np.complex64(1j)), TypeError, "scalar_value"),
    ("add_scalar-step-str", lambda w: w.add_scalar("a", 1.0, "three"), TypeError, "global_step"),
    ("add_scalar-walltime-str", lambda w: w.add_scalar("a", 1.0, 0, walltime="now"), TypeError, "walltime"),
    ("add_scalars-main_tag", lambda w: w.add_scalars(None, {"a": 1.0}), TypeError, "main_tag"),
    ("add_scalars-not-a-dict", lambda w: w.add_scalars("m", [1.0, 2.0]), TypeError, "tag_scalar_dict"),
    ("add_scalars-bad-value", lambda w: w.add_scalars("m", {"a": "x"}), TypeError, "tag_scalar_dict"),
    ("add_scalars-key-escapes", lambda w: w.add_scalars("m", {"../../x": 1.0}), ValueError, "main_tag"),
    ("add_histogram-tag", lambda w: w.add_histogram(1.5, np.arange(3)), TypeError, "tag"),
    ("add_histogram-empty", lambda w: w.add_histogram("h", np.array([])), ValueError, "values"),
    ("add_histogram-empty-list", lambda w: w.add_histogram("h", []), ValueError, "values"),
    ("add_histogram-bins-name", lambda w: w.add_histogram("h", np.arange(3), bins="bogus"), ValueError, "bins"),
    ("add_histogram-bins-zero", lambda w: w.add_histogram("h", np.arange(3), bins=0), ValueError, "bins"),
    ("add_histogram-bins-decreasing", lambda w: w.add_histogram("h", np.arange(3), bins=[3, 2, 1]), ValueError, "bins"),
    ("add_histogram-max_bins", lambda w: w.add_histogram("h", np.arange(3), max_bins=0), ValueError, "max_bins"),
    ("add_histogram-values-str", lambda w: w.add_histogram("h", np.array(["a", "b"])), TypeError, "values"),
    ("add_image-tag", lambda w: w.add_image(None, IMAGE), TypeError, "tag"),
    ("add_image-dataformats-letters", lambda w: w.add_image("i", IMAGE, dataformats="CHX"), ValueError, "dataformats"),
    ("add_image-dataformats-repeated", lambda w: w.add_image("i", IMAGE, dataformats="HHW"), ValueError, "dataformats"),
    ("add_image-dataformats-type", lambda w: w.add_image("i", IMAGE, dataformats=3), TypeError, "dataformats"),
    (
        "add_image-ndim-mismatch",
        lambda w: w.add_image("i", np.zeros((4, 5)), dataformats="CHW"),
        ValueError,
        "img_tensor",
    ),
    (
        "add_image-ndim-5",
        lambda w: w.add_image("i", np.zeros((1, 1, 3, 4, 5)), dataformats="CHW"),
        ValueError,
        "img_tensor",
    ),
    ("add_image-channels", lambda w: w.add_image("i", np.zeros((5, 4, 4))), ValueError, "img_tensor"),
    ("add_image-empty", lambda w: w.add_image("i", np.zeros((3, 0, 4))), ValueError, "img_tensor"),
    ("add_images-ndim", lambda w: w.add_images("i", IMAGE), ValueError, "img_tensor"),
    (
        "add_images-dataformats",
        lambda w: w.add_images("i", np.zeros((2,) + IMAGE.shape), dataformats="NCHWX"),
        ValueError,
        "dataformats",
    ),
    (
        "add_images-list-layout",
        lambda w: w.add_images("i", [IMAGE, IMAGE], dataformats="NCHW"),
        ValueError,
        "dataformats",
    ),
    (
        "add_images-list-shapes",
        lambda w: w.add_images("i", [IMAGE, np.zeros((3, 5, 5))], dataformats="CHW"),
        ValueError,
        "img_tensor",
    ),
    ("add_text-tag", lambda w: w.add_text(7, "x"), TypeError, "tag"),
    ("add_text-not-str", lambda w: w.add_text("t", 42), TypeError, "text_string"),
    ("add_text-bytes", lambda w: w.add_text("t", b"bytes"), TypeError, "text_string"),
    ("constructor-unknown-kwarg", lambda w: SummaryWriter(w.get_logdir(), bogus=1), TypeError, "bogus"),
    (
        "constructor-filename_suffix",
        lambda w: SummaryWriter(w.get_logdir(), filename_suffix=3),  # type: ignore[arg-type]
        TypeError,
        "filename_suffix",
    ),
    (
        "constructor-purge_step",
        lambda w: SummaryWriter(w.get_logdir(), purge_step="x"),  # type: ignore[arg-type]
        TypeError,
        "purge_step",
    ),
]


def test_argument_errors_raise_at_the_call(runtime_dir: str, logdir: str) -> None:
    """Each bad call raises a message naming the argument, and writes nothing."""
    with SummaryWriter(logdir) as writer:
        for _name, call, error, argument in BAD_CALLS:
            with pytest.raises(error, match=argument):
                call(writer)
        writer.add_scalar("good", 1.0, 0)
    acc = load_runs(logdir)
    assert list(acc) == ["."]
    tags = acc["."].Tags()
    assert tags[ea.SCALARS] == ["good"]
    assert tags[ea.HISTOGRAMS] == tags[ea.IMAGES] == tags[ea.TENSORS] == []
    assert writer.stats()["records_dropped"] == {}


@pytest.mark.parametrize("name, call, error, argument", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_argument_error_names_the_argument(runtime_dir: str, name, call, error, argument) -> None:
    """The same checks with write_to_disk=False (no daemon): they do not depend on the transport."""
    writer = SummaryWriter("unused", write_to_disk=False)
    with pytest.raises(error, match=argument):
        call(writer)


UNBINNABLE = [
    pytest.param(np.array([1.0, np.nan, 2.0]), "auto", id="nan-auto"),
    pytest.param(np.array([1.0, np.inf]), "fd", id="inf-fd"),
    pytest.param(np.array([5.0, 6.0]), [0.0, 1.0, 2.0], id="outside-edges"),
]


@pytest.mark.parametrize("values, bins", UNBINNABLE)
def test_tensorboardX_rejects_unbinnable_histograms_at_the_call(values, bins, tmp_path) -> None:
    reference = tensorboardX.SummaryWriter(str(tmp_path), write_to_disk=False)
    with pytest.raises(ValueError):
        reference.add_histogram("h", values, 0, bins=bins)


@pytest.mark.parametrize("values, bins", UNBINNABLE)
def test_unbinnable_histogram_raises_at_the_call(runtime_dir: str, logdir: str, values, bins) -> None:
    with SummaryWriter(logdir) as writer, pytest.raises(ValueError, match="values"):
        writer.add_histogram("h", values, 0, bins=bins)


def test_stats_do_not_count_dropped_records_as_written(runtime_dir: str, logdir: str) -> None:
    with SummaryWriter(logdir) as writer:
        writer.add_scalar("x", 1.0, 5)
        assert writer.flush() is True
        before = writer.stats()
        writer.add_scalar("x", 2.0, 3)  # older than a step already written: the daemon drops it
        assert writer.flush() is False  # a record before it was refused: not all of it is on disk
        after = writer.stats()
    assert [e.step for e in load_runs(logdir)["."].Scalars("x")] == [5]
    assert after["records_written"] - before["records_written"] == 0, (before, after)
    assert sum(after["records_dropped"].values()) == 1, after


def test_unwritable_logdir_is_not_silent(runtime_dir: str, tmp_path) -> None:
    (tmp_path / "a_file").write_text("")
    logdir = str(tmp_path / "a_file" / "run")
    with pytest.raises(NotADirectoryError):
        tensorboardX.SummaryWriter(logdir)
    try:
        writer = SummaryWriter(logdir)
    except OSError:
        return  # refusing at construction, naming the directory, is one good answer
    try:
        writer.add_scalar("x", 1.0, 0)
        flushed = writer.flush()
        stats = writer.stats()
    finally:
        writer.close()
    assert not os.path.exists(logdir)
    assert flushed is False or sum(stats["records_dropped"].values()) >= 1 or stats["error"], (flushed, stats)


def test_filename_suffix_with_slash_raises_at_construction(runtime_dir: str, tmp_path) -> None:
    logdir = str(tmp_path / "run")
    try:
        writer = SummaryWriter(logdir, filename_suffix="/x")
    except ValueError as error:
        assert "filename_suffix" in str(error)
        return
    try:
        writer.add_scalar("x", 1.0, 0)
        flushed = writer.flush()
        stats = writer.stats()
    finally:
        writer.close()
    written = load_runs(str(tmp_path))
    assert written or flushed is False or sum(stats["records_dropped"].values()) >= 1 or stats["error"], (
        f"filename_suffix='/x' accepted, nothing written, yet flush() -> {flushed} and stats {stats}"
    )


# -- flush() ----------------------------------------------------------------------------------------


def test_flush_makes_everything_readable_at_once(runtime_dir: str, logdir: str) -> None:
    """After flush() returns, every (run, tag) logged before it is on disk: read back with no wait."""
    writer = SummaryWriter(logdir)
    rng = _rng(12)
    try:
        for round_ in range(3):
            first, last = round_ * 50, round_ * 50 + 50
            for step in range(first, last):
                writer.add_scalar("loss", step * 0.5, step)
                writer.add_scalar(f"per_round/{round_}", step, step)
                writer.add_scalars("split", {"train": step, "val": -step}, step)
            writer.add_histogram("h", rng.normal(size=100), last - 1)
            writer.add_image("img", rng.random((3, 8, 8)), last - 1)
            writer.add_images("imgs", rng.random((3, 3, 8, 8)), last - 1)
            writer.add_text("notes", f"round {round_}", last - 1)
            assert writer.flush() is True
            runs = load_runs(logdir)  # no waiting: flush() promised the data is written
            assert sorted(runs) == [".", "split/train", "split/val"]
            main = runs["."]
            assert [e.step for e in main.Scalars("loss")] == list(range(last))
            assert [e.step for e in main.Scalars(f"per_round/{round_}")] == list(range(first, last))
            for run in ("split/train", "split/val"):
                assert [e.step for e in runs[run].Scalars("split")] == list(range(last))
            assert [e.step for e in main.Histograms("h")][-1] == last - 1
            assert [e.step for e in main.Images("img")][-1] == last - 1
            assert [e.step for e in main.Images("imgs")][-1] == last - 1
            (latest_text,) = [e for e in main.Tensors("notes/text_summary") if e.step == last - 1]
            assert tensor_util.make_ndarray(latest_text.tensor_proto).item().decode() == f"round {round_}"
    finally:
        writer.close()
