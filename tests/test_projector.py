"""Embeddings for TensorBoard's projector, in process: the client's checks and record, the daemon's
file formats against tensorboardX's own functions, and the whole path (writer -> wire -> pipeline
-> files) against tensorboardX's `add_embedding`, byte for byte where tensorboardX is deterministic.

`run_through_pipeline` (also used by the graph tests) sends what a writer queued on an
`InMemoryTransport` through the protocol's encoder and decoder to a daemon `Pipeline`, on the
test's thread: no daemon, no socket.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest
import tensorboardX
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.projector import projector_config_pb2
from tensorboardX import embedding as tbx_embedding

from logger_client import SummaryWriter, protocol
from logger_client._writer_projector import EMBEDDING_RECORD_TAG
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import MessageKind, RecordKind
from logger_daemon.history import CHECKPOINT_PREFIX, MARK_PREFIX
from logger_daemon.intake import Work
from logger_daemon.pipeline import Pipeline
from logger_daemon.projector import embedding_subdir, metadata_tsv, pbtxt_entry, tensors_tsv, write_embedding
from logger_daemon.sprite import sprite_pixels
from logger_daemon.stats import Stats

CLIENT = b"client"


# -- the whole path, in process ------------------------------------------------------------------


class PipelineRun:
    """What a pipeline cycle did: drops by reason (its stats) and refusals charged to the client."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.refused: Counter[str] = Counter()
        self.pipeline = Pipeline(self.stats, fsync_interval_s=30.0, on_written=self._on_written)

    def _on_written(self, acks: dict[bytes, int], drops: dict[bytes, Counter], not_uploaded: dict[bytes, int]) -> None:
        for counts in drops.values():
            self.refused.update(
                {str(reason.value if hasattr(reason, "value") else reason): n for reason, n in counts.items()}
            )

    def written(self) -> int:
        return int(self.stats.snapshot()["records_written"])

    def dropped(self) -> dict[str, int]:
        return dict(self.stats.snapshot()["records_dropped"])


def run_through_pipeline(transport: InMemoryTransport, run: PipelineRun | None = None) -> PipelineRun:
    """Everything `transport` holds, as one RECORDS message through the wire, written by a pipeline."""
    run = run or PipelineRun()
    records: list[list[Any]] = []
    arrays: list[np.ndarray] = []
    for item in list(transport.queue):
        record = list(item)
        value = record[protocol.VALUE]
        if isinstance(value, np.ndarray):
            arrays.append(value)
            record[protocol.VALUE] = len(arrays) - 1
        elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            indices = {}
            for role, array in value.items():
                arrays.append(array)
                indices[role] = len(arrays) - 1
            record[protocol.VALUE] = indices
        records.append(record)
    transport.queue.clear()
    frames = protocol.encode(MessageKind.RECORDS, {"records": records}, arrays)
    message = protocol.decode([bytes(memoryview(frame)) for frame in frames])
    run.pipeline.process([Work.of_records(CLIENT, 1, message.header["records"], message.arrays)])
    return run


def files_under(root: str) -> dict[str, bytes]:
    """Every file under `root` but event files, by path relative to `root`."""
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            if "tfevents" not in name:
                path = os.path.join(directory, name)
                with open(path, "rb") as file:
                    found[os.path.relpath(path, root)] = file.read()
    return found


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        return np.asarray(picture)


def parse_config(data: bytes) -> projector_config_pb2.ProjectorConfig:
    return text_format.Parse(data.decode("utf-8"), projector_config_pb2.ProjectorConfig())


def assert_same_projector_files(ours: str, theirs: str) -> None:
    """Our files equal tensorboardX's: the same paths; text files byte for byte; sprites pixel for
    pixel where tensorboardX's are defined (its padding below the thumbnails is uninitialised
    memory; ours is black)."""
    mine, reference = files_under(ours), files_under(theirs)
    assert sorted(mine) == sorted(reference)
    for path, data in reference.items():
        if path.endswith("sprite.png"):
            ours_pixels, their_pixels = decode_png(mine[path]), decode_png(data)
            assert ours_pixels.shape == their_pixels.shape, path
            config = parse_config(reference["projector_config.pbtxt"])
            (info,) = [e for e in config.embeddings if e.sprite.image_path == path]
            rows = _sprite_rows(len(_tsv_lines(reference[info.tensor_path])), info.sprite.single_image_dim[1])
            np.testing.assert_array_equal(ours_pixels[:rows], their_pixels[:rows], err_msg=path)
            assert not ours_pixels[rows:].any(), f"{path}: the padding is not black"
        else:
            assert mine[path] == data, f"{path}: {mine[path][:200]!r} != {data[:200]!r}"


def _tsv_lines(data: bytes) -> list[bytes]:
    return data.splitlines()


def _sprite_rows(count: int, side: int) -> int:
    columns = min(count, int(np.ceil((count * side * side) ** 0.5 / side)))
    return int(np.ceil(count / columns)) * side


@pytest.fixture(autouse=True)
def _quiet():
    # tensorboardX prints a warning when an embedding directory exists, and warns on NaN.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _calls(writer: Any) -> None:
    """The same add_embedding calls for any writer: data built afresh from fixed seeds."""
    rng = _rng(1)
    labels = [f"point {i}" for i in range(16)]
    writer.add_embedding(
        rng.standard_normal((16, 5)).astype(np.float32), metadata=labels, label_img=rng.random((16, 3, 8, 8))
    )
    writer.add_embedding(
        rng.standard_normal((10, 3)),
        metadata=[[i, "even" if i % 2 == 0 else "odd", f"ü{i}"] for i in range(10)],
        metadata_header=["index", "parity", "name"],
        global_step=7,
        tag="features/layer%1",
    )
    writer.add_embedding(rng.integers(-5, 5, (4, 2)), metadata=list(range(4)), global_step=123456, tag="ints")
    gray = (rng.random((5, 1, 6, 6)) * 255).astype(np.uint8)
    writer.add_embedding(rng.standard_normal((5, 4)).astype(np.float16), label_img=gray, global_step=2, tag="gray")
    special = np.array([[np.nan, np.inf], [-np.inf, -0.0], [1e-300, 1e300]])
    writer.add_embedding(special, global_step=7, tag="features/layer%1")  # the same step and tag again


def test_the_files_equal_tensorboardx_add_embedding(tmp_path):
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    transport = InMemoryTransport()
    writer = SummaryWriter(ours, transport=transport)
    _calls(writer)
    run = run_through_pipeline(transport)
    assert run.written() == 5 and run.dropped() == {}
    reference = tensorboardX.SummaryWriter(theirs)
    _calls(reference)
    reference.close()
    assert_same_projector_files(ours, theirs)
    config = parse_config(files_under(ours)["projector_config.pbtxt"])
    assert [e.tensor_name for e in config.embeddings] == [
        "default:00000",
        "features/layer%1:00007",
        "ints:123456",
        "gray:00002",
        "features/layer%1:00007",
    ]
    assert config.embeddings[1].tensor_path == "00007/features%2flayer%251/tensors.tsv"
    assert list(config.embeddings[0].sprite.single_image_dim) == [8, 8]


def test_an_embedding_writes_no_event_and_its_record_keeps_the_tag_in_its_options(tmp_path):
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    mat = np.arange(6, dtype=np.float32).reshape(3, 2)
    writer.add_embedding(mat, metadata=["a", 1, 2.5], global_step=4, tag="emb")
    mat[:] = -1  # the record holds its own copy
    (record,) = transport.records()
    assert record.kind == RecordKind.EMBEDDING and record.tag == EMBEDDING_RECORD_TAG and record.step == 0
    assert record.options == {"tag": "emb", "global_step": 4, "metadata": ["a", "1", "2.5"], "metadata_header": None}
    np.testing.assert_array_equal(record.value["mat"], np.arange(6, dtype=np.float32).reshape(3, 2))
    run_through_pipeline(transport)
    for name in os.listdir(tmp_path):
        if "tfevents" in name:  # the daemon opened the run's event file: its header, marks and checkpoint only
            events = list(EventFileLoader(str(tmp_path / name)).Load())
            own = (MARK_PREFIX, CHECKPOINT_PREFIX)
            kept = [event for event in events if not event.log_message.message.startswith(own)]
            assert [event.WhichOneof("what") for event in kept] == ["file_version"]
    assert sorted(os.listdir(tmp_path / "00004" / "emb")) == ["metadata.tsv", "tensors.tsv"]


def test_embeddings_at_older_steps_or_beside_summary_tags_are_all_written(tmp_path):
    """An embedding's step is a directory name, not an event step: no step order applies to it."""
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    writer.add_text("emb", "a summary under the same tag", global_step=100)
    for step in (9, 3, 5):
        writer.add_embedding(np.ones((2, 2)), global_step=step, tag="emb")
    run = run_through_pipeline(transport)
    assert run.dropped() == {} and run.written() == 4
    assert sorted(name for name in os.listdir(tmp_path) if name.isdigit()) == ["00003", "00005", "00009"]
    config = parse_config((tmp_path / "projector_config.pbtxt").read_bytes())
    assert [e.tensor_name for e in config.embeddings] == ["emb:00009", "emb:00003", "emb:00005"]


# -- the formats, against tensorboardX's functions -----------------------------------------------


@pytest.mark.parametrize(
    "matrix",
    [
        np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3) / 3,
        np.array([[0.1, 1e-7, 123456789.123], [np.nan, np.inf, -np.inf]]),
        np.array([[1, -2], [3, 4]], dtype=np.int64),
        np.array([[True, False]]),
        np.array([[0.1, 65504]], dtype=np.float16),
        np.arange(6, dtype=np.uint8).reshape(2, 3),
        np.full((3, 1), -0.0),
        np.ones((1, 4), np.float32) / 7,
        np.zeros((2, 0)),
    ],
)
def test_tensors_tsv_is_tensorboardx_make_mat(tmp_path, matrix):
    tbx_embedding.make_mat(matrix, str(tmp_path))
    assert tensors_tsv(matrix) == (tmp_path / "tensors.tsv").read_bytes()


@pytest.mark.parametrize(
    ("metadata", "header"),
    [
        (["a", "b c", "ünïcödé", ""], None),
        ([1, 2.5, None, True], None),
        ([["a", "1"], ["b", "2"]], ["name", "count"]),
    ],
)
def test_metadata_tsv_is_tensorboardx_make_tsv(tmp_path, metadata, header):
    tbx_embedding.make_tsv(metadata, str(tmp_path), metadata_header=header)
    as_sent = [[str(x) for x in row] for row in metadata] if header else [str(x) for x in metadata]
    assert metadata_tsv(as_sent, header) == (tmp_path / "metadata.tsv").read_bytes()


@pytest.mark.parametrize("with_metadata", [True, False])
@pytest.mark.parametrize("with_sprite", [True, False])
@pytest.mark.parametrize(("tag", "step"), [("default", 0), ("a/b%c d", 42), ("résumé", 123456), ("neg", -3)])
def test_the_pbtxt_entry_is_tensorboardx_append_pbtxt(tmp_path, tag, step, with_metadata, with_sprite):
    label_img = np.zeros((2, 3, 5, 5)) if with_sprite else None
    subdir = f"{str(step).zfill(5)}/{tensorboardX.SummaryWriter._encode(tag)}"
    assert embedding_subdir(step, tag) == subdir
    tbx_embedding.append_pbtxt([1] if with_metadata else None, label_img, str(tmp_path), subdir, step, tag)
    entry = pbtxt_entry(tag, step, with_metadata, (5, 5) if with_sprite else None)
    assert entry == (tmp_path / "projector_config.pbtxt").read_bytes()
    parse_config(entry)


def test_quotes_and_backslashes_of_a_tag_are_escaped_so_the_config_still_parses(tmp_path):
    """tensorboardX writes them raw: its config then fails to parse, losing every embedding."""
    tag = 'say "hi"\\n\ttab'
    transport = InMemoryTransport()
    SummaryWriter(str(tmp_path), transport=transport).add_embedding(np.ones((1, 1)), tag=tag)
    run_through_pipeline(transport)
    (info,) = parse_config((tmp_path / "projector_config.pbtxt").read_bytes()).embeddings
    assert info.tensor_name == tag + ":00000"
    assert os.path.isfile(tmp_path / info.tensor_path)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((16, 3, 8, 8), np.float32), ((10, 1, 5, 5), np.float64), ((7, 3, 4, 4), np.uint8), ((1, 3, 3, 3), np.float32)],
)
def test_the_sprite_is_tensorboardx_make_sprite(tmp_path, shape, dtype):
    rng = _rng(2)
    images = (rng.random(shape) * (300 if dtype == np.uint8 else 1.2) - 0.1).clip(0, 255).astype(dtype)
    tbx_embedding.make_sprite(images, str(tmp_path))
    with Image.open(tmp_path / "sprite.png") as picture:
        theirs = np.asarray(picture.convert("RGB"))
    ours = sprite_pixels(images)
    assert ours.shape == theirs.shape
    rows = _sprite_rows(shape[0], shape[2])
    np.testing.assert_array_equal(ours[:rows], theirs[:rows])
    assert not ours[rows:].any()


def test_the_sprite_is_scaled_in_chunks_the_same_as_at_once(monkeypatch):
    images = _rng(3).random((50, 3, 4, 4))
    whole = sprite_pixels(images)
    monkeypatch.setattr("logger_daemon.sprite._CHUNK_VALUES", 100)
    np.testing.assert_array_equal(sprite_pixels(images), whole)


# -- the daemon's side: refusals and I/O errors ------------------------------------------------------


def _embedding_record(tag: str = "t", options: dict[str, Any] | None = None, **arrays: np.ndarray) -> tuple:
    options = {"tag": tag, "global_step": 0, "metadata": None, "metadata_header": None, **(options or {})}
    value = arrays or {"mat": np.ones((2, 2))}
    return (RecordKind.EMBEDDING, 1, "", EMBEDDING_RECORD_TAG, 0, 1.0, value, options)


def _transport_with(tmp_path, *records: tuple) -> InMemoryTransport:
    transport = InMemoryTransport()
    SummaryWriter(str(tmp_path), transport=transport)
    transport.queue.extend(records)
    return transport


def test_a_file_that_cannot_be_written_counts_as_io_error(tmp_path, caplog):
    (tmp_path / "00000").write_text("a file where the step's directory goes")
    transport = _transport_with(tmp_path, _embedding_record("blocked"), _embedding_record("x", {"global_step": 1}))
    with caplog.at_level(logging.ERROR, logger="logger_daemon"):
        run = run_through_pipeline(transport)
    assert run.dropped() == {"io_error": 1} and run.refused == {"io_error": 1} and run.written() == 1
    assert "embedding 'blocked' at step 0" in caplog.text
    assert (tmp_path / "00001" / "x" / "tensors.tsv").is_file()


@pytest.mark.parametrize(
    "record",
    [
        _embedding_record(options={"tag": None}),
        _embedding_record(options={"global_step": "1"}),
        _embedding_record(options={"metadata": ["only one"]}),
        _embedding_record(options={"metadata": [1, 2]}),
        _embedding_record(mat=np.ones(3)),
        _embedding_record(other=np.ones((2, 2))),
        _embedding_record(mat=np.ones((2, 2)), label_img=np.ones((2, 3, 4, 5))),
        _embedding_record(mat=np.ones((2, 2)), label_img=np.ones((3, 3, 4, 4))),
        _embedding_record(".."),
    ],
)
def test_a_value_the_daemon_refuses_counts_as_encode_error_and_writes_nothing(tmp_path, record):
    run = run_through_pipeline(_transport_with(tmp_path, record))
    assert run.dropped() == {"encode_error": 1}
    assert files_under(str(tmp_path)) == {}


def test_write_embedding_makes_every_file_before_writing_any(tmp_path):
    with pytest.raises(ValueError):
        write_embedding(str(tmp_path), "t", 0, np.ones((2, 2)), ["a", "b"], None, np.ones((2, 4, 3, 3)))
    assert os.listdir(tmp_path) == []


# -- the client's checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"mat": np.ones(3)}, ValueError, "mat must be 2-D"),
        ({"mat": np.ones((0, 3))}, ValueError, "no rows"),
        ({"mat": "text"}, TypeError, "mat"),
        ({"metadata": ["a"]}, ValueError, "metadata has 1 labels for the 2 rows"),
        ({"metadata": "ab"}, TypeError, "metadata must be a list"),
        ({"metadata": ["a", "\ud800"]}, ValueError, "metadata is not encodable"),
        ({"metadata": [["a", 1], ["b"]], "metadata_header": ["x", "y"]}, ValueError, "metadata[1] has 1 columns"),
        ({"metadata": [["a"]], "metadata_header": ["x"]}, ValueError, "metadata has 1 rows"),
        ({"label_img": np.ones((2, 3, 4))}, ValueError, "label_img must be N x C x H x W"),
        ({"label_img": np.ones((3, 3, 4, 4))}, ValueError, "label_img has 3 images"),
        ({"label_img": np.ones((2, 3, 4, 5))}, ValueError, "square"),
        ({"label_img": np.ones((2, 4, 4, 4))}, ValueError, "1 or 3 channels"),
        ({"mat": np.ones((4, 2)), "label_img": "4 x 3 x 4097 x 4097"}, ValueError, "sprite of 8194"),
        ({"tag": 3}, TypeError, "tag must be a str"),
        ({"tag": ".."}, ValueError, "tag '..'"),
        ({"tag": "x" * 300}, ValueError, "cannot name the embedding's directory"),
        ({"global_step": "one"}, TypeError, "global_step"),
    ],
)
def test_bad_arguments_raise_at_the_call_and_queue_nothing(tmp_path, kwargs, error, words):
    if isinstance(kwargs.get("label_img"), str):  # a huge shape, refused before its copy is made
        shape = tuple(int(size) for size in kwargs["label_img"].split(" x "))
        kwargs["label_img"] = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape, (0,) * 4)
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path), transport=transport)
    arguments = {"mat": np.ones((2, 3)), **kwargs}
    with pytest.raises(error) as raised:
        writer.add_embedding(**arguments)
    assert words in str(raised.value)
    assert transport.records() == []


def test_torch_tensors_and_label_lists_are_taken_as_tensorboardx_takes_them(tmp_path):
    torch = pytest.importorskip("torch")
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    mat, images = torch.randn(9, 4, generator=torch.Generator().manual_seed(0)), torch.rand(9, 1, 3, 3)
    labels = np.arange(9)  # numpy labels: str() of each numpy integer
    transport = InMemoryTransport()
    SummaryWriter(ours, transport=transport).add_embedding(mat, metadata=labels, label_img=images, global_step=1)
    run_through_pipeline(transport)
    reference = tensorboardX.SummaryWriter(theirs)
    reference.add_embedding(mat, metadata=labels, label_img=images, global_step=1)
    reference.close()
    assert_same_projector_files(ours, theirs)
