"""One `tfevents` file: naming, appending framed events, flush and fsync, and a disk that refuses.

Files are only ever appended to by this daemon, and a daemon never appends to a file it did not
create: after a restart it starts a new one, so a partial record left by a crash is never followed
by more data (TensorBoard stops reading a file at its first bad record).

Records are appended to a buffer in memory and handed to the OS whole (`flush`, or once a
megabyte waits). When the disk refuses a write (full, over quota, over a file-size limit), the
file is cut back to its last whole record and the rest stays in the buffer, in order, until a
later flush gets it through: a file holds only whole records, and a record is written once. If
the file cannot be cut back, it is left with its torn tail (TensorBoard tolerates one only at the
very end) and the records go on in a new file. One `Backlog` holds what every file of the daemon
keeps that way, under one bound: while a file is held up, a client's record that would take the
backlog past it is refused (the caller counts it), and a file closed while held up gives up what
it holds, counted per client. See docs/design.md, Recovery.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from logger_client.settings import Settings
from logger_daemon.event_codec import file_version_event, scalar_event_rows
from logger_daemon.tfrecord import frame, frame_rows

log = logging.getLogger("logger_daemon")

_file_counter = itertools.count()
#: Buffered bytes past which an append hands the buffer to the OS before the cycle's flush.
_FLUSH_BYTES = 1 << 20


def event_file_name(wall_time: float, suffix: str = "", after: str | None = None) -> str:
    """`events.out.tfevents.<10-digit seconds>.<host>.<pid>.<n>`: unique per daemon process.

    TensorBoard reads a directory's files in name order, and does not go back to a file that sorts
    before the one it reads: so `n` is zero-padded (one daemon's files sort in the order it opened
    them), and a name that would not sort `after` the newest file there (another daemon's, in the
    same second; a smaller pid) takes the second after that file's.
    """
    seconds = int(wall_time)
    name = _name(seconds, suffix)
    if after is not None and name <= after:
        try:
            seconds = int(after.split(".")[3]) + 1
        except (IndexError, ValueError):  # a foreign name that does not carry seconds there
            return name
        name = _name(seconds, suffix)
    return name


def _name(seconds: int, suffix: str) -> str:
    return f"events.out.tfevents.{seconds:010d}.{socket.gethostname()}.{os.getpid()}.{next(_file_counter):08d}{suffix}"


def _newest_event_file(directory: str) -> str | None:
    names = [name for name in os.listdir(directory) if name.startswith("events.out.tfevents.")]
    return max(names, default=None)


class RawFile(Protocol):
    """What an event file needs of the file it writes (an unbuffered `io.FileIO`)."""

    def write(self, data: memoryview, /) -> int | None: ...
    def truncate(self, size: int, /) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


def create_exclusive(path: str) -> RawFile:
    """Creates `path` (never an existing file) for appending, unbuffered: every write goes to the
    end of the file, also after it was cut back."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o666)
    return open(fd, "ab", buffering=0)


class Backlog:
    """What the daemon's event files hold in memory because the disk refused it, under one bound,
    and what they handed to the OS or gave up since the last `take`. Used by the pipeline thread;
    `held` and `error` are safe to read from another."""

    def __init__(self, limit_bytes: int = Settings.daemon_held_bytes) -> None:
        self.limit_bytes = limit_bytes
        #: Files holding records the disk refused (a dict: kept in the order they were refused).
        self.blocked: dict[EventFile, None] = {}
        self._written_records = 0
        self._written_bytes = 0
        self._written_by_directory: Counter[str] = Counter()
        self._lost: Counter[bytes] = Counter()

    def held(self) -> tuple[int, int]:
        """(client records, bytes) held because the disk refused them."""
        files = list(self.blocked)
        return sum(f.held_records for f in files), sum(f.held_bytes for f in files)

    def error(self) -> str | None:
        """Why the disk refuses writes now; None when every write goes through."""
        files = list(self.blocked)
        return files[0].error if files else None

    def retry(self) -> None:
        """Tries again to write what each held-up file holds."""
        for file in list(self.blocked):
            file.flush()

    def count_written(self, records: int, nbytes: int, directory: str) -> None:
        self._written_records += records
        self._written_bytes += nbytes
        if records:
            self._written_by_directory[directory] += records

    def count_lost(self, owners: Counter[bytes]) -> None:
        self._lost.update(owners)

    def take(self) -> tuple[int, int, Counter[bytes]]:
        """(client records written, bytes written, client records given up per owner) since the
        last take."""
        taken = self._written_records, self._written_bytes, self._lost
        self._written_records = self._written_bytes = 0
        self._lost = Counter()
        return taken

    def take_by_directory(self) -> Counter[str]:
        """Client records written since the last call, by the run directory of their file."""
        taken, self._written_by_directory = self._written_by_directory, Counter()
        return taken


class _Run:
    """`count` records of `size` bytes each, one after another in a file's buffer, and who sent
    them: a client id, an array of one per record, or None for the daemon's own events."""

    __slots__ = ("count", "owners", "size")

    def __init__(self, count: int, owners: bytes | np.ndarray | None) -> None:
        self.count, self.owners, self.size = count, owners, 0


class EventFile:
    """An open event file in `directory`, starting with the file_version record.

    `continuation`, if given, is an event to write after the file_version record of a file that
    continues this one after a torn tail. `after` names a file that is not in `directory` but is
    read with it (a remote run's, uploaded): new names sort after it too. Files are made by
    `create_exclusive` (which tests replace with files on a disk that fills up).
    """

    def __init__(
        self,
        directory: str,
        filename_suffix: str = "",
        backlog: Backlog | None = None,
        continuation: Callable[[], bytes] | None = None,
        after: str | None = None,
    ) -> None:
        os.makedirs(directory, exist_ok=True)
        self._directory, self._suffix, self._after = directory, filename_suffix, after
        self._backlog = backlog if backlog is not None else Backlog()
        self._continuation = continuation
        self._buffer = bytearray()
        self._runs: deque[_Run] = deque()  # what `_buffer` holds, in order
        #: Client records in the buffer.
        self.held_records = 0
        #: Bytes ever appended, and of those the bytes now on disk whole or given up: an append
        #: is settled once `settled` reaches what `appended` was after it.
        self.appended = self.settled = 0
        #: Bytes of the current file on disk, whole records only.
        self.bytes_written = 0
        #: Why the disk refuses this file's records now; None when writes go through.
        self.error: str | None = None
        self._unsynced = False
        self._closed = False
        now = time.time()
        self.path, file = self._open(now)
        #: None after a torn tail, until a write opens the file that continues it.
        self._file: RawFile | None = file
        self.write(file_version_event(now))

    @property
    def held_bytes(self) -> int:
        return len(self._buffer)

    def write(self, event: bytes, optional: bool = False) -> None:
        """Appends one serialized Event of the daemon's own (file version, delivery mark, session
        start), framed here. Visible to readers after `flush()`. Never refused, unless `optional`
        (a delivery mark: the next one says the same and more): then it is left out where a
        client's record would be refused."""
        framed = frame(event)
        if not (optional and self._refuses(len(framed))):
            self._append(framed, _Run(1, None))

    def write_record(self, events: list[bytes], owner: bytes) -> bool:
        """Appends the Events of one record of client `owner`, whole. False if refused: the disk
        refuses this file's writes and the backlog is at its bound (nothing is appended)."""
        framed = b"".join(map(frame, events))
        if not framed:  # a record whose encoder wrote files beside the events (the projector's)
            self._backlog.count_written(1, 0, self._directory)
        elif self._refuses(len(framed)):
            return False
        else:
            self._append(framed, _Run(1, owner))
        return True

    def write_scalars(
        self,
        tag: str,
        wall_times: np.ndarray,
        steps: np.ndarray,
        values: np.ndarray,
        owners: np.ndarray,
        node_names: list[str] | None = None,
        name_of_row: np.ndarray | None = None,
    ) -> int:
        """Appends one simple-value scalar Event per row of the columns, encoded and framed on
        whole columns (the bytes `write` would give each Event); `owners` (object array) names
        each row's client. `tag` is written as given; with `node_names`, row i's value carries
        `node_names[name_of_row[i]]` (see `scalar_event_rows`). Returns how many rows, from the
        first, were appended: the rest are refused, as `write_record` refuses."""
        done = 0
        for rows in scalar_event_rows(tag, wall_times, steps, values, node_names, name_of_row):
            count, size = rows.shape[0], rows.shape[1] + 16  # framing adds 16 bytes per record
            if self in self._backlog.blocked:  # as many as the bound has room for
                count = min(count, max(0, self._backlog.limit_bytes - self._backlog.held()[1]) // size)
            if count:
                self._append(frame_rows(rows[:count]), _Run(count, owners[done : done + count]))
                done += count
            if count < rows.shape[0]:
                break
        return done

    def flush(self) -> bool:
        """Hands the buffered records to the OS: TensorBoard can read them from then on. False
        while the disk refuses them: they stay buffered, in order, for the next flush."""
        if not self._buffer:
            return True
        done, refused = 0, None
        try:
            if self._file is None:
                self._file = self._continue()
            with memoryview(self._buffer) as pending:
                while done < len(pending):
                    written = self._file.write(pending[done:])
                    if not written:
                        raise OSError(errno.EIO, "the file took no bytes")
                    done += written
        except OSError as exc:
            # Only the words: the exception's frames would keep views of the buffer alive.
            refused = str(exc.strerror or exc)
        if refused is not None:
            self._refused(refused, done)
            return False
        if self.error is not None:
            log.warning("writing %s again: the %d record(s) held are written", self.path, self.held_records)
            self.error = None
            self._backlog.blocked.pop(self, None)
        self._backlog.count_written(self.held_records, done, self._directory)  # all of it: no record to count out
        self._buffer.clear()
        self._runs.clear()
        self.held_records = 0
        self.settled += done
        self.bytes_written += done
        self._unsynced = True
        return True

    def fsync(self) -> None:
        """Flushes and asks the OS to put the records on stable storage."""
        self.flush()
        if self._unsynced and self._file is not None:
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:  # the records were handed over; the daemon must go on
                log.error("cannot fsync %s: %s", self.path, exc)
                return
            self._unsynced = False

    def close(self) -> None:
        """Writes what it can, fsyncs and closes; what the disk still refuses is given up, counted
        per client in the backlog. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if not self.flush():
            self._give_up()
        self.fsync()
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                log.error("cannot close %s: %s", self.path, exc)

    # -- the buffer and the disk -------------------------------------------------------------------

    def _refuses(self, nbytes: int) -> bool:
        backlog = self._backlog
        return self in backlog.blocked and backlog.held()[1] + nbytes > backlog.limit_bytes

    def _append(self, framed: bytes, run: _Run) -> None:
        run.size = len(framed) // run.count  # records of one run are of one size
        self._buffer += framed
        self._runs.append(run)
        if run.owners is not None:
            self.held_records += run.count
        self.appended += len(framed)
        if self.error is None and len(self._buffer) >= _FLUSH_BYTES:
            self.flush()

    def _settle(self, nbytes: int) -> int:
        """Takes the whole records among the first `nbytes` of the buffer off it, as written;
        returns their bytes."""
        whole = 0
        while self._runs:
            run = self._runs[0]
            count = min(run.count, (nbytes - whole) // run.size)
            whole += count * run.size
            if run.owners is not None:
                self.held_records -= count
                self._backlog.count_written(count, 0, self._directory)
            if count < run.count:
                run.count -= count
                if isinstance(run.owners, np.ndarray):
                    run.owners = run.owners[count:]
                break
            self._runs.popleft()
        del self._buffer[:whole]
        self.settled += whole
        self.bytes_written += whole
        self._backlog.count_written(0, whole, self._directory)
        self._unsynced = self._unsynced or whole > 0
        return whole

    def _refused(self, error: str, done: int) -> None:
        """The disk took `done` bytes of the buffer and then refused: the whole records among them
        stay, the rest is cut off the file (or the file is left, torn) and stays buffered."""
        whole = self._settle(done)
        if whole < done and self._file is not None:
            try:
                self._file.truncate(self.bytes_written)
            except OSError as cut_exc:
                log.error("cannot cut %s back to its last whole record (%s): a new file follows", self.path, cut_exc)
                self._close_quietly()
        if self.error is None:
            log.error("the disk refuses writes to %s (%s): holding its records in memory", self.path, error)
        self.error = f"{error}: {self.path}"
        self._backlog.blocked[self] = None

    def _give_up(self) -> None:
        lost: Counter[bytes] = Counter()
        for run in self._runs:
            if isinstance(run.owners, bytes):
                lost[run.owners] += run.count
            elif run.owners is not None:
                lost.update(run.owners.tolist())
        self._backlog.count_lost(lost)
        log.error("giving up %d record(s) the disk refused for %s", self.held_records, self.path)
        self.settled += len(self._buffer)
        self._buffer.clear()
        self._runs.clear()
        self.held_records = 0
        self.error = None
        self._backlog.blocked.pop(self, None)

    def _open(self, now: float) -> tuple[str, RawFile]:
        newest = max(filter(None, (_newest_event_file(self._directory), self._after)), default=None)
        while True:
            path = os.path.join(self._directory, event_file_name(now, self._suffix, newest))
            try:
                return path, create_exclusive(path)
            except FileExistsError:  # never reuse a name
                continue

    def _continue(self) -> RawFile:
        """A new file for the records after a torn one, started as every file is (written at once,
        whole or not at all)."""
        now = time.time()
        head = frame(file_version_event(now)) + (frame(self._continuation()) if self._continuation else b"")
        path, file = self._open(now)
        try:
            if file.write(memoryview(head)) != len(head):
                raise OSError(errno.ENOSPC, "the file took part of its first records")
        except OSError:
            file.close()
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        log.warning("going on in %s after the torn %s", path, self.path)
        self.path, self.bytes_written, self._unsynced = path, len(head), True
        return file

    def _close_quietly(self) -> None:
        file, self._file = self._file, None
        try:
            if file is not None:
                file.close()
        except OSError:
            pass
