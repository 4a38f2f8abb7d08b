"""SummaryWriter methods for embeddings for TensorBoard's projector."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._convert import to_owned_array
from ._writer_base import MAX_FILE_NAME_BYTES, WriterBase, check_tag, step_and_time
from .protocol import RecordKind

_EMBEDDING = RecordKind.EMBEDDING
#: The record tag of every embedding (the user's tag travels in the options). Embeddings write no
#: event, so their steps must not share the step order of a summary tag; one tag for all keeps the
#: calls of a run in call order, which is the order of `projector_config.pbtxt`.
EMBEDDING_RECORD_TAG = "\x00projector"
#: The largest sprite TensorBoard's projector loads, in pixels a side (as tensorboardX checks).
MAX_SPRITE_SIZE = 8192


def sprite_columns(count: int, height: int, width: int) -> int:
    """Thumbnails per row of the sprite: the square root of the total pixels, in thumbnails, as
    tensorboardX computes it (so the sprite has the same layout)."""
    return min(count, math.ceil((count * height * width) ** 0.5 / width))


def _directory_name(tag: str) -> str:
    """The tag as the daemon names its directory (tensorboardX's escapes)."""
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def _utf8(text: str, name: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} is not encodable as UTF-8: {exc}") from None


def _labels(values: Any, name: str) -> list[str]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list, got {type(values).__name__}")
    # str() of each label, as tensorboardX writes it.
    return [value if type(value) is str else str(value) for value in values]


class ProjectorMethods(WriterBase):
    """The `add_*` methods for embeddings for TensorBoard's projector (mixed into `SummaryWriter`)."""

    def add_embedding(
        self,
        mat: Any,
        metadata: Sequence[Any] | Any = None,
        label_img: Any = None,
        global_step: int | None = None,
        tag: str = "default",
        metadata_header: Sequence[Any] | Any = None,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs an embedding for TensorBoard's projector: files beside the run's events, no event.

        The daemon writes, as tensorboardX lays them out, `<logdir>/<global_step, 5 digits>/<tag>/`
        `tensors.tsv` (`mat`, N x D), `metadata.tsv` (one label per row of `mat`, each `str()`-ed;
        with `metadata_header`, `metadata` is a list of rows, one column per header name) and
        `sprite.png` (`label_img`, N x C x H x W with H == W and C 1 or 3, values in [0, 1], tiled
        into a square), and appends the embedding to `<logdir>/projector_config.pbtxt`. In the tag's
        directory name `%`, `/` and `\\` are escaped as `%25`, `%2f` and `%5c`, as tensorboardX does.

        Differences from tensorboardX: the sprite's padding below the last row of thumbnails is
        black (tensorboardX leaves it uninitialised), quotes, backslashes and control characters
        of the tag are escaped in `projector_config.pbtxt` (tensorboardX writes them raw, which
        breaks the file for every embedding of the run), `global_step` is taken as an int, and
        every check (shapes, label counts, the sprite's size) is made here, before anything is
        written.
        """
        tag = check_tag(tag)
        # The embedding's directory is named by its tag.
        if tag in (".", "..") or "\0" in tag or len(_utf8(_directory_name(tag), "tag")) > MAX_FILE_NAME_BYTES:
            raise ValueError(f"tag {tag!r} cannot name the embedding's directory")
        step, walltime = step_and_time(global_step, None)
        empty = self._transport.empty_array
        matrix = to_owned_array(mat, "mat", empty)
        if matrix.ndim != 2:
            raise ValueError(f"mat must be 2-D (one row per data point), got shape {matrix.shape}")
        count = matrix.shape[0]
        if count == 0:
            raise ValueError("mat has no rows: an embedding needs at least one data point")
        options: dict[str, Any] = {"tag": tag, "global_step": step, "metadata": None, "metadata_header": None}
        if metadata is not None:
            options["metadata"], options["metadata_header"] = _metadata(metadata, metadata_header, count)
        value = {"mat": matrix}
        if label_img is not None:
            shape = getattr(label_img, "shape", None)
            if shape is not None:  # refused before the copy is paid for
                _check_label_img(tuple(shape), count)
            images = to_owned_array(label_img, "label_img", empty)
            _check_label_img(images.shape, count)
            value["label_img"] = images
        self._submit_array(_EMBEDDING, EMBEDDING_RECORD_TAG, 0, walltime, value, options)


def _check_label_img(shape: tuple[int, ...], count: int) -> None:
    if len(shape) != 4:
        raise ValueError(f"label_img must be N x C x H x W, got shape {shape}")
    number, channels, height, width = shape
    if number != count:
        raise ValueError(f"label_img has {number} images for the {count} rows of mat")
    if height != width or height == 0:
        raise ValueError(f"label_img's images must be square and not empty, got {height} x {width}")
    if channels not in (1, 3):
        raise ValueError(f"label_img must have 1 or 3 channels (axis 1 of NCHW), got {channels}")
    side = sprite_columns(number, height, width) * width
    if side > MAX_SPRITE_SIZE:
        raise ValueError(
            f"label_img makes a sprite of {side} x {side} pixels; TensorBoard loads at most "
            f"{MAX_SPRITE_SIZE} (sqrt(N) * W must be <= {MAX_SPRITE_SIZE})"
        )


def _metadata(metadata: Any, metadata_header: Any, count: int) -> tuple[list[Any], list[str] | None]:
    """The labels as str (a list, or a list of rows with the header) for `count` data points."""
    if not metadata_header:  # tensorboardX's test: an empty header is no header
        labels = _labels(metadata, "metadata")
        if len(labels) != count:
            raise ValueError(f"metadata has {len(labels)} labels for the {count} rows of mat")
        _utf8("".join(labels), "metadata")  # refused here, not when the I/O thread packs it
        return labels, None
    header = _labels(metadata_header, "metadata_header")
    rows = [_labels(row, f"metadata[{index}]") for index, row in enumerate(_rows(metadata))]
    if len(rows) != count:
        raise ValueError(f"metadata has {len(rows)} rows for the {count} rows of mat")
    for index, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"metadata[{index}] has {len(row)} columns, metadata_header names {len(header)}")
    _utf8("".join(header) + "".join(["".join(row) for row in rows]), "metadata")
    return rows, header


def _rows(metadata: Any) -> Any:
    if isinstance(metadata, (str, bytes)) or not hasattr(metadata, "__iter__"):
        raise TypeError(f"metadata must be a list of rows when metadata_header is given, got {type(metadata).__name__}")
    return metadata
