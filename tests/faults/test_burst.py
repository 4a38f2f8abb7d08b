"""A burst: 10 processes start at once and each logs 200 000 scalars and 50 images of 3x512x512
as fast as it can, through the one daemon they start between them. Memory stays bounded on both
sides, and every record is on disk or counted as dropped.

Bounds, and why the numbers:

- Each client runs with 64 MiB of arena and 64 MiB of array bound (`LOGGER_ARENA_BYTES`,
  `LOGGER_MAX_BUFFER_BYTES`), so it holds at most 128 MiB of arrays, plus its 200 000 scalar rows
  (about 100 bytes each, queued or in flight: 20 MB), plus 32 MiB for ZeroMQ's and msgpack's
  buffers, over what it held before logging (`ru_maxrss`). Measured: about 90 MiB.
- The daemon reads arrays from the clients' arenas without copying them: those pages are the
  clients' (its RssShmem, at most the arenas' 10 x 64 MiB). Its own memory (RssAnon) is bounded
  by its inbox (`LOGGER_DAEMON_QUEUE_RECORDS` records) and one write cycle: under 512 MiB, and
  its peak RSS, shared pages included, under 1 GiB. Measured: about 150 MiB anonymous, 500 MiB
  peak RSS.

Images are gradients (a photograph compresses about as well); noise, which PNG cannot compress,
would make the daemon write 470 MB instead of 90 MB, and take three times as long. The 2 000 000
scalars are read back with `logger_client.reader` (tested against TensorBoard's EventAccumulator
in tests/test_reader*.py), which reads them in seconds where the accumulator takes over a minute.
Faults suite: a real daemon, real processes.
"""

from __future__ import annotations

import inspect
import json
import threading

import numpy as np
import pytest
from conftest import wait_for
from daemon_cli import status_json
from test_daemon import touch

from logger_client.reader import load
from logger_client.runtime import daemon_pid

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

PROCESSES, SCALARS, IMAGES = 10, 200_000, 50
MiB = 2**20
CLIENT_BOUNDS = {"LOGGER_ARENA_BYTES": str(64 * MiB), "LOGGER_MAX_BUFFER_BYTES": str(64 * MiB)}
CLIENT_SLACK = 32 * MiB
DAEMON_ANON_BOUND, DAEMON_RSS_BOUND = 512 * MiB, 1024 * MiB


def picture(rank: int, k: int):
    """Image `k` of writer `rank`, CHW (a writer logs k = 0 and 1 in turn)."""
    y, x = np.mgrid[0:512, 0:512]
    return np.stack([(x + y + k) % 256, (2 * x + rank) % 256, (y + 3 * k) % 256]).astype(np.uint8)


WRITER = (
    inspect.getsource(picture)
    + """
import resource
import numpy as np
from logger_client import SummaryWriter
from logger_client.settings import Settings

logdir, sync, rank, scalars, images = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
writer = SummaryWriter(logdir)
pictures = [picture(rank, k) for k in range(2)]
assert writer.flush(timeout=60)
touch(f"{sync}/ready-{rank}")
wait_file(f"{sync}/go")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
every = scalars // images
for step in range(scalars):
    writer.add_scalar(f"rank{rank}/loss", step / 8, step)
    if step % every == 0:
        writer.add_image(f"rank{rank}/image", pictures[(step // every) % 2], step // every)
closed = writer.close(timeout=60)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
settings = Settings.from_env()
touch(f"{sync}/result-{rank}", json.dumps({
    "closed": closed, "stats": writer.stats(), "growth": peak - before,
    "bound": settings.arena_bytes + settings.max_buffer_bytes,
}))
"""
)


class Sampler(threading.Thread):
    """Samples a process's memory (/proc/<pid>/status) every 20 ms: the peak of each field, in bytes."""

    FIELDS = ("VmRSS", "RssAnon", "RssShmem")

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = dict.fromkeys(self.FIELDS, 0)
        self.stop = threading.Event()

    def status(self) -> dict[str, int]:
        with open(f"/proc/{self.pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        return {name: int(fields[name].split()[0]) * 1024 for name in (*self.FIELDS, "VmHWM")}

    def run(self) -> None:
        while not self.stop.wait(0.02):
            sample = self.status()
            for name in self.FIELDS:
                self.peak[name] = max(self.peak[name], sample[name])


def test_ten_processes_in_a_burst_stay_bounded_and_lose_nothing_uncounted(runtime_dir, logdir, spawn, tmp_path):
    writers = [spawn(WRITER, logdir, tmp_path, rank, SCALARS, IMAGES, env=CLIENT_BOUNDS) for rank in range(PROCESSES)]
    wait_for(
        lambda: (
            all((tmp_path / f"ready-{rank}").exists() for rank in range(PROCESSES))
            or any(w.process.poll() is not None for w in writers)
        ),
        timeout_s=60,
        message="every writer to be connected",
    )
    assert all(w.process.poll() is None for w in writers), [w.output() for w in writers if w.process.poll()]
    pid = daemon_pid(runtime_dir)
    assert pid is not None
    assert sorted(c["pid"] for c in status_json()["clients"]) == sorted(w.pid for w in writers)  # one daemon
    sampler = Sampler(pid)
    sampler.start()
    touch(tmp_path / "go")
    try:
        results = []
        for rank, writer in enumerate(writers):
            writer.assert_ok(timeout_s=90)
            results.append(json.loads((tmp_path / f"result-{rank}").read_text()))
        high_water = sampler.status()["VmHWM"]
    finally:
        sampler.stop.set()
        sampler.join()

    # Memory: the daemon's own, and its peak with the clients' arena pages it maps.
    assert sampler.peak["RssAnon"] < DAEMON_ANON_BOUND, sampler.peak
    assert high_water < DAEMON_RSS_BOUND, high_water
    assert sampler.peak["RssShmem"] <= sum(r["stats"]["arena_bytes"] for r in results), sampler.peak
    row_bytes = 100 * SCALARS
    for rank, result in enumerate(results):
        assert result["growth"] < result["bound"] + row_bytes + CLIENT_SLACK, (rank, result["growth"] / MiB)

    # Every record on disk or counted; the only drop this allows is the client's array bound.
    data = load(logdir)
    assert data.damage == [] and data.purged == 0
    for rank, result in enumerate(results):
        stats = result["stats"]
        assert set(stats["records_dropped"]) <= {"client_buffer_full"}, (rank, stats)
        assert result["closed"] is (stats["records_dropped"] == {}), (rank, result)
        assert stats["records_pending"] == 0
        steps = data.scalars[(".", f"rank{rank}/loss")].step
        assert np.array_equal(steps, np.arange(SCALARS)), rank
        images = data.images.get((".", f"rank{rank}/image"), [])
        assert len(images) + stats["records_dropped"].get("client_buffer_full", 0) == IMAGES, rank
        assert [image.step for image in images] == sorted({image.step for image in images}), rank
        for image in images[:2]:  # read from the client's arena under load: the pixels it logged
            assert image.pixels is not None
            assert np.array_equal(image.pixels, picture(rank, image.step).transpose(1, 2, 0)), (rank, image.step)
        assert stats["records_written"] == SCALARS + len(images), (rank, stats)
