"""The plugin kinds in process: add_pr_curve, add_pr_curve_raw, add_curve, add_hparams,
add_custom_scalars (and its two shorthands), add_mesh.

Each call goes through our SummaryWriter into an in-memory transport, over the wire format
(msgpack and array frames) and through the daemon's encoder; the Summary it gives is compared
with tensorboardX's (or torch.utils.tensorboard's) for the same call: byte for byte where both
build the same protobuf, field by field where they differ (the mesh's `components`, which
tensorboardX leaves out). Bad arguments raise at the call, naming the argument, and queue nothing.
No daemon: the end-to-end tests are in test_plugins_e2e.py.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from tensorboard.plugins.mesh import metadata as mesh_metadata
from tensorboard.util import tensor_util
from tensorboardX import summary as tbx_summary
from tensorboardX.x2num import make_np

from logger_client import SummaryWriter, protocol
from logger_client.in_memory import InMemoryTransport, LoggedRecord
from logger_client.protocol import ARRAY_MAP_KINDS, VALUE, MessageKind, RecordKind
from logger_daemon import plugin_summaries
from logger_daemon.encoders import ENCODERS
from logger_daemon.protos.event_pb2 import Event
from logger_daemon.protos.plugin_hparams_pb2 import HParamsPluginData
from logger_daemon.protos.plugin_mesh_pb2 import MeshPluginData
from logger_daemon.protos.summary_pb2 import Summary


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tensorboardX's deprecation and cast warnings
        yield


@pytest.fixture
def transport() -> InMemoryTransport:
    return InMemoryTransport()


@pytest.fixture
def writer(transport: InMemoryTransport) -> SummaryWriter:
    return SummaryWriter("runs/unused", transport=transport)


def through_the_daemon(record: LoggedRecord) -> list[Event]:
    """The Events the daemon writes for `record`, after the wire (msgpack, array frames) and the
    intake's substitution of arrays for their indices."""
    arrays: list[np.ndarray] = []
    value = record.value
    if record.kind in ARRAY_MAP_KINDS:
        value = {}
        for role, array in record.value.items():
            value[role] = len(arrays)
            arrays.append(array)
    raw = [int(record.kind), record.writer, record.run, record.tag, record.step, record.wall_time, value]
    if record.options:
        raw.append(record.options)
    frames = protocol.encode(MessageKind.RECORDS, {"records": [raw]}, arrays)
    message = protocol.decode([bytes(memoryview(frame)) for frame in frames])
    checked = protocol.check_record(message.header["records"][0], len(message.arrays))
    if record.kind in ARRAY_MAP_KINDS:
        checked[VALUE] = {role: message.arrays[index] for role, index in checked[VALUE].items()}
    return [Event.FromString(event) for event in ENCODERS[checked[0]](checked, "/unused")]


def only_summary(transport: InMemoryTransport) -> tuple[LoggedRecord, Event]:
    (record,) = transport.records()
    (event,) = through_the_daemon(record)
    return record, event


def same_bytes(ours: Summary, theirs: Any) -> None:
    assert ours.SerializeToString() == theirs.SerializeToString()


def same_hparams(ours: Summary, theirs: Any) -> None:
    """Equal hparams summaries: the same tags, and plugin contents equal once parsed (a protobuf
    map's bytes come in no fixed order)."""
    assert [v.tag for v in ours.value] == [v.tag for v in theirs.value]
    for mine, reference in zip(ours.value, theirs.value):
        assert mine.metadata.plugin_data.plugin_name == reference.metadata.plugin_data.plugin_name == "hparams"
        assert HParamsPluginData.FromString(mine.metadata.plugin_data.content) == HParamsPluginData.FromString(
            reference.metadata.plugin_data.content
        )
        assert not mine.HasField("tensor") and not reference.HasField("tensor")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- add_pr_curve ----------------------------------------------------------------------------------


def _labels_predictions(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed)
    return rng.integers(0, 2, n), rng.random(n)


PR_CURVE_CALLS = [
    pytest.param(lambda: (*_labels_predictions(), {}), id="defaults"),
    pytest.param(lambda: (*_labels_predictions(), {"num_thresholds": 10}), id="10-thresholds"),
    pytest.param(lambda: (*_labels_predictions(), {"num_thresholds": 1}), id="1-threshold"),
    pytest.param(lambda: (*_labels_predictions(), {"num_thresholds": 1000}), id="capped-at-127"),
    pytest.param(
        lambda: (_labels_predictions()[0].astype(bool), _labels_predictions()[1].astype(np.float32), {}),
        id="bool-labels-float32-predictions",
    ),
    pytest.param(lambda: (*_labels_predictions(), {"weights": _rng(5).random(200)}), id="weights-array"),
    pytest.param(lambda: (*_labels_predictions(), {"weights": 2.5}), id="weights-number"),
    pytest.param(
        lambda: (*_labels_predictions(), {"weights": _rng(6).random(200).astype(np.float32), "num_thresholds": 33}),
        id="weights-float32",
    ),
    pytest.param(
        lambda: (np.array([1, 0, 1, 1]), np.array([1.2, -0.5, np.nan, 0.5]), {}), id="predictions-outside-0-1"
    ),
    pytest.param(lambda: ([1, 0, 1, 0, 1], [0.9, 0.1, 0.8, 0.6, 0.3], {}), id="lists"),
    pytest.param(lambda: (np.zeros(0), np.zeros(0), {}), id="empty"),
    pytest.param(
        lambda: (_labels_predictions()[0].reshape(20, 10), _labels_predictions()[1].reshape(20, 10), {}), id="2-d"
    ),
]


@pytest.mark.parametrize("make", PR_CURVE_CALLS)
def test_pr_curve_is_tensorboardX_s_byte_for_byte(make, writer, transport) -> None:
    labels, predictions, options = make()
    writer.add_pr_curve("pr/curve", labels, predictions, 7, walltime=1.5, **options)
    record, event = only_summary(transport)
    assert (record.kind, record.tag, record.step, event.step, event.wall_time) == (
        RecordKind.PR_CURVE,
        "pr/curve",
        7,
        7,
        1.5,
    )
    reference = tbx_summary.pr_curve(
        "pr/curve",
        make_np(labels),
        make_np(predictions),
        options.get("num_thresholds", 127),
        options.get("weights"),
    )
    same_bytes(event.summary, reference)


def test_pr_curve_of_torch_tensors(writer, transport) -> None:
    torch = pytest.importorskip("torch")
    labels, predictions = _labels_predictions()
    tensor_labels = torch.tensor(labels)
    tensor_predictions = torch.tensor(predictions, dtype=torch.float32, requires_grad=True)
    writer.add_pr_curve("pr", tensor_labels, tensor_predictions, 0, num_thresholds=50)
    _, event = only_summary(transport)
    same_bytes(event.summary, tbx_summary.pr_curve("pr", make_np(tensor_labels), make_np(tensor_predictions), 50))


def test_pr_curve_counts_are_right_on_a_small_case(writer, transport) -> None:
    """Independent of tensorboardX: 3 thresholds (0, 0.5, 1) over 4 examples."""
    writer.add_pr_curve("pr", [1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1], num_thresholds=3)
    _, event = only_summary(transport)
    data = tensor_util.make_ndarray(event.summary.value[0].tensor)
    tp, fp, tn, fn, precision, recall = data
    np.testing.assert_array_equal(tp, [2, 1, 0])  # predictions >= 0, >= 0.5, >= 1
    np.testing.assert_array_equal(fp, [2, 1, 0])
    np.testing.assert_array_equal(tn, [0, 1, 2])
    np.testing.assert_array_equal(fn, [0, 1, 2])
    np.testing.assert_allclose(precision, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(recall, [1.0, 0.5, 0.0])
    assert event.summary.value[0].metadata.plugin_data.plugin_name == "pr_curves"


# -- add_pr_curve_raw ------------------------------------------------------------------------------


def _raw_rows(n: int = 20, seed: int = 1) -> list[np.ndarray]:
    rng = _rng(seed)
    counts = [np.sort(rng.integers(0, 100, n))[::-1].astype(dtype) for dtype in (np.int64, np.int32, float, float)]
    return [*counts, rng.random(n).astype(np.float32), rng.random(n)]


@pytest.mark.parametrize("num_thresholds", [127, 20, 500])
def test_pr_curve_raw_is_tensorboardX_s_byte_for_byte(num_thresholds, writer, transport) -> None:
    rows = _raw_rows()
    writer.add_pr_curve_raw("raw", *rows, global_step=3, num_thresholds=num_thresholds, walltime=2.0)
    record, event = only_summary(transport)
    assert (record.kind, event.step, event.wall_time) == (RecordKind.PR_CURVE_RAW, 3, 2.0)
    same_bytes(event.summary, tbx_summary.pr_curve_raw("raw", *rows, num_thresholds=num_thresholds))


def test_pr_curve_raw_takes_lists_and_ignores_weights(writer, transport) -> None:
    rows = [[3, 2, 1], [2, 1, 0], [0, 1, 2], [0, 1, 2], [0.6, 0.66, 1.0], [1.0, 0.66, 0.33]]
    writer.add_pr_curve_raw("raw", *rows, 0, 3, weights=np.ones(3))
    _, event = only_summary(transport)
    same_bytes(event.summary, tbx_summary.pr_curve_raw("raw", *[np.array(r) for r in rows], num_thresholds=3))


# -- add_curve -------------------------------------------------------------------------------------


def test_curve_is_a_pr_curves_tensor_of_x_and_y_with_its_label_as_text(writer, transport) -> None:
    fpr = np.array([0.0, 0.0, 0.1, 0.1, 0.4, 1.0])
    tpr = np.array([0.0, 0.5, 0.5, 0.9, 1.0, 1.0])
    writer.add_curve("ROC Curve", fpr, tpr, 4, label="ROC curve (area = 0.93)")
    record, event = only_summary(transport)
    assert (record.kind, event.step) == (RecordKind.PR_CURVE_RAW, 4)
    curve, label = event.summary.value
    assert curve.tag == "ROC Curve" and curve.metadata.plugin_data.plugin_name == "pr_curves"
    assert curve.metadata.summary_description == plugin_summaries.CURVE_DESCRIPTION
    data = tensor_util.make_ndarray(curve.tensor)
    assert data.shape == (6, 6)
    # TensorBoard's chart reverses the columns: reversed, recall is x and precision y, as given.
    np.testing.assert_array_equal(data[5][::-1], fpr.astype(np.float32))
    np.testing.assert_array_equal(data[4][::-1], tpr.astype(np.float32))
    np.testing.assert_array_equal(data[:4], -1)
    same_bytes(Summary(value=[label]), tbx_summary.text("ROC Curve", "ROC curve (area = 0.93)"))


def test_curve_without_label_writes_the_curve_only(writer, transport) -> None:
    writer.add_curve("c", [0, 1, 2], [1.0, 4.0, 9.0])
    _, event = only_summary(transport)
    assert [value.tag for value in event.summary.value] == ["c"]
    assert event.step == 0


def test_the_seed_s_roc_curve_call(writer, transport) -> None:
    """The seed's call, with its own bug (a positional after a keyword) fixed: step before label."""
    y_true = _rng(2).integers(0, 2, 100)
    y_scores = np.clip(y_true * 0.3 + _rng(3).random(100) * 0.7, 0, 1)
    order = np.argsort(-y_scores)
    tpr = np.concatenate([[0], np.cumsum(y_true[order]) / y_true.sum()])
    fpr = np.concatenate([[0], np.cumsum(1 - y_true[order]) / (1 - y_true).sum()])
    roc_auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # the trapezoid rule, on numpy 1.x too
    epoch = 5
    writer.add_curve("ROC Curve", fpr, tpr, epoch, label="ROC curve (area = %0.2f)" % roc_auc)  # noqa: UP031 - as the seed
    _, event = only_summary(transport)
    assert event.summary.value[1].tensor.string_val == [f"ROC curve (area = {roc_auc:0.2f})".encode()]


# -- add_custom_scalars ----------------------------------------------------------------------------

LAYOUT = {
    "Taiwan": {"twse": ["Multiline", ["twse/0050", "twse/2330"]]},
    "USA": {
        "dow": ["Margin", ["dow/aaa", "dow/bbb", "dow/ccc"]],
        "nasdaq": ["Margin", ["nasdaq/aaa", "nasdaq/bbb", "nasdaq/ccc"]],
    },
}


def test_custom_scalars_is_tensorboardX_s_byte_for_byte(writer, transport) -> None:
    writer.add_custom_scalars(LAYOUT)
    record, event = only_summary(transport)
    assert (record.kind, record.tag, event.step) == (RecordKind.CUSTOM_SCALARS, "custom_scalars__config__", 0)
    same_bytes(event.summary, tbx_summary.custom_scalars(LAYOUT))


def test_custom_scalars_any_other_type_is_multiline_as_in_tensorboardX(writer, transport) -> None:
    layout = {"c": {"lower": ("multiline", ("a", "b"))}}
    writer.add_custom_scalars(layout)
    _, event = only_summary(transport)
    same_bytes(event.summary, tbx_summary.custom_scalars(layout))


def test_custom_scalars_shorthands(writer, transport) -> None:
    writer.add_custom_scalars_multilinechart(["loss/train", "loss/val"])
    writer.add_custom_scalars_marginchart(["m", "m/lo", "m/hi"], category="cat", title="bounds")
    multiline, margin = (through_the_daemon(record)[0] for record in transport.records())
    same_bytes(
        multiline.summary,
        tbx_summary.custom_scalars({"default": {"untitled": ["Multiline", ["loss/train", "loss/val"]]}}),
    )
    same_bytes(margin.summary, tbx_summary.custom_scalars({"cat": {"bounds": ["Margin", ["m", "m/lo", "m/hi"]]}}))


# -- add_mesh --------------------------------------------------------------------------------------


def _mesh_parts() -> dict[str, np.ndarray]:
    rng = _rng(4)
    return {
        "vertices": rng.normal(size=(2, 8, 3)).astype(np.float32),
        "colors": rng.integers(0, 256, size=(2, 8, 3), dtype=np.uint8),
        "faces": rng.integers(0, 8, size=(2, 5, 3)).astype(np.int32),
    }


MESH_CALLS = [
    pytest.param(("vertices",), None, id="point-cloud"),
    pytest.param(("vertices", "colors"), {"camera": {"cls": "PerspectiveCamera", "fov": 75}}, id="colored-cloud"),
    pytest.param(("vertices", "faces"), None, id="mesh"),
    pytest.param(("vertices", "colors", "faces"), {"material": {"cls": "MeshStandardMaterial"}}, id="colored-mesh"),
]


@pytest.mark.parametrize("parts, config", MESH_CALLS)
def test_mesh_is_tensorboardX_s_with_the_components_it_leaves_out(parts, config, writer, transport) -> None:
    arrays = _mesh_parts()
    given = {name: arrays[name] for name in parts}
    writer.add_mesh("my_mesh", config_dict=config, global_step=2, **given)
    record, event = only_summary(transport)
    assert (record.kind, event.step) == (RecordKind.MESH, 2)
    reference = tbx_summary.mesh("my_mesh", given.get("vertices"), given.get("colors"), given.get("faces"), config)
    ours = event.summary
    assert [v.tag for v in ours.value] == [v.tag for v in reference.value]
    expected_components = sum(1 << t for name, t in (("vertices", 1), ("faces", 2), ("colors", 3)) if name in parts)
    for mine, theirs in zip(ours.value, reference.value):
        np.testing.assert_array_equal(tensor_util.make_ndarray(mine.tensor), tensor_util.make_ndarray(theirs.tensor))
        assert mine.tensor.dtype == theirs.tensor.dtype
        assert mine.metadata.plugin_data.plugin_name == theirs.metadata.plugin_data.plugin_name == "mesh"
        ours_data = MeshPluginData.FromString(mine.metadata.plugin_data.content)
        theirs_data = MeshPluginData.FromString(theirs.metadata.plugin_data.content)
        # tensorboardX is wrong here: no components, which TensorBoard reads as all three parts.
        assert theirs_data.components == 0
        assert mesh_metadata.parse_plugin_metadata(theirs.metadata.plugin_data.content).components == 14
        assert ours_data.components == expected_components
        assert mesh_metadata.parse_plugin_metadata(mine.metadata.plugin_data.content).components == expected_components
        ours_data.components = 0
        assert ours_data == theirs_data


def test_mesh_of_torch_tensors_and_lists(writer, transport) -> None:
    torch = pytest.importorskip("torch")
    vertices = torch.tensor([[[1.0, 1, 1], [-1, -1, 1], [1, -1, -1], [-1, 1, -1]]])
    faces = [[[0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 3, 2]]]
    writer.add_mesh("tetra", vertices, faces=faces)
    _, event = only_summary(transport)
    reference = tbx_summary.mesh("tetra", vertices, None, np.array(faces), None)
    for mine, theirs in zip(event.summary.value, reference.value):
        np.testing.assert_array_equal(tensor_util.make_ndarray(mine.tensor), tensor_util.make_ndarray(theirs.tensor))


# -- add_hparams -----------------------------------------------------------------------------------


def _a_function() -> None:
    pass


TBX_HPARAMS = {
    "lr": 0.01,
    "batch": 32,
    "optimizer": "adam",
    "nesterov": True,
    "skipped": None,
    "activation": _a_function,
    "float64": np.float64(0.5),
    "int64": np.int64(3),  # not an int: tensorboardX lists it with no type and no value
    "list": [1, 2],
}


def hparams_events(transport: InMemoryTransport) -> tuple[LoggedRecord, list[Event], list[LoggedRecord]]:
    records = transport.records()
    assert records[0].kind == RecordKind.HPARAMS
    return records[0], through_the_daemon(records[0]), records[1:]


def test_hparams_called_tensorboardX_s_way_writes_what_it_writes(writer, transport) -> None:
    metrics = {"hparam/accuracy": 0.75, "hparam/loss": np.float32(0.25)}
    writer.add_hparams(TBX_HPARAMS, metrics, name="session-1", global_step=9)
    record, events, scalars = hparams_events(transport)
    assert (record.run, record.step) == ("session-1", 0)  # tensorboardX writes the three at step 0
    for event, reference in zip(events, tbx_summary.hparams(TBX_HPARAMS, metrics)):
        assert event.step == 0
        same_hparams(event.summary, reference)
    assert [(r.kind, r.run, r.tag, r.step, r.value) for r in scalars] == [
        (RecordKind.SCALAR, "session-1", "hparam/accuracy", 9, 0.75),
        (RecordKind.SCALAR, "session-1", "hparam/loss", 9, 0.25),
    ]
    assert {r.wall_time for r in scalars} == {record.wall_time}


def test_hparams_in_tensorboardX_s_positional_order(writer, transport) -> None:
    writer.add_hparams({"lr": 0.1}, {"m": 1.0}, "positional", 4)
    record, _, (scalar,) = hparams_events(transport)
    assert (record.run, record.step, scalar.run, scalar.step) == ("positional", 0, "positional", 4)


def _torch_hparams(torch: Any) -> tuple[dict, dict]:
    hparams = {
        "lr": 0.01,
        "batch": 32,
        "optimizer": "adam",
        "nesterov": True,  # torch writes a bool as the number 1.0
        "skipped": None,
        "scale": torch.tensor([2.5, 9.0]),  # torch takes a tensor's first element
    }
    domains = {"batch": [16, 32, 64], "optimizer": ["adam", "sgd"], "nesterov": [True, False]}
    return hparams, domains


def test_hparams_called_torch_s_way_writes_what_torch_writes(writer, transport) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.tensorboard import summary as torch_summary

    hparams, domains = _torch_hparams(torch)
    metrics = {"hparam/accuracy": torch.tensor(0.5)}
    writer.add_hparams(hparams, metrics, hparam_domain_discrete=domains, run_name="trial", global_step=6)
    record, events, (scalar,) = hparams_events(transport)
    assert (record.run, record.step) == ("trial", 6)  # torch writes the three at global_step
    for event, reference in zip(events, torch_summary.hparams(hparams, metrics, domains)):
        assert event.step == 6
        same_hparams(event.summary, reference)
    assert (scalar.run, scalar.tag, scalar.step, scalar.value) == ("trial", "hparam/accuracy", 6, 0.5)


def test_hparams_in_torch_s_positional_order(writer, transport) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.tensorboard import summary as torch_summary

    hparams, domains = _torch_hparams(torch)
    writer.add_hparams(hparams, {"m": 1.0}, domains, "positional", 2)
    record, events, (scalar,) = hparams_events(transport)
    assert (record.run, record.step, scalar.step) == ("positional", 2, 2)
    for event, reference in zip(events, torch_summary.hparams(hparams, {"m": 1.0}, domains)):
        same_hparams(event.summary, reference)


def test_hparams_run_name_alone_is_torch_s_way(writer, transport) -> None:
    writer.add_hparams({"flag": True}, {}, run_name="r")
    record, _, _ = hparams_events(transport)
    assert record.value["hparams"] == [["flag", "number", 1.0, None]]
    assert record.run == "r"


def test_hparams_default_session_is_the_time_of_the_call(writer, transport) -> None:
    import time

    before = time.time()
    writer.add_hparams({"lr": 0.1}, {"m": 1.0})
    record = transport.records()[0]
    assert before <= float(record.run) <= time.time()
    assert record.step == 0


def test_hparams_name_and_run_name_are_aliases(writer, transport) -> None:
    writer.add_hparams({"lr": 0.1}, {}, run_name="same", name="same")
    assert transport.records()[0].run == "same"
    with pytest.raises(ValueError, match="run_name"):
        writer.add_hparams({"lr": 0.1}, {}, run_name="a", name="b")


def test_hparams_session_directory_nests(writer, transport) -> None:
    writer.add_hparams({"lr": 0.1}, {}, name="sweep/trial-3/")
    assert transport.records()[0].run == "sweep/trial-3"


def test_hparams_can_list_metrics_whose_values_the_caller_logs(writer, transport) -> None:
    """metric_scalars=False: the metrics are named in the experiment, no scalar is written, and
    their values (a dict here, as Lightning may pass) are not looked at."""
    writer.add_hparams({"lr": 0.1}, {"acc": {"a": 1}, "loss": 0.5}, run_name=".", global_step=3, metric_scalars=False)
    (record,) = transport.records()
    assert (record.kind, record.run, record.step) == (RecordKind.HPARAMS, "", 3)
    assert record.value["metrics"] == ["acc", "loss"]
    with pytest.raises(TypeError, match="metric_dict keys"):
        writer.add_hparams({"lr": 0.1}, {3: 0.5}, run_name=".", metric_scalars=False)


# -- bad input: a clear error at the call, nothing queued ------------------------------------------

BAD_CALLS = [
    ("pr_curve-tag", lambda w: w.add_pr_curve(3, [1], [0.5]), TypeError, "tag"),
    ("pr_curve-shapes", lambda w: w.add_pr_curve("p", [1, 0], [0.5, 0.1, 0.2]), ValueError, "labels"),
    ("pr_curve-weights", lambda w: w.add_pr_curve("p", [1, 0], [0.5, 0.1], weights=[1, 2, 3]), ValueError, "weights"),
    ("pr_curve-labels-str", lambda w: w.add_pr_curve("p", ["a", "b"], [0.5, 0.1]), TypeError, "labels"),
    (
        "pr_curve-num_thresholds-0",
        lambda w: w.add_pr_curve("p", [1], [0.5], num_thresholds=0),
        ValueError,
        "num_thresholds",
    ),
    (
        "pr_curve-num_thresholds-float",
        lambda w: w.add_pr_curve("p", [1], [0.5], num_thresholds=5.0),
        TypeError,
        "num_thresholds",
    ),
    (
        "pr_curve-num_thresholds-none",
        lambda w: w.add_pr_curve("p", [1], [0.5], num_thresholds=None),
        TypeError,
        "num_thresholds",
    ),
    ("pr_curve-step", lambda w: w.add_pr_curve("p", [1], [0.5], "x"), TypeError, "global_step"),
    ("pr_curve_raw-lengths", lambda w: w.add_pr_curve_raw("r", [1], [1], [1], [1], [1], [1, 2]), ValueError, "recall"),
    ("pr_curve_raw-2d", lambda w: w.add_pr_curve_raw("r", *[np.ones((2, 2))] * 6), ValueError, "1-D"),
    ("pr_curve_raw-scalars", lambda w: w.add_pr_curve_raw("r", 1, 1, 1, 1, 1, 1), ValueError, "1-D"),
    (
        "pr_curve_raw-num_thresholds",
        lambda w: w.add_pr_curve_raw("r", *[[1]] * 6, num_thresholds=None),
        TypeError,
        "num_thresholds",
    ),
    ("curve-lengths", lambda w: w.add_curve("c", [0, 1], [0, 1, 2]), ValueError, "x and y"),
    ("curve-empty", lambda w: w.add_curve("c", [], []), ValueError, "x and y"),
    ("curve-2d", lambda w: w.add_curve("c", np.ones((2, 2)), np.ones((2, 2))), ValueError, "x and y"),
    ("curve-label", lambda w: w.add_curve("c", [0, 1], [0, 1], 0, label=3), TypeError, "label"),
    ("curve-x", lambda w: w.add_curve("c", "abc", [0, 1, 2]), TypeError, "x"),
    ("hparams-not-dict", lambda w: w.add_hparams([("lr", 1)], {}), TypeError, "hparam_dict"),
    ("hparams-metric-not-dict", lambda w: w.add_hparams({}, 1.0), TypeError, "metric_dict"),
    ("hparams-key", lambda w: w.add_hparams({1: 0.1}, {}), TypeError, "hparam_dict"),
    ("hparams-metric-value", lambda w: w.add_hparams({}, {"m": "high"}), TypeError, "metric_dict"),
    ("hparams-metric-none", lambda w: w.add_hparams({}, {"m": None}), TypeError, "metric_dict"),
    ("hparams-metric-vector", lambda w: w.add_hparams({}, {"m": [1.0, 2.0]}), ValueError, "metric_dict"),
    ("hparams-metric-key", lambda w: w.add_hparams({}, {3: 1.0}), TypeError, "metric_dict"),
    ("hparams-name-escapes", lambda w: w.add_hparams({}, {}, name="../elsewhere"), ValueError, "name"),
    ("hparams-run_name-absolute", lambda w: w.add_hparams({}, {}, run_name="/tmp/x"), ValueError, "run_name"),
    ("hparams-torch-list-value", lambda w: w.add_hparams({"l": [1]}, {}, run_name="r"), ValueError, "hparam_dict"),
    (
        "hparams-torch-numpy-int",
        lambda w: w.add_hparams({"i": np.int64(1)}, {}, run_name="r"),
        ValueError,
        "hparam_dict",
    ),
    (
        "hparams-domain-type",
        lambda w: w.add_hparams({"b": 16}, {}, hparam_domain_discrete={"b": [16, "32"]}),
        TypeError,
        "hparam_domain_discrete",
    ),
    (
        "hparams-domain-unknown-key",
        lambda w: w.add_hparams({"b": 16}, {}, hparam_domain_discrete={"c": [1]}),
        TypeError,
        "hparam_domain_discrete",
    ),
    (
        "hparams-domain-not-list",
        lambda w: w.add_hparams({"b": 16}, {}, hparam_domain_discrete={"b": (16, 32)}),
        TypeError,
        "hparam_domain_discrete",
    ),
    ("custom_scalars-not-dict", lambda w: w.add_custom_scalars(["a"]), TypeError, "layout"),
    ("custom_scalars-chart", lambda w: w.add_custom_scalars({"c": {"t": "Multiline"}}), TypeError, "layout"),
    ("custom_scalars-tags", lambda w: w.add_custom_scalars({"c": {"t": ["Multiline", "loss"]}}), TypeError, "layout"),
    ("custom_scalars-tag-type", lambda w: w.add_custom_scalars({"c": {"t": ["Multiline", [1]]}}), TypeError, "layout"),
    (
        "custom_scalars-margin",
        lambda w: w.add_custom_scalars({"c": {"t": ["Margin", ["a", "b"]]}}),
        ValueError,
        "Margin",
    ),
    ("marginchart-2-tags", lambda w: w.add_custom_scalars_marginchart(["a", "b"]), ValueError, "tags"),
    ("multilinechart-str", lambda w: w.add_custom_scalars_multilinechart("loss"), TypeError, "tags"),
    ("multilinechart-category", lambda w: w.add_custom_scalars_multilinechart(["a"], category=1), TypeError, "categor"),
    ("mesh-2d", lambda w: w.add_mesh("m", np.ones((8, 3))), ValueError, "vertices"),
    ("mesh-not-3-columns", lambda w: w.add_mesh("m", np.ones((1, 8, 2))), ValueError, "vertices"),
    ("mesh-faces", lambda w: w.add_mesh("m", np.ones((1, 8, 3)), faces=np.ones((4, 3))), ValueError, "faces"),
    ("mesh-colors", lambda w: w.add_mesh("m", np.ones((1, 8, 3)), colors=np.ones(3)), ValueError, "colors"),
    ("mesh-config", lambda w: w.add_mesh("m", np.ones((1, 8, 3)), config_dict={"f": print}), TypeError, "config_dict"),
    ("mesh-tag", lambda w: w.add_mesh(None, np.ones((1, 8, 3))), TypeError, "tag"),
]


@pytest.mark.parametrize("name, call, error, argument", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_at_the_call_and_queues_nothing(name, call, error, argument, writer, transport) -> None:
    with pytest.raises(error, match=argument):
        call(writer)
    assert transport.records() == []


TENSORBOARDX_FAILS_TOO = [
    ("pr_curve-shapes", lambda w: w.add_pr_curve("p", np.array([1, 0]), np.array([0.5, 0.1, 0.2]))),
    ("pr_curve-num_thresholds-0", lambda w: w.add_pr_curve("p", np.array([1]), np.array([0.5]), num_thresholds=0)),
    (
        "pr_curve-num_thresholds-float",
        lambda w: w.add_pr_curve("p", np.array([1]), np.array([0.5]), num_thresholds=5.0),
    ),
    ("pr_curve_raw-lengths", lambda w: w.add_pr_curve_raw("r", [1], [1], [1], [1], [1], [1, 2])),
    ("pr_curve_raw-scalars", lambda w: w.add_pr_curve_raw("r", 1, 1, 1, 1, 1, 1)),
    ("hparams-not-dict", lambda w: w.add_hparams([("lr", 1)], {})),
    ("hparams-metric-value", lambda w: w.add_hparams({}, {"m": "high"})),
    ("custom_scalars-margin", lambda w: w.add_custom_scalars({"c": {"t": ["Margin", ["a", "b"]]}})),
    ("marginchart-2-tags", lambda w: w.add_custom_scalars_marginchart(["a", "b"])),
    ("mesh-2d", lambda w: w.add_mesh("m", np.ones((8, 3)))),
    ("mesh-config", lambda w: w.add_mesh("m", np.ones((1, 8, 3)), config_dict={"f": print})),
]


@pytest.mark.parametrize("name, call", TENSORBOARDX_FAILS_TOO, ids=[c[0] for c in TENSORBOARDX_FAILS_TOO])
def test_tensorboardX_fails_on_the_same_calls(name, call, tmp_path) -> None:
    import tensorboardX

    reference = tensorboardX.SummaryWriter(str(tmp_path), write_to_disk=False)
    with pytest.raises(Exception):  # noqa: B017 - tensorboardX raises assorted types (AssertionError among them)
        call(reference)


def test_torch_fails_on_the_same_hparams() -> None:
    pytest.importorskip("torch")
    from torch.utils.tensorboard import summary as torch_summary

    for hparams, domains, error in [
        ({"l": [1]}, None, ValueError),
        ({"i": np.int64(1)}, None, ValueError),
        ({"b": 16}, {"b": [16, "32"]}, TypeError),
        ({"b": 16}, {"c": [1]}, TypeError),
        ({"b": 16}, {"b": (16, 32)}, TypeError),
    ]:
        with pytest.raises(error):
            torch_summary.hparams(hparams, {}, domains)


# -- one copy, on the calling thread ---------------------------------------------------------------


def test_arrays_are_copied_once_at_the_call(writer, transport) -> None:
    labels, predictions = _labels_predictions()
    weights = _rng(9).random(200)
    vertices = _mesh_parts()["vertices"]
    x = np.linspace(0, 1, 5)
    writer.add_pr_curve("p", labels, predictions, weights=weights)
    writer.add_mesh("m", vertices)
    writer.add_curve("c", x, x)
    given = [labels, predictions, weights, vertices, x]
    logged = [array for record in transport.records() for array in record.value.values()]
    for array in logged:
        assert isinstance(array, np.ndarray) and array.flags.c_contiguous
        assert not any(np.shares_memory(array, source) for source in given)
    before = [array.copy() for array in logged]
    for source in given:
        source[...] = 0  # the caller reuses its buffers at once
    for array, kept in zip(logged, before):
        np.testing.assert_array_equal(array, kept)
    assert [a.dtype for a in logged[:3]] == [labels.dtype, predictions.dtype, weights.dtype]  # no conversion


# -- the daemon refuses what a peer should not send ------------------------------------------------

REFUSED = [
    (RecordKind.PR_CURVE, {"labels": np.ones(2)}, {}),
    (RecordKind.PR_CURVE, {"labels": np.ones(2), "predictions": np.ones(2)}, {"num_thresholds": 0}),
    (RecordKind.PR_CURVE_RAW, {"precision": np.ones(2)}, {}),
    (RecordKind.PR_CURVE_RAW, {"x": np.ones(2), "y": np.ones(3)}, {}),
    (RecordKind.HPARAMS, {"hparams": [["a", "number", "x", None]], "metrics": []}, None),
    (RecordKind.HPARAMS, {"hparams": [["a", "weird", 1, None]], "metrics": []}, None),
    (RecordKind.CUSTOM_SCALARS, {"c": {"t": ["Margin", ["a"]]}}, None),
    (RecordKind.CUSTOM_SCALARS, {"c": {"t": ["Pie", ["a"]]}}, None),
    (RecordKind.MESH, {"colors": np.ones((1, 2, 3))}, {}),
    (RecordKind.MESH, {"vertices": np.ones((2, 3))}, {}),
]


@pytest.mark.parametrize("kind, value, options", REFUSED, ids=[f"{k.name}-{i}" for i, (k, _, _) in enumerate(REFUSED)])
def test_encoders_refuse_bad_values(kind, value, options) -> None:
    record = LoggedRecord(kind, 1, "", "t", 0, 0.0, value, options or {})
    with pytest.raises((ValueError, TypeError)):
        through_the_daemon(record)


def test_every_plugin_kind_has_an_encoder() -> None:
    for kind in (
        RecordKind.PR_CURVE,
        RecordKind.PR_CURVE_RAW,
        RecordKind.HPARAMS,
        RecordKind.CUSTOM_SCALARS,
        RecordKind.MESH,
    ):
        assert kind in ENCODERS


def test_pr_curve_precision_has_no_nan_when_nothing_is_predicted(writer, transport) -> None:
    writer.add_pr_curve("p", [0, 0], [0.1, 0.2], num_thresholds=5)
    _, event = only_summary(transport)
    data = tensor_util.make_ndarray(event.summary.value[0].tensor)
    assert not any(math.isnan(v) for v in data.reshape(-1))
