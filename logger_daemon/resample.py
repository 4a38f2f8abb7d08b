"""Lanczos resizing of 8-bit images, pixel for pixel as PIL's `Image.resize(size, LANCZOS)`.

tensorboardX's `add_image_with_boxes(..., rescale=r)` resizes with PIL; the daemon has no PIL, so
this follows PIL's integer arithmetic: per output pixel, the Lanczos-3 weights of the input pixels
it covers (widened by the scale when shrinking), normalized, as fixed-point integers of 22
fractional bits; a horizontal pass, then a vertical one, each rounded and clipped to 8 bits.
Images with alpha are resized premultiplied by it, as PIL does ("RGBa", "La").
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["lanczos_resize"]

_SUPPORT = 3.0
_PRECISION_BITS = 32 - 8 - 2


def _lanczos(x: np.ndarray) -> np.ndarray:
    """sinc(x) * sinc(x / 3) on [-3, 3), 0 elsewhere."""
    with np.errstate(invalid="ignore", divide="ignore"):
        pi_x = np.pi * x
        sinc = np.where(x == 0.0, 1.0, np.sin(pi_x) / pi_x)
        third = pi_x / 3.0
        sinc3 = np.where(x == 0.0, 1.0, np.sin(third) / third)
    return np.where((x >= -_SUPPORT) & (x < _SUPPORT), sinc * sinc3, 0.0)


def _coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output pixel, the input indices it reads (clamped, out_size x taps) and their
    fixed-point weights (0 for the taps past its window)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = _SUPPORT * filter_scale
    taps = math.ceil(support) * 2 + 1
    centers = (np.arange(out_size) + 0.5) * scale
    # C's (int) cast truncates towards zero; the window is then clamped to the image.
    starts = np.clip(np.trunc(centers - support + 0.5).astype(np.int64), 0, None)
    stops = np.clip(np.trunc(centers + support + 0.5).astype(np.int64), None, in_size)
    counts = stops - starts
    offsets = np.arange(taps)
    inside = offsets[None, :] < counts[:, None]
    positions = (offsets[None, :] + starts[:, None] - centers[:, None] + 0.5) / filter_scale
    weights = np.where(inside, _lanczos(positions), 0.0)
    totals = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, totals, out=weights, where=totals != 0.0)
    scaled = weights * (1 << _PRECISION_BITS)
    fixed = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)).astype(np.int64)
    indices = np.minimum(starts[:, None] + offsets[None, :], in_size - 1)
    return indices, fixed


def _pass(image: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """Resamples uint8 `image` (H x W x C) along `axis` (0: rows, 1: columns) to `out_size`."""
    indices, weights = _coefficients(image.shape[axis], out_size)
    shape = list(image.shape)
    shape[axis] = out_size
    total = np.full(shape, 1 << (_PRECISION_BITS - 1), dtype=np.int64)
    # One tap at a time: memory stays that of the output, however wide the filter.
    for tap in range(indices.shape[1]):
        if axis == 0:
            total += image[indices[:, tap]].astype(np.int64) * weights[:, tap, None, None]
        else:
            total += image[:, indices[:, tap]].astype(np.int64) * weights[None, :, tap, None]
    return np.clip(total >> _PRECISION_BITS, 0, 255).astype(np.uint8)


def _premultiply(image: np.ndarray) -> np.ndarray:
    """Colour channels times alpha / 255, rounded as PIL's MULDIV255."""
    out = image.copy()
    alpha = image[..., -1:].astype(np.uint32)
    product = image[..., :-1].astype(np.uint32) * alpha + 128
    out[..., :-1] = ((product >> 8) + product) >> 8
    return out


def _unpremultiply(image: np.ndarray) -> np.ndarray:
    """Colour channels times 255 / alpha (integer division, clipped), as PIL; alpha 0 and 255 kept."""
    out = image.copy()
    alpha = image[..., -1:].astype(np.uint32)
    partial = (alpha != 0) & (alpha != 255)
    divided = np.minimum(image[..., :-1].astype(np.uint32) * 255 // np.maximum(alpha, 1), 255)
    out[..., :-1] = np.where(partial, divided, image[..., :-1])
    return out


def lanczos_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` (uint8, H x W x C, C = 2 or 4 meaning the last channel is alpha) resized to
    `height` x `width` as PIL's LANCZOS resize. The same size returns the image unchanged."""
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be at least 1, got {width} x {height}")
    in_height, in_width = image.shape[:2]
    if (in_width, in_height) == (width, height):
        return image
    has_alpha = image.shape[2] in (2, 4)
    work = _premultiply(image) if has_alpha else image
    if width != in_width:
        work = _pass(work, 1, width)
    if height != in_height:
        work = _pass(work, 0, height)
    return _unpremultiply(work) if has_alpha else work
