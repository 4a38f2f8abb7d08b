"""The daemon's write path, on its own thread: reduce -> encode -> write, then flush, fsync, ack.

The server loop hands over checked work in arrival order. Each cycle takes everything waiting,
groups data records by (run, tag), orders each group by step, encodes and appends them, flushes
the files it touched (TensorBoard can read them from then on) and only then acknowledges the
messages the cycle held. Slow encoding delays acknowledgements, never a training process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from logger_client._wire import Record, RecordKind
from logger_daemon import summaries
from logger_daemon.event_codec import scalar_event, summary_event
from logger_daemon.reduce import reduce_records
from logger_daemon.runs import BadRunName, RunLog, resolve_run
from logger_daemon.stats import Stats

log = logging.getLogger("logger_daemon")


@dataclass
class Work:
    """One client message's worth of checked records, or a flush or a goodbye."""

    client: bytes
    seq: int
    records: list[Record] = field(default_factory=list)
    nbytes: int = 0
    flush: bool = False
    client_gone: bool = False


@dataclass
class _Stream:
    """A SummaryWriter of some client: its log directory and the runs it has written."""

    logdir: str
    filename_suffix: str
    runs: dict[str, RunLog] = field(default_factory=dict)


#: Options each record kind may carry to its summary function; anything else is ignored.
_OPTION_NAMES = {
    RecordKind.SCALAR: ("display_name", "summary_description", "new_style", "double_precision"),
    RecordKind.HISTOGRAM: ("bins", "max_bins"),
    RecordKind.IMAGE: ("dataformats",),
    RecordKind.IMAGES: ("dataformats",),
    RecordKind.TEXT: (),
}
_SUMMARY_FUNCTIONS: dict[RecordKind, Callable[..., Any]] = {
    RecordKind.SCALAR: summaries.scalar,
    RecordKind.HISTOGRAM: summaries.histogram,
    RecordKind.IMAGE: summaries.image,
    RecordKind.IMAGES: summaries.images,
    RecordKind.TEXT: summaries.text,
}
_clean_tag = lru_cache(maxsize=65536)(summaries.clean_tag)


def encode_record(record: Record) -> bytes:
    """The serialized Event for a data record; raises ValueError/TypeError on values it cannot encode."""
    if record.kind == RecordKind.SCALAR and not record.options:
        return scalar_event(record.wall_time, record.step, _clean_tag(record.tag), float(record.value))
    options = {name: record.options[name] for name in _OPTION_NAMES[record.kind] if name in record.options}
    summary = _SUMMARY_FUNCTIONS[record.kind](record.tag, record.value, **options)
    return summary_event(record.wall_time, record.step, summary)


class Pipeline:
    """Owns every run directory and event file; fed by `put`, acknowledges through `on_written`."""

    def __init__(self, stats: Stats, fsync_interval_s: float,
                 on_written: Callable[[dict[bytes, int]], None]) -> None:
        self._stats = stats
        self._fsync_interval_s = fsync_interval_s
        self._on_written = on_written
        self._inbox: list[Work] = []
        self._inbox_bytes = 0
        self._inbox_records = 0
        self._ready = threading.Condition()
        self._stopping = False
        self._streams: dict[tuple[bytes, int], _Stream] = {}
        self._runs: dict[str, RunLog] = {}
        self._last_fsync = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="logger-daemon-pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, work: Work) -> None:
        with self._ready:
            self._inbox.append(work)
            self._inbox_bytes += work.nbytes
            self._inbox_records += len(work.records)
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
                self._cycle(batch)
            if time.monotonic() - self._last_fsync >= self._fsync_interval_s:
                self._fsync_all()
            if stopping and not batch:
                for run in self._runs.values():
                    run.close()
                self._runs.clear()
                return

    # -- one cycle ---------------------------------------------------------------------------

    def _cycle(self, batch: list[Work]) -> None:
        groups: defaultdict[tuple[RunLog, str], list[Record]] = defaultdict(list)
        acks: dict[bytes, int] = {}
        closing: list[tuple[bytes, int]] = []
        fsync = False
        for work in batch:
            for record in work.records:
                if record.kind == RecordKind.OPEN:
                    self._write(groups)  # a purge must follow what came before it
                    groups.clear()
                    self._open_stream(work.client, record)
                elif record.kind == RecordKind.CLOSE:
                    closing.append((work.client, record.stream))
                else:
                    run = self._run_for(work.client, record)
                    if run is not None:
                        groups[(run, record.tag)].append(record)
            fsync |= work.flush
            if work.client_gone:
                closing.extend(key for key in self._streams if key[0] == work.client)
            acks[work.client] = work.seq
        touched = self._write(groups)
        for run in touched:
            run.file.flush()
        if fsync:
            self._fsync_all()
        for key in closing:
            self._close_stream(key)
        self._on_written(acks)

    def _open_stream(self, client: bytes, record: Record) -> None:
        options = record.value
        logdir = options.get("logdir")
        suffix = options.get("filename_suffix") or ""
        try:
            if type(logdir) is not str or type(suffix) is not str or "/" in suffix:
                raise BadRunName(f"bad logdir {logdir!r} or filename_suffix {suffix!r}")
            run = self._run_at(resolve_run(logdir, ""), suffix)
        except (BadRunName, OSError) as exc:
            log.warning("refusing a writer: %s", exc)
            self._stats.drop("bad_logdir")
            return
        stream = _Stream(logdir, suffix, {"": run})
        self._streams[(client, record.stream)] = stream
        run.users.add((client, record.stream))
        purge_step = options.get("purge_step")
        if type(purge_step) is int:
            run.purge_from(purge_step, record.wall_time)

    def _run_at(self, path: str, suffix: str) -> RunLog:
        run = self._runs.get(path)
        if run is None:
            run = self._runs[path] = RunLog(path, suffix)
        return run

    def _run_for(self, client: bytes, record: Record) -> RunLog | None:
        stream = self._streams.get((client, record.stream))
        if stream is None:
            self._stats.drop("unknown_stream")
            return None
        run = stream.runs.get(record.run)
        if run is None:
            try:
                run = self._run_at(resolve_run(stream.logdir, record.run), stream.filename_suffix)
            except BadRunName as exc:
                log.warning("dropping a record: %s", exc)
                self._stats.drop("bad_run_name")
                return None
            stream.runs[record.run] = run
            run.users.add((client, record.stream))
        return run

    def _write(self, groups: dict[tuple[RunLog, str], list[Record]]) -> set[RunLog]:
        """Encodes and appends each group in step order; returns the runs written to."""
        touched: set[RunLog] = set()
        written = nbytes = 0
        drop = self._stats.drop
        for (run, tag), records in reduce_records(groups).items():
            records.sort(key=_step_of)  # stable: equal steps keep their arrival order
            try:
                file = run.event_file()
            except OSError as exc:
                log.error("cannot create an event file in %s: %s", run.path, exc)
                drop("io_error", len(records))
                continue
            before = file.bytes_written
            for record in records:
                if not run.accepts(tag, record.step):
                    drop("step_out_of_order")
                    continue
                try:
                    event = encode_record(record)
                except (ValueError, TypeError, OverflowError) as exc:
                    log.warning("cannot encode %s %r at step %d: %s", record.kind.name, tag, record.step, exc)
                    drop("encode_error")
                    continue
                file.write(event)
                written += 1
            nbytes += file.bytes_written - before
            touched.add(run)
        self._stats.add_written(written, nbytes)
        return touched

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


def _step_of(record: Record) -> int:
    return record.step


def array_nbytes(records: list[Record]) -> int:
    """Bytes of array data the records hold (the daemon's queue bound counts these)."""
    return sum(r.value.nbytes for r in records if isinstance(r.value, np.ndarray))
