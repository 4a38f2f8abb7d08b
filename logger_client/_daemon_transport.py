"""The transport to the node's daemon: a `Producer` the writers feed, and one background I/O thread
per process that moves what it packs to a `Sender` on a ZeroMQ socket.

The I/O thread wakes when a producer packed a batch, a flush or close is asked or arrays pile up
(a quarter of the array bound queued), and every `linger_s` otherwise, so a record is on its way
within `linger_s`. It takes the GIL as seldom as it can: a training thread coming back from its
step waits for it (see docs/design.md, Threading and the GIL).

`get_transport()` gives the process's one transport; `shutdown_transport()` flushes and closes it
(at interpreter exit too); a forked child resets it to a connection of its own.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq

from ._arena import Arena
from ._discovery import DaemonUnavailable, daemon_alive, find_or_start_daemon
from ._producer import Batch, FlushRequest, Producer
from ._sender import Sender, connect_dealer, new_client_id
from .settings import Settings
from .transport import TransportStats

log = logging.getLogger("logger_client")

#: How long exiting waits for a daemon that already let a flush time out.
_GRACE_AFTER_TIMEOUT_S = 0.5
#: How long shutdown waits for the I/O thread beyond its flush.
_JOIN_GRACE_S = 1.0
#: How often the I/O thread checks that its daemon is alive (its lock is held).
_PROBE_S = 0.5
#: After its connection drops, how often and for how long it checks: a killed daemon's lock is
#: released as its process ends, around the moment its sockets close.
_PROBE_AFTER_DISCONNECT_S = 0.01
_PROBE_WINDOW_AFTER_DISCONNECT_S = 1.0
#: Waits between attempts to find or start a daemon, while none can be had.
_RETRY_FIRST_S = 1.0
_RETRY_MAX_S = 30.0
_POLL_WHILE_DISCONNECTED_S = 0.1


class DaemonTransport:
    """The process's connection to its daemon, shared by every SummaryWriter of the process.

    `find_endpoint` gives the daemon's ZeroMQ endpoint (by default: the runtime directory's,
    starting a daemon there if none runs); it is called on the I/O thread. `secure` sets up each
    socket's security first (a node daemon forwarding to a root: CURVE).
    """

    def __init__(
        self,
        settings: Settings,
        find_endpoint: Callable[[Settings], str] = find_or_start_daemon,
        daemon_alive: Callable[[Settings], bool] = daemon_alive,
        secure: Callable[[zmq.Socket], None] | None = None,
    ) -> None:
        self.settings = settings
        self._secure = secure
        self._find_endpoint = find_endpoint
        self._daemon_alive = daemon_alive
        self._cid = new_client_id()
        self._arena = Arena(settings.arena_bytes)
        # In the background, while the daemon is found: the first arrays find warm pages.
        self._arena.warm(settings.arena_warm_bytes)
        self._producer = Producer(settings, self._wake)
        self._producer.deliverable = self._deliverable
        self.queue = self._producer.queue
        self.batch_records = self._producer.batch_records
        # The calls of every logged array or batch go straight to the part that does the work: an
        # extra Python frame costs microseconds right after a training step (caches cold).
        self.scalar_key = self._producer.scalar_key
        self.submit_array = self._producer.submit_array
        self.on_backlog = self._producer.on_backlog
        self.empty_array = self._arena.empty
        self._pid = os.getpid()
        self._wake_r, self._wake_w = _wake_pipe()
        self._stopping = threading.Event()
        self._connected = threading.Event()  # set once the daemon answered, or the thread failed
        self._error: str | None = None
        self._disconnected: str | None = None  # why no daemon can be had now, while that lasts
        self._daemon_unresponsive = False  # a flush timed out and no ack came since
        self._flush_lock = threading.Lock()
        self._drops_at_last_flush = 0
        self._sender: Sender | None = None  # the I/O thread's; read by `stats` from other threads
        self._dormant = False  # a forked child's I/O thread, until the child logs
        self._needed = threading.Event()  # wakes a dormant I/O thread
        self._thread = threading.Thread(target=self._run, name="logger-client-io", daemon=True)
        self._thread.start()

    def reset_after_fork(self) -> None:
        """In a forked child: a connection of its own, never the parent's socket or thread. The
        child's writers stay open and are announced to its daemon again, once it logs.

        Until then the child holds no socket and no ZeroMQ context: a child forked only to run
        another program (`subprocess` with a `preexec_fn`) closes its fds before the exec, and
        ZeroMQ's own thread aborts the process when its fds close under it."""
        self._producer.reset_after_fork()
        self._arena.close()
        self._arena = Arena(self.settings.arena_bytes)
        self.empty_array = self._arena.empty
        self._pid = os.getpid()
        self._cid = new_client_id()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r, self._wake_w = _wake_pipe()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._error = None
        self._disconnected = None
        self._daemon_unresponsive = False
        self._flush_lock = threading.Lock()
        self._drops_at_last_flush = 0
        self._sender = None
        self._send_soon = False  # a ranked writer opened: drain the queue at the next wake-up
        self._dormant = True
        self._needed = threading.Event()
        self._thread = threading.Thread(target=self._run_once_needed, name="logger-client-io", daemon=True)
        self._thread.start()

    # -- the Transport interface: any thread -------------------------------------------------------

    def open_writer(self, options: dict[str, Any]) -> int:
        writer = self._producer.open_writer(options)
        if "rank" in options or "contributor" in options:
            # A rank takes part in its job's combined values from when the daemon knows its writer:
            # its OPEN goes now, before any other rank can log the first step.
            self._send_soon = True
            self._wake()
        return writer

    def queue_close(self, writer: int) -> None:
        """Queues a writer's close without waiting for it (a node daemon's link to its root)."""
        self._producer.close_writer(writer)

    def request_flush(self) -> FlushRequest:
        """Queues a flush without waiting for it (a node daemon's flush of what it forwarded)."""
        return self._producer.request_flush()

    def close_writer(self, writer: int, timeout_s: float) -> bool:
        """Sends a writer's close and waits until the daemon has written all it sent."""
        self._producer.close_writer(writer)
        return self.flush(timeout_s)

    def flush(self, timeout_s: float) -> bool:
        """Blocks until everything queued before this call is written by the daemon, or timeout."""
        if not self._thread.is_alive():
            return False  # nothing will ever acknowledge it
        request = self._producer.request_flush()
        if not request.done.wait(timeout_s):
            self._daemon_unresponsive = True  # until the daemon next answers
            return False
        return request.ok and self._nothing_dropped_since_last_flush()

    def _nothing_dropped_since_last_flush(self) -> bool:
        """Whether no record was dropped (by this client or the daemon) since the previous flush
        returned: only then is everything logged before this flush on disk. The daemon reports
        its refusals with its acknowledgements, so they are all in by the time a flush is done."""
        total = self.dropped_total()
        with self._flush_lock:
            clean = total == self._drops_at_last_flush
            self._drops_at_last_flush = total
        return clean

    def dropped_total(self) -> int:
        """Records dropped since this process connected, by this client or refused by the daemon:
        the sum of `stats()["records_dropped"]`, without the rest of `stats()` (which counts
        what is queued, item by item)."""
        sender = self._sender
        refused = sender.counts()[2] if sender is not None else Counter[str]()
        return sum(self._producer.dropped().values()) + sum(refused.values())

    def stats(self) -> TransportStats:
        """Counts since this process connected.

        `records_sent`: data records handed to the daemon; `records_written`: those it confirmed
        written; `records_dropped`: by reason, both what this client could not keep and what the
        daemon refused (whose reasons `logger-daemon status` shows too).
        """
        sender = self._sender
        sent, acked, refused = sender.counts() if sender is not None else (0, 0, Counter[str]())
        return {
            "records_sent": sent,
            "records_written": acked - sum(refused.values()),
            "records_dropped": dict(self._producer.dropped() + refused),
            "array_bytes_held": self._producer.array_bytes_held(),
            "arena_bytes": self._arena.faulted_bytes,
            "queued": self._producer.queued(),
            "records_pending": self._producer.pending(),
            "error": self._error or self._disconnected,
            "uploads": sender.uploads() if sender is not None else {},
            "write_error": sender.write_error if sender is not None else None,
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    def wait_connected(self) -> None:
        """Waits for the daemon's welcome; raises if none comes within `connect_timeout_s`."""
        timeout_s = self.settings.connect_timeout_s
        if not self._connected.wait(timeout_s):
            raise ConnectionError(self._error or f"the daemon did not answer within {timeout_s}s")
        if self._error:
            raise ConnectionError(self._error)

    def shutdown(self, timeout_s: float) -> bool:
        """Flushes within `timeout_s`, says goodbye and stops the I/O thread. Never blocks longer.

        With nothing unacknowledged there is nothing to wait for; after a flush that already
        timed out (the daemon is presumed gone) only a short grace is given, so a process whose
        daemon died exits promptly.
        """
        deadline = time.monotonic() + timeout_s
        if self._daemon_unresponsive:
            timeout_s = min(timeout_s, _GRACE_AFTER_TIMEOUT_S)
        if not self._thread.is_alive():
            flushed = False
        elif self._producer.idle() or (self._dormant and not self._producer.logged_since_fork()):
            flushed = True
        else:
            flushed = self.flush(timeout_s)
        self._stopping.set()
        self._wake()
        self._thread.join(max(0.0, deadline - time.monotonic()) + _JOIN_GRACE_S)
        return flushed

    def owned_by_this_process(self) -> bool:
        """False in a forked child until `reset_after_fork` ran."""
        return self._pid == os.getpid()

    def _deliverable(self) -> bool:
        """Whether a daemon may acknowledge what is held: one is connected (or being reconnected
        to) and the transport is not stopping."""
        return self._disconnected is None and not self._stopping.is_set() and self._thread.is_alive()

    def _wake(self) -> None:
        if self._dormant:
            self._needed.set()
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def _fail(self, error: str) -> None:
        if self._error is None:  # the first cause is the one to report
            log.error("%s", error)
            self._error = error
        self._connected.set()

    # -- the I/O thread ----------------------------------------------------------------------------

    def _run_once_needed(self) -> None:
        """A forked child's I/O thread: connects once the child logged, flushes or opened a
        writer (looking every `linger_s`, as the I/O thread sends), or ends if it stops first."""
        while not self._producer.logged_since_fork():
            if self._stopping.is_set():
                return
            self._needed.wait(self._producer.linger_s)
            self._needed.clear()
        self._dormant = False
        self._run()

    def _run(self) -> None:
        context = zmq.Context()
        sender = None
        try:
            sock = connect_dealer(context, self._find_endpoint(self.settings), self._secure)
            sender = Sender(sock, self._arena, self._producer.release, self._cid)
            self._producer.travels_in_arena = sender.travels_in_arena
            sender.hello()
            self._sender = sender
            while not self._serve(sender):  # the daemon is gone: find or start the next one
                if not self._reconnect(context, sender):
                    break
        except Exception as exc:  # the thread must record why it stopped, never die silently
            self._fail(f"logger_client I/O thread failed: {exc!r}")
        finally:
            if sender is not None:
                sender.sock.close(linger=0)
                sender.fail_flushes()
            context.term()
            self._producer.fail_flushes()
            lost = self._producer.give_up()
            if lost:
                log.warning("logger_client: %d record(s) were not confirmed written by the daemon", lost)

    def _reconnect(self, context: zmq.Context, sender: Sender) -> bool:
        """Moves `sender` to a daemon found or started the usual way, and resends everything not
        acknowledged to it. Retries, backing off, while none can be had: meanwhile every flush
        returns False at once. False if the transport is shutting down first."""
        sender.sock.close(linger=0)
        backoff_s = _RETRY_FIRST_S
        while not self._stopping.is_set():
            try:
                endpoint = self._find_endpoint(self.settings)
            except (DaemonUnavailable, OSError) as exc:
                self._disconnected = f"no daemon to be had: {exc}"
                log.error("logger_client: %s; retrying in %.0fs", self._disconnected, backoff_s)
                sender.fail_flushes()
                deadline = time.monotonic() + backoff_s
                while time.monotonic() < deadline and not self._stopping.is_set():
                    self._producer.fail_flushes()
                    self._stopping.wait(_POLL_WHILE_DISCONNECTED_S)
                backoff_s = min(2 * backoff_s, _RETRY_MAX_S)
                continue
            sender.reconnect(connect_dealer(context, endpoint, self._secure))
            sender.resend([self._producer.announcement()])
            self._disconnected = None
            log.warning("logger_client: the daemon was gone; reconnected and resent what it had not written")
            return True
        return False

    def _serve(self, sender: Sender) -> bool:
        """Moves records until the transport stops (True) or the daemon is gone (False)."""
        # The socket's monitor says at once when the connection drops (a killed daemon's socket
        # closes with it), so the lock is probed then, not only every `_PROBE_S`.
        monitor = sender.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            return self._serve_connection(sender, monitor)
        finally:
            sender.sock.disable_monitor()
            monitor.close(linger=0)

    def _serve_connection(self, sender: Sender, monitor: zmq.Socket) -> bool:
        poller = zmq.Poller()
        poller.register(sender.sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        producer = self._producer
        last_sent = next_drain = last_probe = time.monotonic()
        probe_quickly_until = 0.0
        while True:
            wait_s = max(0.0, next_drain - time.monotonic())
            if probe_quickly_until:
                wait_s = min(wait_s, _PROBE_AFTER_DISCONNECT_S)
            events = dict(poller.poll(math.ceil(wait_s * 1000)))
            woken = self._wake_r in events
            if woken:
                _empty_pipe(self._wake_r)
            if sender.sock in events:
                self._receive(sender)
            now = time.monotonic()
            if monitor in events:
                _drain_monitor(monitor)
                probe_quickly_until = now + _PROBE_WINDOW_AFTER_DISCONNECT_S
            # The queue is drained when the linger is up or something special (an array, a flush)
            # waits in it; a plain wake-up only sends what producers packed. Never merely because
            # an ack came in: that would send a trickle of tiny batches.
            linger_up = now >= next_drain or self._stopping.is_set()
            if woken or linger_up:
                drain, self._send_soon = linger_up or producer.specials_waiting() or self._send_soon, False
                if self._send(sender, drain):
                    last_sent = now
            if linger_up:
                next_drain = now + producer.linger_s
            sender.retry_unsent()
            if now - last_sent > self.settings.heartbeat_s:
                sender.heartbeat()
                last_sent = now
            if sender.unknown_to_daemon:  # a daemon that restarted: it must hear HELLO first
                return False
            if now > probe_quickly_until:
                probe_quickly_until = 0.0  # the daemon outlived its dropped connection
            if probe_quickly_until or now - last_probe > _PROBE_S:
                last_probe = now
                if not self._daemon_alive(self.settings):
                    return False
            if self._stopping.is_set() and not self.queue:
                sender.bye()
                return True

    def _send(self, sender: Sender, drain_queue: bool) -> bool:
        """Sends what producers packed and, if `drain_queue`, what is queued; whether anything went.
        Leaves everything queued while the daemon is behind: there the bounds apply."""
        if sender.unsent_bytes() > self.settings.max_buffer_bytes:
            return False
        # Producers' batches go out without the pack lock, so producers go on packing meanwhile.
        outgoing = self._producer.drain() if drain_queue else self._producer.take_packed()
        for item in outgoing:
            if not isinstance(item, Batch):
                sender.send_flush(item)
                continue
            try:
                sender.send_batch(item)
            except (TypeError, ValueError, OverflowError):  # a value msgpack refuses: this batch only
                log.exception("logger_client: a batch of %d record(s) could not be encoded", item.data)
                self._producer.release(item.data, 0)
                self._producer.refuse(item.data, item.array_bytes)
        return bool(outgoing)

    def _receive(self, sender: Sender) -> None:
        sender.receive()
        if sender.welcomed:  # the daemon answers: not presumed gone
            self._daemon_unresponsive = False
            self._producer.max_frame_bytes = sender.max_frame_bytes
            if not self._connected.is_set():
                self._connected.set()
        if sender.error:
            self._fail(sender.error)


def _wake_pipe() -> tuple[int, int]:
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    return read, write


def _drain_monitor(monitor: zmq.Socket) -> None:
    """Reads every event waiting on a socket monitor (only disconnections are asked for)."""
    try:
        while True:
            monitor.recv_multipart(flags=zmq.NOBLOCK)
    except zmq.Again:
        pass


def _empty_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


# -- the process's transport -----------------------------------------------------------------------

_transport: DaemonTransport | None = None
_transport_lock = threading.Lock()


def get_transport(settings: Settings | None = None) -> DaemonTransport:
    """The process's transport, connecting (and starting a daemon) on first use."""
    global _transport
    with _transport_lock:
        if _transport is None:
            transport = DaemonTransport(settings or Settings.from_env())
            try:
                transport.wait_connected()
            except BaseException:
                transport.shutdown(0.0)
                raise
            _transport = transport
        return _transport


def shutdown_transport(timeout_s: float | None = None) -> bool:
    """Flushes and disconnects the process's transport; the next writer connects afresh.

    Returns whether everything was confirmed written. Runs at interpreter exit; tests call it to
    move between daemons.
    """
    global _transport
    with _transport_lock:
        transport, _transport = _transport, None
    if transport is None or not transport.owned_by_this_process():
        return True
    return transport.shutdown(transport.settings.close_timeout_s if timeout_s is None else timeout_s)


def _after_fork_in_child() -> None:
    global _transport_lock
    _transport_lock = threading.Lock()  # another thread may have held it at the fork
    if _transport is not None:  # only the live transport: a shut-down one stays down
        _transport.reset_after_fork()
        _flush_at_multiprocessing_exit()


def _flush_at_multiprocessing_exit() -> None:
    """A multiprocessing child (a DataLoader worker) ends with os._exit, which skips atexit, after
    running multiprocessing's finalizers: one of them delivers what the child logged. The child
    clears the finalizers it inherits before running its after-fork callbacks, so the finalizer is
    registered from one of those."""
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and _transport is not None:
        mp_util.register_after_fork(_transport, _finalize_at_exit)


def _finalize_at_exit(transport: DaemonTransport) -> None:
    mp_util = sys.modules["multiprocessing.util"]
    mp_util.Finalize(None, shutdown_transport, exitpriority=0)


atexit.register(shutdown_transport)
os.register_at_fork(after_in_child=_after_fork_in_child)
