"""End to end: graphs through a real daemon, against torch.utils.tensorboard and tensorboardX, read
back by TensorBoard's loader; and what a training process imports to log them (no protobuf, no
onnx).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
from conftest import REPO
from tensorboard.backend.event_processing import event_accumulator as ea
from test_graphs import load, models, onnx_model_bytes

from logger_client import SummaryWriter

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_add_graph_through_the_daemon_equals_torch_utils_tensorboard(runtime_dir, tmp_path):
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    for name, model, inputs in models():
        with SummaryWriter(str(tmp_path / "ours" / name)) as writer:
            writer.add_graph(model, inputs)
            assert writer.flush(timeout=60)
        reference = TorchWriter(str(tmp_path / "theirs" / name))
        reference.add_graph(model, inputs)
        reference.close()
        ours, theirs = load(str(tmp_path / "ours" / name)), load(str(tmp_path / "theirs" / name))
        assert ours.Tags()[ea.GRAPH] is True and ours.Tags()[ea.RUN_METADATA] == ["step1"]
        assert ours.Graph() == theirs.Graph(), name
        assert ours.RunMetadata("step1") == theirs.RunMetadata("step1"), name


def test_add_onnx_graph_through_the_daemon_equals_tensorboardx(runtime_dir, tmp_path):
    import tensorboardX

    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_model_bytes())
    with SummaryWriter(str(tmp_path / "ours")) as writer:
        writer.add_onnx_graph(str(path))
        assert writer.flush(timeout=60)
        assert writer.stats()["records_dropped"] == {}
    reference = tensorboardX.SummaryWriter(str(tmp_path / "theirs"))
    reference.add_onnx_graph(str(path))
    reference.close()
    assert load(str(tmp_path / "ours")).Graph() == load(str(tmp_path / "theirs")).Graph()


def test_logging_graphs_imports_neither_protobuf_nor_onnx_into_the_training_process(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_model_bytes())
    script = textwrap.dedent(
        f"""
        import sys
        import torch
        from logger_client import SummaryWriter
        from logger_client.in_memory import InMemoryTransport

        transport = InMemoryTransport()
        writer = SummaryWriter({str(tmp_path)!r}, transport=transport)
        writer.add_graph(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()), torch.zeros(1, 2))
        writer.add_onnx_graph({str(path)!r})
        assert len(transport.records()) == 2
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("google", "onnx", "logger_daemon"))
        print("LOADED", loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout
