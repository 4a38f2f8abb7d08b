"""The soak benchmark: its pieces in process (the slope fit, the probe tailer on a growing file),
and `python -m benchmarks --only soak --soak-s 5` end to end.

Not a timing test: the smoke run checks that every figure of the report is there and sane, and
that nothing logged was lost; how fast anything was is not looked at.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import soak
from logger_daemon.event_file import EventFile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- in process ----------------------------------------------------------------------------------------


def test_the_fit_gives_growth_per_hour_and_no_error_on_a_line():
    ts = [float(t) for t in range(100)]
    fitted = soak.fit(ts, [5.0 + t / 3600 for t in ts])  # one unit an hour
    assert fitted["slope_per_h"] == pytest.approx(1.0)
    assert fitted["stderr_per_h"] == pytest.approx(0.0, abs=1e-6)
    noisy = soak.fit(ts, [(-1) ** int(t) for t in ts])
    slope, stderr = noisy["slope_per_h"], noisy["stderr_per_h"]
    assert slope is not None and stderr is not None
    assert abs(slope) < stderr * 3  # noise: a slope within its error
    assert soak.fit([0.0, 1.0], [1.0, 2.0])["slope_per_h"] is None  # too few samples to say


def test_the_analysis_fits_between_the_warm_up_and_the_end_of_logging():
    # t, rss, anon, file, shmem, cpu seconds, fds, threads: RSS grows in the warm-up, is flat while
    # the writers log (to 50 s), then drops as they close (their arenas unmapped, sockets closed).
    samples = [[t, 30.0 + min(t, 10.0), 20.0, 5.0, 5.0, 0.25 * t, 20, 4] for t in range(51)]
    samples += [[t, 25.0, 20.0, 5.0, 0.0, 12.5, 12, 4] for t in range(51, 60)]
    out = soak.analyse([[float(x) for x in s] for s in samples], warmup_s=12.0, end_s=50.0)
    assert out["fitted_samples"] == 39
    rss = out["rss_mib"]
    assert (rss["first"], rss["after_warmup"], rss["at_end"], rss["after_close"], rss["max"]) == (30, 40, 40, 25, 40)
    assert rss["slope_per_h"] == pytest.approx(0.0, abs=1e-9)
    assert out["fds"]["slope_per_h"] == pytest.approx(0.0, abs=1e-9)
    assert out["cpu_pct"]["mean"] == pytest.approx(25.0)


def test_each_half_of_the_window_tells_a_step_from_a_leak():
    """One step up in the first half: the line through the whole window reads it as growth, the
    halves show it in one only; a steady leak grows alike in both."""
    ts = range(241)
    step = [[t, 27.0 + (1.0 if t >= 60 else 0.0), 27.0, 0.0, 0.0, 0.0, 20, 4] for t in ts]
    out = soak.analyse([[float(x) for x in s] for s in step], warmup_s=0.0, end_s=240.0)["rss_mib"]
    assert out["slope_per_h"] > 10
    assert out["halves_per_h"][0] > 10 and out["halves_per_h"][1] == pytest.approx(0.0, abs=1e-9)
    leak = [[t, 27.0 + t / 3600, 27.0, 0.0, 0.0, 0.0, 20, 4] for t in ts]
    out = soak.analyse([[float(x) for x in s] for s in leak], warmup_s=0.0, end_s=240.0)["rss_mib"]
    assert out["halves_per_h"] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_the_tailer_times_each_probe_once_when_its_whole_record_is_readable(tmp_path):
    run = tmp_path / "rank0"
    events = EventFile(str(run))
    tailer = soak.ProbeTailer(str(tmp_path), poll_s=0.01)

    def log(tag: str, steps: range, wall_time: float) -> None:
        count = len(steps)
        owners = np.full(count, b"client", dtype=object)
        events.write_scalars(tag, np.full(count, wall_time), np.array(steps, np.int64), np.ones(count), owners)

    log(soak.PROBE_TAG, range(3), 1000.0)
    log("scalar/01", range(3), 1000.0)
    events.flush()
    tailer.poll()
    assert tailer.seen == 3

    # A record cut in two by the writer's flush is timed when its second half is readable.
    before = os.path.getsize(events.path)
    log(soak.PROBE_TAG, range(3, 4), 1000.0)
    events.flush()
    with open(events.path, "rb") as reading:
        data = reading.read()
    with open(events.path, "r+b") as writing:
        writing.truncate(before + 10)
    tailer.poll()
    assert tailer.seen == 3
    with open(events.path, "r+b") as writing:
        writing.seek(before)
        writing.write(data[before:])
    tailer.poll()
    assert tailer.seen == 4 and tailer.duplicates == 0 and not tailer.damaged
    assert all(latency > 0 for latency in tailer.latencies_s)  # now - 1000.0 s since the epoch
    events.close()
    tailer.stop()


# -- end to end ----------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_short_soak_reports_every_figure_and_loses_nothing(tmp_path):
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "soak", "--soak-s", "5", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-5000:]}\nstderr:\n{done.stderr[-5000:]}"
    with open(out) as f:
        doc = json.load(f)
    assert doc["workloads"] == {}  # the soak has a section of its own, and nothing else ran
    entry = doc["soak"]
    assert "error" not in entry, entry.get("error")

    # Logged versus on disk: every record and every probe, once.
    assert entry["nothing_lost"] is True and entry["lost"] == 0 and entry["writer_dropped"] == {}
    assert entry["logged"] == entry["on_disk"]
    steps = entry["steps"]
    assert steps > 0 and entry["logged"] == {"scalar": 20 * steps, "image": steps}
    assert entry["probes"] == {"logged": steps, "seen": steps, "duplicates": 0, "damaged": []}
    assert len(entry["per_process"]) == entry["processes"] == 4

    # Call to readable: a positive latency for each probe, p99 at least the median.
    latency = entry["latency_s"]
    assert 0 < latency["min"] <= latency["median"] <= latency["p99"] <= latency["max"]

    # The daemon sampled about once a second, each figure with its growth per hour.
    daemon = entry["daemon"]
    assert daemon["samples"] >= 4 and len(daemon["series"]) == daemon["samples"]
    assert daemon["fields"] == list(soak.DaemonSampler.FIELDS)
    for figure in ("rss_mib", "anon_mib", "fds", "threads"):
        assert daemon[figure]["max"] > 0, figure
        assert math.isfinite(daemon[figure]["slope_per_h"]), figure
    assert daemon["cpu_pct"]["mean"] > 0

    # The targets, in the JSON and in the table.
    assert [t["name"] for t in entry["targets"]] == [name for name, *_ in soak.TARGETS]
    results = {t["name"]: t["result"] for t in entry["targets"]}
    assert results["soak_lost"] == "PASS"
    assert all(result in ("PASS", "FAIL") for result in results.values())
    assert "## Soak" in done.stdout and "soak: call to readable on disk, p99" in done.stdout
