"""The daemon's GIF encoder, its GIFs decoded by PIL: frames, delays, looping, palettes, LZW."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from logger_daemon import gif

RNG = np.random.default_rng(20240614)


def decode_gif(data: bytes) -> tuple[np.ndarray, list[int], dict]:
    """Every frame as RGB, each frame's duration (ms), and the first frame's info."""
    with Image.open(io.BytesIO(data)) as animation:
        assert animation.format == "GIF"
        info = dict(animation.info)
        frames, durations = [], []
        for index in range(animation.n_frames):
            animation.seek(index)
            frames.append(np.asarray(animation.convert("RGB")))
            durations.append(animation.info["duration"])
    return np.stack(frames), durations, info


@pytest.mark.parametrize(
    "frames",
    [
        RNG.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8),  # 105 colours: one global table
        np.repeat(RNG.integers(0, 2, (4, 30, 40, 1), dtype=np.uint8) * 255, 3, axis=3),  # 2 colours
        RNG.integers(0, 4, (2, 100, 100, 3), dtype=np.uint8) * 60,  # noisy: the code table fills up
        np.zeros((1, 1, 1, 3), np.uint8),
        np.full((2, 300, 300, 3), 7, np.uint8),  # long runs: long codes
        RNG.integers(0, 256, (16, 64, 64, 1), dtype=np.uint8).repeat(3, axis=3),  # 256 grays
    ],
    ids=["small", "two-colours", "noisy", "one-pixel", "flat", "gray"],
)
def test_a_gif_whose_colours_fit_is_exact(frames):
    decoded, durations, info = decode_gif(gif.encode_gif(frames, 25))
    np.testing.assert_array_equal(decoded, frames)
    assert durations == [250] * len(frames)
    assert info["version"] == b"GIF89a" and info["loop"] == 0  # loops forever


def test_frames_that_fit_on_their_own_are_exact_with_local_tables():
    frames = np.stack([np.full((8, 8, 3), value, np.uint8) for value in range(0, 250, 50)])
    frames[:, 0, :, 0] = np.arange(8) * 30  # 5 x 9 colours in all, at most 9 per frame
    frames = np.concatenate([frames] * 60, axis=1)[:, :, :, :]  # same colours, more pixels
    frames[1:, 1] = RNG.integers(0, 256, (frames.shape[0] - 1, frames.shape[2], 3), dtype=np.uint8)
    decoded, _, _ = decode_gif(gif.encode_gif(frames, 4))
    np.testing.assert_array_equal(decoded, frames)


def test_a_frame_of_many_colours_is_reduced_by_median_cut():
    axis = np.linspace(0, 255, 200)
    red, green = np.meshgrid(axis, axis[::-1])
    frame = np.stack([red, green, np.full_like(red, 128)], axis=-1).astype(np.uint8)  # 40 000 colours
    frames = np.stack([frame, 255 - frame])
    decoded, _, _ = decode_gif(gif.encode_gif(frames, 10))
    error = np.abs(decoded.astype(int) - frames)
    assert error.max() <= 12 and error.mean() < 4
    assert all(len(np.unique(d.reshape(-1, 3), axis=0)) <= 256 for d in decoded)


def test_median_cut_keeps_distinct_colours_apart_and_weights_the_means():
    colors = np.array([[0, 0, 0], [10, 0, 0], [200, 0, 0], [210, 0, 0]], np.uint8)
    table, box = gif.median_cut(colors, np.array([1, 3, 1, 1]), 2)
    assert box.tolist() == [0, 0, 1, 1]
    assert table.tolist() == [[8, 0, 0], [205, 0, 0]]  # (0 + 3 * 10) / 4 = 7.5, rounded to even


def test_lzw_round_trips_through_pils_decoder_past_many_table_resets():
    indices = RNG.integers(0, 256, (200, 250), dtype=np.uint8)  # 50 000 codes: a dozen resets
    frames = np.stack([indices] * 3, axis=-1)[None]  # 256 grays: one global table, index = value
    decoded, _, _ = decode_gif(gif.encode_gif(frames, 1))
    np.testing.assert_array_equal(decoded[0, :, :, 0], indices)


@pytest.mark.parametrize(
    ("frames", "delay"),
    [(np.zeros((0, 2, 2, 3), np.uint8), 1), (np.zeros((1, 2, 2), np.uint8), 1), (np.zeros((1, 2, 2, 3)), 1)]
    + [(np.zeros((1, 2, 2, 3), np.uint8), delay) for delay in (0, 65536)],
)
def test_gif_refuses_what_it_cannot_encode(frames, delay):
    with pytest.raises(ValueError):
        gif.encode_gif(frames, delay)
