"""Remote log directories (fsspec URLs), in process: the daemon's pipeline staging a `memory://`
run, rolling segments by size and by time, uploading them (through a store that fails on demand),
holding a closing client's acknowledgement until its tail is uploaded, and a restarted daemon
that finds what the last one left. The real S3 API is in test_remote_s3.py."""

from __future__ import annotations

import itertools
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np
import pytest
from conftest import wait_for
from fsspec.implementations.memory import MemoryFileSystem
from fsspec.registry import _registry as loaded_backends
from test_disk_refusals import FakeDisk
from test_pipeline import Harness, open_record, scalar
from test_projector import PipelineRun, files_under, run_through_pipeline

from logger_client import SummaryWriter, load
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import RecordKind
from logger_client.settings import Settings
from logger_daemon import event_file
from logger_daemon.history import MARK_PREFIX
from logger_daemon.intake import Work
from logger_daemon.pipeline import Pipeline
from logger_daemon.protos.event_pb2 import Event
from logger_daemon.remote import Remotes, retry_delay
from logger_daemon.tfrecord import read_records


class FlakyFileSystem(MemoryFileSystem):
    """fsspec's in-memory store, whose uploads fail while `failing` says so."""

    protocol = "flaky"
    failing = 0  # uploads still to fail; -1: every one
    tries = 0

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return super()._strip_protocol(path.removeprefix("flaky://"))

    def put_file(self, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> None:
        FlakyFileSystem.tries += 1
        if FlakyFileSystem.failing:
            FlakyFileSystem.failing -= FlakyFileSystem.failing > 0
            raise ConnectionError("the store is down")
        super().put_file(lpath, rpath, *args, **kwargs)


fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)


class RemoteHarness(Harness):
    """A pipeline with remote log directories, and what its held acknowledgements reported."""

    def __init__(self, staging: str, **settings: Any) -> None:
        super().__init__()
        self.not_uploaded: list[dict[bytes, int]] = []
        config = {"segment_bytes": 1 << 20, "segment_s": 3600.0, "upload_retry_max_s": 0.05, **settings}
        self.remotes = Remotes(Settings(runtime_dir=staging, **config))
        self.pipeline = Pipeline(self.stats, 30.0, self._on_written, remotes=self.remotes)

    def _on_written(self, acks: dict[bytes, int], drops: dict[bytes, Counter], not_uploaded: dict[bytes, int]) -> None:
        super()._on_written(acks, drops, not_uploaded)
        if not_uploaded:
            self.not_uploaded.append(not_uploaded)

    def acked(self, client: bytes) -> int:
        return max((acks[client] for acks in self.acks if client in acks), default=0)

    def uploads(self) -> dict[str, int]:
        return self.remotes.counts()

    def staged(self) -> list[str]:
        return [os.path.join(d, n) for d, _, names in os.walk(self.remotes.staging_dir) for n in names]


@pytest.fixture(autouse=True)
def _healthy_store() -> Iterator[None]:
    FlakyFileSystem.failing = FlakyFileSystem.tries = 0
    yield
    FlakyFileSystem.failing = 0


@pytest.fixture
def url() -> str:
    return f"memory://bucket-{uuid.uuid4().hex[:8]}/run"


def close_record(writer: int = 1) -> tuple:
    return (RecordKind.CLOSE, writer, "", "", 0, 0.0, None)


def objects(url: str) -> dict[str, bytes]:
    fs, path = fsspec.core.url_to_fs(url)
    return {os.path.basename(p): fs.cat_file(p) for p in sorted(fs.find(path))}


def events_of(data: bytes) -> list[Event]:
    return [Event.FromString(record) for record in read_records(data)]


def test_a_url_logdir_is_staged_then_uploaded_in_complete_segments(tmp_path, url):
    h = RemoteHarness(str(tmp_path), segment_bytes=600)
    h.run(h.work(b"a", [open_record(url)]))
    for step in range(40):
        h.run(h.work(b"a", [scalar("loss", step, float(step))]))
        h.remotes.roll_due()  # the write thread does this after each cycle
    h.run(h.work(b"a", [close_record()]))
    assert h.remotes.uploader.drain(10)
    stored = objects(url)
    assert len(stored) > 3, stored.keys()  # rolled by size, more than once
    assert h.staged() == []  # each staged file deleted once the store had it
    for data in stored.values():  # each a complete event file of its own
        events = events_of(data)
        assert events[0].file_version == "brain.Event:2"
        assert events[1].log_message.message.startswith(MARK_PREFIX)
    counts = h.uploads()
    assert counts["segments_uploaded"] == len(stored) and counts["bytes_uploaded"] == sum(map(len, stored.values()))
    assert counts["segments_pending"] == 0 and counts["upload_failures"] == 0
    assert load(url).scalars[(".", "loss")].step.tolist() == list(range(40))
    assert h.dropped() == {}


def test_a_segment_rolls_by_time_without_more_writes(tmp_path, url):
    h = RemoteHarness(str(tmp_path), segment_s=0.2)
    h.run(h.work(b"a", [open_record(url), scalar("loss", 1, 1.0)]))
    assert objects(url) == {}

    def rolled() -> bool:
        h.remotes.roll_due()
        return h.uploads()["segments_uploaded"] == 1

    wait_for(rolled, timeout_s=10, message="the segment to roll by age and upload")
    assert load(url).scalars[(".", "loss")].value.tolist() == [1.0]


def test_a_failed_upload_keeps_the_file_is_counted_and_retried_until_it_is_stored(tmp_path):
    url = f"flaky://bucket-{uuid.uuid4().hex[:8]}/run"
    FlakyFileSystem.failing = 3
    h = RemoteHarness(str(tmp_path))
    h.run(h.work(b"a", [open_record(url), scalar("loss", 1, 1.0)]))
    h.pipeline._runs.close_writer((b"a", 1))  # the run closes: its tail is queued
    (staged,) = h.staged()
    with open(staged, "rb") as file:
        data = file.read()
    wait_for(lambda: h.uploads()["segments_uploaded"] == 1, timeout_s=10, message="the upload to succeed")
    assert h.uploads()["upload_failures"] == 3 and FlakyFileSystem.tries == 4
    assert objects(url) == {os.path.basename(staged): data}  # byte for byte, once
    assert not os.path.exists(staged)


def test_failed_uploads_back_off_doubling_up_to_the_maximum(tmp_path):
    assert [retry_delay(n, 30.0) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert retry_delay(10_000, 30.0) == 30.0  # a store down for days: still the maximum
    url = f"flaky://bucket-{uuid.uuid4().hex[:8]}/run"
    FlakyFileSystem.failing = 2
    h = RemoteHarness(str(tmp_path), upload_retry_max_s=0.25)  # the doubling capped at once: a short test
    tries: list[float] = []
    put = FlakyFileSystem.put_file

    def timed(self: FlakyFileSystem, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> None:
        tries.append(time.monotonic())
        put(self, lpath, rpath, *args, **kwargs)

    FlakyFileSystem.put_file = timed  # type: ignore[method-assign]
    try:
        h.run(h.work(b"a", [open_record(url), scalar("loss", 1, 1.0)]))
        h.pipeline._runs.close_writer((b"a", 1))
        wait_for(lambda: h.uploads()["segments_uploaded"] == 1, timeout_s=15, message="the third try to succeed")
    finally:
        FlakyFileSystem.put_file = put  # type: ignore[method-assign]
    assert len(tries) == 3 and h.uploads()["upload_failures"] == 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
    assert gaps[0] >= retry_delay(1, 0.25) and gaps[1] >= retry_delay(2, 0.25), gaps  # each try waited its delay


def test_a_segment_the_staging_disk_tore_is_uploaded_with_the_file_that_continues_it(tmp_path, url, monkeypatch):
    disk = FakeDisk(2000)  # fills up within the first message
    disk.cut_fails = True  # and the torn record cannot be cut off: a new file continues the run
    monkeypatch.setattr(event_file, "create_exclusive", disk.create)
    h = RemoteHarness(str(tmp_path))
    h.run(h.work(b"a", [open_record(url)] + [scalar("loss", step, float(step)) for step in range(100)]))
    (torn,) = h.staged()
    disk.free = 1 << 20
    h.run(h.work(b"a", [close_record()]))  # the held records go into a new file; the close rolls
    assert h.remotes.uploader.drain(10)
    stored = objects(url)
    assert len(stored) == 2 and os.path.basename(torn) in stored  # both staged files, once each
    assert h.staged() == []
    assert load(url).scalars[(".", "loss")].step.tolist() == list(range(100))
    assert h.dropped() == {}


def test_a_segment_the_staging_disk_holds_up_is_not_rolled_until_its_records_are_written(tmp_path, url, monkeypatch):
    disk = FakeDisk(2000)
    monkeypatch.setattr(event_file, "create_exclusive", disk.create)
    h = RemoteHarness(str(tmp_path), segment_s=0.0)  # every segment is due at once
    h.run(h.work(b"a", [open_record(url)] + [scalar("loss", step, float(step)) for step in range(100)]))
    assert h.acked(b"a") == 0  # held in memory: the staging disk is full
    h.remotes.roll_due()  # due, but rolling would close the file and give up what it holds
    assert h.uploads()["segments_pending"] == 0 and h.dropped() == {}
    disk.free = 1 << 20
    h.run(h.work(b"a", [close_record()]))
    assert h.remotes.uploader.drain(10)
    assert h.stats.snapshot()["records_written"] == 100 and h.dropped() == {}
    assert load(url).scalars[(".", "loss")].step.tolist() == list(range(100))


def test_new_segments_sort_after_the_newest_file_in_the_store(tmp_path, url):
    h = RemoteHarness(str(tmp_path / "a"))
    h.run(h.work(b"a", [open_record(url), scalar("loss", 0, 0.0), close_record()]))
    assert h.remotes.uploader.drain(10)
    fs, path = fsspec.core.url_to_fs(url)
    (uploaded,) = fs.find(path)
    # As another node's daemon would name it whose clock is ahead: it sorts after this second.
    ahead = f"events.out.tfevents.{int(time.time()) + 100:010d}.othernode.1.00000000"
    fs.mv(uploaded, f"{path}/{ahead}")
    later = RemoteHarness(str(tmp_path / "b"))  # a new daemon: nothing staged, the store's history
    later.run(later.work(b"b", [open_record(url), scalar("loss", 1, 1.0), close_record()]))
    assert later.remotes.uploader.drain(10)
    names = sorted(objects(url))
    assert len(names) == 2 and names[0] == ahead  # TensorBoard reads by name: the new file after
    assert load(url).scalars[(".", "loss")].step.tolist() == [0, 1]


def test_segments_of_a_directory_are_uploaded_in_name_order(tmp_path):
    url = f"flaky://bucket-{uuid.uuid4().hex[:8]}/run"
    FlakyFileSystem.failing = 2
    h = RemoteHarness(str(tmp_path), segment_bytes=1)
    h.run(h.work(b"a", [open_record(url)]))
    order: list[str] = []
    put = FlakyFileSystem.put_file

    def recording(self: FlakyFileSystem, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> None:
        put(self, lpath, rpath, *args, **kwargs)
        order.append(os.path.basename(rpath))

    FlakyFileSystem.put_file = recording  # type: ignore[method-assign]
    try:
        for step in range(5):
            h.run(h.work(b"a", [scalar("loss", step, float(step))]))
            h.remotes.roll_due()
        wait_for(lambda: h.uploads()["segments_uploaded"] == 5, timeout_s=10, message="five uploads")
    finally:
        FlakyFileSystem.put_file = put  # type: ignore[method-assign]
    assert order == sorted(order) and len(order) == 5


def test_closing_holds_the_acknowledgement_until_the_tail_is_uploaded(tmp_path):
    url = f"flaky://bucket-{uuid.uuid4().hex[:8]}/run"
    FlakyFileSystem.failing = -1
    h = RemoteHarness(str(tmp_path), upload_wait_s=60.0)
    h.pipeline.start()
    try:
        h.pipeline.put(h.work(b"a", [open_record(url), scalar("loss", 1, 1.0)]))
        wait_for(lambda: h.acked(b"a") == 1, message="the first message acknowledged")
        h.pipeline.put(h.work(b"a", [close_record()]))
        h.pipeline.put(Work(b"a", h.next_seq(b"a"), flush=True))
        wait_for(lambda: h.uploads()["upload_failures"] >= 2, timeout_s=10, message="failed uploads")
        assert h.acked(b"a") == 1  # the close and the flush after it wait for the upload
        FlakyFileSystem.failing = 0
        wait_for(lambda: h.acked(b"a") == 3, timeout_s=10, message="the held acknowledgement")
        assert h.not_uploaded == [] and len(objects(url)) == 1
    finally:
        h.pipeline.stop()


def test_a_held_acknowledgement_ends_at_its_deadline_saying_what_is_not_uploaded(tmp_path):
    url = f"flaky://bucket-{uuid.uuid4().hex[:8]}/run"
    FlakyFileSystem.failing = -1
    h = RemoteHarness(str(tmp_path), upload_wait_s=0.5)
    h.pipeline.start()
    try:
        h.pipeline.put(h.work(b"a", [open_record(url), scalar("loss", 1, 1.0), close_record()]))
        wait_for(lambda: h.acked(b"a") == 1, timeout_s=10, message="the acknowledgement at the deadline")
        assert h.not_uploaded == [{b"a": 1}]
        assert len(h.staged()) == 1 and objects(url) == {}  # kept until it can be uploaded
    finally:
        FlakyFileSystem.failing = 0  # so that stopping does not wait out its upload bound too
        h.pipeline.stop()


def test_a_restarted_daemon_uploads_what_its_predecessor_left_and_writes_nothing_twice(tmp_path):
    url = f"flaky://bucket-{uuid.uuid4().hex[:8]}/run"
    staging = str(tmp_path)
    FlakyFileSystem.failing = -1
    first = RemoteHarness(staging)
    messages = [[open_record(url)]] + [[scalar("loss", step, float(step))] for step in range(1, 6)]
    for records in messages:
        first.run(first.work(b"a", records))
    first.pipeline._runs.close()  # the daemon goes away with the store down: all of it stays staged
    first.remotes.stop(0)
    assert len(first.staged()) == 1

    FlakyFileSystem.failing = 0
    second = RemoteHarness(staging)  # a new daemon, the same staging directory
    for records in messages:  # the client resends what was not acknowledged, with the same ids
        second.run(second.work(b"a", records))
    second.run(second.work(b"a", [scalar("loss", 6, 6.0), close_record()]))
    assert second.remotes.uploader.drain(10)
    assert second.stats.snapshot()["records_duplicate"] == 5
    assert load(url).scalars[(".", "loss")].step.tolist() == [1, 2, 3, 4, 5, 6]
    assert second.staged() == [] and len(objects(url)) == 2

    third = RemoteHarness(staging)  # nothing staged: what the store holds is the history
    third.run(third.work(b"a", messages[0]), third.work(b"a", [scalar("loss", 3, 9.0)]))
    third.run(third.work(b"a", [close_record()]))
    assert third.stats.snapshot()["records_duplicate"] == 1
    assert load(url).scalars[(".", "loss")].step.tolist() == [1, 2, 3, 4, 5, 6]


def test_projector_files_beside_a_remote_run_are_uploaded_and_stay_staged(tmp_path, url):
    transport = InMemoryTransport()
    writer = SummaryWriter(url, transport=transport)
    writer.add_embedding(np.arange(12.0).reshape(4, 3), metadata=list("abcd"), global_step=1, tag="emb")
    run = PipelineRun()
    remotes = Remotes(Settings(runtime_dir=str(tmp_path)))
    run.pipeline = Pipeline(run.stats, 30.0, run._on_written, remotes=remotes)
    run_through_pipeline(transport, run)
    run.pipeline.stop()  # closes the run: its tail segment and the projector's files go up
    (root,) = os.listdir(remotes.staging_dir)
    side = files_under(os.path.join(remotes.staging_dir, root))  # kept: the projector appends to its config
    assert {"projector_config.pbtxt", "00001/emb/tensors.tsv", "00001/emb/metadata.tsv"} <= set(side)
    fs, path = fsspec.core.url_to_fs(url)
    stored = {os.path.relpath(p, path): fs.cat_file(p) for p in fs.find(path) if "tfevents" not in p}
    assert stored == side


def test_the_daemon_refuses_a_url_it_has_no_backend_for(tmp_path):
    h = RemoteHarness(str(tmp_path))
    h.run(h.work(b"a", [open_record("nosuchprotocol://bucket/run"), scalar("loss", 1, 1.0)]))
    assert h.dropped() == {"bad_logdir": 1, "unknown_writer": 1}
    assert h.staged() == []


def test_a_url_without_its_backend_fails_at_the_constructor_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if s3fs were not installed
    # nor ever imported here: fsspec keeps the classes of backends it loaded (other tests use s3fs)
    monkeypatch.delitem(loaded_backends, "s3", raising=False)
    with pytest.raises(ImportError, match=r"s3:// log directories need s3fs: pip install s3fs"):
        SummaryWriter("s3://bucket/run")
    assert os.listdir(tmp_path) == []  # never a local directory named "s3:"


def test_a_url_without_fsspec_fails_at_the_constructor_naming_both_packages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if fsspec were not installed
    monkeypatch.setitem(sys.modules, "fsspec.registry", None)
    with pytest.raises(ImportError, match=r"gs:// log directories need fsspec and gcsfs: pip install fsspec gcsfs"):
        SummaryWriter("gs://bucket/run")
    assert os.listdir(tmp_path) == []


def test_a_url_of_a_protocol_fsspec_does_not_know_is_refused_at_the_constructor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="nosuchprotocol:// is not a protocol fsspec knows"):
        SummaryWriter("nosuchprotocol://bucket/run")
    assert os.listdir(tmp_path) == []


def test_storage_options_must_be_plain_data(tmp_path):
    with pytest.raises(TypeError, match="storage_options must hold plain data"):
        SummaryWriter("memory://bucket/run", write_to_disk=False, storage_options={"session": object()})
    with pytest.raises(TypeError, match="storage_options must be a dict"):
        SummaryWriter("memory://bucket/run", write_to_disk=False, storage_options=["anon"])  # type: ignore[arg-type]
