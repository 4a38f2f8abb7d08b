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
classify each summary value as scalar, histogram, image or text.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

KINDS = ("scalar", "histogram", "image", "text")
_PLUGIN_KINDS = {"scalars": "scalar", "histograms": "histogram", "images": "image", "text": "text"}
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_kind": {kind: self.by_kind.get(kind, 0) for kind in sorted(set(KINDS) | set(self.by_kind))},
            "files": self.files,
            "records": self.records,
            "damaged": self.damaged,
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


_DIRECT_KINDS = {"simple_value": "scalar", "histo": "histogram", "image": "image"}


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


def count_logdir(logdir: str) -> Counts:
    """Counts every summary value in every event file under `logdir` (fast reader, CRCs checked)."""
    from tensorboard.compat.proto import event_pb2

    counts = Counts()
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


def count_logdir_tensorboard(logdir: str) -> Counts:
    """The same counts through TensorBoard's `EventFileLoader` (slow; a cross-check)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    counts = Counts()
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


def verify(logdir: str, expected: dict[str, int], cross_check: bool) -> dict[str, Any]:
    """Checks that `logdir` holds exactly `expected` values of each kind (and nothing damaged).

    With `cross_check`, TensorBoard's own loader must count the same. Returns a JSON-able report
    whose "ok" says whether everything matched.
    """
    counts = count_logdir(logdir)
    found = {kind: counts.by_kind.get(kind, 0) for kind in expected}
    unexpected = {kind: n for kind, n in counts.by_kind.items() if kind not in expected and n}
    ok = found == expected and not unexpected and not counts.damaged
    report: dict[str, Any] = {
        "ok": ok,
        "expected": dict(expected),
        "found": found,
        "unexpected": unexpected,
        "files": counts.files,
        "damaged": counts.damaged,
        "reader": "tfrecord+crc32c+tensorboard.compat.proto",
    }
    if cross_check:
        tb = count_logdir_tensorboard(logdir)
        tb_found = {kind: tb.by_kind.get(kind, 0) for kind in expected}
        report["tensorboard_loader_found"] = tb_found
        report["reader"] += " and tensorboard EventFileLoader"
        report["ok"] = ok and tb_found == expected
    return report
