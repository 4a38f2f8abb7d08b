"""Boxes, labels and Lanczos resizing in the daemon, against tensorboardX's PIL drawing and PIL's resize.

Labels use the daemon's bitmap font, so the pixels a label may cover (ours or PIL's) are left out
of the comparison; every other pixel must be equal.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageFont
from tensorboardX import summary as tbx

from logger_daemon import draw, resample

RNG = np.random.default_rng(20240615)


def _pil_label_areas(left: float, bottom: float, text: str) -> list[tuple[int, int, int, int]]:
    """Where tensorboardX's label may differ from ours: its red rectangle and its text's bounding
    box (one pixel wider: PIL places text at fractional positions)."""
    font = ImageFont.load_default()
    x0, y0, x1, y1 = font.getbbox(text)
    width, height = x1 - x0, y1 - y0
    margin = math.ceil(0.05 * height)
    x, y = left + margin, bottom - height - margin
    rectangle = (int(left), int(bottom - height - 2 * margin), int(left + width), int(bottom))
    glyphs = (math.floor(x + x0) - 1, math.floor(y + y0) - 1, math.ceil(x + x1) + 1, math.ceil(y + y1) + 1)
    return [rectangle, glyphs]


def outside_labels(shape: tuple[int, ...], boxes: np.ndarray, labels: list[str] | None) -> np.ndarray:
    """The pixels no label can touch, ours or tensorboardX's."""
    keep = np.ones(shape[:2], bool)
    for (left, _, _, bottom), text in zip(boxes.tolist(), labels or []):
        if text:
            for x0, y0, x1, y1 in [*_pil_label_areas(left, bottom, text), draw.label_box(left, bottom, text)]:
                keep[max(y0, 0) : max(y1 + 1, 0), max(x0, 0) : max(x1 + 1, 0)] = False
    return keep


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("integral", [True, False], ids=["int-boxes", "float-boxes"])
def test_boxes_are_drawn_pixel_for_pixel_as_tensorboardx(channels, integral):
    for _ in range(80):
        height, width = RNG.integers(1, 40, 2)
        image = RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)
        corners = RNG.uniform(-5.9, 45.9, (int(RNG.integers(0, 5)), 4))  # reversed, degenerate, outside
        boxes = np.trunc(corners) if integral else corners
        reference = np.asarray(tbx.draw_boxes(Image.fromarray(image.copy()), boxes))
        np.testing.assert_array_equal(draw.draw_boxes(image.copy(), boxes), reference, err_msg=str(boxes))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_labels_change_only_the_label_area(channels):
    texts = ["cat", "Dog 2", "", "ünï", "x" * 10, "gjpqy"]
    for _ in range(60):
        height, width = RNG.integers(1, 60, 2)
        image = RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)
        boxes = RNG.uniform(-5.9, 65.9, (int(RNG.integers(1, 4)), 4))
        labels = [str(RNG.choice(texts)) for _ in boxes]
        reference = np.asarray(tbx.draw_boxes(Image.fromarray(image.copy()), boxes, labels))
        ours = draw.draw_boxes(image.copy(), boxes, labels)
        keep = outside_labels(image.shape, boxes, labels)
        np.testing.assert_array_equal(ours[keep], reference[keep], err_msg=f"{boxes} {labels}")


def test_a_label_is_black_text_on_red_at_the_boxs_bottom_left_corner():
    image = np.full((30, 60, 3), 200, np.uint8)
    draw.draw_boxes(image, np.array([[3, 3, 55, 25]]), ["Hi"])
    x0, y0, x1, y1 = draw.label_box(3, 25, "Hi")
    assert (x0, y1) == (3, 25) and (x1 - x0, y1 - y0) == (11, 9)
    label = image[y0 : y1 + 1, x0 : x1 + 1]
    ink = (label == 0).all(axis=2)
    np.testing.assert_array_equal(ink[1:8, 1:12], draw.text_mask("Hi"))
    assert (label[~ink] == [255, 0, 0]).all()


def test_the_font_has_a_glyph_for_printable_ascii_and_a_box_for_the_rest():
    for char in map(chr, range(0x21, 0x7F)):
        assert draw.text_mask(char).any(), repr(char)
    assert not draw.text_mask(" ").any()
    np.testing.assert_array_equal(draw.text_mask("é"), draw.text_mask("\x7f"))
    assert draw.text_mask("ab").shape == (draw.GLYPH_HEIGHT, 2 * draw.GLYPH_WIDTH + 1)


def test_boxes_refuse_bad_input():
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="boxes"):
        draw.draw_boxes(image, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        draw.draw_boxes(image, np.array([[0, 0, np.nan, 1]]))
    with pytest.raises(ValueError, match="labels"):
        draw.draw_boxes(image, np.zeros((2, 4)), ["one"])
    with pytest.raises(ValueError, match="image"):
        draw.draw_boxes(np.zeros((4, 4, 1), np.uint8), np.zeros((0, 4)))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_lanczos_resize_equals_pils(channels):
    for _ in range(60):
        height, width = (int(n) for n in RNG.integers(1, 50, 2))
        scale = float(RNG.choice([0.1, 0.3, 0.5, 0.77, 1.0, 1.1, 1.5, 2.0, 3.3]))
        size = (int(width * scale), int(height * scale))
        if min(size) < 1:
            continue
        image = RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)
        if channels != 3:
            image[..., -1] = RNG.choice([0, 128, 255, 7], (height, width))  # premultiplied alpha
        reference = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
        np.testing.assert_array_equal(resample.lanczos_resize(image, *size), reference, err_msg=f"{image.shape} {size}")


def test_lanczos_resize_keeps_an_image_of_the_same_size():
    image = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    assert resample.lanczos_resize(image, 6, 5) is image
    with pytest.raises(ValueError):
        resample.lanczos_resize(image, 0, 5)
