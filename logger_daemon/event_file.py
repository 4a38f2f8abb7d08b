"""One `tfevents` file: naming, appending framed events, flush and fsync.

Files are only ever appended to by this daemon, and a daemon never appends to a file it did not
create: after a restart it starts a new one, so a partial record left by a crash is never followed
by more data (TensorBoard stops reading a file at its first bad record).
"""

from __future__ import annotations

import itertools
import os
import socket
import time

import numpy as np

from logger_daemon.event_codec import file_version_event, scalar_event_rows
from logger_daemon.tfrecord import frame, frame_rows

_file_counter = itertools.count()


def event_file_name(wall_time: float, suffix: str = "") -> str:
    """`events.out.tfevents.<10-digit seconds>.<host>.<pid>.<n>`: unique per daemon process.

    TensorBoard reads a directory's files in name order, so `n` is zero-padded: files one
    daemon opens in the same second sort in the order it opened them.
    """
    return (
        f"events.out.tfevents.{int(wall_time):010d}.{socket.gethostname()}.{os.getpid()}."
        f"{next(_file_counter):08d}{suffix}"
    )


class EventFile:
    """An open event file in `directory`, starting with the file_version record."""

    def __init__(self, directory: str, filename_suffix: str = "") -> None:
        os.makedirs(directory, exist_ok=True)
        now = time.time()
        while True:
            self.path = os.path.join(directory, event_file_name(now, filename_suffix))
            try:
                self._file = open(self.path, "xb", buffering=1 << 20)  # noqa: SIM115 (open for the file's life); "x": never reuse a name
                break
            except FileExistsError:
                continue
        self.bytes_written = 0
        self._unflushed = False
        self._unsynced = False
        self.write(file_version_event(now))

    def write(self, event: bytes) -> None:
        """Appends one serialized Event (framed here); visible to readers after `flush()`."""
        self._write_framed(frame(event))

    def write_scalars(
        self,
        tag: str,
        wall_times: np.ndarray,
        steps: np.ndarray,
        values: np.ndarray,
        node_names: list[str] | None = None,
        name_of_row: np.ndarray | None = None,
    ) -> None:
        """Appends one simple-value scalar Event per row of the columns, encoded and framed on
        whole columns (the bytes `write` would give each Event). `tag` is written as given; with
        `node_names`, row i's value carries `node_names[name_of_row[i]]` (see `scalar_event_rows`)."""
        for rows in scalar_event_rows(tag, wall_times, steps, values, node_names, name_of_row):
            self._write_framed(frame_rows(rows))

    def _write_framed(self, records: bytes) -> None:
        self._file.write(records)
        self.bytes_written += len(records)
        self._unflushed = self._unsynced = True

    def flush(self) -> None:
        """Hands buffered records to the OS: TensorBoard can read them from now on."""
        if self._unflushed:
            self._file.flush()
            self._unflushed = False

    def fsync(self) -> None:
        """Flushes and asks the OS to put the records on stable storage."""
        self.flush()
        if self._unsynced:
            os.fsync(self._file.fileno())
            self._unsynced = False

    def close(self) -> None:
        """fsyncs and closes; closing twice is harmless."""
        if not self._file.closed:
            self.fsync()
            self._file.close()
