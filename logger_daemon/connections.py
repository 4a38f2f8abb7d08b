"""Keeps the daemon's connections below its file-descriptor limit.

Each connection costs the daemon one fd, and ZeroMQ aborts the process when `accept` fails for
want of one. So the daemon raises its soft limit as far as it may, counts connections through a
socket monitor, and stops listening before the limit is near: it unlinks the socket's path (a
second hard link keeps the socket), so new peers find nothing there and ZeroMQ clients retry,
while connections already made carry on (unbinding would close them all). Once enough close,
the path is linked back.
"""

from __future__ import annotations

import logging
import os
import resource
import struct
from typing import Any, cast

import zmq

log = logging.getLogger("logger_daemon")

#: Where the hard limit is unlimited, the soft limit is raised to this much.
_FD_CEILING = 1 << 20
#: Fds kept for the daemon's own files, and for connections accepted before it stops listening
#: (a peer can connect every few microseconds; the monitor tells the daemon a little later).
_MIN_RESERVE = 256
#: Connections waiting to be accepted: few, since each is accepted unseen by the cap.
LISTEN_BACKLOG = 32
#: Monitor events of a failed handshake (a peer without the right CURVE keys).
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
#: Below the cap by this fraction of it, the daemon listens again.
_RESUME_FRACTION = 0.75


def raise_fd_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit (where allowed); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _FD_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.info("cannot raise the open-file limit from %d: %s", soft, exc)
    return _FD_CEILING if soft == resource.RLIM_INFINITY else soft


def connection_cap(fd_limit: int) -> int:
    """The most connections the daemon holds with `fd_limit` fds, leaving it a reserve."""
    return max(1, fd_limit - max(_MIN_RESERVE, fd_limit // 4))


class ConnectionGuard:
    """Counts a ROUTER socket's connections; at `cap` hides its ipc path, showing it again below."""

    def __init__(self, sock: zmq.Socket, endpoint: str, cap: int) -> None:
        self.cap = cap
        self.resume_below = int(cap * _RESUME_FRACTION)
        self.open = 0
        #: How often the daemon stopped listening, and accepts that failed (both refusals).
        self.times_full = 0
        self.accept_failures = 0
        #: Peers whose security handshake failed: without the root's CURVE key, or not the node's.
        self.refused_peers = 0
        self.monitor = sock.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPT_FAILED | _HANDSHAKE_FAILED
        )
        self._sock = sock
        # Only a path can be hidden and shown again; a tcp endpoint is counted, not capped.
        self._path = endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else None
        self._hidden_path = f"{self._path}.held" if self._path else None
        self.listening = True

    def bound(self) -> None:
        """Called once the socket is bound: links the path that keeps it while hidden."""
        if self._path and self._hidden_path:
            _replace_link(self._path, self._hidden_path)

    def pending(self) -> bool:
        """Whether the monitor has events to read (cheap enough to ask before each message)."""
        return bool(cast(int, self.monitor.get(zmq.EVENTS)) & zmq.POLLIN)

    def on_events(self) -> int:
        """Reads the monitor's pending events, hiding the path the moment the count reaches the cap;
        how many connections closed."""
        closed = 0
        while True:
            try:
                event = monitor_event(self.monitor.recv_multipart(flags=zmq.NOBLOCK))
            except zmq.Again:
                break
            if event == zmq.EVENT_ACCEPTED:
                self.open += 1
                if self.listening and self.open >= self.cap:
                    self._stop_listening()
            elif event == zmq.EVENT_DISCONNECTED:
                self.open = max(0, self.open - 1)
                closed += 1
            elif event & _HANDSHAKE_FAILED:
                self.refused_peers += 1
                log.warning("refused a peer: its security handshake failed (event %d)", event)
            else:
                self.accept_failures += 1
        if not self.listening and self.open < self.resume_below and self._path and self._hidden_path:
            _replace_link(self._hidden_path, self._path)
            self.listening = True
            log.info("%d connections: accepting again", self.open)
        return closed

    def _stop_listening(self) -> None:
        if self._path is None:
            return
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass
        self.listening = False
        self.times_full += 1
        log.warning("%d connections (cap %d): not accepting more until some close", self.open, self.cap)

    def status(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "cap": self.cap,
            "listening": self.listening,
            "times_full": self.times_full,
            "accept_failures": self.accept_failures,
            "refused_peers": self.refused_peers,
        }

    def close(self) -> None:
        self._sock.disable_monitor()
        self.monitor.close(0)
        if self._hidden_path:
            try:
                os.unlink(self._hidden_path)
            except FileNotFoundError:
                pass


def monitor_event(frames: list[bytes]) -> int:
    """The event of a ZeroMQ monitor message (its first frame: a 16-bit event, a 32-bit value).
    Parsed here rather than by pyzmq's helper, whose module imports asyncio: a restarting
    daemon's start-up is what its clients wait for."""
    return int(struct.unpack_from("=H", frames[0])[0])


def _replace_link(existing: str, new: str) -> None:
    """Makes `new` a hard link to `existing`, replacing whatever `new` was."""
    try:
        os.unlink(new)
    except FileNotFoundError:
        pass
    os.link(existing, new)
