"""The daemon's network loop: receive, check, hand to the pipeline, acknowledge, answer status.

One thread owns the ROUTER socket (ZeroMQ sockets are not thread-safe). The pipeline thread
reports what it has written through a deque plus a wake-up pipe, and this loop sends the acks.
Any bytes a peer sends are survived: what cannot be decoded is counted by reason and dropped.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import socket
import stat
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import zmq

from logger_client import protocol
from logger_client.protocol import DropReason, MessageKind, ProtocolError
from logger_client.runtime import pid_namespace
from logger_client.settings import Settings
from logger_daemon.connections import LISTEN_BACKLOG, ConnectionGuard, connection_cap, raise_fd_limit
from logger_daemon.encode_pool import default_workers
from logger_daemon.forward import Forwarder
from logger_daemon.intake import Work
from logger_daemon.keys import secure_server
from logger_daemon.pipeline import Pipeline
from logger_daemon.reduce import Reducer
from logger_daemon.remote import Remotes
from logger_daemon.stats import Stats

log = logging.getLogger("logger_daemon")

_POLL_MS = 200
_HANDSHAKE_MS = 5000
_MIN_FRAME_BYTES = 64 << 20
#: How often the daemon looks for clients of this host whose process is gone.
_PROBE_CLIENTS_S = 1.0
#: After a connection closes (a client may have been killed), how long and how often it looks:
#: ranks waiting for a killed one should not wait out their bound for want of a look.
_CLOSED_PROBE_S = 1.0
_CLOSED_PROBE_MS = 20


@dataclass
class _Client:
    """One connection of a client (its ZeroMQ identity is the key); a client that reconnects
    comes back on a new one, with the same `cid`."""

    pid: int
    host: str
    connected_at: float
    last_seen: float
    #: The client's own id, the same on each of its connections (delivery marks name it).
    cid: bytes
    records: int = 0
    #: The seq its next RECORDS or FLUSH must carry: one lost on the way shows as a gap.
    #: None after a message refused unread, whose seq is unknown: the next one sets it again.
    next_seq: int | None = 0
    #: The client's arena, mapped read-only: arrays described by an offset are read from it.
    arena: memoryview | None = None
    #: Whether the client's pid names the same process here (one PID namespace).
    pid_visible: bool = True


def map_arena(announced: Any) -> memoryview | None:
    """Maps a client's arena as its HELLO announced it ({pid, fd, size}); None if that fails.

    The arena must be a memfd sealed against shrinking, so that memory can never vanish under a
    reader (which would kill this process with SIGBUS). Opening another process's fd through
    /proc needs the same user, and the same PID namespace; a client that cannot be mapped sends
    its arrays as frames instead.
    """
    if not isinstance(announced, dict):
        return None
    pid, fd, size = announced.get("pid"), announced.get("fd"), announced.get("size")
    if not (type(pid) is int and type(fd) is int and type(size) is int and pid > 0 and fd >= 0 and size > 0):
        log.warning("ignoring a malformed arena announcement %r", announced)
        return None
    try:
        # Non-blocking: an fd naming a FIFO must not stall this loop (it is refused below).
        handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        log.info("cannot open the arena of pid %d (%s): its arrays come as frames", pid, exc)
        return None
    try:
        status = os.fstat(handle)
        if (
            not stat.S_ISREG(status.st_mode)
            or status.st_size != size
            or not fcntl.fcntl(handle, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK
        ):
            log.warning("the arena of pid %d is not a memfd of %d bytes sealed against shrinking", pid, size)
            return None
        return memoryview(mmap.mmap(handle, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ))
    except OSError as exc:
        log.warning("cannot map the arena of pid %d: %s", pid, exc)
        return None
    finally:
        os.close(handle)


def _hex(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


def _same_pid_namespace(announced: Any) -> bool:
    """Whether a client's HELLO (`pidns`) puts it in this process's PID namespace; a client or
    system that does not say is taken to share it."""
    if type(announced) is not int or announced == 0:
        return True
    own = pid_namespace()
    return own == 0 or announced == own


def _process_exists(pid: int) -> bool:
    """Whether `pid` names a live process: a zombie (dead, not yet reaped by its parent) is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: the pid is taken
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            # The state follows the command name, which is in parentheses and may hold any byte.
            return stat_file.read().rpartition(b")")[2].split()[:1] != [b"Z"]
    except OSError:
        return True  # no /proc to ask: the signal said it exists


def max_frame_bytes(settings: Settings) -> int:
    """The largest frame the daemon takes: the clients' array bound, and room for a header."""
    return min(protocol.MAX_MESSAGE_BYTES, max(settings.max_buffer_bytes, _MIN_FRAME_BYTES))


class Server:
    """Serves one endpoint until stopped, idle for `idle_timeout_s`, or asked to stop."""

    def __init__(
        self,
        endpoint: str,
        settings: Settings,
        idle_timeout_s: float,
        restarts: int = 0,
        keys_dir: str = "",
        forward_to: str = "",
        root: bool = False,
    ) -> None:
        self.endpoint = endpoint
        #: The CURVE keys of a root daemon (`root`: its socket then admits only the directory's
        #: node key) or of a node daemon's links to its roots.
        self.keys_dir = keys_dir
        self.root = root
        #: Times this daemon came back in place after an abort (logger_daemon/rescue.py).
        self.restarts = restarts
        self.settings = settings
        self.idle_timeout_s = idle_timeout_s
        self.stats = Stats()
        self._clients: dict[bytes, _Client] = {}
        self._acks: deque[tuple[dict[bytes, int], dict[bytes, Counter], dict[bytes, int]]] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # A rank is silent (not waited for) once it has sent nothing, not even a heartbeat, for this long.
        silent_s = max(settings.reduce_wait_s, 2.5 * settings.heartbeat_s)
        self.reducer = Reducer(settings.reduce_wait_s, silent_s, heard=self._heard)
        # A node of jobs with a root daemon: their ranked writers' records go there (`forward`),
        # to `forward_to`, or to each job's root at its MASTER_ADDR and `root_port`.
        forwards = not root and (forward_to or (settings.root_port and keys_dir))
        self.forwarder = Forwarder(forward_to, keys_dir or None, settings) if forwards else None
        self.pipeline = Pipeline(
            self.stats,
            settings.fsync_interval_s,
            self._on_written,
            settings.daemon_held_bytes,
            encode_workers=settings.encode_workers or default_workers(),
            remotes=Remotes(settings),
            reducer=self.reducer,
            forwarder=self.forwarder,
        )
        self.pipeline.root_flush_s = settings.flush_timeout_s
        self._stop_requested = threading.Event()
        self.connections: ConnectionGuard | None = None  # made by serve(), with the socket
        # ZeroMQ drops the connection of a peer that sends a larger frame; clients learn it at HELLO.
        self._max_frame_bytes = max_frame_bytes(settings)
        #: Until when clients' pids are probed closely, after a connection closed.
        self._probe_closely_until = 0.0

    def request_stop(self) -> None:
        """Stops the loop after everything received is written (safe from any thread or signal)."""
        self._stop_requested.set()
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass

    def _heard(self, identity: bytes) -> float | None:  # pipeline thread
        """When the client was last heard from (None: it is gone)."""
        client = self._clients.get(identity)
        return client.last_seen if client is not None else None

    def _on_written(
        self, acks: dict[bytes, int], drops: dict[bytes, Counter], not_uploaded: dict[bytes, int]
    ) -> None:  # pipeline thread
        self._acks.append((acks, drops, not_uploaded))
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass

    def serve(self) -> None:
        context = zmq.Context()
        sock = context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 1000)
        # Messages ZeroMQ takes in from each client before it stops reading that client's
        # connection: while this loop does not read, that much waits in this process.
        sock.setsockopt(zmq.RCVHWM, self.settings.daemon_receive_hwm)
        # A client that reconnects (its daemon died, and this one took over the endpoint) comes
        # back under the same identity, possibly before its old connection is gone: the new one wins.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # A frame larger than any a client sends (an array fits its buffer bound) is refused as it
        # arrives, by closing its connection, not buffered whole first.
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_frame_bytes)
        # A connection that never completes the ZeroMQ handshake is closed: it only holds an fd.
        sock.setsockopt(zmq.HANDSHAKE_IVL, _HANDSHAKE_MS)
        sock.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
        # Watched before it is bound, so that no connection goes uncounted.
        connections = self.connections = ConnectionGuard(sock, self.endpoint, connection_cap(raise_fd_limit()))
        authenticator = secure_server(context, sock, self.keys_dir) if self.root else None
        sock.bind(self.endpoint)
        connections.bound()
        self.pipeline.start()
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(connections.monitor, zmq.POLLIN)
        reading = False
        idle_since = last_probe = time.monotonic()
        log.info("serving %s", self.endpoint)
        try:
            while not self._stop_requested.is_set():
                # Stop reading while the pipeline is behind: ZeroMQ's queues then fill and the
                # clients' bounded buffers take over, instead of this process growing.
                behind = self._behind()
                if behind == reading:
                    if behind:
                        poller.unregister(sock)
                    else:
                        poller.register(sock, zmq.POLLIN)
                        # What waited in the socket meanwhile comes now: no rank is late or silent
                        # for having waited there.
                        self.reducer.pause(time.monotonic())
                    reading = not behind
                closely = time.monotonic() < self._probe_closely_until
                events = dict(poller.poll(_CLOSED_PROBE_MS if closely else _POLL_MS))
                if self._wake_r in events:
                    self._drain_wake_pipe()
                if connections.monitor in events:
                    self._read_connection_events(connections)
                if sock in events:
                    self._receive(sock)
                self._send_acks(sock)
                now = time.monotonic()
                self._forget_silent_clients(now)
                every = _CLOSED_PROBE_MS / 1000 if now < self._probe_closely_until else _PROBE_CLIENTS_S
                if now - last_probe > every:  # a killed rank is no longer waited for
                    last_probe = now
                    self._forget_dead_clients()
                if self._clients or self.pipeline.queued()[0] or self.pipeline.uploading():
                    idle_since = now
                elif self.idle_timeout_s > 0 and now - idle_since > self.idle_timeout_s:
                    log.info("no client for %.0fs: exiting", self.idle_timeout_s)
                    break
        finally:
            self.pipeline.stop()
            self._send_acks(sock)
            connections.close()
            sock.close()
            if authenticator is not None:
                authenticator.stop()
            context.term()
            log.info("stopped: %s", self.stats.snapshot())

    def _behind(self) -> bool:
        """Whether the pipeline has more waiting than the daemon's queue bounds allow."""
        queued_records, queued_bytes = self.pipeline.queued()
        return queued_bytes > self.settings.daemon_queue_bytes or queued_records > self.settings.daemon_queue_records

    def _read_connection_events(self, connections: ConnectionGuard) -> None:
        if connections.on_events():  # a connection closed: its client may have been killed
            self._probe_closely_until = time.monotonic() + _CLOSED_PROBE_S

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _receive(self, sock: zmq.Socket) -> None:
        connections = self.connections
        for _ in range(1000):  # bounded, so acks and status keep flowing under load
            if connections is not None and connections.pending():
                self._read_connection_events(connections)  # a burst of connections is noticed while busy too
            if self._behind():  # checked per message: one turn may not run past the bounds
                return
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, body = frames[0].bytes, frames[1:]
            client = self._clients.get(identity)
            try:
                message = protocol.decode(body, client.arena if client is not None else None)
            except ProtocolError as exc:
                self.stats.drop(exc.reason)
                log.warning("refused a message: %s", exc)
                self._reply(sock, identity, MessageKind.REFUSED, {"reason": exc.reason.value, "detail": exc.detail})
                if client is not None:
                    client.next_seq = None
                continue
            except Exception:  # a peer's bytes must never stop the loop; a bug here is logged
                self.stats.drop(DropReason.MALFORMED_MESSAGE)
                log.exception("could not decode a message")
                continue
            try:
                self._dispatch(sock, identity, client, message)
            except ProtocolError as exc:
                self.stats.drop(exc.reason)
                log.warning("refused a message: %s", exc)
            except Exception:
                self.stats.drop(DropReason.MALFORMED_MESSAGE)
                log.exception("could not handle a %s message", message.kind.name)

    def _dispatch(self, sock: zmq.Socket, identity: bytes, client: _Client | None, message: protocol.Message) -> None:
        kind, header = message.kind, message.header
        now = time.monotonic()
        if client is not None:
            client.last_seen = now
        seq = header.get("seq")
        if client is None and kind in (MessageKind.RECORDS, MessageKind.FLUSH, MessageKind.HEARTBEAT):
            # Not introduced to this daemon (it restarted, or forgot a silent client): the client
            # says HELLO again and resends what is not acknowledged, so nothing is taken from it
            # before then; refused, not dropped.
            self._reply(sock, identity, MessageKind.REFUSED, {"reason": protocol.UNKNOWN_CLIENT, "detail": "say HELLO"})
            return
        if client is not None and kind in (MessageKind.RECORDS, MessageKind.FLUSH) and type(seq) is int:
            if client.next_seq is not None and seq != client.next_seq:
                # ZeroMQ drops what was on the way when a connection breaks; acknowledging past the
                # gap would confirm what never arrived. Forgotten, the client says HELLO and resends.
                log.warning("client %s: message %d arrived where %d was due", _hex(client.cid), seq, client.next_seq)
                self._client_gone(identity)
                detail = f"message {client.next_seq} never arrived: say HELLO"
                self._reply(sock, identity, MessageKind.REFUSED, {"reason": protocol.UNKNOWN_CLIENT, "detail": detail})
                return
            client.next_seq = seq + 1
        if kind == MessageKind.RECORDS:
            records, mid = header.get("records"), header.get("mid", 0)
            if not isinstance(records, list) or type(seq) is not int or type(mid) is not int:
                raise ProtocolError(DropReason.MALFORMED_MESSAGE, "RECORDS without a records list and int seq and mid")
            assert client is not None
            work = Work.of_records(identity, seq, records, message.arrays, mid, client.cid)
            client.records += work.count
            self.pipeline.put(work)
        elif kind == MessageKind.FLUSH and type(seq) is int:
            self.pipeline.put(Work(identity, seq, flush=True))
        elif kind == MessageKind.HELLO and type(seq) is int:
            self._forget_dead_clients()  # a job restarting after a crash finds its old writers gone
            pid, host = header.get("pid"), header.get("host")
            pid_visible = _same_pid_namespace(header.get("pidns"))
            arena = map_arena(header["arena"]) if "arena" in header and pid_visible else None
            cid = header.get("cid")
            log.info("client %s (pid %s) connected as %s", _hex(cid), pid, identity.hex())
            self._clients[identity] = _Client(
                pid if type(pid) is int else -1,
                str(host),
                time.time(),
                now,
                cid if type(cid) is bytes and cid else identity,
                next_seq=seq + 1,
                arena=arena,
                pid_visible=pid_visible,
            )
            welcome = {"daemon_pid": os.getpid(), "arena": arena is not None, "max_frame_bytes": self._max_frame_bytes}
            self._reply(sock, identity, MessageKind.WELCOME, welcome)
            self.pipeline.put(Work(identity, seq))
        elif kind == MessageKind.BYE:
            self._client_gone(identity)
        elif kind == MessageKind.STATUS:
            self._reply(sock, identity, MessageKind.STATUS_REPLY, self.status())
        elif kind == MessageKind.STOP:
            self._reply(sock, identity, MessageKind.STOP_REPLY, {"stopping": True})
            self.request_stop()
        elif kind != MessageKind.HEARTBEAT:
            raise ProtocolError(DropReason.MALFORMED_MESSAGE, f"unexpected {kind.name} message")

    def _client_gone(self, identity: bytes) -> None:
        if self._clients.pop(identity, None) is not None:
            self.pipeline.put(Work(identity, 0, client_gone=True))

    def _forget_dead_clients(self) -> None:
        """Forgets the clients of this host and PID namespace whose process is gone (killed
        without a goodbye); the others are forgotten once silent past the client timeout.

        Cheap (a signal-0 probe each), and safe if wrong: a client forgotten while alive is
        refused as unknown, says HELLO again and resends."""
        host = socket.gethostname()
        for identity, client in list(self._clients.items()):
            if client.host == host and client.pid_visible and client.pid > 0 and not _process_exists(client.pid):
                log.info("client %s (pid %d) is gone: closing its writers", identity.hex(), client.pid)
                self._client_gone(identity)

    def _forget_silent_clients(self, now: float) -> None:
        timeout = self.settings.client_timeout_s
        for identity in [i for i, c in self._clients.items() if now - c.last_seen > timeout]:
            log.info("client %s went silent: closing its writers", identity.hex())
            self._client_gone(identity)

    def _send_acks(self, sock: zmq.Socket) -> None:
        while self._acks:
            acks, drops, not_uploaded = self._acks.popleft()
            write_error = self.pipeline.held()[2]
            uploads = self.pipeline.upload_counts() if acks else {}
            # A client with drops but nothing to acknowledge (its ack waits for the disk) gets
            # them now, with acked 0, which acknowledges nothing.
            for identity, seq in {**dict.fromkeys(drops, 0), **acks}.items():
                header: dict[str, Any] = {"acked": seq}
                if identity in drops:
                    header["dropped"] = dict(drops[identity])
                if write_error is not None:
                    header["write_error"] = write_error
                if uploads:  # the daemon's upload counters, for writer.stats()
                    header["uploads"] = uploads
                if identity in not_uploaded:  # a close whose remote tail is not in the store yet
                    header["not_uploaded"] = not_uploaded[identity]
                self._reply(sock, identity, MessageKind.ACK, header)

    @staticmethod
    def _reply(sock: zmq.Socket, identity: bytes, kind: MessageKind, header: dict[str, Any]) -> None:
        try:
            sock.send_multipart([identity, *protocol.encode(kind, header)], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the peer is gone or not reading; it will not miss a reply it cannot take

    def status(self) -> dict[str, Any]:
        """Clients, records received / written / dropped by reason, queue depth, bytes written,
        and what the daemon holds in memory because the disk refuses it (and why)."""
        queued_records, queued_bytes = self.pipeline.queued()
        held_records, held_bytes, write_error = self.pipeline.held()
        return {
            **self.stats.snapshot(),
            "endpoint": self.endpoint,
            "queue_records": queued_records,
            "queue_bytes": queued_bytes,
            "records_held": held_records,
            "bytes_held": held_bytes,
            "write_error": write_error,
            "open_files": self.pipeline.open_files(),
            "encode_workers": self.pipeline.encode_workers,
            "uploads": self.pipeline.upload_counts(),
            "restarts": self.restarts,
            "connections": self.connections.status() if self.connections is not None else {},
            "reduction": self.pipeline.reduction_status,
            "root": self.forwarder.status() if self.forwarder is not None else None,
            "clients": [
                {
                    "id": identity.hex(),
                    "pid": c.pid,
                    "host": c.host,
                    "records": c.records,
                    "connected_at": c.connected_at,
                    "shared_arena": c.arena is not None,
                }
                for identity, c in self._clients.items()
            ],
        }
