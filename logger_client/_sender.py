"""The sending side of the transport: numbering messages, sending them without blocking, keeping
them until the daemon acknowledges them, reading what the daemon says, and sending everything
unacknowledged again to a new daemon.

Used by one thread only (the transport's I/O thread), on a DEALER socket it is given connected.
Nothing here blocks: a message the socket cannot take now (the daemon's queue is full) is parked
and retried, and `unsent_bytes` tells the caller when to stop draining.

Every message is kept until acknowledged, as what it takes to encode it again (not its frames): a
new daemon gets it renumbered on the new connection, with the same message id (`mid`), so that a
record the old daemon wrote before it died is recognised and not written twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from . import protocol
from ._arena import Arena
from ._producer import Batch, FlushRequest
from .protocol import MessageKind
from .runtime import pid_namespace

log = logging.getLogger("logger_client")

#: Messages the socket queues towards the daemon before a send would block (then they are parked).
SEND_HIGH_WATER_MARK = 10_000
#: ZeroMQ's retries of a connection the daemon refused (a new daemon takes its lock just before it
#: binds): from 10 ms, doubling up to 1 s, where ZeroMQ would wait a fixed 100 ms.
RECONNECT_FIRST_MS = 10
RECONNECT_MAX_MS = 1000


def new_client_id() -> bytes:
    """A client id, unique to this process (a forked child takes a new one)."""
    return uuid.uuid4().bytes


def connect_dealer(
    context: zmq.Context, endpoint: str, secure: Callable[[zmq.Socket], None] | None = None
) -> zmq.Socket:
    """A DEALER socket to the daemon at `endpoint`, under an identity of its own: each connection
    has one, so that a daemon never mistakes what an old connection still delivers for the new.
    `secure` sets the socket's security (CURVE keys, to a root daemon) before it connects."""
    sock = context.socket(zmq.DEALER)
    if secure is not None:
        secure(sock)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_FIRST_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)
    sock.connect(endpoint)
    return sock


class _Message:
    """A numbered message not yet acknowledged, kept as what it takes to encode it again."""

    __slots__ = ("array_bytes", "batch", "flush", "framed", "frames", "mid", "records", "seq", "shared")

    def __init__(self, batch: Batch | None, flush: FlushRequest | None, mid: int) -> None:
        self.batch = batch
        self.flush = flush
        self.mid = mid
        self.records = batch.data if batch is not None else 0
        self.array_bytes = batch.array_bytes if batch is not None else 0
        self.seq = 0
        self.frames: list[Any] = []
        self.framed: list[np.ndarray] = []  # arrays sent as frames (ZeroMQ holds them until sent)
        self.shared: list[np.ndarray] = []  # arrays the daemon reads in the shared arena: held until acked


class Sender:
    """One client's messages: sequence numbers, in flight, acknowledgements, the socket."""

    def __init__(
        self,
        sock: zmq.Socket,
        arena: Arena | None = None,
        on_release: Callable[[int, int], None] | None = None,
        cid: bytes | None = None,
    ) -> None:
        self.sock = sock
        #: The client's id, the same on every connection (`cid` in every header): a daemon's
        #: delivery marks name it.
        self.cid = cid or new_client_id()
        # Called with the (data records, array bytes) each acknowledgement releases, before the
        # flushes it completes are done: a caller back from flush() sees them released.
        self._on_release = on_release
        self._arena = arena
        self._arena_shared = False  # whether the daemon mapped the arena (its WELCOME says)
        #: The largest frame the daemon takes (its WELCOME says): a larger one breaks the connection.
        self.max_frame_bytes = protocol.MAX_MESSAGE_BYTES
        self._seq = 0
        self._mid = 0
        self._inflight: deque[_Message] = deque()
        self._unsent = 0  # how many of the newest in-flight messages wait for the socket
        self._unsent_bytes = 0
        self._lock = threading.Lock()  # guards what `counts` reads from other threads
        self._sent = 0
        self._acked = 0
        self._daemon_dropped: Counter[str] = Counter()
        self._uploads: dict[str, int] = {}  # the daemon's upload counters, as of its last ack
        #: Whether the daemon has answered (WELCOME, or an ACK).
        self.welcomed = False
        #: Whether the daemon said it does not know this client: HELLO and resend (`reconnect`).
        self.unknown_to_daemon = False
        #: Why the daemon refused this client or could not be understood; None while all is well.
        self.error: str | None = None
        #: Why the daemon's disk refuses writes, as its last acknowledgement said; None: it does not.
        self.write_error: str | None = None

    # -- sending -----------------------------------------------------------------------------------

    def hello(self) -> None:
        """Introduces this client (and its shared arena, if it has one) to the daemon."""
        header: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(), "pidns": pid_namespace()}
        shared = self._arena.share() if self._arena is not None else None
        if shared is not None:
            header["arena"] = shared
        self._seq += 1
        header.update(cid=self.cid, seq=self._seq)
        self._try_send(protocol.encode(MessageKind.HELLO, header), [])

    def send_batch(self, batch: Batch) -> int:
        """Sends a batch of records as one RECORDS message; its sequence number."""
        self._mid += 1
        message = _Message(batch, None, self._mid)
        self._send(message)
        with self._lock:
            self._sent += batch.data
        return message.seq

    def send_flush(self, request: FlushRequest) -> int:
        """Sends a FLUSH: `request.done` is set once the daemon has written everything before it."""
        message = _Message(None, request, 0)
        self._send(message)
        return message.seq

    def reconnect(self, sock: zmq.Socket) -> None:
        """Moves to `sock` (a new connection, to a new daemon): says HELLO, then `resend` sends
        the writers announced again and every unacknowledged message."""
        self.sock = sock
        self._arena_shared = False  # until the new daemon's WELCOME says otherwise
        self.welcomed = self.unknown_to_daemon = False
        self.write_error = None  # the new daemon's acknowledgements say
        self.hello()

    def resend(self, after: list[Batch]) -> None:
        """Sends the `after` batches (new messages: the writers announced again), then every
        message not yet acknowledged, in their order, renumbered for this connection."""
        waiting = list(self._inflight)
        self._inflight.clear()
        self._unsent = self._unsent_bytes = 0
        for batch in after:  # no message id: opens and keys are idempotent, and must not mark the
            self._send(_Message(batch, None, 0))  # runs as delivered past the messages resent next
        for message in waiting:
            self._send(message)

    def heartbeat(self) -> None:
        self._control(MessageKind.HEARTBEAT)

    def bye(self) -> None:
        self._control(MessageKind.BYE)

    def retry_unsent(self) -> None:
        """Sends parked messages, oldest first, while the socket takes them."""
        while self._unsent:
            message = self._inflight[len(self._inflight) - self._unsent]
            if not self._try_send(message.frames, message.framed):
                return
            self._unsent -= 1
            self._unsent_bytes -= message.array_bytes

    def unsent_bytes(self) -> int:
        """Array bytes of the messages parked because the daemon's queue was full."""
        return self._unsent_bytes

    def fail_flushes(self) -> None:
        """There is no daemon to be had: every flush waiting here returns False now."""
        for message in self._inflight:
            if message.flush is not None:
                message.flush.fail()

    def _send(self, message: _Message) -> None:
        """Numbers, encodes and sends a message, or parks it behind those already parked."""
        self._seq += 1
        message.seq = self._seq
        self._encode(message)
        self._inflight.append(message)
        if self._unsent or not self._try_send(message.frames, message.framed):
            self._unsent += 1
            self._unsent_bytes += message.array_bytes

    def _encode(self, message: _Message) -> None:
        """The message's frames for this connection. Arrays in the shared arena go as their
        offsets (and are held until acknowledged), the others as frames."""
        if message.flush is not None:
            message.flush.seq = message.seq
            message.frames = protocol.encode(MessageKind.FLUSH, {"cid": self.cid, "seq": message.seq})
            return
        batch = message.batch
        assert batch is not None
        if batch.packed is not None:
            message.frames = protocol.encode_packed_records(self.cid, message.seq, message.mid, batch.packed)
            return
        arrays = batch.arrays
        offsets: list[int | None] = []
        if self._arena_shared and self._arena is not None:
            offsets = [self._arena.offset_of(array) for array in arrays]
        message.shared = [array for array, offset in zip(arrays, offsets) if offset is not None]
        message.framed = [array for array, offset in zip(arrays, offsets) if offset is None] if offsets else arrays
        header = {"cid": self.cid, "seq": message.seq, "mid": message.mid, "records": batch.records}
        message.frames = protocol.encode(MessageKind.RECORDS, header, arrays, offsets)

    def travels_in_arena(self, array: np.ndarray) -> bool:
        """Whether `array` reaches the daemon as an offset in the shared arena, not as a frame."""
        return self._arena_shared and self._arena is not None and self._arena.offset_of(array) is not None

    def _try_send(self, frames: list[Any], framed: list[np.ndarray]) -> bool:
        """Sends without blocking (arrays without a copy); False if the daemon's queue is full.

        ZeroMQ keeps a reference to each framed array until it has sent its bytes: only then can
        the arena hand its slot out again."""
        try:
            self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=not framed)
        except zmq.Again:
            return False
        return True

    def _control(self, kind: MessageKind) -> None:
        """Unnumbered control messages (heartbeat, goodbye): dropped, not parked, when the pipe is full."""
        self._try_send(protocol.encode(kind, {"cid": self.cid}), [])

    # -- receiving ---------------------------------------------------------------------------------

    def receive(self) -> None:
        """Reads every message waiting: acknowledgements release their messages (see
        `on_release`), a welcome or a refusal is noted."""
        while True:
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message = protocol.decode(frames)
            except protocol.ProtocolError as exc:
                self._fail(f"the daemon's message was refused: {exc.detail}")
                continue
            if message.kind == MessageKind.ACK:
                self._on_ack(message.header)
            elif message.kind == MessageKind.WELCOME:
                self._arena_shared = message.header.get("arena") is True
                max_frame = message.header.get("max_frame_bytes")
                if type(max_frame) is int and max_frame > 0:
                    self.max_frame_bytes = min(max_frame, protocol.MAX_MESSAGE_BYTES)
                self.welcomed = True
            elif message.kind == MessageKind.REFUSED:
                if message.header.get("reason") == protocol.UNKNOWN_CLIENT:
                    self.unknown_to_daemon = True
                else:
                    self._fail(f"the daemon refused this client: {message.header.get('detail')}")

    def _on_ack(self, header: dict[str, Any]) -> None:
        acked = header.get("acked", 0)  # 0: nothing more (the daemon's disk holds it up)
        dropped = header.get("dropped") or {}
        uploads = header.get("uploads")
        write_error = header.get("write_error")
        self.write_error = write_error if isinstance(write_error, str) else None
        records = array_bytes = 0
        flushed = []
        inflight = self._inflight
        while inflight and inflight[0].seq <= acked and len(inflight) > self._unsent:
            message = inflight.popleft()  # its shared arrays go: their slots come back
            records += message.records
            array_bytes += message.array_bytes
            if message.flush is not None:
                flushed.append(message.flush)
        with self._lock:
            self._acked += records
            for reason, count in dropped.items():  # refused by the daemon: counted, not written
                self._daemon_dropped[str(reason)] += int(count)
            if isinstance(uploads, dict):
                self._uploads = {str(name): int(count) for name, count in uploads.items()}
        if self._on_release is not None and (records or array_bytes):
            self._on_release(records, array_bytes)
        not_uploaded = bool(header.get("not_uploaded"))  # a remote run's tail is still only staged
        for request in flushed:
            if not_uploaded:
                request.ok = False
            request.done.set()
        self.welcomed = True

    def _fail(self, error: str) -> None:
        if self.error is None:  # the first cause is the one to report
            log.error("%s", error)
            self.error = error

    def uploads(self) -> dict[str, int]:
        """The daemon's upload counters for remote log dirs, as of its last acknowledgement."""
        with self._lock:
            return dict(self._uploads)

    def counts(self) -> tuple[int, int, Counter[str]]:
        """(data records sent, acknowledged, refused by the daemon by reason); from any thread."""
        with self._lock:
            return self._sent, self._acked, Counter(self._daemon_dropped)
