"""A job resumed from a checkpoint into the same log directory logs again steps it logged before
it crashed: TensorBoard shows the resumed points. The first record of the new session at or below
the run's last step starts a new session there (`SessionLog.START`), so TensorBoard hides the
crashed session's points from that step on, as it does for tensorboardX's files, and no point of
the resumed job is dropped.

The job comes back at once, while the daemon may still hold its dead predecessor's writer (within
the client timeout: the new process's HELLO, or the daemon's probe each second, makes the daemon
forget clients whose process is gone; which comes first is a race the test leaves open), after
the daemon forgot it (the client timeout passed), and after the daemon too was killed (a new
daemon reads the run's files). tests/test_recovery.py checks the same rules in process, on a
`Pipeline`; here they hold end to end. Faults suite: real daemons and processes; the points read
back with TensorBoard's EventAccumulator.

TensorBoard's Python loader for its server (`--load_fast=false`, the plugin accumulator) ignores
a run's first `SessionLog.START`, so it serves both sessions' points, for this project's files as
for tensorboardX's (with or without `purge_step`): the test holds that parity. Its Rust data
server (the default) shows the resumed points, as EventAccumulator does: the last test asks a
real TensorBoard.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import tensorboardX
from conftest import wait_for
from daemon_cli import status_json
from logdirs import event_files
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util
from test_tensorboard_server import TensorBoard

from logger_client import SummaryWriter
from logger_client.runtime import daemon_pid, daemon_running

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

SHORT_CLIENT_TIMEOUT_S = 3.0
CRASHED_STEPS = 100  # the crashed job logged steps 0..99

CRASHED = """
from logger_client import SummaryWriter
logdir, sync = sys.argv[1], sys.argv[2]
writer = SummaryWriter(logdir)
for step in range(100):
    writer.add_scalar("loss", float(step), step)
assert writer.flush(timeout=30)  # on disk: then the job crashes
touch(f"{sync}/crashed-ready")
wait_file(f"{sync}/never", timeout=600)
"""

RESUMED = """
from logger_client import SummaryWriter
logdir, sync, resume = sys.argv[1], sys.argv[2], int(sys.argv[3])
writer = SummaryWriter(logdir)  # no purge_step: the job does not know it is resumed
for step in range(resume, resume + 100):
    writer.add_scalar("loss", 1000.0 + step, step)
closed = writer.close(timeout=30)
touch(f"{sync}/resumed-result", json.dumps({"closed": closed, "stats": writer.stats()}))
"""

#: How the job comes back, and the step it resumes from (at or below the crashed run's last, 99).
CASES = {"daemon-still-holds-it": 50, "daemon-forgot-it": 99, "daemon-restarted": 0}


@pytest.fixture(params=list(CASES))
def case(request, monkeypatch) -> str:
    """Set before the `daemon` fixture starts the daemon."""
    if request.param == "daemon-forgot-it":
        monkeypatch.setenv("LOGGER_CLIENT_TIMEOUT_S", str(SHORT_CLIENT_TIMEOUT_S))
    return request.param


def classic_points(logdir: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(logdir, size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars("loss")]


def plugin_points(logdir: str) -> list[tuple[int, float]]:
    """What TensorBoard's Python loader (`--load_fast=false`) serves: the plugin accumulator's tensors."""
    accumulator = plugin_event_accumulator.EventAccumulator(logdir, size_guidance={"tensors": 0})
    accumulator.Reload()
    return [(event.step, float(tensor_util.make_ndarray(event.tensor_proto))) for event in accumulator.Tensors("loss")]


def session_starts(logdir: str) -> list[int]:
    return [
        event.step
        for path in event_files(logdir)
        for event in EventFileLoader(path).Load()
        if event.HasField("session_log") and event.session_log.status == event.session_log.START
    ]


def test_a_job_resumed_from_a_checkpoint_shows_its_new_points(case, daemon, runtime_dir, logdir, spawn, tmp_path):
    resume = CASES[case]
    crashed = spawn(CRASHED, logdir, tmp_path)
    wait_for(
        lambda: (tmp_path / "crashed-ready").exists() or crashed.process.poll() is not None,
        timeout_s=30,
        message="the first job to log",
    )
    assert crashed.process.poll() is None, crashed.output()
    assert classic_points(logdir) == [(step, float(step)) for step in range(CRASHED_STEPS)]
    os.kill(crashed.pid, signal.SIGKILL)  # the job crashes; its launcher reaps it
    assert crashed.wait(10) == -signal.SIGKILL
    if case == "daemon-forgot-it":
        wait_for(
            lambda: status_json()["clients"] == [],
            timeout_s=SHORT_CLIENT_TIMEOUT_S + 5,
            message="the daemon to forget the crashed job",
        )
    else:
        daemon.kill()  # the node went down with it; the resumed job starts the next daemon
        assert daemon.wait(10) == -signal.SIGKILL
        assert not daemon_running(runtime_dir)
    resumed = spawn(RESUMED, logdir, tmp_path, resume)
    resumed.assert_ok(timeout_s=30)
    result = json.loads((tmp_path / "resumed-result").read_text())
    assert result["closed"] is True and result["stats"]["records_dropped"] == {}, result
    assert result["stats"]["records_written"] == 100
    if case == "daemon-restarted":
        assert daemon_pid(runtime_dir) not in (None, daemon.pid)
    assert crashed.pid not in [c["pid"] for c in status_json()["clients"]]

    # The crashed job's points before the resumed step, then the resumed job's: the new points win.
    expected = [(step, float(step)) for step in range(resume)]
    expected += [(step, 1000.0 + step) for step in range(resume, resume + 100)]
    assert classic_points(logdir) == expected
    assert session_starts(logdir) == [resume]  # one new session, where the resumed job started
    # The plugin accumulator takes a run's first SessionLog.START for the start of its first
    # session (as TensorFlow's Supervisor wrote it), and purges nothing by steps going back once a
    # file has a version: both sessions' points, here as for tensorboardX's files.
    assert plugin_points(logdir) == plugin_points(tensorboardx_resumed(str(tmp_path / "tensorboardx"), resume))


def tensorboardx_resumed(logdir: str, resume: int) -> str:
    """The same crash and resume, written by tensorboardX: a file per session."""
    sessions = ((range(CRASHED_STEPS), 0.0), (range(resume, resume + 100), 1000.0))
    for index, (steps, offset) in enumerate(sessions):
        if index:
            time.sleep(1.01 - time.time() % 1)  # tensorboardX names its files by the second
        writer = tensorboardX.SummaryWriter(logdir)
        for step in steps:
            writer.add_scalar("loss", offset + step, step)
        writer.close()
    return logdir


def test_tensorboard_itself_serves_the_resumed_points(daemon, logdir, tmp_path):
    """A real TensorBoard server, with its default loader (the Rust data server where installed)."""
    crashed = SummaryWriter(logdir)
    for step in range(CRASHED_STEPS):
        crashed.add_scalar("loss", float(step), step)
    assert crashed.close(timeout=20)
    resumed = SummaryWriter(logdir)  # its run has no other writer: a new session
    for step in range(50, 150):
        resumed.add_scalar("loss", 1000.0 + step, step)
    assert resumed.close(timeout=20)
    expected = [[step, float(step)] for step in range(50)] + [[step, 1000.0 + step] for step in range(50, 150)]
    server = TensorBoard(logdir, "auto", str(tmp_path / "tensorboard.log"))
    try:
        wait_for(
            lambda: (
                (points := server.get("data/plugin/scalars/scalars", run=".", tag="loss"))
                and [[step, value] for _, step, value in json.loads(points)] == expected
            ),
            timeout_s=60,
            interval_s=0.2,
            message="TensorBoard to serve the resumed points",
        )
    finally:
        server.stop()
