"""Bounding boxes and their labels drawn onto an image, as tensorboardX's `add_image_with_boxes`.

tensorboardX draws with PIL: each box is the closed outline (xmin, ymin) -> (xmin, ymax) ->
(xmax, ymax) -> (xmax, ymin) -> (xmin, ymin) in red, 2 pixels wide; its label, if any, is black
text on a red rectangle at the box's bottom-left corner. This module draws the same outline pixel
for pixel (PIL's rule for a 2-pixel line: coordinates truncated to ints, the line and its
neighbour on the left of its direction of travel). The daemon has no PIL, so labels use a built-in
5 x 7 bitmap font: their glyphs, and so the size of the red rectangle behind them, differ from
PIL's default font.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["GLYPH_HEIGHT", "GLYPH_WIDTH", "draw_boxes", "label_box", "text_mask"]

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7
_ADVANCE = GLYPH_WIDTH + 1  # one blank column between glyphs
_LINE_WIDTH = 2
#: The colours by number of channels: gray + alpha (PIL's luminance of red), RGB, RGBA.
_RED = {2: (76, 255), 3: (255, 0, 0), 4: (255, 0, 0, 255)}
_BLACK = {2: (0, 255), 3: (0, 0, 0), 4: (0, 0, 0, 255)}
#: Coordinates are clamped here before use: far outside any image, far inside int64.
_FAR = 1 << 40

# Printable ASCII, " " to "~", then the glyph for every other character (a hollow box): 16 glyphs
# a row, each 5 columns wide, "#" ink, "." background.
_GLYPH_ART = """
..... ..#.. .#.#. .#.#. ..#.. ##... .##.. ..#.. ...#. .#... ..... ..... ..... ..... ..... .....
..... ..#.. .#.#. .#.#. .#### ##..# #..#. ..#.. ..#.. ..#.. ..#.. ..#.. ..... ..... ..... ....#
..... ..#.. .#.#. ##### #.#.. ...#. #.#.. ..#.. .#... ...#. #.#.# ..#.. ..... ..... ..... ...#.
..... ..#.. ..... .#.#. .###. ..#.. .#... ..... .#... ...#. .###. ##### ..... ##### ..... ..#..
..... ..#.. ..... ##### ..#.# .#... #.#.# ..... .#... ...#. #.#.# ..#.. .##.. ..... ..... .#...
..... ..... ..... .#.#. ####. #..## #..#. ..... ..#.. ..#.. ..#.. ..#.. ..#.. ..... .##.. #....
..... ..#.. ..... .#.#. ..#.. ...## .##.# ..... ...#. .#... ..... ..... .#... ..... .##.. .....
.###. ..#.. .###. ##### ...#. ##### ..##. ##### .###. .###. ..... ..... ...#. ..... .#... .###.
#...# .##.. #...# ...#. ..##. #.... .#... ....# #...# #...# .##.. .##.. ..#.. ..... ..#.. #...#
#..## ..#.. ....# ..#.. .#.#. ####. #.... ...#. #...# #...# .##.. .##.. .#... ##### ...#. ....#
#.#.# ..#.. ...#. ...#. #..#. ....# ####. ..#.. .###. .#### ..... ..... #.... ..... ....# ...#.
##..# ..#.. ..#.. ....# ##### ....# #...# .#... #...# ....# .##.. .##.. .#... ##### ...#. ..#..
#...# ..#.. .#... #...# ...#. #...# #...# .#... #...# ...#. .##.. ..#.. ..#.. ..... ..#.. .....
.###. .###. ##### .###. ...#. .###. .###. .#... .###. .##.. ..... .#... ...#. ..... .#... ..#..
.###. .###. ####. .###. ###.. ##### ##### .###. #...# .###. ..### #...# #.... #...# #...# .###.
#...# #...# #...# #...# #..#. #.... #.... #...# #...# ..#.. ...#. #..#. #.... ##.## #...# #...#
....# #...# #...# #.... #...# #.... #.... #.... #...# ..#.. ...#. #.#.. #.... #.#.# ##..# #...#
.##.# ##### ####. #.... #...# ####. ####. #.### ##### ..#.. ...#. ##... #.... #.#.# #.#.# #...#
#.#.# #...# #...# #.... #...# #.... #.... #...# #...# ..#.. ...#. #.#.. #.... #...# #..## #...#
#.#.# #...# #...# #...# #..#. #.... #.... #...# #...# ..#.. #..#. #..#. #.... #...# #...# #...#
.###. #...# ####. .###. ###.. ##### #.... .#### #...# .###. .##.. #...# ##### #...# #...# .###.
####. .###. ####. .#### ##### #...# #...# #...# #...# #...# ##### .###. ..... .###. ..#.. .....
#...# #...# #...# #.... ..#.. #...# #...# #...# #...# #...# ....# .#... #.... ...#. .#.#. .....
#...# #...# #...# #.... ..#.. #...# #...# #...# .#.#. #...# ...#. .#... .#... ...#. #...# .....
####. #...# ####. .###. ..#.. #...# #...# #.#.# ..#.. .#.#. ..#.. .#... ..#.. ...#. ..... .....
#.... #.#.# #.#.. ....# ..#.. #...# #...# #.#.# .#.#. ..#.. .#... .#... ...#. ...#. ..... .....
#.... #..#. #..#. ....# ..#.. #...# .#.#. #.#.# #...# ..#.. #.... .#... ....# ...#. ..... .....
#.... .##.# #...# ####. ..#.. .###. ..#.. .#.#. #...# ..#.. ##### .###. ..... .###. ..... #####
.#... ..... #.... ..... ....# ..... ..##. ..... #.... ..#.. ...#. #.... .##.. ..... ..... .....
..#.. ..... #.... ..... ....# ..... .#..# .#### #.... ..... ..... #.... ..#.. ..... ..... .....
...#. .###. #.##. .###. .##.# .###. .#... #...# #.##. .##.. ..##. #..#. ..#.. ##.#. #.##. .###.
..... ....# ##..# #.... #..## #...# ###.. #...# ##..# ..#.. ...#. #.#.. ..#.. #.#.# ##..# #...#
..... .#### #...# #.... #...# ##### .#... .#### #...# ..#.. ...#. ##... ..#.. #.#.# #...# #...#
..... #...# #...# #...# #...# #.... .#... ....# #...# ..#.. #..#. #.#.. ..#.. #...# #...# #...#
..... .#### ####. .###. .#### .###. .#... .###. #...# .###. .##.. #..#. .###. #...# #...# .###.
..... ..... ..... ..... .#... ..... ..... ..... ..... ..... ..... ...#. ..#.. .#... ..... #####
..... ..... ..... ..... .#... ..... ..... ..... ..... ..... ..... ..#.. ..#.. ..#.. ..... #...#
####. .##.# #.##. .###. ###.. #...# #...# #...# #...# #...# ##### ..#.. ..#.. ..#.. .#... #...#
#...# #..## ##..# #.... .#... #...# #...# #...# .#.#. #...# ...#. .#... ..#.. ...#. #.#.# #...#
####. .#### #.... .###. .#... #...# #...# #.#.# ..#.. .#### ..#.. ..#.. ..#.. ..#.. ...#. #...#
#.... ....# #.... ....# .#..# #..## .#.#. #.#.# .#.#. ....# .#... ..#.. ..#.. ..#.. ..... #...#
#.... ....# #.... ####. ..##. .##.# ..#.. .#.#. #...# .###. ##### ...#. ..#.. .#... ..... #####
"""


def _parse_glyphs(art: str) -> np.ndarray:
    rows = art.strip("\n").split("\n")
    glyphs: list[list[list[bool]]] = []
    for block in range(0, len(rows), GLYPH_HEIGHT):
        lines = [line.split(" ") for line in rows[block : block + GLYPH_HEIGHT]]
        glyphs.extend([[pixel == "#" for pixel in line[column]] for line in lines] for column in range(len(lines[0])))
    return np.array(glyphs, dtype=bool)


_GLYPHS = _parse_glyphs(_GLYPH_ART)
_FIRST = 0x20
_UNKNOWN = len(_GLYPHS) - 1


def text_mask(text: str) -> np.ndarray:
    """The ink of `text` in the built-in font: a bool array GLYPH_HEIGHT x (6 * len(text) - 1)."""
    codes = np.array([ord(char) - _FIRST for char in text], dtype=np.int64)
    codes[(codes < 0) | (codes >= _UNKNOWN)] = _UNKNOWN
    cells = np.zeros((len(text), GLYPH_HEIGHT, _ADVANCE), dtype=bool)
    cells[:, :, :GLYPH_WIDTH] = _GLYPHS[codes]
    return cells.transpose(1, 0, 2).reshape(GLYPH_HEIGHT, -1)[:, :-1]


def label_box(left: float, bottom: float, text: str) -> tuple[int, int, int, int]:
    """The red rectangle behind a label, (x0, y0, x1, y1) inclusive, laid out as tensorboardX
    lays out its text box: as wide as the text, a margin of 5% of its height above and below."""
    width, height = _ADVANCE * len(text) - 1, GLYPH_HEIGHT
    margin = math.ceil(0.05 * height)
    return (
        _coordinate(left),
        _coordinate(bottom - height - 2 * margin),
        _coordinate(left + width),
        _coordinate(bottom),
    )


def _fill(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, color: np.ndarray) -> None:
    """Sets the pixels of the inclusive rectangle (x0, y0)-(x1, y1) that lie in the image."""
    height, width = image.shape[:2]
    x0, x1 = max(min(x0, x1), 0), min(max(x0, x1), width - 1)
    y0, y1 = max(min(y0, y1), 0), min(max(y0, y1), height - 1)
    if x0 <= x1 and y0 <= y1:
        image[y0 : y1 + 1, x0 : x1 + 1] = color


def _line(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, color: np.ndarray) -> None:
    """A 2-pixel-wide axis-aligned line as PIL draws it: the pixels from (x0, y0) to (x1, y1) and
    the row or column beside them (right of a line going down, left of one going up, below one
    going right, above one going left); one pixel when both ends are the same."""
    if x0 == x1 and y0 == y1:
        _fill(image, x0, y0, x0, y0, color)
    elif x0 == x1:
        side = 1 if y1 > y0 else -1
        _fill(image, x0, y0, x0 + side * (_LINE_WIDTH - 1), y1, color)
    else:
        side = 1 if x1 > x0 else -1
        _fill(image, x0, y0, x1, y0 + side * (_LINE_WIDTH - 1), color)


def _coordinate(value: float) -> int:
    """C's (int) cast of a coordinate, as PIL applies it, clamped to a range no image reaches."""
    return int(min(max(value, -_FAR), _FAR))


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: Sequence[str | None] | None = None) -> np.ndarray:
    """Draws each box (a row xmin, ymin, xmax, ymax of `boxes`, N x 4) and its label onto `image`
    (uint8 H x W x C, C = 2, 3 or 4), in place; returns the image.

    Raises ValueError for another shape, or coordinates that are not finite.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in _RED:
        raise ValueError(f"image: expected uint8 H x W x C with C in 2..4, got {image.dtype} {image.shape}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected shape (N, 4), got {boxes.shape}")
    corners = np.asarray(boxes, dtype=np.float64)
    if not np.isfinite(corners).all():
        raise ValueError("boxes: coordinates must be finite")
    if labels is not None and len(labels) != len(corners):
        raise ValueError(f"labels: {len(labels)} labels for {len(corners)} boxes")
    channels = image.shape[2]
    red, black = np.array(_RED[channels], np.uint8), np.array(_BLACK[channels], np.uint8)
    for index, (xmin, ymin, xmax, ymax) in enumerate(corners.tolist()):
        left, top, right, bottom = (_coordinate(v) for v in (xmin, ymin, xmax, ymax))
        outline = [(left, top), (left, bottom), (right, bottom), (right, top), (left, top)]
        for (x0, y0), (x1, y1) in itertools.pairwise(outline):
            _line(image, x0, y0, x1, y1, red)
        text = labels[index] if labels is not None else None
        if text:
            _draw_label(image, xmin, ymax, text, red, black)
    return image


def _draw_label(image: np.ndarray, left: float, bottom: float, text: str, red: np.ndarray, black: np.ndarray) -> None:
    """The red rectangle, then the text inside it (clipped to it, and to the image)."""
    x0, y0, x1, y1 = label_box(left, bottom, text)
    _fill(image, x0, y0, x1, y1, red)
    margin = math.ceil(0.05 * GLYPH_HEIGHT)
    mask = text_mask(text)
    origin_x, origin_y = x0 + margin, y0 + margin
    height, width = image.shape[:2]
    # Mask rows and columns that land inside both the rectangle and the image.
    top, left_edge = max(0, -origin_y), max(0, -origin_x)
    bottom_edge = min(mask.shape[0], height - origin_y, y1 + 1 - origin_y)
    right_edge = min(mask.shape[1], width - origin_x, x1 + 1 - origin_x)
    if top < bottom_edge and left_edge < right_edge:
        region = image[origin_y + top : origin_y + bottom_edge, origin_x + left_edge : origin_x + right_edge]
        region[mask[top:bottom_edge, left_edge:right_edge]] = black
