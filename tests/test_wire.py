"""The wire protocol: encode/decode, every limit, record checks, and a real daemon fed bad bytes.

The daemon tests speak raw ZeroMQ to a daemon started by hand (`daemon` fixture), then check that
it is still alive and useful (a SummaryWriter works end to end) and that `logger-daemon status
--json` counts every refusal by reason.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import time
from collections import Counter

import msgpack
import numpy as np
import pytest
import zmq
from conftest import wait_for
from raw_peer import RawPeer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logger_client import SummaryWriter, _wire
from logger_client._discovery import daemon_running
from logger_client._wire import MessageKind, ProtocolError, RecordKind

FIXED = struct.Struct("<4sHBB")
_check_record = _wire.check_record


def fixed(kind: int, version: int = _wire.PROTOCOL_VERSION, magic: bytes = _wire.MAGIC) -> bytes:
    return FIXED.pack(magic, version, kind, 0)


def header_frames(kind: MessageKind, header: dict) -> list[bytes]:
    return [fixed(int(kind)), msgpack.packb(header, use_bin_type=True)]


def refusal(frames) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        _wire.decode(frames)
    return info.value


# -- encode / decode -----------------------------------------------------------------------------


def test_round_trip_without_arrays():
    header = {"cid": b"\x01" * 16, "seq": 7, "records": [[3, 1, "", "loss", 5, 1.5, 0.25]]}
    message = _wire.decode(_wire.encode(MessageKind.RECORDS, dict(header)))
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
    frames = _wire.encode(MessageKind.RECORDS, {"seq": 1, "records": []}, arrays)
    for array, frame in zip(arrays, frames[2:]):
        assert frame is array  # handed to ZeroMQ as is: no copy on the sending side
    wire = [bytes(frames[0]), bytes(frames[1])] + [memoryview(a).cast("B") if a.size else b"" for a in arrays]
    message = _wire.decode(wire)
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
            _wire.encode(MessageKind.RECORDS, {"seq": 3, "records": [[5, 1, "", "img", 0, 1.0, 0]]}, [image]),
            copy=False,
        )
        assert b.poll(5000)
        frames = b.recv_multipart(copy=False)
        message = _wire.decode(frames)
        np.testing.assert_array_equal(message.arrays[0], image)
        assert np.shares_memory(message.arrays[0], np.frombuffer(frames[2].buffer, np.uint8))
        assert message.header["records"] == [[5, 1, "", "img", 0, 1.0, 0]]
    finally:
        a.close(0)
        b.close(0)
        context.term()


def test_every_message_kind_round_trips():
    for kind in MessageKind:
        assert _wire.decode(_wire.encode(kind, {"cid": b"x"})).kind == kind


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
    other = _wire.PROTOCOL_VERSION + 41
    error = refusal([fixed(3, version=other), msgpack.packb({})])
    assert error.reason == "version_mismatch"
    assert str(other) in error.detail and str(_wire.PROTOCOL_VERSION) in error.detail


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
    header = msgpack.packb({"records": [0] * (_wire.MAX_RECORDS_PER_MESSAGE + 1)})
    assert refusal([fixed(3), header]).reason == "malformed_message"


def test_message_larger_than_the_limit_is_refused():
    huge = np.zeros(_wire.MAX_MESSAGE_BYTES, np.uint8)  # calloc'd: never touched, costs no memory
    header = msgpack.packb({"arrays": [["uint8", [_wire.MAX_MESSAGE_BYTES]]]})
    error = refusal([fixed(3), header, memoryview(huge)])
    assert error.reason == "message_too_large"


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
    count = _wire.MAX_ARRAYS_PER_MESSAGE + 1
    error = refusal(_array_message([["uint8", [1]]] * count, [b"\0"] * count))
    assert str(_wire.MAX_ARRAYS_PER_MESSAGE) in error.detail
    # ... and the limit itself is accepted.
    count -= 1
    assert len(_wire.decode(_array_message([["uint8", [1]]] * count, [b"\0"] * count)).arrays) == count


def test_arrays_in_the_senders_arena_travel_as_offsets_without_frames():
    arena = np.arange(64, dtype=np.float32)
    framed = np.ones(3, np.float32)
    frames = _wire.encode(MessageKind.RECORDS, {"records": []}, [arena[8:16].reshape(2, 4), framed], [32, None])
    assert len(frames) == 3  # the fixed header, the msgpack header, the one framed array
    message = _wire.decode(frames, memoryview(arena))
    np.testing.assert_array_equal(message.arrays[0], arena[8:16].reshape(2, 4))
    np.testing.assert_array_equal(message.arrays[1], framed)


@pytest.mark.parametrize("offset", [-4, 228, 2, "8", None, 1.5])
def test_arena_offsets_outside_the_arena_or_misaligned_are_refused(offset):
    arena = memoryview(np.zeros(64, np.float32))  # 256 bytes: 8 float32 at 228 would overrun it
    frames = header_frames(MessageKind.RECORDS, {"records": [], "arrays": [["float32", [8], offset]]})
    with pytest.raises(ProtocolError) as info:
        _wire.decode(frames, arena)
    assert info.value.reason == "bad_array"


def test_arena_offsets_from_a_sender_without_a_mapped_arena_are_refused():
    frames = header_frames(MessageKind.RECORDS, {"records": [], "arrays": [["float32", [8], 0]]})
    assert refusal(frames).reason == "bad_array"


def _join_rows_one_by_one(items: list) -> list:
    """What join_rows must give: each maximal run of rows joined, every record kept in place."""
    joined: list = []
    for item in items:
        if type(item) is bytes and joined and type(joined[-1]) is bytes:
            joined[-1] += item
        else:
            joined.append(item)
    return joined


@pytest.mark.parametrize("seed", range(40))
def test_join_rows_joins_each_run_of_rows_and_keeps_records_in_place(seed):
    rng = random.Random(seed)
    items: list = []
    for i in range(rng.randrange(0, 60)):
        if rng.random() < 0.3:
            items.append((RecordKind.KEY.value, 1, "", f"t{i}", 0, 0.0, i))
        else:
            items.append(_wire.SCALAR_ROW.pack(i, i, 1.0, float(i)))
    assert _wire.join_rows(items) == _join_rows_one_by_one(items)
    runs = list(_wire.row_runs(items))
    assert sum(stop - start for start, stop, _ in runs) == sum(type(item) is bytes for item in items)
    assert [record for _, _, record in runs if record is not None] == [i for i in items if type(i) is tuple]


def test_pack_records_counts_the_control_records_among_rows():
    row = _wire.SCALAR_ROW.pack(0, 1, 2.0, 3.0)
    key = (RecordKind.KEY.value, 1, "", "t", 0, 0.0, 0)
    text = (RecordKind.TEXT.value, 1, "", "t", 0, 0.0, "hello")
    packed, controls = _wire.pack_records([key, row, row, text, row, key])
    assert controls == 2
    assert msgpack.unpackb(packed, raw=False, use_list=False) == (key, row * 2, text, row, key)
    assert _wire.pack_records([row, row]) == (msgpack.packb([row * 2]), 0)


def test_allowed_dtypes_all_decode():
    for name in sorted(_wire.ALLOWED_DTYPES):
        array = np.ones((2, 3), dtype=name)
        message = _wire.decode(
            [
                bytes(f) if not isinstance(f, np.ndarray) else f.tobytes()
                for f in _wire.encode(MessageKind.RECORDS, {}, [array])
            ]
        )
        np.testing.assert_array_equal(message.arrays[0], array)
    assert not {"object", "complex64", "complex128", "void"} & _wire.ALLOWED_DTYPES


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
        [int(RecordKind.IMAGES), 1, "r" * _wire.MAX_NAME_CHARS, "t" * _wire.MAX_NAME_CHARS, 0, 1.0, 0],
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
        GOOD[:3] + ["t" * (_wire.MAX_NAME_CHARS + 1)] + GOOD[4:],
        GOOD[:2] + ["r" * (_wire.MAX_NAME_CHARS + 1)] + GOOD[3:],
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
    ],
)
def test_bad_records_are_refused(raw):
    with pytest.raises(ProtocolError) as info:
        _check_record(raw, 2)
    assert info.value.reason == "malformed_record"


# -- a real daemon fed bad bytes -----------------------------------------------------------------


@pytest.fixture
def peer(daemon, runtime_dir):
    raw = RawPeer(runtime_dir)
    try:
        yield raw
    finally:
        raw.close()


def cli_status(timeout_s: float = 30.0) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "logger_daemon", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def scalars_in(logdir: str, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(logdir, size_guidance={"scalars": 0})
    accumulator.Reload()
    if tag not in accumulator.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def assert_writer_works(logdir: str, tag: str = "alive") -> None:
    writer = SummaryWriter(logdir)
    for step in range(10):
        writer.add_scalar(tag, step * 2.0, step)
    assert writer.flush(timeout=20)
    assert scalars_in(logdir, tag) == [(step, step * 2.0) for step in range(10)]
    assert writer.close(timeout=20)


def test_daemon_refuses_wrong_version_naming_both(peer):
    other = _wire.PROTOCOL_VERSION + 1
    peer.send([fixed(int(MessageKind.HELLO), version=other), msgpack.packb({"pid": 1, "seq": 1})])
    reply = peer.receive()
    assert reply is not None, "no reply to a wrong protocol version"
    assert reply.kind == MessageKind.REFUSED
    assert reply.header["reason"] == "version_mismatch"
    assert str(other) in reply.header["detail"] and str(_wire.PROTOCOL_VERSION) in reply.header["detail"]


def test_daemon_survives_garbage_and_counts_it_by_reason(daemon, runtime_dir, peer, logdir):
    rng = random.Random(3)
    ok = msgpack.packb({"seq": 1, "records": []})
    garbage: list[tuple[list, str]] = [
        ([b"hello"], "malformed_message"),
        ([b"\0" * 3, ok], "malformed_message"),
        ([b"\xff" * 64, ok, b"x"], "malformed_message"),
        ([fixed(3, magic=b"GLBT"), ok], "malformed_message"),
        ([fixed(3, version=0), ok], "version_mismatch"),
        ([fixed(3, version=65535), ok], "version_mismatch"),
        ([fixed(77), ok], "malformed_message"),
        ([fixed(3), b"\xc1\xc1"], "malformed_message"),
        ([fixed(3), msgpack.packb([1, 2, 3])], "malformed_message"),
        ([fixed(3), msgpack.packb({"records": [], "seq": 1, "arrays": [["object", [1]]]}), b"\0" * 8], "bad_array"),
        ([fixed(3), msgpack.packb({"records": [], "seq": 1, "arrays": [["complex64", [1]]]}), b"\0" * 8], "bad_array"),
        ([fixed(3), msgpack.packb({"records": [], "seq": 1, "arrays": [["float32", [4]]]}), b"\0" * 15], "bad_array"),
        ([fixed(3), ok, b"\0" * 5], "malformed_message"),  # a frame no description names
    ]
    for _ in range(20):  # random bytes, random frame counts: none starts with the magic
        frames = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))) for _ in range(rng.randint(1, 5))]
        if len(frames) >= 2 and frames[0][:4] == _wire.MAGIC:
            continue
        garbage.append((frames, "malformed_message"))
    # Well-formed messages the daemon does not take from a client: counted, no reply.
    silent = [
        (header_frames(MessageKind.WELCOME, {"daemon_pid": 1}), "malformed_message"),
        (header_frames(MessageKind.ACK, {"acked": 5}), "malformed_message"),
        (header_frames(MessageKind.RECORDS, {"records": "nope", "seq": 2}), "malformed_message"),
        (header_frames(MessageKind.RECORDS, {"records": []}), "malformed_message"),
    ]
    for frames, _ in garbage + silent:
        peer.send(frames)
    replies = []
    for _ in garbage:
        reply = peer.receive()
        assert reply is not None, f"only {len(replies)} REFUSED replies for {len(garbage)} bad messages"
        replies.append(reply)
    assert all(r.kind == MessageKind.REFUSED for r in replies)
    assert Counter(r.header["reason"] for r in replies) == Counter(reason for _, reason in garbage)
    assert daemon.poll() is None and daemon_running(runtime_dir)

    assert_writer_works(logdir)
    expected = Counter(reason for _, reason in garbage + silent)
    status = wait_for(
        lambda: (s := cli_status())["records_dropped"] == expected and s,
        timeout_s=10,
        message=f"status to count {dict(expected)}",
    )
    assert status["records_written"] == 10


def hello(peer: RawPeer) -> _wire.Message:
    peer.send_message(MessageKind.HELLO, {"pid": os.getpid(), "host": "raw"})
    welcome = peer.receive()
    assert welcome is not None and welcome.kind == MessageKind.WELCOME
    return welcome


def open_record(logdir: str, stream: int = 1) -> list:
    return [int(RecordKind.OPEN), stream, "", "", 0, time.time(), {"logdir": logdir, "filename_suffix": ""}]


def test_malformed_records_mixed_with_good_ones(daemon, peer, logdir):
    bad_records = [
        "nope",
        [],
        [3, 1, "", "bad"],
        [99, 1, "", "bad", 1, 1.0, 1.0],
        [3, "1", "", "bad", 1, 1.0, 1.0],
        [3, 1, "", "bad", "1", 1.0, 1.0],
        [3, 1, "", "bad", 1, "t", 1.0],
        [3, 1, "", "bad", 1, 1.0, "x"],
        [3, 1, "", "bad", 1, 1.0, True],
        [3, 1, "", "bad", 1, 1.0, 1.0, []],
        [4, 1, "", "bad", 1, 1.0, 0],
        [3, 1, "", "bad", 1 << 63, 1.0, 1.0],
        [3, 1, None, "bad", 1, 1.0, 1.0],
        [3, [1], "", "bad", 1, 1.0, 1.0],
        [3, 1, "", {"a": 1}, 1, 1.0, 1.0],
        [7, 1, "", "bad", 1, 1.0, None],
        [1, 1, "", "", 0, 1.0, "/tmp"],
    ]
    welcome = hello(peer)
    assert welcome.header["daemon_pid"] == daemon.pid
    records = [open_record(logdir)]
    for step in range(20):
        records.append([int(RecordKind.SCALAR), 1, "", "good", step, 1000.0 + step, step / 4])
        records.append(bad_records[step % len(bad_records)])
    records.extend(bad_records)  # every kind at least once
    peer.send_message(MessageKind.RECORDS, {"records": records})
    flush = peer.send_message(MessageKind.FLUSH, {})
    peer.wait_acked(flush)
    assert scalars_in(logdir, "good") == [(step, step / 4) for step in range(20)]
    assert scalars_in(logdir, "bad") == []
    status = cli_status()
    assert status["records_dropped"] == {"malformed_record": 20 + len(bad_records)}
    assert status["records_written"] == 20
    assert daemon.poll() is None


# Each bad scalar travels with good scalars of its own (run, tag), the way a buggy or hostile
# client would send it: the check must not depend on what else is in the message.
_LONG = "t" * (_wire.MAX_NAME_CHARS + 1)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param([3, 1, "", "tag", True, 1.0, 1.0], id="bool-step"),
        pytest.param([3, 1, "", "tag", 7, 1.0, True], id="bool-value"),
        pytest.param([3, 1, "", "tag", 7, True, 1.0], id="bool-wall-time"),
        pytest.param([3, 1, "", "tag", "7", 1.0, 1.0], id="str-step"),
        pytest.param([3, 1, "", "tag", 7.0, 1.0, 1.0], id="float-step"),
        pytest.param([3, 1, "", "tag", 1 << 63, 1.0, 1.0], id="step-beyond-int64"),
        pytest.param([3, 1, "", "tag", 7, 1.0, None], id="none-value"),
        pytest.param([3, 1, "", "tag", 7, "now", 1.0], id="str-wall-time"),
    ],
)
def test_a_malformed_scalar_among_good_ones_of_its_tag_is_refused(daemon, peer, logdir, bad):
    tag = bad[3]
    hello(peer)
    good = [[int(RecordKind.SCALAR), 1, "", tag, step, 50.0 + step, float(step)] for step in (1, 2, 3)]
    peer.send_message(MessageKind.RECORDS, {"records": [open_record(logdir), good[0], bad, good[1], good[2]]})
    peer.wait_acked(peer.send_message(MessageKind.FLUSH, {}))
    status = cli_status()
    assert status["records_dropped"] == {"malformed_record": 1}
    assert status["records_written"] == 3


def test_a_scalar_with_a_tag_too_long_is_refused(daemon, peer, logdir):
    hello(peer)
    good = [[int(RecordKind.SCALAR), 1, "", "tag", step, 50.0 + step, float(step)] for step in (1, 2, 3)]
    bad = [int(RecordKind.SCALAR), 1, "", _LONG, 7, 1.0, 1.0]
    peer.send_message(MessageKind.RECORDS, {"records": [open_record(logdir), good[0], bad, good[1], good[2]]})
    peer.wait_acked(peer.send_message(MessageKind.FLUSH, {}))
    status = cli_status()
    assert status["records_dropped"] == {"malformed_record": 1}
    assert status["records_written"] == 3


def test_records_message_with_a_bad_array_is_refused_whole(daemon, peer, logdir):
    hello(peer)
    seq = peer.send_message(MessageKind.RECORDS, {"records": [open_record(logdir)]})
    peer.wait_acked(seq)
    image = [int(RecordKind.IMAGE), 1, "", "img", 0, 1.0, 0, {"dataformats": "HWC"}]
    scalar = [int(RecordKind.SCALAR), 1, "", "lost", 0, 1.0, 1.0]
    body = msgpack.packb(
        {"cid": peer.cid, "seq": seq + 1, "records": [image, scalar], "arrays": [["uint8", [4, 4, 3]]]}
    )
    peer.send([fixed(int(MessageKind.RECORDS)), body, b"\0" * 47])  # one byte short
    reply = peer.receive()
    assert reply is not None and reply.kind == MessageKind.REFUSED
    assert reply.header["reason"] == "bad_array"
    assert "48" in reply.header["detail"] and "47" in reply.header["detail"]
    peer.seq += 1
    flush = peer.send_message(MessageKind.FLUSH, {})
    peer.wait_acked(flush)
    assert scalars_in(logdir, "lost") == []  # nothing of the refused message was written
    assert cli_status()["records_dropped"] == {"bad_array": 1}
    assert_writer_works(logdir)


def test_daemon_survives_an_array_shape_that_overflows(daemon, peer, logdir):
    body = msgpack.packb({"cid": peer.cid, "seq": 1, "records": [], "arrays": [["uint8", [1 << 32, 1 << 32]]]})
    peer.send([fixed(int(MessageKind.RECORDS)), body, b""])
    reply = peer.receive(timeout_s=5)
    assert reply is not None and reply.header.get("reason") == "bad_array"
    assert daemon.poll() is None
    assert_writer_works(logdir)


def test_daemon_survives_bad_options_of_a_well_formed_record(daemon, peer, logdir):
    hello(peer)
    image = np.zeros((4, 4, 3), np.uint8)
    records = [open_record(logdir), [int(RecordKind.IMAGE), 1, "", "img", 0, 1.0, 0, {"dataformats": 5}]]
    peer.send_message(MessageKind.RECORDS, {"records": records}, [image])
    flush = peer.send_message(MessageKind.FLUSH, {})
    peer.wait_acked(flush, timeout_s=5)
    assert cli_status()["records_dropped"] == {"encode_error": 1}
    assert_writer_works(logdir)


# -- packed scalar rows ------------------------------------------------------------------------


def key_record(key: int, tag: str, run: str = "", stream: int = 1) -> list:
    return [int(RecordKind.KEY), stream, run, tag, 0, 0.0, key]


def rows(*items: tuple) -> bytes:
    return b"".join(_wire.SCALAR_ROW.pack(*item) for item in items)


def test_packed_rows_are_written_by_their_keys_in_step_order(daemon, peer, logdir):
    hello(peer)
    records = [
        open_record(logdir),
        key_record(0, "loss"),
        key_record(7, "acc", run="eval"),
        rows((0, 2, 102.0, 0.5), (7, 1, 201.0, 0.9), (0, 1, 101.0, 0.25)),
        [int(RecordKind.SCALAR), 1, "", "loss", 3, 103.0, 0.125],  # a list record between bins
        rows((0, 4, 104.0, 0.0625)),
    ]
    peer.send_message(MessageKind.RECORDS, {"records": records})
    peer.wait_acked(peer.send_message(MessageKind.FLUSH, {}))
    assert scalars_in(logdir, "loss") == [(1, 0.25), (2, 0.5), (3, 0.125), (4, 0.0625)]
    assert scalars_in(os.path.join(logdir, "eval"), "acc") == [(1, pytest.approx(0.9))]
    status = cli_status()
    assert status["records_written"] == 5 and status["records_dropped"] == {}


def test_rows_of_an_unknown_key_or_a_bad_length_are_refused_and_counted(daemon, peer, logdir):
    hello(peer)
    records = [
        open_record(logdir),
        key_record(0, "fine"),
        rows((0, 1, 1.0, 1.0), (5, 1, 1.0, 1.0), (5, 2, 1.0, 1.0)),  # key 5 was never defined
        rows((0, 2, 2.0, 2.0))[:-1],  # one byte short of a row
        key_record(_wire.MAX_SCALAR_KEYS, "too far"),
    ]
    peer.send_message(MessageKind.RECORDS, {"records": records})
    peer.wait_acked(peer.send_message(MessageKind.FLUSH, {}))
    assert scalars_in(logdir, "fine") == [(1, 1.0)]
    status = cli_status()
    assert status["records_dropped"] == {"unknown_scalar_key": 2, "malformed_record": 2}
    assert daemon.poll() is None
    assert_writer_works(logdir)


def test_a_key_is_the_clients_own(daemon, peer, runtime_dir, logdir):
    hello(peer)
    peer.send_message(MessageKind.RECORDS, {"records": [open_record(logdir), key_record(0, "mine")]})
    other = RawPeer(runtime_dir)
    try:
        hello(other)
        other.send_message(MessageKind.RECORDS, {"records": [open_record(logdir), rows((0, 1, 1.0, 1.0))]})
        other.wait_acked(other.send_message(MessageKind.FLUSH, {}))
    finally:
        other.close()
    assert cli_status()["records_dropped"] == {"unknown_scalar_key": 1}
    assert scalars_in(logdir, "mine") == []


def test_a_large_bin_of_interleaved_keys_is_read_as_columns(daemon, peer, logdir):
    hello(peer)
    steps = range(40)  # more rows than the daemon reads one by one
    interleaved = [
        row
        for step in steps
        for row in ((0, step, 100.0 + step, step / 2), (1, step, 100.0 + step, -step), (9, step, 100.0 + step, 0.0))
    ]
    records = [open_record(logdir), key_record(0, "a"), key_record(1, "b"), rows(*interleaved[::-1])]
    peer.send_message(MessageKind.RECORDS, {"records": records})
    peer.wait_acked(peer.send_message(MessageKind.FLUSH, {}))
    assert scalars_in(logdir, "a") == [(step, step / 2) for step in steps]
    assert scalars_in(logdir, "b") == [(step, float(-step)) for step in steps]
    status = cli_status()
    assert status["records_written"] == 80 and status["records_dropped"] == {"unknown_scalar_key": 40}
