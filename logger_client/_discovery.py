"""Finding the node's daemon, and starting one when none runs.

A daemon, whether started by hand (`logger-daemon run`) or by a client, holds an exclusive lock on
`<runtime_dir>/daemon.lock` for as long as it lives and listens on `ipc://<runtime_dir>/daemon.sock`.
The kernel drops the lock when the daemon dies, so "is one running" never trusts a stale file.
Clients that find none take `<runtime_dir>/spawn.lock` first, so processes starting at once end up
sharing the one daemon the first of them started.
"""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ._config import Settings

SOCKET_NAME = "daemon.sock"
DAEMON_LOCK_NAME = "daemon.lock"
SPAWN_LOCK_NAME = "spawn.lock"
PID_NAME = "daemon.pid"
LOG_NAME = "daemon.log"


class DaemonUnavailable(RuntimeError):
    """No daemon could be found or started."""


def ensure_runtime_dir(path: str) -> str:
    """Creates the per-user runtime directory (mode 0700) or checks that an existing one is private."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"runtime directory {path} is not a directory")
    if info.st_uid != os.getuid():
        raise PermissionError(f"runtime directory {path} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o077:
        raise PermissionError(f"runtime directory {path} is open to other users (mode {oct(info.st_mode & 0o777)})")
    return path


def endpoint(runtime_dir: str) -> str:
    """The ZeroMQ endpoint of the daemon that owns `runtime_dir`."""
    return "ipc://" + os.path.join(runtime_dir, SOCKET_NAME)


def daemon_pid(runtime_dir: str) -> int | None:
    """The pid the daemon of `runtime_dir` wrote when it started, if its pid file is there."""
    try:
        with open(os.path.join(runtime_dir, PID_NAME)) as pid_file:
            return int(pid_file.read().strip())
    except (OSError, ValueError):
        return None


def daemon_running(runtime_dir: str) -> bool:
    """True while some process holds the daemon lock of `runtime_dir`."""
    path = os.path.join(runtime_dir, DAEMON_LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe lock, if it was taken
    return False


@contextmanager
def file_lock(path: str, timeout_s: float) -> Iterator[None]:
    """An exclusive flock on `path`, waited for at most `timeout_s`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DaemonUnavailable(f"timed out after {timeout_s}s waiting for {path}") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


def spawn_daemon(settings: Settings) -> None:
    """Starts a detached daemon for `settings.runtime_dir`; returns once its launcher has forked.

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


def find_or_start_daemon(settings: Settings) -> str:
    """The endpoint of the node's daemon, started here first if none is running."""
    runtime_dir = ensure_runtime_dir(settings.runtime_dir)
    if daemon_running(runtime_dir):
        return endpoint(runtime_dir)
    with file_lock(os.path.join(runtime_dir, SPAWN_LOCK_NAME), settings.connect_timeout_s):
        if not daemon_running(runtime_dir):  # another process may have started it while we waited
            spawn_daemon(settings)
            deadline = time.monotonic() + settings.connect_timeout_s
            while not daemon_running(runtime_dir):
                if time.monotonic() > deadline:
                    raise DaemonUnavailable(
                        f"no daemon came up within {settings.connect_timeout_s}s; "
                        f"see {os.path.join(runtime_dir, LOG_NAME)}"
                    )
                time.sleep(0.01)
    return endpoint(runtime_dir)
