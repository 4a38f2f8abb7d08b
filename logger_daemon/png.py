"""A small PNG encoder built on numpy and zlib only (the daemon does not depend on PIL)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["COMPRESSION_LEVEL", "encode_png"]

# Level 1 is several times faster than zlib's default 6, for files only slightly larger;
# the daemon's throughput matters more (docs/history.md has a measurement).
COMPRESSION_LEVEL = 1

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type by number of channels: gray, gray+alpha, RGB, RGBA.
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
# Sub (each byte minus the same channel of the pixel to its left): one numpy
# subtraction, and it shrinks smooth images (gradients, flat areas) by 10-100x.
_FILTER_SUB = 1
_MAX_DIMENSION = 2**31 - 1


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(pixels: np.ndarray, level: int = COMPRESSION_LEVEL) -> bytes:
    """Encode 8-bit pixels as a PNG file.

    ``pixels`` is a uint8 array of shape HxW (grayscale) or HxWxC with C = 1 (grayscale),
    2 (grayscale + alpha), 3 (RGB) or 4 (RGBA). Any memory layout is accepted.
    Raises ValueError for another dtype, shape, or an empty image.
    """
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels: expected dtype uint8, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.ndim != 3 or pixels.shape[2] not in _COLOR_TYPE:
        raise ValueError(f"pixels: expected shape HxW or HxWxC with C in 1..4, got {pixels.shape}")
    height, width, channels = pixels.shape
    if not (0 < height <= _MAX_DIMENSION and 0 < width <= _MAX_DIMENSION):
        raise ValueError(f"pixels: width and height must be in 1..2**31-1, got {pixels.shape}")

    # Each scanline is a filter-type byte followed by the row's filtered bytes; the
    # filter writes straight into that layout, whatever the pixels' strides are.
    row_bytes = width * channels
    scanlines = np.empty((height, row_bytes + 1), dtype=np.uint8)
    scanlines[:, 0] = _FILTER_SUB
    body = np.lib.stride_tricks.as_strided(scanlines[:, 1:], shape=pixels.shape, strides=(row_bytes + 1, channels, 1))
    body[:, 0] = pixels[:, 0]
    np.subtract(pixels[:, 1:], pixels[:, :-1], out=body[:, 1:])  # uint8 wraps mod 256, as PNG wants

    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[channels], 0, 0, 0)
    return b"".join(
        (
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(scanlines.data, level)),
            _chunk(b"IEND", b""),
        )
    )
