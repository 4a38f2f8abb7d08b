"""The protocol between training processes and the daemon: the one module that defines it.

A message is a list of ZeroMQ frames:

* frame 0: fixed header ``magic(4s) version(u16) kind(u8) reserved(u8)``;
* frame 1: a msgpack map (the *header*);
* frames 2..: raw array buffers, described in ``header["arrays"]`` as ``[dtype, shape]`` pairs.
  An array described as ``[dtype, shape, offset]`` has no frame: its bytes lie at that offset in
  the sender's arena, shared memory the sender announced in its HELLO and the daemon mapped
  (WELCOME says so). The sender leaves them untouched until the message is acknowledged.

Records travel batched in ``header["records"]``; each is a list
``[kind, stream, run, tag, step, wall_time, value]`` with an optional eighth element, a map of
options. For array kinds ``value`` is the index of the array in ``header["arrays"]``.

Plain scalars, the bulk of all records, travel packed instead: an item of ``header["records"]``
that is a bin holds scalar rows of ``SCALAR_ROW`` (key, step, wall_time, value), one after the
other. A row's key names (stream, run, tag), as defined by an earlier KEY record of the same
client, ``[KEY, stream, run, tag, 0, 0.0, key]``. The client then packs no record at all: rows
are made at the call and joined into one bin per batch.

Compatibility rules: fields are only ever added, with defaults; kind codes never change.
Nothing here ever unpickles: msgpack and raw buffers only.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack
import numpy as np

MAGIC = b"TBLG"
PROTOCOL_VERSION = 2
_FIXED = struct.Struct("<4sHBB")

#: Largest message the daemon accepts, all frames together.
MAX_MESSAGE_BYTES = 1 << 30
#: Most records in one message and most arrays in one message.
MAX_RECORDS_PER_MESSAGE = 1 << 20
MAX_ARRAYS_PER_MESSAGE = 4096
#: Most scalar keys (stream, run, tag) one client may define; past it, scalars travel as lists.
MAX_SCALAR_KEYS = 1 << 16
#: One packed plain scalar: key (u32), step (i64), wall time (f64), value (f64), little-endian.
SCALAR_ROW = struct.Struct("<Iqdd")
#: The same row as a numpy record, to read a bin of rows as columns.
SCALAR_ROW_DTYPE = np.dtype([("key", "<u4"), ("step", "<i8"), ("wall_time", "<f8"), ("value", "<f8")])
#: Longest tag or run name, in characters.
MAX_NAME_CHARS = 4096
#: Array element types that may cross the wire (no object, no void, no pointers).
ALLOWED_DTYPES = frozenset(
    ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16", "float32", "float64"]
)
#: The wire name of each allowed native dtype: a dict lookup, where numpy 2's `dtype.name` runs
#: Python code (several calls per array, with the GIL held, on a training process's I/O thread).
_WIRE_NAMES = {np.dtype(name): name for name in ALLOWED_DTYPES}


class MessageKind(IntEnum):
    """What a message is; the code in the fixed header."""

    HELLO = 1  # client -> daemon: {cid, pid, host, arena: {pid, fd, size} (optional)}
    WELCOME = 2  # daemon -> client: {daemon_pid, arena: whether it mapped the client's arena}
    RECORDS = 3  # client -> daemon: {cid, seq, records, arrays}
    FLUSH = 4  # client -> daemon: {cid, seq}; acknowledged once written and fsynced
    ACK = 5  # daemon -> client: {acked}: every seq up to it is written
    BYE = 6  # client -> daemon: {cid}
    HEARTBEAT = 7  # client -> daemon: {cid}
    STATUS = 8  # anyone -> daemon: {}
    STATUS_REPLY = 9  # daemon -> asker: the status map
    STOP = 10  # anyone -> daemon: write everything, then exit
    STOP_REPLY = 11
    REFUSED = 12  # daemon -> client: {reason, detail}


class RecordKind(IntEnum):
    """What a record asks the daemon to write."""

    OPEN = 1  # value: {logdir, purge_step, filename_suffix, flush_secs}
    CLOSE = 2  # the stream's writer is closed
    SCALAR = 3  # value: float
    HISTOGRAM = 4  # value: array index; options: bins, max_bins
    IMAGE = 5  # value: array index; options: dataformats
    IMAGES = 6  # value: array index; options: dataformats
    TEXT = 7  # value: str
    KEY = 8  # value: the key (< MAX_SCALAR_KEYS) that packed scalar rows use for (stream, run, tag)


ARRAY_KINDS = frozenset([RecordKind.HISTOGRAM, RecordKind.IMAGE, RecordKind.IMAGES])
#: Codes of the records the daemon handles that are not data (not counted as written or lost).
CONTROL_KIND_CODES = frozenset([RecordKind.OPEN.value, RecordKind.CLOSE.value, RecordKind.KEY.value])


class ProtocolError(ValueError):
    """A message that does not follow this protocol; `reason` is the counter it is filed under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Message:
    """A decoded message: its kind, its msgpack header, and its arrays (views on the frames)."""

    kind: MessageKind
    header: dict[str, Any]
    arrays: list[np.ndarray]


def encode(
    kind: MessageKind, header: dict[str, Any], arrays: Sequence[np.ndarray] = (), offsets: Sequence[int | None] = ()
) -> list[Any]:
    """Frames for a message; arrays are passed through as buffers, not copied. An array whose
    entry in `offsets` is not None is described by its offset in the sender's shared arena
    instead, and gets no frame."""
    frames: list[Any] = [_FIXED.pack(MAGIC, PROTOCOL_VERSION, int(kind), 0)]
    in_frames = []
    if arrays:
        descriptions = []
        for array, offset in itertools.zip_longest(arrays, offsets[: len(arrays)]):
            description = [_WIRE_NAMES.get(array.dtype) or array.dtype.name, list(array.shape)]
            if offset is None:
                in_frames.append(array)
            else:
                description.append(offset)
            descriptions.append(description)
        header["arrays"] = descriptions
    frames.append(msgpack.packb(header, use_bin_type=True))
    frames.extend(in_frames)
    return frames


def pack_records(records: list) -> tuple[bytes, int]:
    """A batch of records as msgpack, ready for `encode_packed_records`, and how many of them are
    control records (OPEN, CLOSE, KEY: handled by the daemon, not data).

    Scalar rows (bytes) may stand among the records; a batch of nothing else, the common case,
    becomes one bin of rows, joined in C."""
    try:
        return msgpack.packb([b"".join(records)], use_bin_type=True), 0
    except TypeError:  # not all rows
        joined = join_rows(records)
        controls = sum(1 for record in joined if type(record) is tuple and record[KIND] in CONTROL_KIND_CODES)
        return msgpack.packb(joined, use_bin_type=True), controls


def row_runs(items: list) -> Iterator[tuple[int, int, Any]]:
    """Splits a client's queued items, scalar rows (bytes) and records (tuples), into runs of rows:
    yields (start, stop, record) where items[start:stop] are rows and `record` is the tuple that
    follows them, or None after the last run.

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


def join_rows(records: list) -> list:
    """`records` with each run of scalar rows (bytes) joined into one bin, in place of the rows:
    the daemon reads a bin as columns, so one bin per row would cost it a numpy call per row."""
    items: list = []
    for start, stop, record in row_runs(records):
        if stop > start:
            items.append(b"".join(records[start:stop]))
        if record is not None:
            items.append(record)
    return items


def encode_packed_records(cid: bytes, seq: int, packed_records: bytes) -> list[Any]:
    """Frames of a RECORDS message whose records were packed already (by `pack_records`).

    A msgpack map is its entries one after the other, so the header is put together from
    packed pieces: the same bytes as `encode(RECORDS, {"cid", "seq", "records"})`.
    """
    header = b"".join(
        (
            b"\x83",
            msgpack.packb("cid"),
            msgpack.packb(cid, use_bin_type=True),
            msgpack.packb("seq"),
            msgpack.packb(seq),
            msgpack.packb("records"),
            packed_records,
        )
    )
    return [_FIXED.pack(MAGIC, PROTOCOL_VERSION, int(MessageKind.RECORDS), 0), header]


def _buffer_length(frame: Any) -> int:
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)


def decode(frames: Sequence[Any], arena: Any = None) -> Message:
    """Checks and decodes frames (bytes, memoryviews or zmq Frames). Raises ProtocolError.

    `arena`: the sender's shared arena (a buffer), where arrays described by an offset lie."""
    if len(frames) < 2:
        raise ProtocolError("malformed_message", f"{len(frames)} frame(s), at least 2 expected")
    fixed = bytes(frames[0].buffer if hasattr(frames[0], "buffer") else frames[0])
    if len(fixed) != _FIXED.size:
        raise ProtocolError("malformed_message", f"fixed header of {len(fixed)} bytes, {_FIXED.size} expected")
    magic, version, kind, _ = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise ProtocolError("malformed_message", f"bad magic {magic!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "version_mismatch",
            f"peer speaks protocol version {version}, this side speaks version {PROTOCOL_VERSION}",
        )
    try:
        kind = MessageKind(kind)
    except ValueError:
        raise ProtocolError("malformed_message", f"unknown message kind {kind}") from None
    buffers = [f.buffer if hasattr(f, "buffer") else memoryview(f) for f in frames[1:]]
    total = sum(_buffer_length(b) for b in buffers) + _FIXED.size
    if total > MAX_MESSAGE_BYTES:
        raise ProtocolError("message_too_large", f"{total} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        header = msgpack.unpackb(
            buffers[0],
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_array_len=MAX_RECORDS_PER_MESSAGE,
            max_map_len=1 << 16,
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ProtocolError("malformed_message", f"header is not msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("malformed_message", "header is not a map")
    arrays = _decode_arrays(header.get("arrays", []), buffers[1:], arena)
    return Message(kind, header, arrays)


def _decode_arrays(descriptions: Any, buffers: Sequence[memoryview], arena: Any) -> list[np.ndarray]:
    if not isinstance(descriptions, list) or len(descriptions) > MAX_ARRAYS_PER_MESSAGE:
        raise ProtocolError(
            "malformed_message", f"array descriptions are not a list of at most {MAX_ARRAYS_PER_MESSAGE}"
        )
    if sum(1 for d in descriptions if not (isinstance(d, list) and len(d) == 3)) != len(buffers):
        raise ProtocolError("malformed_message", "array descriptions do not match the frames")
    arrays = []
    frames = iter(buffers)
    for index, description in enumerate(descriptions):
        if not (isinstance(description, list) and len(description) in (2, 3)):
            raise ProtocolError("malformed_message", f"array {index}: description is not [dtype, shape(, offset)]")
        dtype_name, shape = description[0], description[1]
        if dtype_name not in ALLOWED_DTYPES:
            raise ProtocolError("bad_array", f"array {index}: dtype {dtype_name!r} is not allowed")
        if not (
            isinstance(shape, list) and len(shape) <= 32 and all(type(n) is int and 0 <= n < 1 << 40 for n in shape)
        ):
            raise ProtocolError("bad_array", f"array {index}: bad shape {shape!r}")
        dtype = np.dtype(dtype_name)
        expected = math.prod(shape) * dtype.itemsize  # Python ints: no wrap-around
        if len(description) == 3:
            buffer = _in_arena(arena, description[2], expected, dtype.itemsize, index)
        else:
            buffer = next(frames)
            if expected != _buffer_length(buffer):
                raise ProtocolError(
                    "bad_array",
                    f"array {index}: shape {shape} of {dtype_name} needs {expected} bytes, "
                    f"frame has {_buffer_length(buffer)}",
                )
        arrays.append(np.frombuffer(buffer, dtype=dtype).reshape(shape))
    return arrays


def _in_arena(arena: Any, offset: Any, nbytes: int, itemsize: int, index: int) -> memoryview:
    """The `nbytes` at `offset` of the sender's arena, checked to lie inside it."""
    if arena is None:
        raise ProtocolError("bad_array", f"array {index}: in a shared arena, but the sender has none mapped")
    size = _buffer_length(arena)
    if type(offset) is not int or not 0 <= offset <= size - nbytes or offset % itemsize:
        raise ProtocolError(
            "bad_array",
            f"array {index}: {nbytes} bytes at offset {offset!r} do not fit the "
            f"arena of {size} bytes (or are misaligned)",
        )
    return memoryview(arena).cast("B")[offset : offset + nbytes]


#: A record is the list msgpack decoded, checked in place: cheaper than an object per record.
Record = list
#: Positions of a record's fields.
KIND, STREAM, RUN, TAG, STEP, WALL_TIME, VALUE, OPTIONS = range(8)

_NO_OPTIONS: dict[str, Any] = {}
_VALUE_TYPES: dict[int, tuple[type, ...]] = {
    RecordKind.OPEN.value: (dict,),
    RecordKind.CLOSE.value: (type(None),),
    RecordKind.SCALAR.value: (float, int),
    RecordKind.HISTOGRAM.value: (int,),
    RecordKind.IMAGE.value: (int,),
    RecordKind.IMAGES.value: (int,),
    RecordKind.TEXT.value: (str,),
    RecordKind.KEY.value: (int,),
}
_ARRAY_KIND_CODES = frozenset(kind.value for kind in ARRAY_KINDS)
_KEY = RecordKind.KEY.value
_INT64 = 1 << 63


def check_record(raw: Any, array_count: int) -> Record:
    """Checks one raw record of a RECORDS message and returns it; raises ProtocolError("malformed_record").

    Runs once per record in the daemon, so it uses plain type tests (no Enum calls, no new object).
    """
    if type(raw) is not list or not 7 <= len(raw) <= 8:
        raise ProtocolError("malformed_record", "a record is a list of 7 or 8 items")
    kind, stream, run, tag, step, wall_time, value = raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6]
    value_types = _VALUE_TYPES.get(kind) if type(kind) is int else None
    if value_types is None:
        raise ProtocolError("malformed_record", f"unknown record kind {kind!r}")
    if type(stream) is not int or type(step) is not int or not -_INT64 <= step < _INT64:
        raise ProtocolError("malformed_record", "stream and step must be 64-bit ints")
    if type(run) is not str or type(tag) is not str or len(run) > MAX_NAME_CHARS or len(tag) > MAX_NAME_CHARS:
        raise ProtocolError("malformed_record", f"run and tag must be str of at most {MAX_NAME_CHARS} chars")
    if type(wall_time) is not float and type(wall_time) is not int:
        raise ProtocolError("malformed_record", "wall_time must be a number")
    if type(value) not in value_types:
        raise ProtocolError("malformed_record", f"{RecordKind(kind).name} record with a {type(value).__name__} value")
    if kind in _ARRAY_KIND_CODES and not 0 <= value < array_count:
        raise ProtocolError("malformed_record", f"array index {value} out of range")
    if kind == _KEY and not 0 <= value < MAX_SCALAR_KEYS:
        raise ProtocolError("malformed_record", f"scalar key {value} out of range")
    if len(raw) == 8 and type(raw[7]) is not dict:
        raise ProtocolError("malformed_record", "options must be a map")
    return raw


def record_options(record: Record) -> dict[str, Any]:
    """The options map of a checked record (empty when it has none)."""
    return record[OPTIONS] if len(record) > OPTIONS else _NO_OPTIONS
