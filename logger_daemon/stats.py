"""The daemon's counters: what it received, wrote and dropped (by reason)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, defaultdict
from typing import Any

from logger_client.protocol import DropReason


class Stats:
    """Thread-safe counters shared by the server loop and the pipeline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.received = 0
        self.written = 0
        self.bytes_written = 0
        self.duplicates = 0
        self.dropped: Counter[str] = Counter()
        #: Records written to each run directory (by path), for `status --watch`'s rates.
        self.written_by_run: Counter[str] = Counter()

    def add_received(self, count: int) -> None:
        with self._lock:
            self.received += count

    def add_written(self, records: int, nbytes: int, by_run: Counter[str] | None = None) -> None:
        with self._lock:
            self.written += records
            self.bytes_written += nbytes
            if by_run:
                self.written_by_run.update(by_run)

    def add_duplicates(self, count: int) -> None:
        """Counts records sent again (after a daemon restart) that were already on disk."""
        with self._lock:
            self.duplicates += count

    def drop(self, reason: DropReason, count: int = 1) -> None:
        """Counts `count` records refused or lost for `reason`."""
        with self._lock:
            self.dropped[reason.value] += count

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pid": os.getpid(),
                "uptime_s": round(time.time() - self.started, 3),
                "records_received": self.received,
                "records_written": self.written,
                "records_dropped": dict(self.dropped),
                "records_duplicate": self.duplicates,
                "bytes_written": self.bytes_written,
                "records_written_by_run": dict(self.written_by_run),
            }


class Drops:
    """Records refused while handling client messages: counted in `Stats` at once (so `status`
    shows them as they happen), and per client until its next acknowledgement carries them."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._by_client: defaultdict[bytes, Counter[str]] = defaultdict(Counter)

    def add(self, reason: DropReason, count: int, client: bytes) -> None:
        self._stats.drop(reason, count)
        self._by_client[client][reason.value] += count

    def take(self) -> dict[bytes, Counter[str]]:
        """The per-client counts since the last take."""
        taken, self._by_client = self._by_client, defaultdict(Counter)
        return dict(taken)
