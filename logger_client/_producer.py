"""The producer side of the transport: the queue training threads append to, its bounds, and the
packing of queued items into message bodies that the sender numbers and sends.

A training thread only appends an item to `Producer.queue`, a list (an append is one C call under
the GIL, so producers take no lock): a plain scalar as one packed row (`bytes`, see
`protocol.SCALAR_ROW`), anything else as a tuple. A producer whose append fills a batch of plain
items packs that batch itself, while the rows are still in its CPU cache. Everything else is
drained by the I/O thread. docs/design.md (Threading and the GIL) says who holds which lock when.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import numpy as np

from .protocol import (
    ARRAY_KINDS,
    ARRAY_MAP_KINDS,
    CONTROL_KINDS,
    KIND,
    MAX_ARRAYS_PER_MESSAGE,
    MAX_ARRAYS_PER_RECORD,
    MAX_MESSAGE_BYTES,
    MAX_SCALAR_KEYS,
    VALUE,
    DropReason,
    RecordKind,
)
from .settings import Settings

log = logging.getLogger("logger_client")

_OPEN = RecordKind.OPEN
_CLOSE = RecordKind.CLOSE
_KEY = RecordKind.KEY
#: The kind of a queue item that is a flush request, not a record.
FLUSH_MARKER = -1
#: Items the I/O thread must look at one by one (arrays, flush requests). Producers count them as
#: they append them, and pack no batch while one waits in the queue.
_SPECIAL_KINDS = ARRAY_KINDS | ARRAY_MAP_KINDS | {FLUSH_MARKER}
#: Items the record bound never drops: the specials, and control records (a lost scalar key would
#: lose every later row of its tag).
_KEPT_KINDS = _SPECIAL_KINDS | CONTROL_KINDS
#: Fastest a writer's `flush_secs` may make the linger.
_MIN_LINGER_S = 0.005
#: A message carries at most about this many array bytes: the daemon writes and acknowledges a
#: burst in parts, and each acknowledgement hands arena slots back while the rest is written.
_MESSAGE_ARRAY_BYTES = 16 * 2**20
#: How often a call waiting for room checks that a daemon can still be had.
_WAIT_CHECK_S = 0.1


class FlushRequest:
    """A pending flush(): done once the daemon acknowledges the FLUSH message numbered `seq`, or
    failed (`ok` False) when there is no daemon to acknowledge it."""

    __slots__ = ("done", "ok", "seq")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True
        self.seq: int | None = None

    def fail(self) -> None:
        self.ok = False
        self.done.set()


class Batch:
    """The body of one RECORDS message: its records list already msgpack (`packed`, no arrays),
    or as a list (`records`) with the arrays it carries. `data` counts its data records (not
    writers' opens and closes, nor keys): what its acknowledgement releases from the record bound."""

    __slots__ = ("array_bytes", "arrays", "data", "packed", "records")

    def __init__(self, packed: bytes | None = None, data: int = 0) -> None:
        self.packed = packed
        self.records: list[Any] = []
        self.arrays: list[np.ndarray] = []
        self.array_bytes = 0
        self.data = data

    def carry(self, array: np.ndarray) -> int:
        """Adds `array` to the message; its index among the message's arrays."""
        self.arrays.append(array)
        self.array_bytes += array.nbytes
        return len(self.arrays) - 1


#: What the I/O thread sends, in queue order.
Outgoing = Batch | FlushRequest


def take(queue: list, count: int) -> list:
    """Takes the first `count` items off `queue`; the caller holds the pack lock.

    Two C calls, not one per item: a copy, then a cut. Producers only append meanwhile, so the
    cut removes exactly what was copied."""
    items = queue[:count]
    del queue[:count]
    return items


def row_runs(items: list) -> Iterator[tuple[int, int, Any]]:
    """Splits queued items, scalar rows (bytes) and records (tuples), into runs of rows: yields
    (start, stop, record) where items[start:stop] are rows and `record` is the tuple that follows
    them, or None after the last run.

    The records are found by `list.index` over the items' types, in C, so that going through a
    batch costs Python work per record, not per row (thousands of rows sit between two arrays)."""
    types = list(map(type, items))
    start, end = 0, len(items)
    while start < end:
        try:
            stop = types.index(tuple, start)
        except ValueError:
            yield start, end, None
            return
        yield start, stop, items[stop]
        start = stop + 1


def join_rows(items: list) -> list:
    """`items` with each run of scalar rows (bytes) joined into one bin, in place of the rows:
    the daemon reads a bin as columns, so one bin per row would cost it a numpy call per row."""
    joined: list = []
    for start, stop, record in row_runs(items):
        if stop > start:
            joined.append(b"".join(items[start:stop]))
        if record is not None:
            joined.append(record)
    return joined


def pack_records(items: list) -> tuple[bytes, int, int]:
    """Plain queued items (rows and records without arrays) as a msgpack records list, how many
    of them are control records, and how many records were left out because msgpack refuses a
    value of theirs (the rest still go). A batch of rows only, the common case, becomes one bin,
    joined in C."""
    try:
        return msgpack.packb([b"".join(items)], use_bin_type=True), 0, 0
    except TypeError:  # not all rows
        joined = join_rows(items)
    try:
        packed = msgpack.packb(joined, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        kept = [item for item in joined if type(item) is bytes or _packable(item)]
        return msgpack.packb(kept, use_bin_type=True), _controls(kept), len(joined) - len(kept)
    return packed, _controls(joined), 0


def _controls(records: list) -> int:
    return sum(1 for record in records if type(record) is tuple and record[KIND] in CONTROL_KINDS)


def _packable(record: tuple) -> bool:
    try:
        msgpack.packb(record, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


class Producer:
    """The queue, its bounds and its packing; shared by every writer of the process.

    Memory is bounded while the daemon is slow or gone: at most `max_buffer_bytes` of arrays, and
    `max_pending_records` records queued plus about as many taken off the queue and not yet
    acknowledged, wait here; what does not fit is dropped and counted by reason.
    """

    def __init__(self, settings: Settings, wake: Callable[[], None]) -> None:
        self.settings = settings
        self.batch_records = settings.batch_records
        self.queue: list = []
        self._wake = wake
        # `_lock` guards the counters and maps below; `_pack_lock` the taking of items off the
        # queue (by producers packing and by the I/O thread draining), which keeps batches in
        # queue order. Neither guards an append.
        self._lock = threading.Lock()
        self._pack_lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # array bytes released: calls waiting for room
        self._releases = 0  # acknowledgements that released array bytes, under `_lock`
        self._stalled_at = -1  # `_releases` when a wait for room last timed out
        #: Whether a daemon may acknowledge what is held (set by the transport): if not, an array
        #: call past the bound does not wait.
        self.deliverable: Callable[[], bool] = lambda: True
        #: The largest array the daemon takes as a frame (set by the transport from its WELCOME),
        #: and whether an array goes as an offset in the shared arena instead.
        self.max_frame_bytes = MAX_MESSAGE_BYTES
        self.travels_in_arena: Callable[[np.ndarray], bool] = lambda array: False
        self._writers: dict[int, dict[str, Any]] = {}  # open writers: id -> their OPEN options
        # Writers closed since everything sent was last acknowledged: a new daemon must know them
        # too, to write what they logged before their CLOSE (which it may be sent again).
        self._closing: dict[int, dict[str, Any]] = {}
        self._next_writer = 1
        self._scalar_keys: dict[int, tuple[int, str, str]] = {}  # key -> (writer, run, tag)
        self.linger_s = settings.linger_s
        self._packed: deque[Batch] = deque()  # batches producers packed, oldest first
        # Data records taken off the queue (packed or drained: under the pack lock), and those
        # acknowledged or given up (by the I/O thread): their difference counts against the bound.
        self._taken = 0
        self._released = 0
        self._array_bytes_held = 0  # arrays queued or unacknowledged
        self._array_bytes_queued = 0  # arrays queued, not yet taken by the I/O thread
        self._specials_queued = 0  # counted by producers under `_lock` as they append them
        self._specials_taken = 0  # counted by the I/O thread as it takes them
        self._dropped: Counter[str] = Counter()
        self._queued_at_fork = 0  # the announcements a forked child queued for its new daemon

    def reset_after_fork(self) -> None:
        """In a forked child: the parent sends what it queued and packed; the child starts empty,
        its writers still open and announced again at the head of its queue, before anything it
        logs. Locks are new: another thread of the parent may have held one at the fork."""
        self.queue.clear()
        self._lock = threading.Lock()
        self._pack_lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._releases, self._stalled_at = 0, -1
        self._packed.clear()
        self._taken = self._released = 0
        self._array_bytes_held = self._array_bytes_queued = 0
        self._specials_queued = self._specials_taken = 0
        self._dropped = Counter()
        self._closing.clear()  # what they logged is the parent's to deliver
        self.announce_again()
        self._queued_at_fork = len(self.queue)

    # -- writers: any thread -----------------------------------------------------------------------

    def open_writer(self, options: dict[str, Any]) -> int:
        """Registers a writer's log directory; the daemon opens it before the writer's records."""
        with self._lock:
            writer = self._next_writer
            self._next_writer += 1
            self._writers[writer] = options
            # A writer asking for flush_secs below the default visibility gets records sent sooner.
            self.linger_s = max(_MIN_LINGER_S, min(self.linger_s, options["flush_secs"] / 2))
            self.queue.append((_OPEN, writer, "", "", 0, time.time(), options))
        return writer

    def scalar_key(self, writer: int, run: str, tag: str) -> int | None:
        """A new key for packed scalar rows of (writer, run, tag); None once all keys are taken.

        Its KEY record is queued before this returns, so it reaches the daemon before any row
        that uses the key, from any thread."""
        with self._lock:
            key = len(self._scalar_keys)
            if key >= MAX_SCALAR_KEYS:
                return None
            self._scalar_keys[key] = (writer, run, tag)
            self.queue.append((_KEY, writer, run, tag, 0, 0.0, key))
        return key

    def close_writer(self, writer: int) -> None:
        """Queues a writer's close."""
        with self._lock:
            options = self._writers.pop(writer, None)
            if options is not None:
                self._closing[writer] = options
            self.queue.append((_CLOSE, writer, "", "", 0, time.time(), None))

    def announce_again(self) -> None:
        """Puts the open writers and their scalar keys in front of the queue (a forked child's new
        connection): they must reach the daemon before anything queued."""
        with self._pack_lock, self._lock:
            self.queue[:0] = self._announcements()

    def announcement(self) -> Batch:
        """The open writers and their scalar keys as a batch of their own, for a new daemon."""
        with self._lock:
            packed, _, _ = pack_records(self._announcements())
        return Batch(packed, 0)

    def _announcements(self) -> list[tuple]:
        """OPEN and KEY records of the open writers; the caller holds `_lock`. A writer's purge is
        not repeated (again it would hide what the writer logged since), and the daemon is told
        the writer continues its session."""
        writers = {**self._closing, **self._writers}
        again: list[tuple] = [
            (_OPEN, writer, "", "", 0, time.time(), {**options, "purge_step": None, "announced": True})
            for writer, options in writers.items()
        ]
        again += [
            (_KEY, writer, run, tag, 0, 0.0, key)
            for key, (writer, run, tag) in self._scalar_keys.items()
            if writer in writers
        ]
        return again

    # -- records: any thread -----------------------------------------------------------------------

    def submit_array(self, record: tuple, wait_s: float = 0.0) -> None:
        """Queues a record carrying an array (in its value slot), or a map of names to arrays,
        within the byte bound: past it, waits up to `wait_s` for room, then drops and counts."""
        value = record[VALUE]
        nbytes = value.nbytes if type(value) is not dict else sum(array.nbytes for array in value.values())
        if nbytes > self.max_frame_bytes and self._too_large_for_a_frame(value):
            with self._lock:
                self._dropped[DropReason.MESSAGE_TOO_LARGE.value] += 1
            return
        bound = self.settings.max_buffer_bytes
        with self._lock:
            if self._array_bytes_held + nbytes > bound and not self._wait_for_room(nbytes, bound, wait_s):
                self._dropped[DropReason.CLIENT_BUFFER_FULL.value] += 1
                return
            self._array_bytes_held += nbytes
            self._specials_queued += 1
            self.queue.append(record)
            # No wake-up per array: a woken I/O thread takes the GIL, which the training thread,
            # back from its copy, then waits for. The linger sends arrays soon enough; only arrays
            # piling up towards the bound wake it, once per quarter of the bound queued.
            queued = self._array_bytes_queued + nbytes
            self._array_bytes_queued = queued
            quarter = bound // 4
            pressing = queued > quarter >= queued - nbytes
        if pressing:
            self._wake()

    def _too_large_for_a_frame(self, value: Any) -> bool:
        """Whether an array of `value` would go as a frame larger than the daemon takes: it would
        break the connection, and break it again each time it is resent."""
        arrays = value.values() if type(value) is dict else (value,)
        return any(array.nbytes > self.max_frame_bytes and not self.travels_in_arena(array) for array in arrays)

    def _wait_for_room(self, nbytes: int, bound: int, wait_s: float) -> bool:
        """Waits, holding `_lock` (the wait releases it), until `nbytes` more fit within `bound`;
        False at once if they never can, if no daemon can be had, or if the last wait timed out
        and nothing was acknowledged since (a stuck daemon costs one wait, not one per call)."""
        if wait_s <= 0 or nbytes > bound or self._releases == self._stalled_at or not self.deliverable():
            return False
        self._wake()  # what is queued goes now, not at the linger: its acknowledgement makes room
        deadline = time.monotonic() + wait_s
        while self._array_bytes_held + nbytes > bound:
            left = deadline - time.monotonic()
            if left <= 0 or not self.deliverable():
                self._stalled_at = self._releases
                return False
            self._room.wait(min(left, _WAIT_CHECK_S))
        return True

    def request_flush(self) -> FlushRequest:
        """Queues a flush request behind everything queued so far, and wakes the I/O thread."""
        request = FlushRequest()
        with self._lock:
            self._specials_queued += 1
            self.queue.append((FLUSH_MARKER, request))
        self._wake()
        return request

    def on_backlog(self, length: int, added: int = 1) -> None:
        """Called by a producer whose append of `added` items made the queue `length` long
        (>= batch_records): packs a batch each time the length crosses a multiple of it, and
        drops the newest item while the queue is over its bound."""
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
                self._dropped[DropReason.CLIENT_QUEUE_FULL.value] += 1
        elif length % self.batch_records < added:
            # With no room in the bound the items stay queued, where the check above drops.
            if self.room() > 0:
                self._pack_here()
            self._wake()

    def _pack_here(self) -> None:
        """Packs the queued items on this (producer) thread; skipped if a special item waits or
        the I/O thread is draining: then the I/O thread does it."""
        if not self._pack_lock.acquire(blocking=False):
            return
        try:
            # First the length, then the specials (see drain): never more than the bound leaves.
            length = min(len(self.queue), self.room())
            if length <= 0 or self._specials_queued != self._specials_taken:
                return
            self._packed.extend(self._pack_plain(length))
        finally:
            self._pack_lock.release()

    def _pack_plain(self, length: int) -> list[Batch]:
        """The first `length` queued items, none of them special, as batches of at most
        `batch_records`: a message never holds more, so the daemon's queue bound, checked per
        message, is never overrun by more than one batch. The caller holds the pack lock."""
        batches = []
        while length:
            count = min(length, self.batch_records)
            packed, controls, refused = pack_records(take(self.queue, count))
            batches.append(Batch(packed, count - controls - refused))
            self._taken += count - controls - refused
            if refused:
                self.refuse(refused)
            length -= count
        return batches

    def room(self) -> int:
        """How many more data records may be taken off the queue while unacknowledged."""
        return self.settings.max_pending_records - (self._taken - self._released)

    # -- the I/O thread ----------------------------------------------------------------------------

    def specials_waiting(self) -> bool:
        """Whether an array or a flush request waits in the queue."""
        return self._specials_queued != self._specials_taken

    def take_packed(self) -> list[Batch]:
        """The batches producers had packed when called, oldest first (a burst packs more
        meanwhile, which would keep the caller going)."""
        packed = self._packed
        return [packed.popleft() for _ in range(len(packed))]

    def drain(self) -> list[Outgoing]:
        """Everything packed and queued, in queue order, within the record bound: full batches,
        batches around arrays and flush requests. Producers go on appending meanwhile."""
        with self._pack_lock:
            out: list[Outgoing] = list(self.take_packed())  # packed before the lock: older than the queue
            # Length first, then the specials count that producers raise before appending: if it
            # has not moved, the next `length` items are plain and go as they are, unlooked at.
            length = min(len(self.queue), self.room())
            if length <= 0:
                return out
            if self._specials_queued == self._specials_taken:
                out.extend(self._pack_plain(length))
            else:
                out.extend(self._drain_mixed(take(self.queue, length)))
            return out

    def _drain_mixed(self, items: list) -> list[Outgoing]:
        """Batches of `items`, some of which are arrays or flush requests, cut at each flush and at
        a batch's size. Each run of scalar rows between two records is cut and joined in C
        (`row_runs`): the Python work here is per record, not per row."""
        limit = self.batch_records
        out: list[Outgoing] = []
        batch, size = Batch(), 0  # size: records in the batch, controls and each row counted
        for start, stop, record in row_runs(items):
            while start < stop:  # a long run fills as many batches as it takes
                count = min(stop - start, limit - size)
                batch.records.append(b"".join(items[start : start + count]))
                batch.data += count
                size += count
                start += count
                if size >= limit:
                    out.append(self._close_batch(batch))
                    batch, size = Batch(), 0
            if record is None:
                break
            kind = record[KIND]
            if kind in _SPECIAL_KINDS:
                self._specials_taken += 1
            if kind == FLUSH_MARKER:
                if size:
                    out.append(self._close_batch(batch))
                    batch, size = Batch(), 0
                out.append(record[1])
                continue
            if kind in ARRAY_KINDS:
                record = (*record[:VALUE], batch.carry(record[VALUE]), *record[VALUE + 1 :])
            elif kind in ARRAY_MAP_KINDS:
                indices = {role: batch.carry(array) for role, array in record[VALUE].items()}
                record = (*record[:VALUE], indices, *record[VALUE + 1 :])
            batch.records.append(record)
            batch.data += kind not in CONTROL_KINDS
            size += 1
            if (
                size >= limit
                or len(batch.arrays) > MAX_ARRAYS_PER_MESSAGE - MAX_ARRAYS_PER_RECORD
                or batch.array_bytes >= _MESSAGE_ARRAY_BYTES
            ):
                out.append(self._close_batch(batch))
                batch, size = Batch(), 0
        if size:
            out.append(self._close_batch(batch))
        return out

    def _close_batch(self, batch: Batch) -> Batch:
        """Counts a finished batch as taken; its arrays leave the count of array bytes queued."""
        self._taken += batch.data
        if batch.array_bytes:
            with self._lock:
                self._array_bytes_queued -= batch.array_bytes
        return batch

    def refuse(self, records: int, array_bytes: int = 0) -> None:
        """`records` data records (and their arrays) could not be encoded for the wire: counted as
        `unencodable`. Records already taken off the queue must be released by the caller."""
        with self._lock:
            self._dropped[DropReason.UNENCODABLE.value] += records
            self._array_bytes_held -= array_bytes
        log.error("logger_client: %d record(s) could not be encoded for the daemon and were dropped", records)

    def release(self, records: int, array_bytes: int) -> None:
        """The daemon acknowledged `records` data records and `array_bytes` of arrays."""
        self._released += records
        if array_bytes or (self._closing and self.idle()):
            with self._lock:
                self._array_bytes_held -= array_bytes
                if array_bytes:
                    self._releases += 1
                    self._room.notify_all()
                if self.idle():  # every CLOSE sent is acknowledged too: no daemon needs them again
                    self._closing.clear()

    def give_up(self) -> int:
        """The connection is over: every data record not acknowledged (taken or still queued) is
        counted as lost with the daemon; returns how many."""
        with self._pack_lock:
            queued = sum(1 for item in self.queue if _is_data(item))
            lost = self._taken - self._released + queued
            self._released = self._taken
        if lost:
            with self._lock:
                self._dropped[DropReason.DAEMON_UNREACHABLE.value] += lost
        return lost

    def fail_flushes(self) -> None:
        """There is no daemon to be had: the flush requests queued return False now. They stay
        queued, with the records around them, for the next daemon."""
        for item in list(self.queue):  # a snapshot: producers append meanwhile, without a lock
            if type(item) is tuple and item[KIND] == FLUSH_MARKER:
                item[1].fail()

    def logged_since_fork(self) -> bool:
        """In a forked child: whether anything beyond the announcements of its writers is queued
        or packed (a record, a flush, a new writer or key)."""
        return len(self.queue) != self._queued_at_fork or bool(self._packed)

    def idle(self) -> bool:
        """Whether nothing is queued, packed or unacknowledged."""
        return not self.queue and self._taken == self._released

    def queued(self) -> int:
        return len(self.queue)

    def pending(self) -> int:
        """Data records logged and not yet confirmed written: queued, packed, or sent and waiting
        for the daemon's acknowledgement."""
        return self._taken - self._released + sum(1 for item in list(self.queue) if _is_data(item))

    def dropped(self) -> Counter[str]:
        with self._lock:
            return Counter(self._dropped)

    def array_bytes_held(self) -> int:
        return self._array_bytes_held


def _is_kept(item: Any) -> bool:
    """Whether a queue item is one the bound never drops (a row is `bytes`, never kept)."""
    return type(item) is tuple and item[KIND] in _KEPT_KINDS


def _is_data(item: Any) -> bool:
    """Whether a queue item is a data record (a row, or a record that is neither control nor flush)."""
    return type(item) is bytes or (item[KIND] != FLUSH_MARKER and item[KIND] not in CONTROL_KINDS)
