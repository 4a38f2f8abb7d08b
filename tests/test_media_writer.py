"""The media and raw methods of SummaryWriter in the calling process, on an in-memory transport.

What each call queues (one record, its kind, arrays and options), that its arrays are the one copy
made into the transport's memory, and that bad arguments fail at the call, naming the argument,
with nothing queued. add_figure's pixels against tensorboardX's figure_to_image.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from logger_client import SummaryWriter
from logger_client.in_memory import InMemoryTransport, LoggedRecord
from logger_client.protocol import RecordKind

RNG = np.random.default_rng(20240617)


class CountingTransport(InMemoryTransport):
    """Keeps every record, and every array it handed out for a copy."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_out: list[np.ndarray] = []

    def empty_array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        array = super().empty_array(shape, dtype)
        self.handed_out.append(array)
        return array


@pytest.fixture
def transport() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
def writer(transport, tmp_path):
    writer = SummaryWriter(str(tmp_path / "run"), transport=transport)
    yield writer
    writer.close()


def only_record(transport: CountingTransport) -> LoggedRecord:
    (record,) = transport.records()
    return record


def assert_copied_once(transport: CountingTransport, *arrays: np.ndarray) -> None:
    """Each array is one the transport handed out, and nothing else was asked for."""
    assert len(transport.handed_out) == len(arrays)
    for array in arrays:
        assert any(array is given for given in transport.handed_out)


def assert_refused(writer: SummaryWriter, transport: CountingTransport, error: type, match: str, call) -> None:
    with pytest.raises(error, match=match):
        call(writer)
    assert transport.records() == []


# -- add_histogram_raw -----------------------------------------------------------------------------


def test_add_histogram_raw_queues_the_buckets_and_numbers(writer, transport):
    limits, counts = np.array([1.0, 2.0, 3.5]), np.array([4, 0, 2])
    writer.add_histogram_raw("raw", -1, 3.5, 6, 7.5, 20.25, limits, counts, global_step=3, walltime=10.0)
    limits[:] = 0  # the record holds its own copy
    record = only_record(transport)
    assert (record.kind, record.tag, record.step, record.wall_time) == (RecordKind.HISTOGRAM_RAW, "raw", 3, 10.0)
    np.testing.assert_array_equal(record.value["bucket_limits"], [1.0, 2.0, 3.5])
    np.testing.assert_array_equal(record.value["bucket_counts"], [4, 0, 2])
    assert record.options == {"min": -1.0, "max": 3.5, "num": 6.0, "sum": 7.5, "sum_squares": 20.25}
    assert_copied_once(transport, record.value["bucket_limits"], record.value["bucket_counts"])


def test_add_histogram_raw_takes_lists_and_torch_tensors(writer, transport):
    torch = pytest.importorskip("torch")
    writer.add_histogram_raw("a", 0, 1, 2, 1, 1, [0.5, 1.0], [1, 1])
    writer.add_histogram_raw("b", torch.tensor(0.0), 1, 2, 1, 1, torch.tensor([0.5, 1.0]), torch.tensor([1, 1]))
    first, second = transport.records()
    assert first.value["bucket_counts"].tolist() == second.value["bucket_counts"].tolist() == [1, 1]
    assert second.options["min"] == 0.0


def _raw(*args):
    return lambda w: w.add_histogram_raw("h", *args)


@pytest.mark.parametrize(
    ("error", "match", "call"),
    [
        (ValueError, r"len\(bucket_limits\) != len\(bucket_counts\)", _raw(0, 1, 1, 1, 1, [1, 2], [1])),
        (ValueError, "bucket_limits must be 1-D", _raw(0, 1, 1, 1, 1, [[1, 2]], [[1, 2]])),
        (TypeError, "sum_squares", _raw(0, 1, 1, 1, "x", [1], [1])),
        (TypeError, "bucket_counts", _raw(0, 1, 1, 1, 1, [1], ["a"])),
        (TypeError, "tag", lambda w: w.add_histogram_raw(None, 0, 1, 1, 1, 1, [1], [1])),
    ],
)
def test_add_histogram_raw_refuses_bad_arguments(writer, transport, error, match, call):
    assert_refused(writer, transport, error, match, call)


# -- add_image_with_boxes --------------------------------------------------------------------------


def test_add_image_with_boxes_queues_image_boxes_and_options(writer, transport):
    image, boxes = RNG.random((3, 20, 30)), np.array([[1, 2, 10, 12], [5.5, 6.5, 25, 18]])
    writer.add_image_with_boxes("det", image, boxes, 4, 1.0, labels=["cat", "dog"])
    image[:] = 0
    record = only_record(transport)
    assert (record.kind, record.tag, record.step) == (RecordKind.IMAGE_WITH_BOXES, "det", 4)
    assert record.value["image"].shape == (3, 20, 30) and record.value["image"].any()
    np.testing.assert_array_equal(record.value["boxes"], boxes)
    assert record.options == {"dataformats": "CHW", "labels": ["cat", "dog"], "rescale": 1}
    assert_copied_once(transport, record.value["image"], record.value["boxes"])


def test_add_image_with_boxes_takes_tensorboardxs_and_torchs_argument_orders(writer, transport):
    image, boxes = np.zeros((10, 12, 3)), np.array([[1, 1, 5, 5]])
    writer.add_image_with_boxes("tbx", image, boxes, 0, None, "HWC", "one", rescale=2)  # kwargs' rescale
    writer.add_image_with_boxes("torch", image, boxes, 0, None, 0.5, "HWC", ["one"])  # torch: rescale 6th
    writer.add_image_with_boxes("kw", image, boxes, rescale=1.5, dataformats="HWC", labels=None)
    options = [record.options for record in transport.records()]
    assert options == [
        {"dataformats": "HWC", "labels": ["one"], "rescale": 2},
        {"dataformats": "HWC", "labels": ["one"], "rescale": 0.5},
        {"dataformats": "HWC", "labels": None, "rescale": 1.5},
    ]


def test_add_image_with_boxes_skips_labels_that_do_not_match_the_boxes(writer, transport, caplog):
    with caplog.at_level(logging.WARNING, logger="logger_client"):
        writer.add_image_with_boxes("b", np.zeros((3, 8, 8)), np.zeros((2, 4)), labels=["only one"])
    assert only_record(transport).options["labels"] is None
    assert "1 labels for 2 boxes" in caplog.text


def _boxes(image=None, boxes=None, **kwargs):
    image = np.zeros((3, 8, 8)) if image is None else image
    boxes = np.zeros((1, 4)) if boxes is None else boxes
    return lambda w: w.add_image_with_boxes("b", image, boxes, **kwargs)


@pytest.mark.parametrize(
    ("error", "match", "call"),
    [
        (ValueError, "box_tensor must be N x 4", _boxes(boxes=np.zeros(4))),
        (ValueError, "box_tensor holds NaN", _boxes(boxes=np.array([[0, 0, np.nan, 1]]))),
        (ValueError, "dataformats", _boxes(dataformats="HW")),
        (ValueError, "rescale", _boxes(rescale=0.1)),
        (ValueError, "rescale", _boxes(rescale=-1)),
        (ValueError, "more than 67108864 pixels", _boxes(rescale=1025)),
        (TypeError, "rescale", _boxes(rescale="2")),
        (TypeError, "labels", _boxes(labels=[3])),
        (TypeError, "unexpected keyword", _boxes(scale=2)),
        (ValueError, "channels", _boxes(image=np.zeros((5, 8, 8)))),
        (TypeError, "img_tensor", _boxes(image="picture")),
    ],
)
def test_add_image_with_boxes_refuses_bad_arguments(writer, transport, error, match, call):
    assert_refused(writer, transport, error, match, call)


# -- add_figure ------------------------------------------------------------------------------------


@pytest.fixture
def pyplot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def _line_plot(plt, seed: int, size=(4, 3)):
    figure = plt.figure(figsize=size, dpi=50)
    plt.plot(np.random.default_rng(seed).random(10))
    plt.title(f"figure {seed}")
    return figure


def test_add_figure_renders_the_pixels_tensorboardx_renders(writer, transport, pyplot):
    from tensorboardX.utils import figure_to_image

    writer.add_figure("fig", _line_plot(pyplot, 1), 2, close=False)
    record = only_record(transport)
    assert (record.kind, record.tag, record.step, record.options) == (
        RecordKind.IMAGE,
        "fig",
        2,
        {"dataformats": "CHW"},
    )
    assert record.value.shape == (3, 150, 200) and record.value.dtype == np.uint8
    np.testing.assert_array_equal(record.value, figure_to_image(_line_plot(pyplot, 1)))
    assert_copied_once(transport, record.value)


def test_add_figure_renders_a_list_as_one_batch(writer, transport, pyplot):
    from tensorboardX.utils import figure_to_image

    writer.add_figure("figs", [_line_plot(pyplot, seed) for seed in range(3)], 0)
    record = only_record(transport)
    assert record.options == {"dataformats": "NCHW"}
    np.testing.assert_array_equal(record.value, figure_to_image([_line_plot(pyplot, seed) for seed in range(3)]))
    assert_copied_once(transport, record.value)


def test_add_figure_closes_the_figures_only_when_asked(writer, pyplot):
    kept, closed = _line_plot(pyplot, 1), [_line_plot(pyplot, 2), _line_plot(pyplot, 3)]
    writer.add_figure("kept", kept, close=False)
    writer.add_figure("closed", closed)
    assert pyplot.fignum_exists(kept.number)
    assert not any(pyplot.fignum_exists(figure.number) for figure in closed)


def test_add_figure_renders_a_figure_pyplot_does_not_know(writer, transport):
    figure_module = pytest.importorskip("matplotlib.figure")
    figure = figure_module.Figure(figsize=(2, 1), dpi=40)
    figure.add_subplot().plot([0, 1], [1, 0])
    writer.add_figure("plain", figure)
    assert only_record(transport).value.shape == (3, 40, 80)


def test_add_figure_refuses_bad_arguments(writer, transport, pyplot):
    assert_refused(writer, transport, TypeError, "figure must be a matplotlib Figure", lambda w: w.add_figure("f", 3))
    assert_refused(writer, transport, ValueError, "figure is an empty list", lambda w: w.add_figure("f", []))
    figures = [_line_plot(pyplot, 1, (4, 3)), _line_plot(pyplot, 2, (3, 3))]
    assert_refused(writer, transport, ValueError, "same size", lambda w: w.add_figure("f", figures))


def test_add_figure_without_matplotlib_names_the_extra_to_install(writer, transport, monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # an import of it now fails
    with pytest.raises(ImportError, match=r"pip install 'tb-logger-service\[figures\]'"):
        writer.add_figure("f", object())
    assert transport.records() == []


# -- add_video -------------------------------------------------------------------------------------


def test_add_video_queues_the_frames(writer, transport):
    video = RNG.random((2, 4, 3, 8, 8)).astype(np.float32)
    writer.add_video("clip", video, 5, fps=10, walltime=3.0)
    video[:] = 0
    record = only_record(transport)
    assert (record.kind, record.tag, record.step, record.wall_time) == (RecordKind.VIDEO, "clip", 5, 3.0)
    assert record.value.shape == (2, 4, 3, 8, 8) and record.value.any()
    assert record.options == {"fps": 10, "dataformats": "NTCHW"}
    assert_copied_once(transport, record.value)


def test_add_video_takes_torch_tensors_and_other_layouts(writer, transport):
    torch = pytest.importorskip("torch")
    writer.add_video("clip", torch.zeros((1, 2, 4, 4, 3), dtype=torch.uint8), fps=2.5, dataformats="ntHWC")
    record = only_record(transport)
    assert record.value.dtype == np.uint8 and record.options == {"fps": 2.5, "dataformats": "NTHWC"}


@pytest.mark.parametrize(
    ("error", "match", "call"),
    [
        (ValueError, "5 dimensions", lambda w: w.add_video("v", np.zeros((2, 3, 4, 4)))),
        (ValueError, "channels", lambda w: w.add_video("v", np.zeros((1, 2, 2, 4, 4)))),
        (ValueError, "empty", lambda w: w.add_video("v", np.zeros((1, 0, 3, 4, 4)))),
        (ValueError, "dataformats", lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), dataformats="NCHW")),
        (TypeError, "dataformats", lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), dataformats=None)),
        (ValueError, "fps", lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), fps=0)),
        (ValueError, "fps", lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), fps=float("nan"))),
        (ValueError, "fps", lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), fps=0.001)),
        (TypeError, "fps", lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4)), fps="4")),
        (TypeError, "vid_tensor", lambda w: w.add_video("v", np.zeros((1, 2, 3, 4, 4), dtype=complex))),
    ],
)
def test_add_video_refuses_bad_arguments(writer, transport, error, match, call):
    assert_refused(writer, transport, error, match, call)


# -- add_audio -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(100,), (100, 1), (100, 2), (1, 100), (1, 100, 1)])
def test_add_audio_queues_the_samples(writer, transport, shape):
    samples = RNG.uniform(-1, 1, shape).astype(np.float32)
    writer.add_audio("sound", samples, 1, sample_rate=np.int64(16000))
    samples[:] = 0
    record = only_record(transport)
    assert (record.kind, record.tag, record.step, record.options) == (
        RecordKind.AUDIO,
        "sound",
        1,
        {"sample_rate": 16000},
    )
    assert record.value.shape == shape and record.value.any()
    assert_copied_once(transport, record.value)


def test_add_audio_takes_a_whole_float_sample_rate(writer, transport):
    writer.add_audio("sound", np.zeros(10), sample_rate=8000.0)
    assert only_record(transport).options == {"sample_rate": 8000}
    assert type(only_record(transport).options["sample_rate"]) is int


@pytest.mark.parametrize(
    ("error", "match", "call"),
    [
        (ValueError, "snd_tensor must be shaped", lambda w: w.add_audio("a", np.zeros((100, 3)))),
        (ValueError, "snd_tensor must be shaped", lambda w: w.add_audio("a", np.zeros((2, 100, 2)))),
        (ValueError, "snd_tensor is empty", lambda w: w.add_audio("a", np.zeros(0))),
        (ValueError, "sample_rate", lambda w: w.add_audio("a", np.zeros(10), sample_rate=0)),
        (ValueError, "sample_rate", lambda w: w.add_audio("a", np.zeros(10), sample_rate=8000.5)),
        (TypeError, "sample_rate", lambda w: w.add_audio("a", np.zeros(10), sample_rate=None)),
        (TypeError, "snd_tensor", lambda w: w.add_audio("a", "loud")),
    ],
)
def test_add_audio_refuses_bad_arguments(writer, transport, error, match, call):
    assert_refused(writer, transport, error, match, call)


# -- add_tensor ------------------------------------------------------------------------------------


def test_add_tensor_queues_the_array_as_it_is(writer, transport):
    activation = RNG.normal(size=(1, 10)).astype(np.float32)
    writer.add_tensor("Activation", activation, 7)  # the seed's call, with a numpy array
    expected = activation.copy()
    activation[:] = 0
    record = only_record(transport)
    assert (record.kind, record.tag, record.step, record.options) == (RecordKind.TENSOR, "Activation", 7, {})
    assert record.value.dtype == np.float32
    np.testing.assert_array_equal(record.value, expected)
    assert_copied_once(transport, record.value)


def test_add_tensor_takes_torch_tensors(writer, transport):
    torch = pytest.importorskip("torch")
    writer.add_tensor("ints", torch.arange(6).reshape(2, 3))
    writer.add_tensor("bf16", torch.ones(2, dtype=torch.bfloat16))  # numpy has no bfloat16: float32
    ints, bf16 = transport.records()
    assert ints.value.dtype == np.int64 and ints.value.shape == (2, 3)
    assert bf16.value.dtype == np.float32 and bf16.value.tolist() == [1.0, 1.0]


def test_add_tensor_refuses_what_has_no_tensorboard_dtype(writer, transport):
    assert_refused(writer, transport, TypeError, "tensor", lambda w: w.add_tensor("t", np.array(["a"])))
    assert_refused(writer, transport, TypeError, "tensor", lambda w: w.add_tensor("t", np.zeros(2, complex)))
