"""A daemon that replaces one that died, in process: what the old one wrote is neither lost nor
written twice when clients resend it, steps continue from the files, and a job resumed from a
checkpoint shows its new points. Two `Pipeline`s over the same directory stand for the two
daemons; the files are read back with TensorBoard's loader."""

from __future__ import annotations

import logging
import os

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_pipeline import WALL, Harness, open_record, scalar

from logger_client import protocol
from logger_client.protocol import MessageKind, RecordKind
from logger_daemon.event_file import EventFile
from logger_daemon.history import RunHistory, delivery_mark, read_file_into, read_history
from logger_daemon.intake import Work
from logger_daemon.tfrecord import read_records

A = b"client-a"


def steps_and_values(path: str, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(path, size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


class Client:
    """A client whose messages keep their id (mid) when sent again to a new daemon."""

    def __init__(self, client: bytes = A) -> None:
        self.client = client

    def message(self, harness: Harness, mid: int, records: list) -> Work:
        """Message `mid` (0: the writers announced to a new daemon, which carry none), through the
        wire and back."""
        harness_seq = harness.next_seq(self.client)
        frames = protocol.encode(MessageKind.RECORDS, {"records": records, "mid": mid})
        decoded = protocol.decode([bytes(memoryview(frame)) for frame in frames])
        return Work.of_records(self.client, harness_seq, decoded.header["records"], decoded.arrays, mid)


def announced(logdir: str) -> tuple:
    """The OPEN a client sends a new daemon for a writer it already had (see Producer.announcement)."""
    return open_record(logdir, purge_step=None, announced=True)


def test_messages_resent_to_a_new_daemon_are_written_once(tmp_path):
    logdir = str(tmp_path / "run")
    client = Client()
    old = Harness()
    old.run(client.message(old, 1, [open_record(logdir)]))
    old.run(*(client.message(old, mid, [scalar("loss", mid, float(mid))]) for mid in (2, 3, 4)))
    # The old daemon dies before its acknowledgements arrive: the client resends 2..4, then 5.
    new = Harness()
    new.run(client.message(new, 0, [announced(logdir)]))
    new.run(*(client.message(new, mid, [scalar("loss", mid, float(mid))]) for mid in (2, 3, 4, 5)))
    assert steps_and_values(logdir, "loss") == [(2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)]
    assert new.stats.snapshot()["records_duplicate"] == 3
    assert new.dropped() == {}
    assert new.acks[-1] == {A: 5}  # acknowledged all the same: they are on disk


def test_records_written_after_the_last_delivery_mark_are_recognised(tmp_path):
    """A crash between writing records and marking them: the identity of what is on disk says."""
    logdir = str(tmp_path / "run")
    client = Client()
    old = Harness()
    old.run(client.message(old, 1, [open_record(logdir)]))
    old.run(client.message(old, 2, [scalar("loss", 1, 1.0)]))
    old.pipeline.stop()
    assert read_history(logdir).delivered == {A: 2}
    (path,) = [os.path.join(logdir, name) for name in os.listdir(logdir)]
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:  # the mark that ended the cycle of mid 2 never made it to disk
        file.write(_without_last_record(data))
    history = read_history(logdir)
    assert history.delivered == {} and ("loss", 1, WALL + 1) in history.unmarked
    new = Harness()
    new.run(client.message(new, 0, [announced(logdir)]), client.message(new, 2, [scalar("loss", 1, 1.0)]))
    assert steps_and_values(logdir, "loss") == [(1, 1.0)]
    assert new.stats.snapshot()["records_duplicate"] == 1


def test_a_new_daemon_reads_a_run_from_its_newest_checkpoint(tmp_path):
    """Each daemon's file starts with a checkpoint of what the files before it held: a restart
    reads the newest such file and those after it, and learns what a pass over every file would."""
    logdir = str(tmp_path / "run")
    client = Client()
    first = Harness()
    first.run(client.message(first, 1, [open_record(logdir)]), client.message(first, 2, [scalar("loss", 1, 1.0)]))
    first.pipeline.stop()
    (old_path,) = [os.path.join(logdir, name) for name in os.listdir(logdir)]
    with open(old_path, "rb") as file:
        data = file.read()
    with open(old_path, "wb") as file:  # killed before its last mark: step 1 is on disk, unmarked
        file.write(_without_last_record(data))
    second = Harness()
    second.run(client.message(second, 0, [announced(logdir)]), client.message(second, 3, [scalar("acc", 4, 0.5)]))
    second.pipeline.stop()
    every_file = RunHistory()
    for name in sorted(os.listdir(logdir)):
        with open(os.path.join(logdir, name), "rb") as file:
            read_file_into(every_file, file.read())
    assert every_file.unmarked and every_file.last_steps == {"loss": 1, "acc": 4}
    assert read_history(logdir) == every_file
    with open(old_path, "wb") as file:  # the older file is not read again: its history is carried
        file.write(b"not an event file")
    assert read_history(logdir) == every_file


def _without_last_record(data: bytes) -> bytes:
    """The file's bytes without its last TFRecord (the delivery mark the cycle ended with)."""
    records = read_records(data)
    return data[: len(data) - (len(records[-1]) + 16)]


def test_a_new_daemon_continues_each_tags_step_order_from_the_files(tmp_path):
    logdir = str(tmp_path / "run")
    client = Client()
    old = Harness()
    old.run(client.message(old, 1, [open_record(logdir), scalar("loss", 10, 1.0)]))
    new = Harness()
    new.run(client.message(new, 0, [announced(logdir)]))
    new.run(client.message(new, 2, [scalar("loss", 3, 2.0), scalar("loss", 11, 3.0)]))
    assert steps_and_values(logdir, "loss") == [(10, 1.0), (11, 3.0)]
    assert new.refused == {(A, "step_out_of_order"): 1}


def test_a_job_resumed_from_a_checkpoint_shows_its_new_points(tmp_path):
    """The old job wrote steps 0..9 and is gone; the new one resumes at step 5: its points win, as
    TensorBoard shows them for tensorboardX (a new session at the first step it repeats)."""
    logdir = str(tmp_path / "run")
    first, second = Client(b"job-1"), Client(b"job-2")
    daemon = Harness()
    daemon.run(first.message(daemon, 1, [open_record(logdir)] + [scalar("loss", s, float(s)) for s in range(10)]))
    daemon.run(first.message(daemon, 2, [(RecordKind.CLOSE, 1, "", "", 0, WALL, None)]))
    daemon.run(second.message(daemon, 1, [open_record(logdir)] + [scalar("loss", s, 100.0 + s) for s in range(5, 8)]))
    assert steps_and_values(logdir, "loss") == [(s, float(s)) for s in range(5)] + [(s, 100.0 + s) for s in range(5, 8)]
    assert daemon.dropped() == {}


def test_writers_opening_a_run_together_start_no_session_among_them(tmp_path):
    """Ranks that open one run at once: the first opened it alone, so it starts a new session, but
    steps the others log after it opened are not its past. Its first step below theirs is late
    (dropped, counted), never a restart that would hide their points."""
    logdir = str(tmp_path / "run")
    first, second = Client(b"rank-0"), Client(b"rank-1")
    daemon = Harness()
    daemon.run(first.message(daemon, 1, [open_record(logdir)]), second.message(daemon, 1, [open_record(logdir)]))
    daemon.run(second.message(daemon, 2, [scalar("loss", s, float(s)) for s in (1, 3, 5)]))
    daemon.run(first.message(daemon, 2, [scalar("loss", s, float(s)) for s in (0, 2, 6)]))
    assert steps_and_values(logdir, "loss") == [(1, 1.0), (3, 3.0), (5, 5.0), (6, 6.0)]
    assert daemon.refused == {(b"rank-0", "step_out_of_order"): 2}


def test_a_writer_announced_again_continues_its_session(tmp_path):
    """The same job after a daemon restart or a fork is no resumed job: an old step is dropped."""
    logdir = str(tmp_path / "run")
    client = Client()
    daemon = Harness()
    daemon.run(client.message(daemon, 1, [open_record(logdir), scalar("loss", 5, 1.0)]))
    daemon.run(client.message(daemon, 2, [(RecordKind.CLOSE, 1, "", "", 0, WALL, None)]))
    daemon.run(client.message(daemon, 0, [announced(logdir)]))
    daemon.run(client.message(daemon, 3, [scalar("loss", 2, 2.0)]))
    assert steps_and_values(logdir, "loss") == [(5, 1.0)]
    assert daemon.refused == {(A, "step_out_of_order"): 1}


def test_a_purge_is_not_repeated_when_its_open_is_resent(tmp_path):
    logdir = str(tmp_path / "run")
    client = Client()
    old = Harness()
    old.run(client.message(old, 1, [open_record(logdir)]))
    old.run(client.message(old, 2, [scalar("loss", s, float(s)) for s in range(6)]))
    old.run(client.message(old, 3, [open_record(logdir, writer=2, purge_step=4)]))
    old.run(client.message(old, 4, [scalar("loss", 4, 40.0, writer=2), scalar("loss", 5, 50.0, writer=2)]))
    new = Harness()  # the old daemon died before acknowledging 3 and 4
    new.run(client.message(new, 0, [announced(logdir)]))
    new.run(client.message(new, 3, [open_record(logdir, writer=2, purge_step=4)]))
    new.run(client.message(new, 4, [scalar("loss", 4, 40.0, writer=2), scalar("loss", 5, 50.0, writer=2)]))
    assert steps_and_values(logdir, "loss") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0)]


def test_a_mark_of_many_clients_is_read_back_and_tensorboard_ignores_it_quietly(tmp_path, caplog):
    logdir = str(tmp_path / "run")
    events = EventFile(logdir)
    events.write_scalars("loss", np.array([WALL]), np.array([1]), np.array([0.5]), np.array([b"c" * 16], dtype=object))
    clients = {bytes([n]) * 16: 100 + n for n in range(16)}  # a mark far over 128 characters
    events.write(delivery_mark(WALL, clients))
    events.close()
    assert read_history(logdir).delivered == clients
    with caplog.at_level(logging.INFO, logger="tensorboard"):
        accumulator = EventAccumulator(logdir)
        accumulator.Reload()
    assert [(e.step, e.value) for e in accumulator.Scalars("loss")] == [(1, 0.5)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
