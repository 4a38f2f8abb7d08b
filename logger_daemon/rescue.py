"""A daemon that aborts comes back in place: same pid, same lock, same endpoint.

libzmq aborts the process on conditions it does not expect to survive (an `accept` that finds no
file descriptor left is one a local peer can cause). With the optional `_rescue` extension, the
abort re-executes the daemon's own command line instead; the new image takes over the inherited
lock, binds the endpoint again, and clients reconnect and resend what was not acknowledged.
Without the extension the process dies, and the next client that needs a daemon starts one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys

log = logging.getLogger("logger_daemon")

#: Restarts in place before a daemon that keeps aborting is left to die (clients start another).
MAX_RESTARTS = 100


def arm(argv: list[str]) -> bool:
    """Re-executes `argv` (after `sys.executable`) on abort; False where the extension is missing."""
    try:
        from logger_daemon import _rescue
    except ImportError:
        log.info("the _rescue extension is not built: an abort ends this daemon")
        return False
    _rescue.arm([sys.executable, *argv])
    return True


def keep_lock_across_exec(lock_fd: int) -> None:
    """Lets the lock's fd survive the re-execution (Python opens fds close-on-exec)."""
    os.set_inheritable(lock_fd, True)


def inherited_lock(lock_path: str, lock_fd: int) -> int:
    """Checks that `lock_fd` is this process's lock on `lock_path` (as the aborted image left it)."""
    held, expected = os.fstat(lock_fd), os.stat(lock_path)
    if (held.st_dev, held.st_ino) != (expected.st_dev, expected.st_ino):
        raise RuntimeError(f"fd {lock_fd} is not the lock {lock_path}")
    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a no-op on our own lock; raises on another's
    os.set_inheritable(lock_fd, False)
    return lock_fd
