"""The client's arena: pre-faulted slots for array copies, taken back when their array is garbage.

Unit tests on `Arena` itself, then one end to end: arrays changed right after each call must
reach the file as they were at the call, whatever slot reuse happens in between.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import itertools
import math
import mmap
import os
import threading
from typing import Any

import numpy as np
import pytest
from conftest import wait_for
from daemon_cli import status_json
from logdirs import accumulator
from raw_peer import RawPeer

from logger_client import SummaryWriter
from logger_client import _arena as arena_module
from logger_client._arena import _CHUNK, _INITIAL_BYTES, _LEAD, _MIN_SLOT, Arena
from logger_client.protocol import MessageKind

F32 = np.dtype(np.float32)
SLOT_VALUES = _MIN_SLOT // 4  # float32 values in the smallest array the arena takes


def in_arena(arena: Arena, array: np.ndarray) -> bool:
    """Whether `array` lies in the arena's (shared) region."""
    return arena.offset_of(array) is not None


def ready(arena: Arena, values: int = SLOT_VALUES) -> Arena:
    """Asks for one array (which starts the faulting thread) and waits until the room is faulted in."""
    arena.empty((values,), F32)
    gc.collect()
    wait_for(lambda: arena.faulted_bytes >= min(arena._capacity, arena._wanted) > 0, message="the arena to fault in")
    return arena


def test_small_arrays_and_a_disabled_arena_get_ordinary_memory() -> None:
    arena = ready(Arena(8 * _CHUNK))
    assert not in_arena(arena, arena.empty((SLOT_VALUES - 1,), F32))
    assert in_arena(arena, arena.empty((SLOT_VALUES,), F32))
    off = Arena(0)
    assert not in_arena(off, off.empty((SLOT_VALUES * 4,), F32))
    assert off.faulted_bytes == 0


def test_a_slot_comes_back_when_its_array_and_every_view_of_it_are_garbage() -> None:
    arena = ready(Arena(8 * _CHUNK))
    first = arena.empty((4, SLOT_VALUES // 4), F32)
    address = first.ctypes.data
    view = first[1:]  # what ZeroMQ's frame or a slice would hold
    del first
    gc.collect()
    second = arena.empty((SLOT_VALUES,), F32)
    assert second.ctypes.data != address, "a slot was reused while a view of its array was alive"
    del view, second
    gc.collect()
    # Empty again: the next slot starts at the bottom, on the same warm pages.
    assert arena.empty((SLOT_VALUES,), F32).ctypes.data == address


def test_a_full_arena_falls_back_to_ordinary_memory_and_recovers() -> None:
    arena = ready(Arena(2 * _CHUNK))
    held = []
    while True:
        array = arena.empty((SLOT_VALUES,), F32)
        if not in_arena(arena, array):
            break
        held.append(array)
    assert len(held) == arena.faulted_bytes // _MIN_SLOT
    held.pop(0)  # the oldest slot frees the bottom of the ring: the next array wraps there
    gc.collect()
    assert in_arena(arena, arena.empty((SLOT_VALUES,), F32))


@pytest.mark.parametrize("warm", [None, 3 * _INITIAL_BYTES])
def test_warm_faults_in_the_first_part_before_any_array(warm) -> None:
    arena = Arena(4 * _INITIAL_BYTES)
    expected = _INITIAL_BYTES if warm is None else warm
    arena.warm() if warm is None else arena.warm(warm)
    wait_for(lambda: arena.faulted_bytes >= expected, message="the arena to warm up")
    assert arena._wanted == expected  # not the whole arena: only what is wanted


def test_a_burst_past_the_warm_part_goes_on_into_the_cold_part_and_keeps_its_bytes() -> None:
    arena = ready(Arena(4 * _INITIAL_BYTES))
    if not arena._populates:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE")
    assert arena.faulted_bytes == _INITIAL_BYTES  # not the whole arena: only what is wanted
    values = 2**20 // 4
    held = []
    for i in range(_INITIAL_BYTES // 2**20 + 8):  # past the warm part
        array = arena.empty((values,), F32)
        array.fill(i)
        held.append(array)
    assert all(in_arena(arena, array) for array in held)
    # The arena grows past the burst, its slots faulted in by their calls: what they hold stays.
    wait_for(lambda: arena._faulted >= 2 * (_INITIAL_BYTES + 8 * 2**20), message="the arena to grow")
    assert all((array == i).all() for i, array in enumerate(held))


def resident(arena: Arena, array: np.ndarray) -> bool:
    """Whether every page under `array` is in memory (mincore: for shared memory, in its cache)."""
    page = mmap.PAGESIZE
    start = array.ctypes.data // page * page
    length = array.ctypes.data + array.nbytes - start
    pages = -(-length // page)
    vector = (ctypes.c_ubyte * pages)()
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), vector) == 0, ctypes.get_errno()
    return all(byte & 1 for byte in vector)


def test_a_slot_in_the_cold_part_is_faulted_in_before_its_copy() -> None:
    arena = ready(Arena(4 * _INITIAL_BYTES))
    if not arena._populates:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE")
    with arena._lock:
        arena._faulting = True  # the faulting thread held off: the call alone must fault its slot in
    try:
        warm = arena.empty((_INITIAL_BYTES // 4 - 2**18,), F32)  # the warm part, but its last MiB
        cold = arena.empty((2**22,), F32)  # 16 MiB: 1 warm, 15 cold
        warm_at, cold_at = arena.offset_of(warm), arena.offset_of(cold)
        assert warm_at is not None and cold_at == warm_at + warm.nbytes  # next in line, past the warm part
        assert arena._faulted < cold_at + cold.nbytes
        assert resident(arena, cold), "the call handed out a slot whose pages its copy would fault"
    finally:
        with arena._lock:
            arena._faulting = False


def test_in_a_burst_past_the_faulted_part_the_thread_works_ahead_of_the_calls() -> None:
    arena = ready(Arena(4 * _INITIAL_BYTES))
    if not arena._populates:
        pytest.skip("this kernel has no MADV_POPULATE_WRITE")
    with arena._lock:
        arena._faulting = True  # the faulting thread held off while the burst runs
    held = [arena.empty((2**18,), F32) for _ in range(_INITIAL_BYTES // 2**20 + 8)]  # 8 MiB past the warm part
    last = arena.offset_of(held[-1])
    assert last is not None
    head = last + held[-1].nbytes
    assert all(resident(arena, array) for array in held)  # each call faulted its own slot in
    with arena._lock:
        first = arena._next_chunk()
    assert first is not None and first >= head + _LEAD, "the thread would fault in pages the calls are at"
    # Let it run: everything wanted ends up faulted in, the pages it skipped over included.
    threading.Thread(target=arena._fault_in, daemon=True).start()
    wait_for(lambda: not arena._faulting, message="the faulting thread to finish")
    assert resident(arena, np.ndarray((arena._wanted,), np.uint8, buffer=arena._map))
    assert arena._faulted == arena._wanted and arena._ahead is None


def test_the_first_arrays_warm_room_for_a_burst_of_their_size() -> None:
    arena = Arena(2**30)
    with arena._lock:
        arena._faulting = True  # only what is wanted is checked here, nothing faulted in
    arena.empty((SLOT_VALUES,), F32)
    assert arena._wanted == _INITIAL_BYTES  # small arrays: the initial part holds hundreds
    arena.empty((2**18,), F32)  # 1 MiB
    assert arena._wanted == 256 * 2**20  # room for a model's worth of them, up to 256 MiB
    arena.empty((2**21,), F32)  # 8 MiB
    assert arena._wanted == 64 * 8 * 2**20  # still room for 64 of the largest
    arena.close()


def test_a_steady_trickle_goes_round_the_warm_part_without_growing_it() -> None:
    """An image per step, a few dozen in flight: the slots go round the warm part, which is not
    a burst, so no more of the arena is faulted in (the whole of it was, before)."""
    arena = ready(Arena(4 * _INITIAL_BYTES))
    in_flight: list[np.ndarray] = []
    image = (3, 64, 64)
    for _ in range(3 * _INITIAL_BYTES // (math.prod(image) * F32.itemsize)):  # three laps
        in_flight.append(arena.empty(image, F32))
        assert in_arena(arena, in_flight[-1])
        if len(in_flight) > 50:
            in_flight.pop(0)
    assert arena._wanted == _INITIAL_BYTES
    assert arena.faulted_bytes == _INITIAL_BYTES


def test_without_populating_only_the_warm_part_is_handed_out_and_a_full_one_doubles(monkeypatch) -> None:
    monkeypatch.setattr(arena_module, "_madvise", None)
    arena = ready(Arena(4 * _INITIAL_BYTES))
    assert not arena._populates and arena.faulted_bytes == _INITIAL_BYTES
    values = 2**20 // 4
    held = [arena.empty((values,), F32) for _ in range(_INITIAL_BYTES // 2**20 + 1)]
    assert not in_arena(arena, held[-1]), "the last array found the faulted room full"
    wait_for(lambda: arena.faulted_bytes >= 2 * _INITIAL_BYTES, message="the arena to grow")
    assert in_arena(arena, arena.empty((values,), F32))


def test_slots_never_overlap_while_in_use() -> None:
    arena = ready(Arena(4 * _CHUNK), SLOT_VALUES * 3)
    rng = np.random.default_rng(0)
    live: list[np.ndarray] = []
    for _ in range(600):
        if live and rng.random() < 0.45:
            live.pop(int(rng.integers(len(live))))
            gc.collect(0)
        live.append(arena.empty((int(rng.integers(SLOT_VALUES, SLOT_VALUES * 3)),), F32))
        spans = sorted((a.ctypes.data, a.ctypes.data + a.nbytes) for a in live if in_arena(arena, a))
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), "two live slots overlap"


@pytest.mark.e2e
def test_arrays_changed_right_after_each_call_are_written_as_they_were(daemon, logdir) -> None:
    values = SLOT_VALUES * 2
    source = np.empty(values, np.float32)
    with SummaryWriter(logdir) as writer:
        for step in range(80):  # more than the faulted room holds: slots are reused meanwhile
            source.fill(step)
            writer.add_histogram("changing", source, step)
        assert writer.flush()
        assert writer.stats()["arena_bytes"] > 0
    histograms = accumulator(logdir).Histograms("changing")
    assert [h.step for h in histograms] == list(range(80))
    for h in histograms:
        assert (h.histogram_value.min, h.histogram_value.max, h.histogram_value.num) == (h.step, h.step, values)


@pytest.mark.e2e
def test_the_daemon_reads_arrays_in_the_writers_arena_and_says_so(daemon, logdir) -> None:
    with SummaryWriter(logdir) as writer:
        writer.add_histogram("shared", np.arange(SLOT_VALUES * 2, dtype=np.float32), 1)
        assert writer.flush()
        mine = [client for client in status_json()["clients"] if client["pid"] == os.getpid()]
        assert [client["shared_arena"] for client in mine] == [True]
    assert accumulator(logdir).Histograms("shared")[0].histogram_value.max == SLOT_VALUES * 2 - 1


def _announcements(tmp_path) -> tuple[list[tuple[Any, str]], tuple[int, int, int]]:
    plain = tmp_path / "plain"
    plain.write_bytes(b"\0" * 4096)
    plain_fd = os.open(plain, os.O_RDONLY)
    sealed_fd = os.memfd_create("test-arena", os.MFD_ALLOW_SEALING)
    os.ftruncate(sealed_fd, 8192)
    fcntl.fcntl(sealed_fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fifo_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    me = os.getpid()
    return [
        ({"pid": me, "fd": plain_fd, "size": 4096}, "a plain file, not a sealed memfd"),
        ({"pid": me, "fd": sealed_fd, "size": 4096}, "the wrong size"),
        ({"pid": me, "fd": fifo_fd, "size": 4096}, "a FIFO (opening it must not block the daemon)"),
        ({"pid": me, "fd": 987654, "size": 4096}, "no such fd"),
        ({"pid": 2**22 + 7, "fd": 3, "size": 4096}, "no such process"),
        ({"pid": "me", "fd": 3}, "malformed"),
        ("arena", "not a map"),
    ], (plain_fd, sealed_fd, fifo_fd)


@pytest.mark.e2e
def test_an_arena_the_daemon_cannot_map_is_declined_and_offsets_into_it_refused(daemon, runtime_dir, tmp_path):
    announcements, fds = _announcements(tmp_path)
    try:
        for announcement, why in announcements:
            peer = RawPeer(runtime_dir)
            try:
                peer.send_message(MessageKind.HELLO, {"pid": os.getpid(), "host": "raw", "arena": announcement})
                assert peer.wait_for_reply(MessageKind.WELCOME)["arena"] is False, why
                peer.send_message(MessageKind.RECORDS, {"records": [], "arrays": [["uint8", [16], 0]]})
                assert peer.wait_for_reply(MessageKind.REFUSED)["reason"] == "bad_array", why
            finally:
                peer.close()
    finally:
        for fd in fds:
            os.close(fd)
    assert status_json()["records_dropped"].get("bad_array") == len(announcements)
