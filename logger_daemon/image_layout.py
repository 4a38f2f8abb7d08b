"""Rearranging image arrays into one HxWxC picture, as tensorboardX does before encoding.

Layouts follow tensorboardX's ``dataformats``: 2-D ("HW", "WH") and 3-D
(any order of "CHW") images, and 4-D batches (any order of "NCHW") tiled into a grid.
One channel is repeated to three (RGB), so a single-channel image never reaches the
encoder as grayscale.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GRID_COLUMNS", "make_grid", "to_hwc"]

# Images per grid row, as tensorboardX's add_images.
GRID_COLUMNS = 8

_CANONICAL = {2: "HW", 3: "HWC", 4: "NHWC"}


def to_hwc(array: np.ndarray, dataformats: str) -> np.ndarray:
    """Return ``array`` (laid out as ``dataformats``, case-insensitive) as an HxWxC image.

    A batch is tiled into a grid of ``GRID_COLUMNS`` columns. Channels: 1 becomes 3;
    a 3-D image may have 1-4 channels, a batch 1, 3 or 4. The dtype is kept.
    Raises ValueError naming the argument for an unknown layout, a shape that does not
    fit it, an unsupported channel count, or an empty image.
    """
    layout = dataformats.upper()
    canonical = _CANONICAL.get(len(layout))
    if canonical is None or sorted(layout) != sorted(canonical):
        raise ValueError(f"dataformats: expected a permutation of HW, CHW or NCHW, got {dataformats!r}")
    if array.ndim != len(layout):
        raise ValueError(
            f"array: shape {array.shape} has {array.ndim} dimensions, dataformats {dataformats!r} has {len(layout)}"
        )
    if array.size == 0:
        raise ValueError(f"array: empty image, shape {array.shape}")

    # A transpose is a view; the one copy happens below (grid, channel repeat) or in the encoder.
    arranged = array.transpose([layout.index(axis) for axis in canonical])
    if arranged.ndim == 4:
        return make_grid(arranged)
    if arranged.ndim == 2:
        return np.repeat(arranged[:, :, np.newaxis], 3, axis=2)
    channels = arranged.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"array: an image has 1, 2, 3 or 4 channels, got {channels}")
    if channels == 1:
        return np.repeat(arranged, 3, axis=2)
    return arranged


def make_grid(batch: np.ndarray, columns: int = GRID_COLUMNS) -> np.ndarray:
    """Tile an NxHxWxC batch into one image, row by row, without padding between tiles.

    ``min(N, columns)`` tiles per row; unused tiles of the last row are zeros. One
    channel is repeated to three; 3 or 4 channels are kept. Raises ValueError otherwise.
    """
    count, height, width, channels = batch.shape
    if channels not in (1, 3, 4):
        raise ValueError(f"array: a batch of images has 1, 3 or 4 channels, got {channels}")
    if count == 0:
        raise ValueError("array: empty batch of images")
    columns = min(count, columns)
    rows = -(-count // columns)
    out_channels = 3 if channels == 1 else channels
    canvas = np.zeros((rows * height, columns * width, out_channels), dtype=batch.dtype)
    # tiles[r, c] is a view of the canvas cell in grid row r, column c.
    tiles = canvas.reshape(rows, height, columns, width, out_channels).swapaxes(1, 2)
    full_rows = count // columns
    # Broadcasting over the channel axis repeats a single channel for free.
    tiles[:full_rows] = batch[: full_rows * columns].reshape(full_rows, columns, height, width, channels)
    rest = count - full_rows * columns
    if rest:
        tiles[full_rows, :rest] = batch[full_rows * columns :]
    return canvas
