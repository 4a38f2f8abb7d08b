"""Reading TensorBoard logs back into plain Python and numpy: `load(logdir)`.

    from logger_client.reader import load       # or: logger_client.load(...)

    data = load("runs/exp1")
    loss = data.scalars[(".", "loss")]           # (run, tag): numpy columns
    loss.step, loss.wall_time, loss.value        # int64, float64, float64
    data.images[("eval", "samples")][0].pixels   # uint8 (H, W, C)

`load` reads every run below `logdir` (a run is a directory holding event files, named by its
path relative to `logdir`; `logdir` itself is run "."), and each run's event files in name order,
as TensorBoard does, whoever wrote them (this project's daemon, tensorboardX,
torch.utils.tensorboard, TensorFlow). It never imports protobuf: the few messages it needs are
decoded from the wire format directly (`_event_decode.py`).

What it keeps, and how it matches TensorBoard's `EventAccumulator`:

- Events in file order; tags exactly as written (no cleaning).
- A `SessionLog.START` at step s (what `purge_step` writes) drops the run's earlier events at steps
  >= s, as the accumulator does (every START, the run's first included); `LogData.purged` counts
  them. The accumulator purges scalars, histograms, images and audio only; the reader purges
  tensor summaries (text, pr_curves, ...) too, as TensorBoard's plugin accumulator does. Files
  without a `file_version` event (TensorFlow before 2016) are not purged by out-of-order steps.
- A tag's summary metadata is the first one written for it in the run. Tensor summaries are sorted
  by that metadata's plugin: "scalars" (torch's `new_style` scalars) join `scalars`, "text" is
  `text`, "hparams" is `hparams`, every other plugin's (pr_curves, mesh, custom_scalars, ...) is in
  `tensors[plugin_name]`, "" for tensors without a plugin.
- Damage is handled as TensorBoard's readers do: a file is read up to a torn last record, a record
  whose CRC fails, or an event that is not valid protobuf, and not past it (neither the Python
  loader nor the Rust data server reads past a bad record); the rest of the run's files are read.
  Each such stop is a `Damage` in `LogData.damage`, with the records and bytes left unread.

Plain scalar events are read without a Python object per event: records are found on whole numpy
columns of the file's bytes, their CRCs checked in bulk, and every scalar event of one layout (same
tag, same field widths) decoded at once from fixed byte positions. Everything else goes through the
event decoder one event at a time.
"""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from . import _event_decode as decode
from ._event_decode import DecodedEvent, DecodeError, Metadata, ScalarLayout
from ._png import decode_image
from ._remote import open_url
from ._tfrecord_read import check_group, frame, length_groups, rows_of
from .protocol import is_url_logdir
from .reduction import ranks_from_note

__all__ = [
    "Audio",
    "Damage",
    "HParams",
    "Histogram",
    "Image",
    "LogData",
    "Scalars",
    "TagInfo",
    "Tensor",
    "Text",
    "load",
]

Key = tuple[str, str]  # (run, tag)

#: Layouts tried per group of equal-length records before the rest go through the event decoder.
_MAX_LAYOUTS = 64
#: Records of a group that may fail to be plain scalars before the rest go to the event decoder.
_MAX_NOT_SCALAR = 64


# -- the result -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # numpy columns: compare them with numpy
class Scalars:
    """One (run, tag)'s scalars, in the order they were written, as numpy columns."""

    step: np.ndarray  # int64
    wall_time: np.ndarray  # float64, seconds since the epoch
    value: np.ndarray  # float64 (written as float32 by `simple_value`)
    #: How many ranks of a data-parallel job went into each value (0 where the file does not say),
    #: or None when no value of the series says (see `logger_client.reduction`).
    ranks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.step.size)


@dataclass(frozen=True, eq=False)  # numpy columns: compare them with numpy
class Histogram:
    """One histogram (`HistogramProto`): bucket i counts values in (bucket_limits[i-1], bucket_limits[i]]."""

    step: int
    wall_time: float
    min: float
    max: float
    num: float
    sum: float
    sum_squares: float
    bucket_limits: np.ndarray  # float64
    bucket_counts: np.ndarray  # float64
    #: How many ranks of a data-parallel job the histogram merges, where the file says.
    ranks: int | None = None


@dataclass(frozen=True)
class Image:
    """One image: its encoded bytes (PNG from this project and tensorboardX) and, decoded on first
    access, `pixels`."""

    step: int
    wall_time: float
    height: int
    width: int
    colorspace: int  # channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    encoded: bytes = field(repr=False)

    @cached_property
    def pixels(self) -> np.ndarray | None:
        """The image as uint8 (H, W, C); None if it is neither a PNG this module decodes nor an
        image Pillow (if installed) can read."""
        return decode_image(self.encoded)


@dataclass(frozen=True)
class Audio:
    """One audio clip: its encoded bytes (WAV) and, decoded on first access, `samples`."""

    step: int
    wall_time: float
    sample_rate: float
    num_channels: int
    length_frames: int
    content_type: str
    encoded: bytes = field(repr=False)

    @cached_property
    def samples(self) -> np.ndarray | None:
        """The PCM samples as stored, shape (frames, channels): int16 for 16-bit WAV (divide by
        32768 for [-1, 1)), uint8 for 8-bit, int32 for 24- and 32-bit. None if not a PCM WAV."""
        return _decode_wav(self.encoded)

    @cached_property
    def wav_sample_rate(self) -> int | None:
        """The sample rate the WAV header states (None if not a WAV)."""
        import wave

        try:
            with wave.open(io.BytesIO(self.encoded)) as clip:
                return clip.getframerate()
        except (wave.Error, EOFError):
            return None


@dataclass(frozen=True, eq=False)  # numpy columns: compare them with numpy
class Text:
    """One text summary: a str, or for a table (a string tensor of several cells) an array of str."""

    step: int
    wall_time: float
    text: str | np.ndarray


@dataclass(frozen=True, eq=False)  # numpy columns: compare them with numpy
class Tensor:
    """One tensor summary: the tensor with its dtype and shape (DT_STRING: an object array of bytes)."""

    step: int
    wall_time: float
    value: np.ndarray


@dataclass(frozen=True)
class HParams:
    """A run's hparams plugin data, each message as a dict of its fields (enums by name), or None.

    `session_start["hparams"]` maps each hyperparameter to its value (str, float or bool).
    """

    experiment: dict[str, Any] | None = None
    session_start: dict[str, Any] | None = None
    session_end: dict[str, Any] | None = None


@dataclass(frozen=True)
class TagInfo:
    """A tag's summary metadata: the first one written for it in its run."""

    plugin_name: str
    plugin_content: bytes = field(repr=False)
    display_name: str
    description: str
    data_class: int  # 0 unknown, 1 scalar, 2 tensor, 3 blob sequence


@dataclass(frozen=True)
class Damage:
    """Where reading an event file stopped before its end, and what was left unread.

    `reason`: "torn" (the file ends inside a record), "bad length CRC", "bad data CRC" or "invalid
    event" (a record whose CRC holds but whose bytes are not an Event). `records_skipped` counts the
    damaged record and every complete record after it; `bytes_skipped` the bytes from `offset` on.
    """

    path: str
    offset: int
    reason: str
    records_skipped: int
    bytes_skipped: int


@dataclass(eq=False)
class LogData:
    """Everything `load` read, keyed by (run, tag) (`tensors` first by plugin name)."""

    logdir: str
    runs: list[str] = field(default_factory=list)
    scalars: dict[Key, Scalars] = field(default_factory=dict)
    histograms: dict[Key, list[Histogram]] = field(default_factory=dict)
    images: dict[Key, list[Image]] = field(default_factory=dict)
    audio: dict[Key, list[Audio]] = field(default_factory=dict)
    text: dict[Key, list[Text]] = field(default_factory=dict)
    tensors: dict[str, dict[Key, list[Tensor]]] = field(default_factory=dict)
    hparams: dict[str, HParams] = field(default_factory=dict)
    #: Each run's GraphDef, serialized (the last one written, as TensorBoard shows).
    graphs: dict[str, bytes] = field(default_factory=dict)
    #: `TaggedRunMetadata` (e.g. tensorboardX's "profiler" step stats), serialized, by (run, tag).
    run_metadata: dict[Key, bytes] = field(default_factory=dict)
    metadata: dict[Key, TagInfo] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    files: int = 0
    #: Records read (events, file_version records included).
    records: int = 0
    #: Values dropped by `SessionLog.START` purges.
    purged: int = 0
    #: Tensor values whose dtype numpy cannot hold (resources, variants): left out.
    undecodable: int = 0

    @property
    def records_skipped(self) -> int:
        """Records left unread in damaged files."""
        return sum(item.records_skipped for item in self.damage)

    def __repr__(self) -> str:
        counts = {
            "scalars": sum(len(s) for s in self.scalars.values()),
            "histograms": sum(map(len, self.histograms.values())),
            "images": sum(map(len, self.images.values())),
            "audio": sum(map(len, self.audio.values())),
            "text": sum(map(len, self.text.values())),
            "tensors": sum(len(v) for plugin in self.tensors.values() for v in plugin.values()),
        }
        shown = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        return (
            f"LogData({self.logdir!r}: {len(self.runs)} run(s), {self.files} file(s), {shown or 'no values'}"
            + (f", {len(self.damage)} damaged file(s)" if self.damage else "")
            + ")"
        )


def _decode_wav(data: bytes) -> np.ndarray | None:
    import wave

    try:
        with wave.open(io.BytesIO(data)) as clip:
            width, channels = clip.getsampwidth(), clip.getnchannels()
            frames = clip.readframes(clip.getnframes())
    except (wave.Error, EOFError):
        return None
    samples: np.ndarray
    if width == 1:
        samples = np.frombuffer(frames, np.uint8)
    elif width == 2:
        samples = np.frombuffer(frames, "<i2")
    elif width == 3:  # 24-bit little endian, sign-extended into int32
        raw = np.frombuffer(frames, np.uint8).reshape(-1, 3).astype(np.int32)
        samples = (raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)) << 8 >> 8
    elif width == 4:
        samples = np.frombuffer(frames, "<i4")
    else:
        return None
    samples = samples[: samples.size - samples.size % channels]
    return samples.astype(samples.dtype.newbyteorder("=")).reshape(-1, channels)


# -- one run, as its events are read ----------------------------------------------------------------


@dataclass
class _ScalarPart:
    tag: str
    positions: np.ndarray
    steps: np.ndarray
    wall_times: np.ndarray
    values: np.ndarray
    ranks: int = 0


class _Run:
    """What a run's files hold, with each item's position in the run's event stream (for purges
    and for order)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scalar_parts: dict[str, list[_ScalarPart]] = {}
        self.scalar_items: dict[str, list[tuple[int, int, float, float, int]]] = {}
        self.histograms: dict[str, list[tuple[int, Histogram]]] = {}
        self.images: dict[str, list[tuple[int, Image]]] = {}
        self.audio: dict[str, list[tuple[int, Audio]]] = {}
        self.tensors: dict[str, list[tuple[int, int, float, bytes]]] = {}
        self.first_metadata: dict[str, tuple[int, Metadata]] = {}
        self.starts: list[tuple[int, int]] = []
        self.graph: bytes | None = None
        self.run_metadata: dict[str, bytes] = {}

    def note_metadata(self, tag: str, position: int, metadata: Metadata) -> None:
        known = self.first_metadata.get(tag)
        if known is None or position < known[0]:
            self.first_metadata[tag] = (position, metadata)

    def add_event(self, position: int, event: DecodedEvent) -> None:
        what = event.what
        if what == "summary":
            for value in event.data:
                self._add_value(position, event.step, event.wall_time, value)
        elif what == "session_log":
            if event.data == decode.SESSION_START:
                self.starts.append((position, event.step))
        elif what == "graph_def":
            self.graph = event.data
        elif what == "tagged_run_metadata":
            tag, blob = event.data
            self.run_metadata[tag] = blob

    def _add_value(self, position: int, step: int, wall_time: float, value: decode.SummaryValue) -> None:
        tag, kind, data = value.tag, value.kind, value.data
        if value.metadata is not None and tag not in self.first_metadata:
            self.first_metadata[tag] = (position, value.metadata)
        if kind == "simple_value":
            ranks = ranks_from_note(value.node_name) or 0
            self.scalar_items.setdefault(tag, []).append((position, step, wall_time, data, ranks))
        elif kind == "histo":
            self.histograms.setdefault(tag, []).append(
                (position, Histogram(step, wall_time, **data, ranks=ranks_from_note(value.node_name)))
            )
        elif kind == "image":
            self.images.setdefault(tag, []).append((position, Image(step, wall_time, **data)))
        elif kind == "audio":
            self.audio.setdefault(tag, []).append((position, Audio(step, wall_time, **data)))
        elif kind == "tensor":
            self.tensors.setdefault(tag, []).append((position, step, wall_time, data))


# -- reading one file -----------------------------------------------------------------------------


def _spans_outside(length: int, varying: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The [start, end) column ranges of a row of `length` bytes not covered by `varying`."""
    spans, at = [], 0
    for start, end in sorted(varying):
        if start > at:
            spans.append((at, start))
        at = max(at, end)
    if at < length:
        spans.append((at, length))
    return spans


def _match_layout(rows: np.ndarray, layout: ScalarLayout) -> tuple[np.ndarray, np.ndarray]:
    """(rows of exactly this layout, of those: rows whose tag bytes are the layout's own)."""
    first = rows[0]
    varying = [(layout.value_at, layout.value_at + 4), (layout.tag_at, layout.tag_at + layout.tag_len)]
    if layout.wall_at >= 0:
        varying.append((layout.wall_at, layout.wall_at + 8))
    if layout.step_len:
        varying.append((layout.step_at, layout.step_at + layout.step_len))
    ok = np.ones(rows.shape[0], bool)
    for start, end in _spans_outside(rows.shape[1], varying):
        ok &= (rows[:, start:end] == first[start:end]).all(axis=1)
    # The step's varint must be exactly step_len bytes long: continuation bits on all but the last.
    for index in range(layout.step_len):
        column = rows[:, layout.step_at + index]
        ok &= (column >= 0x80) if index < layout.step_len - 1 else (column < 0x80)
    if layout.tag_len:
        tag_span = slice(layout.tag_at, layout.tag_at + layout.tag_len)
        same_tag = ok & (rows[:, tag_span] == first[tag_span]).all(axis=1)
    else:
        same_tag = ok
    return ok, same_tag


def _scalar_columns(rows: np.ndarray, layout: ScalarLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = rows.shape[0]
    if layout.wall_at >= 0:
        wall = np.ascontiguousarray(rows[:, layout.wall_at : layout.wall_at + 8]).view("<f8").ravel()
        wall = wall.astype(np.float64)
    else:
        wall = np.zeros(count, np.float64)
    step = np.zeros(count, np.uint64)
    for index in range(layout.step_len):
        step |= (rows[:, layout.step_at + index] & 0x7F).astype(np.uint64) << np.uint64(7 * index)
    value = np.ascontiguousarray(rows[:, layout.value_at : layout.value_at + 4]).view("<f4").ravel()
    return step.view(np.int64), wall, value.astype(np.float64)


_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def _group_rows(rows: np.ndarray) -> list[tuple[bytes, np.ndarray]]:
    """Groups the rows of a uint8 matrix by their bytes: (bytes, indices of the rows) per distinct row."""
    count, width = rows.shape
    if width <= 8:
        padded = np.zeros((count, 8), np.uint8)
        padded[:, :width] = rows
        keys = padded.view("<u8").ravel()
    else:
        # A multiplicative hash of the row, checked below: sorting integers is far cheaper than
        # sorting byte strings.
        keys = np.zeros(count, np.uint64)
        with np.errstate(over="ignore"):
            for column in range(width):
                keys = (keys ^ rows[:, column].astype(np.uint64)) * _HASH_MULTIPLIER
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if width > 8 and not (rows == rows[first][inverse]).all():  # a collision: group on the bytes themselves
        unique, first, inverse = np.unique(
            rows.view(np.dtype((np.void, width))).ravel(), return_index=True, return_inverse=True
        )
        inverse = inverse.ravel()
    if unique.size == 1:
        return [(rows[0].tobytes(), np.arange(count))]
    order = np.argsort(inverse, kind="stable")
    cuts = np.flatnonzero(np.diff(inverse[order])) + 1
    return [(rows[members[0]].tobytes(), members) for members in np.split(order, cuts)]


def _plain_scalars(rows: np.ndarray, indices: np.ndarray, run: _Run, base: int, parts: list[_ScalarPart]) -> list[int]:
    """Decodes the plain scalar events among `rows` (records of one length, at `indices` of the
    file) on whole columns into `parts`; returns the indices of the other records."""
    others: list[int] = []
    remaining = np.arange(indices.size)
    layouts = misses = 0
    while remaining.size:
        first = int(remaining[0])
        layout = decode.scalar_layout(rows[first].tobytes())
        if layout is None:
            others.append(int(indices[first]))
            remaining = remaining[1:]
            misses += 1
            if misses >= _MAX_NOT_SCALAR:
                break
            continue
        subset = rows if remaining.size == indices.size else rows[remaining]
        ok, same_tag = _match_layout(subset, layout)
        groups: list[tuple[str, np.ndarray]] = [(layout.tag, remaining[same_tag])]
        other_tags = ok & ~same_tag
        if other_tags.any():
            # Same layout, another tag of the same length: one group per distinct tag's bytes.
            chosen = remaining[other_tags]
            tag_bytes = np.ascontiguousarray(subset[other_tags][:, layout.tag_at : layout.tag_at + layout.tag_len])
            for key_bytes, members in _group_rows(tag_bytes):
                groups.append((decode._text(key_bytes), chosen[members]))
        for tag, members in groups:
            step, wall, value = _scalar_columns(rows[members], layout)
            positions = base + indices[members]
            ranks = ranks_from_note(layout.node_name) or 0
            parts.append(_ScalarPart(tag, positions, step, wall, value, ranks))
            if layout.metadata is not None:
                run.note_metadata(tag, int(positions[0]), layout.metadata)
        remaining = remaining[~ok]
        layouts += 1
        if layouts >= _MAX_LAYOUTS:
            break
    others.extend(indices[remaining].tolist())
    return others


def _read_local(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_file(path: str, run: _Run, base: int, data: LogData, read: Callable[[str], bytes] = _read_local) -> int:
    """Reads one event file into `run`, its records numbered from `base`; returns how many records
    the file holds (read or not)."""
    buf = read(path)
    array = np.frombuffer(buf, np.uint8)
    framing = frame(buf)
    count = int(framing.starts.size)
    cut, reason, stop = count, framing.problem, framing.stop
    groups = []
    for indices, length in length_groups(framing):
        rows = rows_of(array, framing.starts[indices] + 12, length)
        ok = check_group(array, buf, framing.starts[indices] + 12, length, rows)
        if not ok.all():
            bad = int(indices[int(np.argmin(ok))])
            if bad < cut:
                cut, reason, stop = bad, "bad data CRC", int(framing.starts[bad])
        groups.append((indices, length, rows))

    parts: list[_ScalarPart] = []
    others: list[int] = []
    for indices, _, rows in groups:
        keep = indices < cut
        if not keep.all():
            indices = indices[keep]
            rows = rows[keep] if rows is not None else None
        if indices.size == 0:
            continue
        if rows is None:
            others.extend(indices.tolist())
        else:
            others.extend(_plain_scalars(rows, indices, run, base, parts))
    others.sort()
    view = memoryview(buf)
    for index in others:
        start = int(framing.starts[index]) + 12
        try:
            event = decode.decode_event(view[start : start + int(framing.lengths[index])])
        except DecodeError:
            cut, reason, stop = index, "invalid event", int(framing.starts[index])
            break
        run.add_event(base + index, event)
    limit = base + cut
    for part in parts:
        if part.positions[-1] >= limit:  # past a damaged record: TensorBoard never reads these
            keep = part.positions < limit
            if not keep.any():
                continue
            part = _ScalarPart(
                part.tag, part.positions[keep], part.steps[keep], part.wall_times[keep], part.values[keep], part.ranks
            )
        run.scalar_parts.setdefault(part.tag, []).append(part)
    if reason is not None:
        # The damaged record and every complete record after it; a torn or unframed tail is one more.
        skipped = count - cut + (1 if framing.problem is not None else 0)
        data.damage.append(Damage(path, stop, reason, skipped, len(buf) - stop))
    data.records += cut
    return count


# -- a run's data, assembled ------------------------------------------------------------------------


class _Purges:
    """The run's `SessionLog.START` events: an item at `position` with step >= s is dropped when a
    START at step s comes after it."""

    def __init__(self, starts: list[tuple[int, int]]) -> None:
        self.starts = sorted(starts)

    def kept(self, position: int, step: int) -> bool:
        return not any(position < at and step >= from_step for at, from_step in self.starts)

    def mask(self, positions: np.ndarray, steps: np.ndarray) -> np.ndarray:
        keep = np.ones(positions.size, bool)
        for at, from_step in self.starts:
            keep &= ~((positions < at) & (steps >= from_step))
        return keep


def _text_value(array: np.ndarray) -> str | np.ndarray:
    if array.size == 1:
        return decode._text(array.reshape(-1)[0])
    cells = np.empty(array.shape, dtype=object)
    for index, cell in np.ndenumerate(array):
        cells[index] = decode._text(cell)
    return cells


def _assemble(run: _Run, data: LogData) -> None:
    purges = _Purges(run.starts)
    name = run.name

    def plugin(tag: str) -> str:
        known = run.first_metadata.get(tag)
        return known[1].plugin_name if known is not None else ""

    def listed(items: list[tuple[int, Any]]) -> list[Any]:
        items.sort(key=lambda item: item[0])
        kept = [value for position, value in items if purges.kept(position, value.step)]
        data.purged += len(items) - len(kept)
        return kept

    # Tensors of the "scalars" plugin (torch's new_style) are scalars, as TensorBoard shows them.
    tensor_scalars: dict[str, list[tuple[int, int, float, float, int]]] = {}
    for tag, items in run.tensors.items():
        owner = plugin(tag)
        if owner == "hparams":
            continue  # its data is in the metadata, below
        texts: list[Text] = []
        tensors: list[Tensor] = []
        for position, step, wall_time, proto in sorted(items, key=lambda item: item[0]):
            if not purges.kept(position, step):
                data.purged += 1
                continue
            try:
                value = decode.decode_tensor(proto)
            except DecodeError:
                data.undecodable += 1
                continue
            if owner == "scalars" and value.size == 1 and value.dtype.kind in "biuf":
                tensor_scalars.setdefault(tag, []).append((position, step, wall_time, float(value.reshape(-1)[0]), 0))
            elif owner == "text" and value.dtype == object:
                texts.append(Text(step, wall_time, _text_value(value)))
            else:
                tensors.append(Tensor(step, wall_time, value))
        if texts:
            data.text[(name, tag)] = texts
        if tensors:
            data.tensors.setdefault(owner, {})[(name, tag)] = tensors

    for tag in sorted(set(run.scalar_parts) | set(run.scalar_items) | set(tensor_scalars)):
        columns = [
            (p.positions, p.steps, p.wall_times, p.values, np.full(p.positions.size, p.ranks, np.int64))
            for p in run.scalar_parts.get(tag, [])
        ]
        columns.extend(
            (
                np.array([item[0] for item in singles], np.int64),
                np.array([item[1] for item in singles], np.int64),
                np.array([item[2] for item in singles], np.float64),
                np.array([item[3] for item in singles], np.float64),
                np.array([item[4] for item in singles], np.int64),
            )
            for singles in (run.scalar_items.get(tag), tensor_scalars.get(tag))
            if singles
        )
        columns.sort(key=lambda c: int(c[0][0]))
        positions, steps, wall_times, values, ranks = (
            (np.concatenate([c[i] for c in columns]) if len(columns) > 1 else columns[0][i]) for i in range(5)
        )
        if positions.size > 1 and not (positions[1:] > positions[:-1]).all():
            order = np.argsort(positions, kind="stable")
            positions, steps, wall_times, values = positions[order], steps[order], wall_times[order], values[order]
            ranks = ranks[order]
        if purges.starts:
            keep = purges.mask(positions, steps)
            if not keep.all():
                data.purged += int(keep.size - keep.sum())
                steps, wall_times, values, ranks = steps[keep], wall_times[keep], values[keep], ranks[keep]
        if steps.size:
            data.scalars[(name, tag)] = Scalars(steps, wall_times, values, ranks if ranks.any() else None)

    for tag, histograms in run.histograms.items():
        if kept_histograms := listed(histograms):
            data.histograms[(name, tag)] = kept_histograms
    for tag, images in run.images.items():
        if kept_images := listed(images):
            data.images[(name, tag)] = kept_images
    for tag, clips in run.audio.items():
        if kept_clips := listed(clips):
            data.audio[(name, tag)] = kept_clips

    sessions: dict[str, dict[str, Any]] = {}
    for tag, (_, metadata) in sorted(run.first_metadata.items()):
        data.metadata[(name, tag)] = TagInfo(
            metadata.plugin_name,
            metadata.plugin_content,
            metadata.display_name,
            metadata.description,
            metadata.data_class,
        )
        if metadata.plugin_name == "hparams" and metadata.plugin_content:
            try:
                which, message = decode.decode_hparams(metadata.plugin_content)
            except DecodeError:
                data.undecodable += 1
                continue
            if which and which not in sessions:
                sessions[which] = message
    if sessions:
        data.hparams[name] = HParams(
            sessions.get("experiment"), sessions.get("session_start_info"), sessions.get("session_end_info")
        )
    if run.graph is not None:
        data.graphs[name] = run.graph
    for tag, blob in run.run_metadata.items():
        data.run_metadata[(name, tag)] = blob


# -- finding runs ---------------------------------------------------------------------------------


def _is_event_file(name: str) -> bool:
    return "tfevents" in name  # TensorBoard's test, on the base name


def _find_runs(root: str) -> dict[str, list[str]]:
    """Run name -> its event files in name order, for every directory below `root` that has any."""
    runs: dict[str, list[str]] = {}
    for directory, subdirectories, names in os.walk(root):
        subdirectories.sort()
        files = sorted(
            os.path.join(directory, name)
            for name in names
            if _is_event_file(name) and os.path.isfile(os.path.join(directory, name))
        )
        if files:
            run = os.path.relpath(directory, root).replace(os.sep, "/")
            runs[run] = files
    return dict(sorted(runs.items()))


def _find_remote_runs(fs: Any, root: str) -> dict[str, list[str]]:
    """`_find_runs` for a directory of an fsspec filesystem (paths as the filesystem names them)."""
    runs: dict[str, list[str]] = {}
    for path in fs.find(root):
        directory, name = posixpath.split(path)
        if _is_event_file(name):
            relative = posixpath.relpath(directory, root) if directory != root else "."
            runs.setdefault(relative, []).append(path)
    return {run: sorted(files) for run, files in sorted(runs.items())}


def load(logdir: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> LogData:
    """Reads every run below `logdir` (or one event file) into a `LogData`.

    `logdir` may be an fsspec URL (`s3://bucket/run`, with that scheme's backend installed;
    `storage_options` are fsspec's options for it, else the backend's own configuration applies).
    Raises FileNotFoundError if `logdir` does not exist; a directory without event files gives an
    empty `LogData`.
    """
    path = os.fspath(logdir)
    read: Callable[[str], bytes] = _read_local
    if is_url_logdir(path):
        fs, root = open_url(path, storage_options)
        root = root.rstrip("/")
        fs.invalidate_cache(root)  # a listing cached by an earlier load would miss new files
        if fs.isfile(root):
            runs = {".": [root]}
        elif fs.isdir(root):
            runs = _find_remote_runs(fs, root)
        else:
            raise FileNotFoundError(f"no log directory or event file at {path!r}")
        read = fs.cat_file
    elif os.path.isfile(path):
        runs = {".": [path]}
    elif os.path.isdir(path):
        runs = _find_runs(path)
    else:
        raise FileNotFoundError(f"no log directory or event file at {path!r}")
    data = LogData(logdir=path, runs=list(runs))
    for name, files in runs.items():
        run = _Run(name)
        base = 0
        for file in files:
            base += _read_file(file, run, base, data, read)
            data.files += 1
        _assemble(run, data)
    return data
