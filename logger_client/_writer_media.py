"""SummaryWriter methods for audio, video, images with boxes, figures, raw histograms and tensors.

Each checks its arguments and copies its arrays once; the daemon draws the boxes, encodes the WAV,
GIF and PNG and builds the protobuf. `add_figure` is the exception: a matplotlib figure cannot
cross to another process, so it is rendered to pixels here.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._convert import to_float, to_owned_array
from ._writer_base import WriterBase, check_dataformats, check_image, check_tag, step_and_time
from .protocol import RecordKind

log = logging.getLogger("logger_client")

_HISTOGRAM_RAW = RecordKind.HISTOGRAM_RAW
_IMAGE = RecordKind.IMAGE
_IMAGE_WITH_BOXES = RecordKind.IMAGE_WITH_BOXES
_AUDIO = RecordKind.AUDIO
_VIDEO = RecordKind.VIDEO
_TENSOR = RecordKind.TENSOR

#: Images per grid row of a batch (the daemon's image_layout.GRID_COLUMNS).
_GRID_COLUMNS = 8
#: The largest picture add_image_with_boxes may rescale to (the daemon refuses larger ones too).
MAX_RESCALED_PIXELS = 1 << 26
#: The largest tensor a TensorProto holds (protobuf's 2 GiB message limit).
_MAX_TENSOR_BYTES = (1 << 31) - 1
_FIGURES_EXTRA = "pip install 'tb-logger-service[figures]'"


def _positive_number(value: Any, name: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def _image_size(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """(height, width) of the picture the daemon makes of an image of `shape` laid out as `layout`
    (a batch is a grid)."""
    height, width = shape[layout.index("H")], shape[layout.index("W")]
    if "N" in layout:
        count = shape[layout.index("N")]
        columns = min(count, _GRID_COLUMNS)
        return height * -(-count // columns), width * columns
    return height, width


def _check_labels(labels: Any, box_count: int) -> list[str | None] | None:
    """tensorboardX's rule: a str is one label; a count other than the boxes' is skipped, with a
    warning. Each label is a str (None or "" for no label)."""
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    if not hasattr(labels, "__len__"):
        raise TypeError(f"labels must be a list of str, got {type(labels).__name__}")
    labels = list(labels)
    if len(labels) != box_count:
        log.warning("add_image_with_boxes: %d labels for %d boxes; the labels are skipped", len(labels), box_count)
        return None
    for label in labels:
        if label is not None and not isinstance(label, str):
            raise TypeError(f"labels must be str (or None), got a {type(label).__name__}")
    return [None if label is None else str(label) for label in labels]


def _audio_frames(shape: tuple[int, ...]) -> bool:
    """Whether samples of `shape` have a layout add_audio takes: (frames,), (frames, 1 or 2), or
    torch.utils.tensorboard's (1, frames) (any shape that squeezes to one axis)."""
    if len(shape) == 1 or (len(shape) == 2 and shape[1] in (1, 2)):
        return True
    return sum(1 for size in shape if size != 1) <= 1 and len(shape) > 0


class MediaMethods(WriterBase):
    """Mixed into `SummaryWriter`: audio, video, images with boxes, figures, raw histograms, tensors."""

    def add_histogram_raw(
        self,
        tag: str,
        min: float,
        max: float,
        num: int,
        sum: float,
        sum_squares: float,
        bucket_limits: Any,
        bucket_counts: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs a histogram given by its statistics and buckets, as tensorboardX.

        `bucket_limits` holds the right edge of each bucket and `bucket_counts` its count (equal
        lengths, else ValueError; `np.histogram`'s edges have one more: pass `edges[1:]`). The tag
        is kept as given, as tensorboardX's add_histogram_raw does.
        """
        check_tag(tag)
        numbers = {
            "min": to_float(min, "min"),
            "max": to_float(max, "max"),
            "num": to_float(num, "num"),
            "sum": to_float(sum, "sum"),
            "sum_squares": to_float(sum_squares, "sum_squares"),
        }
        step, walltime = step_and_time(global_step, walltime)
        limits = to_owned_array(bucket_limits, "bucket_limits", self._transport.empty_array)
        counts = to_owned_array(bucket_counts, "bucket_counts", self._transport.empty_array)
        for name, array in (("bucket_limits", limits), ("bucket_counts", counts)):
            if array.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
        if limits.size != counts.size:
            raise ValueError(
                f"len(bucket_limits) != len(bucket_counts) ({limits.size} != {counts.size}): "
                "one right edge per bucket (np.histogram's edges[1:])"
            )
        self._submit_array(
            _HISTOGRAM_RAW, tag, step, walltime, {"bucket_limits": limits, "bucket_counts": counts}, numbers
        )

    def add_image_with_boxes(
        self,
        tag: str,
        img_tensor: Any,
        box_tensor: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        dataformats: str | float = "CHW",
        labels: Sequence[str] | str | None = None,
        *args: Any,
        reduce: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Logs an image with bounding boxes drawn on it (by the daemon), as tensorboardX.

        `box_tensor` is N x 4, each row (xmin, ymin, xmax, ymax) in pixels; boxes are drawn in red,
        2 pixels wide, each with its label from `labels` (a str, or one per box; another count is
        skipped with a warning, as tensorboardX) at its bottom-left corner. `rescale` (a keyword,
        as tensorboardX's kwargs, or torch.utils.tensorboard's 6th positional argument) resizes
        the drawn image (Lanczos). The tag is kept as given, as tensorboardX's.

        Differs from tensorboardX: labels use a built-in 5 x 7 bitmap font, not PIL's default font,
        so their glyphs and the red box behind them differ; every other pixel is the same.
        """
        rescale = kwargs.pop("rescale", 1)
        if kwargs:
            raise TypeError(f"add_image_with_boxes got unexpected keyword arguments: {sorted(kwargs)}")
        if isinstance(dataformats, (int, float, np.integer, np.floating)) and not isinstance(dataformats, bool):
            # torch.utils.tensorboard's positional order: (..., walltime, rescale, dataformats, labels)
            if len(args) > 1:
                raise TypeError("add_image_with_boxes takes at most 8 positional arguments")
            rescale, dataformats = dataformats, labels if labels is not None else "CHW"  # type: ignore[assignment]
            labels = args[0] if args else None
        elif args:
            raise TypeError("add_image_with_boxes takes at most 8 positional arguments")
        check_tag(tag)
        rescale = _positive_number(rescale, "rescale")
        step, walltime = step_and_time(global_step, walltime)
        image = to_owned_array(img_tensor, "img_tensor", self._transport.empty_array)
        layout = check_dataformats(dataformats, image.ndim, (2, 3, 4))
        check_image(image, layout)
        height, width = _image_size(image.shape, layout)
        scaled_height, scaled_width = int(height * rescale), int(width * rescale)
        if scaled_height < 1 or scaled_width < 1:
            raise ValueError(f"rescale {rescale} shrinks the {height} x {width} image to nothing")
        if scaled_height * scaled_width > MAX_RESCALED_PIXELS:
            raise ValueError(
                f"rescale {rescale} makes the {height} x {width} image {scaled_height} x {scaled_width}, "
                f"more than {MAX_RESCALED_PIXELS} pixels"
            )
        boxes = to_owned_array(box_tensor, "box_tensor", self._transport.empty_array)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"box_tensor must be N x 4 (xmin, ymin, xmax, ymax), got shape {boxes.shape}")
        if boxes.dtype.kind == "f" and not np.isfinite(boxes).all():
            raise ValueError("box_tensor holds NaN or infinity")
        options = {"dataformats": layout, "labels": _check_labels(labels, boxes.shape[0]), "rescale": rescale}
        self._submit_array(_IMAGE_WITH_BOXES, tag, step, walltime, {"image": image, "boxes": boxes}, options)

    def add_figure(
        self,
        tag: str,
        figure: Any,
        global_step: int | None = None,
        close: bool = True,
        walltime: float | None = None,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs a matplotlib figure (or a list of figures, as one grid of 8 per row) as an image.

        The one method that works in the calling process: a figure cannot be sent to the daemon,
        so it is drawn here with matplotlib's Agg canvas (as tensorboardX: its RGB pixels, alpha
        dropped); the daemon encodes the PNG. Closes the figures when `close`. Needs matplotlib
        (`pip install 'tb-logger-service[figures]'`).
        """
        check_tag(tag)
        step, walltime = step_and_time(global_step, walltime)
        figures = figure if isinstance(figure, list) else [figure]
        if not figures:
            raise ValueError("figure is an empty list")
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError(f"add_figure needs matplotlib, which is not installed: {_FIGURES_EXTRA}") from None
        for item in figures:
            if not isinstance(item, Figure):
                raise TypeError(f"figure must be a matplotlib Figure or a list of them, got {type(item).__name__}")
        pixels: np.ndarray | None = None
        for index, item in enumerate(figures):
            canvas = FigureCanvasAgg(item)
            canvas.draw()
            rgba = np.asarray(canvas.buffer_rgba())  # a view of the canvas's memory: (height, width, 4)
            if pixels is None:
                shape = (len(figures), 3, *rgba.shape[:2]) if isinstance(figure, list) else (3, *rgba.shape[:2])
                pixels = self._transport.empty_array(shape, np.dtype(np.uint8))
            elif rgba.shape[:2] != pixels.shape[2:]:
                raise ValueError(
                    f"figure: every figure of the list must have the same size in pixels; figure {index} is "
                    f"{rgba.shape[1]} x {rgba.shape[0]}, figure 0 {pixels.shape[3]} x {pixels.shape[2]}"
                )
            target = pixels[index] if isinstance(figure, list) else pixels
            np.copyto(target, rgba[:, :, :3].transpose(2, 0, 1))
            if close:
                # A figure pyplot does not know needs no closing, so pyplot is never imported for it.
                pyplot = sys.modules.get("matplotlib.pyplot")
                if pyplot is not None:
                    pyplot.close(item)
        assert pixels is not None
        layout = "NCHW" if isinstance(figure, list) else "CHW"
        self._submit_array(_IMAGE, tag, step, walltime, pixels, {"dataformats": layout})

    def add_video(
        self,
        tag: str,
        vid_tensor: Any,
        global_step: int | None = None,
        fps: float = 4,
        walltime: float | None = None,
        dataformats: str = "NTCHW",
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs a batch of videos as one animated GIF (encoded by the daemon), as tensorboardX.

        `vid_tensor` is N x T x C x H x W by default (`dataformats` names another order), uint8 in
        [0, 255] or float in [0, 1], C = 1, 3 or 4; the N videos are tiled into one grid per frame.
        Each frame shows for 1/`fps` s (in GIF's hundredths, truncated; at least one). The GIF
        loops forever.

        Differs from tensorboardX: the GIF is the daemon's own (no moviepy); frames whose colours
        do not fit GIF's 256 are reduced by median cut; every frame is kept (moviepy can drop the
        last one).
        """
        check_tag(tag)
        fps = _positive_number(fps, "fps")
        if int(1000.0 / fps / 10) > 0xFFFF:
            raise ValueError(f"fps {fps} makes frames longer than a GIF can show (655.35 s)")
        if not isinstance(dataformats, str):
            raise TypeError(f"dataformats must be a str such as 'NTCHW', got {type(dataformats).__name__}")
        layout = dataformats.upper()
        if sorted(layout) != sorted("NTCHW"):
            raise ValueError(f"dataformats must use each of the letters N, T, C, H, W once, got {dataformats!r}")
        step, walltime = step_and_time(global_step, walltime)
        video = to_owned_array(vid_tensor, "vid_tensor", self._transport.empty_array)
        if video.ndim != 5:
            raise ValueError(f"vid_tensor must have 5 dimensions ({layout}), got shape {video.shape}")
        if video.size == 0:
            raise ValueError(f"vid_tensor is empty (shape {video.shape})")
        channels = video.shape[layout.index("C")]
        if channels not in (1, 3, 4):
            raise ValueError(f"vid_tensor has {channels} channels on axis C of {layout!r}; expected 1, 3 or 4")
        self._submit_array(_VIDEO, tag, step, walltime, video, {"fps": fps, "dataformats": layout})

    def add_audio(
        self,
        tag: str,
        snd_tensor: Any,
        global_step: int | None = None,
        sample_rate: int = 44100,
        walltime: float | None = None,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs a sound clip as a 16-bit PCM WAV (encoded by the daemon), as tensorboardX.

        `snd_tensor`: samples in [-1, 1] (clipped), shaped (frames,), (frames, channels) with 1 or
        2 channels, or torch.utils.tensorboard's (1, frames). `sample_rate` in Hz, an integer.
        The WAV's bytes are tensorboardX's (soundfile's 16-bit conversion). Differs from
        tensorboardX: integer and float16 samples are taken as values like floats.
        """
        check_tag(tag)
        rate = _positive_number(sample_rate, "sample_rate")
        if rate != int(rate) or rate >= 2**31:
            raise ValueError(f"sample_rate must be a whole number of Hz below 2**31, got {sample_rate!r}")
        step, walltime = step_and_time(global_step, walltime)
        samples = to_owned_array(snd_tensor, "snd_tensor", self._transport.empty_array)
        if samples.size == 0:
            raise ValueError(f"snd_tensor is empty (shape {samples.shape})")
        if not _audio_frames(samples.shape):
            raise ValueError(
                f"snd_tensor must be shaped (frames,), (frames, 1 or 2 channels) or (1, frames), got {samples.shape}"
            )
        self._submit_array(_AUDIO, tag, step, walltime, samples, {"sample_rate": int(rate)})

    def add_tensor(
        self,
        tag: str,
        tensor: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs a whole tensor (torch.utils.tensorboard's add_tensor; tensorboardX has none).

        Written as a TensorProto with the array's dtype, shape and bytes (`tensor_content`), plugin
        name "tensor" (torch's) and data class DATA_CLASS_TENSOR: torch writes no data class, and
        TensorBoard's Rust data server drops a series without one; with it, both TensorBoard
        loaders keep the series and a reader gets the array back with its dtype and shape. Takes
        numpy arrays and array-likes too (torch's takes torch tensors only); a bfloat16 tensor is
        logged as float32 (numpy has no bfloat16).
        """
        check_tag(tag)
        step, walltime = step_and_time(global_step, walltime)
        array = to_owned_array(tensor, "tensor", self._transport.empty_array)
        if array.nbytes > _MAX_TENSOR_BYTES:
            raise ValueError(f"tensor holds {array.nbytes} bytes, more than a TensorProto can (2 GiB)")
        self._submit_array(_TENSOR, tag, step, walltime, array, {})
