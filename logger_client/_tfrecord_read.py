"""Reading TFRecord framing back on whole numpy columns: where the records of a file are, and
whether their masked CRC-32Cs hold.

A record is ``u64le length | u32le masked_crc(length) | data | u32le masked_crc(data)``. Finding the
records is a walk (each length says where the next record starts), but event files repeat
themselves: a writer logs the same tags in the same order, so the record lengths of a file come in
runs of a short repeating pattern. `frame` walks a few records in Python until the lengths repeat,
then checks whole stretches of the file against that pattern at once (a strided view per record of
the pattern, its length and length CRC compared in one numpy call), and walks again where the
pattern breaks.

CRC-32C is linear over GF(2): the CRC of a message of length L is the XOR of one table entry per
byte (the table for "this byte, followed by k zero bytes"), XORed with the CRC of L zero bytes. So
the CRCs of many records of one length are a handful of table look-ups on the columns of their
bytes, and columns that are the same in every record (a scalar's tag and framing) cost one look-up
for all of them. Long records go through the `crc32c` package where it is installed (the daemon
depends on it), else through the same tables in chunks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["Framing", "check_group", "crc32c_bytes", "crc32c_rows", "frame", "length_groups", "masked", "rows_of"]

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")

#: Records walked, at most, while looking for a repeating pattern of lengths (patterns up to a third).
_WALK = 192
#: Rows of the first stretch checked against a pattern; each next stretch is twice as long.
_FIRST_STRETCH = 256
#: Records of at most this length get their CRC from the column tables; longer ones one by one.
COLUMN_CRC_MAX_LENGTH = 512
#: Chunk of a long record for the table CRC (when the crc32c package is missing).
_CHUNK = 256


def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> np.uint32(1)) ^ np.uint32(_POLY), table >> np.uint32(1))
    return table.astype(np.uint32)


_TABLE = _make_table()
_TABLE_LIST = [int(x) for x in _TABLE]
_zero_tables: list[np.ndarray] = [_TABLE]  # [k]: a byte's CRC contribution followed by k zero bytes


def _shift(values: np.ndarray) -> np.ndarray:
    """The linear CRC state after one more zero byte."""
    return (values >> np.uint32(8)) ^ _TABLE[values & np.uint32(0xFF)]


def _zero_table(k: int) -> np.ndarray:
    while len(_zero_tables) <= k:
        _zero_tables.append(_shift(_zero_tables[-1]))
    return _zero_tables[k]


@lru_cache(maxsize=4096)
def _crc_of_zeros(length: int) -> int:
    """CRC-32C of `length` zero bytes (the affine part of every CRC of that length)."""
    state = 0xFFFFFFFF
    if length > 4 * _CHUNK:
        chunks, length = divmod(length, _CHUNK)
        shift = _chunk_shift_tables()
        for _ in range(chunks):
            state = _apply_shift(shift, state)
    table = _TABLE_LIST
    for _ in range(length):
        state = (state >> 8) ^ table[state & 0xFF]
    return state ^ 0xFFFFFFFF


@lru_cache(maxsize=1)
def _chunk_shift_tables() -> list[list[int]]:
    """For each byte of a 32-bit CRC state, its effect after `_CHUNK` zero bytes."""
    tables = []
    for byte in range(4):
        state = np.arange(256, dtype=np.uint32) << np.uint32(8 * byte)
        for _ in range(_CHUNK):
            state = _shift(state)
        tables.append([int(x) for x in state])
    return tables


def _apply_shift(tables: list[list[int]], state: int) -> int:
    return (
        tables[0][state & 0xFF]
        ^ tables[1][(state >> 8) & 0xFF]
        ^ tables[2][(state >> 16) & 0xFF]
        ^ tables[3][state >> 24]
    )


def crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-32C of each row of a uint8 matrix (n, L), as uint32, on the columns."""
    count, length = rows.shape
    if count == 0:
        return np.zeros(0, np.uint32)
    first = rows[0]
    if count > 1:
        varying = np.flatnonzero((rows != first).any(axis=0))
    else:
        varying = np.zeros(0, np.int64)
    # Columns equal in every row add the same to every CRC: from the first row, once.
    constant = np.uint32(0)
    mask = np.ones(length, bool)
    mask[varying] = False
    for column in np.flatnonzero(mask):
        constant ^= _zero_table(length - 1 - int(column))[first[column]]
    acc = np.full(count, constant ^ np.uint32(_crc_of_zeros(length)), np.uint32)
    for column in varying:
        acc ^= _zero_table(length - 1 - int(column))[rows[:, column]]
    return acc


def _crc32c_numpy(data: bytes | memoryview) -> int:
    length = len(data)
    if length == 0:
        return 0
    chunks = -(-length // _CHUNK)
    padded = np.zeros(chunks * _CHUNK, np.uint8)
    # Leading zeros add nothing to the linear part of a CRC: pad in front, to whole chunks.
    padded[chunks * _CHUNK - length :] = np.frombuffer(data, np.uint8)
    matrix = padded.reshape(chunks, _CHUNK)
    partial = np.zeros(chunks, np.uint32)
    for column in range(_CHUNK):
        partial ^= _zero_table(_CHUNK - 1 - column)[matrix[:, column]]
    shift = _chunk_shift_tables()
    state = 0
    for value in partial.tolist():
        state = _apply_shift(shift, state) ^ value
    return state ^ _crc_of_zeros(length)


def _load_crc32c() -> Any:
    try:
        import crc32c  # a C implementation: installed with the daemon, optional for the reader
    except ImportError:
        return None
    return crc32c.crc32c


_native_crc32c = _load_crc32c()


def crc32c_bytes(data: bytes | memoryview) -> int:
    """CRC-32C of one message."""
    if _native_crc32c is not None:
        return int(_native_crc32c(data))
    return _crc32c_numpy(data)


def masked(crc: Any) -> Any:
    """TFRecord's masked CRC: rotated right by 15 bits, plus a constant (ints or uint32 arrays)."""
    if isinstance(crc, np.ndarray):
        crc = crc.astype(np.uint32)
        return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_MASK_DELTA)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@lru_cache(maxsize=65536)
def _length_crc(length: int) -> int:
    return masked(crc32c_bytes(struct.pack("<Q", length)))


# -- framing --------------------------------------------------------------------------------------


@dataclass
class Framing:
    """The records of a file: where each starts and how long its data is, and how reading ended.

    `problem` is None when the file ends exactly after its last record; else "torn" (the file ends
    inside a record: a writer still writing, or cut short) or "bad length CRC" (framing lost), at
    byte `stop`.
    """

    starts: np.ndarray  # int64 offsets of each record's header
    lengths: np.ndarray  # int64 lengths of each record's data
    stop: int
    problem: str | None


def _strided(buf: bytes, offset: int, stride: int, count: int, dtype: str) -> np.ndarray:
    return np.ndarray((count,), dtype=dtype, buffer=buf, offset=offset, strides=(stride,))


def _repeats(buf: bytes, pos: int, lengths: list[int]) -> int:
    """How many times, from `pos`, the file holds records of exactly `lengths` in turn (their
    length CRCs correct), checked on stretches of growing size."""
    size = len(buf)
    stride = sum(lengths) + 16 * len(lengths)
    inner = np.cumsum([0] + [length + 16 for length in lengths[:-1]])
    total, rows = 0, _FIRST_STRETCH
    while True:
        count = min(rows, (size - pos) // stride)
        if count <= 0:
            return total
        ok = np.ones(count, bool)
        for at, length in zip(inner.tolist(), lengths):
            ok &= _strided(buf, pos + at, stride, count, "<u8") == length
            ok &= _strided(buf, pos + at + 8, stride, count, "<u4") == _length_crc(length)
        good = count if ok.all() else int(np.argmin(ok))
        total += good
        pos += good * stride
        if good < count:
            return total
        rows *= 2


def frame(buf: bytes) -> Framing:
    """Finds the records of an event file's bytes, up to the end or the first broken header."""
    size = len(buf)
    starts_parts: list[np.ndarray] = []
    length_parts: list[np.ndarray] = []
    pos = 0
    problem: str | None = None
    unpack = _HEADER.unpack_from
    while pos < size and problem is None:
        walked_starts: list[int] = []
        walked: list[int] = []
        period = 0
        while len(walked) < _WALK:
            if pos == size:
                break
            if pos + 12 > size:
                problem = "torn"
                break
            length, length_crc = unpack(buf, pos)
            if length_crc != _length_crc(length):
                problem = "bad length CRC"
                break
            if pos + 16 + length > size:
                problem = "torn"
                break
            walked_starts.append(pos)
            walked.append(length)
            pos += 16 + length
            count = len(walked)
            if count % 3 == 0:
                third = count // 3
                if (
                    walked[0] == walked[third] == walked[2 * third]  # cheap first, then the whole pattern
                    and walked[:third] == walked[third : 2 * third] == walked[2 * third :]
                ):
                    period = third
                    break
        if walked:
            starts_parts.append(np.array(walked_starts, np.int64))
            length_parts.append(np.array(walked, np.int64))
        if period and problem is None:
            pattern = walked[:period]
            repeats = _repeats(buf, pos, pattern)
            if repeats:
                stride = sum(pattern) + 16 * period
                inner = np.cumsum([0] + [length + 16 for length in pattern[:-1]]).astype(np.int64)
                offsets = pos + (np.arange(repeats, dtype=np.int64) * stride)[:, None] + inner[None, :]
                starts_parts.append(offsets.ravel())
                length_parts.append(np.tile(np.array(pattern, np.int64), repeats))
                pos += repeats * stride
    starts = np.concatenate(starts_parts) if starts_parts else np.zeros(0, np.int64)
    lengths = np.concatenate(length_parts) if length_parts else np.zeros(0, np.int64)
    return Framing(starts, lengths, pos, problem)


def stored_crcs(array: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The little-endian u32 at each offset `at` of the file's bytes."""
    window = np.lib.stride_tricks.sliding_window_view(array, 4)
    return np.ascontiguousarray(window[at]).view("<u4").ravel()


def length_groups(framing: Framing) -> list[tuple[np.ndarray, int]]:
    """The record indices of each distinct data length, in file order within each."""
    lengths = framing.lengths
    if lengths.size == 0:
        return []
    largest = int(lengths.max())
    if largest < 1 << 20:
        # A file has few distinct lengths: one pass per length beats sorting a million of them.
        present = np.flatnonzero(np.bincount(lengths, minlength=largest + 1))
        if present.size <= 32:
            return [(np.flatnonzero(lengths == length), int(length)) for length in present]
    order = np.argsort(lengths, kind="stable")
    cuts = np.flatnonzero(np.diff(lengths[order])) + 1
    return [(group, int(lengths[group[0]])) for group in np.split(order, cuts)]


def rows_of(array: np.ndarray, data_at: np.ndarray, length: int) -> np.ndarray | None:
    """The data of records of one `length` starting at `data_at`, as a uint8 matrix (one row each);
    None for records longer than `COLUMN_CRC_MAX_LENGTH` (read one by one)."""
    if length > COLUMN_CRC_MAX_LENGTH:
        return None
    if length == 0:
        return np.zeros((data_at.size, 0), np.uint8)
    return np.lib.stride_tricks.sliding_window_view(array, length)[data_at]


def check_group(array: np.ndarray, buf: bytes, data_at: np.ndarray, length: int, rows: np.ndarray | None) -> np.ndarray:
    """Whether each record of one `length` (data at `data_at`, as `rows` if given) matches its CRC."""
    expected = stored_crcs(array, data_at + length)
    if rows is not None and (data_at.size >= 8 or _native_crc32c is None):
        return masked(crc32c_rows(rows)) == expected
    view = memoryview(buf)
    computed = [masked(crc32c_bytes(view[at : at + length])) for at in data_at.tolist()]
    return np.array(computed, np.uint32) == expected
