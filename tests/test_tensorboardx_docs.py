"""End to end: code written for tensorboardX runs unchanged with only the import switched.

`tensorboardx_docs_script.py` calls every SummaryWriter method the way tensorboardX's documentation
shows it. It runs twice, each time as its own process in an empty directory: as it is (tensorboardX),
and with only its import line switched to `from logger_client import SummaryWriter` (ours, through a
daemon of this test's runtime directory). Both must exit 0, and the two log roots must read back
alike: the same runs, and per run the same tags, with the same steps, of the same kinds (scalars,
histograms, images of the same size, audio of the same rate and length, tensors of the same
plugin, a graph, run metadata), the same projector files and the same `export_scalars_to_json`
series.

Run names hold the time the writers were made (`runs/<Mon><DD>_<HH>-<MM>-<SS>_<host><comment>`, and
add_hparams' `<time.time()>` sessions): they are compared with the times replaced by their rank.
Known differences, each asserted for what it is:
- tensorboardX's writer creates its event file when it is made, so a writer that logs nothing
  itself (here the one add_hparams is called on: its sessions are sub-runs) leaves a run without
  data; ours creates a file with the first record, so there is no such run.
- add_graph's run metadata is tagged "step1", as torch.utils.tensorboard tags it; tensorboardX
  tags it "profiler" (documented in `add_graph`).
- `export_scalars_to_json` exports the float32 values on disk (tensorboardX: the float64 values
  passed; documented in the method).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
from conftest import REPO
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from test_graphs import onnx_model_bytes

pytestmark = pytest.mark.e2e

pytest.importorskip("torch")
pytest.importorskip("moviepy")  # tensorboardX's add_video
pytest.importorskip("soundfile")  # tensorboardX's add_audio

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tensorboardx_docs_script.py")
THEIR_IMPORT = "from tensorboardX import SummaryWriter\n"
OUR_IMPORT = "from logger_client import SummaryWriter\n"
KEEP_ALL = dict.fromkeys((ea.COMPRESSED_HISTOGRAMS, ea.IMAGES, ea.AUDIO, ea.SCALARS, ea.HISTOGRAMS, ea.TENSORS), 0)
#: The time in a default log directory's name (tensorboardX's `%b%d_%H-%M-%S`) and the host after it.
WRITER_TIME = re.compile(r"(?:^|(?<=/))[A-Z][a-z]{2}\d{2}_\d{2}-\d{2}-\d{2}_" + re.escape(socket.gethostname()))
#: An add_hparams session named by the time of the call (`str(time.time())`).
SESSION_TIME = re.compile(r"^\d+(\.\d+)?$")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _scripts() -> tuple[str, str]:
    """The documentation's script, and the same text with only the import switched."""
    with open(SCRIPT) as f:
        theirs = f.read()
    assert theirs.count(THEIR_IMPORT) == 1
    ours = theirs.replace(THEIR_IMPORT, OUR_IMPORT)
    changed = [(a, b) for a, b in zip(theirs.splitlines(), ours.splitlines()) if a != b]
    assert changed == [(THEIR_IMPORT.rstrip("\n"), OUR_IMPORT.rstrip("\n"))]
    return theirs, ours


def _run(script: str, directory: str) -> None:
    os.makedirs(directory)
    with open(os.path.join(directory, "model.onnx"), "wb") as f:
        f.write(onnx_model_bytes())
    path = os.path.join(directory, "docs_example.py")
    with open(path, "w") as f:
        f.write(script)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, path],
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"{path} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.rstrip().endswith("done")


def _run_names(root: str) -> dict[str, str]:
    """Each run directory below `root` (relative), by its name with the writer times replaced."""
    runs = sorted(
        os.path.relpath(directory, root)
        for directory, _, files in os.walk(root)
        if any(".tfevents." in name for name in files)
    )
    renamed: dict[str, str] = {}
    for run in runs:
        parts = run.split("/")
        parts[0] = WRITER_TIME.sub("<time>_<host>", parts[0])
        if len(parts) == 2 and SESSION_TIME.match(parts[1]):
            parent = run.split("/")[0]
            sessions = sorted((r for r in runs if r.startswith(parent + "/")), key=lambda r: float(r.split("/")[1]))
            parts[1] = f"<session {sessions.index(run)}>"
        renamed["/".join(parts)] = run
    assert len(renamed) == len(runs), runs
    return renamed


def _event_summary(directory: str) -> dict[tuple[str, str], Any]:
    """What TensorBoard's loader reads from a run: per (kind, tag) the steps, with image sizes and
    audio rates and lengths; tensors by their plugin; the graph and run metadata tags."""
    acc = ea.EventAccumulator(directory, size_guidance=KEEP_ALL).Reload()
    tags = acc.Tags()
    found: dict[tuple[str, str], Any] = {}
    for tag in tags[ea.SCALARS]:
        found[("scalars", tag)] = [event.step for event in acc.Scalars(tag)]
    for tag in tags[ea.HISTOGRAMS]:
        found[("histograms", tag)] = [(event.step, event.histogram_value.num) for event in acc.Histograms(tag)]
    for tag in tags[ea.IMAGES]:
        found[("images", tag)] = [(event.step, event.width, event.height) for event in acc.Images(tag)]
    for tag in tags[ea.AUDIO]:
        found[("audio", tag)] = [(event.step, event.sample_rate, event.length_frames) for event in acc.Audio(tag)]
    for tag in tags[ea.TENSORS]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        found[(f"tensors/{plugin}", tag)] = [event.step for event in acc.Tensors(tag)]
    if tags[ea.GRAPH]:
        found[("graph", "")] = len(acc.Graph().node)
    for tag in tags[ea.RUN_METADATA]:
        found[("run_metadata", tag)] = True
    return found


def _projector_files(root: str) -> dict[str, Any]:
    """Every file outside the event files, by path (writer times replaced): the projector's config
    parsed, sprites as pixels, every other file's bytes."""
    files: dict[str, Any] = {}
    for directory, _, names in os.walk(root):
        for name in names:
            if ".tfevents." in name:
                continue
            path = os.path.join(directory, name)
            relative = WRITER_TIME.sub("<time>_<host>", os.path.relpath(path, root))
            with open(path, "rb") as f:
                data = f.read()
            if name == "projector_config.pbtxt":
                files[relative] = text_format.Parse(data.decode(), ProjectorConfig())
            elif name.endswith(".png"):
                with Image.open(io.BytesIO(data)) as sprite:
                    files[relative] = (sprite.mode, np.asarray(sprite).tolist())
            else:
                files[relative] = data
    return files


def _exported(path: str) -> dict[str, list[tuple[int, float]]]:
    with open(path) as f:
        series = json.load(f)
    return {
        WRITER_TIME.sub("<time>_<host>", key.split("/", 1)[1]): [(s, v) for _, s, v in rows]
        for key, rows in series.items()
    }


def test_the_documentations_calls_run_unchanged_and_read_back_alike(runtime_dir: str, tmp_path) -> None:
    theirs_script, ours_script = _scripts()
    theirs_dir, ours_dir = str(tmp_path / "tensorboardX"), str(tmp_path / "logger_client")
    _run(theirs_script, theirs_dir)
    _run(ours_script, ours_dir)
    theirs_root, ours_root = os.path.join(theirs_dir, "runs"), os.path.join(ours_dir, "runs")

    their_runs, our_runs = _run_names(theirs_root), _run_names(ours_root)
    theirs = {name: _event_summary(os.path.join(theirs_root, run)) for name, run in their_runs.items()}
    ours = {name: _event_summary(os.path.join(ours_root, run)) for name, run in our_runs.items()}
    # tensorboardX leaves an event file without data in the directory of the writer add_hparams is
    # called on; ours writes no file for a writer that logs nothing itself.
    assert theirs.pop("<time>_<host>hparams") == {}
    assert (
        sorted(ours)
        == sorted(theirs)
        == [
            "<time>_<host>",
            "<time>_<host>/run_14h/tanx",
            "<time>_<host>/run_14h/xcosx",
            "<time>_<host>/run_14h/xsinx",
            "<time>_<host>Net1",
            *(f"<time>_<host>hparams/<session {i}>" for i in range(5)),
            "<time>_<host>onnx",
        ]
    )
    # add_graph's run metadata: torch.utils.tensorboard's tag, where tensorboardX writes "profiler".
    assert theirs["<time>_<host>Net1"].pop(("run_metadata", "profiler")) is True
    assert ours["<time>_<host>Net1"].pop(("run_metadata", "step1")) is True
    for name in theirs:
        assert ours[name] == theirs[name], name

    main = theirs["<time>_<host>"]
    assert main[("scalars", "y_2x")] == list(range(100))
    assert main[("scalars", "loss")] == [10]  # use_metadata's step
    assert main[("images", "matplotlib/figures")] == [(0, 1280, 480)]  # two 640 x 480 figures side by side
    assert main[("tensors/pr_curves", "pr_curve")] == [0, 1]
    assert {kind for kind, _ in main} == {
        "scalars",
        "histograms",
        "images",
        "audio",
        "tensors/text",
        "tensors/pr_curves",
        "tensors/custom_scalars",
        "tensors/mesh",
    }
    assert theirs["<time>_<host>onnx"][("graph", "")] > 0 and theirs["<time>_<host>Net1"][("graph", "")] > 0

    # The projector's files: the same paths, config, tensors, labels and sprite pixels.
    their_files, our_files = _projector_files(theirs_dir), _projector_files(ours_dir)
    assert sorted(our_files) == sorted(their_files)
    for path in their_files:
        if not path.endswith(("all_scalars.json", "docs_example.py")):
            assert our_files[path] == their_files[path], path
    config = their_files["runs/<time>_<host>/projector_config.pbtxt"]
    assert [embedding.tensor_name for embedding in config.embeddings] == ["default:00000"] * 3 + ["with/header:00003"]

    # export_scalars_to_json: the same add_scalars series (ours: the float32 values on disk).
    their_json, our_json = (_exported(os.path.join(d, "all_scalars.json")) for d in (theirs_dir, ours_dir))
    assert sorted(our_json) == sorted(their_json) == [f"<time>_<host>/run_14h/{k}" for k in ("tanx", "xcosx", "xsinx")]
    for key, series in their_json.items():
        assert [step for step, _ in our_json[key]] == [step for step, _ in series] == list(range(100))
        np.testing.assert_allclose([v for _, v in our_json[key]], [v for _, v in series], rtol=1e-6, err_msg=key)
