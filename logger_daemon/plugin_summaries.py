"""Record values -> ``Summary`` protos of TensorBoard's plugin kinds: pr_curves, hparams,
custom_scalars, mesh. Pure functions, equal to what tensorboardX 2.6 writes for the same call
(torch.utils.tensorboard's hparams where asked), except the mesh's `components`, which
tensorboardX leaves out. Values a peer sent that cannot be written raise ValueError or TypeError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf import struct_pb2

from logger_daemon.protos.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status
from logger_daemon.protos.layout_pb2 import Category, Chart, Layout, MarginChartContent, MultilineChartContent
from logger_daemon.protos.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo
from logger_daemon.protos.plugin_mesh_pb2 import MeshPluginData
from logger_daemon.protos.plugin_pr_curve_pb2 import PrCurvePluginData
from logger_daemon.protos.summary_pb2 import Summary, SummaryMetadata
from logger_daemon.protos.tensor_pb2 import TensorProto
from logger_daemon.protos.tensor_shape_pb2 import TensorShapeProto
from logger_daemon.protos.types_pb2 import DT_FLOAT, DT_STRING
from logger_daemon.summaries import text

__all__ = [
    "CURVE_DESCRIPTION",
    "HPARAMS_TAGS",
    "compute_curve",
    "curve",
    "custom_scalars",
    "hparams",
    "mesh",
    "pr_curve",
    "pr_curve_raw",
]

#: The rows of a PR curve tensor, in TensorBoard's order (tensorboard/plugins/pr_curve/metadata.py).
PR_CURVE_ROWS = (
    "true_positive_counts",
    "false_positive_counts",
    "true_negative_counts",
    "false_negative_counts",
    "precision",
    "recall",
)
#: tensorboardX and TensorBoard: the smallest denominator of precision and recall.
_MINIMUM_COUNT = 1e-7
_MAX_THRESHOLDS = 127
#: (experiment, session start, session end): the hparams plugin's tags.
HPARAMS_TAGS = ("_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info")
CUSTOM_SCALARS_TAG = "custom_scalars__config__"
#: The mesh parts in tensorboardX's order, with their MeshPluginData content types.
_MESH_PARTS = (("vertices", MeshPluginData.VERTEX), ("faces", MeshPluginData.FACE), ("colors", MeshPluginData.COLOR))
#: What a curve written by add_curve is, shown with its chart (TensorBoard keeps a tag's first metadata).
CURVE_DESCRIPTION = (
    "A curve logged with `add_curve`: *Recall* is x, *Precision* is y; TP/FP/TN/FN are -1 (not counts) "
    "and thresholds are the points' ranks. Labels are in the Text dashboard under this tag."
)


# -- pr_curves -------------------------------------------------------------------------------------


def compute_curve(
    labels: np.ndarray, predictions: np.ndarray, num_thresholds: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """The [6, num_thresholds] float64 curve of TensorBoard's pr_curves plugin, computed as
    tensorboardX's `compute_curve` does (same dtypes at every stage, so the same floats).

    Each example falls in the bucket floor(prediction * (num_thresholds - 1)) (predictions outside
    [0, 1] fall in no bucket); TP and FP at threshold i count the (weighted) positives and
    negatives in buckets >= i.
    """
    scale = 1.0 if weights is None else weights
    with np.errstate(invalid="ignore"):  # NaN predictions fall in no bucket, as in tensorboardX
        buckets = np.int32(np.floor(predictions * (num_thresholds - 1)))
    positives = labels.astype(float)
    bucket_range = (0, num_thresholds - 1)
    tp_buckets, _ = np.histogram(buckets, bins=num_thresholds, range=bucket_range, weights=positives * scale)
    fp_buckets, _ = np.histogram(buckets, bins=num_thresholds, range=bucket_range, weights=(1.0 - positives) * scale)
    tp = np.cumsum(tp_buckets[::-1])[::-1]
    fp = np.cumsum(fp_buckets[::-1])[::-1]
    tn = fp[0] - fp
    fn = tp[0] - tp
    precision = tp / np.maximum(_MINIMUM_COUNT, tp + fp)
    recall = tp / np.maximum(_MINIMUM_COUNT, tp + fn)
    return np.stack((tp, fp, tn, fn, precision, recall))


def _pr_curve_value(tag: str, data: np.ndarray, num_thresholds: int, description: str = "") -> Summary.Value:
    content = PrCurvePluginData(version=0, num_thresholds=num_thresholds).SerializeToString()
    metadata = SummaryMetadata(
        summary_description=description,
        plugin_data=SummaryMetadata.PluginData(plugin_name="pr_curves", content=content),
    )
    # float_val from Python floats, as tensorboardX: the same float32 of each value, the same bytes.
    tensor = TensorProto(
        dtype=DT_FLOAT,
        float_val=data.reshape(-1).tolist(),
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=n) for n in data.shape]),
    )
    return Summary.Value(tag=tag, metadata=metadata, tensor=tensor)


def _thresholds(num_thresholds: Any) -> int:
    if type(num_thresholds) is not int or num_thresholds < 1:
        raise ValueError(f"num_thresholds must be a positive int, got {num_thresholds!r}")
    return min(num_thresholds, _MAX_THRESHOLDS)


def pr_curve(tag: str, value: Mapping[str, np.ndarray], num_thresholds: int = _MAX_THRESHOLDS) -> Summary:
    """add_pr_curve: the curve of value's `labels` and `predictions` (and `weights`)."""
    if not {"labels", "predictions"} <= set(value) <= {"labels", "predictions", "weights"}:
        raise ValueError(f"a PR curve takes labels, predictions and weights, got {sorted(value)}")
    thresholds = _thresholds(num_thresholds)
    data = compute_curve(value["labels"], value["predictions"], thresholds, value.get("weights"))
    return Summary(value=[_pr_curve_value(tag, data, thresholds)])


def pr_curve_raw(tag: str, value: Mapping[str, np.ndarray], num_thresholds: int = _MAX_THRESHOLDS) -> Summary:
    """add_pr_curve_raw: the six given rows (counts, precision, recall) stacked as they are."""
    if set(value) != set(PR_CURVE_ROWS):
        raise ValueError(f"a raw PR curve takes {PR_CURVE_ROWS}, got {sorted(value)}")
    data = np.stack([value[row] for row in PR_CURVE_ROWS])
    if data.ndim != 2:
        raise ValueError(f"the rows of a raw PR curve must be 1-D, got shape {data.shape[1:]}")
    return Summary(value=[_pr_curve_value(tag, data, _thresholds(num_thresholds))])


def curve(tag: str, value: Mapping[str, np.ndarray], label: str | None = None) -> Summary:
    """add_curve: points (x, y) as a pr_curves tensor (recall = x, precision = y), and `label` as
    text under the same tag.

    TensorBoard's PR curve chart reverses the columns before drawing (it expects recall to fall
    with the threshold), so the points are stored last first, to be drawn in the order given. The
    counts are -1: the chart drops trailing columns whose TP + FP is 0, and these are not counts.
    """
    if set(value) != {"x", "y"}:
        raise ValueError(f"a curve takes x and y, got {sorted(value)}")
    x, y = value["x"], value["y"]
    if x.ndim != 1 or x.shape != y.shape or not x.size:
        raise ValueError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    if label is not None and type(label) is not str:
        raise ValueError(f"label must be a str, got {type(label).__name__}")
    counts = np.full(x.shape, -1.0)
    data = np.stack((counts, counts, counts, counts, y[::-1], x[::-1]))
    summary = Summary(value=[_pr_curve_value(tag, data, len(x), CURVE_DESCRIPTION)])
    if label is not None:
        summary.value.extend(text(tag, label).value)
    return summary


# -- hparams ---------------------------------------------------------------------------------------

_DATA_TYPES = {
    "number": DataType.DATA_TYPE_FLOAT64,
    "string": DataType.DATA_TYPE_STRING,
    "bool": DataType.DATA_TYPE_BOOL,
    "unset": DataType.DATA_TYPE_UNSET,
}


def _struct_value(kind: str, item: Any) -> struct_pb2.Value:
    if kind == "number" and type(item) in (int, float):
        return struct_pb2.Value(number_value=item)
    if kind == "string" and type(item) is str:
        return struct_pb2.Value(string_value=item)
    if kind == "bool" and type(item) is bool:
        return struct_pb2.Value(bool_value=item)
    raise ValueError(f"hparam value {item!r} is not of its type {kind!r}")


def _plugin_summary(tag: str, data: HParamsPluginData) -> Summary:
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=data.SerializeToString())
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata)])


def hparams(value: Mapping[str, Any]) -> tuple[Summary, Summary, Summary]:
    """add_hparams' three summaries (experiment, session start, session end) from the record's
    value: `hparams`, a list of [name, type, value, domain] (type "number", "string", "bool" or
    "unset"; domain None or the discrete values), and `metrics`, the metric tags."""
    entries, metrics = value.get("hparams"), value.get("metrics")
    if not isinstance(entries, list) or not isinstance(metrics, list):
        raise ValueError("hparams takes lists 'hparams' and 'metrics'")
    infos = []
    start = SessionStartInfo()
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 4 and type(entry[0]) is str and entry[1] in _DATA_TYPES):
            raise ValueError(f"an hparam is [name, type, value, domain], got {entry!r}")
        name, kind, item, domain = entry
        info = HParamInfo(name=name, type=_DATA_TYPES[kind])
        if kind != "unset":
            start.hparams[name].CopyFrom(_struct_value(kind, item))
            if domain is not None:
                if not isinstance(domain, list):
                    raise ValueError(f"the domain of hparam {name!r} must be a list, got {domain!r}")
                info.domain_discrete.values.extend(_struct_value(kind, d) for d in domain)
        infos.append(info)
    if not all(type(tag) is str for tag in metrics):
        raise ValueError("metric tags must be str")
    experiment = Experiment(hparam_infos=infos, metric_infos=[MetricInfo(name=MetricName(tag=t)) for t in metrics])
    return (
        _plugin_summary(HPARAMS_TAGS[0], HParamsPluginData(version=0, experiment=experiment)),
        _plugin_summary(HPARAMS_TAGS[1], HParamsPluginData(version=0, session_start_info=start)),
        _plugin_summary(
            HPARAMS_TAGS[2],
            HParamsPluginData(version=0, session_end_info=SessionEndInfo(status=Status.STATUS_SUCCESS)),
        ),
    )


# -- custom_scalars --------------------------------------------------------------------------------


def custom_scalars(tag: str, layout: Mapping[str, Any]) -> Summary:
    """add_custom_scalars: the Layout under `custom_scalars__config__`, a scalar DT_STRING tensor.
    `layout` is {category: {title: ["Multiline" | "Margin", [tags]]}}."""
    categories = []
    for category, charts in layout.items():
        if type(category) is not str or not isinstance(charts, dict):
            raise ValueError(f"a layout category is a str naming a map of charts, got {category!r}")
        built = []
        for title, chart in charts.items():
            if not (type(title) is str and isinstance(chart, list) and len(chart) == 2 and isinstance(chart[1], list)):
                raise ValueError(f"a chart is title -> [type, tags], got {title!r}: {chart!r}")
            kind, tags = chart
            if not all(type(t) is str for t in tags):
                raise ValueError(f"the tags of chart {title!r} must be str")
            if kind == "Margin":
                if len(tags) != 3:
                    raise ValueError(f"margin chart {title!r} needs 3 tags, got {len(tags)}")
                series = MarginChartContent.Series(value=tags[0], lower=tags[1], upper=tags[2])
                built.append(Chart(title=title, margin=MarginChartContent(series=[series])))
            elif kind == "Multiline":
                built.append(Chart(title=title, multiline=MultilineChartContent(tag=tags)))
            else:
                raise ValueError(f"chart {title!r} has type {kind!r}, not 'Multiline' or 'Margin'")
        categories.append(Category(title=category, chart=built))
    tensor = TensorProto(
        dtype=DT_STRING,
        string_val=[Layout(category=categories).SerializeToString()],
        tensor_shape=TensorShapeProto(),
    )
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="custom_scalars"))
    return Summary(value=[Summary.Value(tag=CUSTOM_SCALARS_TAG, tensor=tensor, metadata=metadata)])


# -- mesh ------------------------------------------------------------------------------------------


def mesh(tag: str, value: Mapping[str, np.ndarray], json_config: str = "null") -> Summary:
    """add_mesh: one float tensor summary per part present, tagged `<tag>_<content type>` with
    MeshPluginData naming the mesh, its part, its shape and the parts present (`components`).

    The floats are the values tensorboardX writes (float_val from Python floats), packed in
    `tensor_content`: the same tensor when read, without a Python float per value here.
    """
    if "vertices" not in value or not set(value) <= {role for role, _ in _MESH_PARTS}:
        raise ValueError(f"a mesh takes vertices (and faces, colors), got {sorted(value)}")
    if type(json_config) is not str:
        raise ValueError("json_config must be a str")
    parts = [(value[role], content_type) for role, content_type in _MESH_PARTS if role in value]
    components = 0
    for _, content_type in parts:
        components |= 1 << content_type
    values = []
    for array, content_type in parts:
        if array.ndim != 3:
            raise ValueError(f"mesh parts must have shape (B, N, 3), got {array.shape}")
        plugin_data = MeshPluginData(
            version=0,
            name=tag,
            content_type=content_type,
            json_config=json_config,
            shape=list(array.shape),
            components=components,
        )
        metadata = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(plugin_name="mesh", content=plugin_data.SerializeToString())
        )
        # Through float64 first, as a Python float: an int64 rounds once, as in tensorboardX.
        floats = array.astype(np.float64).astype("<f4")
        tensor = TensorProto(
            dtype=DT_FLOAT,
            tensor_content=floats.tobytes(),
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=n) for n in array.shape]),
        )
        values.append(Summary.Value(tag=f"{tag}_{content_type}", tensor=tensor, metadata=metadata))
    return Summary(value=values)
