"""The daemon frozen (SIGSTOP) for 10 s while two processes log at a training pace: calls keep
their usual cost, client memory stays within its bounds, what the bounds cannot hold is counted,
and after SIGCONT everything within the bounds arrives.

One writer runs with the default bounds, which a freeze of 10 s at this pace never reaches: it
loses nothing. The other runs with bounds small enough to be reached during the freeze: it drops,
counts each drop, and what it kept is exactly the start of what it logged (the newest record is
the one dropped). Faults suite: a real daemon and real processes; counts read back with
TensorBoard's loader.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import wait_for
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_daemon import touch

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

FREEZE_S = 10.0
TAGS = 20  # scalars per step, one small image per step, a step every 10 ms
#: p99 of a call while frozen may be at most twice the unfrozen p99, or this, whichever is more:
#: below a few microseconds a p99 is the noise of a cache miss or a timer interrupt.
P99_FLOOR_NS = 5_000
#: The same for calls that drop their record (see the test): no wait on the daemon in any of them.
DROPPING_P99_FLOOR_NS = 100_000

WRITER = """
import resource
import numpy as np
from logger_client import SummaryWriter
from logger_client.settings import Settings

logdir, sync, name = sys.argv[1], sys.argv[2], sys.argv[3]
writer = SummaryWriter(os.path.join(logdir, name))
assert writer.flush(timeout=30)
tags = [f"m{i}" for i in range(20)]
image = np.zeros((3, 32, 32), np.uint8)
calls = {"unfrozen": [], "frozen": []}
peak = {"queued": 0, "records_pending": 0, "array_bytes_held": 0}
phase, step = "unfrozen", 0
touch(f"{sync}/{name}-ready")
while True:
    if phase == "unfrozen" and os.path.exists(f"{sync}/freezing"):
        phase = None  # between the two phases: not measured
    if phase is None and os.path.exists(f"{sync}/frozen"):
        phase, rss_frozen = "frozen", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if phase == "frozen" and os.path.exists(f"{sync}/thawing"):
        break
    latencies = calls.get(phase)
    for index, tag in enumerate(tags):
        start = time.perf_counter_ns()
        writer.add_scalar(tag, float(step * 100 + index), step)
        end = time.perf_counter_ns()
        if latencies is not None:
            latencies.append(end - start)
    image[0, 0, 0] = step % 256
    writer.add_image("img", image, step)
    if phase == "frozen" and step % 10 == 0:
        stats = writer.stats()
        for key in peak:
            peak[key] = max(peak[key], stats[key])
    step += 1
    if phase == "unfrozen" and step == 300:
        touch(f"{sync}/{name}-warm")
    time.sleep(0.01)
rss_thawing = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
stats_frozen = writer.stats()
touch(f"{sync}/{name}-paused")
wait_file(f"{sync}/thawed")
closed = writer.close(timeout=30)
settings = Settings.from_env()
p99 = {key: int(np.percentile(values, 99)) for key, values in calls.items()}
touch(f"{sync}/{name}-result", json.dumps({
    "steps": step, "closed": closed, "stats": writer.stats(), "stats_frozen": stats_frozen, "peak": peak,
    "p99_ns": p99, "calls": {key: len(values) for key, values in calls.items()},
    "rss_growth_kib": rss_thawing - rss_frozen,
    "bounds": {"records": settings.max_pending_records, "batch": settings.batch_records,
               "array_bytes": settings.max_buffer_bytes},
}))
"""

#: Bounds a 10 s freeze reaches: 20 scalars and a 3 KiB image every 10 ms are 20 000 scalars and
#: 3 MiB of images; these bounds keep about a third of that.
SMALL_BOUNDS = {
    "LOGGER_MAX_PENDING_RECORDS": "4000",
    "LOGGER_BATCH_RECORDS": "500",
    "LOGGER_MAX_BUFFER_BYTES": "1000000",
}


def read_run(path: str) -> tuple[dict[str, list[tuple[int, float]]], list[int]]:
    accumulator = EventAccumulator(path, size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    scalars = {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    return scalars, [e.step for e in accumulator.Images("img")]


def test_a_frozen_daemon_costs_calls_nothing_and_loses_only_what_the_bounds_cannot_hold(
    daemon, logdir, spawn, tmp_path
):
    writers = {
        "default": spawn(WRITER, logdir, tmp_path, "default"),
        "small": spawn(WRITER, logdir, tmp_path, "small", env=SMALL_BOUNDS),
    }
    for name, writer in writers.items():
        wait_for(
            lambda: os.path.exists(tmp_path / f"{name}-warm") or writer.process.poll() is not None,  # noqa: B023
            timeout_s=30,
            message=f"the {name} writer's unfrozen calls",
        )
        assert writer.process.poll() is None, writer.output()
    touch(tmp_path / "freezing")
    daemon.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        touch(tmp_path / "frozen")
        # The freeze is the scenario: it lasts its 10 s whatever happens meanwhile (no condition
        # to wait for), while the writers go on logging.
        time.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
        touch(tmp_path / "thawing")
        for name in writers:
            wait_for(lambda: os.path.exists(tmp_path / f"{name}-paused"), timeout_s=10, message=f"{name} to pause")  # noqa: B023
        frozen_s = time.monotonic() - frozen_at
    finally:
        daemon.send_signal(signal.SIGCONT)
    touch(tmp_path / "thawed")
    results = {}
    for name, writer in writers.items():
        writer.assert_ok(timeout_s=45)
        results[name] = json.loads((tmp_path / f"{name}-result").read_text())
    assert frozen_s >= FREEZE_S

    for name, result in results.items():
        assert result["calls"]["frozen"] >= 20 * 500 and result["calls"]["unfrozen"] >= 20 * 300, result["calls"]
        p99 = result["p99_ns"]
        # Calls cost what they did before the freeze. Where the bounds are reached, a call whose
        # record is dropped goes through Python (`Producer.on_backlog`: the pack lock, a pop, a
        # count), a few microseconds more than the C append, some 2-4x at the p99 on a loaded
        # 2-core machine; a call that waited for the daemon would take milliseconds.
        factor, floor = (2, P99_FLOOR_NS) if name == "default" else (5, DROPPING_P99_FLOOR_NS)
        assert p99["frozen"] <= max(factor * p99["unfrozen"], floor), (name, p99)
        # Memory within the client's bounds, all through the freeze.
        peak, bounds = result["peak"], result["bounds"]
        assert peak["queued"] <= bounds["records"] + 1, (name, peak)  # +1: the newest, before it is dropped
        assert peak["records_pending"] <= 2 * bounds["records"] + bounds["batch"], (name, peak)
        assert peak["array_bytes_held"] <= bounds["array_bytes"], (name, peak)
        steps = result["steps"]
        scalars, images = read_run(os.path.join(logdir, name))
        dropped = result["stats"]["records_dropped"]
        assert result["stats"]["records_pending"] == 0, result["stats"]  # everything kept arrived
        # logged = on disk + counted drops, tag by tag; what is on disk is the start of what was logged.
        kept_scalars = sum(len(points) for points in scalars.values())
        assert kept_scalars + dropped.get("client_queue_full", 0) == TAGS * steps, (name, dropped)
        assert len(images) + dropped.get("client_buffer_full", 0) == steps, (name, dropped)
        assert images == list(range(len(images)))
        for index in range(TAGS):
            points = scalars[f"m{index}"]
            assert points == [(step, float(step * 100 + index)) for step in range(len(points))], (name, index)

    default, small = results["default"], results["small"]
    assert default["closed"] is True and default["stats"]["records_dropped"] == {}
    assert default["stats"]["records_written"] == (TAGS + 1) * default["steps"]
    # The small bounds were reached, and the drops counted at once (before the daemon came back).
    assert small["closed"] is False  # records were dropped since the last flush
    assert small["stats_frozen"]["records_dropped"] == small["stats"]["records_dropped"]
    assert set(small["stats"]["records_dropped"]) == {"client_queue_full", "client_buffer_full"}
    # What each client held while frozen: 20 000 scalar rows of ~100 bytes and 3 MiB of images at
    # most (the arena they are copied to was faulted in before); ru_maxrss is in KiB.
    for name, result in results.items():
        assert result["rss_growth_kib"] < 32 * 1024, (name, result["rss_growth_kib"])
