"""End to end: every example of the seed (../shared/seed/, a tensorboardX how-to) runs against our
SummaryWriter, through a real daemon, and what each logged reads back.

The examples are in `seed_examples.py`, in the seed's order, with its import switched to ours and
its own broken code fixed where it must be (each fix commented there). They run in this process
(`runpy`) in an empty working directory, as a user's script would; then the log directory is read
back with `logger_client.load`, which must agree with TensorBoard's `EventAccumulator` on every run
and tag, and each example's data is checked. The seed's `writer.load('logs/my_experiment')` (example
9) must return the data logged until then.
"""

from __future__ import annotations

import os
import re
import runpy
import warnings
from typing import Any

import numpy as np
import pytest
from conftest import REPO
from google.protobuf import text_format
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from test_reader import assert_reads_like_tensorboard

from logger_client import SummaryWriter, load
from logger_client.reader import LogData

pytestmark = pytest.mark.e2e

pytest.importorskip("torch")

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed_examples.py")
SEED = os.path.join(REPO, "..", "shared", "seed", "000_019df605e9621e1f.txt")
#: The seed's lines that seed_examples.py changes: its import (switched to ours), and its broken code.
ADAPTED = {
    "from torch.utils.tensorboard import SummaryWriter": "from logger_client import SummaryWriter",
    "model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1))": (
        "model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1), nn.Sigmoid())"
    ),
    "writer.add_embedding(embeddings, metadata=labels, label_text=labels, epoch)": (
        "writer.add_embedding(embeddings, metadata=labels, global_step=epoch)"
    ),
    "writer.add_curve('ROC Curve', fpr, tpr, label='ROC curve (area = %0.2f)' % roc_auc, epoch)": (
        "writer.add_curve('ROC Curve', fpr, tpr, epoch, label='ROC curve (area = %0.2f)' % roc_auc)"
    ),
}
LOGDIR = os.path.join("logs", "my_experiment")
EPOCH = 99  # the training loop's last epoch: every example after it logs at this step


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def seed_run(runtime_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[LogData]]:
    """Runs the seed's examples in an empty working directory; returns their globals and what each
    `writer.load(...)` call of theirs returned."""
    loaded: list[LogData] = []
    original = SummaryWriter.load

    def load_and_keep(self: SummaryWriter, logdir: Any = None) -> LogData:
        data = original(self, logdir)
        loaded.append(data)
        return data

    monkeypatch.setattr(SummaryWriter, "load", load_and_keep)
    monkeypatch.chdir(tmp_path)
    names = runpy.run_path(SCRIPT, run_name="seed_examples")
    writer = names["writer"]
    assert writer.close(timeout=60) is True
    assert writer.stats()["records_dropped"] == {}
    return names, loaded


def test_the_script_holds_every_line_of_the_seeds_examples() -> None:
    """Every line of the seed's 28 code blocks is in seed_examples.py, in order, except the lines
    ADAPTED lists, which are there as adapted."""
    if not os.path.exists(SEED):
        pytest.skip(f"the seed is not beside the repository ({SEED})")
    with open(SEED, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 28
    with open(SCRIPT, encoding="utf-8") as f:
        script = [line.split("  # noqa")[0].split("  # the seed:")[0].rstrip() for line in f]
    position = 0
    for block in blocks:
        for line in filter(str.strip, block.splitlines()):
            wanted = ADAPTED.get(line.strip(), line.strip())
            found = [i for i, mine in enumerate(script) if i >= position and mine.strip() == wanted]
            assert found, f"seed line not in {SCRIPT} (in order): {line!r}"
            position = found[0] + 1
    adapted_lines = {line.strip() for line in script} & set(ADAPTED.values())
    assert adapted_lines == set(ADAPTED.values())


def _scalar(data: LogData, run: str, tag: str) -> list[tuple[int, float]]:
    series = data.scalars[(run, tag)]
    return list(zip(series.step.tolist(), series.value.tolist()))


def _f32(value: float) -> float:
    return float(np.float32(value))


def _graphs(logdir: str) -> list[GraphDef]:
    """Every GraphDef written to the run's event files, in order (TensorBoard shows the last)."""
    graphs: list[GraphDef] = []
    for name in sorted(os.listdir(logdir)):
        if ".tfevents." in name:
            events = EventFileLoader(os.path.join(logdir, name)).Load()
            graphs.extend(GraphDef.FromString(event.graph_def) for event in events if event.HasField("graph_def"))
    return graphs


def test_every_seed_example_runs_and_reads_back(seed_run: tuple[dict[str, Any], list[LogData]]) -> None:
    names, loaded = seed_run
    data = assert_reads_like_tensorboard(LOGDIR)  # our reader and TensorBoard's loader agree, run by run
    assert data.damage == [] and data.purged == 0
    model = names["model"]

    # 3, 6, 7: the training loop's loss and accuracy per epoch, then once more at the last epoch.
    loss = _scalar(data, ".", "Loss/train")
    assert [step for step, _ in loss] == [*range(100), EPOCH]
    assert loss[-1] == loss[-2] == (EPOCH, _f32(names["loss"].item()))
    assert _scalar(data, ".", "Accuracy/train") == [(step, 0.75) for step in [*range(100), EPOCH]]
    # 4: each parameter's histogram (tags cleaned as tensorboardX cleans them).
    for name, parameter in model.named_parameters():
        (histogram,) = data.histograms[(".", name)]
        values = parameter.detach().numpy()
        assert (histogram.step, histogram.num) == (EPOCH, values.size)
        assert (histogram.min, histogram.max) == (values.min(), values.max())
    # 5: the activation, as a tensor with its dtype and shape.
    (activation,) = data.tensors["tensor"][(".", "Activation")]
    assert activation.step == EPOCH
    np.testing.assert_array_equal(activation.value, names["activation"])
    # 8: the learning rate ("Learning Rate": tensorboardX's tag cleaning makes the space "_").
    assert _scalar(data, ".", "Learning_Rate") == [(EPOCH, _f32(0.001))]
    # 9: the text, and what the seed's writer.load(...) returned: everything logged before it.
    assert [(t.step, t.text) for t in data.text[(".", "Log/text_summary")]] == [(EPOCH, names["log_message"])]
    (at_load,) = loaded
    assert at_load.logdir == LOGDIR and at_load.runs == ["."]
    assert _scalar(at_load, ".", "Loss/train") == loss
    assert {tag for _, tag in at_load.histograms} == {name for name, _ in model.named_parameters()}
    assert [t.text for t in at_load.text[(".", "Log/text_summary")]] == [names["log_message"]]
    assert at_load.tensors["tensor"][(".", "Activation")][0].step == EPOCH
    # 10, 19: the model's graph, then the decision path's (TensorBoard shows the last one).
    model_graph, path_graph = _graphs(LOGDIR)
    assert any(node.name.startswith("Sequential/Linear[0]") for node in model_graph.node)
    assert any(node.name.startswith("DecisionPath/Linear[hidden]") for node in path_graph.node)
    assert GraphDef.FromString(data.graphs["."]) == path_graph
    # 11, 15, 18, 21, 23: histograms of the inputs, feature importances, sensitivities, robustness
    # scores and predictions.
    for tag, values in (
        ("Input_Data", names["inputs"].numpy()),
        ("Feature_Importance", names["feature_importance"]),
        ("Sensitivity", names["sensitivity_values"]),
        ("Robustness", names["robustness_scores"]),
        ("Prediction_Distribution", names["predictions_distribution"]),
    ):
        (histogram,) = data.histograms[(".", tag)]
        assert (histogram.step, histogram.num) == (EPOCH, values.size), tag
        assert histogram.sum == pytest.approx(float(np.sum(values, dtype=np.float64)), rel=1e-6), tag
    # 12, 17, 24, 27, 28, 29: add_scalars, one run per key.
    scalars_calls = {
        "Performance": {"train": 0.9, "val": 0.8},
        "Learning Rate vs Performance": {"lr": 0.001, "performance": 0.85},
        "Cross Validation": names["cv_scores"],
        "Regularization": {"L1": names["l1_regularization"], "L2": names["l2_regularization"]},
        "Ensemble Performance": names["ensemble_scores"],
        "Contrastive Learning": {"Positive": 0.92, "Negative": 0.12},
    }
    for main_tag, values in scalars_calls.items():
        for key, value in values.items():
            assert _scalar(data, f"{main_tag}/{key}", main_tag.replace(" ", "_")) == [(EPOCH, _f32(value))]
    assert sorted(data.runs) == sorted(
        [".", *(f"{main_tag}/{key}" for main_tag, values in scalars_calls.items() for key in values)]
    )
    # 13, 20, 26: the predictions, the attention map (one channel, shown as gray) and the heatmap.
    for tag, image in (
        ("Predictions", names["pred_image"]),
        ("Attention_Map", names["attention_map"]),
        ("Confusion_Matrix_Heatmap", names["confusion_matrix_heatmap"]),
    ):
        (logged,) = data.images[(".", tag)]
        pixels = logged.pixels
        assert logged.step == EPOCH and pixels is not None
        expected = np.broadcast_to((image * 255).transpose(1, 2, 0), pixels.shape)
        assert np.abs(pixels.astype(float) - expected).max() <= 1.0, tag
    # 14, 22, 30: text (tensorboardX keeps text tags as given); the two explanations at one step, in order.
    assert [(t.step, t.text) for t in data.text[(".", "Confusion Matrix/text_summary")]] == [
        (EPOCH, names["conf_matrix_str"])
    ]
    assert [(t.step, t.text) for t in data.text[(".", "Explanation/text_summary")]] == [
        (EPOCH, names["explanation_text"]),
        (EPOCH, names["explanation"]),
    ]
    # 16: the embedding's projector files, one label per row.
    with open(os.path.join(LOGDIR, "projector_config.pbtxt")) as f:
        config = text_format.Parse(f.read(), ProjectorConfig())
    assert [(e.tensor_name, e.tensor_path, e.metadata_path) for e in config.embeddings] == [
        ("default:00099", "00099/default/tensors.tsv", "00099/default/metadata.tsv")
    ]
    matrix = np.loadtxt(os.path.join(LOGDIR, "00099", "default", "tensors.tsv"), delimiter="\t")
    np.testing.assert_allclose(matrix, names["embeddings"].numpy(), rtol=1e-6)
    with open(os.path.join(LOGDIR, "00099", "default", "metadata.tsv")) as f:
        assert f.read().splitlines() == names["labels"]
    # 25: the ROC curve (x: false positive rate, y: true positive rate; the pr_curves chart draws
    # each row reversed) and its label.
    (roc,) = data.tensors["pr_curves"][(".", "ROC Curve")]
    assert roc.step == EPOCH
    np.testing.assert_array_equal(roc.value[5][::-1], names["fpr"].astype(np.float32))
    np.testing.assert_array_equal(roc.value[4][::-1], names["tpr"].astype(np.float32))
    (label,) = data.text[(".", "ROC Curve/text_summary")]
    assert (label.step, label.text) == (EPOCH, "ROC curve (area = %0.2f)" % names["roc_auc"])  # noqa: UP031

    # The module-level reader reads the same.
    assert load(LOGDIR).scalars.keys() == data.scalars.keys()
