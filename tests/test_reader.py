"""The reader (`logger_client.reader.load`), in process: files written by tensorboardX, by
torch.utils.tensorboard and by this project's daemon encoders read back equal to what TensorBoard's
own `EventAccumulator` reads from them; damaged files read as far as TensorBoard reads them;
purges; the wire decoder, CRCs, framing and PNG decoder on their own.

The round trips through a real daemon are in test_reader_e2e.py.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from typing import Any

import crc32c
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.util import tensor_util

import logger_client
from logger_client import _event_decode, _tfrecord_read
from logger_client._png import decode_image, decode_png
from logger_client.reader import LogData, load
from logger_daemon import event_codec, summaries, tfrecord
from logger_daemon.protos.event_pb2 import Event, SessionLog
from logger_daemon.protos.plugin_pr_curve_pb2 import PrCurvePluginData
from logger_daemon.protos.summary_pb2 import Summary, SummaryMetadata
from logger_daemon.protos.tensor_pb2 import TensorProto
from logger_daemon.protos.tensor_shape_pb2 import TensorShapeProto

#: size_guidance 0 for every kind: the accumulator keeps every event.
KEEP_ALL = dict.fromkeys((ea.COMPRESSED_HISTOGRAMS, ea.IMAGES, ea.AUDIO, ea.SCALARS, ea.HISTOGRAMS, ea.TENSORS), 0)
WALL = 1_700_000_000.25


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    # tensorboardX warns per cleaned tag, TensorBoard per purge; neither matters here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- comparing with TensorBoard's accumulator -----------------------------------------------------


def accumulators(root: str) -> dict[str, ea.EventAccumulator]:
    """Every run below `root`, loaded by TensorBoard's accumulator, named as the reader names runs."""
    runs = {}
    for directory, _, names in os.walk(root):
        if any("tfevents" in name for name in names):
            accumulator = ea.EventAccumulator(directory, size_guidance=KEEP_ALL)
            accumulator.Reload()
            runs[os.path.relpath(directory, root).replace(os.sep, "/")] = accumulator
    return runs


def assert_reads_like_tensorboard(root: str, data: LogData | None = None, tensors_purged: bool = False) -> LogData:
    """`load(root)` holds exactly what EventAccumulator reads, run by run and tag by tag.

    `tensors_purged`: the run has a restart (SessionLog.START) whose purge the reader applies to
    tensor summaries as to every other kind, where the accumulator leaves them: not compared.
    """
    data = load(root) if data is None else data
    runs = accumulators(root)
    assert data.runs == sorted(runs)
    for run, acc in runs.items():
        tags = acc.Tags()
        plugin = {tag: meta.plugin_data.plugin_name for tag, meta in acc.summary_metadata.items()}
        mine = {kind: {t for (r, t) in store if r == run} for kind, store in _stores(data).items()}

        tensor_scalars = {t for t in tags[ea.TENSORS] if plugin.get(t) == "scalars"}
        assert mine["scalars"] == set(tags[ea.SCALARS]) | tensor_scalars, run
        for tag in tags[ea.SCALARS]:
            series = data.scalars[(run, tag)]
            scalar_events = acc.Scalars(tag)
            assert series.step.tolist() == [e.step for e in scalar_events], (run, tag)
            assert series.wall_time.tolist() == [e.wall_time for e in scalar_events], (run, tag)
            np.testing.assert_array_equal(series.value, [e.value for e in scalar_events])
            assert series.step.dtype == np.int64 and series.wall_time.dtype == series.value.dtype == np.float64
        for tag in tensor_scalars:
            events = acc.Tensors(tag)
            assert data.scalars[(run, tag)].step.tolist() == [e.step for e in events]
            values = [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events]
            np.testing.assert_array_equal(data.scalars[(run, tag)].value, values)

        assert mine["histograms"] == set(tags[ea.HISTOGRAMS]), run
        for tag in tags[ea.HISTOGRAMS]:
            histogram_events, histograms = acc.Histograms(tag), data.histograms[(run, tag)]
            assert len(histogram_events) == len(histograms)
            for event, histogram in zip(histogram_events, histograms):
                value = event.histogram_value
                assert (event.step, event.wall_time) == (histogram.step, histogram.wall_time)
                assert (value.min, value.max, value.num, value.sum, value.sum_squares) == (
                    histogram.min,
                    histogram.max,
                    histogram.num,
                    histogram.sum,
                    histogram.sum_squares,
                )
                assert list(value.bucket_limit) == histogram.bucket_limits.tolist()
                assert list(value.bucket) == histogram.bucket_counts.tolist()

        assert mine["images"] == set(tags[ea.IMAGES]), run
        for tag in tags[ea.IMAGES]:
            expected_images = [
                (e.step, e.wall_time, e.width, e.height, e.encoded_image_string) for e in acc.Images(tag)
            ]
            got_images = data.images[(run, tag)]
            assert [(i.step, i.wall_time, i.width, i.height, i.encoded) for i in got_images] == expected_images
            for image in got_images:
                assert image.pixels is not None and image.pixels.shape[:2] == (image.height, image.width)

        assert mine["audio"] == set(tags[ea.AUDIO]), run
        for tag in tags[ea.AUDIO]:
            expected_audio = [(e.step, e.wall_time, e.sample_rate, e.encoded_audio_string) for e in acc.Audio(tag)]
            got_audio = data.audio[(run, tag)]
            assert [(a.step, a.wall_time, a.sample_rate, a.encoded) for a in got_audio] == expected_audio

        texts = {t for t in tags[ea.TENSORS] if plugin.get(t) == "text"}
        assert mine["text"] == texts, run
        for tag in texts if not tensors_purged else ():
            expected = [
                (e.step, e.wall_time, tensor_util.make_ndarray(e.tensor_proto).reshape(-1)[0].decode())
                for e in acc.Tensors(tag)
            ]
            assert [(t.step, t.wall_time, t.text) for t in data.text[(run, tag)]] == expected

        others = {t for t in tags[ea.TENSORS] if plugin.get(t, "") not in ("text", "scalars", "hparams")}
        assert mine["tensors"] == others, run
        for tag in others if not tensors_purged else ():
            got_tensors = data.tensors[plugin.get(tag, "")][(run, tag)]
            events = acc.Tensors(tag)
            assert len(got_tensors) == len(events)
            for event, tensor in zip(events, got_tensors):
                array = tensor_util.make_ndarray(event.tensor_proto)
                assert (event.step, event.wall_time) == (tensor.step, tensor.wall_time)
                assert (array.dtype, array.shape) == (tensor.value.dtype, tensor.value.shape), (run, tag)
                np.testing.assert_array_equal(array, tensor.value)

        if tags[ea.GRAPH]:
            assert data.graphs[run] == acc._graph  # the serialized GraphDef, as the accumulator keeps it
        else:
            assert run not in data.graphs
        for tag in tags[ea.RUN_METADATA]:
            assert data.run_metadata[(run, tag)] == acc.RunMetadata(tag).SerializeToString()
        for tag, meta in acc.summary_metadata.items():
            info = data.metadata[(run, tag)]
            assert (info.plugin_name, info.plugin_content, info.display_name, info.description) == (
                meta.plugin_data.plugin_name,
                meta.plugin_data.content,
                meta.display_name,
                meta.summary_description,
            )
    return data


def _stores(data: LogData) -> dict[str, Any]:
    return {
        "scalars": data.scalars,
        "histograms": data.histograms,
        "images": data.images,
        "audio": data.audio,
        "text": data.text,
        "tensors": {key: None for plugin in data.tensors.values() for key in plugin},
    }


# -- writing event files by hand ------------------------------------------------------------------


def tensor_proto(**fields: Any) -> Any:
    """A TensorProto (dtype given as TensorFlow's DataType number)."""
    return TensorProto(**fields)


def write_events(path: str, events: list[bytes], framed: bytes = b"") -> str:
    """An event file: a file_version record, these serialized Events, then `framed` records."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tfrecord.frame(event_codec.file_version_event(WALL)))
        for event in events:
            f.write(tfrecord.frame(event))
        f.write(framed)
    return path


def scalar_block(tag: str, steps: Any, values: Any, wall_times: Any = None) -> bytes:
    """Framed scalar events as the daemon writes them: whole numpy columns (`event_codec`, `frame_rows`)."""
    steps = np.asarray(steps, np.int64)
    values = np.asarray(values, np.float64)
    walls = np.full(steps.size, WALL) if wall_times is None else np.asarray(wall_times, np.float64)
    return b"".join(tfrecord.frame_rows(rows) for rows in event_codec.scalar_event_rows(tag, walls, steps, values))


def pr_curve_event(tag: str, step: int, data: np.ndarray) -> bytes:
    """A pr_curves tensor summary, made by hand as TensorBoard's pr_curve plugin stores one."""
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name="pr_curves",
            content=PrCurvePluginData(version=0, num_thresholds=data.shape[1]).SerializeToString(),
        )
    )
    tensor = tensor_proto(
        dtype=1,
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=n) for n in data.shape]),
        float_val=data.reshape(-1).tolist(),
    )
    summary = Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=metadata)])
    return Event(wall_time=WALL + step, step=step, summary=summary).SerializeToString()


# -- files of other writers -----------------------------------------------------------------------


def _write_every_kind(writer_class: Any, logdir: str, torch_writer: bool = False) -> None:
    import torch

    rng = np.random.default_rng(0)
    writer = writer_class(logdir)
    for step in range(4):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.add_scalar("weird tag!", step, step)
        writer.add_scalars("perf", {"train": step, "val": 2.0 * step}, step)
        writer.add_histogram("weights", rng.normal(size=500), step)
        writer.add_image("picture", rng.random((3, 6, 9)), step)
        writer.add_text("note", f"step {step}", step)
        writer.add_audio("sound", np.sin(np.linspace(0, 50, 2205)).astype(np.float32), step, sample_rate=22050)
        writer.add_pr_curve("pr", rng.integers(0, 2, 50), rng.random(50), step)
    if torch_writer:
        writer.add_scalar("new_style", 3.5, 1, new_style=True)
    writer.add_mesh("mesh", torch.tensor(rng.random((1, 8, 3)), dtype=torch.float32), global_step=0)
    writer.add_hparams({"lr": 0.1, "batch": 32, "optimizer": "adam", "flag": True}, {"hparam/accuracy": 0.9})
    writer.add_custom_scalars({"group": {"chart": ["Multiline", ["loss"]]}})
    writer.add_graph(torch.nn.Sequential(torch.nn.Linear(4, 2)), torch.zeros(1, 4))
    writer.close()


def test_files_written_by_tensorboardx_read_as_tensorboard_reads_them(tmp_path: Any) -> None:
    from tensorboardX import SummaryWriter

    root = str(tmp_path)
    _write_every_kind(SummaryWriter, root)
    data = assert_reads_like_tensorboard(root)
    assert data.scalars[(".", "weird_tag_")].value.tolist() == [0, 1, 2, 3]  # as tensorboardX cleaned it
    assert data.scalars[("perf/val", "perf")].value.tolist() == [0, 2, 4, 6]
    assert data.text[(".", "note/text_summary")][2].text == "step 2"
    pr = data.tensors["pr_curves"][(".", "pr")]
    assert len(pr) == 4 and pr[0].value.shape[0] == 6 and pr[0].value.dtype == np.float32
    pixels = data.images[(".", "picture")][0].pixels
    assert pixels is not None and pixels.shape == (6, 9, 3)
    sound = data.audio[(".", "sound")][0]
    assert sound.samples is not None and sound.samples.shape == (2205, 1) and sound.samples.dtype == np.int16
    assert sound.wav_sample_rate == 22050
    (hparams_run,) = data.hparams
    hparams = data.hparams[hparams_run]
    assert hparams.session_start is not None and hparams.experiment is not None and hparams.session_end is not None
    assert hparams.session_start["hparams"] == {"lr": 0.1, "batch": 32.0, "optimizer": "adam", "flag": True}
    assert [info["name"] for info in hparams.experiment["hparam_infos"]] == ["lr", "batch", "optimizer", "flag"]
    assert hparams.experiment["metric_infos"][0]["name"] == {"group": "", "tag": "hparam/accuracy"}
    assert hparams.session_end["status"] == "STATUS_SUCCESS"
    assert data.scalars[(hparams_run, "hparam/accuracy")].value.tolist() == [pytest.approx(0.9)]
    assert (".", "profiler") in data.run_metadata and "." in data.graphs
    assert data.damage == [] and data.purged == 0


def test_files_written_by_torch_read_as_tensorboard_reads_them(tmp_path: Any) -> None:
    from torch.utils.tensorboard import SummaryWriter

    root = str(tmp_path)
    _write_every_kind(SummaryWriter, root, torch_writer=True)
    data = assert_reads_like_tensorboard(root)
    assert data.scalars[(".", "new_style")].value.tolist() == [3.5]  # a "scalars" tensor is a scalar
    assert data.scalars[("perf_train", "perf")].step.tolist() == [0, 1, 2, 3]
    assert "." in data.graphs


# -- the scalar fast path -------------------------------------------------------------------------


def test_scalar_events_of_every_layout_read_on_columns(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps across every varint width, step 0 and wall time 0 (fields left out), negative steps,
    NaN and infinities, tags of one length, metadata on every value: each layout is decoded on whole
    columns, and the rest (here: histograms) one event at a time."""
    steps = np.array([0, 1, 127, 128, 16383, 16384, 2**21, 2**35, 2**62, -1, -(2**40)], np.int64)
    values = np.array([0.5, -0.0, np.nan, np.inf, -np.inf, 1e-30, 3.25, 7, 8, 9, 10])
    walls = np.array([0.0, *np.linspace(WALL, WALL + 1, steps.size - 1)])
    described = Summary(value=[Summary.Value(tag="described", simple_value=1.5)])
    described.value[0].metadata.display_name = "Described"
    path = os.path.join(str(tmp_path), "events.out.tfevents.1.host")
    with open(path, "wb") as f:
        f.write(tfrecord.frame(event_codec.file_version_event(WALL)))
        for name in ("loss/a", "loss/b", "loss/c", "acc"):
            f.write(scalar_block(name, steps, values, walls))
        f.write(tfrecord.frame(event_codec.summary_event(WALL, 3, summaries.histogram("h", np.arange(10.0)))))
        for step in range(100):
            f.write(tfrecord.frame(event_codec.summary_event(WALL + step, step, described)))
    decoded = []
    real = _event_decode.decode_event

    def counting(buf: Any) -> Any:
        decoded.append(1)
        return real(buf)

    monkeypatch.setattr(_event_decode, "decode_event", counting)
    data = assert_reads_like_tensorboard(str(tmp_path))
    assert len(decoded) == 2  # the file_version record and the histogram: every scalar went by columns
    assert data.scalars[(".", "loss/b")].step.tolist() == steps.tolist()
    np.testing.assert_array_equal(data.scalars[(".", "acc")].value, values.astype(np.float32).astype(np.float64))
    assert data.scalars[(".", "acc")].wall_time[0] == 0.0
    assert data.metadata[(".", "described")].display_name == "Described"
    assert len(data.scalars[(".", "described")]) == 100


def test_interleaved_tags_as_tensorboardx_writes_them(tmp_path: Any) -> None:
    """One record per call, tags taking turns, lengths changing as steps grow: the repeating
    pattern of lengths is found and checked in stretches."""
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in range(300):  # steps past 127 take a longer varint: the lengths change midway
        for index in range(7):
            writer.add_scalar(f"tag{index}" + "x" * index, step * 0.5 + index, step)
        if step % 100 == 0:
            writer.add_text("note", "x" * step, step)
    writer.close()
    data = assert_reads_like_tensorboard(str(tmp_path))
    assert sum(len(series) for series in data.scalars.values()) == 2100


def test_crc_in_python_when_the_crc32c_package_is_missing(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in range(50):
        writer.add_scalar("loss", step, step)
    writer.add_image("big", np.random.default_rng(0).random((3, 200, 300)), 0)
    writer.close()
    monkeypatch.setattr(_tfrecord_read, "_native_crc32c", None)
    data = assert_reads_like_tensorboard(str(tmp_path))
    assert data.damage == []


# -- damage ---------------------------------------------------------------------------------------


def _scalar_file(directory: str, count: int = 10, name: str = "events.out.tfevents.1.host") -> str:
    events = [
        Event(wall_time=WALL + i, step=i, summary=Summary(value=[Summary.Value(tag="x", simple_value=i)]))
        for i in range(count)
    ]
    return write_events(os.path.join(directory, name), [e.SerializeToString() for e in events])


def _record_offsets(path: str) -> list[int]:
    with open(path, "rb") as f:
        blob = f.read()
    offsets, at = [], 0
    while at < len(blob):
        offsets.append(at)
        at += 16 + struct.unpack_from("<Q", blob, at)[0]
    return offsets


@pytest.mark.parametrize("cut", [1, 5, 11, 13])
def test_a_torn_last_record_is_left_out_and_counted(tmp_path: Any, cut: int) -> None:
    path = _scalar_file(str(tmp_path))
    size = os.path.getsize(path)
    last = _record_offsets(path)[-1]
    os.truncate(path, last + cut)  # cut inside the header, its CRC, the data, or the data's CRC
    data = assert_reads_like_tensorboard(str(tmp_path))
    assert data.scalars[(".", "x")].step.tolist() == list(range(9))
    (damage,) = data.damage
    assert (damage.path, damage.offset, damage.reason) == (path, last, "torn")
    assert (damage.records_skipped, damage.bytes_skipped) == (1, cut)
    assert data.records_skipped == 1 and size > last + cut


def test_a_corrupt_record_stops_its_file_as_tensorboard_does(tmp_path: Any) -> None:
    """TensorBoard's loaders read a file up to a record whose CRC fails, and not past it; the next
    file of the run is read."""
    path = _scalar_file(str(tmp_path))
    _scalar_file(str(tmp_path), count=3, name="events.out.tfevents.2.host")
    offsets = _record_offsets(path)
    with open(path, "r+b") as f:
        f.seek(offsets[4] + 14)  # a byte of record 4's data (the 4th scalar)
        byte = f.read(1)
        f.seek(offsets[4] + 14)
        f.write(bytes([byte[0] ^ 0xFF]))
    data = assert_reads_like_tensorboard(str(tmp_path))
    assert data.scalars[(".", "x")].step.tolist() == [0, 1, 2, 0, 1, 2]
    (damage,) = data.damage
    assert (damage.reason, damage.offset, damage.records_skipped) == ("bad data CRC", offsets[4], 7)
    assert damage.bytes_skipped == os.path.getsize(path) - offsets[4]


def test_a_corrupt_length_stops_its_file(tmp_path: Any) -> None:
    path = _scalar_file(str(tmp_path))
    offsets = _record_offsets(path)
    with open(path, "r+b") as f:
        f.seek(offsets[6])
        f.write(b"\x7f")
    data = assert_reads_like_tensorboard(str(tmp_path))
    assert data.scalars[(".", "x")].step.tolist() == [0, 1, 2, 3, 4]
    assert [(d.reason, d.offset, d.records_skipped) for d in data.damage] == [("bad length CRC", offsets[6], 1)]


def test_a_record_that_is_not_an_event_stops_its_file(tmp_path: Any) -> None:
    """CRCs hold but the bytes are not protobuf (TensorBoard's Python loader raises; its data server
    stops reading the file)."""
    good = [
        Event(wall_time=WALL, step=i, summary=Summary(value=[Summary.Value(tag="x", simple_value=i)])) for i in range(3)
    ]
    path = write_events(
        os.path.join(str(tmp_path), "events.out.tfevents.1.host"),
        [good[0].SerializeToString(), good[1].SerializeToString(), b"\xff\xff\xff", good[2].SerializeToString()],
    )
    data = load(str(tmp_path))
    assert data.scalars[(".", "x")].step.tolist() == [0, 1]
    assert [(d.reason, d.records_skipped) for d in data.damage] == [("invalid event", 2)]
    assert data.damage[0].path == path


# -- purges, runs, directories --------------------------------------------------------------------


def test_a_restart_purges_earlier_events_at_later_steps(tmp_path: Any) -> None:
    """tensorboardX's purge_step writes SessionLog.START: the run's earlier events at steps >= it
    are dropped, of every kind, as EventAccumulator drops them."""
    from tensorboardX import SummaryWriter

    root = str(tmp_path)
    first = SummaryWriter(root, filename_suffix=".a")
    for step in range(10):
        first.add_scalar("loss", step, step)
        first.add_histogram("h", np.arange(5.0) + step, step)
        first.add_text("t", str(step), step)
    first.close()
    second = SummaryWriter(root, purge_step=6, filename_suffix=".b")
    for step in range(6, 9):
        second.add_scalar("loss", 100 + step, step)
        second.add_text("t", f"again {step}", step)
    second.close()
    data = assert_reads_like_tensorboard(root, tensors_purged=True)
    loss = data.scalars[(".", "loss")]
    assert loss.step.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert loss.value.tolist() == [0, 1, 2, 3, 4, 5, 106, 107, 108]
    assert [h.step for h in data.histograms[(".", "h")]] == [0, 1, 2, 3, 4, 5]
    assert [t.text for t in data.text[(".", "t/text_summary")]] == [*"012345", "again 6", "again 7", "again 8"]
    assert data.purged == 3 * 4


def test_a_start_purges_only_what_came_before_it(tmp_path: Any) -> None:
    events = [
        Event(
            wall_time=WALL, step=s, summary=Summary(value=[Summary.Value(tag="x", simple_value=s)])
        ).SerializeToString()
        for s in (1, 2, 3)
    ]
    start = Event(wall_time=WALL, step=2, session_log=SessionLog(status=SessionLog.START)).SerializeToString()
    later = [
        Event(
            wall_time=WALL, step=s, summary=Summary(value=[Summary.Value(tag="x", simple_value=10 * s)])
        ).SerializeToString()
        for s in (2, 5)
    ]
    write_events(os.path.join(str(tmp_path), "events.out.tfevents.1.h"), events + [start] + later)
    data = assert_reads_like_tensorboard(str(tmp_path))
    assert data.scalars[(".", "x")].step.tolist() == [1, 2, 5]
    assert data.scalars[(".", "x")].value.tolist() == [1, 20, 50]


def test_runs_are_directories_and_files_are_read_in_name_order(tmp_path: Any) -> None:
    root = str(tmp_path)
    write_events(os.path.join(root, "b", "events.out.tfevents.2.h"), [], scalar_block("x", [3], [3.0]))
    write_events(os.path.join(root, "b", "events.out.tfevents.1.h"), [], scalar_block("x", [1, 2], [1.0, 2.0]))
    write_events(os.path.join(root, "a", "deep", "x.tfevents.9"), [], scalar_block("y", [0], [0.0]))
    write_events(os.path.join(root, "events.out.tfevents.5.h"), [], scalar_block("z", [0], [0.0]))
    with open(os.path.join(root, "b", "notes.txt"), "w") as f:
        f.write("not an event file")
    data = assert_reads_like_tensorboard(root)
    assert data.runs == [".", "a/deep", "b"]
    assert data.scalars[("b", "x")].step.tolist() == [1, 2, 3]
    assert data.files == 4
    single = load(os.path.join(root, "b", "events.out.tfevents.2.h"))
    assert single.runs == ["."] and single.scalars[(".", "x")].step.tolist() == [3]


def test_an_empty_directory_is_empty_and_a_missing_one_an_error(tmp_path: Any) -> None:
    os.makedirs(os.path.join(str(tmp_path), "empty", "sub"))
    data = load(os.path.join(str(tmp_path), "empty"))
    assert data.runs == [] and data.scalars == {} and data.files == 0 and data.damage == []
    with pytest.raises(FileNotFoundError, match="missing"):
        load(os.path.join(str(tmp_path), "missing"))
    open(os.path.join(str(tmp_path), "empty", "events.out.tfevents.0.h"), "wb").close()  # a file just created
    data = load(os.path.join(str(tmp_path), "empty"))
    assert data.runs == ["."] and data.files == 1 and data.damage == [] and data.records == 0


def test_the_generic_tensor_path_keeps_other_plugins_by_name(tmp_path: Any) -> None:
    curve = np.random.default_rng(1).random((6, 11)).astype(np.float32)
    write_events(
        os.path.join(str(tmp_path), "events.out.tfevents.1.h"),
        [pr_curve_event("pr", step, curve + step) for step in range(3)],
    )
    data = assert_reads_like_tensorboard(str(tmp_path))
    series = data.tensors["pr_curves"][(".", "pr")]
    assert [t.step for t in series] == [0, 1, 2]
    np.testing.assert_array_equal(series[2].value, curve + 2)
    content = data.metadata[(".", "pr")].plugin_content
    assert PrCurvePluginData.FromString(content).num_thresholds == 11


def test_module_level_load_is_the_reader() -> None:
    assert logger_client.load is load
    assert "load" in logger_client.__all__ and "load" in dir(logger_client)


# -- the pieces -----------------------------------------------------------------------------------


def test_masked_crc_golden_value_and_column_crcs_equal_crc32c() -> None:
    assert _tfrecord_read.masked(crc32c.crc32c(struct.pack("<Q", 24))) == 0x224B7FA3
    rng = np.random.default_rng(2)
    for length in (0, 1, 7, 8, 45, 300, 5000, 70_000):
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        assert _tfrecord_read._crc32c_numpy(data) == crc32c.crc32c(data), length
        if length > 5000:  # rows are records of one length in a stretch: scalars, not megabytes
            continue
        rows = rng.integers(0, 256, (6, length), dtype=np.uint8)
        rows[:, : length // 2] = 9  # constant columns take the shortcut
        assert _tfrecord_read.crc32c_rows(rows).tolist() == [crc32c.crc32c(row.tobytes()) for row in rows]


def test_framing_finds_every_record_of_any_length_pattern() -> None:
    rng = np.random.default_rng(3)
    for pattern in ([5], [5, 9], [3, 3, 8], list(rng.integers(0, 60, 40))):
        lengths = [int(x) for x in pattern] * 200 + [int(x) for x in rng.integers(0, 30, 50)] + [7] * 999
        blob = b"".join(tfrecord.frame(bytes(length)) for length in lengths)
        framing = _tfrecord_read.frame(blob)
        assert framing.problem is None and framing.stop == len(blob)
        assert framing.lengths.tolist() == lengths
        expected = np.cumsum([0] + [length + 16 for length in lengths[:-1]])
        assert framing.starts.tolist() == expected.tolist()


def test_decoder_reads_every_field_protobuf_writes() -> None:
    metadata = SummaryMetadata(
        display_name="d",
        summary_description="s",
        data_class="DATA_CLASS_TENSOR",
        plugin_data=SummaryMetadata.PluginData(plugin_name="p", content=b"\x00\x01"),
    )
    values = [
        Summary.Value(tag="s", simple_value=1.5, metadata=metadata),
        Summary.Value(tag="i", image=Summary.Image(height=2, width=3, colorspace=4, encoded_image_string=b"png")),
        Summary.Value(
            tag="a",
            audio=Summary.Audio(
                sample_rate=8000, num_channels=2, length_frames=9, encoded_audio_string=b"wav", content_type="audio/wav"
            ),
        ),
        Summary.Value(
            node_name="legacy",
            tensor=tensor_proto(
                dtype=3, int_val=[-5, 6], tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=2)])
            ),
        ),
    ]
    event = Event(wall_time=1.5, step=-7, summary=Summary(value=values))
    decoded = _event_decode.decode_event(event.SerializeToString())
    assert (decoded.wall_time, decoded.step, decoded.what) == (1.5, -7, "summary")
    scalar, image, audio, tensor = decoded.data
    assert (scalar.tag, scalar.kind, scalar.data) == ("s", "simple_value", 1.5)
    assert scalar.metadata == _event_decode.Metadata("p", b"\x00\x01", "d", "s", 2)
    assert image.data == {"height": 2, "width": 3, "colorspace": 4, "encoded": b"png"}
    assert audio.data == {
        "sample_rate": 8000.0,
        "num_channels": 2,
        "length_frames": 9,
        "encoded": b"wav",
        "content_type": "audio/wav",
    }
    assert tensor.tag == "legacy"
    np.testing.assert_array_equal(_event_decode.decode_tensor(tensor.data), np.array([-5, 6], np.int32))
    assert _event_decode.decode_event(Event(step=3, graph_def=b"g").SerializeToString()).data == b"g"
    log = _event_decode.decode_event(Event(session_log=SessionLog(status=SessionLog.START)).SerializeToString())
    assert (log.what, log.data) == ("session_log", _event_decode.SESSION_START)
    with pytest.raises(_event_decode.DecodeError):
        _event_decode.decode_event(b"\x0a\x05ab")


@pytest.mark.parametrize(
    ("dtype", "field", "values"),
    [
        (1, "float_val", [1.5, -2.25, 3.0, 4.0]),
        (2, "double_val", [1e300, -2.5, 0.0, 1.0]),
        (3, "int_val", [-(2**31), 2**31 - 1, -1, 0]),
        (4, "int_val", [0, 255, 7, 1]),
        (5, "int_val", [-32768, 32767, 0, 1]),
        (6, "int_val", [-128, 127, 0, 1]),
        (9, "int64_val", [-(2**63), 2**63 - 1, 0, -1]),
        (10, "bool_val", [True, False, True, True]),
        (17, "int_val", [0, 65535, 1, 2]),
        (22, "uint32_val", [0, 2**32 - 1, 1, 2]),
        (23, "uint64_val", [0, 2**64 - 1, 1, 2]),
    ],
)
def test_tensors_decode_as_tensorboard_makes_them(dtype: int, field: str, values: list) -> None:
    shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=2), TensorShapeProto.Dim(size=2)])
    for given in (values, values[:1]):  # every value, or one for all
        proto = tensor_proto(dtype=dtype, tensor_shape=shape, **{field: given})
        got = _event_decode.decode_tensor(proto.SerializeToString())
        if dtype in (22, 23):  # TensorBoard's make_ndarray has no unsigned 32/64-bit
            expected = np.resize(np.array(given, {22: np.uint32, 23: np.uint64}[dtype]), (2, 2))
        else:
            expected = tensor_util.make_ndarray(proto)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    # Fewer values than elements: TensorFlow repeats the last one (TensorBoard's make_ndarray refuses).
    short = tensor_proto(dtype=dtype, tensor_shape=shape, **{field: values[:3]})
    padded = _event_decode.decode_tensor(short.SerializeToString()).reshape(-1)
    full = _event_decode.decode_tensor(
        tensor_proto(dtype=dtype, tensor_shape=shape, **{field: values}).SerializeToString()
    )
    assert padded.tolist() == [*full.reshape(-1)[:3].tolist(), full.reshape(-1)[2]]
    content = tensor_proto(dtype=dtype, tensor_shape=shape, tensor_content=full.tobytes())
    np.testing.assert_array_equal(_event_decode.decode_tensor(content.SerializeToString()), full)


def test_half_complex_and_string_tensors() -> None:
    half = np.array([1.5, -2.0, 65504.0], np.float16)
    proto = tensor_proto(
        dtype=19,
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=3)]),
        half_val=half.view(np.uint16).tolist(),
    )
    np.testing.assert_array_equal(_event_decode.decode_tensor(proto.SerializeToString()), half)
    bfloat = tensor_proto(
        dtype=14, tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=2)]), half_val=[0x3FC0, 0xC000]
    )
    assert _event_decode.decode_tensor(bfloat.SerializeToString()).tolist() == [1.5, -2.0]
    complex_proto = tensor_proto(
        dtype=8, tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=2)]), scomplex_val=[1, 2, 3, 4]
    )
    assert _event_decode.decode_tensor(complex_proto.SerializeToString()).tolist() == [1 + 2j, 3 + 4j]
    strings = tensor_proto(
        dtype=7, tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=2)]), string_val=[b"a", "é".encode()]
    )
    assert _event_decode.decode_tensor(strings.SerializeToString()).tolist() == [b"a", "é".encode()]
    with pytest.raises(_event_decode.DecodeError):
        _event_decode.decode_tensor(tensor_proto(dtype=21).SerializeToString())  # DT_VARIANT


def _png_with_filter(pixels: np.ndarray, kind: int) -> bytes:
    """A PNG whose every scanline uses filter `kind` (PNG spec, section 9)."""
    height, width, channels = pixels.shape
    lines = pixels.reshape(height, width * channels).astype(np.int64)
    out = []
    for row in range(height):
        line, above = lines[row], lines[row - 1] if row else np.zeros_like(lines[0])
        left = np.concatenate([np.zeros(channels, np.int64), line[:-channels]])
        corner = np.concatenate([np.zeros(channels, np.int64), above[:-channels]])
        if kind == 0:
            predictor = np.zeros_like(line)
        elif kind == 1:
            predictor = left
        elif kind == 2:
            predictor = above
        elif kind == 3:
            predictor = (left + above) // 2
        else:
            p = left + above - corner
            pa, pb, pc = abs(p - left), abs(p - above), abs(p - corner)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, corner))
        out.append(bytes([kind]) + ((line - predictor) % 256).astype(np.uint8).tobytes())
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]

    def chunk(name: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + name + body + struct.pack(">I", zlib.crc32(name + body))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(out)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
def test_png_decoder_handles_every_filter(channels: int, kind: int) -> None:
    pixels = np.random.default_rng(kind * 10 + channels).integers(0, 256, (7, 9, channels), dtype=np.uint8)
    pixels[:3] = np.arange(9, dtype=np.uint8)[None, :, None] * 20  # smooth rows too
    np.testing.assert_array_equal(decode_png(_png_with_filter(pixels, kind)), pixels)


def test_png_decoder_reads_pillow_pngs_and_leaves_the_rest_to_pillow() -> None:
    from PIL import Image

    pixels = np.random.default_rng(5).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    pixels[:20] = 128
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="PNG")
    np.testing.assert_array_equal(decode_png(encoded.getvalue()), pixels)
    palette = io.BytesIO()
    Image.fromarray(pixels).convert("P").save(palette, format="PNG")
    with pytest.raises(ValueError):
        decode_png(palette.getvalue())
    converted = decode_image(palette.getvalue())
    assert converted is not None and converted.shape == (40, 30, 3)
    assert decode_image(b"not an image") is None
