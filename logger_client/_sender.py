"""The sending side of the transport: numbering messages, sending them without blocking, keeping
them until the daemon acknowledges them, and reading what the daemon says.

Used by one thread only (the transport's I/O thread), on a DEALER socket it is given connected.
Nothing here blocks: a message the socket cannot take now (the daemon's queue is full) is parked
and retried, and `unsent_bytes` tells the caller when to stop draining.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import Counter, deque
from typing import Any

import numpy as np
import zmq

from . import protocol
from ._arena import Arena
from ._producer import Batch, FlushRequest
from .protocol import MessageKind

log = logging.getLogger("logger_client")

#: Messages the socket queues towards the daemon before a send would block (then they are parked).
SEND_HIGH_WATER_MARK = 10_000


def connect_dealer(context: zmq.Context, endpoint: str) -> zmq.Socket:
    """A DEALER socket to the daemon at `endpoint`, under a fresh identity (its client id)."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)
    sock.connect(endpoint)
    return sock


class _InFlight:
    """A message sent and not yet acknowledged: what its acknowledgement releases."""

    __slots__ = ("array_bytes", "records", "seq", "shared")

    def __init__(self, seq: int, records: int, array_bytes: int, shared: list[np.ndarray]) -> None:
        self.seq = seq
        self.records = records
        self.array_bytes = array_bytes
        # Arrays the daemon reads in the shared arena: held (and their slots with them) until acked.
        self.shared = shared


class Sender:
    """One connection's messages: sequence numbers, in flight, acknowledgements, the socket."""

    def __init__(self, sock: zmq.Socket, arena: Arena | None = None) -> None:
        self.sock = sock
        identity = sock.getsockopt(zmq.IDENTITY)
        assert isinstance(identity, bytes), "the socket's identity is the client id"
        self.cid = identity
        self._arena = arena
        self._arena_shared = False  # whether the daemon mapped the arena (its WELCOME says)
        self._seq = 0
        self._inflight: deque[_InFlight] = deque()
        self._unsent: deque[tuple[list[Any], list[np.ndarray], int]] = deque()  # (frames, framed arrays, bytes)
        self._flushes: list[FlushRequest] = []
        self._lock = threading.Lock()  # guards what `counts` reads from other threads
        self._sent = 0
        self._acked = 0
        self._daemon_dropped: Counter[str] = Counter()
        #: Whether the daemon has answered (WELCOME, or an ACK).
        self.welcomed = False
        #: Why the daemon refused this client or could not be understood; None while all is well.
        self.error: str | None = None

    # -- sending -----------------------------------------------------------------------------------

    def hello(self) -> None:
        """Introduces this client (and its shared arena, if it has one) to the daemon."""
        header: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
        shared = self._arena.share() if self._arena is not None else None
        if shared is not None:
            header["arena"] = shared
        self._send(MessageKind.HELLO, header)

    def send_batch(self, batch: Batch) -> int:
        """Sends a batch of records as one RECORDS message; its sequence number."""
        if batch.packed is not None:
            self._seq += 1
            frames = protocol.encode_packed_records(self.cid, self._seq, batch.packed)
            seq = self._send_frames(frames, [], batch.data, 0, [])
        else:
            seq = self._send(
                MessageKind.RECORDS, {"records": batch.records}, batch.arrays, batch.data, batch.array_bytes
            )
        with self._lock:
            self._sent += batch.data
        return seq

    def send_flush(self, request: FlushRequest) -> int:
        """Sends a FLUSH: `request.done` is set once the daemon has written everything before it."""
        request.seq = self._send(MessageKind.FLUSH, {})
        self._flushes.append(request)
        return request.seq

    def heartbeat(self) -> None:
        self._control(MessageKind.HEARTBEAT)

    def bye(self) -> None:
        self._control(MessageKind.BYE)

    def retry_unsent(self) -> None:
        """Sends parked messages, oldest first, while the socket takes them."""
        while self._unsent and self._try_send(*self._unsent[0][:2]):
            self._unsent.popleft()

    def unsent_bytes(self) -> int:
        """Array bytes of the messages parked because the daemon's queue was full."""
        return sum(entry[2] for entry in self._unsent)

    def _send(
        self,
        kind: MessageKind,
        header: dict[str, Any],
        arrays: list[np.ndarray] | None = None,
        records: int = 0,
        array_bytes: int = 0,
    ) -> int:
        """Numbers and sends a message. Arrays in the shared arena go as their offsets (and are held
        until acknowledged), the others as frames."""
        arrays = arrays or []
        self._seq += 1
        header["cid"] = self.cid
        header["seq"] = self._seq
        offsets: list[int | None] = []
        if self._arena_shared and self._arena is not None:
            offsets = [self._arena.offset_of(array) for array in arrays]
        shared = [array for array, offset in zip(arrays, offsets) if offset is not None]
        framed = [array for array, offset in zip(arrays, offsets) if offset is None] if shared else arrays
        frames = protocol.encode(kind, header, arrays, offsets)
        return self._send_frames(frames, framed, records, array_bytes, shared)

    def _send_frames(
        self, frames: list[Any], framed: list[np.ndarray], records: int, array_bytes: int, shared: list[np.ndarray]
    ) -> int:
        """Sends the frames of message `self._seq`, or parks them while the daemon's queue is full."""
        self._inflight.append(_InFlight(self._seq, records, array_bytes, shared))
        if self._unsent or not self._try_send(frames, framed):
            self._unsent.append((frames, framed, array_bytes))
        return self._seq

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

    def receive(self) -> tuple[int, int]:
        """Reads every message waiting; returns the (data records, array bytes) acknowledged."""
        released_records = released_bytes = 0
        while True:
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return released_records, released_bytes
            try:
                message = protocol.decode(frames)
            except protocol.ProtocolError as exc:
                self._fail(f"the daemon's message was refused: {exc.detail}")
                continue
            if message.kind == MessageKind.ACK:
                records, nbytes = self._on_ack(message.header)
                released_records += records
                released_bytes += nbytes
            elif message.kind == MessageKind.WELCOME:
                self._arena_shared = message.header.get("arena") is True
                self.welcomed = True
            elif message.kind == MessageKind.REFUSED:
                self._fail(f"the daemon refused this client: {message.header.get('detail')}")

    def _on_ack(self, header: dict[str, Any]) -> tuple[int, int]:
        acked = header.get("acked", 0)
        dropped = header.get("dropped") or {}
        records = array_bytes = 0
        inflight = self._inflight
        while inflight and inflight[0].seq <= acked:
            message = inflight.popleft()  # its shared arrays go: their slots come back
            records += message.records
            array_bytes += message.array_bytes
        with self._lock:
            self._acked += records
            for reason, count in dropped.items():  # refused by the daemon: counted, not written
                self._daemon_dropped[str(reason)] += int(count)
        done = [request for request in self._flushes if request.seq is not None and request.seq <= acked]
        for request in done:
            self._flushes.remove(request)
            request.done.set()
        self.welcomed = True
        return records, array_bytes

    def _fail(self, error: str) -> None:
        if self.error is None:  # the first cause is the one to report
            log.error("%s", error)
            self.error = error

    def counts(self) -> tuple[int, int, Counter[str]]:
        """(data records sent, acknowledged, refused by the daemon by reason); from any thread."""
        with self._lock:
            return self._sent, self._acked, Counter(self._daemon_dropped)
