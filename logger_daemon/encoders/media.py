"""Encoders of media and raw kinds: raw histograms, images with boxes, audio (WAV), video (GIF),
tensors.

Each kind has a pure summary function, `function(tag, value, **options) -> Summary`, equal to what
tensorboardX 2.6.5 writes for the same call (torch.utils.tensorboard for `tensor`, which
tensorboardX lacks); the differences are stated in each docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from logger_client.protocol import RecordKind
from logger_daemon.draw import draw_boxes
from logger_daemon.encoders.base import Encoder, summary_encoder
from logger_daemon.gif import encode_gif
from logger_daemon.image_layout import to_hwc
from logger_daemon.png import encode_png
from logger_daemon.protos.summary_pb2 import DATA_CLASS_TENSOR, HistogramProto, Summary, SummaryMetadata
from logger_daemon.protos.tensor_pb2 import TensorProto
from logger_daemon.protos.tensor_shape_pb2 import TensorShapeProto
from logger_daemon.protos.types_pb2 import (
    DT_BOOL,
    DT_DOUBLE,
    DT_FLOAT,
    DT_HALF,
    DT_INT8,
    DT_INT16,
    DT_INT32,
    DT_INT64,
    DT_UINT8,
    DT_UINT16,
    DT_UINT32,
    DT_UINT64,
)
from logger_daemon.resample import lanczos_resize
from logger_daemon.summaries import clean_tag
from logger_daemon.wav import encode_wav

__all__ = [
    "ENCODERS",
    "MAX_RESCALED_PIXELS",
    "TENSOR_PLUGIN_NAME",
    "audio",
    "gif_delay",
    "histogram_raw",
    "image_with_boxes",
    "tensor",
    "video",
    "video_frames",
]

#: The plugin name torch.utils.tensorboard's add_tensor writes; no TensorBoard plugin shows it.
TENSOR_PLUGIN_NAME = "tensor"
_DATA_TYPES = {
    np.dtype(np.bool_): DT_BOOL,
    np.dtype(np.uint8): DT_UINT8,
    np.dtype(np.int8): DT_INT8,
    np.dtype(np.uint16): DT_UINT16,
    np.dtype(np.int16): DT_INT16,
    np.dtype(np.uint32): DT_UINT32,
    np.dtype(np.int32): DT_INT32,
    np.dtype(np.uint64): DT_UINT64,
    np.dtype(np.int64): DT_INT64,
    np.dtype(np.float16): DT_HALF,
    np.dtype(np.float32): DT_FLOAT,
    np.dtype(np.float64): DT_DOUBLE,
}
_MAX_PROTO_BYTES = (1 << 31) - 1
#: The largest picture a rescale may make (the client refuses larger ones at the call).
MAX_RESCALED_PIXELS = 1 << 26


def histogram_raw(
    tag: str,
    value: dict[str, np.ndarray],
    *,
    min: float,
    max: float,
    num: float,
    sum: float,
    sum_squares: float,
) -> Summary:
    """A histogram from its given statistics and buckets (`value`: bucket_limits, bucket_counts),
    as tensorboardX's histogram_raw: the tag as given, every number as a double."""
    limits = np.asarray(value["bucket_limits"], dtype=np.float64).reshape(-1)
    counts = np.asarray(value["bucket_counts"], dtype=np.float64).reshape(-1)
    if limits.size != counts.size:
        raise ValueError(f"bucket_limits has {limits.size} values, bucket_counts {counts.size}")
    histo = HistogramProto(
        min=min,
        max=max,
        num=num,
        sum=sum,
        sum_squares=sum_squares,
        bucket_limit=limits.tolist(),
        bucket=counts.tolist(),
    )
    return Summary(value=[Summary.Value(tag=tag, histo=histo)])


def image_with_boxes(
    tag: str,
    value: dict[str, np.ndarray],
    *,
    dataformats: str = "CHW",
    labels: Sequence[str | None] | None = None,
    rescale: float = 1,
) -> Summary:
    """One PNG of `value["image"]` with `value["boxes"]` (N x 4: xmin, ymin, xmax, ymax) drawn on
    it in red, each with its label, as tensorboardX's image_boxes; then resized by `rescale`
    (Lanczos, as PIL). The tag is kept as given; height and width are the size before `rescale`.

    Differs from tensorboardX: labels are drawn in a built-in 5 x 7 bitmap font (see
    `logger_daemon.draw`), so their glyphs and the red box behind them differ from PIL's.
    """
    pixels = to_hwc(_to_uint8(np.asarray(value["image"])), dataformats)
    pixels = np.array(pixels, dtype=np.uint8, order="C")  # ours to draw on (frames are read-only)
    draw_boxes(pixels, np.asarray(value["boxes"]), labels)
    height, width, channels = pixels.shape
    if not (isinstance(rescale, (int, float)) and np.isfinite(rescale) and rescale > 0):
        raise ValueError(f"rescale: expected a positive number, got {rescale!r}")
    scaled_width, scaled_height = int(width * rescale), int(height * rescale)
    if scaled_width < 1 or scaled_height < 1:
        raise ValueError(f"rescale: {rescale} leaves an image of {scaled_width} x {scaled_height} pixels")
    if scaled_width * scaled_height > MAX_RESCALED_PIXELS:
        raise ValueError(f"rescale: {rescale} makes an image of {scaled_width} x {scaled_height} pixels, too many")
    shown = lanczos_resize(pixels, scaled_width, scaled_height)
    picture = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=encode_png(shown))
    return Summary(value=[Summary.Value(tag=tag, image=picture)])


def audio(tag: str, samples: np.ndarray, *, sample_rate: int = 44100) -> Summary:
    """A 16-bit PCM WAV of `samples`, byte for byte as tensorboardX's audio() writes it with
    soundfile: clipped to [-1, 1]; shaped (frames,) or (frames, channels), 1 or 2 channels; a
    (1, frames) array (torch.utils.tensorboard's layout) is one channel. The tag is kept as given.

    Differs from tensorboardX: integer and float16 samples are taken as values like any float
    (tensorboardX writes int16 samples unscaled, shifts int32 ones, refuses other dtypes).
    """
    array = _audio_layout(np.asarray(samples))
    if array.shape[0] == 0:
        raise ValueError("samples: no frames")
    encoded = encode_wav(array, sample_rate)
    clip = Summary.Audio(
        sample_rate=sample_rate,
        num_channels=array.shape[1],
        length_frames=array.shape[0],
        encoded_audio_string=encoded,
        content_type="audio/wav",
    )
    return Summary(value=[Summary.Value(tag=tag, audio=clip)])


def _audio_layout(array: np.ndarray) -> np.ndarray:
    """Samples as (frames, channels)."""
    if array.ndim == 1:
        return array.reshape(-1, 1)
    if array.ndim == 2 and array.shape[1] in (1, 2):
        return array
    if array.size > 0 and sum(1 for size in array.shape if size != 1) <= 1:
        return array.reshape(-1, 1)  # one axis of samples, the others of size 1: mono
    raise ValueError(f"samples: expected shape (frames,), (frames, 1 or 2) or (1, frames), got {array.shape}")


def video_frames(array: np.ndarray, dataformats: str = "NTCHW") -> np.ndarray:
    """The frames tensorboardX makes of a batch of videos: uint8 (T, H', W', C), the N videos of
    each frame tiled into a grid (N padded with black videos to a power of two; 2**(floor(log2 N)
    // 2) rows). Values as tensorboardX computes them: uint8 is divided by 255 in float32 and
    multiplied back, other dtypes multiplied by 255 (float64 once padding was needed), then cast
    to uint8 without clipping."""
    layout = dataformats.upper()
    if array.ndim != 5 or sorted(layout) != sorted("NTCHW"):
        raise ValueError(f"dataformats: expected a permutation of NTCHW for a 5-D array, got {dataformats!r}")
    videos = array.transpose([layout.index(axis) for axis in "NTCHW"])
    count, frames, channels, height, width = videos.shape
    if videos.size == 0:
        raise ValueError(f"vid_tensor: empty video, shape {videos.shape}")
    values: np.ndarray = np.float32(videos) / 255.0 if videos.dtype == np.uint8 else videos
    padded = 1 << (count - 1).bit_length()
    if padded != count:
        # Padding with float64 zeros promotes the videos to float64, which changes the rounding.
        values = np.concatenate([values, np.zeros((padded - count, frames, channels, height, width))])
    rows = 2 ** ((count.bit_length() - 1) // 2)
    columns = padded // rows
    grid = values.reshape(rows, columns, frames, channels, height, width).transpose(2, 0, 4, 1, 5, 3)
    grid = grid.reshape(frames, rows * height, columns * width, channels)
    with np.errstate(invalid="ignore", over="ignore"):
        return (grid * 255.0).astype(np.uint8)


def gif_delay(fps: float) -> int:
    """A frame's delay in hundredths of a second at `fps`, truncated as tensorboardX's GIFs
    (moviepy and PIL) have it, but at least 1 (tensorboardX writes 0 above 100 fps)."""
    delay = int(1000.0 / fps / 10)
    if delay > 0xFFFF:
        raise ValueError(f"fps: {fps} makes frames longer than a GIF can show (655.35 s)")
    return max(delay, 1)


def video(tag: str, array: np.ndarray, *, fps: float = 4, dataformats: str = "NTCHW") -> Summary:
    """An animated GIF of `array` (laid out as `dataformats`), looping forever, as tensorboardX's
    video(): frames tiled as `video_frames`, the tag cleaned, colorspace the input's channel
    count (1, 3 or 4; gray is shown as RGB, alpha is dropped, as tensorboardX's GIF does).

    Differs from tensorboardX: the GIF is encoded here (see `logger_daemon.gif` for the palette),
    not by moviepy; it always has every frame (moviepy may drop the last one to rounding), and at
    least 1/100 s per frame.
    """
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    frames = video_frames(np.asarray(array), dataformats)
    _, height, width, channels = frames.shape
    if channels == 1:
        rgb = np.repeat(frames, 3, axis=3)
    elif channels in (3, 4):
        rgb = frames[..., :3]
    else:
        raise ValueError(f"vid_tensor: a video has 1, 3 or 4 channels, got {channels}")
    picture = Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=encode_gif(rgb, gif_delay(fps))
    )
    return Summary(value=[Summary.Value(tag=clean_tag(tag), image=picture)])


def tensor(tag: str, array: np.ndarray) -> Summary:
    """The whole array as a TensorProto (its dtype, shape, and its bytes little-endian in
    `tensor_content`), under the tag as given, with plugin name "tensor" (as torch's add_tensor)
    and data class DATA_CLASS_TENSOR.

    The data class is what makes TensorBoard keep the series: its Rust data server drops every
    series whose data class it cannot tell (torch's add_tensor sets none, so the data server drops
    it), and the Python data provider lists tensors by data class. `tensor_content` keeps every
    dtype and shape exactly; `tensorboard.util.tensor_util.make_ndarray` reads it back.
    """
    array = np.asarray(array)
    data_type = _DATA_TYPES.get(array.dtype.newbyteorder("="))
    if data_type is None:
        raise TypeError(f"tensor: dtype {array.dtype} has no TensorBoard data type")
    if array.nbytes > _MAX_PROTO_BYTES:
        raise ValueError(f"tensor: {array.nbytes} bytes, more than a protobuf message holds (2 GiB)")
    proto = TensorProto(
        dtype=data_type,
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=size) for size in array.shape]),
        tensor_content=np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes(),
    )
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=TENSOR_PLUGIN_NAME), data_class=DATA_CLASS_TENSOR
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=proto)])


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    with np.errstate(invalid="ignore", over="ignore"):  # tensorboardX's cast: wraps, no clipping
        return (array * 255.0).astype(np.uint8)


ENCODERS: dict[int, Encoder] = {
    RecordKind.HISTOGRAM_RAW: summary_encoder(histogram_raw, ("min", "max", "num", "sum", "sum_squares")),
    RecordKind.IMAGE_WITH_BOXES: summary_encoder(image_with_boxes, ("dataformats", "labels", "rescale")),
    RecordKind.AUDIO: summary_encoder(audio, ("sample_rate",)),
    RecordKind.VIDEO: summary_encoder(video, ("fps", "dataformats")),
    RecordKind.TENSOR: summary_encoder(tensor),
}
