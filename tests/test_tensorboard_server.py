"""End to end through a real TensorBoard server: the demo's multi-process run, served over HTTP.

The demo (`python -m logger_client.demo`) trains on two ranks that log through the daemon their
first writer auto-starts; then a real `tensorboard` process serves the log root on a loopback port
and its HTTP API must show what the demo logged: the runs (`.` for the root, one per add_scalars
key), every tag per plugin, and the points themselves, equal to what TensorBoard's own loader reads
from the files. Both of TensorBoard's loaders are exercised: the Rust data server (`--load_fast=auto`,
the default when `tensorboard-data-server` is installed) and the Python one (`--load_fast=false`).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import REPO, wait_for
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea

pytestmark = pytest.mark.e2e

STEPS = 30
RANKS = 2
KEEP_ALL = dict.fromkeys((ea.COMPRESSED_HISTOGRAMS, ea.IMAGES, ea.AUDIO, ea.SCALARS, ea.HISTOGRAMS, ea.TENSORS), 0)
EXPECTED_SCALAR_TAGS = {
    ".": {f"{name}/rank{rank}" for name in ("loss", "lr") for rank in range(RANKS)},
    "loss_by_split/train": {"loss_by_split"},
    "loss_by_split/val": {"loss_by_split"},
}


@pytest.fixture
def demo_logdir(runtime_dir: str, tmp_path) -> str:
    """The demo's log root, written by 2 ranks x 30 steps through a daemon of this test's runtime dir."""
    logdir = str(tmp_path / "runs")
    result = subprocess.run(
        [sys.executable, "-m", "logger_client.demo", "--logdir", logdir, "--ranks", str(RANKS), "--steps", str(STEPS)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"demo failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    assert f"wrote {RANKS} ranks x {STEPS} steps" in result.stdout
    return logdir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TensorBoard:
    """A `tensorboard` process on a loopback port, in its own process group (it may start a data server)."""

    def __init__(self, logdir: str, load_fast: str, log_path: str) -> None:
        self.port = _free_port()
        self.log_path = log_path
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tensorboard.main",
                    "--logdir",
                    logdir,
                    "--port",
                    str(self.port),
                    "--host",
                    "127.0.0.1",
                    f"--load_fast={load_fast}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def get(self, path: str, **query: str) -> bytes | None:
        """The body of GET `path`, or None while the server is not answering (yet)."""
        if self.process.poll() is not None:
            pytest.fail(f"tensorboard exited with {self.process.returncode}:\n{self.log()}")
        url = f"http://127.0.0.1:{self.port}/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def get_json(self, path: str, **query: str) -> Any:
        body = self.get(path, **query)
        assert body is not None, f"no answer from {path} {query}"
        return json.loads(body)

    def stop(self) -> None:
        """SIGTERM to the whole group, then SIGKILL to whatever of it remains."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the data server child, if it outlived its parent
        except ProcessLookupError:
            pass
        self.process.wait(5)


@pytest.fixture(params=["auto", "false"], ids=["load_fast-auto", "load_fast-false"])
def tensorboard(request, demo_logdir: str, tmp_path) -> Iterator[TensorBoard]:
    server = TensorBoard(demo_logdir, request.param, str(tmp_path / "tensorboard.log"))
    try:
        yield server
    finally:
        server.stop()


def _scalar_tags(server: TensorBoard) -> dict[str, set[str]] | None:
    body = server.get("data/plugin/scalars/tags")
    if body is None:
        return None
    tags = {run: set(run_tags) for run, run_tags in json.loads(body).items()}
    return tags if tags == EXPECTED_SCALAR_TAGS else None


def test_tensorboard_serves_the_demo(tensorboard: TensorBoard, demo_logdir: str) -> None:
    server = tensorboard
    wait_for(
        lambda: _scalar_tags(server),
        timeout_s=60,
        interval_s=0.2,
        message=f"tensorboard to list the demo's scalar tags {EXPECTED_SCALAR_TAGS}",
    )
    assert sorted(server.get_json("data/runs")) == sorted(EXPECTED_SCALAR_TAGS)

    files = {
        run: ea.EventAccumulator(os.path.join(demo_logdir, run), size_guidance=KEEP_ALL).Reload()
        for run in EXPECTED_SCALAR_TAGS
    }

    # Scalars: every point, equal to what TensorBoard's loader reads from the files.
    for run, tags in EXPECTED_SCALAR_TAGS.items():
        for tag in tags:
            points = server.get_json("data/plugin/scalars/scalars", run=run, tag=tag)
            assert [step for _, step, _ in points] == list(range(STEPS)), (run, tag)
            assert [[e.wall_time, e.step, e.value] for e in files[run].Scalars(tag)] == points, (run, tag)
    loss = [value for _, _, value in server.get_json("data/plugin/scalars/scalars", run=".", tag="loss/rank0")]
    train = [
        v for _, _, v in server.get_json("data/plugin/scalars/scalars", run="loss_by_split/train", tag="loss_by_split")
    ]
    val = [
        v for _, _, v in server.get_json("data/plugin/scalars/scalars", run="loss_by_split/val", tag="loss_by_split")
    ]
    assert train == loss  # rank 0 logs the same float as loss/rank0 and as the train split
    np.testing.assert_allclose(val, np.array(loss) * 1.1 + 0.01, rtol=1e-6)
    assert loss[-1] < loss[0]  # the demo trains: its loss goes down

    # Histograms: the weights and gradients of each rank, every 10 steps.
    histogram_tags = server.get_json("data/plugin/histograms/tags")
    assert {run: set(tags) for run, tags in histogram_tags.items()} == {
        ".": {f"{name}/rank{rank}" for name in ("weights", "gradients") for rank in range(RANKS)}
    }
    for rank in range(RANKS):
        histograms = server.get_json("data/plugin/histograms/histograms", run=".", tag=f"weights/rank{rank}")
        assert [step for _, step, _ in histograms] == list(range(0, STEPS, 10))
        for _, _, buckets in histograms:
            assert sum(count for _, _, count in buckets) == 16  # 16 weights per histogram

    # Images: rank 0's 64x64 picture at steps 0 and 25, served as a PNG.
    image_tags = server.get_json("data/plugin/images/tags")
    assert set(image_tags) == {"."} and set(image_tags["."]) == {"weights_as_image"}
    images = server.get_json("data/plugin/images/images", run=".", tag="weights_as_image")
    assert [entry["step"] for entry in images] == [0, 25]
    blob = server.get("data/plugin/images/individualImage?" + images[-1]["query"])
    assert blob is not None
    with Image.open(io.BytesIO(blob)) as picture:
        assert (picture.format, picture.mode, picture.size) == ("PNG", "RGB", (64, 64))
        pixels = np.asarray(picture)
    assert np.all(pixels[:, :, 2] == int(0.2 * 255))  # the demo's constant blue channel

    # Text: rank 0's notes, rendered from markdown.
    assert server.get_json("data/plugin/text/tags") == {".": ["notes/text_summary"]}
    texts = server.get_json("data/plugin/text/text", run=".", tag="notes/text_summary")
    assert [entry["step"] for entry in texts] == [0, 25]
    assert "step 0: loss <strong>" in texts[0]["text"] and f"world size {RANKS}" in texts[0]["text"]
