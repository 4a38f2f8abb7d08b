"""End to end: the media and raw methods through a real daemon, against tensorboardX (torch for
add_tensor), read back by TensorBoard.

The same calls go to our SummaryWriter (a daemon the client starts in the test's runtime
directory) and to the reference writer, each into its own log directory; both are read back with
TensorBoard's EventAccumulator (every event kept) and with its raw event loader (for the fields the
accumulator drops), and compared: tags, steps, wall times, histogram fields, pixels, GIF frames
and delays, WAV bytes, tensor values. Sizes are small (as `--quick`). add_tensor's series must
also be kept by TensorBoard's Python data provider and its Rust data server.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tensorboardX
from conftest import REPO, wait_for
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.util import tensor_util
from test_media_draw import outside_labels

from logger_client import SummaryWriter

pytestmark = pytest.mark.e2e

KEEP_ALL = dict.fromkeys((ea.COMPRESSED_HISTOGRAMS, ea.IMAGES, ea.AUDIO, ea.SCALARS, ea.HISTOGRAMS, ea.TENSORS), 0)
WALLTIME = 1_700_000_000.25
HISTOGRAM_FIELDS = ("min", "max", "num", "sum", "sum_squares", "bucket_limit", "bucket")


@pytest.fixture(autouse=True)
def _quiet_reference_writers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def write_both(tmp_path, calls, reference=tensorboardX.SummaryWriter) -> tuple[str, str]:
    """`calls(writer)` on our writer and on the reference writer; their log directories."""
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    writer = SummaryWriter(ours)
    calls(writer)
    assert writer.close(timeout=60)
    stats = writer.stats()
    assert stats["records_dropped"] == {}, stats
    reference_writer = reference(theirs)
    calls(reference_writer)
    reference_writer.close()
    return ours, theirs


def accumulate(directory: str) -> ea.EventAccumulator:
    accumulator = ea.EventAccumulator(directory, size_guidance=KEEP_ALL)
    accumulator.Reload()
    return accumulator


def raw_values(directory: str) -> dict[str, list[tuple[int, float, Any]]]:
    """Every summary value of the run, by tag: (step, wall time, Summary.Value), in file order."""
    found: dict[str, list[tuple[int, float, Any]]] = {}
    for name in sorted(os.listdir(directory)):
        if "tfevents" in name:
            for event in LegacyEventFileLoader(os.path.join(directory, name)).Load():
                for value in event.summary.value:
                    found.setdefault(value.tag, []).append((event.step, event.wall_time, value))
    return found


def decoded(encoded: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(encoded)) as picture:
        return np.asarray(picture)


def image_fields(value: Any) -> tuple[int, int, int]:
    return value.image.height, value.image.width, value.image.colorspace


def gif_frames(encoded: bytes) -> tuple[np.ndarray, list[int]]:
    with Image.open(io.BytesIO(encoded)) as animation:
        assert animation.format == "GIF" and animation.info["loop"] == 0
        frames, durations = [], []
        for index in range(animation.n_frames):
            animation.seek(index)
            frames.append(np.asarray(animation.convert("RGB")))
            durations.append(animation.info["duration"])
    return np.stack(frames), durations


def same_tags_and_steps(ours: str, theirs: str, kind: str) -> dict[str, list[tuple[int, float]]]:
    """The tags of `kind` and each one's (step, wall time), equal on both sides; returned."""
    mine, reference = accumulate(ours), accumulate(theirs)
    assert sorted(mine.Tags()[kind]) == sorted(reference.Tags()[kind])
    getter = {ea.IMAGES: "Images", ea.AUDIO: "Audio", ea.HISTOGRAMS: "Histograms", ea.TENSORS: "Tensors"}[kind]
    steps = {}
    for tag in reference.Tags()[kind]:
        pairs = [(e.step, e.wall_time) for e in getattr(mine, getter)(tag)]
        assert pairs == [(e.step, e.wall_time) for e in getattr(reference, getter)(tag)], tag
        steps[tag] = pairs
    assert steps
    return steps


# -- add_histogram_raw -----------------------------------------------------------------------------


def test_add_histogram_raw_reads_back_as_tensorboardxs(runtime_dir, tmp_path):
    values = np.random.default_rng(1).normal(size=1000)
    counts, edges = np.histogram(values, bins=20)

    def calls(w):
        for step in range(3):
            w.add_histogram_raw(
                "raw/hist",
                min=values.min(),
                max=values.max() + step,
                num=len(values),
                sum=values.sum(),
                sum_squares=values.dot(values),
                bucket_limits=edges[1:].tolist(),
                bucket_counts=(counts * (step + 1)).tolist(),
                global_step=step,
                walltime=WALLTIME + step,
            )
        w.add_histogram_raw("raw/arrays", 0, 3, 6, 9, 15, np.array([1.0, 2.0, 3.0]), np.array([1, 2, 3]), 5, WALLTIME)

    ours, theirs = write_both(tmp_path, calls)
    same_tags_and_steps(ours, theirs, ea.HISTOGRAMS)
    mine, reference = accumulate(ours), accumulate(theirs)
    for tag in ("raw/hist", "raw/arrays"):
        for a, b in zip(mine.Histograms(tag), reference.Histograms(tag), strict=True):
            for field in HISTOGRAM_FIELDS:
                assert getattr(a.histogram_value, field) == getattr(b.histogram_value, field), (tag, field)


# -- add_image_with_boxes --------------------------------------------------------------------------


def test_add_image_with_boxes_reads_back_as_tensorboardxs(runtime_dir, tmp_path):
    image = np.random.default_rng(2).random((3, 32, 48)).astype(np.float32)
    boxes = np.array([[2, 3, 20, 18], [10.5, 1.5, 45.5, 28.5], [30, 25, 5, 8]])
    labels = ["cat", "dog", "x"]

    def calls(w):
        w.add_image_with_boxes("plain", image, boxes, 0, WALLTIME)
        w.add_image_with_boxes("labelled", image, boxes, 1, WALLTIME, labels=labels)
        w.add_image_with_boxes("rescaled", image.transpose(1, 2, 0), boxes, 2, WALLTIME, "HWC", rescale=1.5)

    ours, theirs = write_both(tmp_path, calls)
    same_tags_and_steps(ours, theirs, ea.IMAGES)
    mine, reference = raw_values(ours), raw_values(theirs)
    for tag in ("plain", "labelled", "rescaled"):
        ((_, _, a),) = mine[tag]
        ((_, _, b),) = reference[tag]
        assert image_fields(a) == image_fields(b)
        pixels, their_pixels = decoded(a.image.encoded_image_string), decoded(b.image.encoded_image_string)
        assert pixels.shape == their_pixels.shape == ((48, 72, 3) if tag == "rescaled" else (32, 48, 3))
        if tag == "labelled":
            keep = outside_labels(pixels.shape, boxes, labels)
            np.testing.assert_array_equal(pixels[keep], their_pixels[keep])
        else:
            np.testing.assert_array_equal(pixels, their_pixels, err_msg=tag)


# -- add_figure ------------------------------------------------------------------------------------


def test_add_figure_reads_back_as_tensorboardxs(runtime_dir, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def figure(seed):
        made = plt.figure(figsize=(3, 2), dpi=40)
        plt.plot(np.random.default_rng(seed).random(8))
        return made

    def calls(w):
        w.add_figure("one", figure(1), 0, walltime=WALLTIME)
        w.add_figure("two", [figure(2), figure(3)], 1, walltime=WALLTIME)

    try:
        ours, theirs = write_both(tmp_path, calls)
    finally:
        plt.close("all")
    same_tags_and_steps(ours, theirs, ea.IMAGES)
    mine, reference = accumulate(ours), accumulate(theirs)
    for tag, size in (("one", (80, 120, 3)), ("two", (80, 240, 3))):
        ((a,), (b,)) = mine.Images(tag), reference.Images(tag)
        assert (a.width, a.height) == (b.width, b.height)
        pixels = decoded(a.encoded_image_string)
        assert pixels.shape == size
        np.testing.assert_array_equal(pixels, decoded(b.encoded_image_string))


# -- add_video -------------------------------------------------------------------------------------


def test_add_video_reads_back_as_tensorboardxs(runtime_dir, tmp_path):
    rng = np.random.default_rng(3)
    few_colours = rng.choice([0.0, 0.5, 1.0], size=(3, 4, 3, 16, 16)).astype(np.float32)
    gray = rng.integers(0, 256, (1, 5, 1, 12, 10), dtype=np.uint8)
    many_colours = rng.random((2, 3, 3, 16, 16))

    def calls(w):
        w.add_video("few colours", few_colours, 0, fps=4, walltime=WALLTIME)
        w.add_video("gray", gray, 1, fps=10, walltime=WALLTIME)
        w.add_video("many", many_colours.transpose(0, 1, 3, 4, 2), 2, fps=2, walltime=WALLTIME, dataformats="NTHWC")

    ours, theirs = write_both(tmp_path, calls)
    same_tags_and_steps(ours, theirs, ea.IMAGES)
    mine, reference = raw_values(ours), raw_values(theirs)
    assert sorted(mine) == ["few_colours", "gray", "many"]  # video tags are cleaned, as tensorboardX's
    for tag, fps in (("few_colours", 4), ("gray", 10), ("many", 2)):
        ((_, _, a),) = mine[tag]
        ((_, _, b),) = reference[tag]
        assert image_fields(a) == image_fields(b)
        frames, durations = gif_frames(a.image.encoded_image_string)
        their_frames, their_durations = gif_frames(b.image.encoded_image_string)
        assert durations == [1000 // fps] * len(frames)
        assert their_durations == durations[: len(their_frames)]
        assert len(their_frames) in (len(frames), len(frames) - 1)  # moviepy may drop the last frame
        if tag == "many":  # 512 colours a frame: reduced to 256, as tensorboardX's are
            assert np.abs(frames[: len(their_frames)].astype(int) - their_frames).mean() < 12
        else:
            np.testing.assert_array_equal(frames[: len(their_frames)], their_frames)
    assert len(gif_frames(mine["few_colours"][0][2].image.encoded_image_string)[0]) == 4
    assert len(gif_frames(mine["gray"][0][2].image.encoded_image_string)[0]) == 5


# -- add_audio -------------------------------------------------------------------------------------


def test_add_audio_reads_back_as_tensorboardxs(runtime_dir, tmp_path):
    pytest.importorskip("soundfile")  # tensorboardX's audio() needs it
    rng = np.random.default_rng(4)
    mono = np.sin(np.arange(800) / 5.0).astype(np.float32)
    stereo = rng.uniform(-1.5, 1.5, (800, 2))

    def calls(w):
        w.add_audio("mono", mono, 0, sample_rate=8000, walltime=WALLTIME)
        w.add_audio("stereo", stereo, 1, sample_rate=16000, walltime=WALLTIME)

    ours, theirs = write_both(tmp_path, calls)
    same_tags_and_steps(ours, theirs, ea.AUDIO)
    mine, reference = raw_values(ours), raw_values(theirs)
    for tag in ("mono", "stereo"):
        ((_, _, a),) = mine[tag]
        ((_, _, b),) = reference[tag]
        assert a.audio == b.audio  # every field, the WAV's bytes included


# -- add_tensor ------------------------------------------------------------------------------------


def _tensor_calls(torch):
    def calls(w):
        w.add_tensor("Activation", torch.arange(12.0).reshape(3, 4) / 7, 0, walltime=WALLTIME)
        w.add_tensor("Activation", torch.arange(12.0).reshape(3, 4) / 3, 1, walltime=WALLTIME + 1)
        w.add_tensor("counts", torch.tensor([[1, 2], [3, 4]], dtype=torch.int32), 0, walltime=WALLTIME)

    return calls


def test_add_tensor_reads_back_as_torchs_values(runtime_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    ours, theirs = write_both(tmp_path, _tensor_calls(torch), reference=TorchWriter)
    same_tags_and_steps(ours, theirs, ea.TENSORS)
    mine, reference = accumulate(ours), accumulate(theirs)
    for tag in ("Activation", "counts"):
        for a, b in zip(mine.Tensors(tag), reference.Tensors(tag), strict=True):
            ours_array, their_array = tensor_util.make_ndarray(a.tensor_proto), tensor_util.make_ndarray(b.tensor_proto)
            assert ours_array.dtype == their_array.dtype and ours_array.shape == their_array.shape
            np.testing.assert_array_equal(ours_array, their_array)
        assert mine.SummaryMetadata(tag).plugin_data.plugin_name == "tensor"


def test_the_seeds_add_tensor_of_a_numpy_activation_reads_back(runtime_dir, tmp_path):
    activation = np.random.default_rng(5).normal(size=(1, 10)).astype(np.float32)
    writer = SummaryWriter(str(tmp_path))
    for epoch in range(3):
        writer.add_tensor("Activation", activation * epoch, epoch)
    assert writer.close(timeout=60)
    events = accumulate(str(tmp_path)).Tensors("Activation")
    assert [e.step for e in events] == [0, 1, 2]
    for epoch, event in enumerate(events):
        np.testing.assert_array_equal(tensor_util.make_ndarray(event.tensor_proto), activation * epoch)


def _python_provider_tensors(logdir: str) -> dict[str, dict[str, list]]:
    """What TensorBoard's Python data provider (load_fast=false) serves for the 'tensor' plugin."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"tensor": 0})
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    return provider.read_tensors(context.RequestContext(), experiment_id="", plugin_name="tensor", downsample=1000)


@pytest.fixture
def data_server(tmp_path_factory) -> Iterator[Any]:
    """A function starting TensorBoard's Rust data server on a log directory and returning what it
    serves for the 'tensor' plugin; every server started is stopped at the end."""
    server_package = pytest.importorskip("tensorboard_data_server")
    grpc = pytest.importorskip("grpc")
    from tensorboard import context
    from tensorboard.data import grpc_provider

    processes: list[subprocess.Popen] = []

    def read(logdir: str) -> dict[str, dict[str, list]]:
        """The server's 'tensor' series, once it has read the run's last record (a scalar 'loaded')."""
        port_file = str(tmp_path_factory.mktemp("data-server") / "port")
        process = subprocess.Popen(
            [
                server_package.server_binary(),
                f"--logdir={logdir}",
                "--reload=once",
                "--port=0",
                f"--port-file={port_file}",
                "--samples-per-plugin=tensor=all",
                "--die-after-stdin",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)

        def port() -> int | None:
            assert process.poll() is None, "the data server exited"
            if os.path.exists(port_file):
                with open(port_file) as f:
                    text = f.read()
                return int(text) if text.endswith("\n") else None
            return None

        address = f"localhost:{wait_for(port, timeout_s=60, message='the data server to listen')}"
        provider = grpc_provider.GrpcDataProvider(address, grpc_provider.make_stub(grpc.insecure_channel(address)))
        ctx = context.RequestContext()
        wait_for(
            lambda: "loaded" in provider.list_scalars(ctx, experiment_id="", plugin_name="scalars").get(".", {}),
            timeout_s=60,
            message="the data server to load the run",
        )
        return provider.read_tensors(ctx, experiment_id="", plugin_name="tensor", downsample=1000)

    yield read
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()  # --die-after-stdin
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_both_tensorboard_loaders_keep_add_tensors_series_where_torchs_is_dropped(runtime_dir, tmp_path, data_server):
    torch = pytest.importorskip("torch")
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    tensors = _tensor_calls(torch)

    def calls(w):
        tensors(w)
        w.add_scalar("loaded", 1.0, 9, walltime=WALLTIME)  # the run's last record: the data server read it all

    ours, theirs = write_both(tmp_path, calls, reference=TorchWriter)
    expected = {"Activation": [0, 1], "counts": [0]}
    for served in (_python_provider_tensors(ours), data_server(ours)):
        assert {tag: [datum.step for datum in data] for tag, data in served["."].items()} == expected
        (counts,) = served["."]["counts"]
        assert counts.numpy.dtype == np.int32 and counts.numpy.tolist() == [[1, 2], [3, 4]]
        last = (torch.arange(12.0).reshape(3, 4) / 3).numpy()
        np.testing.assert_array_equal(served["."]["Activation"][1].numpy, last)
    # torch.utils.tensorboard's add_tensor sets no data class: both data providers leave it out.
    assert _python_provider_tensors(theirs) == {}
    assert data_server(theirs) == {}


# -- the training process ------------------------------------------------------------------------


def test_no_media_call_imports_protobuf_or_the_daemon_into_the_caller(runtime_dir, tmp_path):
    script = f"""
import sys
import numpy as np
from logger_client import SummaryWriter
w = SummaryWriter({str(tmp_path)!r})
w.add_histogram_raw("h", 0, 1, 2, 1, 1, [0.5, 1.0], [1, 1], 0)
w.add_image_with_boxes("b", np.zeros((3, 8, 8)), np.array([[1, 1, 5, 5]]), 0, labels=["x"])
w.add_video("v", np.zeros((1, 2, 3, 4, 4)), 0)
w.add_audio("a", np.zeros(100), 0)
w.add_tensor("t", np.arange(3), 0)
assert w.close(timeout=60), w.stats()
assert w.stats()["records_written"] == 5, w.stats()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("google", "logger_daemon", "matplotlib", "torch", "PIL"))
assert not loaded, loaded
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
    assert sorted(accumulate(str(tmp_path)).Tags()[ea.IMAGES]) == ["b", "v"]
