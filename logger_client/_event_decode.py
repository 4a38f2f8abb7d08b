"""The protobuf wire format of event files, decoded by hand into plain Python and numpy.

The reader must not import protobuf into a training process, and it needs only a handful of
messages (their field numbers are those of `proto/logger_daemon/protos/*.proto`): `Event`,
`Summary` and its `Value`, `Image`, `Audio`, `HistogramProto`, `TensorProto` (with
`TensorShapeProto`), `SummaryMetadata`, `SessionLog`, `TaggedRunMetadata` and the hparams plugin's
messages. Unknown fields are skipped, as protobuf does. A message that is not valid wire format
raises `DecodeError`.

`scalar_layout` finds where the varying fields of a plain scalar event lie, so that the reader can
decode every other event of the same layout on whole numpy columns (see `reader.py`).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DecodeError",
    "DecodedEvent",
    "Metadata",
    "ScalarLayout",
    "SummaryValue",
    "decode_event",
    "decode_hparams",
    "decode_tensor",
    "scalar_layout",
]

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")

# Wire types.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

#: SessionLog.SessionStatus.START: TensorBoard purges the run's earlier events at steps >= this one's.
SESSION_START = 1


class DecodeError(ValueError):
    """Bytes that are not the message they should be."""


# -- the wire format ------------------------------------------------------------------------------


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("a varint longer than 10 bytes")


def _signed64(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


Fields = dict[int, list[Any]]


def parse(buf: bytes | memoryview) -> Fields:
    """A message's fields by number, each a list of its values in order: an int for a varint, a
    memoryview for a length-delimited field, 8 or 4 raw bytes (memoryview) for fixed64/fixed32."""
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    fields: Fields = {}
    pos, end = 0, len(view)
    try:
        while pos < end:
            key, pos = _varint(view, pos)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise DecodeError("field number 0")
            value: Any
            if wire == _VARINT:
                value, pos = _varint(view, pos)
            elif wire == _BYTES:
                length, pos = _varint(view, pos)
                value = view[pos : pos + length]
                pos += length
            elif wire == _FIXED64:
                value = view[pos : pos + 8]
                pos += 8
            elif wire == _FIXED32:
                value = view[pos : pos + 4]
                pos += 4
            else:  # groups (3, 4) are not used by any of these messages
                raise DecodeError(f"wire type {wire} of field {number}")
            if pos > end:
                raise DecodeError("a field runs past the end of its message")
            fields.setdefault(number, []).append(value)
    except IndexError:
        raise DecodeError("the message ends inside a field") from None
    return fields


def _last(fields: Fields, number: int, default: Any = None) -> Any:
    values = fields.get(number)
    return values[-1] if values else default  # protobuf: the last value of a non-repeated field wins


def _int(fields: Fields, number: int) -> int:
    value = _last(fields, number, 0)
    if not isinstance(value, int):
        raise DecodeError(f"field {number} should be a varint")
    return value


def _double(fields: Fields, number: int) -> float:
    value = _last(fields, number)
    if value is None:
        return 0.0
    if isinstance(value, int) or len(value) != 8:
        raise DecodeError(f"field {number} should be a double")
    return float(_DOUBLE.unpack(value)[0])


def _float(fields: Fields, number: int) -> float:
    value = _last(fields, number)
    if value is None:
        return 0.0
    if isinstance(value, int) or len(value) != 4:
        raise DecodeError(f"field {number} should be a float")
    return float(_FLOAT.unpack(value)[0])


def _bytes(fields: Fields, number: int) -> bytes:
    value = _last(fields, number)
    if value is None:
        return b""
    if isinstance(value, int):
        raise DecodeError(f"field {number} should be length-delimited")
    return bytes(value)


def _str(fields: Fields, number: int) -> str:
    return _text(_bytes(fields, number))


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace")


def _message(fields: Fields, number: int) -> Fields | None:
    value = _last(fields, number)
    if value is None:
        return None
    if isinstance(value, int):
        raise DecodeError(f"field {number} should be a message")
    return parse(value)


def _varint_array(block: memoryview) -> np.ndarray:
    """A packed block of varints as uint64, decoded on numpy columns."""
    data = np.frombuffer(block, np.uint8)
    if data.size == 0:
        return np.zeros(0, np.uint64)
    ends = np.flatnonzero(data < 0x80)
    if ends.size == 0 or ends[-1] != data.size - 1:
        raise DecodeError("a packed varint block ends inside a varint")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise DecodeError("a varint longer than 10 bytes")
    out = np.zeros(ends.size, np.uint64)
    for index in range(int(lengths.max())):
        present = lengths > index
        out[present] |= (data[starts[present] + index] & 0x7F).astype(np.uint64) << np.uint64(7 * index)
    return out


def _repeated(fields: Fields, number: int, kind: str) -> np.ndarray:
    """A repeated numeric field, packed or not (protobuf accepts both), as a numpy array.

    `kind`: "f4" / "f8" (fixed32 float / fixed64 double) or "varint" (uint64 two's complement).
    """
    values = fields.get(number)
    if not values:
        return np.zeros(0, np.uint64 if kind == "varint" else np.dtype("<" + kind))
    parts = []
    for value in values:
        if kind == "varint":
            if isinstance(value, int):
                parts.append(np.array([value & 0xFFFFFFFFFFFFFFFF], np.uint64))
            else:
                parts.append(_varint_array(value))
        else:
            if isinstance(value, int):
                raise DecodeError(f"field {number} should hold {kind}")
            width = int(kind[1])
            if len(value) % width:
                raise DecodeError(f"packed field {number} is not a whole number of {kind}")
            parts.append(np.frombuffer(value, "<" + kind))
    return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


# -- summary metadata -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Metadata:
    """A summary value's `SummaryMetadata`."""

    plugin_name: str = ""
    plugin_content: bytes = b""
    display_name: str = ""
    description: str = ""
    data_class: int = 0


def _metadata(fields: Fields) -> Metadata:
    plugin = _message(fields, 1)
    return Metadata(
        plugin_name=_str(plugin, 1) if plugin else "",
        plugin_content=_bytes(plugin, 2) if plugin else b"",
        display_name=_str(fields, 2),
        description=_str(fields, 3),
        data_class=_int(fields, 4),
    )


# -- tensors --------------------------------------------------------------------------------------

# TensorFlow DataType -> (numpy dtype of tensor_content, typed field, how that field is read).
_DT_STRING, _DT_HALF, _DT_BFLOAT16 = 7, 19, 14
_TENSOR_TYPES: dict[int, tuple[str, int, str]] = {
    1: ("<f4", 5, "f4"),  # DT_FLOAT: float_val
    2: ("<f8", 6, "f8"),  # DT_DOUBLE: double_val
    3: ("<i4", 7, "varint"),  # DT_INT32: int_val
    4: ("u1", 7, "varint"),  # DT_UINT8
    5: ("<i2", 7, "varint"),  # DT_INT16
    6: ("i1", 7, "varint"),  # DT_INT8
    8: ("<c8", 9, "f4"),  # DT_COMPLEX64: scomplex_val, (real, imag) pairs
    9: ("<i8", 10, "varint"),  # DT_INT64: int64_val
    10: ("?", 11, "varint"),  # DT_BOOL: bool_val
    11: ("i1", 7, "varint"),  # DT_QINT8
    12: ("u1", 7, "varint"),  # DT_QUINT8
    13: ("<i4", 7, "varint"),  # DT_QINT32
    14: ("<u2", 13, "varint"),  # DT_BFLOAT16: half_val bit patterns, read as float32 below
    15: ("<i2", 7, "varint"),  # DT_QINT16
    16: ("<u2", 7, "varint"),  # DT_QUINT16
    17: ("<u2", 7, "varint"),  # DT_UINT16
    18: ("<c16", 12, "f8"),  # DT_COMPLEX128: dcomplex_val
    19: ("<f2", 13, "varint"),  # DT_HALF: half_val bit patterns
    22: ("<u4", 16, "varint"),  # DT_UINT32: uint32_val
    23: ("<u8", 17, "varint"),  # DT_UINT64: uint64_val
}


def decode_tensor(buf: bytes | memoryview) -> np.ndarray:
    """A `TensorProto` as a numpy array of its dtype and shape.

    DT_STRING: an object array of `bytes`. DT_BFLOAT16 (which numpy lacks): float32. As TensorFlow
    does, a typed value list shorter than the shape is filled out with its last value (no value at
    all: zeros). Raises DecodeError for a dtype numpy cannot hold (resources, variants).
    """
    fields = parse(buf)
    dtype_code = _int(fields, 1)
    shape_fields = _message(fields, 2)
    shape: tuple[int, ...] = ()
    if shape_fields is not None:
        dims = []
        for dim in shape_fields.get(2, []):
            if isinstance(dim, int):
                raise DecodeError("TensorShapeProto.dim should be a message")
            size = _signed64(_int(parse(dim), 1))
            dims.append(max(size, 0))  # -1 (unknown) holds no values
        shape = tuple(dims)
    size = math.prod(shape)
    if dtype_code == _DT_STRING:
        strings = [bytes(value) for value in fields.get(8, []) if not isinstance(value, int)]
        array = np.empty(size, dtype=object)
        if strings:
            array[: len(strings)] = strings[:size]
            if len(strings) < size:
                array[len(strings) :] = strings[-1]
        else:
            array[:] = b""
        return array.reshape(shape)
    if dtype_code not in _TENSOR_TYPES:
        raise DecodeError(f"tensor dtype {dtype_code} has no numpy equivalent")
    storage, field, kind = _TENSOR_TYPES[dtype_code]
    content = _bytes(fields, 4)
    dtype = np.dtype(storage)
    if content:
        if len(content) != size * dtype.itemsize:
            raise DecodeError(f"tensor_content holds {len(content)} bytes for shape {shape} of {dtype}")
        values = np.frombuffer(content, dtype).copy()
    else:
        raw = _repeated(fields, field, kind)
        if dtype_code in (_DT_HALF, _DT_BFLOAT16):
            values = raw.astype(np.uint16)  # 16-bit patterns, reinterpreted below
            if dtype_code == _DT_HALF:
                values = values.view(np.float16)
        elif kind == "varint":  # integers travel as two's complement varints
            values = raw.view(np.int64).astype(dtype)
        elif dtype.kind == "c":  # (real, imag) pairs
            if raw.size % 2:
                raise DecodeError("complex values should come in (real, imag) pairs")
            values = raw.view(dtype)
        else:
            values = raw.astype(dtype)
        if values.size < size:
            fill = values[-1] if values.size else np.zeros((), values.dtype)
            values = np.concatenate([values, np.full(size - values.size, fill, values.dtype)])
        elif values.size > size:
            raise DecodeError(f"{values.size} values for a tensor of shape {shape}")
    if dtype_code == _DT_BFLOAT16:
        values = (values.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return values.astype(values.dtype.newbyteorder("="), copy=False).reshape(shape)


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryValue:
    """One `Summary.Value`: its tag, metadata, and which value it holds.

    `kind` is "simple_value" (data: float), "histo" (dict of HistogramProto's fields), "image"
    (dict), "audio" (dict), "tensor" (data: the serialized TensorProto, decoded later by plugin) or
    "" (no value: metadata only, as the hparams plugin writes).
    """

    tag: str
    metadata: Metadata | None
    kind: str
    data: Any
    #: The deprecated `node_name`; the logging daemon notes there how many ranks a value combines.
    node_name: str = ""


@dataclass(frozen=True)
class DecodedEvent:
    """An `Event`: wall time, step and what it carries (`what` names the oneof field set, "" none)."""

    wall_time: float
    step: int
    what: str
    data: Any


def _summary_value(fields: Fields) -> SummaryValue:
    tag = _str(fields, 1)
    if not tag and 7 in fields:  # the old form of tensor summaries named by node_name
        tag = _str(fields, 7)
    metadata_fields = _message(fields, 9)
    metadata = _metadata(metadata_fields) if metadata_fields is not None else None
    kind: str = ""
    data: Any = None
    # The value is a oneof: the field that comes last in the bytes wins.
    last_at = -1
    for number in (2, 4, 5, 6, 8):
        if number in fields:
            order = _field_order(fields, number)
            if order > last_at:
                last_at, kind = order, {2: "simple_value", 4: "image", 5: "histo", 6: "audio", 8: "tensor"}[number]
    if kind == "simple_value":
        data = _float(fields, 2)
    elif kind == "image":
        image = _message(fields, 4) or {}
        data = {
            "height": _signed32(_int(image, 1)),
            "width": _signed32(_int(image, 2)),
            "colorspace": _signed32(_int(image, 3)),
            "encoded": _bytes(image, 4),
        }
    elif kind == "histo":
        histo = _message(fields, 5) or {}
        data = {
            "min": _double(histo, 1),
            "max": _double(histo, 2),
            "num": _double(histo, 3),
            "sum": _double(histo, 4),
            "sum_squares": _double(histo, 5),
            "bucket_limits": _repeated(histo, 6, "f8").astype(np.float64),
            "bucket_counts": _repeated(histo, 7, "f8").astype(np.float64),
        }
    elif kind == "audio":
        audio = _message(fields, 6) or {}
        data = {
            "sample_rate": _float(audio, 1),
            "num_channels": _signed64(_int(audio, 2)),
            "length_frames": _signed64(_int(audio, 3)),
            "encoded": _bytes(audio, 4),
            "content_type": _str(audio, 5),
        }
    elif kind == "tensor":
        data = _last(fields, 8)
        if isinstance(data, int):
            raise DecodeError("Summary.Value.tensor should be a message")
        data = bytes(data)
    return SummaryValue(tag, metadata, kind, data, _str(fields, 7) if 7 in fields else "")


def _field_order(fields: Fields, number: int) -> int:
    # dicts keep insertion order: a field's rank is where it first appeared in the bytes.
    for rank, key in enumerate(fields):
        if key == number:
            return rank
    return -1


_EVENT_WHAT = {3: "file_version", 4: "graph_def", 5: "summary", 6: "log_message", 7: "session_log"}
_EVENT_WHAT.update({8: "tagged_run_metadata", 9: "meta_graph_def"})


def decode_event(buf: bytes | memoryview) -> DecodedEvent:
    """An `Event` record's payload, decoded.

    `data` by `what`: "file_version" str; "graph_def" / "meta_graph_def" bytes; "summary" a list of
    `SummaryValue`; "session_log" the status (int); "tagged_run_metadata" (tag, bytes);
    "log_message" and "" None.
    """
    fields = parse(buf)
    wall_time = _double(fields, 1)
    step = _signed64(_int(fields, 2))
    what, last_at = "", -1
    for number, name in _EVENT_WHAT.items():
        if number in fields:
            order = _field_order(fields, number)
            if order > last_at:
                what, last_at = name, order
    data: Any = None
    if what == "file_version":
        data = _str(fields, 3)
    elif what in ("graph_def", "meta_graph_def"):
        data = _bytes(fields, 4 if what == "graph_def" else 9)
    elif what == "summary":
        summary = _message(fields, 5) or {}
        values = []
        for value in summary.get(1, []):
            if isinstance(value, int):
                raise DecodeError("Summary.value should be a message")
            values.append(_summary_value(parse(value)))
        data = values
    elif what == "session_log":
        session = _message(fields, 7) or {}
        data = _int(session, 1)
    elif what == "tagged_run_metadata":
        tagged = _message(fields, 8) or {}
        data = (_str(tagged, 1), _bytes(tagged, 2))
    return DecodedEvent(wall_time, step, what, data)


# -- the fixed layout of plain scalar events --------------------------------------------------------


@dataclass(frozen=True)
class ScalarLayout:
    """Where the varying bytes of a plain scalar event lie: `Event(wall_time, step,
    summary=Summary(value=[Value(tag, simple_value[, metadata / node_name])]))`.

    Offsets are into the event's payload; `wall_at` / `step_at` are -1 where the field is left out
    (zero). Every other byte of an event of this layout, tag included, is the same for every value
    of the tag: the reader compares them on whole columns instead of decoding each event.
    """

    wall_at: int
    step_at: int
    step_len: int
    value_at: int
    tag_at: int
    tag_len: int
    tag: str
    metadata: Metadata | None
    #: The value's node_name ("" if none): constant across events of one layout.
    node_name: str = ""


def _fields_at(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]] | None:
    """(number, wire type, start of the value, end of the value) of each field; None if malformed."""
    out = []
    pos = start
    try:
        while pos < end:
            key, pos = _varint(buf, pos)
            number, wire = key >> 3, key & 7
            if wire == _VARINT:
                begin = pos
                _, pos = _varint(buf, pos)
            elif wire == _BYTES:
                length, begin = _varint(buf, pos)
                pos = begin + length
            elif wire == _FIXED64:
                begin, pos = pos, pos + 8
            elif wire == _FIXED32:
                begin, pos = pos, pos + 4
            else:
                return None
            if pos > end or number == 0:
                return None
            out.append((number, wire, begin, pos))
    except (IndexError, DecodeError):
        return None
    return out


def scalar_layout(payload: bytes) -> ScalarLayout | None:
    """The layout of `payload` if it is a plain scalar event (see `ScalarLayout`), else None."""
    event = _fields_at(payload, 0, len(payload))
    if event is None:
        return None
    wall_at = step_at = -1
    step_len = 0
    summary: tuple[int, int] | None = None
    seen: set[int] = set()
    for number, wire, begin, end in event:
        if number in seen:
            return None  # a field given twice: protobuf's merge rules, not a fixed layout
        seen.add(number)
        if number == 1 and wire == _FIXED64:
            wall_at = begin
        elif number == 2 and wire == _VARINT:
            step_at, step_len = begin, end - begin
        elif number == 5 and wire == _BYTES:
            summary = (begin, end)
        else:
            return None
    if summary is None:
        return None
    values = _fields_at(payload, *summary)
    if values is None or len(values) != 1 or values[0][:2] != (1, _BYTES):
        return None
    entry = _fields_at(payload, values[0][2], values[0][3])
    if entry is None:
        return None
    value_at = tag_at = -1
    tag_len = 0
    metadata = None
    node_name = ""
    seen.clear()
    for number, wire, begin, end in entry:
        if number in seen:
            return None
        seen.add(number)
        if number == 1 and wire == _BYTES:
            tag_at, tag_len = begin, end - begin
        elif number == 2 and wire == _FIXED32:
            value_at = begin
        elif number == 9 and wire == _BYTES:
            try:
                metadata = _metadata(parse(payload[begin:end]))
            except DecodeError:
                return None
        elif number == 7 and wire == _BYTES:  # node_name is kept as a constant
            node_name = _text(payload[begin:end])
        else:  # anything else is not plain
            return None
    if value_at < 0:
        return None
    tag = _text(payload[tag_at : tag_at + tag_len]) if tag_at >= 0 else ""
    if not tag and 7 in seen:
        return None  # named by node_name: rare enough for the general path
    return ScalarLayout(wall_at, step_at, step_len, value_at, tag_at, tag_len, tag, metadata, node_name)


# -- the hparams plugin ---------------------------------------------------------------------------

_HPARAM_TYPES = {0: "DATA_TYPE_UNSET", 1: "DATA_TYPE_STRING", 2: "DATA_TYPE_BOOL", 3: "DATA_TYPE_FLOAT64"}
_DATASET_TYPES = {0: "DATASET_UNKNOWN", 1: "DATASET_TRAINING", 2: "DATASET_VALIDATION"}
_STATUSES = {0: "STATUS_UNKNOWN", 1: "STATUS_SUCCESS", 2: "STATUS_FAILURE", 3: "STATUS_RUNNING"}


def _struct_value(fields: Fields) -> Any:
    """A `google.protobuf.Value` as the plain Python value it stands for."""
    kind = -1
    for number in (1, 2, 3, 4, 5, 6):
        if number in fields and _field_order(fields, number) > _field_order(fields, kind):
            kind = number
    if kind == 2:
        return _double(fields, 2)
    if kind == 3:
        return _str(fields, 3)
    if kind == 4:
        return bool(_int(fields, 4))
    if kind == 5:
        struct_fields = _message(fields, 5) or {}
        return _value_map(struct_fields, 1)
    if kind == 6:
        list_fields = _message(fields, 6) or {}
        return [_struct_value(parse(item)) for item in list_fields.get(1, []) if not isinstance(item, int)]
    return None  # null_value, or no value at all


def _value_map(fields: Fields, number: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in fields.get(number, []):
        if isinstance(entry, int):
            raise DecodeError("a map entry should be a message")
        entry_fields = parse(entry)
        value = _message(entry_fields, 2)
        out[_str(entry_fields, 1)] = _struct_value(value) if value is not None else None
    return out


def _enum(table: dict[int, str], value: int) -> str:
    return table.get(value, str(value))


def _experiment(fields: Fields) -> dict[str, Any]:
    hparams = []
    for item in fields.get(4, []):
        if isinstance(item, int):
            raise DecodeError("Experiment.hparam_infos should be messages")
        info = parse(item)
        entry: dict[str, Any] = {
            "name": _str(info, 1),
            "display_name": _str(info, 2),
            "description": _str(info, 3),
            "type": _enum(_HPARAM_TYPES, _int(info, 4)),
            "differs": bool(_int(info, 7)),
        }
        if 5 in info and _field_order(info, 5) > _field_order(info, 6):
            domain = _message(info, 5) or {}
            entry["domain_discrete"] = [_struct_value(parse(v)) for v in domain.get(1, []) if not isinstance(v, int)]
        elif 6 in info:
            interval = _message(info, 6) or {}
            entry["domain_interval"] = {"min_value": _double(interval, 1), "max_value": _double(interval, 2)}
        hparams.append(entry)
    metrics = []
    for item in fields.get(5, []):
        if isinstance(item, int):
            raise DecodeError("Experiment.metric_infos should be messages")
        info = parse(item)
        name = _message(info, 1) or {}
        metrics.append(
            {
                "name": {"group": _str(name, 1), "tag": _str(name, 2)},
                "display_name": _str(info, 3),
                "description": _str(info, 4),
                "dataset_type": _enum(_DATASET_TYPES, _int(info, 5)),
            }
        )
    return {
        "name": _str(fields, 6),
        "description": _str(fields, 1),
        "user": _str(fields, 2),
        "time_created_secs": _double(fields, 3),
        "hparam_infos": hparams,
        "metric_infos": metrics,
    }


def decode_hparams(content: bytes) -> tuple[str, dict[str, Any]]:
    """The hparams plugin's `HParamsPluginData`: ("experiment" | "session_start_info" |
    "session_end_info" | "", that message as a dict of its fields, enums by name)."""
    fields = parse(content)
    which, last_at = 0, -1
    for number in (2, 3, 4):
        if number in fields and _field_order(fields, number) > last_at:
            which, last_at = number, _field_order(fields, number)
    message = _message(fields, which) if which else None
    if message is None:
        return "", {}
    if which == 2:
        return "experiment", _experiment(message)
    if which == 3:
        return "session_start_info", {
            "hparams": _value_map(message, 1),
            "model_uri": _str(message, 2),
            "monitor_url": _str(message, 3),
            "group_name": _str(message, 4),
            "start_time_secs": _double(message, 5),
        }
    return "session_end_info", {
        "status": _enum(_STATUSES, _int(message, 1)),
        "end_time_secs": _double(message, 2),
    }
