"""A real daemon fed bad bytes by a raw ZeroMQ peer: it refuses what breaks the protocol, counts
each refusal by reason (`logger-daemon status --json`), and stays alive and useful (a
SummaryWriter works end to end afterwards)."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Any

import msgpack
import numpy as np
import pytest
from conftest import wait_for
from daemon_cli import status_json
from raw_peer import RawPeer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_protocol import fixed, header_frames

from logger_client import SummaryWriter, protocol
from logger_client.protocol import MessageKind, RecordKind
from logger_client.runtime import daemon_running

pytestmark = pytest.mark.e2e

# -- a real daemon fed bad bytes -----------------------------------------------------------------


@pytest.fixture
def peer(daemon, runtime_dir):
    raw = RawPeer(runtime_dir)
    try:
        yield raw
    finally:
        raw.close()


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
    other = protocol.PROTOCOL_VERSION + 1
    peer.send([fixed(int(MessageKind.HELLO), version=other), msgpack.packb({"pid": 1, "seq": 1})])
    reply = peer.receive()
    assert reply is not None, "no reply to a wrong protocol version"
    assert reply.kind == MessageKind.REFUSED
    assert reply.header["reason"] == "version_mismatch"
    assert str(other) in reply.header["detail"] and str(protocol.PROTOCOL_VERSION) in reply.header["detail"]


def test_daemon_survives_garbage_and_counts_it_by_reason(daemon, runtime_dir, peer, logdir):
    hello(peer)  # records from a peer that never said HELLO are refused unread (see the next test)
    peer.wait_acked(peer.seq)  # the HELLO's acknowledgement, before the replies counted below
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
        if len(frames) >= 2 and frames[0][:4] == protocol.MAGIC:
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
    replies: list[protocol.Message] = []
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
        lambda: (s := status_json())["records_dropped"] == expected and s,
        timeout_s=10,
        message=f"status to count {dict(expected)}",
    )
    assert isinstance(status, dict) and status["records_written"] == 10


def test_records_of_a_client_the_daemon_does_not_know_are_refused_unread(daemon, peer, logdir):
    """A daemon that restarted does not know its clients: it asks them to say HELLO and resend,
    and takes nothing from them before (no drop: the records are sent again)."""
    peer.send_message(MessageKind.RECORDS, {"records": [[int(RecordKind.TEXT), 1, "", "t", 0, 1.0, "x"]]})
    refused = peer.wait_for_reply(MessageKind.REFUSED)
    assert refused["reason"] == protocol.UNKNOWN_CLIENT
    peer.send_message(MessageKind.HEARTBEAT, {})
    assert peer.wait_for_reply(MessageKind.REFUSED)["reason"] == protocol.UNKNOWN_CLIENT
    status = status_json()
    assert status["records_received"] == 0 and status["records_dropped"] == {}
    hello(peer)
    peer.send_message(MessageKind.RECORDS, {"records": [open_record(logdir)]})
    flush = peer.send_message(MessageKind.FLUSH, {})
    peer.wait_acked(flush)


def test_a_message_lost_on_the_way_is_never_acknowledged_past(daemon, peer, logdir):
    """ZeroMQ drops what is on the way when a connection breaks: a gap in a connection's seqs
    makes the daemon forget the client (it says HELLO and resends), never acknowledge past it."""
    hello(peer)
    scalar = [int(RecordKind.SCALAR), 1, "", "loss", 1, time.time(), 1.0]
    peer.wait_acked(peer.send_message(MessageKind.RECORDS, {"records": [open_record(logdir), scalar], "mid": 1}))
    peer.seq += 1  # message 3 is lost on the way
    later = [int(RecordKind.SCALAR), 1, "", "loss", 3, time.time(), 3.0]
    peer.send_message(MessageKind.RECORDS, {"records": [later], "mid": 3})
    refused = peer.wait_for_reply(MessageKind.REFUSED)
    assert refused["reason"] == protocol.UNKNOWN_CLIENT and "message 3 never arrived" in refused["detail"]
    flush = peer.send_message(MessageKind.FLUSH, {})
    assert peer.wait_for_reply(MessageKind.REFUSED)["reason"] == protocol.UNKNOWN_CLIENT  # nothing past the gap
    assert scalars_in(logdir, "loss") == [(1, 1.0)]
    hello(peer)  # the client's answer: HELLO, its writers again, then everything not acknowledged
    announced = open_record(logdir)
    announced[6] = {**announced[6], "announced": True}
    lost = [int(RecordKind.SCALAR), 1, "", "loss", 2, time.time(), 2.0]
    peer.send_message(MessageKind.RECORDS, {"records": [announced]})
    peer.send_message(MessageKind.RECORDS, {"records": [lost], "mid": 2})
    peer.send_message(MessageKind.RECORDS, {"records": [later], "mid": 3})
    flush = peer.send_message(MessageKind.FLUSH, {})
    peer.wait_acked(flush)
    assert scalars_in(logdir, "loss") == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert status_json()["records_dropped"] == {}


def hello(peer: RawPeer) -> protocol.Message:
    peer.send_message(MessageKind.HELLO, {"pid": os.getpid(), "host": "raw"})
    welcome = peer.receive()
    assert welcome is not None and welcome.kind == MessageKind.WELCOME
    return welcome


def open_record(logdir: str, stream: int = 1) -> list:
    return [int(RecordKind.OPEN), stream, "", "", 0, time.time(), {"logdir": logdir, "filename_suffix": ""}]


def test_malformed_records_mixed_with_good_ones(daemon, peer, logdir):
    bad_records: list[Any] = [
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
    status = status_json()
    assert status["records_dropped"] == {"malformed_record": 20 + len(bad_records)}
    assert status["records_written"] == 20
    assert daemon.poll() is None


# Each bad scalar travels with good scalars of its own (run, tag), the way a buggy or hostile
# client would send it: the check must not depend on what else is in the message.
_LONG = "t" * (protocol.MAX_NAME_CHARS + 1)


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
    status = status_json()
    assert status["records_dropped"] == {"malformed_record": 1}
    assert status["records_written"] == 3


def test_a_scalar_with_a_tag_too_long_is_refused(daemon, peer, logdir):
    hello(peer)
    good = [[int(RecordKind.SCALAR), 1, "", "tag", step, 50.0 + step, float(step)] for step in (1, 2, 3)]
    bad = [int(RecordKind.SCALAR), 1, "", _LONG, 7, 1.0, 1.0]
    peer.send_message(MessageKind.RECORDS, {"records": [open_record(logdir), good[0], bad, good[1], good[2]]})
    peer.wait_acked(peer.send_message(MessageKind.FLUSH, {}))
    status = status_json()
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
    assert status_json()["records_dropped"] == {"bad_array": 1}
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
    assert status_json()["records_dropped"] == {"encode_error": 1}
    assert_writer_works(logdir)


# -- packed scalar rows ------------------------------------------------------------------------


def key_record(key: int, tag: str, run: str = "", stream: int = 1) -> list:
    return [int(RecordKind.KEY), stream, run, tag, 0, 0.0, key]


def rows(*items: tuple) -> bytes:
    return b"".join(protocol.SCALAR_ROW.pack(*item) for item in items)


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
    status = status_json()
    assert status["records_written"] == 5 and status["records_dropped"] == {}


def test_rows_of_an_unknown_key_or_a_bad_length_are_refused_and_counted(daemon, peer, logdir):
    hello(peer)
    records = [
        open_record(logdir),
        key_record(0, "fine"),
        rows((0, 1, 1.0, 1.0), (5, 1, 1.0, 1.0), (5, 2, 1.0, 1.0)),  # key 5 was never defined
        rows((0, 2, 2.0, 2.0))[:-1],  # one byte short of a row
        key_record(protocol.MAX_SCALAR_KEYS, "too far"),
    ]
    peer.send_message(MessageKind.RECORDS, {"records": records})
    peer.wait_acked(peer.send_message(MessageKind.FLUSH, {}))
    assert scalars_in(logdir, "fine") == [(1, 1.0)]
    status = status_json()
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
    assert status_json()["records_dropped"] == {"unknown_scalar_key": 1}
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
    status = status_json()
    assert status["records_written"] == 80 and status["records_dropped"] == {"unknown_scalar_key": 40}
