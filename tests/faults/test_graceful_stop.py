"""The daemon stopped gracefully (SIGTERM, `logger-daemon stop`) while three processes log: it
writes everything it acknowledged and everything it had received before it exits; the clients
notice, start the next daemon themselves, resend what was not acknowledged, and go on logging.
In the end each record is on disk once, each tag's steps in order, nothing dropped.

Faults suite: a real daemon and real processes; the files read back with TensorBoard's loaders,
the stopped daemon's files on their own (their names carry its pid) and the run as a whole.
"""

from __future__ import annotations

import json
import os
import signal
from collections import defaultdict

import pytest
from conftest import wait_for
from daemon_cli import cli, status_json
from logdirs import event_files
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from test_daemon import touch

from logger_client.runtime import daemon_pid, daemon_running

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

RANKS = 3
#: Records each writer has confirmed written before the stop, and again after it (by the next daemon).
ACKED_BEFORE, ACKED_AFTER = 2000, 2000

WRITER = """
from logger_client import SummaryWriter

logdir, sync, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
writer = SummaryWriter(logdir)
assert writer.flush(timeout=30)
step = 0
touch(f"{sync}/ready-{rank}")
while not os.path.exists(f"{sync}/stop"):  # a training pace: 20 steps every 10 ms
    for _ in range(20):
        writer.add_scalar(f"rank{rank}/loss", step / 2, step)
        step += 1
    touch(f"{sync}/progress-{rank}", str(writer.stats()["records_written"]))
    time.sleep(0.01)
closed = writer.close(timeout=60)
touch(f"{sync}/result-{rank}", json.dumps({"steps": step, "closed": closed, "stats": writer.stats()}))
"""


def written(tmp_path, rank: int) -> int:
    """What writer `rank` last reported as confirmed written (acknowledged) by a daemon."""
    try:
        return int((tmp_path / f"progress-{rank}").read_text())
    except FileNotFoundError:
        return 0


def steps_by_tag(paths: list[str]) -> dict[str, list[int]]:
    """The scalar steps of each tag in these event files, in file order (TensorBoard's file loader)."""
    found: dict[str, list[int]] = defaultdict(list)
    for path in paths:
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                found[value.tag].append(event.step)
    return found


def stop_by_sigterm(daemon) -> None:
    daemon.send_signal(signal.SIGTERM)


def stop_by_cli(daemon) -> None:
    result = cli("stop")
    assert result.returncode == 0 and "daemon stopped" in result.stdout, result.stderr


@pytest.mark.parametrize("stop", [stop_by_sigterm, stop_by_cli], ids=["SIGTERM", "logger-daemon-stop"])
def test_a_daemon_stopped_gracefully_writes_what_it_had_and_the_clients_move_on(
    daemon, runtime_dir, logdir, spawn, tmp_path, stop
):
    writers = [spawn(WRITER, logdir, tmp_path, rank) for rank in range(RANKS)]
    wait_for(
        lambda: (
            all(written(tmp_path, rank) >= ACKED_BEFORE for rank in range(RANKS))
            or any(w.process.poll() is not None for w in writers)
        ),
        timeout_s=30,
        message="each writer's records to be acknowledged",
    )
    assert all(w.process.poll() is None for w in writers), [w.output() for w in writers]
    old_pid = daemon.pid
    received = status_json()["records_received"]  # by the daemon, before the stop
    acked = [written(tmp_path, rank) for rank in range(RANKS)]  # no more than each had at the stop
    stop(daemon)
    assert daemon.wait(30) == 0
    new_pid = wait_for(
        lambda: (
            daemon_running(runtime_dir) and daemon_pid(runtime_dir) not in (None, old_pid) and daemon_pid(runtime_dir)
        ),
        timeout_s=20,
        message="a client to start the next daemon",
    )
    after = [written(tmp_path, rank) for rank in range(RANKS)]
    wait_for(
        lambda: all(written(tmp_path, rank) >= after[rank] + ACKED_AFTER for rank in range(RANKS)),
        timeout_s=30,
        message="the next daemon to acknowledge the writers' records",
    )
    touch(tmp_path / "stop")
    results = []
    for rank, writer in enumerate(writers):
        writer.assert_ok(timeout_s=60)
        results.append(json.loads((tmp_path / f"result-{rank}").read_text()))
    assert daemon_pid(runtime_dir) == new_pid  # one replacement, started by the clients

    for result in results:
        stats = result["stats"]
        assert result["closed"] is True, result
        assert stats["records_dropped"] == {} and stats["records_pending"] == 0, stats
        assert stats["records_written"] == result["steps"], stats
    files = event_files(logdir)
    old_files = [path for path in files if f".{old_pid}." in os.path.basename(path)]
    new_files = [path for path in files if f".{new_pid}." in os.path.basename(path)]
    assert old_files and new_files and sorted(old_files + new_files) == files
    old, new = steps_by_tag(old_files), steps_by_tag(new_files)
    assert sum(len(steps) for steps in old.values()) >= received  # all it had received is on disk
    accumulator = EventAccumulator(logdir, size_guidance={"scalars": 0})
    accumulator.Reload()
    for rank, result in enumerate(results):
        tag, steps = f"rank{rank}/loss", result["steps"]
        # The stopped daemon's files: a gapless start of the writer's records, at least all it had
        # acknowledged; the next daemon's: exactly the rest, nothing written twice.
        on_old = len(old[tag])
        assert old[tag] == list(range(on_old)) and on_old >= acked[rank], (rank, on_old, acked[rank])
        assert new[tag] == list(range(on_old, steps)), rank
        assert [(e.step, e.value) for e in accumulator.Scalars(tag)] == [(s, s / 2) for s in range(steps)], rank
