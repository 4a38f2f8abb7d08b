"""The wire protocol in process: encode/decode, every limit, record checks, drop reasons.

`test_hostile_peers` feeds the same refusals to a real daemon.
"""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest
import zmq

from logger_client import protocol
from logger_client.protocol import MessageKind, ProtocolError, RecordKind

FIXED = struct.Struct("<4sHBB")
_check_record = protocol.check_record


def fixed(kind: int, version: int = protocol.PROTOCOL_VERSION, magic: bytes = protocol.MAGIC) -> bytes:
    return FIXED.pack(magic, version, kind, 0)


def header_frames(kind: MessageKind, header: dict) -> list[bytes]:
    return [fixed(int(kind)), msgpack.packb(header, use_bin_type=True)]


def refusal(frames) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frames)
    return info.value


# -- encode / decode -----------------------------------------------------------------------------


def test_round_trip_without_arrays():
    header = {"cid": b"\x01" * 16, "seq": 7, "records": [[3, 1, "", "loss", 5, 1.5, 0.25]]}
    message = protocol.decode(protocol.encode(MessageKind.RECORDS, dict(header)))
    assert message.kind == MessageKind.RECORDS
    assert message.header == header
    assert message.arrays == []


def test_round_trip_with_arrays_is_zero_copy():
    arrays = [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([True, False]),
        np.zeros((2, 0, 3), np.uint8),
        np.array(7, dtype=np.int64),
        np.linspace(0, 1, 10, dtype=np.float16),
    ]
    frames = protocol.encode(MessageKind.RECORDS, {"seq": 1, "records": []}, arrays)
    for array, frame in zip(arrays, frames[2:]):
        assert frame is array  # handed to ZeroMQ as is: no copy on the sending side
    wire: list[bytes | memoryview] = [bytes(frames[0]), bytes(frames[1])]
    wire += [a.data.cast("B") if a.size else b"" for a in arrays]
    message = protocol.decode(wire)
    assert len(message.arrays) == len(arrays)
    for sent, received, buffer in zip(arrays, message.arrays, wire[2:]):
        assert received.dtype == sent.dtype and received.shape == sent.shape
        np.testing.assert_array_equal(received, sent)
        if sent.size:  # a view on the frame's buffer, not a copy
            assert np.shares_memory(received, np.frombuffer(buffer, np.uint8))


def test_round_trip_through_real_zmq_sockets_is_zero_copy():
    context = zmq.Context()
    a, b = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    try:
        a.bind("inproc://wire-test")
        b.connect("inproc://wire-test")
        image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        a.send_multipart(
            protocol.encode(MessageKind.RECORDS, {"seq": 3, "records": [[5, 1, "", "img", 0, 1.0, 0]]}, [image]),
            copy=False,
        )
        assert b.poll(5000)
        frames = b.recv_multipart(copy=False)
        message = protocol.decode(frames)
        np.testing.assert_array_equal(message.arrays[0], image)
        assert np.shares_memory(message.arrays[0], np.frombuffer(frames[2].buffer, np.uint8))
        assert message.header["records"] == [[5, 1, "", "img", 0, 1.0, 0]]
    finally:
        a.close(0)
        b.close(0)
        context.term()


def test_every_message_kind_round_trips():
    for kind in MessageKind:
        assert protocol.decode(protocol.encode(kind, {"cid": b"x"})).kind == kind


# -- refusals ------------------------------------------------------------------------------------


def test_too_few_frames_is_refused():
    assert refusal([fixed(3)]).reason == "malformed_message"
    assert refusal([]).reason == "malformed_message"


def test_short_fixed_header_is_refused():
    assert refusal([b"TBLG\x01", msgpack.packb({})]).reason == "malformed_message"


def test_bad_magic_is_refused():
    error = refusal([fixed(3, magic=b"XXXX"), msgpack.packb({})])
    assert error.reason == "malformed_message"
    assert "magic" in error.detail


def test_version_mismatch_names_both_versions():
    other = protocol.PROTOCOL_VERSION + 41
    error = refusal([fixed(3, version=other), msgpack.packb({})])
    assert error.reason == "version_mismatch"
    assert str(other) in error.detail and str(protocol.PROTOCOL_VERSION) in error.detail


def test_unknown_message_kind_is_refused():
    error = refusal([fixed(250), msgpack.packb({})])
    assert error.reason == "malformed_message"
    assert "250" in error.detail


@pytest.mark.parametrize("payload", [b"\xc1", b"\x92\x01", b"\xdc\xff", b"", b"\x81\xa1a\xc1", b"\x93\x01\x02"])
def test_header_that_is_not_msgpack_is_refused(payload):
    assert refusal([fixed(3), payload]).reason == "malformed_message"


@pytest.mark.parametrize("header", [[1, 2], 5, "x", None, {1: 2}])
def test_header_that_is_not_a_string_keyed_map_is_refused(header):
    assert refusal([fixed(3), msgpack.packb(header)]).reason == "malformed_message"


def test_too_many_records_in_one_message_is_refused():
    header = msgpack.packb({"records": [0] * (protocol.MAX_RECORDS_PER_MESSAGE + 1)})
    assert refusal([fixed(3), header]).reason == "malformed_message"


def test_message_larger_than_the_limit_is_refused():
    huge = np.zeros(protocol.MAX_MESSAGE_BYTES, np.uint8)  # calloc'd: never touched, costs no memory
    header = msgpack.packb({"arrays": [["uint8", [protocol.MAX_MESSAGE_BYTES]]]})
    error = refusal([fixed(3), header, huge.data])
    assert error.reason == "message_too_large"


def test_a_header_of_millions_of_empty_lists_is_refused_before_it_is_decoded_whole(monkeypatch):
    # A smaller budget, so that the refusal comes after 100 000 lists rather than 2 M (the full
    # bound is met by the 32 MiB bomb of tests/faults/test_hostile_load.py).
    monkeypatch.setattr(protocol, "MAX_HEADER_CONTAINERS", 100_000)
    lists = (4 << 20) + 10  # a header under 4 MiB is not counted
    rows = [b"\xdd" + struct.pack(">I", 1 << 20) + b"\x90" * (1 << 20) for _ in range(lists >> 20)]
    rows.append(b"\xdd" + struct.pack(">I", lists % (1 << 20)) + b"\x90" * (lists % (1 << 20)))
    bomb = b"\x81\xa7records\xdc" + struct.pack(">H", len(rows)) + b"".join(rows)
    error = refusal([fixed(3), bomb])
    assert error.reason == "message_too_large" and "lists and maps" in error.detail


def test_a_large_header_of_few_containers_is_decoded():
    records = [[1, "t" * 1000, 0, float(i)] for i in range(10_000)]  # 10 MB, 10 001 lists
    header = msgpack.packb({"seq": 1, "records": records}, use_bin_type=True)
    assert len(header) > 4 << 20
    message = protocol.decode([fixed(3), header])
    assert len(message.header["records"]) == 10_000


def _array_message(descriptions, buffers) -> list:
    return [fixed(3), msgpack.packb({"seq": 1, "records": [], "arrays": descriptions})] + list(buffers)


@pytest.mark.parametrize(
    "dtype",
    ["object", "complex64", "complex128", "O", "V8", "<U4", "datetime64[s]", "float128", "S3", "bfloat16", 5, None],
)
def test_dtype_not_allowed_is_refused(dtype):
    error = refusal(_array_message([[dtype, [1]]], [b"\0" * 8]))
    assert error.reason == "bad_array"


@pytest.mark.parametrize("shape, nbytes", [([3], 11), ([3], 13), ([2, 2], 12), ([], 8), ([0], 4), ([1 << 20], 16)])
def test_shape_size_mismatch_is_refused(shape, nbytes):
    error = refusal(_array_message([["float32", shape]], [b"\0" * nbytes]))
    assert error.reason == "bad_array"
    assert str(nbytes) in error.detail


@pytest.mark.parametrize("shape", [[-1], [1.5], ["3"], [True], 3, [[1]], [1] * 33, [1 << 40]])
def test_bad_shape_is_refused(shape):
    assert refusal(_array_message([["uint8", shape]], [b"\0"])).reason == "bad_array"


def test_shape_whose_size_overflows_is_refused():
    assert refusal(_array_message([["uint8", [1 << 32, 1 << 32]]], [b""])).reason == "bad_array"


def test_descriptions_not_matching_frames_are_refused():
    assert refusal(_array_message([["uint8", [1]]], [])).reason == "malformed_message"
    assert refusal(_array_message([], [b"\0"])).reason == "malformed_message"
    assert refusal(_array_message({"a": 1}, [b"\0"])).reason == "malformed_message"
    assert refusal(_array_message([["uint8"]], [b"\0"])).reason == "malformed_message"


def test_too_many_arrays_is_refused():
    count = protocol.MAX_ARRAYS_PER_MESSAGE + 1
    error = refusal(_array_message([["uint8", [1]]] * count, [b"\0"] * count))
    assert str(protocol.MAX_ARRAYS_PER_MESSAGE) in error.detail
    # ... and the limit itself is accepted.
    count -= 1
    assert len(protocol.decode(_array_message([["uint8", [1]]] * count, [b"\0"] * count)).arrays) == count


def test_arrays_in_the_senders_arena_travel_as_offsets_without_frames():
    arena = np.arange(64, dtype=np.float32)
    framed = np.ones(3, np.float32)
    frames = protocol.encode(MessageKind.RECORDS, {"records": []}, [arena[8:16].reshape(2, 4), framed], [32, None])
    assert len(frames) == 3  # the fixed header, the msgpack header, the one framed array
    message = protocol.decode(frames, arena.data)
    np.testing.assert_array_equal(message.arrays[0], arena[8:16].reshape(2, 4))
    np.testing.assert_array_equal(message.arrays[1], framed)


@pytest.mark.parametrize("offset", [-4, 228, 2, "8", None, 1.5])
def test_arena_offsets_outside_the_arena_or_misaligned_are_refused(offset):
    arena = np.zeros(64, np.float32).data  # 256 bytes: 8 float32 at 228 would overrun it
    frames = header_frames(MessageKind.RECORDS, {"records": [], "arrays": [["float32", [8], offset]]})
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frames, arena)
    assert info.value.reason == "bad_array"


def test_arena_offsets_from_a_sender_without_a_mapped_arena_are_refused():
    frames = header_frames(MessageKind.RECORDS, {"records": [], "arrays": [["float32", [8], 0]]})
    assert refusal(frames).reason == "bad_array"


def test_allowed_dtypes_all_decode():
    for name in sorted(protocol.ALLOWED_DTYPES):
        array = np.ones((2, 3), dtype=name)
        message = protocol.decode(
            [
                bytes(f) if not isinstance(f, np.ndarray) else f.tobytes()
                for f in protocol.encode(MessageKind.RECORDS, {}, [array])
            ]
        )
        np.testing.assert_array_equal(message.arrays[0], array)
    assert not {"object", "complex64", "complex128", "void"} & protocol.ALLOWED_DTYPES


# -- record checks -------------------------------------------------------------------------------

GOOD = [int(RecordKind.SCALAR), 1, "run", "loss", 5, 1.5, 0.25]


@pytest.mark.parametrize(
    "raw",
    [
        [int(RecordKind.SCALAR), 1, "", "loss", 0, 0.0, 1.0],
        [int(RecordKind.SCALAR), 1, "", "loss", -(1 << 63), 1, 3],
        [int(RecordKind.SCALAR), 1, "", "loss", (1 << 63) - 1, 1.0, 3.5, {"display_name": "x"}],
        [int(RecordKind.TEXT), 2, "a/b", "t", 1, 1.0, "hello"],
        [int(RecordKind.OPEN), 1, "", "", 0, 1.0, {"logdir": "/tmp/x"}],
        [int(RecordKind.CLOSE), 1, "", "", 0, 1.0, None],
        [int(RecordKind.IMAGE), 1, "", "img", 0, 1.0, 1, {"dataformats": "CHW"}],
        [int(RecordKind.HISTOGRAM), 1, "", "h", 0, 1.0, 0],
        [int(RecordKind.IMAGES), 1, "r" * protocol.MAX_NAME_CHARS, "t" * protocol.MAX_NAME_CHARS, 0, 1.0, 0],
        [int(RecordKind.AUDIO), 1, "", "a", 0, 1.0, 1, {"sample_rate": 8000}],
        [int(RecordKind.PR_CURVE), 1, "", "pr", 0, 1.0, {"labels": 0, "predictions": 1}],
        [int(RecordKind.HPARAMS), 1, "", "", 0, 1.0, {"hparam_dict": {"lr": 0.1}, "metric_dict": {}}],
        [int(RecordKind.ONNX_GRAPH), 1, "", "", 0, 1.0, b"model"],
    ],
)
def test_good_records_are_accepted(raw):
    record = _check_record(list(raw), 2)
    assert [int(record[0]), *record[1:7]] == raw[:7]


@pytest.mark.parametrize(
    "raw",
    [
        "not a list",
        (3, 1, "", "t", 0, 1.0, 1.0),
        GOOD[:6],
        GOOD + [{}, 1],
        [],
        [99, *GOOD[1:]],
        [0, *GOOD[1:]],
        ["3", *GOOD[1:]],
        [3.0, *GOOD[1:]],
        [None, *GOOD[1:]],
        [True, *GOOD[1:]],
        GOOD[:1] + ["1"] + GOOD[2:],
        GOOD[:1] + [1.0] + GOOD[2:],
        GOOD[:1] + [True] + GOOD[2:],
        GOOD[:4] + ["5"] + GOOD[5:],
        GOOD[:4] + [5.0] + GOOD[5:],
        GOOD[:4] + [1 << 63] + GOOD[5:],
        GOOD[:4] + [-(1 << 63) - 1] + GOOD[5:],
        GOOD[:4] + [None] + GOOD[5:],
        GOOD[:2] + [b"run"] + GOOD[3:],
        GOOD[:2] + [None] + GOOD[3:],
        GOOD[:3] + [7] + GOOD[4:],
        GOOD[:3] + ["t" * (protocol.MAX_NAME_CHARS + 1)] + GOOD[4:],
        GOOD[:2] + ["r" * (protocol.MAX_NAME_CHARS + 1)] + GOOD[3:],
        GOOD[:5] + ["now"] + GOOD[6:],
        GOOD[:5] + [None] + GOOD[6:],
        GOOD[:6] + ["1.0"],
        GOOD[:6] + [None],
        GOOD[:6] + [True],
        GOOD[:6] + [[1.0]],
        GOOD + [[]],
        GOOD + ["opts"],
        GOOD + [None],
        [int(RecordKind.TEXT), 1, "", "t", 0, 1.0, 5],
        [int(RecordKind.OPEN), 1, "", "", 0, 1.0, "/tmp"],
        [int(RecordKind.CLOSE), 1, "", "", 0, 1.0, 0],
        [int(RecordKind.IMAGE), 1, "", "img", 0, 1.0, 2],
        [int(RecordKind.IMAGE), 1, "", "img", 0, 1.0, -1],
        [int(RecordKind.HISTOGRAM), 1, "", "h", 0, 1.0, 1.0],
        [int(RecordKind.IMAGES), 1, "", "img", 0, 1.0, True],
        [int(RecordKind.PR_CURVE), 1, "", "pr", 0, 1.0, {"labels": 0, "predictions": 2}],  # no array 2
        [int(RecordKind.PR_CURVE), 1, "", "pr", 0, 1.0, {"labels": 0, 1: 1}],  # a role that is not a str
        [int(RecordKind.PR_CURVE), 1, "", "pr", 0, 1.0, {}],  # no array at all
        [int(RecordKind.MESH), 1, "", "m", 0, 1.0, {str(i): 0 for i in range(protocol.MAX_ARRAYS_PER_RECORD + 1)}],
        [int(RecordKind.PR_CURVE), 1, "", "pr", 0, 1.0, 0],  # an index where a map of them belongs
        [int(RecordKind.ONNX_GRAPH), 1, "", "", 0, 1.0, "model"],
    ],
)
def test_bad_records_are_refused(raw):
    with pytest.raises(ProtocolError) as info:
        _check_record(raw, 2)
    assert info.value.reason == "malformed_record"
