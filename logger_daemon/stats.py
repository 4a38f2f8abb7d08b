"""The daemon's counters: what it received, wrote and dropped (by reason)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any


class Stats:
    """Thread-safe counters shared by the server loop and the pipeline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.received = 0
        self.written = 0
        self.bytes_written = 0
        self.dropped: Counter[str] = Counter()

    def add_received(self, count: int) -> None:
        with self._lock:
            self.received += count

    def add_written(self, records: int, nbytes: int) -> None:
        with self._lock:
            self.written += records
            self.bytes_written += nbytes

    def drop(self, reason: str, count: int = 1) -> None:
        """Counts `count` records refused or lost for `reason`."""
        with self._lock:
            self.dropped[reason] += count

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pid": os.getpid(),
                "uptime_s": round(time.time() - self.started, 3),
                "records_received": self.received,
                "records_written": self.written,
                "records_dropped": dict(self.dropped),
                "bytes_written": self.bytes_written,
            }
