"""The transport's producer side, in process: the queue, its bounds, and packing into batches.

No socket, no thread: a `Producer` is driven as writers and the I/O thread drive it, and what it
hands the sender is decoded with the protocol's own decoder.
"""

from __future__ import annotations

import random
import threading
import time

import msgpack
import numpy as np
import pytest

from logger_client import _producer as producer_module
from logger_client import protocol
from logger_client._producer import (
    Batch,
    Producer,
    join_rows,
    pack_records,
    row_runs,
)
from logger_client.protocol import SCALAR_ROW, DropReason, RecordKind
from logger_client.settings import Settings

ROW = SCALAR_ROW.pack


def make(wakes: list[int] | None = None, **settings: object) -> Producer:
    base = Settings(**{"runtime_dir": "/nonexistent", "batch_records": 8, **settings})  # type: ignore[arg-type]
    counter = wakes if wakes is not None else []
    return Producer(base, lambda: counter.append(1))


def open_writer(producer: Producer, flush_secs: float = 120.0) -> int:
    return producer.open_writer({"logdir": "/x", "purge_step": None, "filename_suffix": "", "flush_secs": flush_secs})


def append_rows(producer: Producer, key: int | None, steps: range) -> None:
    """What a writer's add_scalar does: append a row, then report a backlog."""
    assert key is not None
    for step in steps:
        producer.queue.append(ROW(key, step, 1.0, float(step)))
        if len(producer.queue) >= producer.batch_records:
            producer.on_backlog(len(producer.queue))


def decoded(batch: object) -> list:
    """A batch's records as the daemon decodes them."""
    assert isinstance(batch, Batch), f"expected a batch, got {batch!r}"
    if batch.packed is not None:
        frames = protocol.encode_packed_records(b"c", 1, 1, batch.packed)
    else:
        frames = protocol.encode(protocol.MessageKind.RECORDS, {"records": batch.records}, batch.arrays)
    return protocol.decode(frames).header["records"]


def record_total(records: list) -> int:
    """Records in a decoded list, each packed row counted."""
    return protocol.record_count(records)


def rows_of(records: list) -> list[tuple]:
    """The (key, step) of every packed row among `records`."""
    return [(key, step) for item in records if type(item) is bytes for key, step, _, _ in SCALAR_ROW.iter_unpack(item)]


# -- packing helpers ---------------------------------------------------------------------------------


def _join_rows_one_by_one(items: list) -> list:
    out: list = []
    for item in items:
        if type(item) is bytes and out and type(out[-1]) is bytes:
            out[-1] += item
        else:
            out.append(item)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_join_rows_joins_each_run_of_rows_and_keeps_records_in_place(seed):
    rng = random.Random(seed)
    items: list = []
    for i in range(rng.randrange(0, 60)):
        if rng.random() < 0.2:
            items.append((int(RecordKind.TEXT), 1, "", "t", i, 1.0, "x"))
        else:
            items.append(ROW(i, i, 1.0, float(i)))
    assert join_rows(items) == _join_rows_one_by_one(items)
    runs = list(row_runs(items))
    covered = [index for start, stop, _ in runs for index in range(start, stop)]
    assert covered == [i for i, item in enumerate(items) if type(item) is bytes]


def test_pack_records_counts_the_control_records_among_rows():
    key = (int(RecordKind.KEY), 1, "", "t", 0, 0.0, 0)
    text = (int(RecordKind.TEXT), 1, "", "t", 0, 1.0, "x")
    row = ROW(0, 1, 2.0, 3.0)
    packed, controls, refused = pack_records([key, row, row, text, row, key])
    assert (controls, refused) == (2, 0)
    assert msgpack.unpackb(packed) == [list(key), row * 2, list(text), row, list(key)]
    assert pack_records([row, row]) == (msgpack.packb([row * 2]), 0, 0)


# -- packing on the producer's thread ----------------------------------------------------------------


def test_a_full_batch_of_rows_is_packed_by_the_call_that_fills_it():
    wakes: list[int] = []
    producer = make(wakes)
    append_rows(producer, 0, range(8))
    assert producer.queue == [] and wakes == [1]
    (batch,) = producer.take_packed()
    assert batch.data == 8
    assert rows_of(decoded(batch)) == [(0, step) for step in range(8)]


def test_a_producer_packing_a_long_queue_cuts_it_into_batches_of_at_most_batch_records():
    producer = make()
    producer._pack_lock.acquire()  # the I/O thread is draining: producers leave the packing to it
    append_rows(producer, 0, range(20))
    producer._pack_lock.release()
    append_rows(producer, 0, range(20, 24))  # the queue crosses 24: this producer packs all of it
    batches = producer.take_packed()
    assert producer.queue == []
    # The daemon checks its queue bound per message: a message never holds more than a batch.
    assert [batch.data for batch in batches] == [8, 8, 8]
    assert [row for batch in batches for row in rows_of(decoded(batch))] == [(0, step) for step in range(24)]


def test_opens_and_keys_never_hold_up_packing_and_are_not_counted_as_data():
    producer = make()
    writer = open_writer(producer)
    key = producer.scalar_key(writer, "", "loss")
    assert not producer.specials_waiting()  # control records are not waited on
    append_rows(producer, key, range(6))
    (batch,) = producer.take_packed()
    records = decoded(batch)
    assert [r[protocol.KIND] for r in records[:2]] == [RecordKind.OPEN, RecordKind.KEY]
    assert batch.data == 6  # the open and the key release nothing when acknowledged
    assert rows_of(records) == [(key, step) for step in range(6)]


def test_an_array_in_the_queue_leaves_packing_to_the_io_thread():
    producer = make()
    producer.submit_array((RecordKind.HISTOGRAM, 1, "", "h", 0, 1.0, np.arange(4.0), {"bins": 10}))
    assert producer.specials_waiting()
    append_rows(producer, 0, range(20))
    assert producer.take_packed() == []
    assert len(producer.queue) == 21


# -- the I/O thread's drain --------------------------------------------------------------------------


def test_a_drain_cuts_batches_at_arrays_flushes_and_the_batch_size_in_queue_order():
    producer = make()
    writer = open_writer(producer)
    key = producer.scalar_key(writer, "", "a")
    append_rows(producer, key, range(3))  # packed nothing yet: under a batch
    image = np.zeros((3, 4, 4), np.float32)
    producer.submit_array((RecordKind.IMAGE, writer, "", "i", 0, 1.0, image, {"dataformats": "CHW"}))
    append_rows(producer, key, range(3, 20))
    flush = producer.request_flush()
    producer.queue.append((RecordKind.TEXT, writer, "", "t", 0, 1.0, "after the flush"))
    out = producer.drain()
    assert not producer.specials_waiting() and producer.queue == []
    assert all(record_total(decoded(b)) <= 8 for b in out if isinstance(b, Batch))
    batches_before = out[: out.index(flush)]
    assert isinstance(out[-1], Batch) and decoded(out[-1])[-1][protocol.VALUE] == "after the flush"
    records = [r for b in batches_before for r in decoded(b)]
    assert rows_of(records) == [(key, step) for step in range(20)]
    arrays = [a for b in batches_before if isinstance(b, Batch) for a in b.arrays]
    assert len(arrays) == 1 and arrays[0] is image
    assert sum(b.data for b in out if isinstance(b, Batch)) == 20 + 1 + 1  # rows, the image, the text


def test_a_burst_of_arrays_is_sent_in_messages_of_bounded_array_bytes(monkeypatch):
    """Each message is acknowledged on its own, so a burst's first slots come back early."""
    monkeypatch.setattr(producer_module, "_MESSAGE_ARRAY_BYTES", 1000)
    producer = make(max_buffer_bytes=10_000)
    for step in range(5):
        producer.submit_array((RecordKind.HISTOGRAM, 1, "", "h", step, 1.0, np.zeros(600, np.uint8), {}))
    batches = [batch for batch in producer.drain() if isinstance(batch, Batch)]
    assert [len(batch.arrays) for batch in batches] == [2, 2, 1]  # closed once past the bound
    assert [record[protocol.STEP] for batch in batches for record in decoded(batch)] == list(range(5))


def test_a_record_carrying_several_arrays_names_each_by_its_index_in_the_message():
    producer = make(max_buffer_bytes=10_000)
    labels, predictions = np.ones(100, np.bool_), np.linspace(0, 1, 100)
    value = {"labels": labels, "predictions": predictions}
    producer.submit_array((RecordKind.PR_CURVE, 1, "", "pr", 0, 1.0, value, {"num_thresholds": 127}))
    assert producer.array_bytes_held() == labels.nbytes + predictions.nbytes
    image = np.zeros((3, 4, 4), np.uint8)
    producer.submit_array((RecordKind.IMAGE, 1, "", "i", 0, 1.0, image, {}))
    (batch,) = producer.drain()
    assert isinstance(batch, Batch) and batch.arrays[0] is labels and batch.arrays[2] is image
    records = decoded(batch)
    assert records[0][protocol.VALUE] == {"labels": 0, "predictions": 1} and records[1][protocol.VALUE] == 2
    assert protocol.check_record(records[0], len(batch.arrays)) is records[0]
    assert batch.array_bytes == labels.nbytes + predictions.nbytes + image.nbytes


def test_each_batch_of_a_mixed_drain_holds_at_most_a_batch_of_records():
    producer = make()
    producer.submit_array((RecordKind.HISTOGRAM, 1, "", "h", 0, 1.0, np.arange(4.0), {}))
    append_rows(producer, 0, range(50))
    out = producer.drain()
    sizes = [record_total(decoded(b)) for b in out]
    assert sizes == [8] * 6 + [3]
    assert rows_of([r for b in out for r in decoded(b)]) == [(0, s) for s in range(50)]


def test_batches_producers_packed_go_before_what_is_still_queued():
    producer = make()
    append_rows(producer, 0, range(8))  # packed by the producer
    append_rows(producer, 1, range(3))  # still queued
    out = producer.drain()
    assert [rows_of(decoded(b)) for b in out] == [[(0, s) for s in range(8)], [(1, s) for s in range(3)]]


# -- bounds ------------------------------------------------------------------------------------------


def test_arrays_beyond_the_byte_bound_are_dropped_and_counted():
    producer = make(max_buffer_bytes=1000)
    array = np.zeros(100, np.float64)  # 800 bytes
    producer.submit_array((RecordKind.HISTOGRAM, 1, "", "h", 0, 1.0, array, {}))
    producer.submit_array((RecordKind.HISTOGRAM, 1, "", "h", 1, 1.0, array.copy(), {}))
    assert producer.dropped() == {DropReason.CLIENT_BUFFER_FULL.value: 1}
    assert producer.array_bytes_held() == 800
    (batch,) = producer.drain()
    assert isinstance(batch, Batch)
    producer.release(batch.data, batch.array_bytes)
    assert producer.array_bytes_held() == 0


def test_arrays_piling_up_wake_the_io_thread_once_per_quarter_of_the_bound():
    wakes: list[int] = []
    producer = make(wakes, max_buffer_bytes=4000)
    for step in range(4):  # 250 bytes each: the fifth crosses a quarter of the bound
        producer.submit_array((RecordKind.HISTOGRAM, 1, "", "h", step, 1.0, np.zeros(250, np.uint8), {}))
    assert wakes == []
    producer.submit_array((RecordKind.HISTOGRAM, 1, "", "h", 4, 1.0, np.zeros(250, np.uint8), {}))
    assert wakes == [1]
    producer.submit_array((RecordKind.HISTOGRAM, 1, "", "h", 5, 1.0, np.zeros(250, np.uint8), {}))
    assert wakes == [1]  # not again until the I/O thread took them
    producer.drain()
    for step in range(5):
        producer.submit_array((RecordKind.HISTOGRAM, 1, "", "h", step, 1.0, np.zeros(250, np.uint8), {}))
    assert wakes == [1, 1]


def test_records_beyond_the_record_bound_are_dropped_newest_first_but_never_controls():
    producer = make(max_pending_records=16)
    append_rows(producer, 0, range(16))  # two batches packed: unacknowledged, they take the bound
    assert producer.room() == 0
    append_rows(producer, 0, range(16, 32))  # queued: no room to pack them
    key = producer.scalar_key(1, "", "late")  # the bound never drops a key
    append_rows(producer, 0, range(32, 37))
    assert producer.dropped() == {DropReason.CLIENT_QUEUE_FULL.value: 5}
    assert producer.queue[16][protocol.KIND] == RecordKind.KEY and producer.queue[16][protocol.VALUE] == key
    packed = producer.take_packed()
    producer.release(sum(b.data for b in packed), 0)  # acknowledged: room again
    assert producer.room() == 16
    out = producer.drain()
    assert rows_of([r for b in out for r in decoded(b)]) == [(0, s) for s in range(16, 32)]


def test_giving_up_counts_everything_unacknowledged_as_lost():
    producer = make()
    open_writer(producer)
    append_rows(producer, 0, range(8))  # packed, never sent
    out = producer.drain()  # the open and nothing else
    append_rows(producer, 0, range(3))  # queued
    producer.request_flush()
    assert sum(b.data for b in out if isinstance(b, Batch)) == 8
    assert producer.give_up() == 11
    assert producer.dropped() == {DropReason.DAEMON_UNREACHABLE.value: 11}


# -- writers, linger, fork ---------------------------------------------------------------------------


def announced(producer: Producer) -> list[tuple]:
    records = decoded(producer.announcement())
    return sorted((record[protocol.KIND], record[protocol.WRITER]) for record in records)


def test_a_new_daemon_gets_the_open_writers_and_their_keys_and_no_purge():
    producer = make()
    kept = producer.open_writer({"logdir": "/x", "purge_step": 7, "filename_suffix": "", "flush_secs": 120.0})
    producer.scalar_key(kept, "", "a")
    (opened, key) = decoded(producer.announcement())
    assert (opened[protocol.KIND], key[protocol.KIND]) == (RecordKind.OPEN, RecordKind.KEY)
    assert opened[protocol.VALUE]["purge_step"] is None  # purged once: again it would hide data
    assert opened[protocol.VALUE]["announced"] is True  # the writer continues its session


def test_a_closed_writer_is_announced_until_everything_it_logged_is_acknowledged():
    """Its records (and its CLOSE) may be sent again to a new daemon, which must know it."""
    producer = make()
    kept, closed = open_writer(producer), open_writer(producer)
    producer.scalar_key(kept, "", "a")
    producer.scalar_key(closed, "", "b")
    append_rows(producer, 1, range(3))
    producer.close_writer(closed)
    out = producer.drain()
    assert announced(producer) == [
        (RecordKind.OPEN, kept),
        (RecordKind.OPEN, closed),
        (RecordKind.KEY, kept),
        (RecordKind.KEY, closed),
    ]
    producer.release(sum(batch.data for batch in out if isinstance(batch, Batch)), 0)  # all acknowledged
    assert announced(producer) == [(RecordKind.OPEN, kept), (RecordKind.KEY, kept)]


def test_a_forked_child_puts_its_writers_at_the_head_of_its_queue():
    producer = make()
    kept = open_writer(producer)
    producer.scalar_key(kept, "", "a")
    producer.drain()
    append_rows(producer, 0, range(2))
    producer.announce_again()
    kinds = [(item[protocol.KIND], item[protocol.WRITER]) for item in producer.queue if type(item) is tuple]
    assert kinds == [(RecordKind.OPEN, kept), (RecordKind.KEY, kept)]
    assert type(producer.queue[2]) is bytes


def test_a_writer_asking_for_a_short_flush_secs_shortens_the_linger():
    producer = make(linger_s=0.25)
    open_writer(producer, flush_secs=0.1)
    assert producer.linger_s == pytest.approx(0.05)
    open_writer(producer, flush_secs=120)
    assert producer.linger_s == pytest.approx(0.05)


def test_reset_after_fork_empties_the_queue_and_frees_locks_held_at_the_fork():
    producer = make()
    writer = open_writer(producer)
    append_rows(producer, 0, range(3))
    holder = threading.Thread(target=producer._pack_lock.acquire)  # a thread of the parent holds it
    holder.start()
    holder.join()
    producer.reset_after_fork()
    # Nothing of the parent's; the child's writer announced again, ahead of anything it logs.
    assert [(item[protocol.KIND], item[protocol.WRITER]) for item in producer.queue] == [(RecordKind.OPEN, writer)]
    start = time.monotonic()
    append_rows(producer, 0, range(7))  # packing takes the pack lock: it must be free
    assert time.monotonic() - start < 1
    (batch,) = producer.take_packed()
    assert decoded(batch)[0][protocol.KIND] == RecordKind.OPEN and batch.data == 7


@pytest.mark.parametrize(
    "log",
    [
        lambda producer, writer: append_rows(producer, 0, range(1)),  # one row, no batch packed
        lambda producer, writer: append_rows(producer, 0, range(20)),  # batches packed
        lambda producer, writer: producer.request_flush(),
        lambda producer, writer: open_writer(producer),
        lambda producer, writer: producer.scalar_key(writer, "", "new"),
    ],
    ids=["row", "batches", "flush", "writer", "key"],
)
def test_a_forked_child_has_logged_once_anything_beyond_its_announcements_is_queued(log):
    """What wakes a forked child's I/O thread to connect: its announcements alone do not."""
    producer = make()
    writer = open_writer(producer)
    producer.scalar_key(writer, "", "a")
    append_rows(producer, 0, range(3))
    producer.reset_after_fork()
    assert not producer.logged_since_fork()
    log(producer, writer)
    assert producer.logged_since_fork()
