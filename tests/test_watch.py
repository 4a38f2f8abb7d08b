"""`logger-daemon status --watch`: run for a few seconds as a subprocess against a real daemon while
a writer logs to two runs; the frames (piped, on a terminal, and as JSON lines) show clients, per-run
records per second, queue depth, bytes written and drops by reason; Ctrl-C ends it with status 0.
The rates and the frame's layout are also checked in process."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import REPO, wait_for
from daemon_cli import status_json

from logger_client import SummaryWriter
from logger_daemon.watch import REDRAW, frame, rates, watch

HEADER = "logger-daemon status"


@pytest.fixture
def busy_runs(daemon: subprocess.Popen, logdir: str) -> Iterator[tuple[str, str]]:
    """Two runs a writer logs to while the test runs: `fast` ~10x as many records as `slow`, and
    `slow` a record out of step order now and then (a drop by reason)."""
    fast, slow = os.path.join(logdir, "fast"), os.path.join(logdir, "slow")
    stop = threading.Event()

    def log() -> None:
        with SummaryWriter(fast) as a, SummaryWriter(slow) as b:
            step = 0
            while not stop.is_set():
                for _ in range(10):
                    a.add_scalar("loss", 1.0, step)
                    step += 1
                b.add_scalar("loss", 1.0, step)
                if step % 100 == 0:
                    b.add_scalar("loss", 1.0, 0)  # older than what is written: step_out_of_order
                time.sleep(0.002)

    thread = threading.Thread(target=log)
    thread.start()
    runs = os.path.realpath(fast), os.path.realpath(slow)
    try:
        # Every frame a test reads then shows both runs: the daemon has written to each.
        wait_for(lambda: set(runs) <= set(status_json()["records_written_by_run"]), message="both runs written")
        yield runs
    finally:
        stop.set()
        thread.join(30)


def start_watch(runtime_dir: str, *extra: str, **popen: Any) -> subprocess.Popen:
    command = [sys.executable, "-m", "logger_daemon", "status", "--watch", "--runtime-dir", runtime_dir, *extra]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=REPO, **popen)


def read_until(fd: int, done: Callable[[str], bool], timeout_s: float = 60.0) -> str:
    """What `fd` gives until `done(text so far)`, failing the test after `timeout_s`."""
    text = ""
    deadline = time.monotonic() + timeout_s
    while not done(text):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out after {timeout_s}s; read so far:\n{text}")
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty whose other end closed
                chunk = b""
            if not chunk:
                pytest.fail(f"the output ended; read so far:\n{text}")
            text += chunk.decode()
    return text


def interrupt(process: subprocess.Popen) -> int:
    """Ctrl-C, then the exit status."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()


def rate_of(frame_text: str, run: str) -> float:
    match = re.search(rf"^\s*([\d,.]+|-)\s+[\d,]+\s+{re.escape(run)}$", frame_text, flags=re.MULTILINE)
    assert match, f"{run} not in\n{frame_text}"
    return -1.0 if match.group(1) == "-" else float(match.group(1).replace(",", ""))


@pytest.mark.e2e
def test_watch_redraws_runs_rates_and_drops_until_ctrl_c(runtime_dir: str, busy_runs: tuple[str, str]) -> None:
    fast, slow = busy_runs
    process = start_watch(runtime_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    text = read_until(process.stdout.fileno(), lambda text: text.count(HEADER) >= 4 and text.endswith("\n\n"))
    assert interrupt(process) == 0
    frames = [HEADER + part for part in text.split(HEADER)[1:]]
    assert REDRAW not in text  # piped: frames one after another
    for shown in frames:
        assert re.search(r"^clients 1 ", shown, flags=re.MULTILINE)
        assert re.search(r"queue [\d,]+ records, ", shown)
        assert re.search(r"bytes written [\d.]+ (B|KiB|MiB)", shown)
        assert re.search(r"^  step_out_of_order\s+[\d,]+", shown, flags=re.MULTILINE) or shown is frames[0]
    assert rate_of(frames[0], fast) == -1.0  # no rate before a second sample
    last = frames[-1]
    assert rate_of(last, fast) > rate_of(last, slow) > 0
    assert re.search(r"records/s  received [\d,.]+   written [\d,.]+", last)
    assert re.search(r"^  step_out_of_order\s+[\d,]+\s+[\d,.]+/s$", last, flags=re.MULTILINE)
    assert process.stderr is not None and process.stderr.read() == b""


@pytest.mark.e2e
def test_watch_as_json_prints_a_line_a_turn(runtime_dir: str, busy_runs: tuple[str, str]) -> None:
    fast, slow = busy_runs
    process = start_watch(runtime_dir, "--json", "--interval", "0.5", stdout=subprocess.PIPE)
    assert process.stdout is not None
    text = read_until(process.stdout.fileno(), lambda text: text.count("\n") >= 3)
    assert interrupt(process) == 0
    lines = [json.loads(line) for line in text.splitlines()[:3]]
    assert lines[0]["rates"] is None
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)
    for line in lines:
        assert {"clients", "queue_records", "bytes_written", "records_dropped", "records_written_by_run"} <= set(
            line["status"]
        )
        assert {fast, slow} <= set(line["status"]["records_written_by_run"])
    later = lines[2]["rates"]
    assert later["runs"][fast] > later["runs"][slow] > 0 and later["records_written_per_s"] > 0
    assert set(later["clients"]) == {client["id"] for client in lines[2]["status"]["clients"]}


@pytest.mark.e2e
def test_watch_on_a_terminal_redraws_in_place(runtime_dir: str, busy_runs: tuple[str, str]) -> None:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))  # 250 columns
    try:
        environment = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
        process = start_watch(runtime_dir, stdout=terminal, stderr=terminal, env=environment)
        os.close(terminal)
        text = read_until(controller, lambda text: text.count(REDRAW) >= 3)
        assert interrupt(process) == 0
    finally:
        os.close(controller)
    assert text.startswith(REDRAW)
    second = text.split(REDRAW)[2].replace("\r\n", "\n")  # the terminal's line endings
    assert second.startswith(HEADER) and rate_of(second, busy_runs[0]) > 0


@pytest.mark.e2e
def test_watch_without_a_daemon_says_so(runtime_dir: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "logger_daemon", "status", "--watch", "--runtime-dir", runtime_dir],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 1 and "no daemon is running" in result.stderr


# -- in process -------------------------------------------------------------------------------------


def status(received: int, written: int, by_run: dict[str, int], dropped: dict[str, int], records: int) -> dict:
    return {
        "pid": 7,
        "uptime_s": 65.0,
        "endpoint": "ipc:///run/x/daemon.sock",
        "clients": [{"id": "c1", "pid": 11, "host": "h", "records": records}],
        "queue_records": 3,
        "queue_bytes": 2048,
        "open_files": 2,
        "restarts": 0,
        "records_received": received,
        "records_written": written,
        "records_duplicate": 0,
        "bytes_written": written * 40,
        "records_dropped": dropped,
        "records_written_by_run": by_run,
    }


def test_rates_are_increases_per_second_between_two_replies() -> None:
    before = status(100, 90, {"/r/a": 90}, {}, 100)
    after = status(300, 290, {"/r/a": 150, "/r/b": 140}, {"step_out_of_order": 4}, 300)
    assert rates(None, 0.0, after) is None
    per_s = rates((10.0, before), 12.0, after)
    assert per_s == {
        "records_received_per_s": 100.0,
        "records_written_per_s": 100.0,
        "bytes_written_per_s": 4000.0,
        "runs": {"/r/a": 30.0, "/r/b": 70.0},
        "clients": {"c1": 100.0},
        "dropped": {"step_out_of_order": 2.0},
    }


def test_a_frame_shows_counters_runs_by_rate_and_clients() -> None:
    before = status(100, 90, {"/r/a": 90}, {}, 100)
    after = status(300, 290, {"/r/a": 150, "/r/b": 140}, {"step_out_of_order": 4}, 300)
    shown = frame(after, rates((10.0, before), 12.0, after), "/run/x", 1.0, 100)
    lines = shown.splitlines()
    assert lines[0].startswith(HEADER) and "pid 7, up 1m05s" in lines[0]
    assert lines[1].startswith("clients 1   queue 3 records, 2.0 KiB arrays   open files 2")
    assert "received 100.0   written 100.0   bytes written/s 3.9 KiB" in lines[2]
    assert re.match(r"^  step_out_of_order\s+4\s+2.0/s$", lines[5])
    runs = lines[lines.index(next(line for line in lines if line.endswith("  RUN"))) + 1 :][:2]
    assert [line.split()[-1] for line in runs] == ["/r/b", "/r/a"]  # the busiest first
    assert lines[-1].split() == ["100.0", "300", "11", "h"]
    assert all(len(line) <= 100 for line in lines)
    assert "no daemon answering" in frame(None, None, "/run/x", 1.0, 100)
    assert not any(line.startswith("held") for line in lines)


def test_a_frame_shows_what_is_held_while_the_disk_refuses_writes() -> None:
    held = {
        **status(10, 4, {"/r/a": 4}, {}, 10),
        "write_error": "No space left on device",
        "records_held": 6,
        "bytes_held": 3072,
    }
    lines = frame(held, None, "/run/x", 1.0, 120).splitlines()
    assert "held       6 records, 3.0 KiB: the disk refuses writes (No space left on device)" in lines


def test_watch_stops_on_ctrl_c_with_status_zero(capsys: pytest.CaptureFixture[str]) -> None:
    replies = iter([status(1, 1, {}, {}, 1), None])

    def ask() -> dict | None:
        try:
            return next(replies)
        except StopIteration:
            raise KeyboardInterrupt from None

    assert watch(ask, "/run/x", interval_s=0.01, as_json=True) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["status"]["pid"] == 7 and first["rates"] is None
    assert second["status"] is None and "no daemon answering" in second["error"]


@pytest.mark.e2e
def test_records_written_by_run_count_each_run_s_records_exactly(daemon: subprocess.Popen, logdir: str) -> None:
    """The per-run counts behind the rates: each run's records once on disk, summing to the total."""
    runs = {os.path.realpath(os.path.join(logdir, name)): count for name, count in (("a", 30), ("b", 7))}
    for run, count in runs.items():
        with SummaryWriter(run) as writer:
            for step in range(count):
                writer.add_scalar("loss", 0.5, step)
            assert writer.flush() is True
    status = status_json()
    assert status["records_written_by_run"] == runs
    assert status["records_written"] == sum(runs.values())
