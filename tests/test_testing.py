"""`logger_client.testing.RecordingWriter`: the real writer's checks and errors, no daemon, and
what was logged to assert on.

The bad calls are the lists the writer's own tests refuse (test_arguments, test_parity,
test_plugins), run against both writers: the same exception type and message from each, and
nothing recorded. Once more against a writer of a real daemon (e2e)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import test_arguments
import test_parity
import test_plugins

from logger_client import SummaryWriter
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import RecordKind
from logger_client.runtime import daemon_running
from logger_client.testing import Call, RecordingWriter

#: Every bad call of the writer's tests, but those that build a SummaryWriter themselves.
BAD_CALLS: list[Any] = [
    call
    for call in [*test_arguments.CALLS, *test_parity.BAD_CALLS, *test_plugins.BAD_CALLS]
    if not call[0].startswith("constructor")
]
BAD_CONSTRUCTORS: list[dict[str, Any]] = [
    {"bogus": 1},
    {"filename_suffix": 3},
    {"filename_suffix": "a/b"},
    {"filename_suffix": ".\udcff"},
    {"purge_step": "x"},
    {"flush_secs": 0},
    {"logdir": 5},
    {"logdir": "runs/a\0b"},
    {"logdir": "runs/\udcff"},
]


def outcome(call: Callable[[], Any]) -> tuple[type[BaseException], str] | None:
    """The exception `call` raises (its type and message), or None."""
    try:
        call()
    except Exception as exc:
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("name, call, error, argument", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_a_bad_call_raises_what_the_real_writer_raises(tmp_path, name, call, error, argument) -> None:
    real = SummaryWriter(str(tmp_path / "real"), transport=InMemoryTransport())
    recording = RecordingWriter(str(tmp_path / "recording"))
    expected = outcome(lambda: call(real))
    assert expected is not None and issubclass(expected[0], error)
    assert outcome(lambda: call(recording)) == expected
    assert recording.calls == [] and recording.records() == []
    assert not (tmp_path / "recording").exists()


@pytest.mark.parametrize("kwargs", BAD_CONSTRUCTORS, ids=[str(sorted(k)) for k in BAD_CONSTRUCTORS])
def test_a_bad_constructor_argument_raises_what_the_real_writer_raises(tmp_path, kwargs) -> None:
    arguments = {"logdir": str(tmp_path), **kwargs}
    expected = outcome(lambda: SummaryWriter(**arguments, transport=InMemoryTransport()))
    assert expected is not None
    assert outcome(lambda: RecordingWriter(**arguments)) == expected


@pytest.mark.e2e
def test_the_bad_calls_raise_alike_against_a_real_daemon(runtime_dir: str, logdir: str) -> None:
    """The checks do not depend on the transport: a writer of a real daemon raises the same."""
    recording = RecordingWriter(logdir)
    with SummaryWriter(logdir) as real:
        for _name, call, _error, _argument in BAD_CALLS:
            assert outcome(lambda c=call: c(recording)) == outcome(lambda c=call: c(real))  # type: ignore[misc]
        for kwargs in BAD_CONSTRUCTORS:
            arguments = {"logdir": logdir, **kwargs}
            assert outcome(lambda a=arguments: RecordingWriter(**a)) == outcome(lambda a=arguments: SummaryWriter(**a))  # type: ignore[misc]
        assert real.flush() is True
    assert real.stats()["records_sent"] == 0 and real.stats()["records_dropped"] == {}
    assert recording.calls == [] and recording.records() == []


def test_what_was_logged_reads_back(tmp_path) -> None:
    writer = RecordingWriter(str(tmp_path / "run"))
    for step in range(3):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.add_scalars("acc", {"train": 0.5, "val": 0.25}, 3)
    values = np.arange(6.0)
    writer.add_histogram("weights", values, 4)
    values[:] = -1  # the record holds its copy
    writer.add_image("sample", np.zeros((3, 2, 2), np.uint8), 5)
    writer.add_images("batch", np.ones((2, 3, 2, 2)), 6)
    writer.add_text("notes", "hello", 7)
    writer.add_hparams({"lr": 0.1}, {"hparam/acc": 0.9}, name="trial")
    assert writer.scalars("loss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert writer.scalars("acc", run="acc/train") == [(3, 0.5)]
    assert writer.scalars("acc", run="acc/val") == [(3, 0.25)]
    assert writer.scalars("hparam/acc", run="trial") == [(0, pytest.approx(0.9))]
    ((step, kept),) = writer.histograms("weights")
    assert step == 4
    np.testing.assert_array_equal(kept, np.arange(6.0))
    assert [(step, image.shape) for step, image in writer.images("sample")] == [(5, (3, 2, 2))]
    assert [(step, images.shape) for step, images in writer.images("batch")] == [(6, (2, 3, 2, 2))]
    assert writer.texts("notes") == [(7, "hello")]
    assert writer.tags() == ["_hparams_/experiment", "acc", "batch", "hparam/acc", "loss", "notes", "sample", "weights"]
    assert writer.tags(RecordKind.TEXT) == ["notes"]
    assert [record.tag for record in writer.records(kind=RecordKind.HPARAMS)] == ["_hparams_/experiment"]
    assert writer.flush() is True and writer.close() is True
    assert not (tmp_path / "run").exists()


def test_calls_are_recorded_with_their_arguments(tmp_path) -> None:
    writer = RecordingWriter(str(tmp_path))
    image = np.zeros((4, 4, 3))
    writer.add_scalar("loss", 0.5, 10)
    writer.add_image("img", image, global_step=2, dataformats="HWC")
    writer.add_custom_scalars_multilinechart(["loss"], title="losses")  # calls add_custom_scalars: one call
    with writer.use_metadata(global_step=7):
        writer.add_text("t", "x")
    writer.close()
    assert [call.method for call in writer.calls] == [
        "add_scalar",
        "add_image",
        "add_custom_scalars_multilinechart",
        "add_text",
        "close",
    ]
    first = writer.calls[0]
    assert first == Call("add_scalar", ("loss", 0.5, 10), {}, first.arguments)
    assert first.arguments["global_step"] == 10 and first.arguments["walltime"] is None
    assert writer.calls[1].kwargs == {"global_step": 2, "dataformats": "HWC"}
    assert writer.calls[1].arguments["img_tensor"] is image  # as passed
    assert writer.calls[2].arguments["title"] == "losses" and writer.calls[2].arguments["category"] == "default"
    assert writer.calls[3].arguments["global_step"] == 7  # use_metadata's default, as the method saw it
    assert writer.texts("t") == [(7, "x")]


def test_a_reopened_writer_keeps_recording(tmp_path) -> None:
    """As the real writer, one used after close() opens again; its records count as the writer's."""
    writer = RecordingWriter(str(tmp_path))
    writer.add_scalar("loss", 1.0, 0)
    assert writer.close() is True
    writer.add_scalar("loss", 0.5, 1)
    assert writer.scalars("loss") == [(0, 1.0), (1, 0.5)]
    writer.clear()
    assert writer.calls == [] and writer.records() == []
    writer.add_scalar("loss", 0.25, 2)
    assert writer.scalars("loss") == [(2, 0.25)]


def test_two_writers_on_one_transport_keep_their_records_apart(tmp_path) -> None:
    transport = InMemoryTransport()
    first, second = (
        RecordingWriter(str(tmp_path / "a"), transport=transport),
        RecordingWriter(str(tmp_path / "b"), transport=transport),
    )
    first.add_scalar("loss", 1.0, 0)
    second.add_scalar("loss", 2.0, 0)
    assert first.scalars("loss") == [(0, 1.0)] and second.scalars("loss") == [(0, 2.0)]


def test_calls_from_threads_are_each_recorded(tmp_path) -> None:
    writer = RecordingWriter(str(tmp_path))

    def log(thread: int) -> None:
        for step in range(200):
            writer.add_scalar(f"t{thread}", float(step), step)

    threads = [threading.Thread(target=log, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(writer.calls) == 800
    for n in range(4):
        assert writer.scalars(f"t{n}") == [(step, float(step)) for step in range(200)]


def test_write_to_disk_false_records_calls_and_keeps_no_records(tmp_path) -> None:
    writer = RecordingWriter(str(tmp_path), write_to_disk=False)
    writer.add_scalar("loss", 1.0, 0)
    assert [call.method for call in writer.calls] == ["add_scalar"] and writer.records() == []


def test_no_daemon_is_started_or_looked_for(tmp_path, monkeypatch) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("LOGGER_RUNTIME_DIR", str(runtime))
    writer = RecordingWriter()  # the default log dir, as the real writer names it
    writer.add_scalar("loss", 1.0, 0)
    assert writer.flush() is True and writer.close() is True
    assert writer.get_logdir().startswith("runs" + os.sep) and not os.path.exists(writer.get_logdir())
    assert os.listdir(runtime) == [] and not daemon_running(str(runtime))
