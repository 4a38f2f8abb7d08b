"""The optional C extension (`logger_client._speedups`): its scalar row against the Python
fallback in `_fast`, its streaming copy, and what the daemon writes of arrays copied that way
(read back with TensorBoard's loader)."""

from __future__ import annotations

import gc
import io
import math
import os
import subprocess
import sys
import time
import weakref
from typing import Any

import numpy as np
import pytest
from logdirs import accumulator
from PIL import Image

from logger_client import SummaryWriter, _fast
from logger_client._convert import STREAM_MIN_BYTES, to_owned_array
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import SCALAR_ROW

extension = pytest.importorskip("logger_client._speedups", reason="the optional C extension was not built")
stream_copy = extension.stream_copy
NOW = 1.5e9  # a wall time given explicitly (2017: earlier than any "now" of a test run)

# (step, walltime, value): the C row and the Python fallback's must agree on each, -1 included.
ROW_ARGUMENTS = [
    (0, NOW, 0.5),
    (None, NOW, -1.25),
    (7, NOW, math.inf),
    (-(1 << 63), NOW, 1.0),
    ((1 << 63) - 1, 0.0, 2.0),
    (1 << 63, NOW, 1.0),
    (-(1 << 63) - 1, NOW, 1.0),
    (True, NOW, 1.0),
    (3.0, NOW, 1.0),
    (np.int64(3), NOW, 1.0),
    ("3", NOW, 1.0),
    (3, 5, 1.0),
    (3, np.float64(NOW), 1.0),
    (3, NOW, 1),
    (3, NOW, np.float32(1.0)),
    (3, NOW, None),
]


@pytest.mark.parametrize("step, walltime, value", ROW_ARGUMENTS)
@pytest.mark.parametrize("key", [0, 9, (1 << 32) - 1])
def test_the_c_row_and_the_python_row_agree(key: int, step, walltime, value) -> None:
    native: list = ["queued"]
    python: list = ["queued"]
    length = extension.append_scalar_row(native, key, step, walltime, value)
    assert length == _fast._append_scalar_row(python, key, step, walltime, value)
    assert native == python
    if length == -1:
        assert native == ["queued"]
    else:
        assert length == 2 and SCALAR_ROW.unpack(native[1]) == (key, step or 0, walltime, value)


def test_a_row_without_walltime_is_stamped_now_by_both() -> None:
    rows: list = []
    before = time.time()
    extension.append_scalar_row(rows, 1, 2, None, 3.0)
    _fast._append_scalar_row(rows, 1, 2, None, 3.0)
    after = time.time()
    assert [before <= SCALAR_ROW.unpack(row)[2] <= after for row in rows] == [True, True]


def test_the_c_row_goes_to_any_queue_with_append_and_len() -> None:
    class Queue:
        def __init__(self) -> None:
            self.items: list = []

        def append(self, item: bytes) -> None:
            self.items.append(item)

        def __len__(self) -> int:
            return 10 * len(self.items)

    queue = Queue()
    assert extension.append_scalar_row(queue, 1, 2, NOW, 3.0) == 10
    assert [SCALAR_ROW.unpack(row) for row in queue.items] == [(1, 2, NOW, 3.0)]
    with pytest.raises(AttributeError):
        extension.append_scalar_row((), 1, 2, None, 3.0)


def test_the_c_row_refuses_what_is_not_a_key() -> None:
    with pytest.raises(TypeError, match="key must be an int"):
        extension.append_scalar_row([], "1", 2, None, 3.0)
    with pytest.raises(TypeError, match="5 arguments"):
        extension.append_scalar_row([], 1, 2, None)
    with pytest.raises(OverflowError):
        extension.append_scalar_row([], 1 << 32, 2, None, 3.0)


GUARD = 64  # bytes on each side of a destination that a copy must leave alone


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 63, 64, 65, 127, 4096 + 3, STREAM_MIN_BYTES + 5])
@pytest.mark.parametrize("misalignment", [0, 1, 8, 15])
def test_stream_copy_copies_every_byte_and_nothing_around_them(size: int, misalignment: int) -> None:
    source = np.random.default_rng(size).integers(0, 256, size=size + misalignment, dtype=np.uint8)[misalignment:]
    memory = np.full(size + 2 * GUARD + 16, 0xAB, np.uint8)
    start = GUARD + (-memory.ctypes.data - GUARD) % 16 + misalignment  # `misalignment` past a 16-byte boundary
    stream_copy(memory[start : start + size], source)
    assert np.array_equal(memory[start : start + size], source)
    assert (memory[:start] == 0xAB).all() and (memory[start + size :] == 0xAB).all()


def test_stream_copy_refuses_buffers_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="dst has 8 bytes, src 12"):
        stream_copy(np.zeros(2, np.float32), np.zeros(3, np.float32))


def test_stream_copy_refuses_a_read_only_destination_and_a_strided_source() -> None:
    with pytest.raises((TypeError, BufferError)):
        stream_copy(b"\0" * 8, np.zeros(8, np.uint8))
    with pytest.raises((TypeError, BufferError, ValueError)):
        stream_copy(np.zeros(4, np.float32), np.zeros((4, 2), np.float32)[:, 0])


def test_large_arrays_are_owned_copies_whatever_their_layout() -> None:
    values = STREAM_MIN_BYTES // 4 * 2
    contiguous = np.arange(values, dtype=np.float32)
    strided = np.arange(values * 2, dtype=np.float32).reshape(2, values).T  # takes numpy's copy
    foreign = np.arange(values * 2, dtype=">f4").reshape(2, values).T  # converted to native order
    for source in (contiguous, strided, foreign):
        owned = to_owned_array(source, "values")
        assert np.array_equal(owned, source) and owned.flags.c_contiguous and owned.dtype.isnative
        assert not np.shares_memory(owned, source)
        source[...] = -1  # the caller changes its array right after the call
        assert owned.max() >= 0


@pytest.mark.e2e
def test_large_arrays_changed_right_after_each_call_are_written_as_they_were(daemon, logdir) -> None:
    histogram = np.empty(STREAM_MIN_BYTES // 4 + 1000, np.float32)
    image = np.empty((3, 256, 256), np.float32)
    assert histogram.nbytes >= STREAM_MIN_BYTES and image.nbytes >= STREAM_MIN_BYTES
    with SummaryWriter(logdir) as writer:
        for step in range(12):
            histogram.fill(step)
            image.fill(step / 11)
            writer.add_histogram("big/histogram", histogram, step)
            writer.add_image("big/image", image, step)
    events = accumulator(logdir)
    assert [
        (h.step, h.histogram_value.min, h.histogram_value.max, h.histogram_value.num)
        for h in events.Histograms("big/histogram")
    ] == [(s, s, s, histogram.size) for s in range(12)]
    images = events.Images("big/image")
    assert [i.step for i in images] == list(range(12))
    for entry in images:
        pixels = np.asarray(Image.open(io.BytesIO(entry.encoded_image_string)))
        assert pixels.shape == (256, 256, 3)
        # tensorboardX's conversion of a float image: value * 255, clipped, truncated to uint8.
        assert (pixels == np.uint8(np.float32(entry.step / 11) * 255)).all()


# -- the C add_scalar ----------------------------------------------------------------------------

# The ways add_scalar is called, each once in a fresh writer: (args, kwargs).
CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("plain", 0.5), {}),
    (("plain", 1.5, 7), {}),
    (("plain", 2.5, 8, NOW), {}),
    (("kw", 3.5), {"global_step": 9}),
    (("kw", 4.5), {"global_step": 10, "walltime": NOW + 1}),
    (("kw", 5.5, 11), {"walltime": NOW + 2}),
    (("converted", 6), {"global_step": np.int64(12)}),
    (("converted", np.float32(7.25), 13.0), {}),
    (("converted", np.array([8.5]), None, np.float64(NOW + 3)), {}),
    (("options", 9.5, 14), {"display_name": "shown", "summary_description": "said"}),
    (("options", 10.5, 15, None, True), {}),  # torch's positional new_style
]

LOG_CALLS = """
import sys
import numpy as np
from logger_client import SummaryWriter
from test_speedups import CALLS
with SummaryWriter(sys.argv[1]) as writer:
    for args, kwargs in CALLS:
        writer.add_scalar(*args, **kwargs)
"""


def _logged(logdir: str) -> list:
    events = accumulator(logdir)
    found = []
    for tag in sorted(events.Tags()["scalars"]):
        found += [(tag, e.step, e.value, e.wall_time if e.wall_time < NOW + 100 else None) for e in events.Scalars(tag)]
    return found


def test_a_writer_gets_the_c_add_scalar_unless_it_overrides_it_or_discards(logdir) -> None:
    class Counting(SummaryWriter):
        calls = 0

        def add_scalar(self, *args, **kwargs) -> None:
            Counting.calls += 1
            super().add_scalar(*args, **kwargs)

    memory = InMemoryTransport()
    with SummaryWriter(logdir, transport=memory) as writer, Counting(logdir + "/sub", transport=memory) as counting:
        assert type(writer.add_scalar) is extension.ScalarCall
        counting.add_scalar("x", 1.0, 1)
        assert Counting.calls == 1
    assert type(SummaryWriter(logdir, write_to_disk=False).add_scalar) is not extension.ScalarCall


@pytest.mark.e2e
def test_the_c_add_scalar_writes_what_the_python_method_writes(daemon, logdir, tmp_path) -> None:
    with SummaryWriter(logdir) as writer:
        for args, kwargs in CALLS:
            writer.add_scalar(*args, **kwargs)
    python_logdir = str(tmp_path / "pure_python")
    env = {**os.environ, "LOGGER_PURE_PYTHON": "1", "PYTHONPATH": os.path.dirname(__file__)}
    subprocess.run([sys.executable, "-c", LOG_CALLS, python_logdir], env=env, check=True, timeout=60)
    assert _logged(logdir) == _logged(python_logdir)
    assert len(_logged(logdir)) == len(CALLS) - 1  # torch's new_style scalar is a tensor summary
    assert len(accumulator(logdir).Tensors("options")) == len(accumulator(python_logdir).Tensors("options")) == 1


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (("t", "x", 1), {}, TypeError, "scalar_value"),
        (("t", 1.0, "3"), {}, TypeError, "global_step"),
        (("t", 1.0, 1 << 64), {}, ValueError, "global_step"),
        (("t", 1.0, 1, "now"), {}, TypeError, "walltime"),
        ((5, 1.0, 1), {}, TypeError, "tag"),
        (("t", 1.0, 1), {"global_step": 2}, TypeError, "global_step"),
        (("t", 1.0), {"step": 2}, TypeError, "step"),
    ],
)
def test_the_c_add_scalar_raises_what_the_method_raises(logdir, args, kwargs, error, message) -> None:
    with SummaryWriter(logdir, transport=InMemoryTransport()) as writer:
        writer.add_scalar("t", 0.0, 0)  # the tag is known: the C path sees these calls first
        assert type(writer.add_scalar) is extension.ScalarCall
        with pytest.raises(error, match=message):
            writer.add_scalar(*args, **kwargs)
        with pytest.raises(error, match=message):
            SummaryWriter.add_scalar(writer, *args, **kwargs)


def test_a_writer_with_the_c_add_scalar_is_collected(logdir) -> None:
    writer = SummaryWriter(logdir, transport=InMemoryTransport())
    writer.add_scalar("t", 1.0, 1)
    writer.close()
    gone = weakref.ref(writer)
    del writer
    gc.collect()
    assert gone() is None
