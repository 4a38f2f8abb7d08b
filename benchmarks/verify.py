"""Reading back what a benchmark logged: every record on disk, counted by kind, so that a fast
figure can never come from lost data.

Two readers:

* `count_logdir` - a framed-record reader of its own: checks both masked CRC-32C of every record
  (so a torn or corrupt file is reported, as TensorBoard would stop reading there) and parses each
  Event with TensorBoard's own protos. About 2 us a record, so 1 000 000 scalars read back in
  seconds.
* `count_logdir_tensorboard` - TensorBoard's `EventFileLoader`, with its data_compat and
  dataclass_compat migrations: what TensorBoard itself would load. About 140 us a record, so the
  suite uses it as a cross-check on small outputs (all of them in `--quick`).

Both walk every event file in the log directory tree (add_scalars writes one run per key) and
classify each summary value as scalar, histogram, image (add_video's GIFs and add_figure's
renderings too), text, pr_curve or audio.

Embeddings are files, not events (`count_projector`): every `embeddings` entry of every
`projector_config.pbtxt` in the tree, parsed with TensorBoard's `ProjectorConfig` proto, counts
once its `tensors.tsv` and `metadata.tsv` are there with the rows logged; the cross-check reads
the tensors with the projector plugin's own TSV reader.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

KINDS = ("scalar", "histogram", "image", "text", "pr_curve", "audio", "embedding")
_PLUGIN_KINDS = {
    "scalars": "scalar",
    "histograms": "histogram",
    "images": "image",
    "text": "text",
    "pr_curves": "pr_curve",
    "audio": "audio",
}
_PROJECTOR_CONFIG = "projector_config.pbtxt"
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")


def event_files(logdir: str) -> list[str]:
    """Every `*tfevents*` file under `logdir`, sorted."""
    found: list[str] = []
    for directory, _, names in os.walk(logdir):
        found.extend(os.path.join(directory, name) for name in names if "tfevents" in name)
    return sorted(found)


@dataclass
class Counts:
    """What a log directory holds: summary values by kind and by tag, files, and any damage."""

    by_kind: Counter = field(default_factory=Counter)
    by_tag: Counter = field(default_factory=Counter)
    files: int = 0
    records: int = 0
    damaged: list[str] = field(default_factory=list)
    #: Embeddings whose projector files are missing or short.
    incomplete: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_kind": {kind: self.by_kind.get(kind, 0) for kind in sorted(set(KINDS) | set(self.by_kind))},
            "files": self.files,
            "records": self.records,
            "damaged": self.damaged,
            "incomplete": self.incomplete,
            "tags": len(self.by_tag),
        }


def _records(path: str, damaged: list[str]) -> Iterator[bytes]:
    """The data of each TFRecord in `path`; stops (and notes it) at the first torn or corrupt one."""
    from crc32c import crc32c

    def masked(data: bytes) -> int:
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    with open(path, "rb") as f:
        data = f.read()
    offset, size = 0, len(data)
    header, footer = _HEADER.unpack_from, _CRC.unpack_from
    while offset < size:
        if offset + 12 > size:
            damaged.append(f"{path}: torn header at byte {offset}")
            return
        length, length_crc = header(data, offset)
        if masked(data[offset : offset + 8]) != length_crc:
            damaged.append(f"{path}: bad length CRC at byte {offset}")
            return
        start = offset + 12
        end = start + length
        if end + 4 > size:
            damaged.append(f"{path}: torn record at byte {offset}")
            return
        payload = data[start:end]
        if masked(payload) != footer(data, end)[0]:
            damaged.append(f"{path}: bad data CRC at byte {offset}")
            return
        yield payload
        offset = end + 4


_DIRECT_KINDS = {"simple_value": "scalar", "histo": "histogram", "image": "image", "audio": "audio"}


def _classify(value: Any, plugins: dict[str, str]) -> str:
    """The kind of one Summary.Value; `plugins` remembers each tag's plugin from its first metadata."""
    which = value.WhichOneof("value")
    kind = _DIRECT_KINDS.get(which)
    if kind is not None:
        return kind
    tag = value.tag
    if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
        plugins.setdefault(tag, value.metadata.plugin_data.plugin_name)
    plugin = plugins.get(tag, "")
    return _PLUGIN_KINDS.get(plugin, f"{which or 'empty'}:{plugin or '?'}")


def _lines(path: str) -> tuple[int, int]:
    """(lines, tabs) of a text file."""
    with open(path, "rb") as f:
        data = f.read()
    return data.count(b"\n"), data.count(b"\t")


def _tensorboard_rows(path: str) -> tuple[int, int]:
    """(rows, columns) of a tensors.tsv as TensorBoard's projector plugin reads it."""
    from tensorboard.plugins.projector.projector_plugin import _read_tensor_tsv_file

    tensor = _read_tensor_tsv_file(path)
    return (tensor.shape[0], tensor.shape[1]) if tensor.ndim == 2 else (0, 0)


def count_projector(logdir: str, counts: Counts, rows: int | None, tensorboard_reader: bool = False) -> None:
    """Adds to `counts` the embeddings under `logdir` whose files are all there (see the module's
    docstring); each entry that is not, and any tensors.tsv no entry names, goes to `incomplete`.
    `rows`: the data points each embedding must have (None: any, but the same in both files)."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    named: set[str] = set()
    on_disk: set[str] = set()
    for directory, _, names in os.walk(logdir):
        on_disk.update(os.path.realpath(os.path.join(directory, n)) for n in names if n == "tensors.tsv")
        if _PROJECTOR_CONFIG not in names:
            continue
        config = ProjectorConfig()
        with open(os.path.join(directory, _PROJECTOR_CONFIG), encoding="utf-8") as f:
            text_format.Parse(f.read(), config)
        for embedding in config.embeddings:
            name = f"{os.path.relpath(directory, logdir)}: {embedding.tensor_name}"
            tensors = os.path.realpath(os.path.join(directory, embedding.tensor_path))
            metadata = os.path.realpath(os.path.join(directory, embedding.metadata_path))
            named.add(tensors)
            if not os.path.isfile(tensors) or not embedding.metadata_path or not os.path.isfile(metadata):
                counts.incomplete.append(f"{name}: tensors.tsv or metadata.tsv missing")
                continue
            if tensorboard_reader:
                found, columns = _tensorboard_rows(tensors)
            else:
                found, tabs = _lines(tensors)
                columns = tabs // found + 1 if found and tabs % found == 0 else 0
            labels = _lines(metadata)[0]
            if not found or not columns or found != labels or (rows is not None and found != rows):
                counts.incomplete.append(
                    f"{name}: {found} rows of {columns} columns, {labels} labels (expected {rows})"
                )
                continue
            counts.by_kind["embedding"] += 1
    counts.incomplete.extend(f"{path}: in no projector_config.pbtxt" for path in sorted(on_disk - named))


def count_logdir(logdir: str, embedding_rows: int | None = None) -> Counts:
    """Counts every summary value in every event file under `logdir` (fast reader, CRCs checked),
    and the embeddings of its projector files."""
    from tensorboard.compat.proto import event_pb2

    counts = Counts()
    count_projector(logdir, counts, embedding_rows)
    from_string = event_pb2.Event.FromString
    for path in event_files(logdir):
        counts.files += 1
        plugins: dict[str, str] = {}
        by_kind, by_tag = counts.by_kind, counts.by_tag
        for payload in _records(path, counts.damaged):
            counts.records += 1
            for value in from_string(payload).summary.value:
                by_kind[_classify(value, plugins)] += 1
                by_tag[value.tag] += 1
    return counts


def count_logdir_tensorboard(logdir: str, embedding_rows: int | None = None) -> Counts:
    """The same counts through TensorBoard's `EventFileLoader` and projector TSV reader (slow; a
    cross-check)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    counts = Counts()
    count_projector(logdir, counts, embedding_rows, tensorboard_reader=True)
    for path in event_files(logdir):
        counts.files += 1
        plugins: dict[str, str] = {}
        for event in EventFileLoader(path).Load():
            counts.records += 1
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                counts.by_kind[_classify(value, plugins)] += 1
                counts.by_tag[value.tag] += 1
    return counts


def verify(
    logdir: str, expected: dict[str, int], cross_check: bool, embedding_rows: int | None = None
) -> dict[str, Any]:
    """Checks that `logdir` holds exactly `expected` values of each kind (and nothing damaged or
    incomplete); each embedding must have `embedding_rows` data points.

    With `cross_check`, TensorBoard's own loader must count the same. Returns a JSON-able report
    whose "ok" says whether everything matched.
    """
    counts = count_logdir(logdir, embedding_rows)
    found = {kind: counts.by_kind.get(kind, 0) for kind in expected}
    unexpected = {kind: n for kind, n in counts.by_kind.items() if kind not in expected and n}
    ok = found == expected and not unexpected and not counts.damaged and not counts.incomplete
    report: dict[str, Any] = {
        "ok": ok,
        "expected": dict(expected),
        "found": found,
        "unexpected": unexpected,
        "files": counts.files,
        "damaged": counts.damaged,
        "incomplete": counts.incomplete,
        "reader": "tfrecord+crc32c+tensorboard.compat.proto"
        + (", projector_config.pbtxt as ProjectorConfig, TSV lines" if "embedding" in expected else ""),
    }
    if cross_check:
        tb = count_logdir_tensorboard(logdir, embedding_rows)
        tb_found = {kind: tb.by_kind.get(kind, 0) for kind in expected}
        report["tensorboard_loader_found"] = tb_found
        report["reader"] += " and tensorboard EventFileLoader" + (
            ", projector plugin's TSV reader" if "embedding" in expected else ""
        )
        report["ok"] = report["ok"] and tb_found == expected and not tb.incomplete
        if tb.incomplete:
            report["tensorboard_loader_incomplete"] = tb.incomplete
    return report
