"""The daemon's write path, on its own thread: check -> reduce -> encode -> write, then flush, fsync, ack.

The server loop hands over each client message as it came. A cycle takes everything waiting,
checks the records, groups data records by (run, tag), orders each group by step, encodes and
appends them, flushes the files it touched (TensorBoard can read them from then on) and only then
acknowledges the messages the cycle held. Slow encoding delays acknowledgements, never a training
process.

Records stay the lists msgpack decoded (see `logger_client._wire`): at a million scalars a second
an object per record would be the bottleneck. Packed scalar rows (see `_wire.SCALAR_ROW`) are read
as numpy columns, by the keys their client defined, with no object per row at all. Plain scalars
of one (run, tag) are encoded on whole numpy columns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from logger_client._wire import (
    ARRAY_KINDS,
    KIND,
    MAX_NAME_CHARS,
    RUN,
    SCALAR_ROW,
    SCALAR_ROW_DTYPE,
    STEP,
    STREAM,
    TAG,
    VALUE,
    WALL_TIME,
    ProtocolError,
    Record,
    RecordKind,
    check_record,
    record_options,
)
from logger_daemon import summaries
from logger_daemon.event_codec import scalar_event_rows, summary_event
from logger_daemon.reduce import reduce_records
from logger_daemon.runs import BadRunName, RunLog, resolve_run
from logger_daemon.stats import Stats
from logger_daemon.tfrecord import frame_rows

log = logging.getLogger("logger_daemon")

_SCALAR = RecordKind.SCALAR.value
_OPEN = RecordKind.OPEN.value
_CLOSE = RecordKind.CLOSE.value
_KEY = RecordKind.KEY.value
#: A bin of fewer rows than this is read row by row (a numpy call costs microseconds).
_FEW_ROWS = 16
_ARRAY_KIND_CODES = frozenset(kind.value for kind in ARRAY_KINDS)
_INT_ONLY = {int}
_NUMBER_TYPES = {int, float}


@dataclass
class Work:
    """One client message's raw records and arrays, or a flush or a goodbye."""

    client: bytes
    seq: int
    records: list[Any] = field(default_factory=list)
    arrays: list[np.ndarray] = field(default_factory=list)
    flush: bool = False
    client_gone: bool = False
    #: Data records in `records`, a bin of packed scalar rows counted row by row.
    count: int = 0

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.arrays)


@dataclass
class _Stream:
    """A SummaryWriter of some client: its log directory and the runs it has written."""

    logdir: str
    filename_suffix: str
    runs: dict[str, RunLog] = field(default_factory=dict)


@dataclass
class _Group:
    """What a cycle writes to one (run, tag), in arrival order: records (lists, as msgpack decoded
    them) and plain scalars as columns (from packed rows), each part with the client it came from."""

    records: list[Record] = field(default_factory=list)
    owners: list[tuple[bytes, int]] = field(default_factory=list)  # (client, count) per part of `records`
    columns: list[tuple[bytes, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    mixed: bool = False  # holds more than plain scalars: written record by record

    def count(self) -> int:
        return len(self.records) + sum(len(steps) for _, steps, _, _ in self.columns)

    def take(self, part: _Group, client: bytes) -> None:
        """Adds one message's part for this (run, tag), sent by `client`."""
        if part.records:
            self.records.extend(part.records)
            self.owners.append((client, len(part.records)))
        self.columns.extend(part.columns)
        self.mixed |= part.mixed

    def all_owners(self) -> list[tuple[bytes, int]]:
        """(client, count) of the records, then of the columns."""
        return self.owners + [(client, len(steps)) for client, steps, _, _ in self.columns]

    def as_records(self, tag: str) -> tuple[list[Record], list[tuple[bytes, int]]]:
        """Everything as records, columns turned into lists, with their owners in the same order."""
        records = list(self.records)
        for _, steps, wall_times, values in self.columns:
            records.extend(
                [_SCALAR, 0, "", tag, step, wall_time, value]
                for step, wall_time, value in zip(steps.tolist(), wall_times.tolist(), values.tolist())
            )
        return records, self.all_owners()

    def scalar_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[bytes, int]]] | None:
        """(steps, wall times, values, owners) of plain scalars; None if the records' fields are
        not all plain numbers (then they are checked one by one)."""
        steps: list = [r[STEP] for r in self.records]
        wall_times: list = [r[WALL_TIME] for r in self.records]
        values: list = [r[VALUE] for r in self.records]
        # One C-level pass per column: numpy would quietly take bools (and more) as numbers.
        if (
            not set(map(type, steps)) <= _INT_ONLY
            or not set(map(type, wall_times)) <= _NUMBER_TYPES
            or not set(map(type, values)) <= _NUMBER_TYPES
        ):
            return None
        listed_steps = np.array(steps, dtype=None if steps else np.int64)
        if listed_steps.dtype != np.int64:  # beyond 64 bits
            return None
        return (
            np.concatenate([listed_steps] + [part[1] for part in self.columns]),
            np.concatenate([np.array(wall_times, dtype=np.float64)] + [part[2] for part in self.columns]),
            np.concatenate([np.array(values, dtype=np.float64)] + [part[3] for part in self.columns]),
            self.all_owners(),
        )


#: Options each record kind may carry to its summary function; anything else is ignored.
_OPTION_NAMES = {
    RecordKind.SCALAR.value: ("display_name", "summary_description", "new_style", "double_precision"),
    RecordKind.HISTOGRAM.value: ("bins", "max_bins"),
    RecordKind.IMAGE.value: ("dataformats",),
    RecordKind.IMAGES.value: ("dataformats",),
    RecordKind.TEXT.value: (),
}
_SUMMARY_FUNCTIONS: dict[int, Callable[..., Any]] = {
    RecordKind.SCALAR.value: summaries.scalar,
    RecordKind.HISTOGRAM.value: summaries.histogram,
    RecordKind.IMAGE.value: summaries.image,
    RecordKind.IMAGES.value: summaries.images,
    RecordKind.TEXT.value: summaries.text,
}
_clean_tag = lru_cache(maxsize=65536)(summaries.clean_tag)


def encode_record(record: Record) -> bytes:
    """The serialized Event of one checked data record; raises ValueError/TypeError on bad values."""
    kind = record[KIND]
    options = record_options(record)
    options = {name: options[name] for name in _OPTION_NAMES[kind] if name in options}
    summary = _SUMMARY_FUNCTIONS[kind](record[TAG], record[VALUE], **options)
    return summary_event(record[WALL_TIME], record[STEP], summary)


class Pipeline:
    """Owns every run directory and event file; fed by `put`, acknowledges through `on_written`."""

    def __init__(
        self,
        stats: Stats,
        fsync_interval_s: float,
        on_written: Callable[[dict[bytes, int], dict[bytes, Counter]], None],
    ) -> None:
        self._stats = stats
        self._fsync_interval_s = fsync_interval_s
        self._on_written = on_written
        self._inbox: list[Work] = []
        self._inbox_bytes = 0
        self._inbox_records = 0
        self._ready = threading.Condition()
        self._stopping = False
        self._streams: dict[tuple[bytes, int], _Stream] = {}
        # Per client: what the keys of its packed scalar rows name, (stream, run, tag).
        self._scalar_keys: defaultdict[bytes, dict[int, tuple[int, str, str]]] = defaultdict(dict)
        self._runs: dict[str, RunLog] = {}
        self._last_fsync = time.monotonic()
        self._cycle_drops: defaultdict[bytes, Counter] = defaultdict(Counter)  # per client, this cycle
        self._thread = threading.Thread(target=self._run, name="logger-daemon-pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, work: Work) -> None:
        with self._ready:
            self._inbox.append(work)
            self._inbox_bytes += work.nbytes
            self._inbox_records += work.count
            self._ready.notify()

    def queued(self) -> tuple[int, int]:
        """(records, array bytes) waiting to be written."""
        with self._ready:
            return self._inbox_records, self._inbox_bytes

    def open_files(self) -> int:
        return sum(1 for run in list(self._runs.values()) if run.file is not None)

    def stop(self, timeout_s: float | None = None) -> None:
        """Writes everything handed over so far, fsyncs and closes every file."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._ready:
                if not self._inbox and not self._stopping:
                    self._ready.wait(timeout=min(1.0, self._fsync_interval_s))
                batch, self._inbox = self._inbox, []
                self._inbox_bytes = self._inbox_records = 0
                stopping = self._stopping
            if batch:
                try:
                    self._cycle(batch)
                except Exception:  # never stop writing for everyone because of one batch
                    log.exception("a write cycle failed")
                    self._fail_cycle(batch)
            if time.monotonic() - self._last_fsync >= self._fsync_interval_s:
                self._fsync_all()
            if stopping and not batch:
                for run in self._runs.values():
                    run.close()
                self._runs.clear()
                return

    # -- one cycle ---------------------------------------------------------------------------

    def _fail_cycle(self, batch: list[Work]) -> None:
        """Acknowledges a batch whose cycle failed, its records counted as `internal_error`."""
        acks: dict[bytes, int] = {}
        for work in batch:
            self._drop("internal_error", work.count, work.client)
            if work.seq:
                acks[work.client] = work.seq
        drops, self._cycle_drops = self._cycle_drops, defaultdict(Counter)
        self._on_written(acks, drops)

    def _drop(self, reason: str, count: int, client: bytes) -> None:
        """Counts refused records in the status and in the client's next acknowledgement."""
        self._stats.drop(reason, count)
        self._cycle_drops[client][reason] += count

    def _cycle(self, batch: list[Work]) -> None:
        groups: defaultdict[tuple[RunLog, str], _Group] = defaultdict(_Group)
        acks: dict[bytes, int] = {}
        closing: list[tuple[bytes, int]] = []
        fsync = False
        for work in batch:
            self._collect(work, groups, closing)
            fsync |= work.flush
            if work.client_gone:
                closing.extend(key for key in self._streams if key[0] == work.client)
                self._scalar_keys.pop(work.client, None)
            if work.seq:
                acks[work.client] = work.seq
        self._write(groups)
        if fsync:
            self._fsync_all()
        for key in closing:
            self._close_stream(key)
        drops, self._cycle_drops = self._cycle_drops, defaultdict(Counter)
        self._on_written(acks, drops)

    def _collect(self, work: Work, groups: defaultdict, closing: list) -> None:
        """Checks a message's records and adds them to `groups`, keyed by (run, tag)."""
        client = work.client
        received = 0
        # Keyed by the raw (stream, run, tag) first: the run is looked up once per key, not per record.
        by_key: defaultdict[tuple, _Group] = defaultdict(_Group)
        for record in work.records:
            if type(record) is bytes:
                received += self._collect_rows(client, record, by_key)
                continue
            # Plain scalars as lists are only shape-checked here; their fields are checked per
            # group, on whole columns, when they are encoded.
            if type(record) is list and len(record) == 7 and record[KIND] == _SCALAR:
                received += 1
                try:
                    by_key[(record[STREAM], record[RUN], record[TAG])].records.append(record)
                except TypeError:  # an unhashable stream, run or tag
                    self._drop("malformed_record", 1, client)
                continue
            try:
                check_record(record, len(work.arrays))
            except ProtocolError as exc:
                self._drop(exc.reason, 1, client)
                received += 1
                continue
            kind = record[KIND]
            if kind == _OPEN:
                self._group(client, by_key, groups)
                self._write(groups)  # a purge must follow what came before it
                groups.clear()
                self._open_stream(client, record)
            elif kind == _CLOSE:
                closing.append((client, record[STREAM]))
            elif kind == _KEY:
                self._scalar_keys[client][record[VALUE]] = (record[STREAM], record[RUN], record[TAG])
            else:
                received += 1
                if kind in _ARRAY_KIND_CODES:
                    record[VALUE] = work.arrays[record[VALUE]]
                group = by_key[(record[STREAM], record[RUN], record[TAG])]
                group.records.append(record)
                group.mixed = True
        self._group(client, by_key, groups)
        self._stats.add_received(received)

    def _collect_rows(self, client: bytes, rows: bytes, by_key: defaultdict) -> int:
        """Adds a bin of packed scalar rows to `by_key` as columns, one part per key; returns how
        many rows it held. No object per row: the rows stay in numpy from here to the encoder."""
        count, extra = divmod(len(rows), SCALAR_ROW.size)
        if extra:
            self._drop("malformed_record", count + 1, client)
            return count + 1
        names = self._scalar_keys.get(client, {})
        if count < _FEW_ROWS:  # numpy's calls would cost more than these rows: lists, as msgpack gives
            unknown = 0
            for key, step, wall_time, value in SCALAR_ROW.iter_unpack(rows):
                name = names.get(key)
                if name is None:
                    unknown += 1
                else:
                    by_key[name].records.append([_SCALAR, *name, step, wall_time, value])
            if unknown:
                self._drop("unknown_scalar_key", unknown, client)
            return count
        table = np.frombuffer(rows, dtype=SCALAR_ROW_DTYPE)
        keys = table["key"]
        if (keys == keys[0]).all():  # one tag per batch: no sort needed
            parts = [table]
        else:
            table = table[np.argsort(keys, kind="stable")]  # arrival order kept within a key
            parts = np.split(table, np.flatnonzero(np.diff(table["key"])) + 1)
        for part in parts:
            name = names.get(int(part["key"][0]))
            if name is None:
                self._drop("unknown_scalar_key", len(part), client)
                continue
            by_key[name].columns.append((client, part["step"], part["wall_time"], part["value"]))
        return count

    def _group(self, client: bytes, by_key: dict, groups: defaultdict) -> None:
        """Moves one message's parts, keyed by (stream, run name, tag), to `groups` by (run, tag)."""
        for (stream, run_name, tag), part in by_key.items():
            count = part.count()
            if (
                type(stream) is not int
                or type(run_name) is not str
                or type(tag) is not str
                or len(run_name) > MAX_NAME_CHARS
                or len(tag) > MAX_NAME_CHARS
            ):
                self._drop("malformed_record", count, client)
                continue
            run = self._run_for(client, stream, run_name, count)
            if run is not None:
                groups[(run, tag)].take(part, client)
        by_key.clear()

    def _open_stream(self, client: bytes, record: Record) -> None:
        options = record[VALUE]
        logdir = options.get("logdir")
        suffix = options.get("filename_suffix") or ""
        try:
            if type(logdir) is not str or type(suffix) is not str or "/" in suffix or "\0" in suffix:
                raise BadRunName(f"bad logdir {logdir!r} or filename_suffix {suffix!r}")
            run = self._run_at(resolve_run(logdir, ""), suffix)
            purge_step = options.get("purge_step")
            if type(purge_step) is int:
                run.purge_from(purge_step, float(record[WALL_TIME]))
        except (BadRunName, OSError, ValueError) as exc:  # ValueError: e.g. a NUL in a path
            log.warning("refusing a writer: %s", exc)
            self._drop("bad_logdir", 1, client)
            return
        stream = _Stream(logdir, suffix, {"": run})
        self._streams[(client, record[STREAM])] = stream
        run.users.add((client, record[STREAM]))

    def _run_at(self, path: str, suffix: str) -> RunLog:
        run = self._runs.get(path)
        if run is None:
            run = self._runs[path] = RunLog(path, suffix)
        return run

    def _run_for(self, client: bytes, stream_id: int, run_name: str, count: int) -> RunLog | None:
        """The run a writer's records go to; None (and `count` records dropped) if there is none."""
        stream = self._streams.get((client, stream_id))
        if stream is None:
            self._drop("unknown_stream", count, client)
            return None
        run = stream.runs.get(run_name)
        if run is None:
            try:
                run = self._run_at(resolve_run(stream.logdir, run_name), stream.filename_suffix)
            except BadRunName as exc:
                log.warning("dropping %d record(s): %s", count, exc)
                self._drop("bad_run_name", count, client)
                return None
            stream.runs[run_name] = run
            run.users.add((client, stream_id))
        return run

    def _write(self, groups: dict[tuple[RunLog, str], _Group]) -> None:
        """Encodes and appends each group in step order, then hands the files to the OS."""
        touched: set[RunLog] = set()
        written = nbytes = 0
        for (run, tag), group in reduce_records(groups).items():
            try:
                file = run.event_file()
            except (OSError, ValueError) as exc:
                log.error("cannot create an event file in %s: %s", run.path, exc)
                for client, count in group.all_owners():
                    self._drop("io_error", count, client)
                continue
            before = file.bytes_written
            columns = None if group.mixed else group.scalar_columns()
            if columns is None:
                written += self._write_each(run, tag, *group.as_records(tag))
            else:
                written += self._write_scalars(run, tag, *columns)
            nbytes += file.bytes_written - before
            touched.add(run)
        for run in touched:
            run.file.flush()  # readable by TensorBoard from here on: what is acked is visible
        self._stats.add_written(written, nbytes)

    def _write_scalars(
        self,
        run: RunLog,
        tag: str,
        steps: np.ndarray,
        wall_times: np.ndarray,
        values: np.ndarray,
        owners: list[tuple[bytes, int]],
    ) -> int:
        """Plain scalars of one (run, tag), as columns: ordered and encoded on whole columns."""
        order = np.argsort(steps, kind="stable")  # equal steps keep their arrival order
        steps, wall_times, values = steps[order], wall_times[order], values[order]
        first = run.first_accepted(tag, steps)
        if first:
            owner_of = np.repeat(np.arange(len(owners)), [count for _, count in owners])
            late = np.bincount(owner_of[order[:first]], minlength=len(owners))
            for (client, _), count in zip(owners, late.tolist()):
                if count:
                    self._drop("step_out_of_order", count, client)
        if first == len(steps):
            return 0
        file = run.event_file()
        for rows in scalar_event_rows(_clean_tag(tag), wall_times[first:], steps[first:], values[first:]):
            file.write_framed(frame_rows(rows))
        return len(steps) - first

    def _write_each(self, run: RunLog, tag: str, records: list[Record], owners: list[tuple[bytes, int]]) -> int:
        """Any records of one (run, tag), one at a time, in step order."""
        clients = [client for client, count in owners for _ in range(count)]
        checked = []
        for client, record in zip(clients, records):
            if len(record) == 7 and record[KIND] == _SCALAR:  # skipped the full check on the way in
                try:
                    check_record(record, 0)
                except ProtocolError as exc:
                    self._drop(exc.reason, 1, client)
                    continue
            checked.append((record[STEP], client, record))
        checked.sort(key=_first)  # stable: equal steps keep their arrival order
        file = run.event_file()
        written = 0
        for step, client, record in checked:
            if not run.accepts(tag, step):
                self._drop("step_out_of_order", 1, client)
                continue
            try:
                event = encode_record(record)
            except Exception as exc:  # any value a peer sent that a summary function rejects
                log.warning(
                    "cannot encode a %s record %r at step %d: %s", RecordKind(record[KIND]).name, tag, step, exc
                )
                self._drop("encode_error", 1, client)
                continue
            file.write(event)
            written += 1
        return written

    def _fsync_all(self) -> None:
        for run in self._runs.values():
            if run.file is not None:
                run.file.fsync()
        self._last_fsync = time.monotonic()

    def _close_stream(self, key: tuple[bytes, int]) -> None:
        stream = self._streams.pop(key, None)
        if stream is None:
            return
        for run in stream.runs.values():
            run.users.discard(key)
            if not run.users:
                run.close()
                self._runs.pop(run.path, None)


def _first(item: tuple) -> Any:
    return item[0]
