"""TFRecord framing, scalar Event bytes and event files, checked against TensorBoard's own code.

Framing and CRCs are compared with TensorBoard's reader (its pure-Python record reader checks
both CRCs of every record); scalar Event bytes are compared with protobuf's serialization.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import re
import socket
import struct
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import Event as TbEvent
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_masked_crc32c
from tensorboard.util import tensor_util

from logger_daemon import event_codec, tfrecord
from logger_daemon.event_file import EventFile, event_file_name
from logger_daemon.protos.event_pb2 import Event
from logger_daemon.protos.summary_pb2 import Summary
from logger_daemon.tfrecord import frame, frame_rows, masked_crc32c, read_records

RNG = random.Random(20240601)


def _payloads() -> list[bytes]:
    sizes = [0, 1, 7, 8, 12, 127, 128, 255, 256, 4095, 4096, 65537]
    return [bytes(RNG.getrandbits(8) for _ in range(n)) for n in sizes]


def _load(path: str) -> list[TbEvent]:
    return list(EventFileLoader(path).Load())


def _scalar(value) -> float:
    """A loaded scalar's number: the loader migrates `simple_value` into a scalar tensor."""
    if value.HasField("tensor"):
        assert value.metadata.plugin_data.plugin_name == "scalars"
        return tensor_util.make_ndarray(value.tensor).item()
    return value.simple_value


# -- CRC and framing -----------------------------------------------------------------------------


def test_masked_crc_golden_value():
    assert masked_crc32c(struct.pack("<Q", 24)) == 0x224B7FA3


def test_masked_crc_matches_tensorboards_own():
    for data in _payloads() + [b"", b"a", b"brain.Event:2"]:
        assert masked_crc32c(data) == tb_masked_crc32c(data), data[:16]


def test_frame_layout():
    data = b"hello, tensorboard"
    record = frame(data)
    assert len(record) == 8 + 4 + len(data) + 4
    assert struct.unpack_from("<Q", record, 0)[0] == len(data)
    assert struct.unpack_from("<I", record, 8)[0] == masked_crc32c(record[:8])
    assert record[12 : 12 + len(data)] == data
    assert struct.unpack_from("<I", record, 12 + len(data))[0] == masked_crc32c(data)


@pytest.mark.parametrize("native", [True, False], ids=["extension", "python"])
@pytest.mark.parametrize("length", [1, 7, 8, 9, 38, 257])
def test_frame_rows_equals_framing_each_row(native, length, monkeypatch):
    if native and tfrecord._native is None:
        pytest.skip("the _crc extension is not built here")
    if not native:
        monkeypatch.setattr(tfrecord, "_native", None)
    rows = np.random.default_rng(length).integers(0, 256, (50, length), dtype=np.uint8)
    assert frame_rows(rows) == b"".join(frame(row.tobytes()) for row in rows)


def test_frame_read_records_round_trip():
    payloads = _payloads()
    blob = b"".join(frame(p) for p in payloads)
    assert read_records(blob) == payloads
    assert read_records(b"") == []


def test_read_records_stops_at_every_truncation():
    payloads = [b"first", b"", b"third record", b"x" * 300]
    records = [frame(p) for p in payloads]
    blob = b"".join(records)
    ends = list(itertools.accumulate(len(r) for r in records))
    for cut in range(len(blob) + 1):
        complete = sum(1 for end in ends if end <= cut)
        assert read_records(blob[:cut]) == payloads[:complete], cut


@pytest.mark.parametrize("where", ["length", "length_crc", "data", "data_crc"])
def test_corrupt_record_stops_reading(where):
    payloads = [b"one", b"two two", b"three three three", b"four"]
    records = [bytearray(frame(p)) for p in payloads]
    offset = {"length": 0, "length_crc": 9, "data": 13, "data_crc": len(records[2]) - 2}[where]
    records[2][offset] ^= 0x01
    blob = b"".join(bytes(r) for r in records)
    # Never anything from or after the bad record, even though record 3 is intact.
    assert read_records(blob) == payloads[:2]


def test_length_with_a_valid_crc_but_past_the_end_stops_reading():
    header = struct.pack("<Q", 1 << 40)
    forged = header + struct.pack("<I", masked_crc32c(header)) + b"short"
    blob = frame(b"good") + forged + frame(b"after")
    assert read_records(blob) == [b"good"]


# -- scalar Event bytes --------------------------------------------------------------------------


def scalar_event(wall_time: float, step: int, tag: str, value: float) -> bytes:
    """One event through the daemon's column encoder."""
    (rows,) = event_codec.scalar_event_rows(
        tag, np.array([wall_time], np.float64), np.array([step], np.int64), np.array([value], np.float64)
    )
    return rows[0].tobytes()


def _protobuf_scalar_event(wall_time: float, step: int, tag: str, value: float) -> bytes:
    return Event(
        wall_time=wall_time, step=step, summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)])
    ).SerializeToString()


_TAGS = [
    "loss",
    "a/b/c",
    "t",
    "ünïcödé/λ",
    "emoji 😀",
    "x" * 120,
    "y" * 127,
    "z" * 128,
    "w" * 300,
    "v" * 16383,
    "u" * 16384,
    "s" * 20000,
]
_STEPS = [
    0,
    1,
    2,
    127,
    128,
    129,
    16383,
    16384,
    2**21,
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    -1,
    -2,
    -128,
    -(2**31),
    -(2**63),
]
_WALL_TIMES = [0.0, 1.0, 1e-300, 1_700_000_000.123456, 4e9, -5.5]
_VALUES = [
    0.0,
    -0.0,
    1.0,
    -2.5,
    0.1,
    1.1,
    3.4028234e38,
    -3.4028234e38,
    1e-45,
    1.17e-38,
    float("inf"),
    float("-inf"),
    float("nan"),
    123456789.0,
    16777217.0,
]


def test_scalar_event_bytes_equal_protobuf():
    # Tag and step set the varint lengths, so every pair of them is tried; wall time and value are
    # fixed-width fields, tried in every pair of theirs, and taking turns across the first pairs.
    cases = [
        (tag, step, _WALL_TIMES[n % len(_WALL_TIMES)], _VALUES[n % len(_VALUES)])
        for n, (tag, step) in enumerate(itertools.product(_TAGS, _STEPS))
    ]
    cases += [
        (_TAGS[0], _STEPS[n % len(_STEPS)], wall_time, value)
        for n, (wall_time, value) in enumerate(itertools.product(_WALL_TIMES, _VALUES))
    ]
    for tag, step, wall_time, value in cases:
        ours = scalar_event(wall_time, step, tag, value)
        assert ours == _protobuf_scalar_event(wall_time, step, tag, value), (tag[:20], step, wall_time, value)
    assert len(cases) == len(_TAGS) * len(_STEPS) + len(_WALL_TIMES) * len(_VALUES)


def test_scalar_event_random_cases_equal_protobuf_and_parse_back():
    rng = random.Random(7)
    for _ in range(1000):
        tag = "".join(rng.choice("abc/_-.é") for _ in range(rng.randint(1, 200)))
        step = rng.randint(-(2**63), 2**63 - 1) if rng.random() < 0.5 else rng.randint(0, 10**6)
        wall_time = rng.uniform(0, 2e9)
        value = struct.unpack("<f", struct.pack("<f", rng.uniform(-1e30, 1e30)))[0]
        ours = scalar_event(wall_time, step, tag, value)
        assert ours == _protobuf_scalar_event(wall_time, step, tag, value)
        parsed = TbEvent.FromString(ours)
        assert (parsed.wall_time, parsed.step, parsed.summary.value[0].tag) == (wall_time, step, tag)
        assert parsed.summary.value[0].simple_value == value


def test_scalar_event_with_an_empty_tag_parses_as_protobufs():
    # proto3 omits an empty string; the hand-made bytes carry it. Both parse to the same Event.
    ours = TbEvent.FromString(scalar_event(12.5, 3, "", 2.0))
    theirs = TbEvent.FromString(_protobuf_scalar_event(12.5, 3, "", 2.0))
    assert ours == theirs


@pytest.mark.parametrize("value", [1e40, -1e300, 3.5e38])
def test_scalar_event_beyond_float32_range_is_infinity_as_protobuf(value):
    ours = scalar_event(1.0, 1, "loss", value)
    assert ours == _protobuf_scalar_event(1.0, 1, "loss", value)
    assert TbEvent.FromString(ours).summary.value[0].simple_value == math.copysign(math.inf, value)


# -- event files ---------------------------------------------------------------------------------


def test_event_file_is_read_by_tensorboards_loader(tmp_path):
    events = EventFile(str(tmp_path / "run"))
    expected = [(step, f"tag{step % 3}", step * 0.5) for step in range(500)]
    for step, tag, value in expected:
        events.write(scalar_event(1000.0 + step, step, tag, value))
    events.flush()  # readable from here on, before close
    loaded = _load(events.path)
    assert loaded[0].file_version == "brain.Event:2"
    assert loaded[0].wall_time > 0
    assert not loaded[0].HasField("summary")
    got = [(e.step, e.summary.value[0].tag, _scalar(e.summary.value[0])) for e in loaded[1:]]
    assert got == expected
    assert os.path.getsize(events.path) == events.bytes_written
    events.close()
    events.close()  # twice is harmless
    assert len(_load(events.path)) == 501


def test_event_file_records_are_valid_tfrecords(tmp_path):
    events = EventFile(str(tmp_path))
    payloads = [scalar_event(5.0, i, "t", float(i)) for i in range(50)]
    for payload in payloads:
        events.write(payload)
    events.close()
    with open(events.path, "rb") as f:
        records = read_records(f.read())
    assert records[1:] == payloads
    assert Event.FromString(records[0]).file_version == event_codec.FILE_VERSION


def test_event_file_name_pattern(tmp_path):
    events = EventFile(str(tmp_path), filename_suffix=".rank3")
    events.close()
    name = os.path.basename(events.path)
    pattern = (
        r"events\.out\.tfevents\.(\d{10})\."
        + re.escape(socket.gethostname())
        + r"\."
        + str(os.getpid())
        + r"\.\d+\.rank3"
    )
    assert re.fullmatch(pattern, name), name
    assert event_file_name(5.0).startswith("events.out.tfevents.0000000005.")


def test_a_new_file_sorts_after_another_daemons_of_the_same_second(tmp_path):
    now = int(time.time())
    # A daemon before this one, in this second, with a pid that sorts after any (as text).
    earlier = tmp_path / f"events.out.tfevents.{now:010d}.{socket.gethostname()}.99999999.00000000"
    earlier.write_bytes(b"")
    events = EventFile(str(tmp_path))
    events.close()
    assert os.path.basename(events.path) > earlier.name
    assert sorted(os.listdir(tmp_path))[-1] == os.path.basename(events.path)
    foreign = event_file_name(now, after="events.out.tfevents.not-a-number")
    assert foreign.startswith(f"events.out.tfevents.{now:010d}.")


def test_files_created_in_the_same_second_have_unique_names(tmp_path):
    files = [EventFile(str(tmp_path)) for _ in range(120)]  # the counter crosses 9 -> 10 -> 100
    for f in files:
        f.close()
    names = [os.path.basename(f.path) for f in files]
    assert len(set(names)) == 120
    # TensorBoard reads a directory's files in name order: that must be the order they were made in.
    assert names == sorted(names)
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    seconds = {name.split(".")[3] for name in names}
    assert len(seconds) <= 2  # they were made within (at most) one second boundary
    for f in files:
        assert _load(f.path)[0].file_version == "brain.Event:2"


def test_an_existing_file_is_never_reused(tmp_path):
    first = EventFile(str(tmp_path))
    first.close()
    # Files squatting on the names the next counter values would take, in this second.
    prefix, counter = os.path.basename(first.path).rsplit(".", 1)
    squatters = [tmp_path / f"{prefix}.{str(int(counter) + k).zfill(len(counter))}" for k in range(1, 6)]
    for path in squatters:
        path.write_bytes(b"not ours")
    second = EventFile(str(tmp_path))
    second.close()
    assert second.path not in {first.path, *map(str, squatters)}
    for path in squatters:
        assert path.read_bytes() == b"not ours"
    assert _load(second.path)[0].file_version == "brain.Event:2"


# -- the column-wise scalar path (whole groups of one tag at once) -------------------------------


def _rows_api():
    if not hasattr(event_codec, "scalar_event_rows"):
        pytest.skip("event_codec.scalar_event_rows is not there")
    from logger_daemon.tfrecord import frame_rows

    return event_codec.scalar_event_rows, frame_rows


def test_scalar_event_rows_equal_protobuf_in_input_order():
    scalar_event_rows, frame_rows = _rows_api()
    rng = random.Random(11)
    steps = [0, 1, 127, 128, 16384, 2**31, 2**63 - 1, -1, -(2**63), 5, 0, 300]
    steps += [rng.randint(-(2**63), 2**63 - 1) for _ in range(100)] + [rng.randint(0, 1000) for _ in range(100)]
    wall_times = [[0.0, -0.0, 1.5, 1_700_000_000.25][i % 4] for i in range(len(steps))]
    values = [
        [1.0, float("nan"), float("inf"), -0.0, 1e40, -1e300, 0.1, 3.4028234e38][i % 8] for i in range(len(steps))
    ]
    for tag in ["loss", "é/" + "x" * 200, "t" * 20000]:
        pieces = scalar_event_rows(
            tag, np.array(wall_times, np.float64), np.array(steps, np.int64), np.array(values, np.float64)
        )
        events = [row.tobytes() for piece in pieces for row in piece]
        expected = [_protobuf_scalar_event(w, s, tag, v) for w, s, v in zip(wall_times, steps, values)]
        assert events == expected
        for piece in pieces:
            assert frame_rows(piece) == b"".join(frame(row.tobytes()) for row in piece)
            assert read_records(frame_rows(piece)) == [row.tobytes() for row in piece]
