"""The daemon's encoding pool, in process: what it encodes equals what the writer would have
encoded inline (tensorboardX's histograms, bucket for bucket, for every bins option), and with
several workers each (run, tag) is still written in step order and acknowledged only once written.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import numpy as np
import pytest
import tensorboardX
from conftest import start_daemon
from daemon_cli import status_json
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary as TbSummary
from tensorboardX import summary as tbx

from logger_client import SummaryWriter, protocol
from logger_client.protocol import STEP, MessageKind, RecordKind
from logger_daemon import encoders, pipeline
from logger_daemon.encode_pool import MIN_POOLED_BYTES, EncodePool
from logger_daemon.intake import Work
from logger_daemon.pipeline import Pipeline
from logger_daemon.stats import Stats

A = b"client-a"
WALL = 1_700_000_000.0
RNG = np.random.default_rng(1515)
#: Enough values to be handed to the pool.
POOLED_VALUES = MIN_POOLED_BYTES // 4 + 1000

BINS = [
    ("tensorflow", None),
    ("auto", None),
    ("fd", None),
    ("doane", None),
    ("scott", None),
    ("stone", None),
    ("rice", None),
    ("sturges", None),
    ("sqrt", None),
    (1, None),
    (30, None),
    (1000, None),
    ([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0], None),
    ("tensorflow", 7),
    (100, 10),
]


@pytest.fixture(scope="module")
def tbx_default_bins(tmp_path_factory):
    writer = tensorboardX.SummaryWriter(logdir=str(tmp_path_factory.mktemp("tbx")), write_to_disk=False)
    bins = writer.default_bins
    writer.close()
    return bins


@pytest.fixture
def pool():
    pool = EncodePool(3)
    yield pool
    pool.close()


def histogram_record(tag: str, step: int, values: np.ndarray, bins=None, max_bins=None) -> list:
    options = {"bins": "tensorflow" if bins is None else bins, "max_bins": max_bins}
    return [RecordKind.HISTOGRAM, 1, "", tag, step, WALL + step, values, options]


@pytest.mark.parametrize("bins,max_bins", BINS, ids=[f"{b}-{m}" for b, m in BINS])
def test_pooled_histograms_equal_tensorboardxs(pool, tbx_default_bins, bins, max_bins):
    values: list[np.ndarray] = [
        RNG.standard_normal(POOLED_VALUES).astype(np.float32),
        RNG.uniform(-5.0, 50.0, POOLED_VALUES // 2),
        (RNG.standard_normal(POOLED_VALUES) * 1e-8).astype(np.float32),
    ]
    # "stone" is quadratic in numpy: a smaller input, still above the hand-over size.
    if bins == "stone":
        values = [v[: MIN_POOLED_BYTES // v.itemsize + 10] for v in values]
    records = [histogram_record("w", step, v, bins, max_bins) for step, v in enumerate(values)]
    encoded = pool.start([("unused", records)])
    assert encoded.handed_over == len(records)
    for record, v in zip(records, values):
        event = encoded(record, "unused")[0]
        ours = TbSummary.FromString(_summary_bytes(event))
        reference_bins = tbx_default_bins if bins == "tensorflow" else bins
        theirs = TbSummary.FromString(tbx.histogram("w", v, reference_bins, max_bins=max_bins).SerializeToString())
        assert ours.value[0].histo.bucket == theirs.value[0].histo.bucket
        assert ours.value[0].histo.bucket_limit == theirs.value[0].histo.bucket_limit
        assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)
    encoded.finish()


def _summary_bytes(event: bytes) -> bytes:
    return Event.FromString(event).summary.SerializeToString()


def test_a_pooled_encoder_error_is_raised_where_the_writer_asks(pool):
    bad = histogram_record("w", 0, np.full(POOLED_VALUES, np.nan), bins="auto")  # numpy refuses
    good = histogram_record("w", 1, np.ones(POOLED_VALUES, np.float32))
    encoded = pool.start([("unused", [bad, good])])
    assert encoded.handed_over == 2
    with pytest.raises(ValueError):
        encoded(bad, "unused")
    assert len(encoded(good, "unused")) == 1
    encoded.finish()


def test_one_worker_hands_nothing_over():
    pool = EncodePool(1)
    encoded = pool.start([("unused", [histogram_record("w", 0, np.ones(POOLED_VALUES, np.float32))])])
    assert encoded.handed_over == 0
    pool.close()


# -- through the pipeline ----------------------------------------------------------------------------


class Harness:
    """A pipeline with several encoding workers; each acknowledgement is checked against the files
    as they are at that moment."""

    def __init__(self, logdir: str, workers: int) -> None:
        self.logdir = logdir
        self.stats = Stats()
        self.acks: list[dict[bytes, int]] = []
        self.on_disk_at_ack: list[list[tuple[str, int]]] = []
        self.pipeline = Pipeline(self.stats, 30.0, self._on_written, encode_workers=workers)
        self._seq = 0

    def _on_written(self, acks: dict[bytes, int], drops: dict[bytes, Counter], not_uploaded: dict[bytes, int]) -> None:
        self.acks.append(acks)
        self.on_disk_at_ack.append(histograms_in_file_order(self.logdir))

    def work(self, records: list, arrays: list[np.ndarray] | None = None) -> Work:
        self._seq += 1
        frames = protocol.encode(MessageKind.RECORDS, {"records": records, "mid": self._seq}, arrays or [])
        message = protocol.decode([bytes(memoryview(frame)) for frame in frames])
        return Work.of_records(A, self._seq, message.header["records"], message.arrays, self._seq)

    def open(self) -> Work:
        return self.work([(RecordKind.OPEN, 1, "", "", 0, WALL, {"logdir": self.logdir, "filename_suffix": ""})])

    def histograms(self, tags_and_steps: list[tuple[str, int]], values: dict[int, np.ndarray]) -> Work:
        """One message of histograms, values by step (each step's array its own)."""
        arrays: list[np.ndarray] = []
        records: list[tuple] = []
        for tag, step in tags_and_steps:
            records.append((RecordKind.HISTOGRAM, 1, "", tag, step, WALL + step, len(arrays), {"bins": "tensorflow"}))
            arrays.append(values[step])
        return self.work(records, arrays)


def histograms_in_file_order(logdir: str) -> list[tuple[str, int]]:
    """(tag, step) of every histogram in the run's event files, in the order they were written."""
    found: list[tuple[str, int]] = []
    for name in sorted(os.listdir(logdir)) if os.path.isdir(logdir) else []:
        for data in RawEventFileLoader(os.path.join(logdir, name)).Load():
            event = Event.FromString(data)
            found.extend((value.tag, event.step) for value in event.summary.value if value.HasField("histo"))
    return found


def test_a_later_record_encoded_first_is_still_written_after_the_earlier_one(tmp_path, monkeypatch):
    """Step 0 of each tag is held back in its encoder until every later step has been encoded: a
    writer that wrote records as their encoding finished would write step 0 last."""
    steps, tags = 6, ["a", "b"]
    later_done = {tag: threading.Semaphore(0) for tag in tags}  # per tag: a's step 0 waits on a's steps
    original = encoders.ENCODERS[RecordKind.HISTOGRAM]
    encoded_order: list[tuple[str, int]] = []

    def slow_first_step(record, run_path):
        tag = record[3]
        if record[STEP] == 0:
            for _ in range(steps - 1):
                assert later_done[tag].acquire(timeout=20), "the later steps were not encoded meanwhile"
        events = original(record, run_path)
        encoded_order.append((tag, record[STEP]))
        if record[STEP] != 0:
            later_done[tag].release()
        return events

    monkeypatch.setitem(encoders.ENCODERS, RecordKind.HISTOGRAM, slow_first_step)
    # A worker per record: each step 0 waits while the later steps are encoded beside it.
    harness = Harness(str(tmp_path / "run"), workers=len(tags) * steps)
    values = {step: RNG.standard_normal(POOLED_VALUES).astype(np.float32) + step for step in range(steps)}
    # Arrival order mixes tags and steps; each tag's step 0 comes first.
    order = [(tag, step) for step in range(steps) for tag in tags]
    harness.pipeline.process([harness.open(), harness.histograms(order, values)])
    harness.pipeline.stop()

    for tag in tags:  # the pool did reorder
        assert encoded_order.index((tag, 0)) > encoded_order.index((tag, steps - 1))
    written = histograms_in_file_order(harness.logdir)
    for tag in tags:
        assert [step for t, step in written if t == tag] == list(range(steps))
    assert harness.stats.snapshot()["records_dropped"] == {}


def test_acknowledged_only_once_written_with_several_workers(tmp_path, monkeypatch):
    """Messages put before the pipeline starts are written in cycles of at most
    CYCLE_ARRAY_BYTES of arrays; at each acknowledgement every record of the acknowledged
    messages is in the file already, in step order per tag."""
    monkeypatch.setattr(pipeline, "CYCLE_ARRAY_BYTES", 3 * POOLED_VALUES * 4)
    harness = Harness(str(tmp_path / "run"), workers=3)
    values = {step: RNG.standard_normal(POOLED_VALUES).astype(np.float32) for step in range(12)}
    sent: list[list[tuple[str, int]]] = []
    harness.pipeline.put(harness.open())
    sent.append([])
    for first in range(0, 12, 2):
        pairs = [(tag, step) for step in (first, first + 1) for tag in ("x", "y")]
        harness.pipeline.put(harness.histograms(pairs, values))
        sent.append(pairs)
    harness.pipeline.start()
    harness.pipeline.stop(timeout_s=60)

    assert len(harness.acks) > 2  # a cycle took at most one message of 4 arrays (at least one)
    seqs = [acks[A] for acks in harness.acks]
    assert seqs == sorted(seqs) and seqs[-1] == len(sent)
    for seq, on_disk in zip(seqs, harness.on_disk_at_ack):
        acknowledged = [pair for message in sent[:seq] for pair in message]
        assert set(acknowledged) <= set(on_disk)
        for tag in ("x", "y"):
            steps = [step for t, step in on_disk if t == tag]
            assert steps == sorted(steps)
    assert len(histograms_in_file_order(harness.logdir)) == 24


# -- a daemon with a pool ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_daemon_with_several_workers_writes_every_histogram_in_step_order(runtime_dir, logdir, monkeypatch):
    monkeypatch.setenv("LOGGER_ENCODE_WORKERS", "3")
    with start_daemon(runtime_dir):
        writer = SummaryWriter(logdir)
        values = RNG.standard_normal(POOLED_VALUES).astype(np.float32)
        for step in range(20):
            for tag in ("a", "b", "c"):
                writer.add_histogram(tag, values + step, step)
        assert writer.flush(timeout=60)
        assert status_json()["encode_workers"] == 3
        assert writer.close(timeout=60)
        assert writer.stats()["records_dropped"] == {}
    written = histograms_in_file_order(logdir)
    for tag in ("a", "b", "c"):
        assert [step for t, step in written if t == tag] == list(range(20))
