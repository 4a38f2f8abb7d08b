"""Plain scalars as packed rows: what the client's fast path must keep from the slow one.

Every test runs a real daemon and reads the event files back with TensorBoard's own loader.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import threading
from typing import Any

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from logger_client import SummaryWriter, _fast, _producer
from logger_client._daemon_transport import get_transport

pytestmark = pytest.mark.e2e


def reload(logdir: str) -> EventAccumulator:
    accumulator = EventAccumulator(logdir, size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(logdir: str, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in reload(logdir).Scalars(tag)]


def test_torch_positional_flags_mean_new_style_and_double_precision(daemon, logdir):
    writer = SummaryWriter(logdir)
    value = 1 / 3
    writer.add_scalar("positional", value, 0, 1000.0, True, True)  # torch: (..., new_style, double_precision)
    writer.add_scalar("keywords", value, 0, 1000.0, new_style=True, double_precision=True)
    assert writer.close(timeout=20)
    tensors = reload(logdir).Tensors
    (positional,), (keywords,) = tensors("positional"), tensors("keywords")
    assert tensor_util.make_ndarray(positional.tensor_proto).dtype == np.float64
    assert tensor_util.make_ndarray(positional.tensor_proto).item() == value
    assert positional.tensor_proto == keywords.tensor_proto


def test_a_display_name_that_is_not_a_str_is_refused(daemon, logdir):
    writer = SummaryWriter(logdir)
    with pytest.raises(TypeError, match="display_name"):
        writer.add_scalar("x", 1.0, 0, None, 5)  # type: ignore[arg-type]  # wrong on purpose
    writer.close(timeout=20)


@pytest.mark.parametrize(
    "step, error",
    [
        (1 << 63, ValueError),
        (-(1 << 63) - 1, ValueError),
        ("3", TypeError),
        (object(), TypeError),
    ],
)
def test_a_bad_step_is_refused_at_the_call_naming_global_step(daemon, logdir, step, error):
    writer = SummaryWriter(logdir)
    writer.add_scalar("x", 0.0, 0)  # the tag's key exists: the fast path is the one checking
    with pytest.raises(error, match="global_step"):
        writer.add_scalar("x", 1.0, step)
    assert writer.close(timeout=20)
    assert scalars(logdir, "x") == [(0, 0.0)]


def test_steps_of_other_types_are_converted_as_tensorboardx_does(daemon, logdir):
    writer = SummaryWriter(logdir)
    steps: tuple[Any, ...] = (None, np.int64(1), 2.9, np.float32(3.0), True, (1 << 63) - 1, -(1 << 63))
    for step in steps:
        writer.add_scalar("x", 1.0, step)
    assert writer.close(timeout=20)
    assert sorted(step for step, _ in scalars(logdir, "x")) == sorted([0, 1, 2, 3, 1, (1 << 63) - 1, -(1 << 63)])


def test_threads_logging_new_tags_at_once_lose_nothing(daemon, logdir):
    writer = SummaryWriter(logdir)
    start = threading.Barrier(8)

    def log(thread: int) -> None:
        start.wait()
        for step in range(30):
            for tag in range(12):  # every thread meets tags 0..11, most of them new to the writer
                writer.add_scalar(f"shared/{tag}", float(step), step)
            writer.add_scalar(f"own/{thread}", float(step), step)

    threads = [threading.Thread(target=log, args=(index,)) for index in range(8)]
    for worker in threads:
        worker.start()
    for worker in threads:
        worker.join()
    assert writer.close(timeout=30)
    accumulator = reload(logdir)
    for tag in range(12):
        assert sorted(e.step for e in accumulator.Scalars(f"shared/{tag}")) == sorted(list(range(30)) * 8)
    for thread in range(8):
        assert [e.step for e in accumulator.Scalars(f"own/{thread}")] == list(range(30))
    assert writer.stats()["records_dropped"] == {}


def test_tags_beyond_the_key_limit_travel_as_records(daemon, logdir, monkeypatch):
    writer = SummaryWriter(logdir)
    writer.add_scalar("keyed", 1.0, 0)
    monkeypatch.setattr(_producer, "MAX_SCALAR_KEYS", 0)  # this client has no key left to give
    for step in range(3):
        writer.add_scalar("keyed", float(step), step + 1)
        writer.add_scalar("unkeyed", float(step), step)
        writer.add_scalars("group", {"a": float(step)}, step)
    assert writer.close(timeout=20)
    assert scalars(logdir, "keyed") == [(0, 1.0), (1, 0.0), (2, 1.0), (3, 2.0)]
    assert scalars(logdir, "unkeyed") == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert scalars(f"{logdir}/group/a", "group") == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_a_writer_reopened_after_close_keys_its_new_stream(daemon, logdir):
    writer = SummaryWriter(logdir)
    writer.add_scalar("x", 1.0, 0)
    assert writer.close(timeout=20)
    writer.add_scalar("x", 2.0, 1)  # as tensorboardX: use after close reopens
    writer.add_scalars("g", {"k": 3.0}, 1)
    assert writer.close(timeout=20)
    assert sorted(scalars(logdir, "x")) == [(0, 1.0), (1, 2.0)]
    assert scalars(f"{logdir}/g/k", "g") == [(1, 3.0)]


def test_a_burst_of_new_tags_arrives_whole(daemon, logdir):
    """New tags' keys travel inside batches (see test_producer for the packing itself)."""
    writer = SummaryWriter(logdir)
    assert writer.flush(timeout=20)
    batch = get_transport().batch_records
    for step in range(3 * batch):
        writer.add_scalar(f"burst/{step % 7}" if step < 100 else "burst/late", float(step), step)
    assert writer.close(timeout=30)
    total = sum(len(scalars(logdir, f"burst/{tag}")) for tag in range(7)) + len(scalars(logdir, "burst/late"))
    assert total == 3 * batch
    assert writer.stats()["records_dropped"] == {}


def test_the_c_extension_is_built_where_a_compiler_is() -> None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    if not (shutil.which(compiler) and headers):
        pytest.skip("no C compiler or Python headers here: the client runs in pure Python")
    if os.environ.get("LOGGER_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("LOGGER_PURE_PYTHON is set")
    assert _fast.NATIVE, "a C compiler is here, but logger_client._speedups was not built or fails to import"


def test_a_burst_right_after_construction_is_packed_as_it_goes(daemon, logdir) -> None:
    """A writer's OPEN waits in the queue until the I/O thread takes it. A burst of calls must not
    wait for that: each full batch is packed by the call that fills it, so the queue stays within
    a batch even while the I/O thread gets no turn at all (before, it held the whole burst, and a
    burst of the bound's size right after construction lost its last records)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1.0)  # from the OPEN on, the I/O thread gets no turn until the burst ends
    try:
        writer = SummaryWriter(logdir)
        transport = get_transport()
        batch = transport.batch_records
        longest = 0
        for i in range(4 * batch):
            writer.add_scalar("burst", float(i), i)
            if i % 256 == 0:
                longest = max(longest, len(transport.queue))
    finally:
        sys.setswitchinterval(previous)
    assert writer.close()
    assert longest <= batch, f"the queue held {longest} records: the burst waited for the I/O thread"
    assert [step for step, _ in scalars(logdir, "burst")] == list(range(4 * batch))


def test_rows_between_arrays_texts_keys_and_flushes_all_arrive_in_order(daemon, logdir, monkeypatch):
    """With an array queued, the I/O thread takes everything queued item by item (the mixed drain;
    test_producer checks its batches): all of it arrives, in order, next to the arrays, texts,
    keys and flushes."""
    monkeypatch.setenv("LOGGER_BATCH_RECORDS", "64")
    writer = SummaryWriter(logdir)
    assert get_transport().batch_records == 64
    assert writer.flush(timeout=20)
    writer.add_scalar("a", 0.0, 0)  # the tag's key, then rows
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1.0)  # the I/O thread gets no turn: all of it waits for one drain
    try:
        writer.add_histogram("h", np.arange(10.0), 0)
        for step in range(1, 200):
            writer.add_scalar("a", float(step), step)
        writer.add_text("t", "between", 0)
        for step in range(200, 330):
            writer.add_scalar("a", float(step), step)
            writer.add_scalar("b", float(-step), step)  # a new key in the middle of a run
        writer.add_image("i", np.zeros((3, 4, 4), np.float32), 0)
    finally:
        sys.setswitchinterval(previous)
    assert writer.flush(timeout=20)
    for step in range(330, 400):
        writer.add_scalar("a", float(step), step)
    assert writer.close(timeout=20)
    assert scalars(logdir, "a") == [(step, float(step)) for step in range(400)]
    assert scalars(logdir, "b") == [(step, float(-step)) for step in range(200, 330)]
    accumulator = reload(logdir)
    assert len(accumulator.Histograms("h")) == 1 and len(accumulator.Images("i")) == 1
    assert len(accumulator.Tensors("t/text_summary")) == 1
    assert writer.stats()["records_dropped"] == {}
