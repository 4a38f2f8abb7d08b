"""The plugin kinds end to end: PR curves, curves, hparams, custom scalars, meshes through a real
daemon, read back with TensorBoard's `EventAccumulator` and served by a real `tensorboard`.

The same calls go to our SummaryWriter and to tensorboardX's (or torch.utils.tensorboard's, called
its way); both log roots must read back alike, run by run: tags, steps, tensors, plugin contents.
Where tensorboardX is wrong (a mesh without its `components`), ours is right and the test says so.
A `tensorboard` process then serves our log root, with each of its loaders, and every plugin's data
route must show what was logged: PR curves (add_curve's points in their order), the curve's label,
the custom scalars layout, the hparams experiment and sessions, and the meshes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import tensorboardX
from conftest import REPO, wait_for
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.util import tensor_util
from test_parity import assert_same
from test_tensorboard_server import TensorBoard

from logger_client import SummaryWriter
from logger_daemon.protos.plugin_hparams_pb2 import HParamsPluginData
from logger_daemon.protos.plugin_mesh_pb2 import MeshPluginData

pytestmark = pytest.mark.e2e

KEEP_ALL = dict.fromkeys((ea.COMPRESSED_HISTOGRAMS, ea.IMAGES, ea.AUDIO, ea.SCALARS, ea.HISTOGRAMS, ea.TENSORS), 0)
WALLTIME = 1_700_000_000.25
#: Parts of a mesh as TensorBoard's MeshPluginData numbers them.
VERTEX, FACE, COLOR = 1, 2, 3


@pytest.fixture(autouse=True)
def _quiet_reference_writers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def plugin_snapshot(root: str) -> dict[str, dict[str, Any]]:
    """What TensorBoard's loader reads from every run under `root` that holds data: scalars (step,
    value), tensors (step, dtype, array; the wall time where the call takes one), each tag's plugin
    metadata, and the hparams plugin's contents. A mesh's `components` is taken out of its
    metadata into `mesh_components`, to be checked on its own."""
    result = {}
    for directory, _, files in os.walk(root):
        if not any("tfevents" in name for name in files):
            continue
        acc = ea.EventAccumulator(directory, size_guidance=KEEP_ALL).Reload()
        tags = acc.Tags()
        if not (tags[ea.SCALARS] or tags[ea.TENSORS]):
            continue
        run: dict[str, Any] = {
            "scalars": {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags[ea.SCALARS]},
            "tensors": {},
            "metadata": {},
            "mesh_components": {},
            "hparams": _hparams_contents(acc),
        }
        for tag in tags[ea.TENSORS]:
            metadata = acc.SummaryMetadata(tag)
            plugin, content = metadata.plugin_data.plugin_name, metadata.plugin_data.content
            timed = plugin in ("pr_curves", "mesh")  # the calls that take a walltime
            run["tensors"][tag] = [
                (e.step, e.wall_time if timed else None, e.tensor_proto.dtype, tensor_util.make_ndarray(e.tensor_proto))
                for e in acc.Tensors(tag)
            ]
            if plugin == "mesh":
                data = MeshPluginData.FromString(content)
                run["mesh_components"][tag] = data.components
                data.components = 0
                content = data.SerializeToString()
            run["metadata"][tag] = (plugin, content, metadata.display_name, metadata.summary_description)
        result[os.path.relpath(directory, root)] = run
    return result


def _hparams_contents(acc: ea.EventAccumulator) -> dict[str, HParamsPluginData]:
    """The hparams plugin's contents, parsed: a map's bytes come in no fixed order."""
    try:
        contents = acc.PluginTagToContent("hparams")
    except KeyError:
        return {}
    return {tag: HParamsPluginData.FromString(content) for tag, content in contents.items()}


def write_both(calls: Callable[[Any], None], ours_root: str, reference: Any) -> None:
    with SummaryWriter(ours_root) as ours:
        calls(ours)
        assert ours.flush() is True
    assert ours.stats()["records_dropped"] == {}
    calls(reference)
    reference.close()


# -- parity with tensorboardX ----------------------------------------------------------------------


def _plugin_calls(w: Any) -> None:
    rng = _rng(0)
    for step in range(3):
        labels, predictions = rng.integers(0, 2, 500), rng.random(500).astype(np.float32)
        w.add_pr_curve("pr/plain", labels, predictions, step, walltime=WALLTIME + step)
        w.add_pr_curve("pr/weighted", labels, predictions, step, 21, rng.random(500), WALLTIME + step)
        w.add_scalar("loss/train", 1.0 / (step + 1), step, walltime=WALLTIME + step)
        w.add_scalar("loss/val", 1.5 / (step + 1), step, walltime=WALLTIME + step)
    counts = [np.array([10, 8, 5, 1]), np.array([9, 4, 2, 0]), np.array([0, 5, 7, 9]), np.array([0, 2, 5, 9])]
    w.add_pr_curve_raw(
        "pr/raw", *counts, np.array([0.5, 0.6, 0.7, 1.0]), np.array([1.0, 0.8, 0.5, 0.1]), 4, 4, walltime=WALLTIME
    )
    w.add_custom_scalars(
        {
            "losses": {"both": ["Multiline", ["loss/train", "loss/val"]]},
            "bounds": {"val": ["Margin", ["loss/val", "loss/train", "loss/val"]]},
        }
    )
    w.add_mesh("cloud", rng.normal(size=(1, 50, 3)), global_step=0, walltime=WALLTIME)
    w.add_mesh(
        "tetrahedron",
        np.array([[[1.0, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, -1]]]),
        colors=np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 255]]], dtype=np.uint8),
        faces=np.array([[[0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 3, 2]]]),
        config_dict={"camera": {"cls": "PerspectiveCamera", "fov": 75}},
        global_step=1,
        walltime=WALLTIME,
    )
    w.add_hparams(
        {"lr": 0.01, "optimizer": "adam", "nesterov": True, "seed": None}, {"hparam/accuracy": 0.8}, "trial-1"
    )
    w.add_hparams(
        {"lr": 0.1, "optimizer": "sgd", "nesterov": False}, {"hparam/accuracy": 0.6}, name="trial-2", global_step=5
    )


def test_plugin_kinds_read_back_as_tensorboardX_s(runtime_dir: str, tmp_path) -> None:
    ours_root, theirs_root = str(tmp_path / "ours"), str(tmp_path / "theirs")
    write_both(_plugin_calls, ours_root, tensorboardX.SummaryWriter(theirs_root))
    ours, theirs = plugin_snapshot(ours_root), plugin_snapshot(theirs_root)

    assert sorted(theirs) == [".", "trial-1", "trial-2"]
    assert sorted(theirs["."]["tensors"]) == [
        "cloud_1",
        "custom_scalars__config__",
        "pr/plain",
        "pr/raw",
        "pr/weighted",
        "tetrahedron_1",
        "tetrahedron_2",
        "tetrahedron_3",
    ]
    assert sorted(theirs["trial-1"]["hparams"]) == [
        "_hparams_/experiment",
        "_hparams_/session_end_info",
        "_hparams_/session_start_info",
    ]
    # tensorboardX is wrong here: no components, which TensorBoard reads as "vertices, faces and
    # colors", so it asks for the faces and colors of a point cloud. Ours names the parts present.
    assert theirs["."]["mesh_components"] == dict.fromkeys(["cloud_1", *(f"tetrahedron_{i}" for i in (1, 2, 3))], 0)
    assert ours["."]["mesh_components"] == {
        "cloud_1": 1 << VERTEX,
        **dict.fromkeys([f"tetrahedron_{i}" for i in (1, 2, 3)], (1 << VERTEX) | (1 << FACE) | (1 << COLOR)),
    }
    for run in ours.values():
        run.pop("mesh_components")
    for run in theirs.values():
        run.pop("mesh_components")
    assert_same(ours, theirs)
    assert ours["trial-2"]["scalars"] == {"hparam/accuracy": [(5, pytest.approx(0.6))]}


def test_hparams_called_torch_s_way_read_back_as_torch_s(runtime_dir: str, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.tensorboard import SummaryWriter as TorchSummaryWriter

    def calls(w: Any) -> None:
        hparams = {"lr": 0.01, "batch": 32, "optimizer": "adam", "amp": True, "scale": torch.tensor([0.5])}
        domains = {"batch": [16, 32, 64], "optimizer": ["adam", "sgd"], "amp": [True, False]}
        w.add_hparams(hparams, {"hparam/accuracy": 0.75}, domains, "sweep/a", 3)
        w.add_hparams({"lr": 0.1}, {"hparam/accuracy": torch.tensor(0.5)}, run_name="sweep/b", global_step=4)
        w.add_pr_curve("pr", np.array([1, 0, 1, 1, 0]), np.array([0.9, 0.2, 0.6, 0.4, 0.7]), 2, 10, walltime=WALLTIME)

    ours_root, theirs_root = str(tmp_path / "ours"), str(tmp_path / "theirs")
    write_both(calls, ours_root, TorchSummaryWriter(log_dir=theirs_root))
    ours, theirs = plugin_snapshot(ours_root), plugin_snapshot(theirs_root)
    assert sorted(theirs) == [".", "sweep/a", "sweep/b"]
    assert theirs["sweep/a"]["scalars"] == {"hparam/accuracy": [(3, 0.75)]}
    assert_same(ours, theirs)


# -- a real tensorboard serves every plugin of the family ------------------------------------------

CURVE_X = np.array([0.0, 0.0, 0.1, 0.1, 0.3, 0.6, 1.0])
CURVE_Y = np.array([0.0, 0.4, 0.4, 0.8, 0.9, 1.0, 1.0])
CLOUD = _rng(7).normal(size=(1, 40, 3)).astype(np.float32)
TETRAHEDRON: dict[str, np.ndarray] = {
    "vertices": np.array([[[1.0, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, -1]]], dtype=np.float32),
    "colors": np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 255]]], dtype=np.uint8),
    "faces": np.array([[[0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 3, 2]]], dtype=np.int32),
}


@pytest.fixture
def served_logdir(runtime_dir: str, tmp_path) -> str:
    """A log root with every kind of the family, written through the daemon."""
    logdir = str(tmp_path / "runs")
    with SummaryWriter(logdir) as w:
        rng = _rng(1)
        for step in range(3):
            w.add_pr_curve("pr", rng.integers(0, 2, 300), rng.random(300), step, num_thresholds=11)
            w.add_scalar("loss/train", 1.0 / (step + 1), step)
            w.add_scalar("loss/val", 1.2 / (step + 1), step)
        w.add_curve("ROC Curve", CURVE_X, CURVE_Y, 7, label="ROC curve (area = 0.86)")
        w.add_custom_scalars_multilinechart(["loss/train", "loss/val"], category="losses", title="both")
        w.add_mesh("cloud", CLOUD, global_step=0)
        w.add_mesh("tetrahedron", TETRAHEDRON["vertices"], TETRAHEDRON["colors"], TETRAHEDRON["faces"], global_step=2)
        w.add_hparams({"lr": 0.01, "optimizer": "adam", "amp": True}, {"hparam/accuracy": 0.8}, name="t1")
        w.add_hparams({"lr": 0.1, "optimizer": "sgd", "amp": False}, {"hparam/accuracy": 0.6}, name="t2")
        assert w.flush() is True
    assert w.stats()["records_dropped"] == {}
    return logdir


@pytest.fixture(params=["auto", "false"], ids=["load_fast-auto", "load_fast-false"])
def tensorboard(request, served_logdir: str, tmp_path) -> Iterator[TensorBoard]:
    server = TensorBoard(served_logdir, request.param, str(tmp_path / "tensorboard.log"))
    try:
        yield server
    finally:
        server.stop()


def _hparams_request(server: TensorBoard, route: str, request: dict) -> Any:
    return server.get_json(f"data/plugin/hparams/{route}", request=json.dumps(request))


def _all_tags_listed(server: TensorBoard) -> bool:
    body = server.get("data/plugin/mesh/tags")
    return body is not None and json.loads(body).get(".", {}).keys() == {"cloud", "tetrahedron"}


def test_tensorboard_serves_every_plugin_of_the_family(tensorboard: TensorBoard) -> None:
    server = tensorboard
    wait_for(lambda: _all_tags_listed(server), timeout_s=90, interval_s=0.25, message="tensorboard to list the meshes")

    # PR curves: add_pr_curve's three steps, and add_curve's points, drawn in the order given.
    pr_tags = server.get_json("data/plugin/pr_curves/tags")
    assert set(pr_tags) == {"."} and set(pr_tags["."]) == {"pr", "ROC Curve"}
    assert pr_tags["."]["ROC Curve"]["description"]  # what x and y are, shown with the chart
    curves = server.get_json("data/plugin/pr_curves/pr_curves", run=".", tag="pr")["."]
    assert [entry["step"] for entry in curves] == [0, 1, 2]
    assert all(entry["recall"][0] == 1.0 for entry in curves)  # threshold 0: every positive found
    (roc,) = server.get_json("data/plugin/pr_curves/pr_curves", run=".", tag="ROC Curve")["."]
    assert roc["step"] == 7
    # The chart reverses each series before drawing it: reversed, recall is x and precision y.
    np.testing.assert_array_equal(roc["recall"][::-1], CURVE_X.astype(np.float32))
    np.testing.assert_array_equal(roc["precision"][::-1], CURVE_Y.astype(np.float32))
    (label,) = server.get_json("data/plugin/text/text", run=".", tag="ROC Curve/text_summary")
    assert label["step"] == 7 and "ROC curve (area = 0.86)" in label["text"]

    # Custom scalars: the layout, and the scalars it names.
    layout = server.get_json("data/plugin/custom_scalars/layout")
    assert layout["category"] == [
        {
            "title": "losses",
            "chart": [{"title": "both", "multiline": {"tag": ["loss/train", "loss/val"]}}],
            "closed": False,
        }
    ]

    # HParams: the experiment (types, metrics) and one session group per add_hparams call.
    experiment = _hparams_request(server, "experiment", {"experimentName": ""})
    assert {(info["name"], info["type"]) for info in experiment["hparamInfos"]} == {
        ("lr", "DATA_TYPE_FLOAT64"),
        ("optimizer", "DATA_TYPE_STRING"),
        ("amp", "DATA_TYPE_BOOL"),
    }
    assert [info["name"]["tag"] for info in experiment["metricInfos"]] == ["hparam/accuracy"]
    groups = _hparams_request(
        server,
        "session_groups",
        {"experimentName": "", "startIndex": 0, "sliceSize": 10, "allowedStatuses": ["STATUS_SUCCESS"]},
    )["sessionGroups"]
    found = {group["name"]: (group["hparams"], group["metricValues"][0]["value"]) for group in groups}
    assert found == {
        "t1": ({"lr": 0.01, "optimizer": "adam", "amp": True}, pytest.approx(0.8)),
        "t2": ({"lr": 0.1, "optimizer": "sgd", "amp": False}, pytest.approx(0.6)),
    }

    # Meshes: the components present, so a point cloud is not asked for faces and colors.
    (cloud,) = server.get_json("data/plugin/mesh/meshes", run=".", tag="cloud", sample="0")
    assert (cloud["components"], cloud["content_type"], cloud["data_shape"]) == (1 << VERTEX, VERTEX, [1, 40, 3])
    parts = server.get_json("data/plugin/mesh/meshes", run=".", tag="tetrahedron", sample="0")
    assert sorted(part["content_type"] for part in parts) == [VERTEX, FACE, COLOR]
    assert {part["components"] for part in parts} == {(1 << VERTEX) | (1 << FACE) | (1 << COLOR)}
    for content_type, name, dtype in (
        ("VERTEX", "vertices", np.float32),
        ("FACE", "faces", np.int32),
        ("COLOR", "colors", np.uint8),
    ):
        body = server.get(
            "data/plugin/mesh/data", run=".", tag="tetrahedron", content_type=content_type, sample="0", step="2"
        )
        assert body is not None
        np.testing.assert_array_equal(np.frombuffer(body, dtype), TETRAHEDRON[name].reshape(-1))
    body = server.get("data/plugin/mesh/data", run=".", tag="cloud", content_type="VERTEX", sample="0", step="0")
    assert body is not None
    np.testing.assert_array_equal(np.frombuffer(body, np.float32), CLOUD.reshape(-1))


# -- the training process stays thin ---------------------------------------------------------------


def test_no_call_of_the_family_imports_protobuf_torch_or_the_daemon() -> None:
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from logger_client import SummaryWriter
        from logger_client.in_memory import InMemoryTransport

        transport = InMemoryTransport()
        w = SummaryWriter("unused", transport=transport)
        w.add_pr_curve("p", np.array([1, 0]), np.array([0.2, 0.9]), 0, weights=np.ones(2))
        w.add_pr_curve_raw("r", *[np.ones(3)] * 6, global_step=1)
        w.add_curve("c", [0.0, 1.0], [0.0, 1.0], 0, label="l")
        w.add_hparams({"lr": 0.1, "f": len}, {"m": 1.0}, name="s")
        w.add_hparams({"lr": 0.1}, {"m": 1.0}, {"lr": [0.1, 0.2]}, "t", 3)
        w.add_custom_scalars({"c": {"t": ["Multiline", ["a"]]}})
        w.add_custom_scalars_multilinechart(["a"])
        w.add_custom_scalars_marginchart(["a", "b", "c"])
        w.add_mesh("m", np.ones((1, 3, 3)), colors=np.zeros((1, 3, 3)), faces=np.zeros((1, 1, 3)))
        assert len(transport.records()) == 11, transport.records()
        heavy = ("google", "torch", "logger_daemon", "tensorboard")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        print(loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
