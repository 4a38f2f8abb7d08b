"""`SummaryWriter.use_metadata`, in process: the records it queues (an `InMemoryTransport`, no
daemon), against what tensorboardX writes for the same calls.

Through a real daemon, with `load` and `export_scalars_to_json`: test_reader_e2e.py.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import numpy as np
import pytest

from logger_client import SummaryWriter
from logger_client._fast import ScalarCall
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import RecordKind
from logger_client.reader import load


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _records(transport: InMemoryTransport) -> list[tuple[str, str, str, int, float]]:
    return [(r.kind.name, r.run, r.tag, r.step, r.wall_time) for r in transport.records()]


def _calls(writer: Any) -> None:
    """The same calls for both writers: positional, keyword, explicit and missing steps."""
    writer.add_scalar("a", 1.0)
    writer.add_scalar("a", 2.0, 3)
    writer.add_scalar("b", 3.0, global_step=None)
    writer.add_scalar("c", 4.0, walltime=5.0)
    writer.add_text("t", "hello")
    writer.add_histogram("h", np.arange(10.0))
    writer.add_image("i", np.zeros((3, 4, 4)), dataformats="CHW")


def test_use_metadata_sets_what_calls_leave_out_as_tensorboardx_does(tmp_path: Any) -> None:
    from tensorboardX import SummaryWriter as ReferenceWriter

    transport = InMemoryTransport()
    ours = SummaryWriter(str(tmp_path / "ours"), transport=transport)
    theirs = ReferenceWriter(str(tmp_path / "theirs"))
    for writer in (ours, theirs):
        with writer.use_metadata(global_step=10, walltime=123.5) as inside:
            assert inside is writer
            _calls(writer)
    theirs.close()

    steps = [(tag, step, wall) for _, _, tag, step, wall in _records(transport)]
    assert steps == [
        ("a", 10, 123.5),
        ("a", 3, 123.5),
        ("b", 10, 123.5),
        ("c", 10, 5.0),
        ("t", 10, 123.5),
        ("h", 10, 123.5),
        ("i", 10, 123.5),
    ]
    reference = load(str(tmp_path / "theirs"))
    written = {tag: (s.step.tolist(), s.wall_time.tolist()) for (_, tag), s in reference.scalars.items()}
    assert written == {"a": ([10, 3], [123.5, 123.5]), "b": ([10], [123.5]), "c": ([10], [5.0])}
    assert [(t.step, t.wall_time) for t in reference.text[(".", "t/text_summary")]] == [(10, 123.5)]
    assert [(h.step, h.wall_time) for h in reference.histograms[(".", "h")]] == [(10, 123.5)]
    assert [(i.step, i.wall_time) for i in reference.images[(".", "i")]] == [(10, 123.5)]


def test_a_step_alone_leaves_the_wall_time_now_where_tensorboardx_writes_zero(tmp_path: Any) -> None:
    from tensorboardX import SummaryWriter as ReferenceWriter

    transport = InMemoryTransport()
    ours = SummaryWriter(str(tmp_path / "ours"), transport=transport)
    theirs = ReferenceWriter(str(tmp_path / "theirs"))
    before = time.time()
    for writer in (ours, theirs):
        with writer.use_metadata(global_step=7):
            writer.add_scalar("a", 1.0)
    theirs.close()
    ((_, _, _, step, wall),) = _records(transport)
    assert step == 7 and before <= wall <= time.time()
    reference = load(str(tmp_path / "theirs")).scalars[(".", "a")]
    assert reference.step.tolist() == [7] and reference.wall_time.tolist() == [0.0]  # tensorboardX's bug


def test_add_scalars_takes_the_defaults_where_tensorboardx_ignores_them(tmp_path: Any) -> None:
    from tensorboardX import SummaryWriter as ReferenceWriter

    transport = InMemoryTransport()
    ours = SummaryWriter(str(tmp_path / "ours"), transport=transport)
    theirs = ReferenceWriter(str(tmp_path / "theirs"))
    for writer in (ours, theirs):
        with writer.use_metadata(global_step=4, walltime=50.0):
            writer.add_scalars("m", {"x": 1.0, "y": 2.0})
    theirs.close()
    assert _records(transport) == [("SCALAR", "m/x", "m", 4, 50.0), ("SCALAR", "m/y", "m", 4, 50.0)]
    # tensorboardX's add_scalars writers are not the one use_metadata sets: step 0, the time of the call.
    reference = load(str(tmp_path / "theirs"))
    assert reference.scalars[("m/x", "m")].step.tolist() == [0]
    assert reference.scalars[("m/x", "m")].wall_time.tolist() != [50.0]


def test_only_calls_inside_the_block_and_on_that_writer_get_the_defaults(tmp_path: Any) -> None:
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path / "a"), transport=transport)
    other = SummaryWriter(str(tmp_path / "b"), transport=transport)
    writer.add_scalar("warm", 0.0, 1)  # a known tag: later calls can take the C path
    if ScalarCall is not None:
        assert type(writer.add_scalar) is ScalarCall
    with writer.use_metadata(global_step=5, walltime=9.0):
        assert type(writer.add_scalar) is not ScalarCall  # the C path would log a missing step as 0
        writer.add_scalar("warm", 1.0)
        other.add_scalar("other", 1.0)
        seen: list[tuple[int, float]] = []
        thread = threading.Thread(target=lambda: writer.add_text("from a thread", "x"))
        thread.start()
        thread.join()
        seen.extend((r.step, r.wall_time) for r in transport.records() if r.tag == "from a thread")
    writer.add_scalar("warm", 2.0)
    if ScalarCall is not None:
        assert type(writer.add_scalar) is ScalarCall
    rows = [(r.writer, r.tag, r.step) for r in transport.records() if r.kind is RecordKind.SCALAR]
    assert rows[:2] == [(rows[0][0], "warm", 1), (rows[0][0], "warm", 5)]
    assert rows[2][1:] == ("other", 0) and rows[2][0] != rows[0][0]
    assert rows[3][1:] == ("warm", 0)
    assert seen == [(5, 9.0)]


def test_use_metadata_refuses_no_defaults_nesting_and_bad_values(tmp_path: Any) -> None:
    writer = SummaryWriter(str(tmp_path), transport=InMemoryTransport())
    with pytest.raises(ValueError, match="global_step or walltime"), writer.use_metadata():
        pass
    with writer.use_metadata(walltime=1.0):
        with pytest.raises(RuntimeError, match="do not nest"), writer.use_metadata(global_step=1):
            pass
        writer.add_scalar("x", 1.0, 2)
    with pytest.raises(TypeError, match="global_step"), writer.use_metadata(global_step="ten"):  # type: ignore[arg-type]
        pass
    with pytest.raises(TypeError, match="walltime"), writer.use_metadata(walltime="noon"):  # type: ignore[arg-type]
        pass
    # After an error inside the block, the defaults are gone and the writer is whole again.
    with pytest.raises(KeyError), writer.use_metadata(global_step=3):
        raise KeyError("inside")
    writer.add_scalar("after", 1.0)
    assert [r.step for r in writer._transport.records() if r.tag == "after"] == [0]  # type: ignore[attr-defined]


def test_use_metadata_survives_close_and_reopen_inside_the_block(tmp_path: Any) -> None:
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    with writer.use_metadata(global_step=8):
        writer.add_scalar("x", 1.0)
        writer.close()
        writer.add_scalar("x", 2.0)  # reopens: still inside the block
    assert [r.step for r in transport.records() if r.tag == "x"] == [8, 8]
