"""End to end: what our SummaryWriter writes through a real daemon, read back by `load` equal to
what TensorBoard's EventAccumulator reads and to what was logged; `SummaryWriter.load`;
`export_scalars_to_json` against tensorboardX's; no protobuf in a process that reads logs back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
from test_reader import assert_reads_like_tensorboard, pr_curve_event, write_events

from logger_client import SummaryWriter
from logger_client.reader import load

pytestmark = pytest.mark.e2e

WALL = 1_700_000_000.5


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_every_kind_the_writer_writes_round_trips(runtime_dir: str, logdir: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((3, 16, 24)).astype(np.float32)
    batch = (rng.random((5, 3, 8, 8)) * 255).astype(np.uint8)
    with SummaryWriter(logdir) as writer:
        for step in range(300):
            writer.add_scalar("loss", 1.0 / (step + 1), step, walltime=WALL + step)
            writer.add_scalar("lr", 0.1 * 0.99**step, step, walltime=WALL + step)
            writer.add_scalars("split", {"train": step * 0.5, "val": step * 0.25}, step, walltime=WALL + step)
        for step in range(3):
            writer.add_histogram("weights", rng.normal(size=1000) + step, step, walltime=WALL + step)
            writer.add_image("picture", image, step, walltime=WALL + step)
            writer.add_images("batch", batch, step, walltime=WALL + step)
            writer.add_text("notes", f"step **{step}**", step, walltime=WALL + step)
    data = assert_reads_like_tensorboard(logdir)

    assert data.runs == [".", "split/train", "split/val"]
    loss = data.scalars[(".", "loss")]
    assert loss.step.tolist() == list(range(300))
    assert loss.wall_time.tolist() == [WALL + s for s in range(300)]
    np.testing.assert_array_equal(loss.value, np.float32(1.0 / (np.arange(300) + 1.0)).astype(np.float64))
    assert data.scalars[("split/val", "split")].value.tolist() == [s * 0.25 for s in range(300)]
    histogram = data.histograms[(".", "weights")][2]
    assert histogram.num == 1000 and histogram.bucket_counts.sum() == 1000
    pixels = data.images[(".", "picture")][0].pixels
    np.testing.assert_array_equal(pixels, (image * 255).astype(np.uint8).transpose(1, 2, 0))
    grid = data.images[(".", "batch")][1].pixels
    assert grid is not None and grid.shape[2] == 3
    assert [t.text for t in data.text[(".", "notes/text_summary")]] == ["step **0**", "step **1**", "step **2**"]
    assert data.damage == [] and data.purged == 0


def test_a_hand_made_pr_curve_beside_our_files_is_read_by_plugin(runtime_dir: str, logdir: str) -> None:
    with SummaryWriter(logdir) as writer:
        writer.add_scalar("loss", 1.0, 0)
    curve = np.linspace(0, 1, 6 * 5, dtype=np.float32).reshape(6, 5)
    write_events(os.path.join(logdir, "pr", "events.out.tfevents.1.handmade"), [pr_curve_event("pr", 4, curve)])
    data = assert_reads_like_tensorboard(logdir)
    (tensor,) = data.tensors["pr_curves"][("pr", "pr")]
    assert tensor.step == 4
    np.testing.assert_array_equal(tensor.value, curve)


def test_writer_load_flushes_then_reads_its_own_directory(runtime_dir: str, logdir: str, tmp_path: Any) -> None:
    writer = SummaryWriter(logdir)
    for step in range(1000):
        writer.add_scalar("x", step, step)
    writer.add_text("note", "written just now", 5)
    data = writer.load()  # no flush() or close() first: load() flushes
    assert data.scalars[(".", "x")].step.tolist() == list(range(1000))
    assert data.text[(".", "note/text_summary")][0].text == "written just now"
    other = tmp_path / "other"
    with SummaryWriter(str(other)) as second:
        second.add_scalar("y", 2.0, 1)
    assert writer.load(str(other)).scalars[(".", "y")].value.tolist() == [2.0]
    writer.close()
    assert len(writer.load().scalars[(".", "x")]) == 1000  # a closed writer reads without reopening


def test_purge_step_hides_the_earlier_run_on_read(runtime_dir: str, logdir: str) -> None:
    with SummaryWriter(logdir) as first:
        for step in range(10):
            first.add_scalar("loss", step, step)
    with SummaryWriter(logdir, purge_step=4) as second:
        for step in range(4, 6):
            second.add_scalar("loss", 10 * step, step)
    data = assert_reads_like_tensorboard(logdir)
    assert data.scalars[(".", "loss")].step.tolist() == [0, 1, 2, 3, 4, 5]
    assert data.scalars[(".", "loss")].value.tolist() == [0, 1, 2, 3, 40, 50]
    assert data.purged == 6


def _scalars_calls(writer: Any, start: int, stop: int) -> None:
    for step in range(start, stop):
        writer.add_scalars("loss", {"train": 1.0 / (step + 1), "val": step * 0.5}, step, walltime=WALL + step)
        writer.add_scalars("acc/top k", {"1": step / 10}, step, walltime=WALL + step)
        writer.add_scalar("plain", step, step, walltime=WALL + step)  # not add_scalars: not exported


def test_export_scalars_to_json_as_tensorboardx(runtime_dir: str, tmp_path: Any) -> None:
    from tensorboardX import SummaryWriter as ReferenceWriter

    ours_dir, theirs_dir = str(tmp_path / "ours"), str(tmp_path / "theirs")
    ours, theirs = SummaryWriter(ours_dir), ReferenceWriter(theirs_dir)
    exports: dict[str, list[dict]] = {"ours": [], "theirs": []}
    for start, stop in ((0, 5), (5, 8), (8, 8)):  # each export: what was logged since the last one
        for name, writer in (("ours", ours), ("theirs", theirs)):
            _scalars_calls(writer, start, stop)
            path = str(tmp_path / f"{name}-{start}.json")
            writer.export_scalars_to_json(path)
            with open(path) as f:
                exports[name].append(json.load(f))
    ours.close()
    theirs.close()
    for mine, reference in zip(exports["ours"], exports["theirs"]):
        assert {k.replace(ours_dir, "") for k in mine} == {k.replace(theirs_dir, "") for k in reference}
        for key, rows in reference.items():
            got = mine[key.replace(theirs_dir, ours_dir)]
            assert [row[:2] for row in got] == [row[:2] for row in rows]  # wall time, step
            # Values as on disk: float32, where tensorboardX keeps the float64 it was given.
            assert [row[2] for row in got] == [float(np.float32(row[2])) for row in rows]
    assert set(exports["ours"][0]) == {
        os.path.join(ours_dir, *p) for p in (("loss", "train"), ("loss", "val"), ("acc/top k", "1"))
    }
    assert [len(rows) for rows in exports["ours"][1].values()] == [3, 3, 3]
    assert exports["ours"][2] == {} == exports["theirs"][2]


def test_reading_back_imports_no_protobuf(runtime_dir: str, logdir: str) -> None:
    with SummaryWriter(logdir) as writer:
        writer.add_scalar("x", 1.0, 1)
        writer.add_image("i", np.zeros((1, 4, 4), np.uint8), 1)
    code = (
        "import sys, logger_client; "
        f"data = logger_client.load({logdir!r}); "
        "assert data.scalars[('.', 'x')].value.tolist() == [1.0]; "
        "assert data.images[('.', 'i')][0].pixels.shape[:2] == (4, 4); "
        "leaked = {'google.protobuf', 'torch', 'logger_daemon', 'tensorboard', 'PIL'} & set(sys.modules); "
        "assert not leaked, leaked"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_file_still_being_written_reads_up_to_its_last_whole_record(runtime_dir: str, logdir: str) -> None:
    writer = SummaryWriter(logdir)
    for step in range(100):
        writer.add_scalar("x", step, step)
    assert writer.flush()
    (name,) = [n for n in os.listdir(logdir) if "tfevents" in n]
    path = os.path.join(logdir, name)
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\x10\x00\x00")  # the start of a record the daemon has not finished writing
    data = load(logdir)
    assert len(data.scalars[(".", "x")]) == 100
    assert [(d.reason, d.offset, d.records_skipped) for d in data.damage] == [("torn", size, 1)]
    writer.close()
