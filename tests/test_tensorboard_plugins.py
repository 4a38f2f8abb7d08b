"""End to end: one log directory written with every SummaryWriter method, served by a real
`tensorboard`, every plugin asked over its HTTP API.

Our SummaryWriter (through a daemon the client starts in the test's runtime directory) logs with each
of its methods into one log root; then a `tensorboard` process serves it, with each of TensorBoard's
loaders (the Python one, `--load_fast=false`, and the Rust data server, `--load_fast=true`), and
each plugin's data route must give back what was logged: scalars, images (the PNG, or the video's
GIF, decodes to the pixels logged), histograms, distributions, text, audio (the WAV's samples),
pr_curves, hparams, custom_scalars, mesh, graphs (the torch graph, the ONNX graph and the run
metadata) and projector (tensor, labels, sprite).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import warnings
import wave
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import wait_for
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.compat.proto.config_pb2 import RunMetadata
from tensorboard.compat.proto.graph_pb2 import GraphDef
from test_graphs import onnx_model_bytes
from test_tensorboard_server import TensorBoard

from logger_client import SummaryWriter, load

pytestmark = pytest.mark.e2e

torch = pytest.importorskip("torch")

KEEP_ALL = dict.fromkeys((ea.COMPRESSED_HISTOGRAMS, ea.IMAGES, ea.AUDIO, ea.SCALARS, ea.HISTOGRAMS, ea.TENSORS), 0)
STEPS = 3
#: What each add_* call logs, fixed so that the served data can be checked against it.
_RNG = np.random.default_rng(13)
WEIGHTS = [_RNG.normal(size=1000) + step for step in range(STEPS)]
RED = np.zeros((3, 8, 12), np.float32)
RED[0] = 1.0
BATCH = np.full((4, 3, 8, 8), 128, np.uint8)
BOXED = np.zeros((3, 48, 48), np.float32)
BOX = np.array([[4, 4, 40, 40]])
VIDEO = np.full((1, 4, 3, 8, 8), 0.5, np.float32)  # N T C H W: 4 frames of one 8 x 8 video
VIDEO[0, :, 1] = np.linspace(0.0, 1.0, 4)[:, None, None]  # the green channel changes frame by frame
SOUND_RATE = 8000
SOUND = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SOUND_RATE) / SOUND_RATE)).astype(np.float32)
PR_LABELS, PR_PREDICTIONS = _RNG.integers(0, 2, 200), _RNG.random(200)
PR_RAW: dict[str, Any] = {
    "counts": [np.array([10.0, 8, 5, 1]), np.array([9.0, 4, 2, 0]), np.array([0.0, 5, 7, 9]), np.array([0.0, 2, 5, 9])],
    "precision": np.array([0.5, 0.6, 0.7, 1.0]),
    "recall": np.array([1.0, 0.8, 0.5, 0.1]),
}
CURVE_X, CURVE_Y = np.array([0.0, 0.1, 0.4, 1.0]), np.array([0.0, 0.6, 0.9, 1.0])
TETRAHEDRON: dict[str, np.ndarray] = {
    "vertices": np.array([[[1.0, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, -1]]], dtype=np.float32),
    "colors": np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 255]]], dtype=np.uint8),
    "faces": np.array([[[0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 3, 2]]], dtype=np.int32),
}
EMBEDDING = _RNG.normal(size=(6, 3)).astype(np.float32)
EMBEDDING_LABELS = [f"point {i}" for i in range(6)]
THUMBNAILS = _RNG.random((6, 3, 4, 4))
ACTIVATION = np.arange(6, dtype=np.float32).reshape(2, 3)
#: Parts of a mesh as TensorBoard's MeshPluginData numbers them.
VERTEX, FACE, COLOR = 1, 2, 3


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _write_every_method(logdir: str, onnx_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with SummaryWriter(logdir) as w:
        for step in range(STEPS):
            w.add_scalar("loss/train", 1.0 / (step + 1), step)
            w.add_scalar("loss/val", 1.5 / (step + 1), step)
            w.add_scalars("split", {"train": step * 0.5, "val": step * 0.25}, step)
            w.add_histogram("weights", WEIGHTS[step], step)
        w.add_histogram_raw(
            "raw", 0.0, 3.0, 6, 14.0, 36.0, bucket_limits=[1.0, 2.0, 3.0], bucket_counts=[1, 2, 3], global_step=0
        )
        w.add_image("image", RED, 0)
        w.add_images("images", BATCH, 0)
        w.add_image_with_boxes("boxes", BOXED, BOX, 0, labels=["cat"])
        figure = plt.figure(figsize=(2, 2))
        plt.plot([0, 1], [1, 0])
        w.add_figure("figure", figure, 0)
        w.add_video("video", VIDEO, 0, fps=4)
        w.add_audio("audio", SOUND, 0, sample_rate=SOUND_RATE)
        w.add_text("notes", "hello **world**", 0)
        w.add_pr_curve("pr", PR_LABELS, PR_PREDICTIONS, 0, num_thresholds=11)
        true_positives, false_positives, true_negatives, false_negatives = PR_RAW["counts"]
        w.add_pr_curve_raw(
            "pr_raw",
            true_positives,
            false_positives,
            true_negatives,
            false_negatives,
            PR_RAW["precision"],
            PR_RAW["recall"],
            1,
            num_thresholds=4,
        )
        w.add_curve("roc", CURVE_X, CURVE_Y, 2, label="ROC curve (area = 0.78)")
        w.add_hparams({"lr": 0.1, "optimizer": "adam", "amp": True}, {"hparam/accuracy": 0.9}, name="trial")
        w.add_custom_scalars({"losses": {"both": ["Multiline", ["loss/train", "loss/val"]]}})
        w.add_mesh("mesh", TETRAHEDRON["vertices"], TETRAHEDRON["colors"], TETRAHEDRON["faces"], global_step=0)
        torch.manual_seed(0)
        w.add_graph(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()), torch.zeros(2, 4))
        w.add_embedding(EMBEDDING, metadata=EMBEDDING_LABELS, label_img=THUMBNAILS, global_step=1, tag="points")
        w.add_tensor("activation", ACTIVATION, 0)
        assert w.flush(timeout=60) is True
    assert w.stats()["records_dropped"] == {}
    # A run holds one graph: the ONNX model's goes to a run of its own.
    with SummaryWriter(os.path.join(logdir, "onnx")) as onnx_writer:
        onnx_writer.add_onnx_graph(onnx_path)
        assert onnx_writer.flush(timeout=60) is True
    assert onnx_writer.stats()["records_dropped"] == {}


@pytest.fixture
def every_method_logdir(runtime_dir: str, tmp_path) -> str:
    logdir, onnx_path = str(tmp_path / "runs"), str(tmp_path / "model.onnx")
    with open(onnx_path, "wb") as f:
        f.write(onnx_model_bytes())
    _write_every_method(logdir, onnx_path)
    return logdir


def _data_server_missing() -> str | None:
    """Why the Rust data server cannot run here, or None."""
    if importlib.util.find_spec("tensorboard_data_server") is None:
        return "the tensorboard-data-server package (the Rust data server, --load_fast=true) is not installed"
    import tensorboard_data_server  # type: ignore[import-untyped]

    binary = tensorboard_data_server.server_binary()
    if binary is None or not os.path.exists(binary):
        return "tensorboard-data-server has no server binary for this platform (--load_fast=true needs it)"
    return None


@pytest.fixture(params=["false", "true"], ids=["python-loader", "rust-data-server"])
def tensorboard(request, every_method_logdir: str, tmp_path) -> Iterator[TensorBoard]:
    if request.param == "true" and (reason := _data_server_missing()) is not None:
        pytest.skip(reason)
    server = TensorBoard(every_method_logdir, request.param, str(tmp_path / "tensorboard.log"))
    try:
        yield server
    finally:
        server.stop()


def eventually(check: Callable[[], None], what: str, timeout_s: float = 60.0) -> None:
    """Runs `check` until its assertions hold (a loader serves a run's data as it reads it); after
    `timeout_s`, its last AssertionError fails the test."""
    failure: list[AssertionError] = []

    def holds() -> bool:
        try:
            check()
        except AssertionError as error:
            failure[:] = [error]
            return False
        return True

    try:
        wait_for(holds, timeout_s=timeout_s, interval_s=0.25, message=what)
    except pytest.fail.Exception:
        if failure:
            raise failure[0] from None
        raise


def _decode(blob: bytes | None) -> Image.Image:
    assert blob is not None
    return Image.open(io.BytesIO(blob))


def _tags(server: TensorBoard, plugin: str) -> dict[str, set[str]]:
    return {run: set(tags) for run, tags in server.get_json(f"data/plugin/{plugin}/tags").items()}


# -- each plugin -----------------------------------------------------------------------------------


def check_scalars(server: TensorBoard) -> None:
    assert _tags(server, "scalars") == {
        ".": {"loss/train", "loss/val"},
        "split/train": {"split"},
        "split/val": {"split"},
        "trial": {"hparam/accuracy"},
    }
    points = server.get_json("data/plugin/scalars/scalars", run=".", tag="loss/train")
    assert [step for _, step, _ in points] == list(range(STEPS))
    assert [value for _, _, value in points] == [float(np.float32(1.0 / (s + 1))) for s in range(STEPS)]
    val = server.get_json("data/plugin/scalars/scalars", run="split/val", tag="split")
    assert [(step, value) for _, step, value in val] == [(s, s * 0.25) for s in range(STEPS)]
    (accuracy,) = server.get_json("data/plugin/scalars/scalars", run="trial", tag="hparam/accuracy")
    assert accuracy[1:] == [0, pytest.approx(0.9)]


def _image(server: TensorBoard, tag: str) -> Image.Image:
    (entry,) = server.get_json("data/plugin/images/images", run=".", tag=tag)
    assert entry["step"] == 0
    return _decode(server.get("data/plugin/images/individualImage?" + entry["query"]))


def check_images(server: TensorBoard) -> None:
    assert _tags(server, "images") == {".": {"image", "images", "boxes", "figure", "video"}}
    with _image(server, "image") as picture:
        assert (picture.format, picture.size) == ("PNG", (12, 8))
        np.testing.assert_array_equal(np.asarray(picture.convert("RGB")), np.broadcast_to([255, 0, 0], (8, 12, 3)))
    with _image(server, "images") as grid:  # 4 images side by side, as tensorboardX lays a batch out
        assert (grid.format, grid.size) == ("PNG", (32, 8))
        assert np.all(np.asarray(grid.convert("RGB")) == 128)
    with _image(server, "boxes") as boxed:
        pixels = np.asarray(boxed.convert("RGB"))
    assert pixels.shape == (48, 48, 3)
    xmin, ymin, xmax, ymax = BOX[0]
    assert np.all(pixels[ymin, xmin:xmax] == [255, 0, 0]) and np.all(pixels[ymin:ymax, xmin] == [255, 0, 0])
    assert np.all(pixels[ymin + 4 : ymin + 12, xmin + 4 : xmax - 4] == 0)  # inside the box, above the label
    assert np.all(pixels[: ymin - 1] == 0) and np.all(pixels[ymax + 2 :] == 0)  # a 2-pixel line, outside nothing
    with _image(server, "figure") as figure:
        assert (figure.format, figure.size) == ("PNG", (200, 200))  # 2 x 2 inches at 100 dpi
        rgb = np.asarray(figure.convert("RGB"))
    assert rgb.min() < 128 and rgb.max() == 255  # a white canvas with a line drawn on it
    with _image(server, "video") as animation:
        assert (animation.format, animation.size, animation.n_frames) == ("GIF", (8, 8), 4)
        for index in range(4):
            animation.seek(index)
            frame = np.asarray(animation.convert("RGB")).astype(int)
            expected = (VIDEO[0, index].transpose(1, 2, 0) * 255).astype(int)
            assert np.abs(frame - expected).max() <= 1, index


def check_histograms(server: TensorBoard) -> None:
    assert _tags(server, "histograms") == {".": {"weights", "raw"}}
    weights = server.get_json("data/plugin/histograms/histograms", run=".", tag="weights")
    assert [step for _, step, _ in weights] == list(range(STEPS))
    for (_, _, buckets), values in zip(weights, WEIGHTS):
        assert sum(count for _, _, count in buckets) == pytest.approx(values.size)
        # The buckets span the values (the Python loader serves them as float32).
        assert buckets[0][0] == pytest.approx(values.min(), rel=1e-6)
        assert buckets[-1][1] >= np.float32(values.max())
    (raw,) = server.get_json("data/plugin/histograms/histograms", run=".", tag="raw")
    assert raw[1:] == [0, [[0.0, 1.0, 1.0], [1.0, 2.0, 2.0], [2.0, 3.0, 3.0]]]


def check_distributions(server: TensorBoard) -> None:
    assert _tags(server, "distributions") == {".": {"weights", "raw"}}
    weights = server.get_json("data/plugin/distributions/distributions", run=".", tag="weights")
    assert [step for _, step, _ in weights] == list(range(STEPS))
    for (_, _, points), values in zip(weights, WEIGHTS):
        assert [basis for basis, _ in points] == [0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10000]
        spread = [value for _, value in points]
        assert spread == sorted(spread)
        assert spread[0] == pytest.approx(values.min(), rel=1e-6)
        assert spread[-1] == pytest.approx(values.max(), rel=1e-6)
        assert spread[4] == pytest.approx(np.median(values), abs=0.2)  # the median, from the buckets


def check_text(server: TensorBoard) -> None:
    assert _tags(server, "text") == {".": {"notes/text_summary", "roc/text_summary"}}
    (note,) = server.get_json("data/plugin/text/text", run=".", tag="notes/text_summary")
    assert note["step"] == 0 and "hello <strong>world</strong>" in note["text"]
    (label,) = server.get_json("data/plugin/text/text", run=".", tag="roc/text_summary")
    assert label["step"] == 2 and "ROC curve (area = 0.78)" in label["text"]


def check_audio(server: TensorBoard) -> None:
    assert _tags(server, "audio") == {".": {"audio"}}
    (entry,) = server.get_json("data/plugin/audio/audio", run=".", tag="audio")
    assert entry["step"] == 0
    blob = server.get("data/plugin/audio/individualAudio?" + entry["query"])
    assert blob is not None
    with wave.open(io.BytesIO(blob)) as clip:
        assert (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) == (SOUND_RATE, 1, 2)
        samples = np.frombuffer(clip.readframes(clip.getnframes()), "<i2")
    assert samples.size == SOUND.size
    np.testing.assert_allclose(samples / 32767.0, SOUND, atol=1e-4)


def check_pr_curves(server: TensorBoard) -> None:
    assert _tags(server, "pr_curves") == {".": {"pr", "pr_raw", "roc"}}
    (pr,) = server.get_json("data/plugin/pr_curves/pr_curves", run=".", tag="pr")["."]
    # 11 thresholds; the plugin leaves out the last, 1.0, where no prediction is positive (precision undefined).
    assert pr["step"] == 0 and pr["thresholds"] == pytest.approx([i / 10 for i in range(10)])
    positives = int(PR_LABELS.sum())
    # At threshold 0 every prediction is positive: all true positives found, every negative a false one.
    assert (pr["true_positives"][0], pr["false_positives"][0]) == (positives, PR_LABELS.size - positives)
    assert pr["recall"][0] == 1.0
    (raw,) = server.get_json("data/plugin/pr_curves/pr_curves", run=".", tag="pr_raw")["."]
    assert raw["step"] == 1
    count_names = ("true_positives", "false_positives", "true_negatives", "false_negatives")
    for name, counts in zip(count_names, PR_RAW["counts"]):
        assert raw[name] == counts.tolist(), name
    np.testing.assert_array_equal(raw["precision"], PR_RAW["precision"].astype(np.float32))
    np.testing.assert_array_equal(raw["recall"], PR_RAW["recall"].astype(np.float32))
    (roc,) = server.get_json("data/plugin/pr_curves/pr_curves", run=".", tag="roc")["."]
    assert roc["step"] == 2
    # The chart reverses each series before drawing it: reversed, recall is x and precision y.
    np.testing.assert_array_equal(roc["recall"][::-1], CURVE_X.astype(np.float32))
    np.testing.assert_array_equal(roc["precision"][::-1], CURVE_Y.astype(np.float32))


def _hparams(server: TensorBoard, route: str, request: dict) -> Any:
    return server.get_json(f"data/plugin/hparams/{route}", request=json.dumps(request))


def check_hparams(server: TensorBoard) -> None:
    experiment = _hparams(server, "experiment", {"experimentName": ""})
    assert {(info["name"], info["type"]) for info in experiment["hparamInfos"]} == {
        ("lr", "DATA_TYPE_FLOAT64"),
        ("optimizer", "DATA_TYPE_STRING"),
        ("amp", "DATA_TYPE_BOOL"),
    }
    assert [info["name"]["tag"] for info in experiment["metricInfos"]] == ["hparam/accuracy"]
    request = {"experimentName": "", "startIndex": 0, "sliceSize": 10, "allowedStatuses": ["STATUS_SUCCESS"]}
    (group,) = _hparams(server, "session_groups", request)["sessionGroups"]
    assert group["name"] == "trial" and group["hparams"] == {"lr": 0.1, "optimizer": "adam", "amp": True}
    (metric,) = group["metricValues"]
    assert metric["name"]["tag"] == "hparam/accuracy" and metric["value"] == pytest.approx(0.9)
    assert [session["status"] for session in group["sessions"]] == ["STATUS_SUCCESS"]


def check_custom_scalars(server: TensorBoard) -> None:
    assert server.get_json("data/plugin/custom_scalars/layout")["category"] == [
        {
            "title": "losses",
            "chart": [{"title": "both", "multiline": {"tag": ["loss/train", "loss/val"]}}],
            "closed": False,
        }
    ]
    found = server.get_json("data/plugin/custom_scalars/scalars", run=".", tag="loss/.*")
    assert found["regex_valid"] is True and set(found["tag_to_events"]) == {"loss/train", "loss/val"}
    assert [value for _, _, value in found["tag_to_events"]["loss/val"]] == [
        float(np.float32(1.5 / (s + 1))) for s in range(STEPS)
    ]


def check_mesh(server: TensorBoard) -> None:
    assert server.get_json("data/plugin/mesh/tags") == {".": {"mesh": {"samples": 1}}}
    parts = server.get_json("data/plugin/mesh/meshes", run=".", tag="mesh", sample="0")
    assert sorted(part["content_type"] for part in parts) == [VERTEX, FACE, COLOR]
    assert {part["components"] for part in parts} == {(1 << VERTEX) | (1 << FACE) | (1 << COLOR)}
    assert all(part["step"] == 0 and part["data_shape"] == [1, 4, 3] for part in parts)
    for content_type, name, dtype in (
        ("VERTEX", "vertices", np.float32),
        ("FACE", "faces", np.int32),
        ("COLOR", "colors", np.uint8),
    ):
        body = server.get("data/plugin/mesh/data", run=".", tag="mesh", content_type=content_type, sample="0", step="0")
        assert body is not None
        np.testing.assert_array_equal(np.frombuffer(body, dtype), TETRAHEDRON[name].reshape(-1))


def _served_graph(server: TensorBoard, run: str) -> GraphDef:
    body = server.get("data/plugin/graphs/graph", run=run, conceptual="false")
    assert body is not None, f"no graph served for run {run!r}"
    return text_format.Parse(body.decode(), GraphDef())


def check_graphs(server: TensorBoard, logdir: str) -> None:
    info = server.get_json("data/plugin/graphs/info")
    assert set(info) == {".", "onnx"}
    assert info["."]["run_graph"] is True and info["onnx"]["run_graph"] is True
    assert info["."]["tags"] == {
        "step1": {"tag": "step1", "conceptual_graph": False, "op_graph": False, "profile": True}
    }
    served = {run: _served_graph(server, run) for run in (".", "onnx")}
    for run, graph in served.items():
        on_disk = ea.EventAccumulator(os.path.join(logdir, run), size_guidance=KEEP_ALL).Reload().Graph()
        assert graph == on_disk, run
    assert {"IO Node", "aten::linear", "aten::relu"} <= {node.op for node in served["."].node}
    assert {"Conv", "Relu", "Gemm", "Variable"} <= {node.op for node in served["onnx"].node}
    body = server.get("data/plugin/graphs/run_metadata", run=".", tag="step1")
    assert body is not None
    metadata = text_format.Parse(body.decode(), RunMetadata())
    assert [device.device for device in metadata.step_stats.dev_stats] == ["/device:CPU:0"]


def check_projector(server: TensorBoard) -> None:
    assert server.get_json("data/plugin/projector/runs") == ["."]
    (embedding,) = server.get_json("data/plugin/projector/info", run=".")["embeddings"]
    assert embedding["tensorName"] == "points:00001" and embedding["tensorShape"] == [6, 3]
    assert embedding["sprite"]["singleImageDim"] == [4, 4]
    tensor = server.get("data/plugin/projector/tensor", run=".", name="points:00001")
    assert tensor is not None
    np.testing.assert_array_equal(np.frombuffer(tensor, np.float32).reshape(6, 3), EMBEDDING)
    labels = server.get("data/plugin/projector/metadata", run=".", name="points:00001")
    assert labels is not None and labels.decode().splitlines() == EMBEDDING_LABELS
    with _decode(server.get("data/plugin/projector/sprite_image", run=".", name="points:00001")) as sprite:
        assert (sprite.format, sprite.size) == ("PNG", (12, 12))  # 3 x 3 cells of 4 x 4 for 6 thumbnails
        pixels = np.asarray(sprite.convert("RGB")).astype(int)
    expected = (THUMBNAILS[4] * 255).astype(int).transpose(1, 2, 0)  # thumbnail 4: row 1, column 1
    assert np.abs(pixels[4:8, 4:8] - expected).max() <= 1


def test_tensorboard_serves_every_plugin(tensorboard: TensorBoard, every_method_logdir: str) -> None:
    server = tensorboard
    checks: list[tuple[str, Callable[[], None]]] = [
        ("scalars", lambda: check_scalars(server)),
        ("images", lambda: check_images(server)),
        ("histograms", lambda: check_histograms(server)),
        ("distributions", lambda: check_distributions(server)),
        ("text", lambda: check_text(server)),
        ("audio", lambda: check_audio(server)),
        ("pr_curves", lambda: check_pr_curves(server)),
        ("hparams", lambda: check_hparams(server)),
        ("custom_scalars", lambda: check_custom_scalars(server)),
        ("mesh", lambda: check_mesh(server)),
        ("graphs", lambda: check_graphs(server, every_method_logdir)),
        ("projector", lambda: check_projector(server)),
    ]
    # Every plugin is listed as active...
    eventually(
        lambda: _assert_active(server, [name for name, _ in checks]), "tensorboard to list every plugin as active"
    )
    # ...and serves its data (a loader may still be reading a run: each check is retried until it holds).
    for name, check in checks:
        eventually(check, f"the {name} plugin to serve what was logged")
    # What no dashboard shows (add_tensor's series) reads back too, and nothing is damaged.
    data = load(every_method_logdir)
    (activation,) = data.tensors["tensor"][(".", "activation")]
    np.testing.assert_array_equal(activation.value, ACTIVATION)
    assert data.damage == [] and set(data.graphs) == {".", "onnx"}


def _assert_active(server: TensorBoard, plugins: list[str]) -> None:
    body = server.get("data/plugins_listing")
    assert body is not None, "tensorboard is not answering yet"
    listing = json.loads(body)
    inactive = [name for name in plugins if not listing.get(name, {}).get("enabled")]
    assert not inactive, f"inactive plugins: {inactive}"
