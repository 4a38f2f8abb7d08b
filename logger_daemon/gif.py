"""An animated GIF (GIF89a) encoder on numpy alone: palettes, LZW, looping forever.

Colours: when every frame's colours together number at most 256, one global colour table holds
them all and the GIF is exact. Otherwise each frame gets its own (local) table: exact when that
frame has at most 256 colours, else 256 colours chosen by median cut. Median cut starts from the
frame's distinct colours, weighted by how many pixels have each; it splits the box of colours with
the most pixels (among those holding more than one colour) along its widest channel, just after
the colour that holds its median pixel, until there are 256 boxes; each box becomes the
pixel-weighted mean of its colours, and each pixel takes the colour of its box. No dithering: a
frame's flat areas stay flat.

Frames are full-size, drawn over each other (disposal "do not dispose", no transparency), each
shown for `delay_cs` hundredths of a second; the NETSCAPE2.0 extension makes the GIF loop forever.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["MAX_COLORS", "encode_gif", "lzw_encode", "median_cut", "palette_indices"]

MAX_COLORS = 256
_MAX_CODE = 4095  # GIF codes are at most 12 bits
_LOOP_FOREVER = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
_TRAILER = b"\x3b"
_DISPOSAL_NONE = 1 << 2  # "do not dispose": the next frame is drawn over this one


def encode_gif(frames: np.ndarray, delay_cs: int) -> bytes:
    """A looping GIF of `frames`, uint8 RGB shaped (frames, height, width, 3).

    Each frame shows for `delay_cs` hundredths of a second (1 to 65535). Raises ValueError for
    another dtype or shape, no frames, or a size beyond GIF's 65535 x 65535.
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames: expected uint8 of shape (T, H, W, 3), got {frames.dtype} {frames.shape}")
    count, height, width, _ = frames.shape
    if count == 0 or not (0 < height < 2**16 and 0 < width < 2**16):
        raise ValueError(f"frames: expected at least one frame of 1..65535 pixels a side, got {frames.shape}")
    if not 0 < delay_cs < 2**16:
        raise ValueError(f"delay_cs: expected 1..65535 hundredths of a second, got {delay_cs}")

    keys = _color_keys(frames)
    colors, inverse = np.unique(keys, return_inverse=True)
    parts = []
    if colors.size <= MAX_COLORS:
        table = _key_to_rgb(colors)
        indices = inverse.reshape(keys.shape).astype(np.uint8)
        parts.append(_screen(width, height, table))
        parts.append(_LOOP_FOREVER)
        parts.extend(_frame(indices[index], delay_cs, None, len(table)) for index in range(count))
    else:
        parts.append(_screen(width, height, None))
        parts.append(_LOOP_FOREVER)
        for index in range(count):
            table, frame_indices = palette_indices(keys[index])
            parts.append(_frame(frame_indices, delay_cs, table, len(table)))
    parts.append(_TRAILER)
    return b"".join(parts)


def palette_indices(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A colour table (n x 3 uint8, n <= 256) and each pixel's index in it (uint8, the shape of
    `keys`), for one frame's colours packed as 0xRRGGBB. Exact when they fit, else median cut."""
    colors, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(keys.shape)
    if colors.size <= MAX_COLORS:
        return _key_to_rgb(colors), inverse.astype(np.uint8)
    table, box_of_color = median_cut(_key_to_rgb(colors), counts, MAX_COLORS)
    return table, box_of_color[inverse]


def median_cut(colors: np.ndarray, counts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Median cut of distinct `colors` (n x 3 uint8) weighted by pixel `counts`, into at most `size`
    boxes. Returns the table (the weighted mean of each box, rounded) and the box of each colour."""
    values = colors.astype(np.int64)
    boxes = [np.arange(len(colors))]
    # A box's pixel count, or -1 for a box of one colour (nothing to split).
    weights = [int(counts.sum()) if len(colors) > 1 else -1]
    while len(boxes) < size:
        chosen = max(range(len(boxes)), key=weights.__getitem__)
        if weights[chosen] < 0:
            break  # every box is one colour
        box = boxes[chosen]
        members = values[box]
        channel = int(np.argmax(members.max(axis=0) - members.min(axis=0)))
        order = box[np.argsort(members[:, channel], kind="stable")]
        cumulative = np.cumsum(counts[order])
        cut = int(np.searchsorted(cumulative, cumulative[-1] / 2.0)) + 1  # the median colour goes left
        cut = min(max(cut, 1), len(order) - 1)  # both halves keep at least one colour
        halves = [order[:cut], order[cut:]]
        boxes[chosen : chosen + 1] = halves
        weights[chosen : chosen + 1] = [int(cumulative[cut - 1]) if cut > 1 else -1] + [
            int(cumulative[-1] - cumulative[cut - 1]) if len(order) - cut > 1 else -1
        ]
    table = np.empty((len(boxes), 3), np.uint8)
    box_of_color = np.empty(len(colors), np.uint8)
    for index, box in enumerate(boxes):
        weight = counts[box].astype(np.float64)
        table[index] = np.rint(weight @ values[box] / weight.sum())
        box_of_color[box] = index
    return table, box_of_color


def lzw_encode(indices: bytes, min_code_size: int) -> bytes:
    """GIF's variable-width LZW of palette `indices` (each < 2**min_code_size), packed LSB first.

    Starts with a clear code, emits a clear code whenever the 12-bit code table is full, ends with
    the end-of-information code.
    """
    clear = 1 << min_code_size
    end = clear + 1
    first_free = end + 1
    codes = [clear]
    widths = [min_code_size + 1]
    emit_code = codes.append
    emit_width = widths.append
    table: dict[int, int] = {}
    next_code = first_free
    width = min_code_size + 1
    limit = 1 << width
    data = iter(indices)
    prefix = next(data, None)
    if prefix is None:
        return _pack_bits([clear, end], [width, width])
    get = table.get
    for byte in data:
        key = (prefix << 8) | byte
        code = get(key)
        if code is not None:
            prefix = code
            continue
        emit_code(prefix)
        emit_width(width)
        # The decoder adds its entries one code behind; it widens once the next code it will add
        # no longer fits, which is when this side's next free code reaches the limit.
        if next_code >= limit and width < 12:
            width += 1
            limit <<= 1
        if next_code <= _MAX_CODE:
            table[key] = next_code
            next_code += 1
        if next_code > _MAX_CODE:
            emit_code(clear)
            emit_width(width)
            table.clear()
            next_code = first_free
            width = min_code_size + 1
            limit = 1 << width
        prefix = byte
    emit_code(prefix)
    emit_width(width)
    if next_code >= limit and width < 12:
        width += 1
    emit_code(end)
    emit_width(width)
    return _pack_bits(codes, widths)


def _pack_bits(codes: list[int], widths: list[int]) -> bytes:
    """The codes' bits, each code least significant bit first, one after the other."""
    code_array = np.asarray(codes, dtype=np.uint16)
    width_array = np.asarray(widths, dtype=np.int64)
    bits = (code_array[:, None] >> np.arange(12, dtype=np.uint16)) & 1
    kept = np.arange(12) < width_array[:, None]
    return np.packbits(bits[kept].astype(np.uint8), bitorder="little").tobytes()


def _color_keys(frames: np.ndarray) -> np.ndarray:
    """Each pixel's colour as one int, 0xRRGGBB (shape T x H x W)."""
    wide = frames.astype(np.uint32)
    return (wide[..., 0] << 16) | (wide[..., 1] << 8) | wide[..., 2]


def _key_to_rgb(keys: np.ndarray) -> np.ndarray:
    return np.stack([(keys >> 16) & 0xFF, (keys >> 8) & 0xFF, keys & 0xFF], axis=1).astype(np.uint8)


def _table_bits(entries: int) -> int:
    """The colour table's size as GIF stores it: 2**(bits + 1) entries, at least 2."""
    return max(1, (entries - 1).bit_length()) - 1


def _table_bytes(table: np.ndarray) -> bytes:
    padded = np.zeros((2 ** (_table_bits(len(table)) + 1), 3), np.uint8)
    padded[: len(table)] = table
    return padded.tobytes()


def _screen(width: int, height: int, table: np.ndarray | None) -> bytes:
    """Header and logical screen descriptor, with the global colour table if there is one."""
    flags = 0 if table is None else 0x80 | 0x70 | _table_bits(len(table))
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, flags, 0, 0)
    return screen if table is None else screen + _table_bytes(table)


def _frame(indices: np.ndarray, delay_cs: int, local_table: np.ndarray | None, entries: int) -> bytes:
    """Graphic control extension, image descriptor (with a local table if given) and image data."""
    height, width = indices.shape
    control = struct.pack("<BBBBHBB", 0x21, 0xF9, 4, _DISPOSAL_NONE, delay_cs, 0, 0)
    flags = 0 if local_table is None else 0x80 | _table_bits(len(local_table))
    descriptor = struct.pack("<BHHHHB", 0x2C, 0, 0, width, height, flags)
    if local_table is not None:
        descriptor += _table_bytes(local_table)
    min_code_size = max(2, _table_bits(entries) + 1)
    data = lzw_encode(np.ascontiguousarray(indices).tobytes(), min_code_size)
    blocks = [bytes((len(chunk),)) + chunk for chunk in (data[i : i + 255] for i in range(0, len(data), 255))]
    return control + descriptor + bytes((min_code_size,)) + b"".join(blocks) + b"\x00"
