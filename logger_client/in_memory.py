"""A `Transport` that keeps what writers log in this process, for tests of training code, or
discards it (the transport of `SummaryWriter(write_to_disk=False)`). No daemon, no thread.

    transport = InMemoryTransport()
    writer = SummaryWriter("runs/x", transport=transport)
    ...
    [record.value for record in transport.records() if record.tag == "loss"]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from .protocol import CONTROL_KINDS, KIND, OPTIONS, SCALAR_ROW, RecordKind
from .transport import TransportStats

__all__ = ["InMemoryTransport", "LoggedRecord"]


class LoggedRecord(NamedTuple):
    """One logged data record, as the daemon would receive it (arrays as owned numpy copies)."""

    kind: RecordKind
    writer: int
    run: str
    tag: str
    step: int
    wall_time: float
    value: Any
    options: dict[str, Any]


class InMemoryTransport:
    """Keeps every record (`keep=True`) or none. Thread-safe as the daemon's transport is: writers
    append to `queue` without a lock."""

    #: Never a backlog: there is nothing to pack.
    batch_records = 1 << 62

    def __init__(self, keep: bool = True) -> None:
        self.queue: Any = [] if keep else _NullQueue()
        self._lock = threading.Lock()
        self._next_writer = 1
        self._scalar_keys: dict[int, tuple[int, str, str]] = {}
        #: Every writer opened, by id: its OPEN options (log directory, purge step, ...).
        self.writers: dict[int, dict[str, Any]] = {}

    def open_writer(self, options: dict[str, Any]) -> int:
        with self._lock:
            writer = self._next_writer
            self._next_writer += 1
            self.writers[writer] = options
        self.queue.append((RecordKind.OPEN, writer, "", "", 0, time.time(), options))
        return writer

    def scalar_key(self, writer: int, run: str, tag: str) -> int | None:
        with self._lock:
            key = len(self._scalar_keys)
            self._scalar_keys[key] = (writer, run, tag)
        return key

    def close_writer(self, writer: int, timeout_s: float) -> bool:
        self.queue.append((RecordKind.CLOSE, writer, "", "", 0, time.time(), None))
        return True

    def submit_array(self, record: tuple) -> None:
        self.queue.append(record)

    def empty_array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def on_backlog(self, length: int, added: int = 1) -> None:
        pass

    def flush(self, timeout_s: float) -> bool:
        return True

    def records(self) -> list[LoggedRecord]:
        """Every data record logged so far, in order; packed scalar rows read back."""
        out = []
        for item in list(self.queue):
            if type(item) is bytes:
                key, step, wall_time, value = SCALAR_ROW.unpack(item)
                writer, run, tag = self._scalar_keys[key]
                out.append(LoggedRecord(RecordKind.SCALAR, writer, run, tag, step, wall_time, value, {}))
            elif item[KIND] not in CONTROL_KINDS:
                options = item[OPTIONS] if len(item) > OPTIONS else {}
                kind, writer, run, tag, step, wall_time, value = item[:OPTIONS]
                out.append(LoggedRecord(RecordKind(kind), writer, run, tag, step, wall_time, value, options))
        return out

    def stats(self) -> TransportStats:
        kept = len(self.records())
        return {
            "records_sent": kept,
            "records_written": kept,
            "records_dropped": {},
            "array_bytes_held": 0,
            "arena_bytes": 0,
            "queued": 0,
            "records_pending": 0,
            "error": None,
            "write_error": None,
        }


class _NullQueue:
    """A queue that keeps nothing: every append is discarded."""

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Any]:
        return iter(())
