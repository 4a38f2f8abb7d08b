"""A training process killed (SIGKILL) mid-run beside another one: what the daemon acknowledged to
it is on disk, the daemon lets go of it (its connection and its writers' files) once it notices,
and the other process loses nothing.

The daemon notices a client gone either when it has been silent for `client_timeout_s`, or at the
next HELLO of any client, when it forgets the clients of its host whose process is gone. Faults
suite: a real daemon and real processes; counts read back with TensorBoard's loader.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import wait_for
from daemon_cli import status_json
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_daemon import touch

from logger_client import SummaryWriter

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

#: The daemon's client timeout in the test that waits for it (the default is 15 s).
SHORT_CLIENT_TIMEOUT_S = 3.0

WRITER = """
from logger_client import SummaryWriter

logdir, sync, name = sys.argv[1], sys.argv[2], sys.argv[3]
writer = SummaryWriter(os.path.join(logdir, name))
assert writer.flush(timeout=30)
step = 0
while not os.path.exists(f"{sync}/stop"):  # a training pace: 20 steps every 10 ms
    for _ in range(20):
        writer.add_scalar("loss", step / 4, step)
        step += 1
    # What it has logged, and of that what the daemon confirmed written: read by the test.
    touch(f"{sync}/progress-{name}", json.dumps({"logged": step, "written": writer.stats()["records_written"]}))
    time.sleep(0.01)
closed = writer.close(timeout=30)
touch(f"{sync}/result-{name}", json.dumps({"steps": step, "closed": closed, "stats": writer.stats()}))
"""


def progress(tmp_path, name: str) -> dict[str, int]:
    try:
        return json.loads((tmp_path / f"progress-{name}").read_text())
    except FileNotFoundError:
        return {"logged": 0, "written": 0}


def points(path: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(path, size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(e.step, e.value) for e in accumulator.Scalars("loss")]


@pytest.fixture(params=["client-timeout", "next-hello"])
def noticed_by(request, monkeypatch) -> str:
    """How the daemon is to notice the killed client; set before the `daemon` fixture starts it."""
    if request.param == "client-timeout":
        monkeypatch.setenv("LOGGER_CLIENT_TIMEOUT_S", str(SHORT_CLIENT_TIMEOUT_S))
    return request.param


def test_a_killed_client_keeps_what_was_acknowledged_is_let_go_and_disturbs_no_other(
    noticed_by, daemon, logdir, spawn, tmp_path
):
    killed, other = spawn(WRITER, logdir, tmp_path, "killed"), spawn(WRITER, logdir, tmp_path, "other")
    wait_for(
        lambda: (
            (progress(tmp_path, "killed")["written"] >= 2000 and progress(tmp_path, "other")["written"] >= 2000)
            or killed.process.poll() is not None
            or other.process.poll() is not None
        ),
        timeout_s=30,
        message="both writers' records to be acknowledged",
    )
    assert killed.process.poll() is None and other.process.poll() is None, killed.output() + other.output()
    status = status_json()
    assert sorted(c["pid"] for c in status["clients"]) == sorted([killed.pid, other.pid])
    assert status["open_files"] == 2
    at_kill = progress(tmp_path, "killed")  # no more than it had logged, and had acknowledged, at the kill
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait(10) == -signal.SIGKILL  # and reaped: its pid is gone
    killed_at = time.monotonic()

    def let_go() -> bool:
        status = status_json()
        pids = {c["pid"] for c in status["clients"]}
        return killed.pid not in pids and other.pid in pids and status["open_files"] == 1

    if noticed_by == "client-timeout":
        # Silent from the kill on: forgotten once `client_timeout_s` has passed since it was last
        # heard (a heartbeat every second at most), checked by the daemon at least every 0.2 s.
        wait_for(let_go, timeout_s=SHORT_CLIENT_TIMEOUT_S + 3, message="the daemon to forget the killed client")
    else:
        # The default 15 s timeout is far off; a new client's HELLO makes the daemon look for
        # clients whose process is gone.
        newcomer = SummaryWriter(os.path.join(logdir, "newcomer"))
        assert newcomer.close(timeout=10)  # this process stays connected; its file is closed
        wait_for(let_go, timeout_s=3, message="the daemon to forget the killed client at a HELLO")
        assert time.monotonic() - killed_at < 15.0  # well before its client timeout
    after = progress(tmp_path, "other")["written"]
    wait_for(
        lambda: progress(tmp_path, "other")["written"] >= after + 2000,
        timeout_s=20,
        message="the other writer to go on",
    )
    touch(tmp_path / "stop")
    other.assert_ok(timeout_s=40)
    result = json.loads((tmp_path / "result-other").read_text())

    # The killed writer: every record acknowledged to it is on disk, and what is on disk is a
    # gapless start of what it logged (records sent but not yet acknowledged may be there too).
    on_disk = points(os.path.join(logdir, "killed"))
    assert len(on_disk) >= at_kill["written"], (len(on_disk), at_kill)
    assert on_disk == [(step, step / 4) for step in range(len(on_disk))]
    # The other one lost nothing, and nothing was dropped anywhere.
    assert result["closed"] is True, result
    assert result["stats"]["records_dropped"] == {} and result["stats"]["records_written"] == result["steps"]
    assert points(os.path.join(logdir, "other")) == [(step, step / 4) for step in range(result["steps"])]
    status = status_json()
    assert status["records_dropped"] == {}
    assert status["clients"] == [] or [c["pid"] for c in status["clients"]] == [os.getpid()]
