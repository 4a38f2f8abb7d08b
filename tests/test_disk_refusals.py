"""A disk that refuses writes, in process: event files cut back to their last whole record (or
continued in a new file), records held within the daemon's bound and written in order once the
disk takes them, acknowledgements held meanwhile, and only what exceeds the bound dropped, as
`io_error`, to its client.

The seam is the file an `EventFile` writes: `FakeDisk` hands out real files that take bytes only
while the disk has room (a write that crosses it is cut short, as a full disk cuts it, the next
refused with ENOSPC), and whose truncation can be made to fail. Everything above it is the real
code; files are read back with TensorBoard's loader. The real thing (a small tmpfs, a file-size
limit on a daemon process) is in tests/faults/test_full_disk.py.
"""

from __future__ import annotations

import errno
import glob
import os
from collections import Counter
from typing import Any

import numpy as np
import pytest
from conftest import wait_for
from test_pipeline import Harness, load, open_record, scalar, steps_and_values

from logger_client.protocol import RecordKind
from logger_daemon import event_file
from logger_daemon.event_file import Backlog, EventFile
from logger_daemon.history import MARK_PREFIX, delivery_mark
from logger_daemon.pipeline import Pipeline
from logger_daemon.protos.event_pb2 import Event
from logger_daemon.protos.summary_pb2 import Summary
from logger_daemon.tfrecord import frame, read_records

A, B = b"client-a", b"client-b"
WALL = 1_700_000_000.0
create_exclusive = event_file.create_exclusive


class FakeDisk:
    """Room for `free` more bytes across every file it made."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.cut_fails = False

    def create(self, path: str) -> _File:
        return _File(self, create_exclusive(path))


class _File:
    def __init__(self, disk: FakeDisk, file: Any) -> None:
        self.disk, self.file = disk, file

    def write(self, data: memoryview) -> int:
        if self.disk.free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self.file.write(data[: self.disk.free])
        self.disk.free -= written
        return written

    def truncate(self, size: int) -> int:
        if self.disk.cut_fails:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        before = os.fstat(self.file.fileno()).st_size
        self.file.truncate(size)
        self.disk.free += before - size
        return size

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        self.file.close()


def event(step: int, tag: str = "loss") -> bytes:
    summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(step))])
    return Event(wall_time=WALL + step, step=step, summary=summary).SerializeToString()


def whole_records(path: str) -> list[Event]:
    """Every record of the file, after checking that each is whole, its CRCs valid, to the end."""
    with open(path, "rb") as file:
        blob = file.read()
    records = read_records(blob)
    assert sum(16 + len(record) for record in records) == len(blob), f"{path} does not end with a whole record"
    return [Event.FromString(record) for record in records]


def steps_in(paths: list[str]) -> list[int]:
    return [e.step for path in paths for e in whole_records(path) if e.HasField("summary")]


@pytest.fixture
def logdir(tmp_path) -> str:
    return str(tmp_path / "run")


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FakeDisk:
    """Every event file made in this test is made on a fake disk with 2 000 bytes free."""
    fake = FakeDisk(2000)
    monkeypatch.setattr(event_file, "create_exclusive", fake.create)
    return fake


# -- the event file --------------------------------------------------------------------------------


def test_a_write_cut_short_is_cut_back_to_the_last_whole_record_and_the_rest_held_until_room_returns(disk, tmp_path):
    backlog = Backlog(limit_bytes=1 << 20)
    events = EventFile(str(tmp_path), "", backlog)
    for step in range(100):  # about 4 KB: half of it fits
        assert events.write_record([event(step)], A)
    assert events.flush() is False
    assert events.error is not None and "No space left on device" in events.error
    assert backlog.error() == events.error
    on_disk = steps_in([events.path])  # cut back: whole records only, CRCs valid to the end
    assert 0 < len(on_disk) < 100 and on_disk == list(range(len(on_disk)))
    assert backlog.held() == (100 - len(on_disk), events.held_bytes)
    assert os.path.getsize(events.path) == events.bytes_written
    for step in range(100, 110):  # more, while the disk refuses: held behind the rest, in order
        assert events.write_record([event(step)], A)
    assert events.flush() is False
    disk.free = 1 << 20
    assert events.flush() is True
    assert backlog.held() == (0, 0) and backlog.error() is None and events.error is None
    assert steps_in([events.path]) == list(range(110))
    written, nbytes, lost = backlog.take()
    assert written == 110 and nbytes == os.path.getsize(events.path) and not lost
    events.close()


def test_a_file_that_cannot_be_cut_back_keeps_its_torn_tail_and_a_new_file_continues(disk, tmp_path):
    backlog = Backlog(limit_bytes=1 << 20)
    events = EventFile(str(tmp_path), "", backlog, continuation=lambda: delivery_mark(WALL, {}))
    first = events.path
    for step in range(100):
        events.write_record([event(step)], A)
    disk.cut_fails = True
    assert events.flush() is False
    with open(first, "rb") as file:
        torn = file.read()
    kept = read_records(torn)
    assert sum(16 + len(r) for r in kept) < len(torn)  # a torn tail, at the very end only
    assert events.flush() is False  # no room yet: nothing is appended after the torn record
    with open(first, "rb") as file:
        assert file.read() == torn
    disk.free = 1 << 20
    assert events.flush() is True
    assert events.path != first
    head = whole_records(events.path)[:2]
    assert head[0].file_version == "brain.Event:2" and head[1].log_message.message == MARK_PREFIX + "{}"
    on_first = [Event.FromString(r).step for r in kept if Event.FromString(r).HasField("summary")]
    assert on_first + steps_in([events.path]) == list(range(100))  # each once, in order
    events.close()


def test_past_the_bound_client_records_are_refused_and_the_daemons_own_events_kept(disk, tmp_path):
    backlog = Backlog(limit_bytes=1000)
    events = EventFile(str(tmp_path), "", backlog)
    disk.free = 0
    assert events.flush() is False  # the file_version record is held
    held = events.held_bytes
    accepted = [events.write_record([event(step)], A) for step in range(1, 41)]
    size = len(frame(event(1)))  # steps 1 to 40 make records of one size
    assert accepted.count(True) == (1000 - held) // size
    assert accepted == sorted(accepted, reverse=True)  # a prefix: the newest are refused
    assert events.held_bytes <= 1000 < events.held_bytes + size
    steps = np.arange(100, 140, dtype=np.int64)
    owners = np.array([A, B] * 20, dtype=object)
    assert events.write_scalars("loss", steps * 1.0, steps, steps * 1.0, owners) == 0  # none fits now
    before = events.held_bytes
    events.write(delivery_mark(WALL, {A: 1, B: 2}), optional=True)  # left out: a later mark says it all
    assert events.held_bytes == before
    events.write(event(0, tag="session"))  # the daemon's own events always go in
    assert events.held_bytes > before
    disk.free = 1 << 20
    assert events.flush() is True
    assert steps_in([events.path]) == [*range(1, 1 + accepted.count(True)), 0]


def test_scalar_columns_fill_the_bound_exactly_and_report_how_many_went_in(disk, tmp_path):
    backlog = Backlog(limit_bytes=2000)
    events = EventFile(str(tmp_path), "", backlog)
    disk.free = 0
    events.flush()
    before = events.held_bytes
    steps = np.arange(1, 101, dtype=np.int64)  # records of one size
    owners = np.array([A] * 100, dtype=object)
    appended = events.write_scalars("loss", steps * 1.0 + WALL, steps, steps * 0.5, owners)
    assert 0 < appended < 100
    size = (events.held_bytes - before) // appended
    assert backlog.held() == (appended, events.held_bytes)
    assert 2000 - size < events.held_bytes <= 2000
    disk.free = 1 << 20
    assert events.flush() is True
    assert steps_in([events.path]) == list(range(1, 1 + appended))


def test_a_file_closed_while_the_disk_refuses_gives_up_its_records_counted_per_client(disk, tmp_path):
    backlog = Backlog(limit_bytes=1 << 20)
    disk.free = 800  # room for about 20 records: both kinds below are given up
    events = EventFile(str(tmp_path), "", backlog)
    owner = [A if step % 3 else B for step in range(60)]
    for step in range(30):
        events.write_record([event(step)], owner[step])
    steps = np.arange(30, 60, dtype=np.int64)
    events.write_scalars("loss", steps + WALL, steps, steps * 1.0, np.array(owner[30:], dtype=object))
    assert events.flush() is False
    written_before = len(steps_in([events.path]))
    assert written_before < 30
    events.close()
    written, _, lost = backlog.take()
    assert written == written_before
    assert lost == Counter(owner[written_before:])  # each given up, counted to its client
    assert backlog.held() == (0, 0) and not backlog.blocked
    assert steps_in([events.path]) == list(range(written_before))  # valid to its end


# -- the pipeline: acknowledgements and drops ------------------------------------------------------


class DiskHarness(Harness):
    def __init__(self, held_bytes: int) -> None:
        super().__init__()
        self.pipeline = Pipeline(self.stats, fsync_interval_s=30.0, on_written=self._on_written, held_bytes=held_bytes)


def test_while_the_disk_refuses_acks_wait_only_what_exceeds_the_bound_is_dropped_and_the_rest_comes(disk, logdir):
    harness = DiskHarness(held_bytes=4096)
    harness.run(harness.work(A, [open_record(logdir)] + [scalar("loss", step, 0.5) for step in range(100)]))
    assert harness.acks == [{A: 0}]  # about 2 000 of its 4 500 bytes did not fit: not acknowledged
    records, nbytes, error = harness.pipeline.held()
    assert records > 0 and 0 < nbytes <= 4096 and "No space left on device" in (error or "")
    assert harness.dropped() == {}
    harness.run(harness.work(A, [scalar("loss", step, 0.5) for step in range(100, 300)]))
    assert harness.acks[-1] == {A: 0}
    io_errors = harness.refused[(A, "io_error")]
    assert io_errors > 0 and harness.dropped() == {"io_error": io_errors}  # counted now, to its client
    held_bytes = harness.pipeline.held()[1]
    assert 4096 - 64 < held_bytes <= 4096  # dropped only past the bound
    disk.free = 1 << 20
    harness.run(harness.work(A, [scalar("loss", 300, 0.5)]))  # the next write tries again
    assert harness.acks[-1] == {A: 3}
    assert harness.pipeline.held() == (0, 0, None)
    on_disk = [step for step, _ in steps_and_values(logdir, "loss")]
    assert len(on_disk) + io_errors == 301  # logged = on disk + counted drops
    assert on_disk == sorted(set(on_disk))  # each once, in step order
    assert on_disk[: 300 - io_errors] == list(range(300 - io_errors))  # the newest were dropped
    assert harness.stats.snapshot()["records_written"] == len(on_disk)
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        whole_records(path)


def test_a_writer_closed_while_the_disk_refuses_gets_its_held_records_counted_and_acknowledged(disk, logdir):
    harness = DiskHarness(held_bytes=1 << 20)
    harness.run(harness.work(A, [open_record(logdir)] + [scalar("a", step, 0.5) for step in range(100)]))
    harness.run(harness.work(B, [open_record(logdir, writer=7)] + [scalar("b", step, 0.5, 7) for step in range(10)]))
    assert harness.acks == [{A: 0}, {B: 0}]
    held = harness.pipeline.held()[0]
    harness.run(harness.work(A, [(RecordKind.CLOSE, 1, "", "", 0, WALL, None)]))
    assert harness.acks[-1] == {A: 0}  # the file stays open for B's writer: still held
    harness.run(harness.work(B, [(RecordKind.CLOSE, 7, "", "", 0, WALL, None)]))  # its last writer
    assert harness.acks[-1] == {A: 2, B: 2}
    assert harness.refused[(A, "io_error")] + harness.refused[(B, "io_error")] == held
    scalars = load(logdir)
    a_steps, b_steps = ([e.step for e in scalars.Scalars(t)] if t in scalars.Tags()["scalars"] else [] for t in "ab")
    assert len(a_steps) + harness.refused[(A, "io_error")] == 100
    assert len(b_steps) + harness.refused[(B, "io_error")] == 10
    assert harness.pipeline.held() == (0, 0, None)


def test_the_pipeline_thread_tries_again_on_its_own_and_acknowledges_once_written(disk, logdir):
    harness = DiskHarness(held_bytes=1 << 20)
    pipeline = harness.pipeline
    pipeline.start()
    try:
        pipeline.put(harness.work(A, [open_record(logdir)] + [scalar("loss", step, 0.5) for step in range(100)]))
        wait_for(lambda: pipeline.held()[0] > 0, message="records held")
        assert {A: 1} not in harness.acks
        disk.free = 1 << 20
        wait_for(lambda: {A: 1} in harness.acks, timeout_s=10, message="the acknowledgement after room returned")
        assert pipeline.held() == (0, 0, None)
    finally:
        pipeline.stop(20)
    assert [step for step, _ in steps_and_values(logdir, "loss")] == list(range(100))


def test_a_pipeline_stopped_while_the_disk_refuses_counts_what_it_gives_up(disk, logdir):
    harness = DiskHarness(held_bytes=1 << 20)
    pipeline = harness.pipeline
    pipeline.start()
    pipeline.put(harness.work(A, [open_record(logdir)] + [scalar("loss", step, 0.5) for step in range(100)]))
    wait_for(lambda: pipeline.held()[0] > 0, message="records held")
    pipeline.stop(20)
    assert harness.acks[-1] == {A: 1}
    on_disk = len(steps_and_values(logdir, "loss"))
    assert on_disk + harness.refused[(A, "io_error")] == 100


def test_records_held_when_the_daemon_died_are_written_once_by_the_next(disk, logdir):
    first = DiskHarness(held_bytes=1 << 20)
    first.run(first.work(A, [open_record(logdir)] + [scalar("loss", step, 0.5) for step in range(100)]))
    assert first.acks == [{A: 0}] and first.pipeline.held()[0] > 0
    on_disk = len(steps_and_values(logdir, "loss"))
    # The daemon dies holding the rest (nothing is closed or given up); the client resends the
    # message it never had acknowledged, with its id, to the next daemon, which has room.
    disk.free = 1 << 20
    second = DiskHarness(held_bytes=1 << 20)
    second.run(second.work(A, [open_record(logdir)] + [scalar("loss", step, 0.5) for step in range(100)]))
    assert second.acks == [{A: 1}]
    assert [step for step, _ in steps_and_values(logdir, "loss")] == list(range(100))  # each once
    assert second.stats.snapshot()["records_duplicate"] == on_disk
    assert second.stats.snapshot()["records_written"] == 100 - on_disk
    second.pipeline.stop()
