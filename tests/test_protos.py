"""Tests for the generated protobuf modules in logger_daemon/protos.

* the committed *_pb2 modules must match proto/ sources (proto/regenerate.py --check);
* our messages must be wire-compatible with TensorBoard's own protos, which is
  what reads the event files we write;
* our descriptors must coexist with tensorboard's and tensorboardX's in one
  process (distinct proto package ``tblogger`` and file names).
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import json_format, struct_pb2

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from logger_daemon.protos import (  # noqa: E402
    api_pb2,
    attr_value_pb2,
    event_pb2,
    graph_pb2,
    layout_pb2,
    node_def_pb2,
    plugin_hparams_pb2,
    plugin_mesh_pb2,
    plugin_pr_curve_pb2,
    plugin_text_pb2,
    summary_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
    versions_pb2,
)

tb_event_pb2 = pytest.importorskip("tensorboard.compat.proto.event_pb2")


# --------------------------------------------------------------------------
# Generated code is in sync with the .proto sources.
# --------------------------------------------------------------------------


@pytest.mark.e2e
def test_generated_modules_match_sources():
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools not installed; cannot regenerate protobuf modules")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "proto" / "regenerate.py"), "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        "protobuf modules drifted from proto/ sources "
        "(run `python proto/regenerate.py`):\n" + result.stdout + result.stderr
    )


# --------------------------------------------------------------------------
# Descriptor-level equivalence with TensorBoard's protos.
# --------------------------------------------------------------------------

_TB_COMPAT = "tensorboard.compat.proto.{}_pb2"
_COUNTERPARTS = {
    **{
        name: _TB_COMPAT.format(name)
        for name in [
            "event",
            "summary",
            "histogram",
            "tensor",
            "tensor_shape",
            "types",
            "resource_handle",
            "graph",
            "node_def",
            "attr_value",
            "versions",
            "full_type",
            "function",
            "op_def",
            "graph_debug_info",
        ]
    },
    "plugin_scalar": "tensorboard.plugins.scalar.plugin_data_pb2",
    "plugin_histogram": "tensorboard.plugins.histogram.plugin_data_pb2",
    "plugin_image": "tensorboard.plugins.image.plugin_data_pb2",
    "plugin_audio": "tensorboard.plugins.audio.plugin_data_pb2",
    "plugin_text": "tensorboard.plugins.text.plugin_data_pb2",
    "plugin_pr_curve": "tensorboard.plugins.pr_curve.plugin_data_pb2",
    "plugin_mesh": "tensorboard.plugins.mesh.plugin_data_pb2",
    "plugin_hparams": "tensorboard.plugins.hparams.plugin_data_pb2",
    "api": "tensorboard.plugins.hparams.api_pb2",
    "layout": "tensorboard.plugins.custom_scalar.layout_pb2",
    "projector_config": "tensorboard.plugins.projector.projector_config_pb2",
}


def _relative(full_name: str, package: str) -> str:
    if full_name.startswith(package + "."):
        return full_name[len(package) + 1 :]
    return full_name  # e.g. google.protobuf.Value


def _is_repeated(field) -> bool:
    # FieldDescriptor.is_repeated and .is_packed are protobuf 5+; older runtimes have label and options.
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == field.LABEL_REPEATED


def _is_packed(field) -> bool:
    if hasattr(field, "is_packed"):
        return field.is_packed
    options = field.GetOptions()
    if options.HasField("packed"):
        return options.packed
    unpackable = (field.TYPE_STRING, field.TYPE_BYTES, field.TYPE_MESSAGE, field.TYPE_GROUP)
    return _is_repeated(field) and field.file.syntax == "proto3" and field.type not in unpackable


def _enum_shape(enum) -> tuple:
    return (enum.name, sorted((v.name, v.number) for v in enum.values))


def _message_shape(msg, package: str) -> tuple:
    # Presence of map-entry key/value differs between proto2 and proto3 sources
    # but does not affect the wire format.
    is_map_entry = msg.GetOptions().map_entry
    fields = []
    for f in msg.fields:
        oneof = f.containing_oneof
        if oneof is not None and oneof.name == "_" + f.name and len(oneof.fields) == 1:
            oneof = None  # synthetic oneof of a proto3 `optional` field
        if f.message_type is not None:
            type_name = _relative(f.message_type.full_name, package)
        elif f.enum_type is not None:
            type_name = _relative(f.enum_type.full_name, package)
        else:
            type_name = ""
        fields.append(
            (
                f.name,
                f.number,
                f.type,
                _is_repeated(f),
                None if is_map_entry else f.has_presence,
                _is_packed(f),
                type_name,
                oneof.name if oneof is not None else None,
            )
        )
    return (
        msg.name,
        sorted(fields),
        sorted(_message_shape(m, package) for m in msg.nested_types),
        sorted(_enum_shape(e) for e in msg.enum_types),
    )


def _file_shape(file_descriptor) -> tuple:
    package = file_descriptor.package
    return (
        sorted(_message_shape(m, package) for m in file_descriptor.message_types_by_name.values()),
        sorted(_enum_shape(e) for e in file_descriptor.enum_types_by_name.values()),
    )


@pytest.mark.parametrize("ours, theirs", sorted(_COUNTERPARTS.items()))
def test_descriptor_matches_tensorboard(ours, theirs):
    our_mod = importlib.import_module(f"logger_daemon.protos.{ours}_pb2")
    their_mod = pytest.importorskip(theirs)
    assert our_mod.DESCRIPTOR.name == f"logger_daemon/protos/{ours}.proto"
    assert our_mod.DESCRIPTOR.package.split(".")[0] == "tblogger"
    assert _file_shape(our_mod.DESCRIPTOR) == _file_shape(their_mod.DESCRIPTOR)


# --------------------------------------------------------------------------
# Wire round-trips through TensorBoard's parsers.
# --------------------------------------------------------------------------


def _build_event() -> event_pb2.Event:
    text_meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="text",
            content=plugin_text_pb2.TextPluginData(version=0).SerializeToString(),
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )
    string_tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)]),
        string_val=[b"hello", "w\u00f6rld".encode()],
    )
    histo = summary_pb2.HistogramProto(
        min=-1.0,
        max=3.0,
        num=4.0,
        sum=4.0,
        sum_squares=12.0,
        bucket_limit=[0.0, 1.0, 3.0],
        bucket=[1.0, 1.0, 2.0],
    )
    image = summary_pb2.Summary.Image(height=2, width=3, colorspace=3, encoded_image_string=b"\x89PNG\r\n\x1a\n")
    summary = summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(tag="loss", simple_value=0.25),
            summary_pb2.Summary.Value(tag="img", image=image),
            summary_pb2.Summary.Value(tag="weights", histo=histo),
            summary_pb2.Summary.Value(tag="note", metadata=text_meta, tensor=string_tensor),
        ]
    )
    return event_pb2.Event(
        wall_time=1700000000.5,
        step=42,
        summary=summary,
        source_metadata=event_pb2.SourceMetadata(writer="tblogger"),
    )


def test_event_parses_with_tensorboard():
    ours = _build_event()
    data = ours.SerializeToString()
    tb = tb_event_pb2.Event.FromString(data)

    assert tb.wall_time == 1700000000.5
    assert tb.step == 42
    assert tb.WhichOneof("what") == "summary"
    assert tb.source_metadata.writer == "tblogger"

    loss, img, weights, note = tb.summary.value
    assert (loss.tag, loss.WhichOneof("value"), loss.simple_value) == (
        "loss",
        "simple_value",
        0.25,
    )
    assert img.WhichOneof("value") == "image"
    assert (img.image.height, img.image.width, img.image.colorspace) == (2, 3, 3)
    assert img.image.encoded_image_string == b"\x89PNG\r\n\x1a\n"
    assert weights.WhichOneof("value") == "histo"
    assert (weights.histo.min, weights.histo.max, weights.histo.num) == (-1.0, 3.0, 4.0)
    assert (weights.histo.sum, weights.histo.sum_squares) == (4.0, 12.0)
    assert list(weights.histo.bucket_limit) == [0.0, 1.0, 3.0]
    assert list(weights.histo.bucket) == [1.0, 1.0, 2.0]
    assert note.WhichOneof("value") == "tensor"
    from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
    from tensorboard.compat.proto import types_pb2 as tb_types_pb2

    assert note.tensor.dtype == tb_types_pb2.DT_STRING
    assert [d.size for d in note.tensor.tensor_shape.dim] == [2]
    assert list(note.tensor.string_val) == [b"hello", "w\u00f6rld".encode()]
    assert note.metadata.plugin_data.plugin_name == "text"
    assert note.metadata.data_class == tb_summary_pb2.DATA_CLASS_TENSOR

    # Same field names and values on both sides, and byte-identical re-encoding.
    assert json_format.MessageToDict(tb) == json_format.MessageToDict(ours)
    assert tb.SerializeToString() == data
    assert event_pb2.Event.FromString(tb.SerializeToString()) == ours


def test_event_header_and_session_log_parse_with_tensorboard():
    header = event_pb2.Event(wall_time=1.0, file_version="brain.Event:2")
    tb = tb_event_pb2.Event.FromString(header.SerializeToString())
    assert tb.WhichOneof("what") == "file_version"
    assert tb.file_version == "brain.Event:2"

    start = event_pb2.Event(step=7, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
    tb = tb_event_pb2.Event.FromString(start.SerializeToString())
    assert tb.session_log.status == tb_event_pb2.SessionLog.START


def test_graph_def_parses_with_tensorboard():
    from tensorboard.compat.proto import graph_pb2 as tb_graph_pb2

    node = node_def_pb2.NodeDef(name="layer1/MatMul", op="MatMul", input=["x", "w"])
    node.attr["T"].type = types_pb2.DT_FLOAT
    node.attr["shape"].list.i.extend([3, 4])
    node.attr["_output_shapes"].list.shape.add().dim.add(size=3)
    graph = graph_pb2.GraphDef(node=[node], versions=versions_pb2.VersionDef(producer=22))
    data = graph.SerializeToString(deterministic=True)

    tb = tb_graph_pb2.GraphDef.FromString(data)
    assert tb.node[0].name == "layer1/MatMul"
    assert list(tb.node[0].input) == ["x", "w"]
    assert tb.node[0].attr["T"].type == types_pb2.DT_FLOAT
    assert list(tb.node[0].attr["shape"].list.i) == [3, 4]
    assert tb.versions.producer == 22
    assert tb.SerializeToString(deterministic=True) == data

    # Event.graph_def carries the serialized GraphDef as bytes.
    event = event_pb2.Event(graph_def=data)
    tb_event = tb_event_pb2.Event.FromString(event.SerializeToString())
    assert tb_graph_pb2.GraphDef.FromString(tb_event.graph_def) == tb
    assert isinstance(attr_value_pb2.AttrValue(), attr_value_pb2.AttrValue)


def _assert_round_trip(ours, tb_cls):
    data = ours.SerializeToString(deterministic=True)
    theirs = tb_cls.FromString(data)
    assert json_format.MessageToDict(theirs) == json_format.MessageToDict(ours)
    assert theirs.SerializeToString(deterministic=True) == data
    assert type(ours).FromString(theirs.SerializeToString()) == ours
    return theirs


def test_hparams_plugin_data_round_trips():
    tb_hp = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")
    tb_api = pytest.importorskip("tensorboard.plugins.hparams.api_pb2")

    experiment = api_pb2.Experiment(
        name="exp",
        time_created_secs=12.5,
        hparam_infos=[
            api_pb2.HParamInfo(
                name="lr",
                type=api_pb2.DATA_TYPE_FLOAT64,
                domain_interval=api_pb2.Interval(min_value=1e-4, max_value=1e-1),
            ),
            api_pb2.HParamInfo(
                name="optimizer",
                type=api_pb2.DATA_TYPE_STRING,
                domain_discrete=struct_pb2.ListValue(
                    values=[
                        struct_pb2.Value(string_value="adam"),
                        struct_pb2.Value(string_value="sgd"),
                    ]
                ),
            ),
        ],
        metric_infos=[
            api_pb2.MetricInfo(
                name=api_pb2.MetricName(group="validation", tag="accuracy"),
                display_name="Accuracy",
                dataset_type=api_pb2.DATASET_VALIDATION,
            )
        ],
    )
    theirs = _assert_round_trip(
        plugin_hparams_pb2.HParamsPluginData(version=0, experiment=experiment),
        tb_hp.HParamsPluginData,
    )
    assert theirs.experiment.hparam_infos[1].domain_discrete.values[1].string_value == "sgd"
    assert theirs.experiment.metric_infos[0].dataset_type == tb_api.DATASET_VALIDATION

    start = plugin_hparams_pb2.HParamsPluginData(
        session_start_info=plugin_hparams_pb2.SessionStartInfo(group_name="g1", start_time_secs=3.0)
    )
    start.session_start_info.hparams["lr"].number_value = 0.01
    start.session_start_info.hparams["optimizer"].string_value = "adam"
    start.session_start_info.hparams["nesterov"].bool_value = True
    theirs = _assert_round_trip(start, tb_hp.HParamsPluginData)
    assert theirs.session_start_info.hparams["lr"].number_value == 0.01
    assert theirs.session_start_info.hparams["nesterov"].bool_value is True

    end = plugin_hparams_pb2.HParamsPluginData(
        session_end_info=plugin_hparams_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=9.0)
    )
    theirs = _assert_round_trip(end, tb_hp.HParamsPluginData)
    assert theirs.session_end_info.status == tb_api.STATUS_SUCCESS


def test_custom_scalar_layout_round_trips():
    tb_layout = pytest.importorskip("tensorboard.plugins.custom_scalar.layout_pb2")
    layout = layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title="losses",
                closed=True,
                chart=[
                    layout_pb2.Chart(
                        title="train vs val",
                        multiline=layout_pb2.MultilineChartContent(tag=[r"loss/train", r"loss/val.*"]),
                    ),
                    layout_pb2.Chart(
                        title="band",
                        margin=layout_pb2.MarginChartContent(
                            series=[layout_pb2.MarginChartContent.Series(value="m", lower="lo", upper="hi")]
                        ),
                    ),
                ],
            )
        ]
    )
    theirs = _assert_round_trip(layout, tb_layout.Layout)
    assert theirs.category[0].chart[1].WhichOneof("content") == "margin"


def test_small_plugin_data_round_trips():
    tb_text = pytest.importorskip("tensorboard.plugins.text.plugin_data_pb2")
    tb_pr = pytest.importorskip("tensorboard.plugins.pr_curve.plugin_data_pb2")
    tb_mesh = pytest.importorskip("tensorboard.plugins.mesh.plugin_data_pb2")

    _assert_round_trip(plugin_text_pb2.TextPluginData(version=1), tb_text.TextPluginData)
    theirs = _assert_round_trip(
        plugin_pr_curve_pb2.PrCurvePluginData(version=0, num_thresholds=127),
        tb_pr.PrCurvePluginData,
    )
    assert theirs.num_thresholds == 127
    theirs = _assert_round_trip(
        plugin_mesh_pb2.MeshPluginData(
            version=0,
            name="bunny",
            content_type=plugin_mesh_pb2.MeshPluginData.FACE,
            json_config='{"camera": {}}',
            shape=[1, 100, 3],
            components=7,
        ),
        tb_mesh.MeshPluginData,
    )
    assert theirs.content_type == tb_mesh.MeshPluginData.FACE
    assert list(theirs.shape) == [1, 100, 3]


# --------------------------------------------------------------------------
# Coexistence with tensorboard / tensorboardX descriptors in one process.
# --------------------------------------------------------------------------

_ORDERS = {
    "ours_first": ["ours", "tensorboard", "tensorboardX"],
    "ours_last": ["tensorboardX", "tensorboard", "ours"],
}


@pytest.mark.e2e
@pytest.mark.parametrize("order", sorted(_ORDERS))
def test_coexists_with_tensorboard_and_tensorboardx(order):
    pytest.importorskip("tensorboardX.proto.event_pb2")
    imports = {
        "ours": "from logger_daemon.protos import event_pb2 as ours, "
        "plugin_hparams_pb2, layout_pb2, projector_config_pb2, graph_pb2",
        "tensorboard": "from tensorboard.compat.proto import event_pb2 as tb\n"
        "from tensorboard.plugins.hparams import plugin_data_pb2\n"
        "from tensorboard.plugins.custom_scalar import layout_pb2 as tb_layout",
        "tensorboardX": "from tensorboardX.proto import event_pb2 as tbx\n"
        "from tensorboardX.proto import plugin_hparams_pb2 as tbx_hp",
    }
    script = "\n".join(imports[name] for name in _ORDERS[order]) + textwrap.dedent(
        """
        e = ours.Event(step=3, file_version="brain.Event:2")
        data = e.SerializeToString()
        assert tb.Event.FromString(data).step == 3
        assert tbx.Event.FromString(data).file_version == "brain.Event:2"
        assert ours.Event.DESCRIPTOR.full_name == "tblogger.Event"
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"
