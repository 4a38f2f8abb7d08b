"""Remote log directories against a real S3 API on loopback: moto's server, s3fs in the daemon and
in the reader, a real daemon process. The daemon finds the endpoint and credentials as a user's
would: in the standard AWS environment variables it inherits.

What is checked: the objects are complete event files, equal byte for byte to the segments staged
locally; our reader and TensorBoard's loader read the `s3://` directory;
an outage of the store for 10 seconds loses nothing (logged = in the store, zero drops), its
failed tries are counted in `logger-daemon status` and `writer.stats()`; a daemon killed with a
segment staged leaves it on disk, and the daemon its client starts next uploads it, byte for byte,
once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import s3fs
from conftest import start_daemon, wait_for
from moto.server import ThreadedMotoServer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logger_client import SummaryWriter, load
from logger_client.protocol import MessageKind
from logger_daemon.cli import request
from logger_daemon.protos.event_pb2 import Event
from logger_daemon.tfrecord import read_records

pytestmark = pytest.mark.e2e


class S3:
    """moto's S3 server on a free loopback port; stopped and started again on the same port (its
    buckets live in this process, so they outlast a stop)."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = f"logs-{uuid.uuid4().hex[:12]}"  # moto keeps buckets for the process's life
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def options(self) -> dict[str, Any]:
        """fsspec's options naming this endpoint (the credentials are in the environment)."""
        return {"client_kwargs": {"endpoint_url": self.endpoint}}

    def fs(self) -> s3fs.S3FileSystem:
        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options())


@pytest.fixture
def s3(runtime_dir: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """A bucket on a loopback S3 server; credentials in the environment the daemon will inherit."""
    server = S3()
    server.start()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "LOGGER_SEGMENT_BYTES": "16384",
        "LOGGER_UPLOAD_RETRY_MAX_S": "1",
    }.items():
        monkeypatch.setenv(name, value)
    server.fs().mkdir(server.bucket)
    try:
        yield server
    finally:
        server.stop()


def status(runtime_dir: str) -> dict[str, Any]:
    reply = request(runtime_dir, MessageKind.STATUS, 10.0)
    assert reply is not None, "the daemon did not answer"
    return reply


def objects(fs: s3fs.S3FileSystem, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {path.removeprefix(prefix + "/"): fs.cat_file(path) for path in sorted(fs.find(prefix))}


def staged(runtime_dir: str) -> dict[str, bytes]:
    found = {}
    for directory, _, names in os.walk(os.path.join(runtime_dir, "staging")):
        for name in names:
            with open(os.path.join(directory, name), "rb") as file:
                found[name] = file.read()
    return found


def tensorboard_reads(url: str, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> EventAccumulator:
    """TensorBoard's loader on the `s3://` URL itself: its S3 filesystem (boto3) finds the endpoint
    in `AWS_ENDPOINT_URL`, as a user's TensorBoard would."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    accumulator = EventAccumulator(url, size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_an_s3_logdir_is_uploaded_in_complete_segments_and_read_back(s3, runtime_dir, monkeypatch):
    with start_daemon(runtime_dir):
        writer = SummaryWriter(f"s3://{s3.bucket}/exp/run", storage_options=s3.options())  # the endpoint
        assert not os.path.exists("s3:")
        rng = np.random.default_rng(0)
        for step in range(2000):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
            if step % 200 == 0:
                writer.add_histogram("weights", rng.normal(size=1000), step)
                writer.add_image("sample", rng.integers(0, 255, (3, 8, 8), dtype=np.uint8), step)
                writer.add_text("note", f"step {step}", step)
            if step % 250 == 249:
                assert writer.flush(timeout=20)  # a segment rolls at the end of a write cycle past 16 KiB
        assert writer.close(timeout=30)  # True: the tail is in the store, not only staged
        counts = status(runtime_dir)["uploads"]
        stats = writer.stats()

    stored = objects(s3.fs(), f"{s3.bucket}/exp/run")
    assert len(stored) >= 3, list(stored)  # rolled at 16 KiB
    for name, content in stored.items():
        assert name.startswith("events.out.tfevents."), name
        assert Event.FromString(read_records(content)[0]).file_version == "brain.Event:2"
    assert counts["segments_uploaded"] == len(stored) and counts["bytes_uploaded"] == sum(map(len, stored.values()))
    assert counts["segments_pending"] == 0 and counts["upload_failures"] == 0
    assert staged(runtime_dir) == {}  # deleted once uploaded
    assert stats["records_dropped"] == {} and stats["uploads"]["segments_uploaded"] == len(stored)

    data = load(f"s3://{s3.bucket}/exp/run", storage_options=s3.options())  # our reader, through s3fs
    assert data.scalars[(".", "loss")].step.tolist() == list(range(2000))
    assert len(data.histograms[(".", "weights")]) == 10 and len(data.images[(".", "sample")]) == 10
    assert [t.text for t in data.text[(".", "note/text_summary")]] == [f"step {s}" for s in range(0, 2000, 200)]

    accumulator = tensorboard_reads(f"s3://{s3.bucket}/exp/run", s3.endpoint, monkeypatch)
    assert [e.step for e in accumulator.Scalars("loss")] == list(range(2000))
    assert len(accumulator.Histograms("weights")) == 10 and len(accumulator.Images("sample")) == 10


def test_an_upload_outage_of_ten_seconds_loses_nothing(s3, runtime_dir, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # the endpoint as the environment's, this time
    monkeypatch.setenv("LOGGER_SEGMENT_S", "1")  # roll (and try to upload) every second of the outage
    monkeypatch.setenv("LOGGER_UPLOAD_WAIT_S", "2")
    prefix = f"{s3.bucket}/outage"
    with start_daemon(runtime_dir):
        writer = SummaryWriter(f"s3://{prefix}")
        for step in range(1000):
            writer.add_scalar("loss", float(step), step)
        assert writer.flush(timeout=20)
        s3.stop()
        down_at = time.monotonic()
        for chunk in range(1, 5):  # logging goes on while the store is down
            for step in range(1000 * chunk, 1000 * (chunk + 1)):
                writer.add_scalar("loss", float(step), step)
            assert writer.flush(timeout=20)  # True: fsynced in the staging directory
        wait_for(
            lambda: status(runtime_dir)["uploads"]["upload_failures"] >= 1,
            timeout_s=20,
            message="an upload to fail",
        )
        assert not writer.close(timeout=20)  # the tail is staged, not in the store: close says so
        kept = staged(runtime_dir)  # every segment closed now, kept on disk
        assert kept and status(runtime_dir)["uploads"]["segments_pending"] == len(kept)
        text = subprocess.run(
            [sys.executable, "-m", "logger_daemon", "status"], capture_output=True, text=True, timeout=30
        ).stdout
        assert f"{len(kept)} staged" in text and "failed attempt(s)" in text, text
        stats = writer.stats()
        assert stats["uploads"]["upload_failures"] >= 1 and stats["records_dropped"] == {}
        wait_for(lambda: time.monotonic() - down_at >= 10, timeout_s=15, message="ten seconds of outage")
        s3.start()
        wait_for(
            lambda: status(runtime_dir)["uploads"]["segments_pending"] == 0,
            timeout_s=30,
            message="the staged segments to be uploaded",
        )
        final = status(runtime_dir)

    stored = objects(s3.fs(), prefix)
    for name, content in kept.items():  # the objects are the staged segments, byte for byte
        assert stored[name] == content, name
    assert staged(runtime_dir) == {}
    assert final["uploads"]["segments_uploaded"] == len(stored)  # each once
    assert final["records_dropped"] == {} and final["records_written"] == 5000
    steps = load(f"s3://{prefix}", storage_options=s3.options()).scalars[(".", "loss")].step
    assert steps.tolist() == list(range(5000))  # logged = in the store + 0 drops
    accumulator = tensorboard_reads(f"s3://{prefix}", s3.endpoint, monkeypatch)
    assert len(accumulator.Scalars("loss")) == 5000


def test_a_killed_daemons_staged_segment_is_uploaded_by_the_next_daemon(s3, runtime_dir, monkeypatch):
    monkeypatch.setenv("LOGGER_SEGMENT_BYTES", str(1 << 20))  # no roll before the kill
    url = f"s3://{s3.bucket}/killed"
    with start_daemon(runtime_dir) as daemon:
        writer = SummaryWriter(url, storage_options=s3.options())
        for step in range(1000):
            writer.add_scalar("loss", float(step), step)
        assert writer.flush(timeout=20)  # fsynced in staging
        assert status(runtime_dir)["uploads"]["segments_uploaded"] == 0
        daemon.kill()  # SIGKILL: its open segment is never rolled, let alone uploaded
        daemon.wait(10)
        left = staged(runtime_dir)
        assert len(left) == 1  # the open segment, kept on disk
        for step in range(1000, 2000):  # the client starts the next daemon, which opens the URL again
            writer.add_scalar("loss", float(step), step)
        assert writer.close(timeout=30)  # the next daemon uploaded the dead one's segment, then its own
        final = status(runtime_dir)

    stored = objects(s3.fs(), f"{s3.bucket}/killed")
    (name, content) = left.popitem()
    assert stored[name] == content  # uploaded as the dead daemon left it, byte for byte
    assert staged(runtime_dir) == {}
    assert final["uploads"]["segments_uploaded"] == len(stored) == 2  # each sent once
    assert final["records_dropped"] == {} and final["records_duplicate"] == 0
    steps = load(url, storage_options=s3.options()).scalars[(".", "loss")].step
    assert steps.tolist() == list(range(2000))  # logged = in the store, once each
