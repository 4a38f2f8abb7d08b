"""End to end: real training processes, real daemons, real event files read back by TensorBoard.

Processes are started with `sys.executable` and scripts written to tmp_path; they inherit
LOGGER_RUNTIME_DIR from the `runtime_dir` fixture. Every process a test starts is stopped by the
`spawn` fixture, every daemon by the conftest fixtures. Processes meet at barrier files (written
atomically) instead of sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import psutil
import pytest
from conftest import REPO, stop_daemon, wait_for
from daemon_cli import cli, status_json
from logdirs import accumulator, event_files, scalars
from raw_peer import RawPeer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event as TbEvent

from logger_client import SummaryWriter
from logger_client._daemon_transport import shutdown_transport
from logger_client.protocol import MessageKind, RecordKind
from logger_client.runtime import LOG_NAME, PID_NAME, SOCKET_NAME, daemon_pid, daemon_running, pid_namespace

pytestmark = pytest.mark.e2e

PRELUDE = """
import json, os, sys, time

def wait_file(path, timeout=90):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.002)

def touch(path, text=""):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)
"""


# -- helpers -------------------------------------------------------------------------------------


class Spawned:
    """A started script: its Popen and the files its output goes to."""

    def __init__(self, process: subprocess.Popen, out_path: str) -> None:
        self.process = process
        self.out_path = out_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def wait(self, timeout_s: float = 60.0) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"process {self.pid} still running after {timeout_s}s:\n{self.output()}")

    def assert_ok(self, timeout_s: float = 60.0) -> None:
        assert self.wait(timeout_s) == 0, self.output()


@pytest.fixture
def spawn(tmp_path) -> Iterator[Callable[..., Spawned]]:
    """Starts python scripts (PRELUDE + code) with args; kills whatever is left at teardown."""
    started: list[Spawned] = []

    def start(code: str, *args: object, env: dict[str, str] | None = None) -> Spawned:
        index = len(started)
        script = tmp_path / f"script{index}.py"
        script.write_text(PRELUDE + code)
        out_path = str(tmp_path / f"script{index}.out")
        with open(out_path, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, str(script), *map(str, args)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=str(tmp_path),
            )
        spawned = Spawned(process, out_path)
        started.append(spawned)
        return spawned

    try:
        yield start
    finally:
        for spawned in started:
            if spawned.process.poll() is None:
                spawned.process.kill()
            spawned.process.wait(10)


def touch(path) -> None:
    with open(str(path) + ".tmp", "w"):
        pass
    os.rename(str(path) + ".tmp", str(path))


def file_order(path: str) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the file, in file order, read by TensorBoard's raw loader."""
    events = [TbEvent.FromString(raw) for raw in RawEventFileLoader(path).Load()]
    return [
        (value.tag, event.step, value.simple_value)
        for event in events
        for value in event.summary.value
        if value.WhichOneof("value") == "simple_value"
    ]


def stays_true(condition: Callable[[], object], duration_s: float) -> bool:
    """Whether `condition` holds throughout `duration_s` (the only way to check that nothing happens)."""
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.05)
    return bool(condition())


def daemon_processes(runtime_dir: str) -> list[psutil.Process]:
    """Live `logger_daemon run` processes serving `runtime_dir`."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if (
            process.info["status"] != psutil.STATUS_ZOMBIE
            and "logger_daemon" in cmdline
            and "run" in cmdline
            and runtime_dir in cmdline
        ):
            found.append(process)
    return found


# -- many processes, one directory ---------------------------------------------------------------

RANK_WRITER = """
from logger_client import SummaryWriter
logdir, index, sync, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
writer = SummaryWriter(logdir)
assert writer.flush(timeout=60)  # the daemon has this writer's directory open
touch(f"{sync}/ready-{index}")
wait_file(f"{sync}/go")
for step in range(count):
    writer.add_scalar(f"rank{index}/loss", index * 100000 + step, step)
assert writer.flush(timeout=60)
assert writer.close(timeout=60)
"""


def _run_together(spawn, tmp_path, scripts_args: list[tuple]) -> None:
    """Starts one process per (script, *args); they touch `ready-<i>` and wait for `go`, so their
    logging overlaps; all must succeed."""
    procs = [spawn(script, *args) for script, *args in scripts_args]
    wait_for(
        lambda: all(os.path.exists(tmp_path / f"ready-{i}") for i in range(len(procs))),
        timeout_s=60,
        message="every writer to be open",
    )
    touch(tmp_path / "go")
    for proc in procs:
        proc.assert_ok(timeout_s=90)


def test_four_processes_one_logdir_one_file(daemon, logdir, spawn, tmp_path):
    count, ranks = 10_000, 4
    _run_together(spawn, tmp_path, [(RANK_WRITER, logdir, rank, tmp_path, count) for rank in range(ranks)])

    files = event_files(logdir)
    assert len(files) == 1 and os.listdir(logdir) == [os.path.basename(files[0])]
    acc = accumulator(logdir)
    assert sorted(acc.Tags()["scalars"]) == [f"rank{r}/loss" for r in range(ranks)]
    for rank in range(ranks):
        events = acc.Scalars(f"rank{rank}/loss")
        assert [e.step for e in events] == list(range(count))
        assert [e.value for e in events] == [float(rank * 100000 + step) for step in range(count)]
    in_file = file_order(files[0])
    assert len(in_file) == ranks * count
    for rank in range(ranks):
        steps = [step for tag, step, _ in in_file if tag == f"rank{rank}/loss"]
        assert steps == list(range(count))  # in step order in the file itself, not only once loaded
    status = status_json()
    assert status["records_written"] == ranks * count
    assert status["records_dropped"] == {}


SHARED_TAG_WRITER = """
from logger_client import SummaryWriter
logdir, index, sync, procs, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
writer = SummaryWriter(logdir)
assert writer.flush(timeout=60)
touch(f"{sync}/ready-{index}")
wait_file(f"{sync}/go")
for n, step in enumerate(range(index, total, procs)):
    writer.add_scalar("shared", step, step)
    if n % 25 == 24:
        # Small messages, so the processes' records interleave. A flush says False when the
        # daemon refused one of them for an older step: that is what this test counts.
        flushed = writer.flush(timeout=60)
        assert flushed or writer.stats()["records_dropped"].get("step_out_of_order"), writer.stats()
writer.close(timeout=60)
"""


def test_processes_writing_the_same_tag_never_go_back_in_steps(daemon, logdir, spawn, tmp_path):
    procs_count, total = 3, 3000
    _run_together(
        spawn, tmp_path, [(SHARED_TAG_WRITER, logdir, i, tmp_path, procs_count, total) for i in range(procs_count)]
    )

    files = event_files(logdir)
    assert len(files) == 1
    in_file = file_order(files[0])
    steps = [step for tag, step, _ in in_file if tag == "shared"]
    assert steps == sorted(steps)
    assert all(value == step for _, step, value in in_file)
    assert len(set(steps)) == len(steps)
    loaded = scalars(logdir, "shared")
    assert [step for step, _ in loaded] == steps
    status = status_json()
    # Every record is accounted for: written, or dropped because an older step arrived late.
    assert status["records_written"] == len(steps)
    assert status["records_written"] + status["records_dropped"].get("step_out_of_order", 0) == total
    assert set(status["records_dropped"]) <= {"step_out_of_order"}


LATE_WRITER = """
from logger_client import SummaryWriter
writer = SummaryWriter(sys.argv[1])
writer.add_scalar("t", 2.0, 50)
writer.add_scalar("t", 3.0, 150)
assert writer.flush(timeout=30) is False  # step 50 was refused: not everything is on disk
touch(sys.argv[2], json.dumps(writer.stats()))
assert writer.close(timeout=30)
"""


def test_an_older_step_from_another_process_is_dropped_and_counted(daemon, logdir, spawn, tmp_path):
    writer = SummaryWriter(logdir)  # process A
    writer.add_scalar("t", 1.0, 100)
    assert writer.flush(timeout=20)
    spawn(LATE_WRITER, logdir, tmp_path / "b-stats").assert_ok()  # process B: step 50 arrives after step 100
    assert writer.flush(timeout=20)
    assert scalars(logdir, "t") == [(100, 1.0), (150, 3.0)]
    assert [step for _, step, _ in file_order(event_files(logdir)[0])] == [100, 150]
    status = status_json()
    assert status["records_dropped"] == {"step_out_of_order": 1}
    assert status["records_written"] == 2
    # ... and process B's own stats say so (the daemon reports drops with its acknowledgements).
    assert json.loads((tmp_path / "b-stats").read_text())["records_dropped"] == {"step_out_of_order": 1}
    writer.close(timeout=20)


# -- flush and close -----------------------------------------------------------------------------


def test_flush_returns_only_once_everything_before_it_is_readable(daemon, logdir):
    writer = SummaryWriter(logdir)
    rng = np.random.default_rng(0)
    for round_ in range(4):
        for step in range(round_ * 300, (round_ + 1) * 300):
            writer.add_scalar("loss", step * 0.5, step)
        writer.add_histogram("weights", rng.normal(size=1000), round_)
        writer.add_image("picture", rng.integers(0, 255, (3, 8, 8), dtype=np.uint8), round_)
        writer.add_text("note", f"round {round_}", round_)
        assert writer.flush(timeout=20)
        acc = accumulator(logdir)  # no waiting: everything is there the moment flush returns
        loaded = acc.Scalars("loss")
        assert [(e.step, e.value) for e in loaded] == [(s, s * 0.5) for s in range((round_ + 1) * 300)]
        assert [e.step for e in acc.Histograms("weights")] == list(range(round_ + 1))
        assert [e.step for e in acc.Images("picture")] == list(range(round_ + 1))
        assert [e.step for e in acc.Tensors("note/text_summary")] == list(range(round_ + 1))
    assert writer.stats()["records_written"] >= 4 * 303
    assert writer.close(timeout=20)


def test_records_become_readable_within_two_seconds_without_flush(daemon, logdir):
    writer = SummaryWriter(logdir, flush_secs=120)  # flush_secs is capped at 2 s
    for step in range(10):
        writer.add_scalar("loss", float(step), step)
    wait_for(lambda: len(scalars(logdir, "loss")) == 10, timeout_s=4, message="the scalars to be readable")
    writer.close(timeout=10)


def test_records_before_another_writer_opens_are_readable_without_flush(daemon, logdir):
    first = SummaryWriter(os.path.join(logdir, "first"))
    for step in range(10):
        first.add_scalar("loss", float(step), step)
    second = SummaryWriter(os.path.join(logdir, "second"))  # its OPEN goes out in the same message
    try:
        wait_for(
            lambda: len(scalars(os.path.join(logdir, "first"), "loss")) == 10,
            timeout_s=4,
            message="the first writer's scalars to be readable",
        )
    finally:
        first.close(timeout=10)
        second.close(timeout=10)


AFTER_DAEMON_DIES = """
from logger_client import SummaryWriter
logdir, sync = sys.argv[1], sys.argv[2]
writer = SummaryWriter(logdir)
writer.add_scalar("loss", 1.0, 0)
assert writer.flush(timeout=30)
touch(f"{sync}/ready")
wait_file(f"{sync}/killed")
writer.add_scalar("loss", 2.0, 1)
start = time.monotonic()
flushed = writer.flush(timeout=30)
flush_s = time.monotonic() - start
start = time.monotonic()
closed = writer.close(timeout=30)
close_s = time.monotonic() - start
touch(f"{sync}/result", json.dumps({"flushed": flushed, "flush_s": flush_s, "closed": closed, "close_s": close_s,
                                    "stats": writer.stats()}))
"""


def _run_past_a_killed_daemon(
    script, runtime_dir, logdir, spawn, tmp_path, env, result_timeout_s: float, signum: int = signal.SIGKILL
) -> tuple[Spawned, dict, float]:
    """Runs `script` (which touches `ready`, waits for `killed`, writes `result` as JSON), sends the
    daemon `signum` in between; returns the process, its result and when the result came."""
    proc = spawn(script, logdir, tmp_path, env=env)
    wait_for(
        lambda: os.path.exists(tmp_path / "ready") or proc.process.poll() is not None,
        timeout_s=60,
        message="the writer to be connected",
    )
    assert proc.process.poll() is None, proc.output()
    pid = daemon_pid(runtime_dir)
    assert pid is not None
    os.kill(pid, signum)
    if signum == signal.SIGKILL:
        wait_for(lambda: daemon_pid(runtime_dir) != pid or not daemon_running(runtime_dir), message="the daemon to die")
    touch(tmp_path / "killed")
    wait_for(
        lambda: os.path.exists(tmp_path / "result") or proc.process.poll() is not None,
        timeout_s=result_timeout_s,
        message="the script's result",
    )
    result_at = time.monotonic()
    assert os.path.exists(tmp_path / "result"), proc.output()
    return proc, json.loads((tmp_path / "result").read_text()), result_at


def test_a_killed_daemon_is_replaced_and_nothing_is_lost(daemon, runtime_dir, logdir, spawn, tmp_path):
    proc, result, _ = _run_past_a_killed_daemon(
        AFTER_DAEMON_DIES, runtime_dir, logdir, spawn, tmp_path, {}, result_timeout_s=60
    )
    assert result["flushed"] is True and result["closed"] is True, result
    assert result["stats"]["records_dropped"] == {} and result["stats"]["records_pending"] == 0
    proc.assert_ok(timeout_s=15)
    assert scalars(logdir, "loss") == [(0, 1.0), (1, 2.0)]
    assert daemon_running(runtime_dir)  # the one the writer started


def _broken_daemon(tmp_path) -> dict[str, str]:
    """An environment in which `python -m logger_daemon` fails at once: no daemon can be started."""
    package = tmp_path / "broken" / "logger_daemon"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("raise SystemExit(3)\n")
    return {"PYTHONPATH": os.pathsep.join([str(package.parent), REPO])}


def test_with_no_daemon_to_be_had_flush_and_close_say_so_within_seconds(daemon, runtime_dir, logdir, spawn, tmp_path):
    env = {**_broken_daemon(tmp_path), "LOGGER_CLOSE_TIMEOUT_S": "30"}
    proc, result, _ = _run_past_a_killed_daemon(
        AFTER_DAEMON_DIES, runtime_dir, logdir, spawn, tmp_path, env, result_timeout_s=60
    )
    assert result["flushed"] is False and result["flush_s"] < 5, result  # not its 30 s bound
    assert result["closed"] is False and result["close_s"] < 2, result
    stats = result["stats"]
    assert "no daemon" in stats["error"] and stats["records_pending"] == 1, stats  # the one record
    proc.assert_ok(timeout_s=10)  # and the process exits promptly: counted lost at exit, with a warning
    assert "1 record(s) were not confirmed written" in proc.output()
    assert scalars(logdir, "loss") == [(0, 1.0)]


# -- finding and starting the daemon -------------------------------------------------------------


def test_a_writer_starts_a_detached_daemon(runtime_dir, logdir):
    assert not daemon_running(runtime_dir)
    writer = SummaryWriter(logdir)
    assert daemon_running(runtime_dir)
    pid = daemon_pid(runtime_dir)
    assert pid is not None and pid != os.getpid()
    daemon = psutil.Process(pid)
    me = psutil.Process()
    assert pid not in {child.pid for child in me.children(recursive=True)}
    # Reparented to init or to a subreaper, which is necessarily one of our ancestors.
    assert daemon.ppid() == 1 or daemon.ppid() in {p.pid for p in me.parents()}
    assert os.getsid(pid) != os.getsid(0)  # its own session: no terminal, no signals of ours
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
    assert "--detach" in daemon.cmdline()
    assert os.path.exists(os.path.join(runtime_dir, LOG_NAME))
    writer.add_scalar("loss", 1.0, 1)
    assert writer.flush(timeout=20)
    assert scalars(logdir, "loss") == [(1, 1.0)]
    assert len(daemon_processes(runtime_dir)) == 1
    writer.close(timeout=10)


STARTING_TOGETHER = """
from logger_client import SummaryWriter
logdir, index, sync = sys.argv[1], int(sys.argv[2]), sys.argv[3]
wait_file(f"{sync}/go")
writer = SummaryWriter(os.path.join(logdir, f"rank{index}"))
writer.add_scalar("loss", float(index), 0)
assert writer.flush(timeout=60)
touch(f"{sync}/ready-{index}", str(os.getpid()))
wait_file(f"{sync}/release")
assert writer.close(timeout=30)
"""


def test_processes_starting_at_once_share_one_daemon(runtime_dir, logdir, spawn, tmp_path):
    assert not daemon_running(runtime_dir)
    procs = [spawn(STARTING_TOGETHER, logdir, index, tmp_path) for index in range(4)]
    time_limit = time.monotonic() + 60
    touch(tmp_path / "go")  # the processes poll for this file every 2 ms: they start together
    wait_for(
        lambda: (
            all(os.path.exists(tmp_path / f"ready-{i}") for i in range(4))
            or any(p.process.poll() is not None for p in procs)
        ),
        timeout_s=time_limit - time.monotonic(),
        message="every process to be connected",
    )
    assert all(p.process.poll() is None for p in procs), [p.output() for p in procs]
    pid = daemon_pid(runtime_dir)
    running = daemon_processes(runtime_dir)
    assert [p.pid for p in running] == [pid]
    with open(os.path.join(runtime_dir, PID_NAME)) as f:
        assert f.read().split() == [str(pid)]
    status = status_json()
    assert status["pid"] == pid
    assert sorted(c["pid"] for c in status["clients"]) == sorted(p.pid for p in procs)
    touch(tmp_path / "release")
    for proc in procs:
        proc.assert_ok()
    for index in range(4):
        assert scalars(os.path.join(logdir, f"rank{index}"), "loss") == [(0, float(index))]
    # The daemon outlives the processes that started it (until its idle timeout).
    assert daemon_running(runtime_dir) and daemon_pid(runtime_dir) == pid


def test_an_auto_started_daemon_exits_after_its_idle_timeout(runtime_dir, logdir, monkeypatch):
    monkeypatch.setenv("LOGGER_IDLE_TIMEOUT_S", "2")
    writer = SummaryWriter(logdir)
    writer.add_scalar("loss", 3.0, 7)
    assert writer.flush(timeout=20)
    pid = daemon_pid(runtime_dir)
    assert pid is not None
    # A connected client keeps it alive past the idle timeout (heartbeats while nothing is logged).
    assert stays_true(lambda: daemon_running(runtime_dir), 3.0)
    assert writer.close(timeout=10)
    assert shutdown_transport(5.0) is True  # says goodbye: no client left
    wait_for(lambda: not daemon_running(runtime_dir), timeout_s=15, message="the idle daemon to exit")
    wait_for(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        timeout_s=10,
        message="the daemon process to end",
    )
    assert not os.path.exists(os.path.join(runtime_dir, PID_NAME))
    assert scalars(logdir, "loss") == [(7, 3.0)]


def test_a_daemon_started_by_hand_is_found_and_reports_status(daemon, runtime_dir, logdir):
    writer = SummaryWriter(logdir)
    assert daemon_pid(runtime_dir) == daemon.pid
    assert [p.pid for p in daemon_processes(runtime_dir)] == [daemon.pid]  # no second daemon started
    for step in range(25):
        writer.add_scalar("loss", float(step), step)
    assert writer.flush(timeout=20)
    status = status_json()
    assert [c["pid"] for c in status["clients"]] == [os.getpid()]
    assert status["records_written"] == 25
    size = os.path.getsize(event_files(logdir)[0])
    result = cli("status")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"daemon pid {daemon.pid}" in text
    assert "clients: 1" in text and f"pid {os.getpid()}" in text
    assert "records received: 25" in text
    assert "records written:  25" in text
    assert "records dropped:  0" in text
    assert "queue depth:      0 records" in text
    assert f"encoding threads: {status['encode_workers']}" in text and status["encode_workers"] >= 1
    written = int(text.split("bytes written:")[1].split()[0])
    assert 0 < written <= size  # the data records; the file also starts with its version record
    assert writer.close(timeout=10)


def test_logger_daemon_stop_writes_everything_and_stops(daemon, runtime_dir, logdir):
    writer = SummaryWriter(logdir)
    for step in range(500):
        writer.add_scalar("loss", float(step), step)
    # Received (the daemon counts it) but not flushed by the client.
    wait_for(lambda: status_json()["records_received"] >= 500, timeout_s=10, message="the records to arrive")
    result = cli("stop")
    assert result.returncode == 0, result.stderr
    assert "daemon stopped" in result.stdout
    assert daemon.wait(10) == 0
    assert not daemon_running(runtime_dir)
    assert not os.path.exists(os.path.join(runtime_dir, PID_NAME))
    assert scalars(logdir, "loss") == [(s, float(s)) for s in range(500)]
    shutdown_transport(0.5)  # its daemon is gone; do not wait long for it
    # The writer's client may have started the next daemon already: clients move on after a stop
    # (tests/faults/test_graceful_stop.py). The stopped one answers no more.
    status = cli("status")
    assert status.returncode == 1 or f"daemon pid {daemon.pid} " not in status.stdout, status.stdout


def test_stop_force_kills_a_daemon_that_does_not_answer(daemon, runtime_dir):
    os.kill(daemon.pid, signal.SIGSTOP)  # alive, holding its lock, answering nothing
    try:
        result = cli("stop", "--force", "--timeout", "1")
        assert result.returncode == 0, result.stderr
        assert "killed" in result.stderr
        assert daemon.wait(10) == -signal.SIGKILL
        assert not daemon_running(runtime_dir)
    finally:
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGCONT)


def test_status_and_stop_without_a_daemon(runtime_dir):
    result = cli("status")
    assert result.returncode == 1 and "no daemon is running" in result.stderr
    assert cli("stop").returncode == 0


# -- the runtime directory -----------------------------------------------------------------------


def test_the_runtime_dir_is_created_private(runtime_dir, logdir, monkeypatch):
    fresh = os.path.join(runtime_dir, "fresh")
    monkeypatch.setenv("LOGGER_RUNTIME_DIR", fresh)
    try:
        writer = SummaryWriter(logdir)
        assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
        assert daemon_running(fresh)
        assert os.path.exists(os.path.join(fresh, SOCKET_NAME))
        writer.add_scalar("loss", 1.0, 0)
        assert writer.flush(timeout=20)
    finally:
        shutdown_transport(5.0)
        stop_daemon(fresh)
    assert stat.S_IMODE(os.stat(runtime_dir).st_mode) == 0o700


@pytest.mark.faults
def test_a_runtime_dir_open_to_others_is_refused(runtime_dir, logdir):
    os.chmod(runtime_dir, 0o755)
    with pytest.raises(OSError) as info:
        SummaryWriter(logdir)
    message = str(info.value)
    assert runtime_dir in message and "open to other users" in message and "0o755" in message
    assert not daemon_running(runtime_dir)
    assert not os.path.exists(os.path.join(runtime_dir, SOCKET_NAME))
    result = cli("run", "--runtime-dir", runtime_dir, timeout_s=30)
    assert result.returncode != 0 and "open to other users" in result.stderr
    os.chmod(runtime_dir, 0o700)


# -- run names -----------------------------------------------------------------------------------

_ESCAPING = [
    ("../x", "a"),
    ("/abs", "a"),
    ("a/../../x", "b"),
    ("ok", "../../x"),
    ("ok", "/etc"),
    ("..", "a/../.."),
    (".", "."),
    ("a", ".."),
]


def test_add_scalars_refuses_runs_that_leave_the_logdir(daemon, logdir):
    writer = SummaryWriter(logdir)
    for main_tag, key in _ESCAPING:
        with pytest.raises(ValueError):
            writer.add_scalars(main_tag, {"fine": 0.0, key: 1.0}, 0)  # nothing of the call is logged
    writer.add_scalars("fine", {"train": 1.0, "test": 2.0}, 3)
    assert writer.flush(timeout=20)
    assert sorted(os.listdir(logdir)) == ["fine"]
    assert sorted(os.listdir(os.path.join(logdir, "fine"))) == ["test", "train"]
    assert scalars(os.path.join(logdir, "fine", "train"), "fine") == [(3, 1.0)]
    assert scalars(os.path.join(logdir, "fine", "test"), "fine") == [(3, 2.0)]
    status = status_json()
    assert status["records_dropped"] == {} and status["records_written"] == 2
    writer.close(timeout=10)


def test_a_raw_client_cannot_write_outside_the_logdir(daemon, runtime_dir, tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    os.symlink("../outside", root / "rel_link")
    bad_runs = [
        "../evil",
        "a/../../evil",
        "/abs/evil",
        str(outside),
        "link",
        "link/deeper",
        "rel_link/x",
        "..",
        "sub/../../evil",
    ]
    peer = RawPeer(runtime_dir)
    try:
        peer.send_message(MessageKind.HELLO, {"pid": os.getpid(), "host": "raw"})
        peer.wait_for_reply(MessageKind.WELCOME)
        records = [[int(RecordKind.OPEN), 1, "", "", 0, time.time(), {"logdir": str(root)}]]
        records += [[int(RecordKind.SCALAR), 1, run, "evil", 1, 1.0, 66.0] for run in bad_runs]
        records += [[int(RecordKind.SCALAR), 1, "good/run", "fine", 1, 1.0, 1.0]]
        peer.send_message(MessageKind.RECORDS, {"records": records})
        flush = peer.send_message(MessageKind.FLUSH, {})
        peer.wait_for_reply(MessageKind.ACK, seq=flush)
    finally:
        peer.close()
    assert os.listdir(outside) == []
    assert sorted(os.listdir(tmp_path)) == ["outside", "root"]
    assert sorted(os.listdir(root)) == ["good", "link", "rel_link"]
    assert scalars(str(root / "good" / "run"), "fine") == [(1, 1.0)]
    assert status_json()["records_dropped"] == {"bad_run_name": len(bad_runs)}


# -- fork safety ---------------------------------------------------------------------------------

# The fork happens in a fresh process, not in pytest's: see the stale-transport test below for why.
FORKING_WRITER = """
from logger_client import SummaryWriter
from logger_client._daemon_transport import shutdown_transport
logdir, sync = sys.argv[1], sys.argv[2]
import numpy as np
writer = SummaryWriter(logdir)
writer.add_scalar("parent", 0.0, 0)
writer.add_scalar("both", 0.0, 0)  # its key is the parent's: the child's connection announces it again
writer.add_histogram("parent_h", np.full(2048, 0.0, np.float32), 0)  # the parent's arena is in use
assert writer.flush(timeout=20)
child = os.fork()
if child == 0:  # the DataLoader-worker case: the child logs with the parent's writer object
    code = 1
    try:
        for step in range(100):
            writer.add_scalar("child", float(step), step)
            writer.add_histogram("child_h", np.full(2048, step, np.float32), step)  # in its own arena
            if step:
                writer.add_scalar("both", float(step), step)
        code = 0 if writer.flush(timeout=20) else 2
        touch(f"{sync}/child-ready", str(os.getpid()))
        wait_file(f"{sync}/release")
        shutdown_transport(5.0)
    finally:
        os._exit(code)
for step in range(1, 100):
    writer.add_scalar("parent", float(step), step)
    writer.add_histogram("parent_h", np.full(2048, step, np.float32), step)
assert writer.flush(timeout=20)
touch(f"{sync}/parent-ready")
_, status = os.waitpid(child, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert writer.close(timeout=20)
"""


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _spawn_parent_and_child(spawn, script, logdir, tmp_path) -> tuple[Spawned, str]:
    """Runs a forking `script`; returns its process and what the child wrote to `child-ready`."""
    proc = spawn(script, logdir, tmp_path)
    ready = [tmp_path / "parent-ready", tmp_path / "child-ready"]
    wait_for(
        lambda: all(p.exists() for p in ready) or proc.process.poll() is not None,
        timeout_s=60,
        message="parent and child to be connected",
    )
    assert all(p.exists() for p in ready), proc.output()
    return proc, (tmp_path / "child-ready").read_text()


def test_a_forked_child_logs_through_its_own_connection(daemon, logdir, spawn, tmp_path):
    proc, child_text = _spawn_parent_and_child(spawn, FORKING_WRITER, logdir, tmp_path)
    child = int(child_text)
    try:
        clients = status_json()["clients"]
        assert sorted(c["pid"] for c in clients) == sorted([proc.pid, child])
        assert len({c["id"] for c in clients}) == 2
        assert all(c["shared_arena"] for c in clients)  # the child shares an arena of its own
        touch(tmp_path / "release")
        proc.assert_ok(timeout_s=30)
    finally:
        _kill_quietly(child)
    assert scalars(logdir, "child") == [(s, float(s)) for s in range(100)]
    assert scalars(logdir, "parent") == [(s, float(s)) for s in range(100)]
    assert scalars(logdir, "both") == [(s, float(s)) for s in range(100)]
    histograms = accumulator(logdir)
    for tag in ("child_h", "parent_h"):
        assert [(h.step, h.histogram_value.min, h.histogram_value.max) for h in histograms.Histograms(tag)] == [
            (s, s, s) for s in range(100)
        ]
    assert len(event_files(logdir)) == 1


STALE_TRANSPORT = """
import threading
from logger_client import SummaryWriter
from logger_client._daemon_transport import shutdown_transport
logdir, sync = sys.argv[1], sys.argv[2]
old = SummaryWriter(os.path.join(logdir, "old"))
old.add_scalar("x", 1.0, 0)
assert old.close(timeout=20)
assert shutdown_transport(5.0)  # documented: the next writer connects afresh
writer = SummaryWriter(os.path.join(logdir, "new"))
assert writer.flush(timeout=20)
child = os.fork()
if child == 0:
    code = 1
    try:
        io_threads = sum(1 for t in threading.enumerate() if t.name == "logger-client-io")
        writer.add_scalar("child", 1.0, 0)
        flushed = writer.flush(timeout=20)
        touch(f"{sync}/child-ready", json.dumps({"pid": os.getpid(), "io_threads": io_threads, "flushed": flushed}))
        wait_file(f"{sync}/release")
        shutdown_transport(5.0)
        code = 0
    finally:
        os._exit(code)
touch(f"{sync}/parent-ready")
os.waitpid(child, 0)
writer.close(timeout=20)
"""


def test_a_forked_child_does_not_revive_a_shut_down_transport(daemon, logdir, spawn, tmp_path):
    proc, child_text = _spawn_parent_and_child(spawn, STALE_TRANSPORT, logdir, tmp_path)
    child = json.loads(child_text)
    try:
        assert child["flushed"] is True
        clients = status_json()["clients"]
        touch(tmp_path / "release")
        proc.assert_ok(timeout_s=30)
    finally:
        _kill_quietly(child["pid"])
    assert sorted(c["pid"] for c in clients) == sorted([proc.pid, child["pid"]])
    assert child["io_threads"] == 1


# -- bounded memory ------------------------------------------------------------------------------

IMAGES_AFTER_DAEMON_DIES = """
import numpy as np, psutil
from logger_client import SummaryWriter
logdir, sync = sys.argv[1], sys.argv[2]
writer = SummaryWriter(logdir)
assert writer.flush(timeout=30)
image = np.random.default_rng(0).integers(0, 255, (1, 1024, 1024), dtype=np.uint8)  # 1 MiB
touch(f"{sync}/ready")
wait_file(f"{sync}/killed")
me = psutil.Process()
rss_before = me.memory_info().rss
times = []
for step in range(300):
    start = time.perf_counter()
    writer.add_image("big", image, step)
    times.append(time.perf_counter() - start)
rss_after = me.memory_info().rss
touch(f"{sync}/result", json.dumps({"stats": writer.stats(), "rss_before": rss_before, "rss_after": rss_after,
                                    "max_call_s": max(times)}))
writer.close(timeout=0.5)
"""


def test_arrays_piling_up_wake_the_io_thread_once_per_quarter_of_the_bound(daemon, logdir, monkeypatch):
    """A logged array does not wake the I/O thread (the woken thread would take the GIL from the
    caller), and waits for the linger; but arrays piling up in the queue, a quarter of the bound,
    wake it once, so that they reach the daemon well before the linger is up."""
    monkeypatch.setenv("LOGGER_LINGER_S", "60")
    monkeypatch.setenv("LOGGER_MAX_BUFFER_BYTES", str(8 * 2**20))
    writer = SummaryWriter(logdir)
    assert writer.flush(timeout=20)  # the I/O thread's next drain is a minute away
    image = np.zeros((1, 1024, 1024), np.uint8)  # 1 MiB
    written = lambda count: lambda: writer.stats()["records_written"] >= count  # noqa: E731
    for round_ in range(2):
        writer.add_image("img", image, 3 * round_)
        writer.add_image("img", image, 3 * round_ + 1)  # a quarter of the bound queued: no wake-up yet
        assert writer.stats()["queued"] == 2
        writer.add_image("img", image, 3 * round_ + 2)  # past a quarter: one wake-up
        wait_for(written(3 * round_ + 3), timeout_s=20, message="the arrays to be written before the linger")
        assert writer.stats()["queued"] == 0
    assert writer.close(timeout=20)
    assert [e.step for e in EventAccumulator(logdir, size_guidance={"images": 0}).Reload().Images("img")] == list(
        range(6)
    )


def test_client_memory_is_bounded_when_the_daemon_is_frozen(daemon, runtime_dir, logdir, spawn, tmp_path):
    bound, arena = 64 * 2**20, 32 * 2**20
    try:
        proc, result, _ = _run_past_a_killed_daemon(
            IMAGES_AFTER_DAEMON_DIES,
            runtime_dir,
            logdir,
            spawn,
            tmp_path,
            {
                "LOGGER_MAX_BUFFER_BYTES": str(bound),
                "LOGGER_ARENA_BYTES": str(arena),
                "LOGGER_CLOSE_TIMEOUT_S": "1",
                "LOGGER_OVERFLOW": "drop",  # the "wait" policy's bounded wait is tested in test_overflow.py
            },
            result_timeout_s=60,
            signum=signal.SIGSTOP,  # alive (its lock held), reading nothing: the clients' bounds apply
        )
    finally:
        daemon.send_signal(signal.SIGCONT)
    stats = result["stats"]
    dropped = stats["records_dropped"].get("client_buffer_full", 0)
    assert dropped > 0
    assert stats["array_bytes_held"] <= bound
    assert dropped + stats["array_bytes_held"] // 2**20 == 300  # each image kept or counted
    # Arrays held (in the arena or not) stay within the bound; the arena's pages come on top.
    assert result["rss_after"] - result["rss_before"] < bound + arena + 48 * 2**20
    # No call waited on the frozen daemon (it would wait for good); what a call costs is measured
    # in benchmarks/, not here, where a busy machine may pause any call for tens of milliseconds.
    assert result["max_call_s"] < 1.0
    proc.assert_ok(timeout_s=15)


SCALARS_AFTER_DAEMON_DIES = """
import psutil
from logger_client import SummaryWriter
logdir, sync = sys.argv[1], sys.argv[2]
writer = SummaryWriter(logdir)
assert writer.flush(timeout=30)
touch(f"{sync}/ready")
wait_file(f"{sync}/killed")
me = psutil.Process()
rss_before = me.memory_info().rss
for step in range(1_000_000):
    writer.add_scalar("loss", 0.5, step)
time.sleep(1.0)  # let the I/O thread take what it may
rss_after = me.memory_info().rss
touch(f"{sync}/result", json.dumps({"stats": writer.stats(), "rss_before": rss_before, "rss_after": rss_after}))
writer.close(timeout=0.5)
"""


def test_client_memory_for_scalars_is_bounded_when_the_daemon_is_frozen(daemon, runtime_dir, logdir, spawn, tmp_path):
    bound = 50_000
    try:
        proc, result, _ = _run_past_a_killed_daemon(
            SCALARS_AFTER_DAEMON_DIES,
            runtime_dir,
            logdir,
            spawn,
            tmp_path,
            {"LOGGER_MAX_PENDING_RECORDS": str(bound), "LOGGER_BATCH_RECORDS": "1000", "LOGGER_CLOSE_TIMEOUT_S": "1"},
            result_timeout_s=120,
            signum=signal.SIGSTOP,
        )
    finally:
        daemon.send_signal(signal.SIGCONT)
    stats = result["stats"]
    dropped = stats["records_dropped"].get("client_queue_full", 0)
    assert dropped >= 1_000_000 - 2 * bound - 2000  # all but the bound's worth were refused, counted
    assert stats["queued"] <= bound + 1
    assert result["rss_after"] - result["rss_before"] < 64 * 2**20
    proc.assert_ok(timeout_s=15)


# -- values and bad writer options ---------------------------------------------------------------


def test_a_scalar_beyond_float32_range_is_written_as_infinity(daemon, logdir):
    writer = SummaryWriter(logdir)
    writer.add_scalar("diverged", 1e40, 1)  # tensorboardX stores float32(1e40) = inf
    writer.add_scalar("diverged", -1e300, 2)
    writer.add_scalar("diverged", 5.0, 3)
    assert writer.flush(timeout=20)
    assert scalars(logdir, "diverged") == [(1, float("inf")), (2, float("-inf")), (3, 5.0)]
    assert status_json()["records_dropped"] == {}
    writer.close(timeout=10)


def test_a_bad_filename_suffix_or_logdir_is_refused_at_construction(daemon, logdir, tmp_path):
    with pytest.raises(ValueError):
        SummaryWriter(os.path.join(logdir, "bad"), filename_suffix="x\0y")
    with pytest.raises(ValueError):
        SummaryWriter(os.path.join(logdir, "bad"), filename_suffix="a/b")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        SummaryWriter(str(blocker / "run"), purge_step=5)
    assert_other_writer_works(os.path.join(logdir, "good"))
    assert status_json()["records_dropped"] == {}


def _open_raw_writer(runtime_dir: str, options: dict) -> None:
    """A raw client opens a writer with `options` and logs one scalar; returns once it is acknowledged."""
    peer = RawPeer(runtime_dir)
    try:
        peer.send_message(MessageKind.HELLO, {"pid": os.getpid(), "host": "raw"})
        peer.wait_for_reply(MessageKind.WELCOME)
        records = [
            [int(RecordKind.OPEN), 1, "", "", 0, time.time(), options],
            [int(RecordKind.SCALAR), 1, "", "loss", 6, 1.0, 1.0],
        ]
        peer.send_message(MessageKind.RECORDS, {"records": records})
        peer.wait_for_reply(MessageKind.ACK, timeout_s=5, seq=peer.send_message(MessageKind.FLUSH, {}))
    finally:
        peer.close()


def test_the_daemon_survives_a_filename_suffix_with_a_nul_byte(daemon, runtime_dir, logdir):
    _open_raw_writer(runtime_dir, {"logdir": os.path.join(logdir, "bad"), "filename_suffix": "x\0y"})
    assert_other_writer_works(os.path.join(logdir, "good"))


def test_the_daemon_survives_a_purge_step_in_a_logdir_it_cannot_create(daemon, runtime_dir, logdir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    _open_raw_writer(runtime_dir, {"logdir": str(blocker / "run"), "purge_step": 5})
    assert_other_writer_works(os.path.join(logdir, "good"))
    assert set(status_json()["records_dropped"]) <= {"bad_logdir", "io_error", "unknown_writer"}


def assert_other_writer_works(logdir: str) -> None:
    writer = SummaryWriter(logdir)
    writer.add_scalar("loss", 2.0, 1)
    try:
        assert writer.flush(timeout=5)
        assert scalars(logdir, "loss") == [(1, 2.0)]
    finally:
        writer.close(timeout=1)


def test_a_zombie_client_counts_as_gone():
    from logger_daemon.server import _process_exists

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Exited, not yet reaped: the signal probe still finds the pid.
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, message="a zombie")
        assert not _process_exists(child.pid)
        assert _process_exists(os.getpid())
    finally:
        child.wait()
    assert not _process_exists(child.pid)


def test_a_dead_pid_forgets_a_client_of_this_pid_namespace_only(daemon, runtime_dir):
    """A sidecar daemon sees a training container's pids as other processes' (or none): it must
    not drop those clients by pid, only after their silence."""
    dead = []
    for _ in range(2):
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        dead.append(child.pid)
    here, elsewhere = RawPeer(runtime_dir), RawPeer(runtime_dir)
    try:
        for peer, pid, pidns in ((here, dead[0], pid_namespace()), (elsewhere, dead[1], pid_namespace() + 1)):
            peer.send_message(MessageKind.HELLO, {"pid": pid, "host": socket.gethostname(), "pidns": pidns})
            peer.wait_for_reply(MessageKind.WELCOME)
        wait_for(
            lambda: [c["pid"] for c in status_json()["clients"]] == [dead[1]],
            timeout_s=10,
            message="the client of this namespace whose process is gone to be forgotten, and only it",
        )
    finally:
        here.close()
        elsewhere.close()


def _threads_after_a_dot(imports: str) -> int:
    """Threads of a fresh interpreter, in a training's environment asking for 4 BLAS threads,
    after `imports` and one large numpy dot (which starts a BLAS pool where there is one)."""
    code = (
        f"import os; {imports} import numpy; numpy.ones(10**6).dot(numpy.ones(10**6)); "
        "print(len(os.listdir('/proc/self/task')))"
    )
    env = {**os.environ, "PYTHONPATH": REPO, "OPENBLAS_NUM_THREADS": "4", "OMP_NUM_THREADS": "4"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_the_daemon_process_keeps_blas_to_one_thread_whatever_the_training_asks():
    # Without the daemon's package imported first, this numpy starts a BLAS pool: the check can fail.
    if _threads_after_a_dot("") == 1:
        pytest.skip("this numpy's BLAS starts no threads of its own")
    assert _threads_after_a_dot("import logger_daemon.cli;") == 1
