"""The projector's sprite: one square thumbnail per data point, tiled row by row into a square
PNG, laid out as tensorboardX's `make_sprite` lays it out."""

from __future__ import annotations

import math

import numpy as np

from logger_daemon.png import encode_png

__all__ = ["sprite_pixels", "sprite_png"]

#: The largest sprite TensorBoard's projector loads, in pixels a side.
MAX_SPRITE_SIZE = 8192
_CHUNK_VALUES = 1 << 20


def sprite_pixels(images: np.ndarray) -> np.ndarray:
    """The sprite of `images` (N x C x H x W, C 1 or 3, H == W) as uint8 RGB pixels, side x side.

    As tensorboardX: `ceil(sqrt(N * H * W) / W)` thumbnails a row (at most N), rows from the top,
    values scaled by 255 in float64, clipped to [0, 255] and truncated; one channel is repeated to
    three. The rows below the last row of thumbnails are black (tensorboardX leaves them
    uninitialised).
    """
    if images.ndim != 4:
        raise ValueError(f"label_img: expected N x C x H x W, got shape {images.shape}")
    count, channels, height, width = images.shape
    if count == 0 or height != width or height == 0:
        raise ValueError(f"label_img: expected a non-empty batch of square images, got shape {images.shape}")
    if channels not in (1, 3):
        raise ValueError(f"label_img: expected 1 or 3 channels, got {channels}")
    columns = min(count, math.ceil((count * height * width) ** 0.5 / width))
    rows = math.ceil(count / columns)
    side = columns * width
    if side > MAX_SPRITE_SIZE:
        raise ValueError(f"label_img: a sprite of {side} pixels a side is larger than {MAX_SPRITE_SIZE}")
    # N x C x H x W -> (rows x columns) thumbnails, each H x W x C, then one image of them.
    padded = np.zeros((rows * columns, height, width, channels), np.uint8)
    chunk = max(1, _CHUNK_VALUES // (channels * height * width))  # float64 copies of a few MiB at a time
    for start in range(0, count, chunk):
        part = images[start : start + chunk].astype(np.float64)
        part *= 255
        with np.errstate(invalid="ignore"):  # NaN becomes whatever the cast gives, as in tensorboardX
            padded[start : start + len(part)] = np.clip(part, 0, 255, out=part).astype(np.uint8).transpose(0, 2, 3, 1)
    grid = padded.reshape(rows, columns, height, width, channels).transpose(0, 2, 1, 3, 4)
    sprite = np.zeros((side, side, 3), np.uint8)
    sprite[: rows * height] = grid.reshape(rows * height, side, channels)  # one channel broadcasts to three
    return sprite


def sprite_png(images: np.ndarray) -> bytes:
    """`sprite_pixels(images)` as a PNG file."""
    return encode_png(sprite_pixels(images))
