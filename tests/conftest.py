"""Fixtures shared by the tests: an isolated runtime directory per test, and daemons that never outlive it.

Every test that talks to a daemon gets its own `LOGGER_RUNTIME_DIR`, so daemons of different tests
never meet. At teardown the process's transport is shut down and any daemon of that directory is
stopped (then killed, if it does not stop within its deadline).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest

from logger_client._discovery import daemon_running
from logger_client._transport import shutdown_transport

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_for(
    condition: Callable[[], object], timeout_s: float = 20.0, interval_s: float = 0.02, message: str = "condition"
) -> object:
    """Polls `condition` until it returns a truthy value; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)


def stop_daemon(runtime_dir: str, timeout_s: float = 15.0) -> None:
    """Stops the daemon of `runtime_dir` politely, then by SIGKILL; returns once it is gone."""
    if daemon_running(runtime_dir):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "logger_daemon",
                "stop",
                "--force",
                "--runtime-dir",
                runtime_dir,
                "--timeout",
                str(timeout_s),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s + 30,
        )


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private runtime directory for this test (short: ipc socket paths are limited to ~100 bytes)."""
    path = tempfile.mkdtemp(prefix="tbl-")
    os.chmod(path, 0o700)
    monkeypatch.setenv("LOGGER_RUNTIME_DIR", path)
    monkeypatch.setenv("LOGGER_IDLE_TIMEOUT_S", "60")
    try:
        yield path
    finally:
        shutdown_transport(5.0)
        stop_daemon(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def logdir(tmp_path) -> str:
    """An empty log root for this test."""
    path = tmp_path / "runs"
    path.mkdir()
    return str(path)


@pytest.fixture
def daemon(runtime_dir: str) -> Iterator[subprocess.Popen]:
    """A daemon started by hand (`logger-daemon run`) in the foreground, as a sidecar would be."""
    log_path = os.path.join(runtime_dir, "foreground.log")
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "logger_daemon", "run", "--runtime-dir", runtime_dir],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: daemon_running(runtime_dir) or process.poll() is not None, message="the daemon to start")
        assert process.poll() is None, open(log_path).read()
        yield process
    finally:
        shutdown_transport(5.0)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
