"""The daemon's WAV encoder against soundfile, with which tensorboardX's audio() writes its WAVs."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from logger_daemon import wav

RNG = np.random.default_rng(20240613)


@pytest.mark.parametrize(
    ("frames", "channels", "dtype", "rate"),
    [(1000, 1, np.float64, 44100), (777, 2, np.float32, 22050), (1, 1, np.float32, 8000), (5, 2, np.float64, 1)],
)
def test_wav_bytes_equal_soundfiles(frames, channels, dtype, rate):
    soundfile = pytest.importorskip("soundfile")
    samples = RNG.uniform(-1.3, 1.3, (frames, channels)).astype(dtype)
    samples.flat[0] = np.nan
    if samples.size > 3:
        samples.flat[1:4] = [np.inf, -np.inf, 1.0]
    reference = io.BytesIO()
    soundfile.write(reference, samples, samplerate=rate, format="wav")
    assert wav.encode_wav(samples, rate) == reference.getvalue()


def test_wav_conversion_is_libsndfiles_rounding():
    # rint(x * 2**31), saturated to int32, then its top 16 bits (a floor): pinned by value.
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 0.5 / 32768, -0.5 / 32768, 1.5 / 32768, np.nan])
    assert wav.to_pcm16(samples).tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768, 0, -1, 1, -32768]


def test_a_wav_reads_back_with_pythons_wave_module():
    samples = RNG.uniform(-1, 1, (300, 2))
    with wave.open(io.BytesIO(wav.encode_wav(samples, 16000))) as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate(), clip.getnframes()) == (2, 2, 16000, 300)
        data = np.frombuffer(clip.readframes(300), "<i2").reshape(300, 2)
    np.testing.assert_array_equal(data, wav.to_pcm16(samples))


@pytest.mark.parametrize(
    ("shape", "rate"), [((10,), 44100), ((10, 2, 1), 44100), ((10, 2), 0), ((10, 2), 44100.0), ((10, 0), 8000)]
)
def test_wav_refuses_bad_shapes_and_rates(shape, rate):
    with pytest.raises(ValueError):
        wav.encode_wav(np.zeros(shape), rate)
