"""Graphs, in process: the traced description of torch modules against torch.utils.tensorboard's
GraphDef, the ONNX GraphDef against tensorboardX's, the whole path (writer -> wire -> pipeline ->
event file) read back by TensorBoard's loader and its graphs plugin, and errors at the call.
"""

from __future__ import annotations

import io
import logging
import sys
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.compat.proto.config_pb2 import RunMetadata as TBRunMetadata
from tensorboard.compat.proto.graph_pb2 import GraphDef as TBGraphDef
from test_projector import run_through_pipeline
from torch import nn
from torch.utils.tensorboard._pytorch_graph import graph as torch_graph

from logger_client import SummaryWriter
from logger_client._writer_graph import GRAPH_RECORD_TAG, describe_torch_graph
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import RecordKind
from logger_daemon.graph_def import attr_value, graph_def, onnx_graph_def, run_metadata


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():  # the tracer's TracerWarnings
        warnings.simplefilter("ignore")
        yield


# -- models --------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)

    def forward(self, x: Any) -> Any:
        return self.fc2(self.act(self.fc1(x)))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: Any) -> Any:
        return torch.log_softmax(self.head(torch.flatten(self.features(x), 1)), dim=1)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)

    def forward(self, x: Any) -> Any:
        return self.norm(x + torch.tanh(self.proj(x)))


class TwoInputs(nn.Module):
    """A submodule, two inputs, two outputs, constants and a dropout that eval mode turns off."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.embed = nn.Embedding(10, 6)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: Any, ids: Any) -> Any:
        h = self.block(x + self.embed(ids).mean(1))
        return self.drop(h) * 2.0, h.sum(-1)


def models() -> list[tuple[str, Any, Any]]:
    torch.manual_seed(0)
    return [
        ("mlp", MLP(), torch.zeros(3, 4)),
        ("convnet", ConvNet(), torch.zeros(2, 1, 8, 8)),
        ("two_inputs", TwoInputs(), (torch.ones(2, 6), torch.tensor([[1, 2], [3, 4]]))),
    ]


MODEL_IDS = [name for name, _, _ in models()]


def as_tensorboard(message: Any, cls: Any) -> Any:
    return cls.FromString(message.SerializeToString())


# -- the description against torch.utils.tensorboard -------------------------------------------------


@pytest.mark.parametrize("index", range(len(MODEL_IDS)), ids=MODEL_IDS)
def test_the_graph_def_equals_torch_utils_tensorboard(index):
    _, model, inputs = models()[index]
    theirs, their_metadata = torch_graph(model, inputs)
    description = describe_torch_graph(model, inputs)
    ours = as_tensorboard(graph_def(description), TBGraphDef)
    assert [node.name for node in ours.node] == [node.name for node in theirs.node]
    for mine, reference in zip(ours.node, theirs.node):
        assert mine == reference, f"{mine} != {reference}"
    assert ours == theirs
    assert as_tensorboard(run_metadata(description["run_metadata"]), TBRunMetadata) == their_metadata
    assert description["run_metadata"]["tag"] == "step1"


def test_the_description_is_plain_data_with_no_protobuf_or_torch_in_it():
    _, model, inputs = models()[2]
    description = describe_torch_graph(model, inputs)

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(type(key) is str and plain(item) for key, item in value.items())
        if isinstance(value, list):
            return all(plain(item) for item in value)
        return type(value) in (str, int, float, bool, type(None))

    assert plain(description)
    node = next(node for node in description["nodes"] if node["op"] == "aten::linear")
    assert node["attr"]["_output_shapes"] == {"list": {"shape": [[2, 6]]}} and node["attr"]["attr"] == {"s": "{}"}


def test_the_model_is_traced_in_eval_mode_and_its_training_mode_restored():
    seen: list[bool] = []

    class Probe(MLP):
        def forward(self, x: Any) -> Any:
            seen.append(self.training)
            return super().forward(x)

    model = Probe()
    model.train()
    describe_torch_graph(model, torch.zeros(1, 4))
    assert seen and not any(seen)
    assert model.training and model.fc1.training


def test_verbose_prints_the_traced_graph(capsys):
    _, model, inputs = models()[0]
    describe_torch_graph(model, inputs, verbose=True)
    assert "aten::linear" in capsys.readouterr().out


@pytest.mark.parametrize(
    "value",
    [
        {"s": "text"},
        {"i": -3},
        {"f": 0.5},
        {"b": True},
        {"type": 1},
        {"shape": [2, None]},
        {"list": {"shape": [[1, 2], []], "i": [1, 2], "s": ["a"], "f": [1.5], "b": [False], "type": [3]}},
    ],
)
def test_plain_attribute_values_become_attr_values(value):
    converted = attr_value(value)
    assert converted.WhichOneof("value") == next(iter(value))


@pytest.mark.parametrize("value", [{}, {"s": "a", "i": 1}, {"nope": 1}, {"list": {"nope": [1]}}, {"list": []}, "s"])
def test_malformed_attribute_values_are_refused(value):
    with pytest.raises(ValueError):
        attr_value(value)


# -- the whole path: writer -> wire -> pipeline -> event file ----------------------------------------


def load(directory: str) -> ea.EventAccumulator:
    accumulator = ea.EventAccumulator(directory, size_guidance={ea.GRAPH: 0, ea.RUN_METADATA: 0})
    accumulator.Reload()
    return accumulator


def test_add_graph_writes_what_torch_utils_tensorboard_writes(tmp_path):
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    _, model, inputs = models()[1]
    transport = InMemoryTransport()
    SummaryWriter(str(tmp_path / "ours"), transport=transport).add_graph(model, inputs)
    (record,) = transport.records()
    assert record.kind == RecordKind.GRAPH and record.tag == GRAPH_RECORD_TAG and record.step == 0
    run = run_through_pipeline(transport)
    assert run.written() == 1 and run.dropped() == {}
    reference = TorchWriter(str(tmp_path / "theirs"))
    reference.add_graph(model, inputs)
    reference.close()
    ours, theirs = load(str(tmp_path / "ours")), load(str(tmp_path / "theirs"))
    assert ours.Tags()[ea.GRAPH] and ours.Tags()[ea.RUN_METADATA] == theirs.Tags()[ea.RUN_METADATA] == ["step1"]
    assert ours.Graph() == theirs.Graph()
    assert ours.RunMetadata("step1") == theirs.RunMetadata("step1")


def test_tensorboards_graphs_plugin_serves_the_graph_and_its_run_metadata(tmp_path):
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.graph import graphs_plugin

    _, model, inputs = models()[2]
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path / "run"), transport=transport)
    writer.add_graph(model, inputs)
    run_through_pipeline(transport)
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    plugin = graphs_plugin.GraphsPlugin(base_plugin.TBContext(data_provider=provider, logdir=str(tmp_path)))
    ctx = context.RequestContext()
    info = plugin.info_impl(ctx, "")
    assert info["run"]["run_graph"] is True and "step1" in info["run"]["tags"]
    body, mime = plugin.graph_impl(ctx, "run", None, False, "")
    assert mime == "text/x-protobuf" and 'name: "TwoInputs/Block[block]/Linear[proj]' in body
    body, _ = plugin.run_metadata_impl(ctx, "", "run", "step1")
    assert 'device: "/device:CPU:0"' in body


@pytest.mark.parametrize(
    ("model", "inputs", "error", "words"),
    [
        (lambda x: x * 2, torch.ones(2), TypeError, "model must be a torch.nn.Module, got function"),
        ("decision path", torch.ones(2), TypeError, "model must be a torch.nn.Module, got str"),
        (MLP(), torch.zeros(3, 5), RuntimeError, "add_graph could not trace the model"),
        (MLP(), None, RuntimeError, "add_graph could not trace the model"),
        (TwoInputs(), torch.ones(2, 6), RuntimeError, "add_graph could not trace the model"),
    ],
)
def test_bad_models_and_inputs_raise_at_the_call_and_queue_nothing(tmp_path, model, inputs, error, words):
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    with pytest.raises(error) as raised:
        writer.add_graph(model, inputs)
    assert words in str(raised.value)
    assert transport.records() == []


@pytest.mark.parametrize(
    "description",
    [
        {"nodes": "none"},
        {"nodes": [{"name": 1, "op": "x"}]},
        {"nodes": [{"name": "a", "op": "x", "input": "b"}]},
        {"nodes": [{"name": "a", "op": "x", "attr": {"k": {"bad": 1}}}]},
        {"nodes": [], "versions": {"producer": 1, "nope": 2}},
        {"nodes": [], "run_metadata": {"devices": ["cpu"]}},
        {"nodes": [], "run_metadata": {"tag": "t", "devices": "cpu"}},
    ],
)
def test_a_description_the_daemon_refuses_counts_as_encode_error(tmp_path, description):
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    writer._queue_record(RecordKind.GRAPH, GRAPH_RECORD_TAG, 0, 1.0, description)
    run = run_through_pipeline(transport)
    assert run.dropped() == {"encode_error": 1}


# -- ONNX ----------------------------------------------------------------------------------------------


def onnx_model_bytes() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "W")
    constant = numpy_helper.from_array(np.eye(4, dtype=np.float32), "K")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["X", "W"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="c1"),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("ReduceMean", ["relu"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("Constant", [], ["K2"], value=constant),
            helper.make_node("Gemm", ["mean", "K2"], ["Y"], alpha=0.5, transB=1, name="gemm"),
            helper.make_node("Split", ["Y"], ["Y0", "Y1"], axis=1, num_outputs=2),
        ],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 8, 8])],
        [
            helper.make_tensor_value_info("Y0", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("Y1", TensorProto.DOUBLE, None),
        ],
        initializer=[weights],
    )
    return bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())


def test_the_onnx_graph_def_equals_tensorboardx(tmp_path, capsys):
    from tensorboardX.onnx_graph import load_onnx_graph
    from tensorboardX.proto.graph_pb2 import GraphDef as TBXGraphDef

    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_model_bytes())
    theirs = load_onnx_graph(str(path))
    ours = TBXGraphDef.FromString(onnx_graph_def(onnx_model_bytes()).SerializeToString())
    assert ours == theirs and len(ours.node) == 9
    assert capsys.readouterr().out  # tensorboardX prints every node's name; the daemon prints nothing
    onnx_graph_def(onnx_model_bytes())
    assert capsys.readouterr().out == ""


def test_add_onnx_graph_writes_what_tensorboardx_writes(tmp_path):
    import tensorboardX

    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_model_bytes())
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path / "ours"), transport=transport)
    writer.add_onnx_graph(str(path))
    with open(path, "rb") as file:
        writer.add_onnx_graph(file)  # a binary file object works too
    writer.add_onnx_graph(prototxt=path)  # torch.utils.tensorboard's argument name
    records = transport.records()
    assert [record.kind for record in records] == [RecordKind.ONNX_GRAPH] * 3
    assert all(record.value == onnx_model_bytes() for record in records)
    run = run_through_pipeline(transport)
    assert run.written() == 3 and run.dropped() == {}
    reference = tensorboardX.SummaryWriter(str(tmp_path / "theirs"))
    reference.add_onnx_graph(str(path))
    reference.close()
    assert load(str(tmp_path / "ours")).Graph() == load(str(tmp_path / "theirs")).Graph()


def test_add_onnx_graph_without_onnx_raises_import_error_naming_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real_find_spec(name, *a)
    )
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    with pytest.raises(ImportError, match=r"pip install 'tb-logger-service\[onnx\]'"):
        writer.add_onnx_graph(str(tmp_path / "model.onnx"))
    assert transport.records() == []


@pytest.mark.parametrize(
    ("argument", "error", "words"),
    [
        ("/no/such/model.onnx", FileNotFoundError, "model.onnx"),
        (io.StringIO("text"), TypeError, "binary mode"),
        (3, TypeError, "must be a path or a binary file"),
        (None, TypeError, "needs onnx_model_file"),
        (io.BytesIO(b""), ValueError, "is empty"),
        ("large", ValueError, "travel to the daemon"),
    ],
)
def test_bad_onnx_arguments_raise_at_the_call_and_queue_nothing(tmp_path, monkeypatch, argument, error, words):
    if argument == "large":
        monkeypatch.setattr("logger_client._writer_graph.MAX_ONNX_BYTES", 10)
        argument = tmp_path / "model.onnx"
        argument.write_bytes(onnx_model_bytes())
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    with pytest.raises(error, match=words):
        writer.add_onnx_graph(argument)
    assert transport.records() == []


def test_bytes_onnx_cannot_parse_count_as_encode_error(tmp_path):
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    writer.add_onnx_graph(io.BytesIO(b"\xff\xff not an onnx model"))
    assert run_through_pipeline(transport).dropped() == {"encode_error": 1}


def test_a_daemon_without_onnx_counts_encode_error_and_says_why(tmp_path, monkeypatch, caplog):
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    writer.add_onnx_graph(io.BytesIO(onnx_model_bytes()))
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with caplog.at_level(logging.WARNING, logger="logger_daemon"):
        run = run_through_pipeline(transport)
    assert run.dropped() == {"encode_error": 1}
    assert "needs the onnx package where the daemon runs: pip install 'tb-logger-service[onnx]'" in caplog.text
