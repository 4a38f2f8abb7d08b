"""End to end: embeddings through a real daemon, against tensorboardX, read by TensorBoard's projector.

Our SummaryWriter (through a daemon the client starts in the test's runtime directory) and
tensorboardX's make the same `add_embedding` calls, each into its own log root; the projector's
files must be equal (byte for byte, sprites pixel for pixel), and TensorBoard's projector plugin
must serve our tensors, labels and sprites.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import tensorboardX
from conftest import wait_for
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector import projector_plugin
from test_projector import _calls, assert_same_projector_files, decode_png, parse_config
from werkzeug.test import Client
from werkzeug.wrappers import Response

from logger_client import SummaryWriter

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_the_projector_files_equal_tensorboardx(runtime_dir, tmp_path):
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    with SummaryWriter(ours) as writer:
        _calls(writer)
        assert writer.flush(timeout=60)
        stats = writer.stats()
    assert stats["records_written"] == 5 and stats["records_dropped"] == {}
    reference = tensorboardX.SummaryWriter(theirs)
    _calls(reference)
    reference.close()
    assert_same_projector_files(ours, theirs)


def test_tensorboards_projector_plugin_serves_the_embedding(runtime_dir, tmp_path):
    logdir = str(tmp_path)
    rng = np.random.default_rng(5)
    mat, images = rng.standard_normal((9, 3)).astype(np.float32), rng.random((9, 3, 4, 4))
    labels = [f"label {i}" for i in range(9)]
    with SummaryWriter(os.path.join(logdir, "run")) as writer:
        writer.add_embedding(mat, metadata=labels, label_img=images, global_step=2, tag="points")
        writer.add_scalar("loss", 1.0)  # an event file for the run, as TensorBoard finds runs by them
        assert writer.flush(timeout=60)
    wait_for(lambda: os.path.exists(os.path.join(logdir, "run", "projector_config.pbtxt")), message="the config")

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    context = base_plugin.TBContext(
        data_provider=data_provider.MultiplexerDataProvider(multiplexer, logdir), logdir=logdir, multiplexer=multiplexer
    )
    routes = projector_plugin.ProjectorPlugin(context).get_plugin_apps()

    def get(route: str, query: str) -> Response:
        response = Client(routes[route], Response).get(f"{route}?{query}")
        assert response.status_code == 200, (route, response.data)
        return response

    assert json.loads(get("/runs", "").data) == ["run"]
    (info,) = json.loads(get("/info", "run=run").data)["embeddings"]
    assert info["tensorName"] == "points:00002" and info["tensorShape"] == [9, 3]
    assert info["sprite"]["singleImageDim"] == [4, 4]
    tensor = np.frombuffer(get("/tensor", "run=run&name=points:00002").data, np.float32).reshape(9, 3)
    np.testing.assert_array_equal(tensor, mat)
    assert get("/metadata", "run=run&name=points:00002").data.decode().splitlines() == labels
    sprite = decode_png(get("/sprite_image", "run=run&name=points:00002").data)
    assert sprite.shape == (12, 12, 3)
    with open(os.path.join(logdir, "run", "projector_config.pbtxt"), "rb") as file:
        config = parse_config(file.read())
    assert [embedding.tensor_name for embedding in config.embeddings] == ["points:00002"]
