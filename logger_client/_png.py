"""A small PNG decoder (zlib and numpy only) for the images the reader returns.

It decodes what TensorBoard writers produce: 8-bit gray, gray+alpha, RGB and RGBA, not
interlaced, with any of the five scanline filters. Anything else (palettes, 16-bit, interlacing,
JPEG, GIF) goes to Pillow where it is installed; without it `decode_image` returns None and the
caller keeps the encoded bytes.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["decode_image", "decode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Channels by colour type: gray, RGB, gray+alpha, RGBA.
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


class _Unsupported(Exception):
    """A PNG this decoder leaves to Pillow."""


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit, non-interlaced gray / gray+alpha / RGB / RGBA PNG as a uint8 (H, W, C) array.

    Raises ValueError for bytes that are not such a PNG (or are damaged).
    """
    try:
        return _decode(data)
    except _Unsupported as exc:
        raise ValueError(str(exc)) from None


def _decode(data: bytes) -> np.ndarray:
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG")
    pos = len(_SIGNATURE)
    header = None
    idat = []
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError("a PNG chunk runs past the end of the data")
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack_from(">I", data, pos + 8 + length)[0]:
            raise ValueError(f"bad CRC in PNG chunk {kind!r}")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("a PNG without IHDR")
    width, height, depth, color, compression, filtering, interlace = header
    if depth != 8 or color not in _CHANNELS or compression or filtering or interlace:
        raise _Unsupported(f"PNG bit depth {depth}, colour type {color}, interlace {interlace}")
    channels = _CHANNELS[color]
    stride = width * channels
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != height * (stride + 1):
        raise ValueError(f"PNG data holds {len(raw)} bytes, expected {height * (stride + 1)}")
    lines = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    previous = np.zeros(stride, np.uint8)
    for row in range(height):
        kind = int(lines[row, 0])
        line = lines[row, 1:]
        if kind == 0:
            out[row] = line
        elif kind == 1:  # Sub: a running sum per channel, mod 256
            out[row] = np.cumsum(line.reshape(width, channels), axis=0, dtype=np.uint8).reshape(stride)
        elif kind == 2:  # Up
            np.add(line, previous, out=out[row])
        elif kind in (3, 4):
            out[row] = _sequential(kind, line, previous, channels)
        else:
            raise ValueError(f"unknown PNG filter type {kind}")
        previous = out[row]
    return out.reshape(height, width, channels)


def _sequential(kind: int, line: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """Average (3) and Paeth (4) depend on the byte just decoded to their left: byte by byte."""
    current = line.tolist()
    up = above.tolist()
    if kind == 3:
        for i in range(len(current)):
            left = current[i - bpp] if i >= bpp else 0
            current[i] = (current[i] + ((left + up[i]) >> 1)) & 0xFF
    else:
        for i in range(len(current)):
            if i >= bpp:
                a, c = current[i - bpp], up[i - bpp]
            else:
                a = c = 0
            b = up[i]
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            current[i] = (current[i] + predictor) & 0xFF
    return np.array(current, np.uint8)


def decode_image(data: bytes) -> np.ndarray | None:
    """Encoded image bytes as a uint8 (H, W, C) array: PNGs this module reads itself, anything
    else through Pillow if it is installed; None if neither can."""
    try:
        return _decode(data)
    except _Unsupported:
        pass
    except ValueError:
        if data.startswith(_SIGNATURE):
            return None  # a damaged PNG: Pillow would not do better
    try:
        import io

        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            if picture.mode not in ("L", "LA", "RGB", "RGBA"):  # palettes, 16-bit, CMYK, ...
                alpha = "A" in picture.getbands() or "transparency" in picture.info
                picture = picture.convert("RGBA" if alpha else "RGB")
            pixels = np.asarray(picture)
    except Exception:  # Pillow raises many kinds of errors for bytes it cannot read
        return None
    if pixels.dtype != np.uint8:
        return None
    return pixels[:, :, np.newaxis] if pixels.ndim == 2 else pixels
