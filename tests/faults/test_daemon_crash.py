"""The daemon killed (SIGKILL) again and again under four writing processes: every record logged
is on disk exactly once, each tag's steps in order; clients find or start the next daemon
themselves and resend what was not acknowledged.

Faults suite: a real daemon, real processes, counts read back with TensorBoard's loader.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
from conftest import wait_for
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logger_client.runtime import daemon_pid, daemon_running

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

WRITER = """
import json, os, sys, time
import numpy as np
from logger_client import SummaryWriter

logdir, rank, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
writer = SummaryWriter(logdir)
step = 0
while not os.path.exists(stop):  # a training pace: 20 steps every 10 ms, until the kills are over
    for _ in range(20):
        writer.add_scalar(f"rank{rank}/loss", float(step), step)
        writer.add_scalars(f"rank{rank}/pair", {"a": float(step), "b": -float(step)}, step)
        if step % 50 == 0:
            writer.add_histogram(f"rank{rank}/weights", np.full(64, step, np.float32), step)
        step += 1
    time.sleep(0.01)
closed = writer.close(timeout=60)
print(json.dumps({"steps": step, "closed": closed, "stats": writer.stats()}))
"""


def test_every_record_is_on_disk_once_across_twenty_daemon_kills(daemon, runtime_dir, logdir, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    ranks, kills = 4, 20
    stop = tmp_path / "stop"
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), logdir, str(rank), str(stop)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(ranks)
    ]
    rng = random.Random(11)
    try:
        for _ in range(kills):
            pid = wait_for(lambda: daemon_running(runtime_dir) and daemon_pid(runtime_dir), message="a daemon")
            assert pid
            time.sleep(rng.uniform(0.05, 0.4))  # before, during or after a write cycle
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: daemon_pid(runtime_dir) != pid, timeout_s=30, message="a new daemon")  # noqa: B023
        stop.touch()
        outputs = [writer.communicate(timeout=120) for writer in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
    logged = []
    for (out, err), writer in zip(outputs, writers):
        assert writer.returncode == 0, err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
        assert report["closed"] is True, report
        assert report["stats"]["records_dropped"] == {} and report["stats"]["records_pending"] == 0, report
        logged.append(report["steps"])
    runs = [logdir] + [os.path.join(logdir, f"rank{rank}", "pair", key) for rank in range(ranks) for key in "ab"]
    # TensorBoard's loader reads each run in a process of its own: most of the test's time, else.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        read = dict(zip(runs, pool.map(steps_by_tag, runs)))
    for rank, steps in enumerate(logged):
        assert read[logdir].get(f"rank{rank}/loss") == list(range(steps)), rank
        assert read[logdir].get(f"rank{rank}/weights") == list(range(0, steps, 50)), rank
        for key in ("a", "b"):
            pair = read[os.path.join(logdir, f"rank{rank}", "pair", key)]
            assert pair.get(f"rank{rank}/pair") == list(range(steps)), (rank, key)


def steps_by_tag(run: str) -> dict[str, list[int]]:
    """The steps of each scalar and histogram tag of `run`, as TensorBoard's EventAccumulator
    shows them (every event kept)."""
    accumulator = EventAccumulator(run, size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    steps = {tag: [e.step for e in accumulator.Scalars(tag)] for tag in tags["scalars"]}
    return steps | {tag: [e.step for e in accumulator.Histograms(tag)] for tag in tags["histograms"]}
