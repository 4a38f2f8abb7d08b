"""Serialized `Event` messages, ready for framing.

Scalars are by far the most frequent record, so their Event bytes are assembled directly
(a few fields of fixed layout) instead of building three protobuf objects per value; a test
checks that the bytes equal protobuf's own serialization. Everything else goes through protobuf.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np

from logger_daemon.protos.event_pb2 import Event, SessionLog
from logger_daemon.protos.summary_pb2 import Summary

FILE_VERSION = "brain.Event:2"

# Field keys: (field number << 3) | wire type.
_EVENT_WALL_TIME = 0x09  # 1, fixed64 (double)
_EVENT_STEP = b"\x10"  # 2, varint
_EVENT_SUMMARY = b"\x2a"  # 5, length-delimited
_SUMMARY_VALUE = b"\x0a"  # Summary.value = 1, length-delimited
_VALUE_TAG = b"\x0a"  # Summary.Value.tag = 1
_VALUE_SIMPLE = b"\x15"  # Summary.Value.simple_value = 2, fixed32 (float)
_VALUE_NODE_NAME = b"\x3a"  # Summary.Value.node_name = 7, length-delimited
_WALL_TIME = struct.Struct("<Bd")
_SMALL_VARINTS = [bytes((n,)) for n in range(0x80)]
_FLOAT = struct.Struct("<f")


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    if 0 < value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64 are ten-byte two's complement varints
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@lru_cache(maxsize=65536)
def _scalar_summary_prefix(tag: str, suffix: bytes = b"") -> bytes:
    """`Event.summary` up to the float of a simple_value scalar: constant per tag (and per
    `suffix`, the Value's fields after the float)."""
    tag_bytes = tag.encode("utf-8")
    value = (_VALUE_TAG + _varint(len(tag_bytes)) + tag_bytes if tag_bytes else b"") + _VALUE_SIMPLE
    summary_value = _SUMMARY_VALUE + _varint(len(value) + 4 + len(suffix))
    summary_length = len(summary_value) + len(value) + 4 + len(suffix)
    return _EVENT_SUMMARY + _varint(summary_length) + summary_value + value


@lru_cache(maxsize=1024)
def _node_name_field(node_name: str) -> bytes:
    if not node_name:
        return b""
    encoded = node_name.encode("utf-8")
    return _VALUE_NODE_NAME + _varint(len(encoded)) + encoded


def _varint_lengths(steps: np.ndarray) -> np.ndarray:
    """Bytes of each step's varint; 0 for step 0 (the field is then left out), 10 for negatives."""
    unsigned = steps.astype(np.uint64)
    lengths = np.where(steps == 0, 0, 1)
    rest = unsigned >> np.uint64(7)
    while rest.any():
        lengths += rest > 0
        rest >>= np.uint64(7)
    return lengths


def scalar_event_rows(
    tag: str,
    wall_times: np.ndarray,
    steps: np.ndarray,
    values: np.ndarray,
    node_names: list[str] | None = None,
    name_of_row: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Serialized Events `Event(wall_time, step, summary=[Value(tag, simple_value=value)])`, one
    per row of the columns, the bytes protobuf gives, built on whole columns. With `node_names`,
    row i's Value also carries `node_name=node_names[name_of_row[i]]` ("" for none).

    Returns uint8 arrays of shape (n, length), one per run of consecutive events whose layout
    (step varint length, wall_time present, node_name) is the same, in input order. As protobuf:
    a field is left out when its bits are zero (so -0.0 is kept), and a double beyond float32's
    range becomes infinity.
    """
    has_wall = wall_times.view(np.uint64) != 0
    layout = _varint_lengths(steps) * 2 + has_wall
    if node_names is not None and name_of_row is not None:
        layout = layout + name_of_row.astype(np.int64) * 32  # a step's varint is at most 10 bytes
    cuts = np.flatnonzero(np.diff(layout)) + 1
    pieces = []
    for start, stop in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(steps)]])):
        code = int(layout[start])
        step_length, wall = (code & 31) >> 1, code & 1
        suffix = _node_name_field(node_names[code >> 5]) if node_names is not None else b""
        prefix = np.frombuffer(_scalar_summary_prefix(tag, suffix), np.uint8)
        pieces.append(
            _rows(
                prefix,
                step_length,
                bool(wall),
                wall_times[start:stop],
                steps[start:stop],
                values[start:stop],
                np.frombuffer(suffix, np.uint8),
            )
        )
    return pieces


def _rows(
    prefix: np.ndarray,
    step_length: int,
    wall: bool,
    wall_times: np.ndarray,
    steps: np.ndarray,
    values: np.ndarray,
    suffix: np.ndarray | None = None,
) -> np.ndarray:
    count = len(steps)
    tail = 0 if suffix is None else len(suffix)
    width = (9 if wall else 0) + (1 + step_length if step_length else 0) + len(prefix) + 4 + tail
    rows = np.empty((count, width), np.uint8)
    at = 0
    if wall:
        rows[:, 0] = _EVENT_WALL_TIME
        rows[:, 1:9] = wall_times.astype("<f8").view(np.uint8).reshape(count, 8)
        at = 9
    if step_length:
        rows[:, at] = _EVENT_STEP[0]
        unsigned = steps.astype(np.uint64)
        for index in range(step_length):
            byte = (unsigned >> np.uint64(7 * index)) & np.uint64(0x7F)
            if index < step_length - 1:
                byte |= np.uint64(0x80)  # more bytes follow
            rows[:, at + 1 + index] = byte
        at += 1 + step_length
    rows[:, at : at + len(prefix)] = prefix
    at += len(prefix)
    with np.errstate(over="ignore"):  # as protobuf: a double beyond float32's range becomes inf
        rows[:, at : at + 4] = values.astype("<f4").view(np.uint8).reshape(count, 4)
    if suffix is not None and tail:
        rows[:, at + 4 :] = suffix
    return rows


def summary_event(wall_time: float, step: int, summary: Summary) -> bytes:
    """An Event carrying `summary`, serialized."""
    return Event(wall_time=wall_time, step=step, summary=summary).SerializeToString()


def file_version_event(wall_time: float) -> bytes:
    """The first record of every event file."""
    return Event(wall_time=wall_time, file_version=FILE_VERSION).SerializeToString()


def session_start_event(wall_time: float, step: int) -> bytes:
    """SessionLog START at `step`: TensorBoard hides the run's earlier events at steps >= `step`."""
    return Event(wall_time=wall_time, step=step, session_log=SessionLog(status=SessionLog.START)).SerializeToString()
