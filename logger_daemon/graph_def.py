"""GraphDefs for TensorBoard's graph plugin, built in the daemon: from the plain description of a
traced torch module that `SummaryWriter.add_graph` sends, and from an ONNX model file's bytes, as
tensorboardX's `onnx_graph` builds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logger_daemon.protos.attr_value_pb2 import AttrValue
from logger_daemon.protos.event_pb2 import Event, TaggedRunMetadata
from logger_daemon.protos.graph_pb2 import GraphDef
from logger_daemon.protos.node_def_pb2 import NodeDef
from logger_daemon.protos.run_metadata_pb2 import RunMetadata
from logger_daemon.protos.step_stats_pb2 import DeviceStepStats, StepStats
from logger_daemon.protos.tensor_shape_pb2 import TensorShapeProto
from logger_daemon.protos.versions_pb2 import VersionDef

__all__ = ["graph_def", "graph_events", "onnx_graph_def", "run_metadata"]

#: The GraphDef producer version tensorboardX writes for ONNX graphs.
ONNX_PRODUCER = 22
_ONNX_MISSING = "an ONNX graph needs the onnx package where the daemon runs: pip install 'tb-logger-service[onnx]'"


def graph_events(wall_time: float, step: int, description: Mapping[str, Any]) -> list[bytes]:
    """The events of a described graph: `Event.graph_def`, then, if the description has run
    metadata, `Event.tagged_run_metadata`, both at `step` and `wall_time` (torch's pair)."""
    events = [Event(wall_time=wall_time, step=step, graph_def=graph_def(description).SerializeToString())]
    metadata = description.get("run_metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping) or type(metadata.get("tag")) is not str:
            raise ValueError("graph: run_metadata must be a map with a str tag")
        tagged = TaggedRunMetadata(tag=metadata["tag"], run_metadata=run_metadata(metadata).SerializeToString())
        events.append(Event(wall_time=wall_time, step=step, tagged_run_metadata=tagged))
    return [event.SerializeToString() for event in events]


def graph_def(description: Mapping[str, Any]) -> GraphDef:
    """A GraphDef from `{"nodes": [{"name", "op", "input", "attr"}], "versions": {"producer"}}`;
    each attribute a plain AttrValue (see `attr_value`)."""
    nodes = description.get("nodes")
    if not isinstance(nodes, list):
        raise ValueError("graph: nodes must be a list")
    graph = GraphDef(node=[_node(node) for node in nodes])
    versions = description.get("versions")
    if versions is not None:
        if not isinstance(versions, Mapping):
            raise ValueError("graph: versions must be a map")
        unknown = set(versions) - {"producer", "min_consumer"}
        if unknown:
            raise ValueError(f"graph: versions has no fields {sorted(unknown)}")
        graph.versions.producer = int(versions.get("producer", 0))
        graph.versions.min_consumer = int(versions.get("min_consumer", 0))
    return graph


def run_metadata(metadata: Mapping[str, Any]) -> RunMetadata:
    """RunMetadata whose step stats name each of `metadata["devices"]` (torch names one CPU)."""
    devices = metadata.get("devices", [])
    if not isinstance(devices, list) or not all(type(device) is str for device in devices):
        raise ValueError("graph: run_metadata devices must be a list of str")
    return RunMetadata(step_stats=StepStats(dev_stats=[DeviceStepStats(device=device) for device in devices]))


def attr_value(value: Mapping[str, Any]) -> AttrValue:
    """An AttrValue from its plain form: one of `{"s": str}`, `{"i": int}`, `{"f": float}`,
    `{"b": bool}`, `{"type": int}`, `{"shape": [dims]}` or `{"list": {"s"|"i"|"f"|"b"|"type"|"shape":
    [...]}}`; a dim of None is unknown (-1)."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"graph: an attribute value is a map of one field, got {value!r:.100}")
    ((field, content),) = value.items()
    if field == "list":
        if not isinstance(content, Mapping):
            raise ValueError("graph: a list attribute maps field names to lists")
        listed = AttrValue.ListValue()
        for name, items in content.items():
            if (name not in _SCALAR_FIELDS and name != "shape") or not isinstance(items, list):
                raise ValueError(f"graph: a list attribute has no field {name!r}")
            if name == "shape":
                listed.shape.extend(_shape(dims) for dims in items)
            else:
                getattr(listed, name).extend(_SCALAR_FIELDS[name](item) for item in items)
        return AttrValue(list=listed)
    if field == "shape":
        return AttrValue(shape=_shape(content))
    if field not in _SCALAR_FIELDS:
        raise ValueError(f"graph: an attribute has no field {field!r}")
    return AttrValue(**{field: _SCALAR_FIELDS[field](content)})


def onnx_graph_def(model_bytes: bytes) -> GraphDef:
    """The GraphDef tensorboardX's `add_onnx_graph` writes for an ONNX model: a `Variable` node per
    graph input and output (attrs `dtype`: the ONNX element type, `shape`), then a node per
    operator, named after its first output, with its attributes as one text attr `parameters`
    (each attribute's set fields joined by " = ", attributes by ", "). Raises ValueError when onnx
    is missing or cannot parse the bytes."""
    try:
        import onnx
    except ImportError as exc:
        raise ValueError(_ONNX_MISSING) from exc
    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as exc:  # protobuf's DecodeError, or whatever onnx raises on bad bytes
        raise ValueError(f"not an ONNX model: {exc}") from exc
    graph = model.graph
    nodes = []
    for value in (*graph.input, *graph.output):
        tensor_type = value.type.tensor_type
        shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=dim.dim_value) for dim in tensor_type.shape.dim])
        nodes.append(
            NodeDef(
                name=value.name,
                op="Variable",
                # The ONNX element type as it is, as tensorboardX writes it (not a TensorFlow DataType).
                attr={"dtype": AttrValue(type=tensor_type.elem_type), "shape": AttrValue(shape=shape)},  # type: ignore[arg-type]
            )
        )
    for operator in graph.node:
        if not operator.output:
            raise ValueError(f"ONNX node {operator.name!r} ({operator.op_type}) has no output to name it")
        parameters = ", ".join(
            " = ".join(str(content) for _, content in attribute.ListFields()) for attribute in operator.attribute
        )
        nodes.append(
            NodeDef(
                name=operator.output[0],
                op=operator.op_type,
                input=operator.input,
                attr={"parameters": AttrValue(s=parameters.encode("utf-8"))},
            )
        )
    return GraphDef(node=nodes, versions=VersionDef(producer=ONNX_PRODUCER))


_SCALAR_FIELDS: dict[str, Any] = {
    "s": lambda text: text.encode("utf-8") if isinstance(text, str) else bytes(text),
    "i": int,
    "f": float,
    "b": bool,
    "type": int,
}


def _node(node: Any) -> NodeDef:
    if not isinstance(node, Mapping) or type(node.get("name")) is not str or type(node.get("op")) is not str:
        raise ValueError("graph: a node is a map with a str name and op")
    inputs = node.get("input", [])
    attrs = node.get("attr", {})
    if not isinstance(inputs, list) or not all(type(name) is str for name in inputs):
        raise ValueError(f"graph: node {node['name']!r}: input must be a list of str")
    if not isinstance(attrs, Mapping):
        raise ValueError(f"graph: node {node['name']!r}: attr must be a map")
    return NodeDef(
        name=node["name"],
        op=node["op"],
        input=inputs,
        attr={key: attr_value(value) for key, value in attrs.items()},
    )


def _shape(dims: Any) -> TensorShapeProto:
    if not isinstance(dims, list):
        raise ValueError("graph: a shape is a list of dims")
    return TensorShapeProto(dim=[TensorShapeProto.Dim(size=-1 if dim is None else int(dim)) for dim in dims])
