"""TFRecord framing, the container of event files: pure functions, and reading a file's first records.

A record is ``u64le length | u32le masked_crc(length) | data | u32le masked_crc(data)`` where the
CRC is CRC-32C, masked so that a CRC of bytes that themselves hold CRCs stays well distributed.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import BinaryIO

import crc32c
import numpy as np

try:
    from logger_daemon import _crc as _native
except ImportError:  # built without a C compiler: crc32c row by row
    _native = None  # type: ignore[assignment]

_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def masked_crc32c(data: bytes) -> int:
    """CRC-32C of `data`, rotated right by 15 bits and offset, as TFRecord stores it."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@lru_cache(maxsize=4096)
def _length_header(length: int) -> bytes:
    # Records of one tag mostly share a length: the header and its CRC are computed once.
    header = _LENGTH.pack(length)
    return header + _CRC.pack(masked_crc32c(header))


def frame(data: bytes) -> bytes:
    """One TFRecord holding `data`."""
    return _length_header(len(data)) + data + _CRC.pack(masked_crc32c(data))


def read_records(blob: bytes) -> list[bytes]:
    """The payloads of the complete, valid records at the start of `blob` (stops at the first bad one)."""
    records, offset = [], 0
    while offset + 12 <= len(blob):
        header = blob[offset : offset + 8]
        (length,) = _LENGTH.unpack(header)
        (header_crc,) = _CRC.unpack_from(blob, offset + 8)
        end = offset + 12 + length + 4
        if header_crc != masked_crc32c(header) or end > len(blob):
            break
        data = blob[offset + 12 : end - 4]
        if _CRC.unpack_from(blob, end - 4)[0] != masked_crc32c(data):
            break
        records.append(data)
        offset = end
    return records


def read_head_records(file: BinaryIO, count: int) -> list[bytes]:
    """The payloads of the first `count` records of `file` (fewer where it ends or a record is
    bad), read one by one: the rest of the file is never read."""
    records: list[bytes] = []
    while len(records) < count:
        header = file.read(12)
        if len(header) < 12:
            break
        (length,) = _LENGTH.unpack_from(header)
        if _CRC.unpack_from(header, 8)[0] != masked_crc32c(header[:8]):
            break
        rest = file.read(length + 4)
        valid = read_records(header + rest)
        if not valid:
            break
        records.append(valid[0])
    return records


def frame_rows(rows: np.ndarray) -> bytes:
    """TFRecords of equal-length payloads, one per row of `rows` (uint8, shape (n, length)).

    The scalar fast path: one CRC call per row, everything else done on whole columns.
    """
    count, length = rows.shape
    out = np.empty((count, length + 16), np.uint8)
    out[:, :12] = np.frombuffer(_length_header(length), np.uint8)
    out[:, 12 : 12 + length] = rows
    if _native is not None:
        masked = np.empty(count, np.uint32)
        _native.crc_rows(np.ascontiguousarray(rows), length, masked)
    else:
        blob = memoryview(rows.tobytes())
        crcs = np.fromiter(
            map(crc32c.crc32c, (blob[i : i + length] for i in range(0, count * length, length))), np.uint64, count
        )
        masked = (((crcs >> np.uint64(15)) | (crcs << np.uint64(17))) + np.uint64(_MASK_DELTA)) & np.uint64(0xFFFFFFFF)
    out[:, 12 + length :] = masked.astype("<u4").view(np.uint8).reshape(count, 4)
    return out.tobytes()
