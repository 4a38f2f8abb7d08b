"""Record -> ``Summary`` proto, one function per kind, equal to what tensorboardX writes.

Each function is pure: it takes the values a ``SummaryWriter`` call received (arrays
with the user's dtype and layout) and returns a ``Summary`` whose fields, once read back
by TensorBoard, equal those tensorboardX 2.6 (or, for ``new_style`` scalars,
torch.utils.tensorboard) would have written. Bad input raises ValueError naming the
argument.
"""

from __future__ import annotations

import re

import numpy as np

from logger_daemon.histogram import TENSORFLOW_BINS, histogram_proto
from logger_daemon.image_layout import to_hwc
from logger_daemon.png import encode_png
from logger_daemon.protos import summary_pb2
from logger_daemon.protos.plugin_text_pb2 import TextPluginData
from logger_daemon.protos.summary_pb2 import Summary, SummaryMetadata
from logger_daemon.protos.tensor_pb2 import TensorProto
from logger_daemon.protos.tensor_shape_pb2 import TensorShapeProto
from logger_daemon.protos.types_pb2 import DT_DOUBLE, DT_FLOAT, DT_STRING

__all__ = ["clean_tag", "histogram", "image", "images", "scalar", "text"]

_INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w.]")
_TEXT_PLUGIN_CONTENT = TextPluginData(version=0).SerializeToString()


def clean_tag(tag: str) -> str:
    """Replace characters TensorFlow forbids in names with "_" and drop leading "/"
    (tensorboardX does this for scalar, histogram and image tags, not text)."""
    return _INVALID_TAG_CHARACTERS.sub("_", tag).lstrip("/")


def scalar(
    tag: str,
    value: float,
    *,
    display_name: str = "",
    summary_description: str = "",
    new_style: bool = False,
    double_precision: bool = False,
) -> summary_pb2.Summary:
    """A scalar: ``simple_value`` (float32) as tensorboardX, with metadata only when a
    display name or description is given.

    ``new_style`` writes torch.utils.tensorboard's form instead: a DT_FLOAT (or, with
    ``double_precision``, DT_DOUBLE) tensor with "scalars" plugin metadata, under the
    tag as given (torch does not clean tags). ``value`` may be any real number, numpy
    scalar or one-element array.
    """
    number = _single_float(value)
    if new_style:
        if double_precision:
            tensor = TensorProto(dtype=DT_DOUBLE, double_val=[number])
        else:
            tensor = TensorProto(dtype=DT_FLOAT, float_val=[number])
        metadata = SummaryMetadata(
            display_name=display_name,
            summary_description=summary_description,
            plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"),
        )
        return Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=metadata)])

    entry = Summary.Value(tag=clean_tag(tag), simple_value=number)
    if display_name or summary_description:
        entry.metadata.display_name = display_name
        entry.metadata.summary_description = summary_description
    return Summary(value=[entry])


def histogram(
    tag: str, values: np.ndarray, bins: str | int | list[float] = TENSORFLOW_BINS, max_bins: int | None = None
) -> summary_pb2.Summary:
    """A histogram of ``values``; see ``logger_daemon.histogram.histogram_proto`` for ``bins``."""
    histo = histogram_proto(values, bins, max_bins)
    return Summary(value=[Summary.Value(tag=clean_tag(tag), histo=histo)])


def image(tag: str, array: np.ndarray, dataformats: str = "CHW") -> summary_pb2.Summary:
    """One PNG image from ``array`` laid out as ``dataformats`` (a 4-D batch becomes a grid).

    uint8 pixels are taken as they are; any other dtype is multiplied by 255 and cast
    to uint8 without clipping, exactly as tensorboardX does, so values outside [0, 1]
    wrap around rather than saturate.
    """
    pixels = to_hwc(_to_uint8(np.asarray(array)), dataformats)
    height, width, channels = pixels.shape
    picture = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=encode_png(pixels))
    return Summary(value=[Summary.Value(tag=clean_tag(tag), image=picture)])


def images(tag: str, array: np.ndarray, dataformats: str = "NCHW") -> summary_pb2.Summary:
    """A batch of images tiled into one PNG grid, 8 per row, as tensorboardX's add_images."""
    return image(tag, array, dataformats)


def text(tag: str, text: str) -> summary_pb2.Summary:
    """A text summary: a one-element DT_STRING tensor under ``<tag>/text_summary``."""
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"text: not encodable as UTF-8: {err}") from err
    tensor = TensorProto(
        dtype=DT_STRING,
        string_val=[encoded],
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
    )
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text", content=_TEXT_PLUGIN_CONTENT))
    return Summary(value=[Summary.Value(tag=tag + "/text_summary", metadata=metadata, tensor=tensor)])


def _single_float(value: object) -> float:
    if isinstance(value, float):  # the common case (np.float64 too), without numpy's cost
        return float(value)
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(f"value: expected a single number, got shape {array.shape}")
    try:
        return float(array.reshape(()))
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"value: not a real number: {value!r}") from err


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    # tensorboardX's rule, kept bit for bit: scale in the array's own float precision
    # (float16 stays float16), then a C cast that wraps out-of-range values and maps NaN
    # to whatever the platform gives. Done before the layout step: it is elementwise
    # and maps the grid's zero padding to zero either way.
    with np.errstate(invalid="ignore", over="ignore"):
        return (array * 255.0).astype(np.uint8)
