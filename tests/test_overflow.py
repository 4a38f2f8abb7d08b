"""The overflow policy: what an array call does when the process holds `max_buffer_bytes` of arrays
the daemon has not written. In process, on a `Producer` driven as writers and the I/O thread drive
it (no socket); then the writer's argument and its default; then end to end, with a daemon.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import wait_for
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logger_client import SummaryWriter
from logger_client._producer import Batch, Producer
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import DropReason, RecordKind
from logger_client.settings import Settings

FULL = DropReason.CLIENT_BUFFER_FULL.value
LONG_WAIT_S = 60.0  # longer than any test may take: a call that returns did not wait it out


def make(wakes: list[int] | None = None, **settings: object) -> Producer:
    base = Settings(**{"runtime_dir": "/nonexistent", "max_buffer_bytes": 1000, **settings})  # type: ignore[arg-type]
    counter = wakes if wakes is not None else []
    return Producer(base, lambda: counter.append(1))


def histogram(step: int, nbytes: int = 800) -> tuple:
    return (RecordKind.HISTOGRAM, 1, "", "h", step, 1.0, np.zeros(nbytes, np.uint8), {})


def in_thread(call) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def acknowledge_everything(producer: Producer) -> None:
    """What the I/O thread does: drain, send, and release on the daemon's acknowledgement."""
    for batch in producer.drain():
        if isinstance(batch, Batch):
            producer.release(batch.data, batch.array_bytes)


def test_a_call_past_the_bound_waits_for_room_and_keeps_its_array():
    wakes: list[int] = []
    producer = make(wakes)
    producer.submit_array(histogram(0))
    waiting = in_thread(lambda: producer.submit_array(histogram(1), LONG_WAIT_S))
    wait_for(lambda: wakes, message="the waiting call to wake the I/O thread")  # what is queued goes now
    assert waiting.is_alive() and producer.array_bytes_held() == 800
    acknowledge_everything(producer)
    waiting.join(timeout=20)
    assert not waiting.is_alive()
    assert producer.dropped() == {} and producer.array_bytes_held() == 800
    assert [batch.records[0][4] for batch in producer.drain() if isinstance(batch, Batch)] == [1]


def test_a_wait_that_times_out_drops_and_later_calls_drop_at_once_until_an_acknowledgement():
    producer = make()
    producer.submit_array(histogram(0))
    producer.submit_array(histogram(1), 0.05)  # nothing acknowledges: timed out
    assert producer.dropped() == {FULL: 1}
    # The daemon made no progress since: no second wait (a long one would outlast the test).
    producer.submit_array(histogram(2), LONG_WAIT_S)
    assert producer.dropped() == {FULL: 2}
    acknowledge_everything(producer)  # progress: the next call past the bound waits again
    producer.submit_array(histogram(3))
    waiting = in_thread(lambda: producer.submit_array(histogram(4), LONG_WAIT_S))
    acknowledge_everything(producer)
    waiting.join(timeout=20)
    assert not waiting.is_alive() and producer.dropped() == {FULL: 2}


def test_no_wait_when_no_daemon_can_be_had_or_the_array_can_never_fit():
    producer = make()
    producer.submit_array(histogram(0))
    producer.deliverable = lambda: False
    producer.submit_array(histogram(1), LONG_WAIT_S)
    assert producer.dropped() == {FULL: 1}
    producer.deliverable = lambda: True
    producer.submit_array(histogram(2, nbytes=1001), LONG_WAIT_S)  # larger than the bound itself
    assert producer.dropped() == {FULL: 2}


def test_a_wait_ends_when_the_daemon_can_no_longer_be_had():
    producer = make()
    producer.submit_array(histogram(0))
    reachable = threading.Event()
    reachable.set()
    producer.deliverable = reachable.is_set
    waiting = in_thread(lambda: producer.submit_array(histogram(1), LONG_WAIT_S))
    reachable.clear()  # the transport lost its daemon, or is stopping
    waiting.join(timeout=20)
    assert not waiting.is_alive() and producer.dropped() == {FULL: 1}


def test_the_drop_policy_drops_at_once():
    producer = make()
    producer.submit_array(histogram(0))
    producer.submit_array(histogram(1))  # wait_s 0: the writer's "drop"
    assert producer.dropped() == {FULL: 1}


# -- the writer's argument -------------------------------------------------------------------------


class RecordingTransport(InMemoryTransport):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def submit_array(self, record: tuple, wait_s: float = 0.0) -> None:
        self.waits.append(wait_s)
        super().submit_array(record, wait_s)


@pytest.mark.parametrize(
    "env,argument,expected",
    [
        ({}, None, 10.0),  # the default: wait, up to overflow_wait_s
        ({"LOGGER_OVERFLOW_WAIT_S": "2.5"}, None, 2.5),
        ({"LOGGER_OVERFLOW": "drop"}, None, 0.0),
        ({"LOGGER_OVERFLOW": "drop"}, "wait", 10.0),  # the writer's argument wins
        ({}, "drop", 0.0),
    ],
)
def test_each_writer_chooses_its_policy(monkeypatch, tmp_path, env, argument, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    transport = RecordingTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport, overflow=argument)
    writer.add_histogram("h", np.arange(10.0), 0)
    writer.add_image("i", np.zeros((3, 4, 4), np.uint8), 0)
    assert transport.waits == [expected, expected]


def test_an_unknown_policy_is_refused_at_the_constructor(tmp_path):
    with pytest.raises(ValueError, match="overflow"):
        SummaryWriter(str(tmp_path), transport=InMemoryTransport(), overflow="block")


# -- end to end: a real daemon, files read back ------------------------------------------------------


def histogram_steps(logdir: str, tag: str) -> list[int]:
    accumulator = EventAccumulator(logdir, size_guidance={"histograms": 0}).Reload()
    return [event.step for event in accumulator.Histograms(tag)]


@pytest.mark.e2e
def test_a_burst_of_200_arrays_of_4_mb_is_delivered_whole_at_the_defaults(daemon, logdir):
    writer = SummaryWriter(logdir)
    parameters = np.random.default_rng(15).standard_normal((4, 2**20)).astype(np.float32)  # 4 MiB each
    for step in range(200):  # the seed's loop over named_parameters, one step's worth
        writer.add_histogram("p", parameters[step % 4], step)
    assert writer.close(timeout=120)
    assert writer.stats()["records_dropped"] == {}
    assert histogram_steps(logdir, "p") == list(range(200))


@pytest.mark.e2e
def test_past_the_bound_the_wait_policy_delivers_and_the_drop_policy_counts(daemon, logdir, monkeypatch):
    monkeypatch.setenv("LOGGER_MAX_BUFFER_BYTES", str(16 * 2**20))  # four arrays
    array = np.ones(2**20, np.float32)
    waiting = SummaryWriter(logdir, filename_suffix=".wait")
    for step in range(40):
        waiting.add_histogram("wait", array, step)
    assert waiting.flush(timeout=60)  # (one transport per process: the drops below would count here)
    assert waiting.stats()["records_dropped"] == {}
    dropping = SummaryWriter(logdir, filename_suffix=".drop", overflow="drop")
    for step in range(40):
        dropping.add_histogram("drop", array, step)
    assert not dropping.flush(timeout=60)  # not everything logged is on disk
    dropped = dropping.stats()["records_dropped"].get(FULL, 0)
    assert waiting.close(timeout=60)
    dropping.close(timeout=60)
    assert histogram_steps(logdir, "wait") == list(range(40))
    assert dropped > 0 and len(histogram_steps(logdir, "drop")) + dropped == 40  # logged = on disk + drops
