"""Every loss is counted where the user looks, when it happens, and flush() tells the truth:
True only when every record logged before it is on disk.

Faults suite: a real daemon, records counted on disk.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import start_daemon
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logger_client import SummaryWriter
from logger_client._daemon_transport import shutdown_transport

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def scalars(logdir: str, tag: str) -> list[int]:
    accumulator = EventAccumulator(logdir, size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def test_a_flush_after_a_refused_record_returns_false_and_the_next_clean_one_true(daemon, logdir):
    writer = SummaryWriter(logdir)
    writer.add_scalar("loss", 1.0, 10)
    assert writer.flush(timeout=20) is True
    writer.add_scalar("loss", 2.0, 5)  # older than step 10: the daemon refuses it
    assert writer.flush(timeout=20) is False
    assert writer.stats()["records_dropped"] == {"step_out_of_order": 1}  # counted now, not at exit
    writer.add_scalar("loss", 3.0, 11)
    assert writer.flush(timeout=20) is True
    assert writer.close(timeout=20) is True
    assert scalars(logdir, "loss") == [10, 11]
    assert writer.stats()["records_written"] == 2


def test_a_flush_after_the_client_dropped_an_array_returns_false(daemon, logdir, monkeypatch):
    monkeypatch.setenv("LOGGER_MAX_BUFFER_BYTES", str(2**20))
    monkeypatch.setenv("LOGGER_LINGER_S", "30")  # nothing is sent until the flush: the bound is hit
    monkeypatch.setenv("LOGGER_OVERFLOW", "drop")  # past the bound: dropped, not waited for
    writer = SummaryWriter(logdir)
    image = np.zeros((1, 512, 1024), np.uint8)  # 512 KiB: the third one does not fit
    for step in range(3):
        writer.add_image("img", image, step)
    assert writer.stats()["records_dropped"] == {"client_buffer_full": 1}
    assert writer.flush(timeout=20) is False
    writer.add_image("img", image, 3)
    assert writer.flush(timeout=20) is True
    assert writer.close(timeout=20) is True
    accumulator = EventAccumulator(logdir, size_guidance={"images": 0})
    accumulator.Reload()
    logged, dropped = 4, 1
    assert len(accumulator.Images("img")) == logged - dropped


def histogram_steps(logdir: str, tag: str) -> list[int]:
    accumulator = EventAccumulator(logdir, size_guidance={"histograms": 0})
    accumulator.Reload()
    if tag not in accumulator.Tags()["histograms"]:
        return []
    return [event.step for event in accumulator.Histograms(tag)]


def test_an_array_larger_than_the_daemon_takes_is_counted_and_the_rest_arrives(runtime_dir, logdir, monkeypatch):
    """A client allowed larger arrays than its daemon takes in one frame: such an array would break
    the connection each time it was sent, and everything after it would wait behind it."""
    monkeypatch.setenv("LOGGER_MAX_BUFFER_BYTES", str(64 * 2**20))  # the daemon's: frames up to 64 MiB
    with start_daemon(runtime_dir):
        monkeypatch.setenv("LOGGER_MAX_BUFFER_BYTES", str(256 * 2**20))  # the client's
        monkeypatch.setenv("LOGGER_ARENA_BYTES", "0")  # every array goes as a frame
        big = np.zeros(20 * 2**20, np.float32)  # 80 MiB
        writer = SummaryWriter(logdir)
        writer.add_scalar("loss", 0.0, 0)
        writer.add_histogram("big", big, 0)
        writer.add_histogram("small", big[: 2**20], 0)
        for step in range(1, 100):
            writer.add_scalar("loss", float(step), step)
        assert writer.stats()["records_dropped"] == {"message_too_large": 1}  # at the call
        assert writer.flush(timeout=20) is False
        assert writer.flush(timeout=20) is True
        assert writer.close(timeout=20) is True
        assert scalars(logdir, "loss") == list(range(100))
        assert histogram_steps(logdir, "small") == [0]
        assert histogram_steps(logdir, "big") == []

        shutdown_transport(5.0)
        monkeypatch.delenv("LOGGER_ARENA_BYTES")  # in the shared arena it goes as an offset: no frame
        writer = SummaryWriter(logdir)
        writer.add_histogram("big", big, 1)
        assert writer.close(timeout=20) is True
        assert writer.stats()["records_dropped"] == {}
        assert histogram_steps(logdir, "big") == [1]


def test_a_bad_string_is_refused_at_the_call_and_every_other_record_arrives(daemon, logdir):
    writer = SummaryWriter(logdir)
    for step in range(1000):
        writer.add_scalar("good", float(step), step)
    for call in (
        lambda: writer.add_scalar("bad\udcff", 1.0, 0),
        lambda: writer.add_text("notes", "bad\udcff", 0),
        lambda: writer.add_scalars("group", {"bad\udcff": 1.0}, 0),
    ):
        with pytest.raises(ValueError, match="not valid text"):
            call()
    for step in range(1000, 2000):
        writer.add_scalar("good", float(step), step)
    assert writer.close(timeout=20) is True
    assert scalars(logdir, "good") == list(range(2000))
    assert writer.stats()["records_dropped"] == {}
