"""Moving records from training threads to the daemon: batching, sequence numbers, acks, bounds.

The training thread only appends an item to `Transport.queue`, a list (an append is one C call
under the GIL, so producers take no lock): a plain scalar as one packed row (`bytes`, see
`_wire.SCALAR_ROW`), anything else as a tuple. Items are taken off its front, a batch at a time,
by whoever holds `_pack_lock`. When its append fills a batch of plain records, it packs that
batch itself while the records are still in its CPU cache (another core would fetch every one of
them), and hands the bytes over. One background I/O thread per process owns the ZeroMQ socket: it
sends packed batches, drains and packs what else is queued, numbers messages, sends without
blocking, reads the daemon's acknowledgements and answers `flush()`. It wakes when a batch is
packed, a flush or close is asked or arrays pile up (a quarter of the bound queued), and every
`linger_s` otherwise, so a record (arrays too) is on its way within `linger_s`.

Memory is bounded while the daemon is slow or gone: at most `max_buffer_bytes` of array data, and
`max_pending_records` small records queued plus about as many packed or sent but unacknowledged,
wait here; what does not fit is dropped and counted by reason.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter, deque
from typing import Any, Protocol

import zmq

from . import _wire
from ._arena import Arena
from ._config import Settings
from ._discovery import find_or_start_daemon
from ._wire import MessageKind, RecordKind

log = logging.getLogger("logger_client")

#: Queue items whose first element is this are control markers, not records.
_FLUSH_MARKER = -1
#: How long exiting waits for a daemon that already let a flush time out.
_GRACE_AFTER_TIMEOUT_S = 0.5
_OPEN = RecordKind.OPEN.value
_CLOSE = RecordKind.CLOSE.value
_KEY = RecordKind.KEY.value
_ARRAY_KINDS = frozenset(kind.value for kind in _wire.ARRAY_KINDS)
#: Items producers announce in `_specials_queued`: the I/O thread looks at each of them, and
#: producers pack no batch while one waits in the queue.
_SPECIAL_KINDS = _ARRAY_KINDS | {_FLUSH_MARKER}
#: Items the queue's bound never drops: the specials, and the control records, writers' opens and
#: closes and scalar keys (a lost key would lose every later row of its tag). Control records are
#: not special: a batch may carry them, so a writer opened or a tag met just before a burst does
#: not hold up packing until the I/O thread has looked at it (the queue then grew towards its
#: bound, and past it in one run of 1 000 000 calls made right after construction).
_KEPT_KINDS = _SPECIAL_KINDS | _wire.CONTROL_KIND_CODES


def _take(queue: list, count: int) -> list:
    """Takes the first `count` items off `queue`; the caller holds `_pack_lock`.

    Two C calls, not one per item: a copy, then a cut. Producers only append meanwhile, so the
    cut removes exactly what was copied."""
    items = queue[:count]
    del queue[:count]
    return items


def _is_kept(item: Any) -> bool:
    """Whether a queue item is one the bound never drops (a row is `bytes`, never kept)."""
    return type(item) is tuple and item[0] in _KEPT_KINDS


class Transport(Protocol):
    """What a SummaryWriter needs from the thing that carries its records."""

    queue: list
    batch_records: int

    def open_stream(self, options: dict[str, Any]) -> int: ...
    def scalar_key(self, stream: int, run: str, tag: str) -> int | None: ...
    def close_stream(self, stream: int, timeout_s: float) -> bool: ...
    def submit_array(self, record: tuple) -> None: ...
    def empty_array(self, shape: tuple, dtype: Any) -> Any: ...
    def on_backlog(self, length: int, added: int = 1) -> None: ...
    def flush(self, timeout_s: float) -> bool: ...
    def stats(self) -> dict[str, Any]: ...


class _Flush:
    """A pending flush(): done once the daemon acknowledges `seq`."""

    __slots__ = ("event", "seq")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.seq: int | None = None


class _Outgoing:
    """The RECORDS message a drain is putting together: its records in queue order (each run of
    scalar rows joined into one bin), the arrays they carry and their bytes, how many records in
    all (a bin counts its rows) and how many of them are data (not writers' opens and closes, nor
    keys)."""

    __slots__ = ("array_bytes", "arrays", "data", "records", "size")

    def __init__(self) -> None:
        self.records: list = []
        self.arrays: list = []
        self.array_bytes = 0
        self.size = 0
        self.data = 0

    def add_rows(self, rows: bytes, count: int) -> None:
        self.records.append(rows)
        self.size += count
        self.data += count

    def add(self, record: tuple, data: bool) -> None:
        self.records.append(record)
        self.size += 1
        self.data += data

    def add_array(self, array: Any) -> int:
        """Carries `array` in this message; its index among the message's arrays."""
        self.arrays.append(array)
        self.array_bytes += array.nbytes
        return len(self.arrays) - 1


class ZmqTransport:
    """The process's connection to its daemon. Shared by every SummaryWriter of the process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.batch_records = settings.batch_records
        self.queue: list = []
        self._arena = Arena(settings.arena_bytes)
        self.empty_array = self._arena.empty
        self._lock = threading.Lock()  # guards the counters and maps below, not the queue
        self._streams: dict[int, dict[str, Any]] = {}
        self._linger_s = settings.linger_s
        # Batches packed by producers, as (msgpack bytes, record count). `_pack_lock` keeps them in
        # queue order: taking records off the queue and appending their batch happen under it.
        self._packed: deque[tuple[bytes, int]] = deque()
        # Records in `_packed`: those packed (counted by producers, under `_pack_lock`) less those
        # sent (counted by the I/O thread), so that neither side needs the other's lock.
        self._records_packed = 0
        self._records_packed_sent = 0
        self._pack_lock = threading.Lock()
        self._next_stream = 1
        self._scalar_keys: dict[int, tuple[int, str, str]] = {}  # key -> (stream, run, tag)
        self._array_bytes_held = 0  # arrays queued or unacknowledged
        self._array_bytes_queued = 0  # arrays queued, not yet taken by the I/O thread
        # Items the I/O thread must look at (arrays, writers' opens and closes, flush markers),
        # counted by producers under the lock as they append them, and by the I/O thread as it
        # takes them: while the two are equal the queue holds plain records only.
        self._specials_queued = 0
        self._specials_taken = 0
        self._dropped: Counter[str] = Counter()
        self._daemon_dropped: Counter[str] = Counter()
        self._sent_records = 0
        self._acked_records = 0
        self._unacked_records = 0  # data records sent and not yet acknowledged (I/O thread writes)
        self._error: str | None = None
        self._daemon_unresponsive = False
        self._arena_shared = False  # whether the daemon mapped the arena (its WELCOME says)
        self._start()

    # -- producer side: any thread -------------------------------------------------------------

    def open_stream(self, options: dict[str, Any]) -> int:
        """Registers a writer's log directory; the daemon opens it before the writer's records."""
        with self._lock:
            stream = self._next_stream
            self._next_stream += 1
            self._streams[stream] = options
            # A writer asking for flush_secs below the default visibility gets records sent sooner.
            self._linger_s = max(0.005, min(self._linger_s, options["flush_secs"] / 2))
            self.queue.append((_OPEN, stream, "", "", 0, time.time(), options))
        return stream

    def scalar_key(self, stream: int, run: str, tag: str) -> int | None:
        """A new key for packed scalar rows of (stream, run, tag); None once all keys are taken.

        Its KEY record is queued before this returns, so it reaches the daemon before any row
        that uses the key, from any thread."""
        with self._lock:
            key = len(self._scalar_keys)
            if key >= _wire.MAX_SCALAR_KEYS:
                return None
            self._scalar_keys[key] = (stream, run, tag)
            self.queue.append((_KEY, stream, run, tag, 0, 0.0, key))
        return key

    def close_stream(self, stream: int, timeout_s: float) -> bool:
        """Sends a writer's close and waits until the daemon has written all it sent."""
        with self._lock:
            self._streams.pop(stream, None)
            self.queue.append((_CLOSE, stream, "", "", 0, time.time(), None))
        return self.flush(timeout_s)

    def submit_array(self, record: tuple) -> None:
        """Queues a record carrying an array (in its value slot), within the byte bound."""
        nbytes = record[6].nbytes
        with self._lock:
            if self._array_bytes_held + nbytes > self.settings.max_buffer_bytes:
                self._dropped["client_buffer_full"] += 1
                return
            self._array_bytes_held += nbytes
            self._specials_queued += 1
            self.queue.append(record)
            # No wake-up per array: a woken I/O thread takes the GIL, and the training thread, back
            # from its copy, waits for it (for milliseconds when the daemon keeps the other core
            # busy and the I/O thread is preempted holding the GIL). The linger timer sends arrays
            # soon enough; only arrays piling up in the queue (towards the bound) wake it, once
            # per quarter of the bound queued.
            queued = self._array_bytes_queued + nbytes
            self._array_bytes_queued = queued
            quarter = self.settings.max_buffer_bytes // 4
            pressing = queued > quarter >= queued - nbytes
        if pressing:
            self._wake()

    def on_backlog(self, length: int, added: int = 1) -> None:
        """Called by a producer whose append of `added` records made the queue `length` long
        (>= batch_records): packs a batch each time the length crosses a multiple of it."""
        if length > self.settings.max_pending_records:
            with self._pack_lock:  # no batch is being taken off the queue meanwhile
                try:
                    newest = self.queue.pop()  # the newest is dropped, so what is kept stays in order
                except IndexError:
                    return
                if _is_kept(newest):
                    self.queue.append(newest)  # another thread's flush, array, writer or key: not ours to drop
                    return
            with self._lock:
                self._dropped["client_queue_full"] += 1
        elif length % self.batch_records < added:
            # Packed and unacknowledged records count against the bound too: with no room there,
            # the records stay queued, where the check above drops what does not fit.
            if self._room() > 0:
                self._pack_here()
            self._wake()

    def _pack_here(self) -> None:
        """Packs the queued plain records on this (producer) thread; skipped if anything else is
        queued or the I/O thread is draining: then the I/O thread does it."""
        if not self._pack_lock.acquire(blocking=False):
            return
        try:
            # First the length, then the specials (see _drain_queue); never more than the bound leaves.
            length = min(len(self.queue), self._room())
            if length <= 0 or self._specials_queued != self._specials_taken:
                return
            packed, controls = _wire.pack_records(_take(self.queue, length))
            self._packed.append((packed, length - controls))
            self._records_packed += length - controls
        finally:
            self._pack_lock.release()

    def flush(self, timeout_s: float) -> bool:
        """Blocks until everything queued before this call is written by the daemon, or timeout."""
        if not self._thread.is_alive():
            return False  # nothing will ever acknowledge it
        marker = _Flush()
        with self._lock:
            self._specials_queued += 1
            self.queue.append((_FLUSH_MARKER, marker))
        self._wake()
        done = marker.event.wait(timeout_s)
        if not done:
            self._daemon_unresponsive = True  # until the next acknowledgement
        return done

    def _nothing_unacknowledged(self) -> bool:
        return not self.queue and not self._unacked_records

    def stats(self) -> dict[str, Any]:
        """Counts since this process connected.

        `records_sent`: data records handed to the daemon; `records_written`: those it confirmed
        written; `records_dropped`: by reason, both what this client could not keep and what the
        daemon refused (whose reasons `logger-daemon status` shows too).
        """
        with self._lock:
            daemon_dropped = sum(self._daemon_dropped.values())
            return {
                "records_sent": self._sent_records,
                "records_written": self._acked_records - daemon_dropped,
                "records_dropped": dict(self._dropped + self._daemon_dropped),
                "array_bytes_held": self._array_bytes_held,
                "queued": len(self.queue),
                "error": self._error,
            }

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    # -- lifecycle -----------------------------------------------------------------------------

    def _start(self) -> None:
        self._pid = os.getpid()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        self._welcomed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logger-client-io", daemon=True)
        self._thread.start()

    def wait_connected(self) -> None:
        """Waits for the daemon's welcome; raises if none comes within `connect_timeout_s`."""
        if not self._welcomed.wait(self.settings.connect_timeout_s):
            raise ConnectionError(self._error or f"the daemon did not answer within {self.settings.connect_timeout_s}s")
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
        elif self._nothing_unacknowledged():
            flushed = True
        else:
            flushed = self.flush(timeout_s)
        self._stopping.set()
        self._wake()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        return flushed

    def after_fork_in_child(self) -> None:
        """A forked child gets its own connection: the parent's socket and thread are not used."""
        self.queue.clear()  # the parent sends what it queued, and what it packed
        self._packed.clear()
        self._records_packed = self._records_packed_sent = 0
        self._arena.after_fork()
        self._arena_shared = False
        self._lock = threading.Lock()
        self._array_bytes_held = self._array_bytes_queued = 0
        self._specials_queued = self._specials_taken = 0
        self._dropped = Counter()
        self._daemon_dropped = Counter()
        self._sent_records = self._acked_records = self._unacked_records = 0
        self._start()

    # -- the I/O thread ------------------------------------------------------------------------

    def _run(self) -> None:
        context = zmq.Context()
        sock = None
        try:
            sock = self._connect(context)
            self._serve(sock)
        except Exception as exc:  # the thread must record why it stopped, never die silently
            self._error = self._error or f"logger_client I/O thread failed: {exc!r}"
            log.error("%s", self._error)
            self._welcomed.set()
        finally:
            if sock is not None:
                sock.close(linger=0)
            context.term()
            self._release_flushes()

    def _connect(self, context: zmq.Context) -> zmq.Socket:
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.setsockopt(zmq.RCVHWM, 0)
        self._cid = uuid.uuid4().bytes
        sock.setsockopt(zmq.IDENTITY, self._cid)
        sock.connect(find_or_start_daemon(self.settings))
        self._seq = 0
        # (seq, records, array bytes, arrays the daemon reads in the shared arena until it acks)
        self._inflight: deque[tuple[int, int, int, list]] = deque()
        self._flushes: list[_Flush] = []
        self._unsent: deque[tuple[list, Any, int]] = deque()  # (frames, arrays, array bytes)
        hello: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
        shared = self._arena.share()
        if shared is not None:
            hello["arena"] = shared
        self._send(sock, MessageKind.HELLO, hello, records=0)
        # Writers opened before a fork or a reconnect, and their scalar keys, are announced again,
        # first: put in front of the queue, so no batch may be taken off it meanwhile.
        with self._pack_lock, self._lock:
            again = [(_OPEN, stream, "", "", 0, time.time(), options) for stream, options in self._streams.items()]
            again += [
                (_KEY, stream, run, tag, 0, 0.0, key)
                for key, (stream, run, tag) in self._scalar_keys.items()
                if stream in self._streams
            ]
            self.queue[:0] = again
        return sock

    def _serve(self, sock: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        settings = self.settings
        last_sent = next_drain = time.monotonic()
        while True:
            timeout_s = max(0.0, next_drain - time.monotonic())
            events = dict(poller.poll(timeout_s * 1000))
            woken = self._wake_r in events
            if woken:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            if sock in events:
                self._receive(sock)
            now = time.monotonic()
            # The queue is drained when the linger is up or something special (an array, a flush)
            # waits in it; a plain wake-up only sends what producers packed. Never merely
            # because an ack came in: that would send a trickle of tiny batches.
            linger_up = now >= next_drain or self._stopping.is_set()
            if woken or linger_up:
                if self._drain(sock, linger_up or self._specials_queued != self._specials_taken):
                    last_sent = now
                if linger_up:
                    next_drain = now + self._linger_s
            self._retry_unsent(sock)
            if now - last_sent > settings.heartbeat_s:
                self._control(sock, MessageKind.HEARTBEAT)
                last_sent = now
            if self._stopping.is_set() and not self.queue:
                self._control(sock, MessageKind.BYE)
                return

    def _drain(self, sock: zmq.Socket, queue_too: bool) -> bool:
        """Sends what producers packed and, if `queue_too`, what is queued, a batch per message.
        Returns whether anything was sent."""
        if self._unsent_bytes() > self.settings.max_buffer_bytes:
            return False  # the daemon is behind: leave records queued, where the bound applies
        # Producers' batches go out without the pack lock, so producers go on packing meanwhile:
        # with the lock held through the sends, each waiting its turn for the GIL against a
        # producer in a burst, the queue grew by hundreds of thousands of records.
        sent = self._send_packed(sock)
        if not queue_too:
            return sent
        with self._pack_lock:
            sent = self._send_packed(sock) or sent  # packed meanwhile: older than the queue
            return self._drain_queue(sock) or sent

    def _send_packed(self, sock: zmq.Socket) -> bool:
        """Sends the batches producers had packed when it began (a burst packs more meanwhile,
        which would keep it going), oldest first. Returns whether there were any."""
        packed = self._packed
        count = len(packed)
        for _ in range(count):
            records, records_count = packed.popleft()
            self._send_packed_batch(sock, records, records_count)
            self._records_packed_sent += records_count
        return count > 0

    def _send_packed_batch(self, sock: zmq.Socket, records: bytes, count: int) -> None:
        """Sends `count` data records that `_wire.pack_records` packed."""
        self._seq += 1
        self._send_frames(sock, _wire.encode_packed_records(self._cid, self._seq, records), (), count, 0)
        self._sent_records += count

    def _room(self) -> int:
        """How many more records may be packed or sent while unacknowledged, within the bound."""
        packed = self._records_packed - self._records_packed_sent
        return self.settings.max_pending_records - packed - self._unacked_records

    def _drain_queue(self, sock: zmq.Socket) -> bool:
        queue, batch_records = self.queue, self.batch_records
        # What does not fit in the bound stays queued, where producers drop what exceeds it.
        length = min(len(queue), self._room())
        if length <= 0:
            return False
        # Length first, then the count of special items (arrays, flushes) that producers announce
        # before appending them: if none is new, the next `length` items are plain records and go
        # out as they are, without a look at each. One pass per call, so acks keep being read.
        if self._specials_queued == self._specials_taken:
            while length:
                take = min(length, batch_records)
                packed, controls = _wire.pack_records(_take(queue, take))
                self._send_packed_batch(sock, packed, take - controls)
                length -= take
        else:
            self._drain_mixed(sock, length)
        return True

    def _drain_mixed(self, sock: zmq.Socket, length: int) -> None:
        """Sends the next `length` queued items, some of which are arrays or flush markers (and
        writers' opens and closes and scalar keys, which need no look).

        Each run of scalar rows between two records is cut and joined in C (`_wire.row_runs`):
        the Python work here is per record, not per row. This runs with the GIL held, which a
        training thread coming back from its step waits for."""
        items = _take(self.queue, length)
        limit = self.batch_records
        out = _Outgoing()
        for start, stop, record in _wire.row_runs(items):
            while start < stop:  # a long run fills as many messages as it takes
                take = min(stop - start, limit - out.size)
                out.add_rows(b"".join(items[start : start + take]), take)
                start += take
                if out.size >= limit:
                    out = self._send_outgoing(sock, out)
            if record is None:
                break
            kind = record[0]
            if kind in _SPECIAL_KINDS:
                self._specials_taken += 1
            if kind == _FLUSH_MARKER:
                out = self._send_outgoing(sock, out)
                record[1].seq = self._send(sock, MessageKind.FLUSH, {})
                self._flushes.append(record[1])
                continue
            if kind in _ARRAY_KINDS:
                record = (*record[:6], out.add_array(record[6]), *record[7:])
            out.add(record, data=kind not in _wire.CONTROL_KIND_CODES)
            if out.size >= limit or len(out.arrays) >= _wire.MAX_ARRAYS_PER_MESSAGE:
                out = self._send_outgoing(sock, out)
        self._send_outgoing(sock, out)

    def _send_outgoing(self, sock: zmq.Socket, out: _Outgoing) -> _Outgoing:
        """Sends `out` as one RECORDS message, if it holds anything; returns a new, empty one.
        Its arrays leave the queue's count of array bytes (what wakes this thread early)."""
        if out.records:
            self._send(sock, MessageKind.RECORDS, {"records": out.records}, out.arrays, out.data, out.array_bytes)
            self._sent_records += out.data
        if out.array_bytes:
            with self._lock:
                self._array_bytes_queued -= out.array_bytes
        return _Outgoing()

    def _send(
        self,
        sock: zmq.Socket,
        kind: MessageKind,
        header: dict,
        arrays: list = (),
        records: int = 0,
        array_bytes: int = 0,
    ) -> int:
        """Numbers and sends a message (or parks it while the daemon's queue is full); its seq.

        Arrays in the shared arena go as their offsets; the others as frames."""
        self._seq += 1
        header["cid"] = self._cid
        header["seq"] = self._seq
        offsets: list = [self._arena.offset_of(array) for array in arrays] if self._arena_shared else []
        shared = [array for array, offset in zip(arrays, offsets) if offset is not None]
        framed = [array for array, offset in zip(arrays, offsets) if offset is None] if shared else arrays
        frames = _wire.encode(kind, header, arrays, offsets)
        return self._send_frames(sock, frames, framed, records, array_bytes, shared)

    def _send_frames(
        self, sock: zmq.Socket, frames: list, arrays: Any, records: int, array_bytes: int, shared: list = ()
    ) -> int:
        """Sends the frames of message `self._seq`, or parks them while the daemon's queue is full.
        The `shared` arrays, which the daemon reads in the arena, are held until it acknowledges."""
        self._inflight.append((self._seq, records, array_bytes, shared))
        self._unacked_records += records
        if self._unsent or not self._try_send(sock, frames, arrays):
            self._unsent.append((frames, arrays, array_bytes))
        return self._seq

    def _try_send(self, sock: zmq.Socket, frames: list, arrays: Any) -> bool:
        """Sends without blocking (arrays without a copy); False if the daemon's queue is full.

        ZeroMQ keeps a reference to each array until it has sent its bytes: only then can the
        arena hand its slot out again."""
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=not arrays)
        except zmq.Again:
            return False
        return True

    def _retry_unsent(self, sock: zmq.Socket) -> None:
        while self._unsent and self._try_send(sock, *self._unsent[0][:2]):
            self._unsent.popleft()

    def _unsent_bytes(self) -> int:
        return sum(entry[2] for entry in self._unsent)

    def _control(self, sock: zmq.Socket, kind: MessageKind) -> None:
        """Unnumbered control messages (heartbeat, goodbye): dropped, not parked, when the pipe is full."""
        self._try_send(sock, _wire.encode(kind, {"cid": self._cid}), ())

    def _receive(self, sock: zmq.Socket) -> None:
        while True:
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message = _wire.decode(frames)
            except _wire.ProtocolError as exc:
                self._fail(f"the daemon's message was refused: {exc.detail}")
                continue
            if message.kind == MessageKind.ACK:
                self._on_ack(message.header)
            elif message.kind == MessageKind.WELCOME:
                self._arena_shared = message.header.get("arena") is True
                self._welcomed.set()
            elif message.kind == MessageKind.REFUSED:
                self._fail(f"the daemon refused this client: {message.header.get('detail')}")

    def _fail(self, error: str) -> None:
        if self._error is None:
            log.error("%s", error)
        self._error = error
        self._welcomed.set()

    def _on_ack(self, header: dict[str, Any]) -> None:
        acked = header.get("acked", 0)
        dropped = header.get("dropped") or {}
        released_records = released_bytes = 0
        inflight = self._inflight
        while inflight and inflight[0][0] <= acked:
            _, records, array_bytes, _ = inflight.popleft()  # shared arrays: their slots come back
            released_records += records
            released_bytes += array_bytes
        self._daemon_unresponsive = False
        self._unacked_records -= released_records
        with self._lock:
            self._acked_records += released_records
            self._array_bytes_held -= released_bytes
            for reason, count in dropped.items():  # refused by the daemon: counted, not written
                self._daemon_dropped[str(reason)] += int(count)
        done = [f for f in self._flushes if f.seq is not None and f.seq <= acked]
        for flush in done:
            self._flushes.remove(flush)
            flush.event.set()
        if not self._welcomed.is_set():
            self._welcomed.set()

    def _release_flushes(self) -> None:
        """The thread is ending: what is still unacknowledged is counted as lost with the daemon."""
        lost = self._unacked_records
        lost += sum(
            1
            for item in self.queue
            if type(item) is bytes or (item[0] != _FLUSH_MARKER and item[0] not in _wire.CONTROL_KIND_CODES)
        )
        if lost:
            with self._lock:
                self._dropped["daemon_unreachable"] += lost
            log.warning("logger_client: %d record(s) were not confirmed written by the daemon", lost)


_transport: ZmqTransport | None = None
_transport_lock = threading.Lock()


def get_transport(settings: Settings | None = None) -> ZmqTransport:
    """The process's transport, connecting (and starting a daemon) on first use."""
    global _transport
    with _transport_lock:
        if _transport is None:
            transport = ZmqTransport(settings or Settings.from_env())
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
    if transport is None or transport._pid != os.getpid():
        return True
    return transport.shutdown(transport.settings.close_timeout_s if timeout_s is None else timeout_s)


def _after_fork_in_child() -> None:
    global _transport_lock
    _transport_lock = threading.Lock()  # another thread may have held it at the fork
    if _transport is not None:  # only the live transport: a shut-down one stays down
        _transport.after_fork_in_child()


atexit.register(shutdown_transport)
os.register_at_fork(after_in_child=_after_fork_in_child)
