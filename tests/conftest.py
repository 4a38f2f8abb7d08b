"""Fixtures shared by the tests: an isolated runtime directory per test, and daemons that never outlive it.

Every test that talks to a daemon gets its own `LOGGER_RUNTIME_DIR`, so daemons of different tests
never meet. At teardown the process's transport is shut down and any daemon of that directory is
stopped (then killed, if it does not stop within its deadline).

Tests that start daemons, subprocesses or benchmarks are marked `e2e`, so that
`python -m pytest -m "not e2e"` is the fast, in-process loop; the daemon fixtures refuse a test
that is not marked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from logger_client._daemon_transport import shutdown_transport
from logger_client.runtime import daemon_running

T = TypeVar("T")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_for(
    condition: Callable[[], T], timeout_s: float = 20.0, interval_s: float = 0.02, message: str = "condition"
) -> T:
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


def require_e2e(request: pytest.FixtureRequest) -> None:
    """Fails a test that starts a daemon without the `e2e` mark (it would slow the fast loop)."""
    if request.node.get_closest_marker("e2e") is None:
        pytest.fail(f"{request.node.nodeid} starts a daemon: mark it @pytest.mark.e2e")


@pytest.fixture
def runtime_dir(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private runtime directory for this test (short: ipc socket paths are limited to ~100 bytes)."""
    require_e2e(request)
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


@contextlib.contextmanager
def start_daemon(
    runtime_dir: str,
    preexec_fn: Callable[[], None] | None = None,
    *,
    args: tuple[str, ...] = (),
    stop_timeout_s: float = 15.0,
) -> Iterator[subprocess.Popen]:
    """Runs `logger-daemon run` (with `args`) in the foreground for the block; stopped by SIGTERM
    after it, or killed if it has not stopped within `stop_timeout_s`."""
    log_path = os.path.join(runtime_dir, "foreground.log")
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "logger_daemon", "run", "--runtime-dir", runtime_dir, *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    try:
        wait_for(lambda: daemon_running(runtime_dir) or process.poll() is not None, message="the daemon to start")
        if process.poll() is not None:
            with open(log_path) as log:
                pytest.fail(f"the daemon exited at start:\n{log.read()}")
        yield process
    finally:
        shutdown_transport(5.0)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
def daemon(runtime_dir: str) -> Iterator[subprocess.Popen]:
    """A daemon started by hand (`logger-daemon run`) in the foreground, as a sidecar would be."""
    with start_daemon(runtime_dir) as process:
        yield process


_MODULE_MARKED_E2E = re.compile(r"^pytestmark = \[?pytest\.mark\.e2e\b", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The fast loop (`-m "not e2e"`) does not import the modules whose every test is e2e (the
    fault suite, `*_e2e.py`, any module whose `pytestmark` starts with `e2e`): they import seconds
    of packages (torch, moto, transformers) before pytest deselects all they hold."""
    if config.getoption("markexpr") != "not e2e":
        return None
    name = collection_path.name
    if name == "faults" or name.endswith("_e2e.py"):
        return True
    if name.startswith("test_") and name.endswith(".py"):
        return bool(_MODULE_MARKED_E2E.search(collection_path.read_text(encoding="utf-8"))) or None
    return None
