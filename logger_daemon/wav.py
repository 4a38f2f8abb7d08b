"""16-bit PCM WAV files from float samples, byte for byte as tensorboardX writes them.

tensorboardX's `audio()` hands its (clipped) samples to soundfile, whose libsndfile (1.2) turns
each float into a 32-bit integer (`rint(x * 2**31)`, saturating) and keeps its top 16 bits (an
arithmetic shift, so a floor); NaN becomes the most negative sample. The file is the canonical
44-byte RIFF header (a 16-byte `fmt ` chunk, PCM) followed by the interleaved samples.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["encode_wav", "to_pcm16"]

_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_PCM = 1
_BITS = 16
_INT32_MIN = -(2.0**31)
_INT32_MAX = 2.0**31 - 1


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Samples of any real dtype, nominally in [-1, 1], as little-endian int16 (libsndfile's rule)."""
    wide = np.asarray(samples, dtype=np.float64) * 2.0**31  # a power of two: exact, no rounding yet
    np.rint(wide, out=wide)
    np.clip(wide, _INT32_MIN, _INT32_MAX, out=wide)
    wide[np.isnan(wide)] = _INT32_MIN
    return (wide.astype(np.int64) >> 16).astype("<i2")


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """A WAV file of `samples`, shaped (frames, channels), 16-bit PCM at `sample_rate` Hz.

    Raises ValueError for another shape or a sample rate that is not a positive int.
    """
    if samples.ndim != 2:
        raise ValueError(f"samples: expected shape (frames, channels), got {samples.shape}")
    if not (isinstance(sample_rate, int) and 0 < sample_rate < 2**31):
        raise ValueError(f"sample_rate: expected a positive int, got {sample_rate!r}")
    channels = samples.shape[1]
    if not 0 < channels < 2**16:
        raise ValueError(f"samples: {channels} channels")
    data = to_pcm16(samples).tobytes()  # row-major (frames, channels): interleaved, as WAV wants
    block = channels * _BITS // 8
    header = _HEADER.pack(
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        channels,
        sample_rate,
        sample_rate * block,
        block,
        _BITS,
        b"data",
        len(data),
    )
    return header + data
