"""`logger-daemon` run as a user runs it, for tests that ask a live daemon what it did."""

from __future__ import annotations

import json
import subprocess
import sys


def cli(*args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    """`python -m logger_daemon ARGS`, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "logger_daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def status_json(timeout_s: float = 30.0) -> dict:
    """The daemon's `status --json`; fails the test if the command fails."""
    result = cli("status", "--json", timeout_s=timeout_s)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
