"""The media and raw kinds' summaries against tensorboardX 2.6.5's (torch's for tensors), in process.

Both sides' Summary bytes are parsed with TensorBoard's own proto classes and compared field by
field; images by their decoded pixels, GIFs frame by frame, WAVs byte for byte.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from tensorboard.compat.proto.event_pb2 import Event as TbEvent
from tensorboard.compat.proto.summary_pb2 import DATA_CLASS_TENSOR
from tensorboard.compat.proto.summary_pb2 import Summary as TbSummary
from tensorboard.util import tensor_util
from tensorboardX import summary as tbx
from tensorboardX.utils import _prepare_video, convert_to_NTCHW
from test_media_draw import outside_labels

from logger_client.protocol import RecordKind
from logger_daemon.encoders import ENCODERS, media

RNG = np.random.default_rng(20240616)


@pytest.fixture(autouse=True)
def _quiet_reference():
    # tensorboardX's casts of NaN / out-of-range floats warn, and it prints on clipped audio.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def loaded(summary) -> TbSummary:
    return TbSummary.FromString(summary.SerializeToString())


def decoded(encoded: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(encoded)) as picture:
        return np.asarray(picture)


def gif_frames(encoded: bytes) -> tuple[np.ndarray, list[int]]:
    with Image.open(io.BytesIO(encoded)) as animation:
        assert animation.format == "GIF" and animation.info["loop"] == 0
        frames, durations = [], []
        for index in range(animation.n_frames):
            animation.seek(index)
            frames.append(np.asarray(animation.convert("RGB")))
            durations.append(animation.info.get("duration"))
    return np.stack(frames), durations


def assert_same_fields(ours, theirs, ignore_image: bool = True) -> None:
    """Equal as TensorBoard reads them, the encoded image left out (compared by the caller)."""
    ours, theirs = loaded(ours), loaded(theirs)
    if ignore_image:
        for summary in (ours, theirs):
            for value in summary.value:
                value.image.ClearField("encoded_image_string")
    assert text_format.MessageToString(ours) == text_format.MessageToString(theirs)
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


# -- add_histogram_raw -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "counts"),
    [
        (np.array([1.0, 2.5, 10.0]), np.array([3, 0, 7])),
        (np.arange(50, dtype=np.float32) + 0.5, RNG.integers(0, 100, 50)),
        (np.array([], dtype=np.float64), np.array([], dtype=np.int64)),
        (np.array([-np.inf, 0.0, np.inf]), np.array([1.5, 2.0, 0.25])),
    ],
    ids=["small", "float32", "empty", "infinite"],
)
def test_histogram_raw_equals_tensorboardxs(limits, counts):
    numbers = {"min": -1.5, "max": 9.75, "num": 10, "sum": 42.0, "sum_squares": 1e3}
    ours = media.histogram_raw("raw hist/ü", {"bucket_limits": limits, "bucket_counts": counts}, **numbers)
    theirs = tbx.histogram_raw("raw hist/ü", bucket_limits=limits.tolist(), bucket_counts=counts.tolist(), **numbers)
    assert_same_fields(ours, theirs)


def test_histogram_raw_refuses_buckets_of_different_lengths():
    with pytest.raises(ValueError, match="bucket_limits"):
        media.histogram_raw(
            "h",
            {"bucket_limits": np.zeros(3), "bucket_counts": np.zeros(2)},
            min=0,
            max=1,
            num=1,
            sum=1,
            sum_squares=1,
        )


# -- add_image_with_boxes --------------------------------------------------------------------------


def _image(shape, dtype):
    return RNG.integers(0, 256, shape, dtype=np.uint8) if dtype == "uint8" else RNG.random(shape).astype(dtype)


BOX_IMAGES = [
    ((3, 40, 50), "float32", "CHW"),
    ((40, 50, 3), "uint8", "HWC"),
    ((40, 50), "float64", "HW"),
    ((1, 30, 20), "uint8", "CHW"),
    ((30, 20, 4), "uint8", "HWC"),
    ((30, 20, 2), "uint8", "HWC"),
    ((3, 3, 20, 25), "float32", "NCHW"),
    ((50, 40, 3), "float16", "WHC"),
]


@pytest.mark.parametrize(("shape", "dtype", "dataformats"), BOX_IMAGES, ids=[f"{f}-{d}" for _, d, f in BOX_IMAGES])
@pytest.mark.parametrize("rescale", [1, 0.5, 1.7])
def test_image_with_boxes_equals_tensorboardxs_pixels(shape, dtype, dataformats, rescale):
    image = _image(shape, dtype)
    boxes = np.array([[2, 3, 20, 18], [10.7, 1.2, 45.5, 28.9], [30, 25, 5, 8], [-4, -4, 70, 70], [7, 7, 7, 7]])
    value = {"image": image, "boxes": boxes}
    ours = media.image_with_boxes("with boxes!", value, dataformats=dataformats, rescale=rescale)
    theirs = tbx.image_boxes("with boxes!", image, boxes, rescale=rescale, dataformats=dataformats)
    assert_same_fields(ours, theirs)  # the tag as given, height and width before rescale, colorspace
    ours_pixels, their_pixels = (
        decoded(ours.value[0].image.encoded_image_string),
        decoded(theirs.value[0].image.encoded_image_string),
    )
    np.testing.assert_array_equal(ours_pixels, their_pixels)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_image_with_boxes_labels_differ_only_in_the_label_area(channels):
    image = RNG.integers(0, 256, (60, 80, channels), dtype=np.uint8)
    boxes = np.array([[2, 3, 40, 30], [10.5, 20.5, 75.2, 58.9], [50, 5, 60, 15]])
    labels = ["cat", "Dog 7", ""]
    ours = media.image_with_boxes("b", {"image": image, "boxes": boxes}, dataformats="HWC", labels=labels)
    theirs = tbx.image_boxes("b", image, boxes, dataformats="HWC", labels=labels)
    assert_same_fields(ours, theirs)
    ours_pixels = decoded(ours.value[0].image.encoded_image_string)
    their_pixels = decoded(theirs.value[0].image.encoded_image_string)
    keep = outside_labels(image.shape, boxes, labels)
    assert keep.mean() > 0.8
    np.testing.assert_array_equal(ours_pixels[keep], their_pixels[keep])
    assert (ours_pixels[~keep] != their_pixels[~keep]).any()  # the labels are drawn, in our font


def test_image_with_boxes_refuses_what_it_cannot_draw():
    image = np.zeros((3, 8, 8))
    with pytest.raises(ValueError, match="boxes"):
        media.image_with_boxes("b", {"image": image, "boxes": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="rescale"):
        media.image_with_boxes("b", {"image": image, "boxes": np.zeros((0, 4))}, rescale=0.01)
    with pytest.raises(ValueError, match="too many"):
        media.image_with_boxes("b", {"image": image, "boxes": np.zeros((0, 4))}, rescale=1025)


# -- add_audio -------------------------------------------------------------------------------------


AUDIO = [
    ("mono-1d", RNG.uniform(-1, 1, 4410)),
    ("mono-2d", RNG.uniform(-1, 1, (4410, 1)).astype(np.float32)),
    ("stereo", RNG.uniform(-1, 1, (2000, 2))),
    ("clipped", RNG.uniform(-3, 3, 1000)),
    ("nan", np.array([0.5, np.nan, 2.0, -0.25])),
]


@pytest.mark.parametrize(("name", "samples"), AUDIO, ids=[name for name, _ in AUDIO])
@pytest.mark.parametrize("sample_rate", [44100, 8000])
def test_audio_equals_tensorboardxs_byte_for_byte(name, samples, sample_rate):
    pytest.importorskip("soundfile")  # tensorboardX's audio() writes its WAV with it
    ours = media.audio("sound ü/1", samples, sample_rate=sample_rate)
    theirs = tbx.audio("sound ü/1", samples.copy(), sample_rate=sample_rate)
    assert_same_fields(ours, theirs, ignore_image=False)


def test_audio_takes_torchs_one_by_frames_layout_as_mono():
    samples = RNG.uniform(-1, 1, (1, 300))
    ours = media.audio("a", samples, sample_rate=16000).value[0].audio
    assert (ours.num_channels, ours.length_frames) == (1, 300)
    expected = media.audio("a", samples[0], sample_rate=16000).value[0].audio
    assert ours.encoded_audio_string == expected.encoded_audio_string


@pytest.mark.parametrize("shape", [(0,), (10, 3), (2, 10, 3)])
def test_audio_refuses_other_layouts(shape):
    with pytest.raises(ValueError, match="samples"):
        media.audio("a", np.zeros(shape))


# -- add_video -------------------------------------------------------------------------------------


VIDEOS = [
    ("float32", (1, 4, 3, 8, 10), "NTCHW", 4),
    ("uint8-3-videos", (3, 5, 3, 8, 10), "NTCHW", 7),
    ("float64-gray", (5, 2, 1, 6, 6), "NTCHW", 30),
    ("float16-rgba", (4, 3, 4, 6, 6), "NTCHW", 2.5),
    ("int64", (2, 3, 3, 5, 4), "NTCHW", 8),
    ("NTHWC", (2, 4, 6, 7, 3), "NTHWC", 12),
    ("TNCHW", (3, 2, 3, 6, 5), "TNCHW", 1),
]


def _video(shape, name):
    if name.startswith("uint8"):
        return RNG.integers(0, 256, shape, dtype=np.uint8)
    if name == "int64":
        return RNG.integers(0, 2, shape)
    dtype = {"float16-rgba": np.float16, "float64-gray": np.float64}.get(name, np.float32)
    return RNG.random(shape).astype(dtype)


@pytest.mark.parametrize(("name", "shape", "dataformats", "fps"), VIDEOS, ids=[v[0] for v in VIDEOS])
def test_video_equals_tensorboardxs(name, shape, dataformats, fps):
    video = _video(shape, name)
    ours = media.video("my video!", video, fps=fps, dataformats=dataformats)
    theirs = tbx.video("my video!", video, fps=fps, dataformats=dataformats)
    assert_same_fields(ours, theirs)  # tag cleaned, height, width and colorspace of the grid

    # Our frames are tensorboardX's, exactly (every video of these fits a GIF's 256 colours).
    expected = _prepare_video(convert_to_NTCHW(video, dataformats))
    if expected.dtype != np.uint8:
        expected = (expected * 255.0).astype(np.uint8)
    expected = np.repeat(expected, 3, axis=3) if expected.shape[3] == 1 else expected[..., :3]
    frames, durations = gif_frames(ours.value[0].image.encoded_image_string)
    np.testing.assert_array_equal(frames, expected)
    their_frames, their_durations = gif_frames(theirs.value[0].image.encoded_image_string)
    assert durations == [media.gif_delay(fps) * 10] * len(frames)
    assert their_durations == [media.gif_delay(fps) * 10] * len(their_frames)
    # moviepy samples frames at i / fps for i < int(T / fps * fps), which can lose the last one.
    assert len(their_frames) in (len(frames), len(frames) - 1)
    np.testing.assert_array_equal(frames[: len(their_frames)], their_frames)


def test_video_frame_delays_truncate_as_tensorboardxs_and_stay_positive():
    assert [media.gif_delay(fps) for fps in (4, 7, 8, 12, 24, 30, 60, 2.5, 0.5)] == [25, 14, 12, 8, 4, 3, 1, 40, 200]
    assert media.gif_delay(1000) == 1  # tensorboardX writes 0
    with pytest.raises(ValueError, match="fps"):
        media.gif_delay(0.001)


def test_video_of_many_colours_is_reduced_to_a_palette():
    video = RNG.random((1, 3, 3, 32, 32)).astype(np.float32)
    frames, _ = gif_frames(media.video("v", video).value[0].image.encoded_image_string)
    expected = (video[0].transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)
    assert frames.shape == expected.shape
    assert np.abs(frames.astype(int) - expected).mean() < 16


@pytest.mark.parametrize(
    ("shape", "dataformats", "fps"),
    [
        ((1, 2, 2, 4, 4), "NTCHW", 4),  # 2 channels
        ((2, 4, 4, 3), "NTCHW", 4),
        ((1, 2, 3, 4, 4), "NTCHX", 4),
        ((1, 2, 3, 4, 4), "NTCHW", 0),
    ],
)
def test_video_refuses_bad_input(shape, dataformats, fps):
    with pytest.raises(ValueError):
        media.video("v", np.zeros(shape), fps=fps, dataformats=dataformats)


# -- add_tensor ------------------------------------------------------------------------------------


TENSORS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    RNG.normal(size=(2, 3, 4)),
    np.array(3.5, dtype=np.float16),
    np.array([True, False, True]),
    RNG.integers(-100, 100, (5,), dtype=np.int8),
    RNG.integers(0, 2**63, (2, 2), dtype=np.uint64),
    np.arange(6, dtype=">i4").reshape(2, 3),
    np.zeros((0, 3), dtype=np.int32),
]


@pytest.mark.parametrize("array", TENSORS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_a_tensor_reads_back_with_its_dtype_shape_and_values(array):
    summary = loaded(media.tensor("Activation", array))
    (value,) = summary.value
    assert value.tag == "Activation"
    assert value.metadata.plugin_data.plugin_name == "tensor"
    assert value.metadata.data_class == DATA_CLASS_TENSOR
    back = tensor_util.make_ndarray(value.tensor)
    assert back.dtype == array.dtype.newbyteorder("=") and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    "make",
    [lambda t: t.arange(6.0).reshape(2, 3), lambda t: t.tensor([[1, 2], [3, 4]]), lambda t: t.rand(3, dtype=t.float64)],
)
def test_a_tensor_holds_the_values_torchs_add_tensor_writes(make):
    torch = pytest.importorskip("torch")
    from torch.utils.tensorboard.summary import tensor_proto

    tensor = make(torch)
    ours = loaded(media.tensor("t", tensor.numpy())).value[0]
    theirs = loaded(tensor_proto("t", tensor)).value[0]
    assert ours.tag == theirs.tag and ours.tensor.dtype == theirs.tensor.dtype
    assert ours.metadata.plugin_data.plugin_name == theirs.metadata.plugin_data.plugin_name
    assert ours.tensor.tensor_shape == theirs.tensor.tensor_shape
    np.testing.assert_array_equal(tensor_util.make_ndarray(ours.tensor), tensor_util.make_ndarray(theirs.tensor))
    # torch's add_tensor sets no data class: TensorBoard's Rust data server drops its series.
    assert theirs.metadata.data_class != DATA_CLASS_TENSOR


# -- the registered encoders -----------------------------------------------------------------------


def _record(kind, value, options):
    return [kind, 1, "", "tag", 7, 1_700_000_000.5, value, options]


@pytest.mark.parametrize(
    ("kind", "value", "options", "field"),
    [
        (
            RecordKind.HISTOGRAM_RAW,
            {"bucket_limits": np.array([1.0, 2.0]), "bucket_counts": np.array([3.0, 4.0])},
            {"min": 0.0, "max": 2.0, "num": 7.0, "sum": 10.0, "sum_squares": 20.0},
            "histo",
        ),
        (
            RecordKind.IMAGE_WITH_BOXES,
            {"image": np.zeros((3, 8, 8), np.uint8), "boxes": np.array([[1, 1, 5, 5]])},
            {"dataformats": "CHW", "labels": ["x"], "rescale": 2},
            "image",
        ),
        (RecordKind.AUDIO, np.zeros(100, np.float32), {"sample_rate": 8000}, "audio"),
        (RecordKind.VIDEO, np.zeros((1, 2, 3, 4, 4), np.uint8), {"fps": 10, "dataformats": "NTCHW"}, "image"),
        (RecordKind.TENSOR, np.arange(3), {}, "tensor"),
    ],
    ids=lambda v: v.name if isinstance(v, RecordKind) else "",
)
def test_each_kind_is_encoded_as_one_event_at_its_step_and_time(kind, value, options, field, tmp_path):
    (serialized,) = ENCODERS[kind](_record(kind, value, options), os.fspath(tmp_path))
    event = TbEvent.FromString(serialized)
    assert (event.step, event.wall_time) == (7, 1_700_000_000.5)
    (summary_value,) = event.summary.value
    assert summary_value.HasField(field)
    if kind == RecordKind.IMAGE_WITH_BOXES:
        assert decoded(summary_value.image.encoded_image_string).shape == (16, 16, 3)  # rescaled
        assert (summary_value.image.height, summary_value.image.width) == (8, 8)
    assert not os.listdir(tmp_path)  # nothing written beside the events
