"""Finding the node's daemon, and starting one when none runs.

Processes starting at once take the runtime directory's spawn lock first, so they end up sharing
the one daemon the first of them started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from .reduction import root_endpoint
from .runtime import LOG_NAME, SPAWN_LOCK_NAME, LockTimeout, daemon_running, endpoint, ensure_runtime_dir, hold_lock
from .settings import Settings

#: How often a client that started a daemon looks whether it is up.
_POLL_S = 0.01


class DaemonUnavailable(RuntimeError):
    """No daemon could be found or started."""


def spawn_daemon(settings: Settings, extra: Sequence[str] = ()) -> None:
    """Starts a detached daemon for `settings.runtime_dir` (`extra`: more `run` arguments);
    returns once its launcher has forked.

    The daemon double-forks (`run --detach`), so it outlives this process, is not its child and
    holds none of its terminal: stdin, stdout and stderr point at /dev/null, logs go to daemon.log.
    """
    command = [
        sys.executable,
        "-m",
        "logger_daemon",
        "run",
        "--detach",
        "--runtime-dir",
        settings.runtime_dir,
        "--idle-timeout",
        str(settings.idle_timeout_s),
        *extra,
    ]
    launcher = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        start_new_session=True,
        close_fds=True,
    )
    if launcher.wait(timeout=settings.connect_timeout_s) != 0:
        raise DaemonUnavailable(
            f"the daemon launcher exited with {launcher.returncode}; see {os.path.join(settings.runtime_dir, LOG_NAME)}"
        )


def daemon_alive(settings: Settings) -> bool:
    """Whether a daemon holds the lock of `settings.runtime_dir` (a frozen one does; a dead one not)."""
    return daemon_running(settings.runtime_dir)


def find_or_start_daemon(settings: Settings) -> str:
    """The endpoint of the node's daemon, started here first if none is running."""
    _find_or_start(settings, ())
    return endpoint(settings.runtime_dir)


def find_or_start_root(settings: Settings, master_addr: str) -> str:
    """The root daemon of a job across nodes (`Settings.root_port`, `keys_dir`), started on this
    host, the job's MASTER_ADDR, if it does not run yet; its runtime directory is the node
    daemon's `root/`. Returns its endpoint."""
    with socket.socket() as probe:  # an address of another host cannot be bound: say so at once
        probe.bind((socket.gethostbyname(master_addr), 0))
    runtime_dir = os.path.join(settings.runtime_dir, "root")
    # Every interface (its CURVE keys guard it): MASTER_ADDR's name may resolve here to another
    # address (127.0.1.1) than on the other nodes.
    extra = ["--root", "--endpoint", f"tcp://0.0.0.0:{settings.root_port}", "--keys", settings.keys_dir]
    _find_or_start(replace(settings, runtime_dir=runtime_dir), extra)
    return root_endpoint(master_addr, settings.root_port)


def _find_or_start(settings: Settings, extra: Sequence[str]) -> None:
    runtime_dir = ensure_runtime_dir(settings.runtime_dir)
    if daemon_running(runtime_dir):
        return
    try:
        with hold_lock(os.path.join(runtime_dir, SPAWN_LOCK_NAME), settings.connect_timeout_s):
            if not daemon_running(runtime_dir):  # another process may have started it while we waited
                spawn_daemon(settings, extra)
                deadline = time.monotonic() + settings.connect_timeout_s
                while not daemon_running(runtime_dir):
                    if time.monotonic() > deadline:
                        raise DaemonUnavailable(
                            f"no daemon came up within {settings.connect_timeout_s}s; "
                            f"see {os.path.join(runtime_dir, LOG_NAME)}"
                        )
                    time.sleep(_POLL_S)
    except LockTimeout as exc:
        raise DaemonUnavailable(str(exc)) from None
