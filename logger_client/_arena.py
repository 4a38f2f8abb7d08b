"""Pre-faulted memory for the one copy of each logged array.

Copying a tensor into freshly allocated memory costs far more than the copy: every new page
faults and is zeroed by the kernel, several times the cost of copying into pages already mapped
(docs/history.md has a measurement). A step that logs many arrays back to back (a histogram per layer) outruns
the daemon, so their copies cannot all reuse the memory of arrays already sent.

So the arena maps one region (`arena_bytes`, virtual until used) and a background thread faults
in its pages ahead of need: `_INITIAL_BYTES` (or the `arena_warm_bytes` setting) as soon as the
transport starts (`warm`, so that a process's first arrays already find warm pages), then room
for `_FIRST_BURST_ARRAYS` arrays of the largest size logged so far (up to `_FIRST_BURST_BYTES`,
and at least `_BURST_ARRAYS` of them), and twice the furthest a burst reached whenever one goes
past half of that: the warm part grows to what the process logs at once. It stays resident: the
arena never gives pages back, and holds at most `arena_bytes`. The region is a sealed memfd
that the daemon maps read-only, so an array's bytes cross to it without a copy; where that is not
possible, private memory whose arrays travel as ZeroMQ frames. Arrays are carved from it in
order, lowest addresses first while it is empty (so a steady trickle of images keeps reusing the
same, cache-warm pages), and each slot comes back when the last reference to its array is gone:
the transport holds one until the daemon has acknowledged the message (or ZeroMQ, until it has
sent a frame), so a slot is never reused while its data is in flight.

Pages are faulted in by `madvise(MADV_POPULATE_WRITE)` (Linux 5.14), which keeps what a page
holds: so a burst that outruns the faulting thread goes on into the cold part of the region. A
slot there is populated by its own call before the copy (one madvise costs about a quarter less
than a fault per page), while the thread works `_LEAD` ahead of the calls, on pages they reach
later (and afterwards on any it skipped); the pages stay for the next burst. The thread cannot
keep up with a burst, only prepare for it: a page fault costs several times the copy of its bytes
(about 1 ms per MiB against 0.1 on the 2-core development VM), so only pages faulted in before a
burst are at the copy's cost. Where that call is missing, pages are faulted in by writing zeros,
and only the warm part is handed out. An array that does not fit (the region full, or larger than
half of it) gets ordinary memory.
"""

from __future__ import annotations

import ctypes
import fcntl
import math
import mmap
import os
import sys
import threading
import weakref
from collections import deque
from functools import partial
from typing import Any

import numpy as np

#: Slots start on cache-line boundaries.
_ALIGN = 64
#: Smaller arrays take ordinary memory (a page of heap holds several of them).
_MIN_SLOT = 4096
#: Pages are faulted in by chunks of this size, the GIL released during each.
_CHUNK = 4 * 2**20
#: The faulted-in part of the arena holds at least this much (faulted in when the transport
#: starts), or this many arrays of the largest size seen; and grows to twice the furthest a burst
#: reached (up to the arena's size).
_INITIAL_BYTES = 64 * 2**20
_BURST_ARRAYS = 64
#: Before any burst showed its size: room for this many arrays of the largest size logged (a model
#: has hundreds of parameter tensors), up to `_FIRST_BURST_BYTES` (never less than `_BURST_ARRAYS`
#: of them). A first burst past the warm part pays a page fault per page, ten times the copy.
_FIRST_BURST_ARRAYS = 256
_FIRST_BURST_BYTES = 256 * 2**20
#: While a burst's calls fault in their own slots past the faulted part, the faulting thread works
#: this far ahead of them, on pages they reach later, rather than on the ones they are at.
_LEAD = 4 * _CHUNK
#: madvise's advice that faults pages in writable without writing them (Linux 5.14).
_MADV_POPULATE_WRITE = 23


def _libc_madvise() -> Any:
    """libc's madvise through ctypes, which releases the GIL during the call; None if missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


_madvise = _libc_madvise() if sys.platform.startswith("linux") else None


def _release(released: deque, offset: int, watch: weakref.ref) -> None:
    """A slot's array is gone: hand its offset back (a weak reference's callback, in any thread)."""
    released.append(offset)


class Arena:
    """Slots for array copies in one pre-faulted region; thread-safe. `capacity_bytes` 0: none."""

    def __init__(self, capacity_bytes: int) -> None:
        self._capacity = capacity_bytes // _CHUNK * _CHUNK
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._base = 0  # address of the region's first byte
        self._fd: int | None = None  # the memfd behind a shared region
        self._shared: dict[str, int] | None = None  # where another process finds the region
        self._lock = threading.Lock()
        self._faulted = 0  # bytes of the region faulted in (grows, never shrinks)
        self._wanted = 0  # bytes the faulting thread works towards
        self._faulting = False
        # Whether pages are faulted in without writing them (then the cold part is handed out too).
        self._populates = False
        self._reached = 0  # the furthest end of a slot ever handed out
        # [start, end) faulted in ahead of a burst that is past `_faulted` (populating only).
        self._ahead: tuple[int, int] | None = None
        self._head = 0  # where the next slot starts
        self._in_use = 0  # bytes of the slots in use: what the arrays in flight hold
        self._slots: deque[int] = deque()  # offsets of the slots in use, in the order handed out
        self._ends: dict[int, int] = {}  # offset -> end of each slot in `_slots`
        self._done: set[int] = set()  # slots released but not yet the oldest
        # Offsets of released slots. Appended by finalizers, which may run in any thread and even
        # inside `empty` (a garbage collection there): so they take no lock, only this deque.
        self._released: deque[int] = deque()
        self._watches: dict[int, weakref.ref] = {}  # offset -> the weak reference that frees it

    def close(self) -> None:
        """Closes the memfd behind the region; a forked child does so and makes an arena of its own
        (it must not write into memory its parent's daemon reads)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._shared = None

    def warm(self, nbytes: int = _INITIAL_BYTES) -> None:
        """Faults in the first `nbytes` in the background, before any array is logged."""
        with self._lock:
            self._want(nbytes)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-contiguous array, in the arena when a slot is free."""
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < _MIN_SLOT or nbytes > self._capacity // 2:
            return np.empty(shape, dtype)
        with self._lock:
            wanted = max(_INITIAL_BYTES, nbytes * _BURST_ARRAYS, min(nbytes * _FIRST_BURST_ARRAYS, _FIRST_BURST_BYTES))
            if wanted > self._wanted and self._wanted < self._capacity:  # hot path: only when it grows
                self._want(wanted)
            offset = self._reserve(nbytes)
            if offset is None:
                self._want(2 * self._faulted)  # outgrown: more room for the next burst
            elif self._populates and 2 * self._in_use > self._wanted:
                # A burst: the thread works ahead of it, into the cold part. Judged by the bytes in
                # flight, not by where the head is: a steady trickle moves the head around the
                # ring, and growing with it would fault in the whole region.
                self._want(2 * self._head)
        if offset is None:
            return np.empty(shape, dtype)
        if offset + nbytes > self._faulted and self._populates:
            self._populate(offset, nbytes)
        # One constructor, not a slice, a frombuffer and a reshape: after a training step every
        # extra call here costs microseconds (the interpreter's caches are cold).
        array = np.ndarray(shape, dtype, buffer=self._map, offset=offset)
        # Views of `array` (ZeroMQ's frames among them) keep it, and so the slot, alive. A plain
        # weak reference with a C partial: no Python frame here (a subclass's __new__ and
        # __init__ cost tens of µs on a training step's cold caches).
        self._watches[offset] = weakref.ref(array, partial(_release, self._released, offset))
        return array

    def share(self) -> dict[str, int] | None:
        """Maps the region if not yet done, as shared memory when this system allows, and says
        where the daemon (same user and machine) finds it: {"pid", "fd", "size"}; else None."""
        with self._lock:
            self._ensure_mapped()
            return self._shared

    def offset_of(self, array: np.ndarray) -> int | None:
        """Where `array`'s bytes start in the shared region; None if they lie elsewhere."""
        if self._shared is None:
            return None
        offset = array.ctypes.data - self._base
        return offset if offset >= 0 and offset + array.nbytes <= self._capacity else None

    @property
    def faulted_bytes(self) -> int:
        """Bytes of the region faulted in: by the faulting thread, or by the copies of a burst."""
        ahead = self._ahead
        return max(self._faulted, self._reached) + (ahead[1] - ahead[0] if ahead is not None else 0)

    def _populate(self, offset: int, nbytes: int) -> None:
        """Faults in the cold pages of a slot before the copy: one madvise (the GIL released) costs
        the training thread less than a page fault per page taken by the copy's stores."""
        if _madvise is None:
            return
        start, end = max(offset, self._faulted) // mmap.PAGESIZE * mmap.PAGESIZE, offset + nbytes
        ahead = self._ahead  # read without the lock: a stale one only costs a page walk more
        if ahead is not None and start < ahead[1] and ahead[0] < end:
            if start < ahead[0]:
                _madvise(self._base + start, ahead[0] - start, _MADV_POPULATE_WRITE)
            start = ahead[1]
        if start < end:
            _madvise(self._base + start, end - start, _MADV_POPULATE_WRITE)

    # -- under the lock ----------------------------------------------------------------------

    def _want(self, nbytes: int) -> None:
        """Faults in the first `nbytes` of the arena (at most all of it), in the background."""
        wanted = min(self._capacity, math.ceil(nbytes / _CHUNK) * _CHUNK)
        if wanted <= self._wanted:
            return
        self._ensure_mapped()
        self._wanted = wanted
        if not self._faulting:
            self._faulting = True
            threading.Thread(target=self._fault_in, name="logger-client-arena", daemon=True).start()

    def _ensure_mapped(self) -> None:
        """Maps the region (virtual memory only): a sealed memfd that the daemon can map too, or
        private memory where memfds or seals are missing (its arrays then travel as frames)."""
        if self._map is not None or self._capacity == 0:
            return
        try:
            fd = os.memfd_create("tb-logger-arena", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            try:
                os.ftruncate(fd, self._capacity)
                # Sealed at its size: a reader can never find the memory cut short under it.
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
                self._map = mmap.mmap(fd, self._capacity, flags=mmap.MAP_SHARED)
                self._fd = fd
                self._shared = {"pid": os.getpid(), "fd": fd, "size": self._capacity}
            except (AttributeError, OSError):
                os.close(fd)
        if self._map is None:
            self._map = mmap.mmap(-1, self._capacity, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._view = memoryview(self._map)
        self._base = np.frombuffer(self._view, np.uint8, count=1).ctypes.data
        # One chunk faulted in now, by the call that keeps pages as they are: does this kernel have it?
        self._populates = _madvise is not None and _madvise(self._base, _CHUNK, _MADV_POPULATE_WRITE) == 0
        if self._populates:
            self._faulted = _CHUNK

    def _fault_in(self) -> None:
        assert self._map is not None  # mapped by _want before this thread starts
        base = self._base
        populate = _madvise if self._populates else None
        while True:
            with self._lock:
                start = self._next_chunk()
                if start is None:
                    self._faulting = False
                    return
            # Foreign calls: the GIL is released meanwhile. Populating keeps what the pages hold, so
            # it may run under slots a burst already filled (a failure leaves pages to fault when
            # first written); zeros only go where no slot was ever handed out.
            if populate is not None:
                populate(base + start, _CHUNK, _MADV_POPULATE_WRITE)
            else:
                ctypes.memset(base + start, 0, _CHUNK)
            with self._lock:
                ahead = self._ahead
                if ahead is not None and start == ahead[1]:
                    self._ahead = (ahead[0], start + _CHUNK)
                elif start <= self._faulted:
                    self._faulted = max(self._faulted, start + _CHUNK)

    def _next_chunk(self) -> int | None:
        """The offset of the next chunk to fault in; None when the wanted part is."""
        if self._populates:
            # Slots below the furthest one handed out were faulted in by their own calls
            # (`_populate`): going over them again would only trail a burst.
            self._faulted = max(self._faulted, min(self._capacity, -(-self._reached // _CHUNK) * _CHUNK))
            ahead = self._ahead
            if ahead is not None and ahead[0] <= self._faulted:  # the calls caught up with it
                self._faulted, self._ahead = max(self._faulted, ahead[1]), None
            if self._ahead is None and self._head >= self._faulted:  # calls are faulting their slots
                lead = -(-(self._head + _LEAD) // _CHUNK) * _CHUNK
                if lead < self._wanted:
                    self._ahead = (lead, lead)
            ahead = self._ahead
            if ahead is not None and ahead[1] < self._wanted:
                return ahead[1]
        # Then (or without populating) the part below: a burst that stopped short of the part
        # faulted ahead left pages between.
        return self._faulted if self._faulted < self._wanted else None

    def _collect(self) -> None:
        """Takes in released slots and drops the oldest ones while they are released."""
        released, done = self._released, self._done
        while released:
            done.add(released.popleft())
        slots = self._slots
        while slots and slots[0] in done:
            offset = slots.popleft()
            done.discard(offset)
            self._in_use -= self._ends.pop(offset) - offset
            self._watches.pop(offset, None)
        if not slots:
            self._head = 0  # empty: start again at the bottom, on the warmest pages

    def _reserve(self, nbytes: int) -> int | None:
        self._collect()
        size = -(-nbytes // _ALIGN) * _ALIGN
        slots, limit = self._slots, self._faulted
        tail = slots[0] if slots else 0  # start of the oldest slot still in use
        if not slots or self._head > tail:
            # In use: [tail, head). Free: [head, limit), then [0, tail) after a wrap, then the cold
            # part [limit, capacity) where pages are faulted in without writing them.
            if self._head + size <= limit:
                offset = self._head
            elif size <= tail:
                offset = 0
            elif self._populates and self._head + size <= self._capacity:
                offset = self._head
            else:
                return None
        elif self._head + size <= tail:
            offset = self._head  # wrapped: free space is [head, tail)
        else:
            return None
        slots.append(offset)
        self._ends[offset] = offset + size
        self._in_use += size
        self._head = offset + size
        self._reached = max(self._reached, self._head)
        return offset
