"""A full disk under a real daemon: it stays up, holds what the disk refuses within its bound
(`LOGGER_DAEMON_HELD_BYTES`), acknowledges none of it meanwhile, drops (and counts, as `io_error`,
to the writer) only what exceeds the bound, and writes the rest, in order and once, when room
returns; if it never does, closing the writer counts what was held. Every file stays valid to its
end: no torn record.

The small disk is a 2 MiB tmpfs where the tests may mount one (root), and always a 2 MiB file-size
limit on the daemon process (RLIMIT_FSIZE: writes past it fail with EFBIG), raised with prlimit to
give room back. Faults suite: a real daemon process, files read back with TensorBoard's loader.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import start_daemon, wait_for
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logger_client import SummaryWriter
from logger_client.reader import load
from logger_daemon.tfrecord import read_records

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

CAPACITY = 2 * 2**20
#: The daemon's bound on what it holds: less than half of what the test logs past the disk's room.
HELD_BYTES = 2 * 2**20
#: The event file's write buffer, which the bound may be exceeded by when the disk first refuses.
WRITE_BUFFER = 2**20
STEPS = 20_000
IMAGE_EVERY = 40  # 500 images of 64x64 noise, about 12 KiB each as PNG


@dataclass
class SmallDisk:
    """A log directory on a disk of CAPACITY bytes; `grow(daemon_pid)` gives it room."""

    logdir: str
    preexec: Callable[[], None] | None
    grow: Callable[[int], None]


def _limit_file_size() -> None:  # in the daemon's process, before exec
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (CAPACITY, hard))


def _unlimit_file_size(pid: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))


@pytest.fixture(params=["file_size_limit", "tmpfs"])
def small_disk(request: pytest.FixtureRequest, tmp_path) -> Iterator[SmallDisk]:
    if request.param == "file_size_limit":
        logdir = tmp_path / "runs"
        logdir.mkdir()
        yield SmallDisk(str(logdir), _limit_file_size, _unlimit_file_size)
        return
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={CAPACITY}", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        (mount / "runs").mkdir()

        def grow(_pid: int) -> None:
            subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)

        yield SmallDisk(str(mount / "runs"), None, grow)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def disk_daemon(runtime_dir: str, small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen]:
    """A daemon started by hand, its log directory on the small disk."""
    monkeypatch.setenv("LOGGER_DAEMON_HELD_BYTES", str(HELD_BYTES))
    with start_daemon(runtime_dir, preexec_fn=small_disk.preexec) as process:
        yield process


def status() -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "logger_daemon", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def log_past_the_disk(writer: SummaryWriter) -> int:
    """Logs STEPS scalars and an image every IMAGE_EVERY steps (about 7 MB as written); the number
    of records logged."""
    rng = np.random.default_rng(11)
    for step in range(STEPS):
        writer.add_scalar("loss", float(step), step)
        if step % IMAGE_EVERY == 0:
            writer.add_image("noise", rng.integers(0, 256, (3, 64, 64), dtype=np.uint8), step)
    return STEPS + STEPS // IMAGE_EVERY


def wait_until_refused(writer: SummaryWriter, logged: int) -> dict:
    """Waits until the daemon has handled every record logged (written, held or dropped), some of
    them refused by the disk, and the writer has heard of every drop; the daemon's status then."""

    def settled() -> dict:
        now = status()
        dropped = now["records_dropped"].get("io_error", 0)
        handled = now["records_written"] + now["records_held"] + dropped == logged
        heard = writer.stats()["records_dropped"].get("io_error", 0) == dropped
        return now if handled and heard and now["write_error"] and dropped else {}

    return wait_for(settled, timeout_s=20, interval_s=0.2, message="the daemon to handle every record")


def on_disk(logdir: str) -> tuple[list[int], list[int]]:
    """The steps of the scalars and images TensorBoard reads, after checking every event file holds
    only whole records with valid CRCs, to its end."""
    files = sorted(name for name in os.listdir(logdir) if name.startswith("events.out.tfevents."))
    assert files
    for name in files:
        with open(os.path.join(logdir, name), "rb") as file:
            blob = file.read()
        assert sum(16 + len(record) for record in read_records(blob)) == len(blob), f"{name} has a torn record"
    assert load(logdir).damage == []
    accumulator = EventAccumulator(logdir, size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    scalars = [e.step for e in accumulator.Scalars("loss")] if "loss" in tags["scalars"] else []
    images = [e.step for e in accumulator.Images("noise")] if "noise" in tags["images"] else []
    return scalars, images


def assert_once_in_order(steps: list[int], logged: range) -> None:
    assert steps == sorted(set(steps)), "a step written twice or out of order"
    assert set(steps) <= set(logged)


def test_a_full_disk_holds_what_it_can_counts_the_rest_and_writes_the_rest_once_room_returns(
    small_disk, disk_daemon, runtime_dir
):
    writer = SummaryWriter(small_disk.logdir)
    logged = log_past_the_disk(writer)
    held = wait_until_refused(writer, logged)

    assert disk_daemon.poll() is None  # the daemon is up
    io_errors = held["records_dropped"]["io_error"]
    assert held["records_dropped"] == {"io_error": io_errors}
    assert held["records_held"] > 0
    # Dropped only past the bound: what it holds fills the bound (and at most the write buffer
    # of the moment the disk first refused, past it).
    assert HELD_BYTES - 64 * 1024 <= held["bytes_held"] <= HELD_BYTES + WRITE_BUFFER + 64 * 1024
    # The writer sees it too: the drops, counted as they happened, why, and what waits.
    stats = writer.stats()
    assert stats["records_dropped"] == {"io_error": io_errors}
    assert stats["write_error"] and stats["records_pending"] >= held["records_held"]
    assert writer.flush(timeout=1.0) is False  # nothing held is acknowledged

    small_disk.grow(disk_daemon.pid)
    assert writer.flush(timeout=20) is False  # everything written now, but records were dropped
    assert writer.flush(timeout=20) is True
    after = status()
    assert after["write_error"] is None and after["records_held"] == 0 and after["bytes_held"] == 0
    assert after["records_dropped"] == {"io_error": io_errors}  # nothing more dropped
    stats = writer.stats()
    assert stats["write_error"] is None and stats["records_pending"] == 0
    assert writer.close(timeout=20) is True

    scalars, images = on_disk(small_disk.logdir)
    assert_once_in_order(scalars, range(STEPS))
    assert_once_in_order(images, range(0, STEPS, IMAGE_EVERY))
    assert len(scalars) + len(images) + io_errors == logged  # logged = on disk + counted drops
    assert writer.stats()["records_written"] == len(scalars) + len(images)
    assert disk_daemon.poll() is None


def test_when_room_never_returns_closing_the_writer_counts_what_was_held(small_disk, disk_daemon, runtime_dir):
    writer = SummaryWriter(small_disk.logdir)
    logged = log_past_the_disk(writer)
    held = wait_until_refused(writer, logged)
    assert held["records_held"] > 0

    assert writer.close(timeout=20) is False  # its file closes: what it held is given up, counted
    after = status()
    assert after["records_held"] == 0 and after["write_error"] is None
    io_errors = after["records_dropped"]["io_error"]
    assert io_errors == held["records_dropped"]["io_error"] + held["records_held"]
    stats = writer.stats()
    assert stats["records_dropped"] == {"io_error": io_errors} and stats["records_pending"] == 0

    scalars, images = on_disk(small_disk.logdir)  # valid to its end
    assert_once_in_order(scalars, range(STEPS))
    assert_once_in_order(images, range(0, STEPS, IMAGE_EVERY))
    assert len(scalars) + len(images) + io_errors == logged  # logged = on disk + counted drops
    assert stats["records_written"] == len(scalars) + len(images)
    assert disk_daemon.poll() is None
