"""The per-user runtime directory where clients and the node's daemon meet.

A daemon, whether started by hand (`logger-daemon run`) or by a client, holds an exclusive lock on
`<runtime_dir>/daemon.lock` for as long as it lives and listens on `ipc://<runtime_dir>/daemon.sock`.
The kernel drops the lock when the daemon dies, so "is one running" never trusts a stale file.
Clients that find none take `<runtime_dir>/spawn.lock` before starting one (see `_discovery`).
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .settings import ENV_PREFIX

__all__ = [
    "DAEMON_LOCK_NAME",
    "LOG_NAME",
    "PID_NAME",
    "SOCKET_NAME",
    "SPAWN_LOCK_NAME",
    "LockTimeout",
    "daemon_pid",
    "daemon_running",
    "endpoint",
    "ensure_runtime_dir",
    "hold_lock",
    "pid_namespace",
    "take_lock",
]

SOCKET_NAME = "daemon.sock"
DAEMON_LOCK_NAME = "daemon.lock"
SPAWN_LOCK_NAME = "spawn.lock"
PID_NAME = "daemon.pid"
LOG_NAME = "daemon.log"

#: How often a waiter tries a lock again.
_LOCK_POLL_S = 0.01
#: Longest path of a unix socket (sun_path, less its terminating NUL).
_MAX_IPC_PATH_BYTES = 107
_RUNTIME_DIR_VARIABLE = ENV_PREFIX + "RUNTIME_DIR"


class LockTimeout(TimeoutError):
    """A lock was still held by another process at the deadline."""


def ensure_runtime_dir(path: str) -> str:
    """Creates the per-user runtime directory (mode 0700) or checks that an existing one is
    private: a directory (not a link), owned by this user, that no one else can open. Each error
    says what to fix."""
    elsewhere = f"or set {_RUNTIME_DIR_VARIABLE} to a directory of your own"
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"cannot create the runtime directory {path} ({exc.strerror}): {elsewhere}") from None
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise PermissionError(f"runtime directory {path} is a symbolic link: remove it, {elsewhere}")
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"runtime directory {path} is not a directory: remove it, {elsewhere}")
    if info.st_uid != os.getuid():
        raise PermissionError(
            f"runtime directory {path} belongs to uid {info.st_uid}, not to this user (uid {os.getuid()}): "
            f"another user made it; {elsewhere}"
        )
    if info.st_mode & 0o077:
        raise PermissionError(
            f"runtime directory {path} is open to other users (mode {oct(info.st_mode & 0o777)}): "
            f"run `chmod 700 {path}`, {elsewhere}"
        )
    socket_path = os.path.join(path, SOCKET_NAME)
    if len(os.fsencode(socket_path)) > _MAX_IPC_PATH_BYTES:
        raise ValueError(f"the daemon's socket path {socket_path} is too long for a unix socket: {elsewhere}")
    return path


def pid_namespace() -> int:
    """An id of this process's PID namespace, 0 where the system does not say. Two processes see
    each other's pids (and /proc entries) only within one: a sidecar container may not."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


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


def take_lock(path: str, timeout_s: float) -> int:
    """An exclusive flock on `path` (created 0600), waited for at most `timeout_s`: its fd, which
    holds the lock until closed. Raises LockTimeout."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise LockTimeout(f"timed out after {timeout_s}s waiting for {path}") from None
            time.sleep(_LOCK_POLL_S)


@contextmanager
def hold_lock(path: str, timeout_s: float) -> Iterator[None]:
    """`take_lock` for the duration of a with-block."""
    fd = take_lock(path, timeout_s)
    try:
        yield
    finally:
        os.close(fd)
