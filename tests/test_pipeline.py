"""The daemon's pipeline, in process: messages in, event files out, read back with TensorBoard's
own loader; acknowledgements and refusals by reason, per client.

`Pipeline.process` runs one write cycle on the test's thread: no server, no socket, no daemon.
Messages go through the protocol's encoder and decoder first, so records arrive as the daemon
receives them.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np
import pytest
from conftest import wait_for
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logger_client import protocol
from logger_client._producer import pack_records
from logger_client.protocol import SCALAR_ROW, MessageKind, RecordKind
from logger_daemon import pipeline as pipeline_module
from logger_daemon.intake import Work
from logger_daemon.pipeline import Pipeline
from logger_daemon.stats import Stats

A, B = b"client-a", b"client-b"
WALL = 1_700_000_000.0


class Harness:
    """A pipeline, the acknowledgements it gave, and a counter of message numbers per client."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.acks: list[dict[bytes, int]] = []
        self.refused: Counter[tuple[bytes, str]] = Counter()
        self.pipeline = Pipeline(self.stats, fsync_interval_s=30.0, on_written=self._on_written)
        self._seq: Counter[bytes] = Counter()

    def _on_written(self, acks: dict[bytes, int], drops: dict[bytes, Counter], not_uploaded: dict[bytes, int]) -> None:
        self.acks.append(acks)
        for client, counts in drops.items():
            for reason, count in counts.items():
                self.refused[(client, reason)] += count

    def next_seq(self, client: bytes) -> int:
        """The next sequence number of `client` on its connection to this pipeline's daemon."""
        self._seq[client] += 1
        return self._seq[client]

    def work(self, client: bytes, records: list, arrays: list[np.ndarray] | None = None) -> Work:
        """One RECORDS message from `client`, through the wire and back."""
        seq = self.next_seq(client)
        frames = protocol.encode(MessageKind.RECORDS, {"records": records, "mid": seq}, arrays or [])
        message = protocol.decode([bytes(memoryview(frame)) for frame in frames])
        return Work.of_records(client, seq, message.header["records"], message.arrays, seq)

    def packed_work(self, client: bytes, items: list) -> Work:
        """One RECORDS message whose records were packed as the client packs them (rows joined)."""
        self._seq[client] += 1
        packed, _, _ = pack_records(items)
        frames = protocol.encode_packed_records(client, self._seq[client], self._seq[client], packed)
        message = protocol.decode(frames)
        header = message.header
        return Work.of_records(client, self._seq[client], header["records"], message.arrays, header["mid"])

    def run(self, *works: Work) -> None:
        self.pipeline.process(list(works))

    def dropped(self) -> dict[str, int]:
        return self.stats.snapshot()["records_dropped"]


def open_record(logdir: str, writer: int = 1, **options: Any) -> tuple:
    return (RecordKind.OPEN, writer, "", "", 0, WALL, {"logdir": logdir, "filename_suffix": "", **options})


def key_record(key: int, tag: str, run: str = "", writer: int = 1) -> tuple:
    return (RecordKind.KEY, writer, run, tag, 0, 0.0, key)


def scalar(tag: str, step: int, value: float, writer: int = 1) -> tuple:
    return (RecordKind.SCALAR, writer, "", tag, step, WALL + step, value)


def row(key: int, step: int, value: float) -> bytes:
    return SCALAR_ROW.pack(key, step, WALL + step, value)


def load(path: str) -> EventAccumulator:
    accumulator = EventAccumulator(path, size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def steps_and_values(path: str, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in load(path).Scalars(tag)]


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
def logdir(tmp_path) -> str:
    return str(tmp_path / "run")


def test_records_and_packed_rows_are_written_in_step_order_then_acknowledged(harness, logdir):
    rows = [row(0, step, float(step)) for step in (5, 3, 4)] + [row(1, 0, -1.0)] * 20
    harness.run(
        harness.work(A, [open_record(logdir), key_record(0, "loss"), key_record(1, "many")]),
        harness.packed_work(A, rows),
        harness.work(A, [scalar("loss", 1, 1.0), scalar("loss", 2, 2.0)]),
    )
    assert harness.acks == [{A: 3}]
    assert steps_and_values(logdir, "loss") == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)]
    assert len(steps_and_values(logdir, "many")) == 20
    assert harness.stats.snapshot()["records_written"] == 25 and harness.dropped() == {}


def test_a_step_older_than_one_written_is_dropped_and_counted_to_its_client(harness, logdir):
    harness.run(harness.work(A, [open_record(logdir), scalar("loss", 10, 1.0)]), harness.work(B, [open_record(logdir)]))
    harness.run(harness.work(B, [scalar("loss", 3, 9.0), scalar("loss", 11, 2.0)]))
    assert steps_and_values(logdir, "loss") == [(10, 1.0), (11, 2.0)]
    assert harness.refused == {(B, "step_out_of_order"): 1}
    assert harness.dropped() == {"step_out_of_order": 1}


def test_two_clients_writing_one_directory_share_one_file(harness, logdir):
    harness.run(harness.work(A, [open_record(logdir), scalar("a", 0, 0.0)]))
    harness.run(harness.work(B, [open_record(logdir), scalar("b", 0, 0.0)]))
    assert len(os.listdir(logdir)) == 1
    assert harness.pipeline.open_files() == 1


def test_records_of_unknown_writers_keys_and_bad_runs_are_refused_by_reason(harness, logdir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, os.path.join(str(tmp_path), "link"))
    harness.run(
        harness.work(A, [open_record(logdir)]),
        harness.work(A, [scalar("loss", 0, 1.0, writer=7)]),  # never opened
        harness.packed_work(A, [row(42, 0, 1.0)]),  # a key never defined
        harness.work(A, [key_record(0, "x", run="../escape")]),
        harness.packed_work(A, [row(0, 0, 1.0)] * 3),
        harness.work(A, [open_record("relative/dir", writer=2)]),
    )
    assert harness.refused == {
        (A, "unknown_writer"): 1,
        (A, "unknown_scalar_key"): 1,
        (A, "bad_run_name"): 3,
        (A, "bad_logdir"): 1,
    }
    assert not os.listdir(outside)


def test_malformed_records_are_refused_and_the_good_ones_written(harness, logdir):
    bad_value = (RecordKind.TEXT, 1, "", "t", 0, WALL, 3)  # a text that is not a str
    bad_kind = (99, 1, "", "t", 0, WALL, 1.0)
    bad_step = (RecordKind.SCALAR, 1, "", "loss", 1.5, WALL, 1.0)  # checked on whole columns, at write
    harness.run(harness.work(A, [open_record(logdir), bad_value, bad_kind, scalar("loss", 0, 1.0), bad_step]))
    assert harness.refused == {(A, "malformed_record"): 3}
    assert steps_and_values(logdir, "loss") == [(0, 1.0)]
    assert harness.stats.snapshot()["records_received"] == 4  # the open is not data


def test_arrays_and_texts_are_encoded_and_a_bad_option_is_an_encode_error(harness, logdir):
    values = np.arange(100, dtype=np.float32)
    image = np.zeros((3, 8, 8), np.uint8)
    records = [
        open_record(logdir),
        (RecordKind.HISTOGRAM, 1, "", "h", 1, WALL, 0, {"bins": "tensorflow", "max_bins": None}),
        (RecordKind.IMAGE, 1, "", "i", 1, WALL, 1, {"dataformats": "CHW"}),
        (RecordKind.IMAGE, 1, "", "bad", 1, WALL, 1, {"dataformats": "XYZ"}),
        (RecordKind.TEXT, 1, "", "t", 1, WALL, "**hi**"),
    ]
    harness.run(harness.work(A, records, [values, image]))
    accumulator = load(logdir)
    assert accumulator.Histograms("h")[0].histogram_value.max == 99
    assert (accumulator.Images("i")[0].width, accumulator.Images("i")[0].height) == (8, 8)
    assert len(accumulator.Tensors("t/text_summary")) == 1
    assert harness.refused == {(A, "encode_error"): 1}


def test_a_purge_follows_what_came_before_it_in_the_same_cycle(harness, logdir):
    harness.run(
        harness.work(A, [open_record(logdir), scalar("loss", 5, 5.0), scalar("loss", 6, 6.0)]),
        harness.work(B, [open_record(logdir, purge_step=6), scalar("loss", 6, 60.0)]),
    )
    events = load(logdir)
    # TensorBoard's loader hides what the purge covers: step 6 of the first session is gone.
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(5, 5.0), (6, 60.0)]


def test_closing_the_last_writer_of_a_directory_closes_its_file(harness, logdir, tmp_path):
    other = str(tmp_path / "other")
    harness.run(harness.work(A, [open_record(logdir), open_record(other, writer=2), scalar("a", 0, 0.0)]))
    harness.run(harness.work(A, [scalar("b", 0, 0.0, writer=2)]))
    assert harness.pipeline.open_files() == 2
    harness.run(harness.work(A, [(RecordKind.CLOSE, 1, "", "", 0, WALL, None)]))
    assert harness.pipeline.open_files() == 1
    harness.run(Work(A, 0, client_gone=True))
    assert harness.pipeline.open_files() == 0
    harness.run(harness.work(A, [scalar("a", 1, 1.0)]))  # the writer went with its client
    assert harness.refused[(A, "unknown_writer")] == 1


def test_a_client_forgotten_and_back_in_the_same_cycle_keeps_what_it_sends_after(harness, logdir):
    """A client the daemon forgot (a gap in its messages) says HELLO, announces its writers and
    resends at once: its closing must not take the writers and acknowledgements of its return."""
    pipeline = harness.pipeline
    pipeline.put(harness.work(A, [open_record(logdir), scalar("loss", 1, 1.0)]))
    pipeline.put(Work(A, 0, client_gone=True))
    pipeline.put(harness.work(A, [open_record(logdir, announced=True), scalar("loss", 2, 2.0)]))
    pipeline.put(harness.work(A, [scalar("loss", 3, 3.0)]))
    last = harness.next_seq(A)
    pipeline.put(Work(A, last, flush=True))
    pipeline.start()
    pipeline.stop(20)
    assert harness.acks[-1] == {A: last}
    assert harness.refused == {}
    assert steps_and_values(logdir, "loss") == [(1, 1.0), (2, 2.0), (3, 3.0)]


def test_an_event_file_that_cannot_be_created_is_an_io_error(harness, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    harness.run(harness.work(A, [open_record(str(blocked)), key_record(0, "x", run="sub")]))
    (blocked / "sub").write_text("a file where the run's directory would go")
    harness.run(harness.work(A, [scalar("loss", 0, 1.0)]), harness.packed_work(A, [row(0, 0, 1.0)] * 2))
    assert harness.refused == {(A, "io_error"): 2}
    assert steps_and_values(str(blocked), "loss") == [(0, 1.0)]


def test_the_pipeline_thread_writes_what_is_put_and_stops_after_writing_it(harness, logdir):
    pipeline = harness.pipeline
    pipeline.start()
    pipeline.put(harness.work(A, [open_record(logdir)] + [scalar("loss", step, 0.5) for step in range(100)]))
    pipeline.put(Work(A, 99, flush=True))
    wait_for(lambda: {A: 99} in harness.acks, message="the flush to be acknowledged")
    pipeline.stop(20)
    assert pipeline.queued() == (0, 0) and pipeline.open_files() == 0
    assert len(steps_and_values(logdir, "loss")) == 100


def test_a_burst_put_at_once_is_written_and_acknowledged_in_parts(harness, logdir, monkeypatch):
    """Each acknowledgement of a burst comes once its part is in the file: the client's slots come
    back part by part, not after the whole burst."""
    values = np.arange(1000, dtype=np.float32)
    monkeypatch.setattr(pipeline_module, "CYCLE_ARRAY_BYTES", 2 * values.nbytes)
    pipeline = harness.pipeline
    pipeline.put(harness.work(A, [open_record(logdir)]))
    for step in range(6):
        record = (RecordKind.HISTOGRAM, 1, "", "h", step, WALL, 0, {"bins": "tensorflow"})
        pipeline.put(harness.work(A, [record], [values + step]))
    on_disk_at_ack: list[int] = []
    acknowledge = harness._on_written

    def on_written(acks: dict[bytes, int], drops: dict[bytes, Counter], not_uploaded: dict[bytes, int]) -> None:
        on_disk_at_ack.append(len(histogram_steps(logdir, "h")))
        acknowledge(acks, drops, not_uploaded)

    pipeline._on_written = on_written  # the pipeline was made with the harness's callback
    pipeline.start()
    pipeline.stop(20)
    seqs = [acks[A] for acks in harness.acks]
    assert seqs == [3, 5, 7]  # two array messages a cycle (the OPEN carries none)
    assert on_disk_at_ack == [2, 4, 6]
    assert histogram_steps(logdir, "h") == list(range(6))


def histogram_steps(logdir: str, tag: str) -> list[int]:
    if not os.path.isdir(logdir):
        return []
    accumulator = EventAccumulator(logdir, size_guidance={"histograms": 0}).Reload()
    return [event.step for event in accumulator.Histograms(tag)] if tag in accumulator.Tags()["histograms"] else []
