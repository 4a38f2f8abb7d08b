"""The transport's sender, in process, over a real ZeroMQ socket pair (inproc): numbering, parking
while the peer cannot take a message, acknowledgements, flushes, refusals and the shared arena.

The test plays the daemon on a ROUTER socket, with the protocol's own encoder and decoder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
import zmq
from conftest import wait_for

from logger_client import protocol
from logger_client._arena import Arena
from logger_client._producer import Batch, FlushRequest, pack_records
from logger_client._sender import Sender, connect_dealer
from logger_client.protocol import SCALAR_ROW, MessageKind, RecordKind
from logger_daemon.server import map_arena


class FakeDaemon:
    """The daemon's end of the pair: receives decoded messages, answers as told."""

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self.sock = context.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.arena: memoryview | None = None

    def receive(self) -> tuple[bytes, protocol.Message]:
        assert self.sock.poll(5000), "no message within 5 s"
        identity, *frames = self.sock.recv_multipart(copy=False)
        return identity.bytes, protocol.decode(frames, self.arena)

    def reply(self, identity: bytes, kind: MessageKind, header: dict) -> None:
        self.sock.send_multipart([identity, *protocol.encode(kind, header)])


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


class Released:
    """The (records, array bytes) acknowledgements released, as the transport's producer sees them."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, records: int, array_bytes: int) -> None:
        self.calls.append((records, array_bytes))

    def take(self) -> tuple[int, int]:
        total = (sum(r for r, _ in self.calls), sum(b for _, b in self.calls))
        self.calls.clear()
        return total


RELEASED: dict[int, Released] = {}


def sender_on(sock: zmq.Socket, arena: Arena | None = None) -> Sender:
    released = Released()
    sender = Sender(sock, arena, released)
    RELEASED[id(sender)] = released
    return sender


@pytest.fixture
def pair(context: zmq.Context) -> tuple[Sender, FakeDaemon]:
    daemon = FakeDaemon(context, "inproc://sender-test")
    return sender_on(connect_dealer(context, "inproc://sender-test")), daemon


def receive_all(sender: Sender) -> tuple[int, int]:
    """What acknowledgements released, once the reply had time to cross the pair."""
    assert sender.sock.poll(5000), "no reply within 5 s"
    sender.receive()
    return RELEASED[id(sender)].take()


def rows_batch(steps: range) -> Batch:
    packed, _, _ = pack_records([SCALAR_ROW.pack(0, step, 1.0, float(step)) for step in steps])
    return Batch(packed, len(steps))


def test_messages_are_numbered_from_the_hello_on(pair):
    sender, daemon = pair
    sender.hello()
    _, hello = daemon.receive()
    assert hello.header["cid"] == sender.cid
    assert hello.kind == MessageKind.HELLO and hello.header["seq"] == 1 and hello.header["pid"] == os.getpid()
    assert sender.send_batch(rows_batch(range(5))) == 2
    _, records = daemon.receive()
    assert records.kind == MessageKind.RECORDS and records.header["seq"] == 2 and records.header["cid"] == sender.cid
    assert protocol.record_count(records.header["records"]) == 5


def test_an_acknowledgement_releases_every_message_up_to_it(pair):
    sender, daemon = pair
    first = sender.send_batch(rows_batch(range(3)))
    image = np.arange(48, dtype=np.float32).reshape(3, 4, 4)
    batch = Batch()
    batch.records.append((RecordKind.IMAGE, 1, "", "i", 0, 1.0, 0, {}))
    batch.arrays.append(image)
    batch.array_bytes, batch.data = image.nbytes, 1
    second = sender.send_batch(batch)
    third = sender.send_batch(rows_batch(range(4)))
    daemon.receive()
    identity, message = daemon.receive()
    np.testing.assert_array_equal(message.arrays[0], image)  # framed: no arena was shared
    daemon.receive()
    daemon.reply(identity, MessageKind.ACK, {"acked": second})
    assert receive_all(sender) == (4, image.nbytes)
    daemon.reply(identity, MessageKind.ACK, {"acked": third, "dropped": {"step_out_of_order": 2}})
    assert receive_all(sender) == (4, 0)
    sent, acked, refused = sender.counts()
    assert (sent, acked, refused) == (8, 8, {"step_out_of_order": 2})
    assert first < second < third and sender.welcomed


def test_a_flush_is_done_once_acknowledged_and_not_before(pair):
    sender, daemon = pair
    sender.send_batch(rows_batch(range(2)))
    request = FlushRequest()
    seq = sender.send_flush(request)
    daemon.receive()
    identity, flush = daemon.receive()
    assert flush.kind == MessageKind.FLUSH and flush.header["seq"] == seq == request.seq
    daemon.reply(identity, MessageKind.ACK, {"acked": seq - 1})
    receive_all(sender)
    assert not request.done.is_set()
    daemon.reply(identity, MessageKind.ACK, {"acked": seq})
    receive_all(sender)
    assert request.done.is_set()


def test_an_acknowledgement_of_0_carries_drops_and_why_the_disk_holds_the_rest_and_releases_nothing(pair):
    sender, daemon = pair
    request = FlushRequest()
    sender.send_batch(rows_batch(range(10)))
    seq = sender.send_flush(request)
    identity, _ = daemon.receive()
    daemon.receive()
    daemon.reply(identity, MessageKind.ACK, {"acked": 0, "dropped": {"io_error": 3}, "write_error": "No space"})
    assert receive_all(sender) == (0, 0)
    assert sender.counts() == (10, 0, {"io_error": 3}) and sender.write_error == "No space"
    assert not request.done.is_set()
    daemon.reply(identity, MessageKind.ACK, {"acked": seq})  # the disk took the rest
    assert receive_all(sender) == (10, 0)
    assert request.done.is_set() and sender.write_error is None


def test_messages_the_peer_cannot_take_are_parked_and_sent_in_order_later(context):
    daemon = FakeDaemon(context, "inproc://slow-daemon")  # binds with the default queue, reads nothing yet
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 1)
    sock.connect("inproc://slow-daemon")
    daemon.sock.setsockopt(zmq.RCVHWM, 1)
    sender = sender_on(sock)
    array = np.zeros(100, np.uint8)
    sent = 0
    while not sender.unsent_bytes():  # until the pipe is full and a message is parked
        batch = Batch()
        batch.records.append((RecordKind.HISTOGRAM, 1, "", "h", sent, 1.0, 0, {}))
        batch.arrays.append(array)
        batch.array_bytes, batch.data = array.nbytes, 1
        sender.send_batch(batch)
        sent += 1
        assert sent < 10_000, "no message was ever parked"
    sender.send_batch(rows_batch(range(2)))  # behind a parked message: parked too, to keep the order
    sender.heartbeat()  # unnumbered: dropped, not parked, when the pipe is full
    assert sender.unsent_bytes() == 100
    seqs: list[int] = []
    while len(seqs) < sent + 1:
        seqs.append(daemon.receive()[1].header["seq"])
        sender.retry_unsent()
    assert seqs == list(range(1, sent + 2)) and sender.unsent_bytes() == 0
    assert not daemon.sock.poll(100)  # nothing more: the heartbeat was dropped


def test_a_refusal_and_an_undecodable_reply_are_errors(pair):
    sender, daemon = pair
    sender.hello()
    identity, _ = daemon.receive()
    daemon.reply(identity, MessageKind.REFUSED, {"reason": "version_mismatch", "detail": "speaks 99"})
    receive_all(sender)
    assert sender.error is not None and "speaks 99" in sender.error
    daemon.sock.send_multipart([identity, b"garbage", b"more"])
    receive_all(sender)
    assert "speaks 99" in sender.error  # the first error is kept


def test_arrays_in_a_shared_arena_travel_as_offsets_and_are_held_until_acknowledged(context):
    arena = Arena(8 * 2**20)
    daemon = FakeDaemon(context, "inproc://arena-test")
    sender = sender_on(connect_dealer(context, "inproc://arena-test"), arena)
    sender.hello()
    identity, hello = daemon.receive()
    daemon.arena = map_arena(hello.header["arena"])
    assert daemon.arena is not None
    daemon.reply(identity, MessageKind.WELCOME, {"arena": True})
    receive_all(sender)
    arena.empty((64, 64), np.dtype(np.float32))  # the first array starts faulting the arena in
    wait_for(lambda: arena.faulted_bytes, message="the arena to fault in")
    array = arena.empty((64, 64), np.dtype(np.float32))
    offset = arena.offset_of(array)
    assert offset is not None
    array[:] = 7.0
    batch = Batch()
    batch.records.append((RecordKind.HISTOGRAM, 1, "", "h", 0, 1.0, 0, {}))
    batch.arrays.append(array)
    batch.array_bytes, batch.data = array.nbytes, 1
    seq = sender.send_batch(batch)
    _, message = daemon.receive()
    assert len(message.header["arrays"][0]) == 3  # [dtype, shape, offset]: no frame
    assert (message.arrays[0] == 7.0).all()
    del array, batch
    probe = arena.empty((64, 64), np.dtype(np.float32))
    assert arena.offset_of(probe) != offset  # the sender holds the slot until the daemon has read it
    del probe
    daemon.reply(identity, MessageKind.ACK, {"acked": seq})
    receive_all(sender)
    assert arena.offset_of(arena.empty((64, 64), np.dtype(np.float32))) == offset  # back, and reused
    arena.close()


def test_a_flush_is_done_only_after_what_its_acknowledgement_released_is_counted(context):
    """A caller back from flush() must find the acknowledged records released (stats, bounds)."""
    daemon = FakeDaemon(context, "inproc://order")
    request = FlushRequest()
    seen: list[bool] = []  # whether the flush was done when its records were released
    sender = Sender(connect_dealer(context, "inproc://order"), None, lambda r, b: seen.append(request.done.is_set()))
    sender.send_batch(rows_batch(range(3)))
    seq = sender.send_flush(request)
    identity, _ = daemon.receive()
    daemon.receive()
    daemon.reply(identity, MessageKind.ACK, {"acked": seq})
    assert sender.sock.poll(5000)
    sender.receive()
    assert seen == [False] and request.done.is_set()


def test_a_new_daemon_gets_hello_the_writers_then_everything_unacknowledged_in_order(context):
    first = FakeDaemon(context, "inproc://first")
    sender = sender_on(connect_dealer(context, "inproc://first"))
    sender.hello()
    identity, _ = first.receive()
    batches = [rows_batch(range(n, n + 2)) for n in range(0, 8, 2)]
    for batch in batches:
        sender.send_batch(batch)
    request = FlushRequest()
    sender.send_flush(request)
    mids = [first.receive()[1].header["mid"] for _ in batches]
    first.receive()
    first.reply(identity, MessageKind.ACK, {"acked": 3})  # the first two written, then it died
    assert receive_all(sender) == (4, 0)
    second = FakeDaemon(context, "inproc://second")
    sender.reconnect(connect_dealer(context, "inproc://second"))
    announcement = Batch(pack_records([(RecordKind.OPEN, 1, "", "", 0, 1.0, {"logdir": "/x"})])[0], 0)
    sender.resend([announcement])
    received = [second.receive() for _ in range(5)]
    assert len({identity for identity, _ in received}) == 1  # one new connection
    assert {message.header["cid"] for _, message in received} == {sender.cid}  # the same client
    kinds = [message.kind for _, message in received]
    assert kinds == [
        MessageKind.HELLO,
        MessageKind.RECORDS,
        MessageKind.RECORDS,
        MessageKind.RECORDS,
        MessageKind.FLUSH,
    ]
    assert received[1][1].header["mid"] == 0  # the writers announced again: no message id
    assert [message.header["mid"] for _, message in received[2:4]] == mids[2:]  # ids kept
    seqs = [message.header["seq"] for _, message in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5  # renumbered for this connection
    second.reply(received[0][0], MessageKind.ACK, {"acked": seqs[-1]})
    assert receive_all(sender) == (4, 0) and request.done.is_set() and request.ok


def test_a_daemon_that_does_not_know_the_client_makes_it_say_hello_again(pair):
    sender, daemon = pair
    sender.send_batch(rows_batch(range(2)))
    identity, _ = daemon.receive()
    daemon.reply(identity, MessageKind.REFUSED, {"reason": protocol.UNKNOWN_CLIENT, "detail": "say HELLO"})
    receive_all(sender)
    assert sender.unknown_to_daemon and sender.error is None
