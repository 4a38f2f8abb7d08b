"""The protocol between training processes and the daemon: the one module that defines it.

A message is a list of ZeroMQ frames:

* frame 0: fixed header ``magic(4s) version(u16) kind(u8) reserved(u8)``;
* frame 1: a msgpack map (the *header*);
* frames 2..: raw array buffers, described in ``header["arrays"]`` as ``[dtype, shape]`` pairs.
  An array described as ``[dtype, shape, offset]`` has no frame: its bytes lie at that offset in
  the sender's arena, shared memory the sender announced in its HELLO and the daemon mapped
  (WELCOME says so). The sender leaves them untouched until the message is acknowledged.

Records travel batched in ``header["records"]``; each is a list whose fields sit at the positions
`KIND`, `WRITER`, `RUN`, `TAG`, `STEP`, `WALL_TIME`, `VALUE` and, optionally, `OPTIONS` (a map).
`WRITER` is the id the client gave the SummaryWriter in its OPEN record. For array kinds the
value is the index of the array in ``header["arrays"]``.

Plain scalars, the bulk of all records, travel packed instead: an item of ``header["records"]``
that is a bin holds `SCALAR_ROW` rows (key, step, wall_time, value), one after the other. A row's
key names (writer, run, tag), as defined by an earlier KEY record of the same client,
``[KEY, writer, run, tag, 0, 0.0, key]``.

Sequence numbers (`seq`) count one connection's messages: the daemon acknowledges every seq up to
the one it names, once written. A RECORDS message also carries its message id (`mid`), numbered
by the client once and kept when the message is sent again to a new daemon, so that a daemon can
tell a record it (or the daemon before it) already wrote. A daemon that does not know a client
(it restarted) refuses its messages with reason `UNKNOWN_CLIENT`; the client then says HELLO
again and resends everything not acknowledged.

Compatibility rules: fields are only ever added, with defaults; kind codes never change.
Nothing here ever unpickles: msgpack and raw buffers only. docs/design.md describes the flow.
"""

from __future__ import annotations

import itertools
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

import msgpack
import numpy as np

__all__ = [
    "ALLOWED_DTYPES",
    "ARRAY_KINDS",
    "ARRAY_MAP_KINDS",
    "CONTROL_KINDS",
    "INT64_MAX",
    "INT64_MIN",
    "KIND",
    "MAGIC",
    "MAX_ARRAYS_PER_MESSAGE",
    "MAX_ARRAYS_PER_RECORD",
    "MAX_ARRAY_DIMS",
    "MAX_ARRAY_DIM_SIZE",
    "MAX_HEADER_CONTAINERS",
    "MAX_HEADER_MAP_ENTRIES",
    "MAX_MESSAGE_BYTES",
    "MAX_NAME_CHARS",
    "MAX_RECORDS_PER_MESSAGE",
    "MAX_SCALAR_KEYS",
    "OPTIONS",
    "PROTOCOL_VERSION",
    "RUN",
    "SCALAR_ROW",
    "SCALAR_ROW_DTYPE",
    "STEP",
    "TAG",
    "UNKNOWN_CLIENT",
    "VALUE",
    "WALL_TIME",
    "WRITER",
    "DropReason",
    "Message",
    "MessageKind",
    "ProtocolError",
    "Record",
    "RecordKind",
    "check_record",
    "decode",
    "encode",
    "encode_packed_records",
    "is_url_logdir",
    "record_count",
    "record_options",
]

MAGIC = b"TBLG"
PROTOCOL_VERSION = 2
_FIXED = struct.Struct("<4sHBB")

# -- limits ----------------------------------------------------------------------------------------

#: Largest message the daemon accepts, all frames together.
MAX_MESSAGE_BYTES = 1 << 30
#: Most records in one message.
MAX_RECORDS_PER_MESSAGE = 1 << 20
#: Most arrays in one message.
MAX_ARRAYS_PER_MESSAGE = 4096
#: Most entries of a msgpack map in a header.
MAX_HEADER_MAP_ENTRIES = 1 << 16
#: Most lists and maps, nested or not, in a header of more than `_COUNTED_HEADER_BYTES`: each
#: costs tens of bytes decoded for one byte on the wire (a header of empty lists is a bomb).
MAX_HEADER_CONTAINERS = 2 * (1 << 20)
_COUNTED_HEADER_BYTES = 4 << 20
#: Most dimensions of an array, and the largest size of one.
MAX_ARRAY_DIMS = 32
MAX_ARRAY_DIM_SIZE = 1 << 40
#: Most scalar keys (writer, run, tag) one client may define; past it, scalars travel as records.
MAX_SCALAR_KEYS = 1 << 16
#: Longest tag or run name, in characters.
MAX_NAME_CHARS = 4096
#: Most arrays one record carries (a value that maps roles to arrays).
MAX_ARRAYS_PER_RECORD = 8
#: Steps are int64, as TensorBoard's Event.step.
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
#: An OPEN's `logdir` that starts so (`s3://`, `gs://`, ...; a scheme of two or more characters)
#: is a remote log directory, an fsspec URL; any other is a local path.
_URL_LOGDIR = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]+://")


def is_url_logdir(logdir: str) -> bool:
    """Whether `logdir` names a remote log directory (an fsspec URL) rather than a local path."""
    return _URL_LOGDIR.match(logdir) is not None


#: One packed plain scalar: key (u32), step (i64), wall time (f64), value (f64), little-endian.
#: `_speedups.c` packs the same layout (a test compares the two).
SCALAR_ROW = struct.Struct("<Iqdd")
#: The same row as a numpy record, to read a bin of rows as columns.
SCALAR_ROW_DTYPE = np.dtype([("key", "<u4"), ("step", "<i8"), ("wall_time", "<f8"), ("value", "<f8")])
#: Array element types that may cross the wire (no object, no void, no pointers).
ALLOWED_DTYPES = frozenset(
    ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16", "float32", "float64"]
)
#: The wire name of each allowed native dtype, by dict lookup: numpy 2's `dtype.name` runs Python
#: code, which the client's I/O thread would pay per array with the GIL held.
_WIRE_NAMES = {np.dtype(name): name for name in ALLOWED_DTYPES}


class MessageKind(IntEnum):
    """What a message is; the code in the fixed header."""

    HELLO = 1  # client -> daemon: {cid, pid, host, arena: {pid, fd, size} (optional)}
    WELCOME = 2  # daemon -> client: {daemon_pid, arena: whether it mapped the client's arena}
    RECORDS = 3  # client -> daemon: {cid, seq, mid, records, arrays}
    FLUSH = 4  # client -> daemon: {cid, seq}; acknowledged once written and fsynced
    ACK = 5  # daemon -> client: {acked, dropped, uploads?, not_uploaded?}: every seq up to `acked` is written
    BYE = 6  # client -> daemon: {cid}
    HEARTBEAT = 7  # client -> daemon: {cid}
    STATUS = 8  # anyone -> daemon: {}
    STATUS_REPLY = 9  # daemon -> asker: the status map
    STOP = 10  # anyone -> daemon: write everything, then exit
    STOP_REPLY = 11
    REFUSED = 12  # daemon -> client: {reason, detail}; reason UNKNOWN_CLIENT: say HELLO, then resend


class RecordKind(IntEnum):
    """What a record asks the daemon to do."""

    OPEN = 1  # value: {logdir, purge_step, filename_suffix, flush_secs, announced (an existing writer, again),
    # storage_options (fsspec's, for a URL logdir)}
    CLOSE = 2  # the writer is closed
    SCALAR = 3  # value: float
    HISTOGRAM = 4  # value: array index; options: bins, max_bins
    IMAGE = 5  # value: array index; options: dataformats
    IMAGES = 6  # value: array index; options: dataformats
    TEXT = 7  # value: str
    KEY = 8  # value: the key (< MAX_SCALAR_KEYS) that packed scalar rows use for (writer, run, tag)
    HISTOGRAM_RAW = 9  # value: {bucket_limits, bucket_counts}; options: min, max, num, sum, sum_squares
    IMAGE_WITH_BOXES = 10  # value: {image, boxes}; options: dataformats, labels, rescale
    AUDIO = 11  # value: array of samples; options: sample_rate
    VIDEO = 12  # value: array of frames; options: fps, dataformats
    TENSOR = 13  # value: array
    PR_CURVE = 14  # value: {labels, predictions, (weights)}; options: num_thresholds
    PR_CURVE_RAW = 15  # value: {true_positive_counts, ..., recall} or add_curve's {x, y}; options: num_thresholds|label
    MESH = 16  # value: {vertices, (colors), (faces)}; options: json_config (config_dict as JSON)
    EMBEDDING = 17  # value: {mat, (label_img)}; options: tag, global_step, metadata, metadata_header
    HPARAMS = 18  # value: {hparams: [[name, type, value, domain]], metrics: [tag]}; run: the session
    CUSTOM_SCALARS = 19  # value: the layout map
    GRAPH = 20  # value: a plain description of the graph: {nodes, versions, run_metadata}
    ONNX_GRAPH = 21  # value: the model file's bytes
    # node daemon -> root daemon: values of several ranks combined so far (logger_daemon.reduce)
    # 22: retired (one partial scalar a record); PARTIAL_SCALARS carries them as columns
    PARTIAL_HISTOGRAM = 23  # value: {counts, edges} or {values}; options: bins, max_bins, min, max, num, sum, ...
    # value: partial scalars as columns, one entry per step {step, wall, count, sum, min, max}
    # (sum: an exact sum's first part) and its further parts {extra_of: entry, extra};
    # step: the first entry's; options: reduce
    PARTIAL_SCALARS = 24


#: Kinds whose value is one array (its index among the message's arrays).
ARRAY_KINDS = frozenset(
    [RecordKind.HISTOGRAM, RecordKind.IMAGE, RecordKind.IMAGES, RecordKind.AUDIO, RecordKind.VIDEO, RecordKind.TENSOR]
)
#: Kinds whose value maps each role to an array (its index among the message's arrays).
ARRAY_MAP_KINDS = frozenset(
    [
        RecordKind.HISTOGRAM_RAW,
        RecordKind.IMAGE_WITH_BOXES,
        RecordKind.PR_CURVE,
        RecordKind.PR_CURVE_RAW,
        RecordKind.MESH,
        RecordKind.EMBEDDING,
        RecordKind.PARTIAL_HISTOGRAM,
        RecordKind.PARTIAL_SCALARS,
    ]
)
#: Kinds that are not data: the daemon acts on them, and they are never counted written or lost.
CONTROL_KINDS = frozenset([RecordKind.OPEN, RecordKind.CLOSE, RecordKind.KEY])

#: Positions of a record's fields.
KIND, WRITER, RUN, TAG, STEP, WALL_TIME, VALUE, OPTIONS = range(8)
#: A record is the list msgpack decoded, checked in place: cheaper than an object per record.
Record = list


class DropReason(str, Enum):
    """Why a record was not written. Every loss is counted under one of these, by whoever saw it:
    the daemon (`logger-daemon status`) or the client (`SummaryWriter.stats()`, which also shows
    what the daemon refused of its records)."""

    #: Frames that are not a message of this protocol (bad magic, not msgpack, wrong shape).
    MALFORMED_MESSAGE = "malformed_message"
    #: A record whose fields have the wrong types or ranges.
    MALFORMED_RECORD = "malformed_record"
    #: An array whose dtype, shape or bytes do not match its description.
    BAD_ARRAY = "bad_array"
    #: A peer speaking another protocol version.
    VERSION_MISMATCH = "version_mismatch"
    #: A message larger than `MAX_MESSAGE_BYTES`; client side: an array that would go as a frame
    #: larger than the daemon takes (its WELCOME says how large).
    MESSAGE_TOO_LARGE = "message_too_large"
    #: A record of a writer the daemon does not know (never opened, or refused at open).
    UNKNOWN_WRITER = "unknown_writer"
    #: A packed scalar row whose key its client never defined.
    UNKNOWN_SCALAR_KEY = "unknown_scalar_key"
    #: A writer whose log directory or file name suffix the daemon refuses or cannot create.
    BAD_LOGDIR = "bad_logdir"
    #: A run name that would leave its log directory.
    BAD_RUN_NAME = "bad_run_name"
    #: A step older than one already written for the same (run, tag).
    STEP_OUT_OF_ORDER = "step_out_of_order"
    #: A value its summary function refuses.
    ENCODE_ERROR = "encode_error"
    #: An event file that cannot be created or written.
    IO_ERROR = "io_error"
    #: A write cycle that failed on a bug in the daemon.
    INTERNAL_ERROR = "internal_error"
    #: Client side: an array beyond the client's array-byte bound.
    CLIENT_BUFFER_FULL = "client_buffer_full"
    #: Client side: a record beyond the client's record bound.
    CLIENT_QUEUE_FULL = "client_queue_full"
    #: Client side: records the daemon never confirmed written.
    DAEMON_UNREACHABLE = "daemon_unreachable"
    #: Client side: a record the wire cannot carry (a value msgpack refuses).
    UNENCODABLE = "unencodable"
    #: A rank's value for a step that was written without it, after the bounded wait for ranks.
    RANK_LATE = "rank_late"


#: REFUSED's reason when the daemon does not know the client: HELLO, then resend (nothing is lost).
UNKNOWN_CLIENT = "unknown_client"


class ProtocolError(ValueError):
    """A message or record that does not follow this protocol, and the reason it is counted under."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Message:
    """A decoded message: its kind, its msgpack header, and its arrays (views on the frames)."""

    kind: MessageKind
    header: dict[str, Any]
    arrays: list[np.ndarray]


# -- encoding --------------------------------------------------------------------------------------


def _fixed_header(kind: MessageKind) -> bytes:
    return _FIXED.pack(MAGIC, PROTOCOL_VERSION, int(kind), 0)


def encode(
    kind: MessageKind, header: dict[str, Any], arrays: Sequence[np.ndarray] = (), offsets: Sequence[int | None] = ()
) -> list[Any]:
    """Frames for a message; arrays are passed through as buffers, not copied. An array whose
    entry in `offsets` is not None is described by its offset in the sender's shared arena
    instead, and gets no frame."""
    frames: list[Any] = [_fixed_header(kind)]
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


def encode_packed_records(cid: bytes, seq: int, mid: int, packed_records: bytes) -> list[Any]:
    """Frames of a RECORDS message whose records list is already msgpack (`packed_records`).

    A msgpack map is its entries one after the other, so the header is put together from
    packed pieces: the same bytes as `encode(RECORDS, {"cid", "seq", "mid", "records"})`.
    """
    header = b"".join(
        (
            b"\x84",
            msgpack.packb("cid"),
            msgpack.packb(cid, use_bin_type=True),
            msgpack.packb("seq"),
            msgpack.packb(seq),
            msgpack.packb("mid"),
            msgpack.packb(mid),
            msgpack.packb("records"),
            packed_records,
        )
    )
    return [_fixed_header(MessageKind.RECORDS), header]


# -- decoding --------------------------------------------------------------------------------------


def _buffer_length(frame: Any) -> int:
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)


def decode(frames: Sequence[Any], arena: Any = None) -> Message:
    """Checks and decodes frames (bytes, memoryviews or zmq Frames). Raises ProtocolError.

    `arena`: the sender's shared arena (a buffer), where arrays described by an offset lie."""
    if len(frames) < 2:
        raise ProtocolError(DropReason.MALFORMED_MESSAGE, f"{len(frames)} frame(s), at least 2 expected")
    fixed = bytes(frames[0].buffer if hasattr(frames[0], "buffer") else frames[0])
    if len(fixed) != _FIXED.size:
        raise ProtocolError(DropReason.MALFORMED_MESSAGE, f"fixed header of {len(fixed)} bytes, {_FIXED.size} expected")
    magic, version, code, _ = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise ProtocolError(DropReason.MALFORMED_MESSAGE, f"bad magic {magic!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            DropReason.VERSION_MISMATCH,
            f"peer speaks protocol version {version}, this side speaks version {PROTOCOL_VERSION}",
        )
    try:
        kind = MessageKind(code)
    except ValueError:
        raise ProtocolError(DropReason.MALFORMED_MESSAGE, f"unknown message kind {code}") from None
    buffers = [f.buffer if hasattr(f, "buffer") else memoryview(f) for f in frames[1:]]
    total = sum(_buffer_length(b) for b in buffers) + _FIXED.size
    if total > MAX_MESSAGE_BYTES:
        raise ProtocolError(DropReason.MESSAGE_TOO_LARGE, f"{total} bytes, limit {MAX_MESSAGE_BYTES}")
    # A header too small to hold many containers is decoded without counting them (it is cheaper).
    counted: dict[str, Any] = {}
    if _buffer_length(buffers[0]) > _COUNTED_HEADER_BYTES:
        budget = _ContainerBudget()
        counted = {"list_hook": budget.take, "object_hook": budget.take}
    try:
        header = msgpack.unpackb(
            buffers[0],
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_array_len=MAX_RECORDS_PER_MESSAGE,
            max_map_len=MAX_HEADER_MAP_ENTRIES,
            **counted,
        )
    except _TooManyContainers:
        raise ProtocolError(
            DropReason.MESSAGE_TOO_LARGE, f"header holds more than {MAX_HEADER_CONTAINERS} lists and maps"
        ) from None
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ProtocolError(DropReason.MALFORMED_MESSAGE, f"header is not msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(DropReason.MALFORMED_MESSAGE, "header is not a map")
    arrays = _decode_arrays(header.get("arrays", []), buffers[1:], arena)
    return Message(kind, header, arrays)


class _TooManyContainers(Exception):
    pass


class _ContainerBudget:
    """Counts the lists and maps msgpack decodes, and stops it past `MAX_HEADER_CONTAINERS`."""

    def __init__(self) -> None:
        self.left = MAX_HEADER_CONTAINERS

    def take(self, container: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise _TooManyContainers
        return container


def _decode_arrays(descriptions: Any, buffers: Sequence[memoryview], arena: Any) -> list[np.ndarray]:
    if not isinstance(descriptions, list) or len(descriptions) > MAX_ARRAYS_PER_MESSAGE:
        raise ProtocolError(
            DropReason.MALFORMED_MESSAGE, f"array descriptions are not a list of at most {MAX_ARRAYS_PER_MESSAGE}"
        )
    if sum(1 for d in descriptions if not (isinstance(d, list) and len(d) == 3)) != len(buffers):
        raise ProtocolError(DropReason.MALFORMED_MESSAGE, "array descriptions do not match the frames")
    arrays = []
    frames = iter(buffers)
    for index, description in enumerate(descriptions):
        if not (isinstance(description, list) and len(description) in (2, 3)):
            raise ProtocolError(
                DropReason.MALFORMED_MESSAGE, f"array {index}: description is not [dtype, shape(, offset)]"
            )
        dtype_name, shape = description[0], description[1]
        if dtype_name not in ALLOWED_DTYPES:
            raise ProtocolError(DropReason.BAD_ARRAY, f"array {index}: dtype {dtype_name!r} is not allowed")
        if not (
            isinstance(shape, list)
            and len(shape) <= MAX_ARRAY_DIMS
            and all(type(n) is int and 0 <= n < MAX_ARRAY_DIM_SIZE for n in shape)
        ):
            raise ProtocolError(DropReason.BAD_ARRAY, f"array {index}: bad shape {shape!r}")
        dtype = np.dtype(dtype_name)
        expected = math.prod(shape) * dtype.itemsize  # Python ints: no wrap-around
        if len(description) == 3:
            buffer = _in_arena(arena, description[2], expected, dtype.itemsize, index)
        else:
            buffer = next(frames)
            if expected != _buffer_length(buffer):
                raise ProtocolError(
                    DropReason.BAD_ARRAY,
                    f"array {index}: shape {shape} of {dtype_name} needs {expected} bytes, "
                    f"frame has {_buffer_length(buffer)}",
                )
        arrays.append(np.frombuffer(buffer, dtype=dtype).reshape(shape))
    return arrays


def _in_arena(arena: Any, offset: Any, nbytes: int, itemsize: int, index: int) -> memoryview:
    """The `nbytes` at `offset` of the sender's arena, checked to lie inside it."""
    if arena is None:
        raise ProtocolError(DropReason.BAD_ARRAY, f"array {index}: in a shared arena, but the sender has none mapped")
    size = _buffer_length(arena)
    if type(offset) is not int or not 0 <= offset <= size - nbytes or offset % itemsize:
        raise ProtocolError(
            DropReason.BAD_ARRAY,
            f"array {index}: {nbytes} bytes at offset {offset!r} do not fit the arena of {size} bytes "
            f"(or are misaligned)",
        )
    return memoryview(arena).cast("B")[offset : offset + nbytes]


# -- records ---------------------------------------------------------------------------------------

_NO_OPTIONS: dict[str, Any] = {}
_VALUE_TYPES: dict[int, tuple[type, ...]] = {
    RecordKind.OPEN: (dict,),
    RecordKind.CLOSE: (type(None),),
    RecordKind.SCALAR: (float, int),
    RecordKind.HISTOGRAM: (int,),
    RecordKind.IMAGE: (int,),
    RecordKind.IMAGES: (int,),
    RecordKind.TEXT: (str,),
    RecordKind.KEY: (int,),
    RecordKind.HISTOGRAM_RAW: (dict,),
    RecordKind.IMAGE_WITH_BOXES: (dict,),
    RecordKind.AUDIO: (int,),
    RecordKind.VIDEO: (int,),
    RecordKind.TENSOR: (int,),
    RecordKind.PR_CURVE: (dict,),
    RecordKind.PR_CURVE_RAW: (dict,),
    RecordKind.MESH: (dict,),
    RecordKind.EMBEDDING: (dict,),
    RecordKind.HPARAMS: (dict,),
    RecordKind.CUSTOM_SCALARS: (dict,),
    RecordKind.GRAPH: (dict,),
    RecordKind.ONNX_GRAPH: (bytes,),
    RecordKind.PARTIAL_HISTOGRAM: (dict,),
    RecordKind.PARTIAL_SCALARS: (dict,),
}
_KEY = RecordKind.KEY


def check_record(raw: Any, array_count: int) -> Record:
    """Checks one raw record of a RECORDS message and returns it; raises ProtocolError.

    Runs once per record in the daemon, so it uses plain type tests (no Enum calls, no new object).
    """
    if type(raw) is not list or not 7 <= len(raw) <= 8:
        raise ProtocolError(DropReason.MALFORMED_RECORD, "a record is a list of 7 or 8 items")
    kind, writer, run, tag, step, wall_time, value = raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6]
    value_types = _VALUE_TYPES.get(kind) if type(kind) is int else None
    if value_types is None:
        raise ProtocolError(DropReason.MALFORMED_RECORD, f"unknown record kind {kind!r}")
    if type(writer) is not int or type(step) is not int or not INT64_MIN <= step <= INT64_MAX:
        raise ProtocolError(DropReason.MALFORMED_RECORD, "writer and step must be 64-bit ints")
    if type(run) is not str or type(tag) is not str or len(run) > MAX_NAME_CHARS or len(tag) > MAX_NAME_CHARS:
        raise ProtocolError(DropReason.MALFORMED_RECORD, f"run and tag must be str of at most {MAX_NAME_CHARS} chars")
    if type(wall_time) is not float and type(wall_time) is not int:
        raise ProtocolError(DropReason.MALFORMED_RECORD, "wall_time must be a number")
    if type(value) not in value_types:
        raise ProtocolError(
            DropReason.MALFORMED_RECORD, f"{RecordKind(kind).name} record with a {type(value).__name__} value"
        )
    if kind in ARRAY_KINDS and not 0 <= value < array_count:
        raise ProtocolError(DropReason.MALFORMED_RECORD, f"array index {value} out of range")
    if kind in ARRAY_MAP_KINDS and not (
        0 < len(value) <= MAX_ARRAYS_PER_RECORD
        and all(type(role) is str and type(index) is int and 0 <= index < array_count for role, index in value.items())
    ):
        raise ProtocolError(
            DropReason.MALFORMED_RECORD, f"arrays must map at most {MAX_ARRAYS_PER_RECORD} names to array indices"
        )
    if kind == _KEY and not 0 <= value < MAX_SCALAR_KEYS:
        raise ProtocolError(DropReason.MALFORMED_RECORD, f"scalar key {value} out of range")
    if len(raw) == 8 and type(raw[OPTIONS]) is not dict:
        raise ProtocolError(DropReason.MALFORMED_RECORD, "options must be a map")
    return raw


def record_options(record: Record) -> dict[str, Any]:
    """The options map of a checked record (empty when it has none)."""
    return record[OPTIONS] if len(record) > OPTIONS else _NO_OPTIONS


def record_count(records: list[Any]) -> int:
    """How many records a RECORDS message's list holds, each packed scalar row counted."""
    return len(records) + sum(len(item) // SCALAR_ROW.size - 1 for item in records if type(item) is bytes)
