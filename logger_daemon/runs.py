"""Run directories the daemon owns: safe paths, one event file each, per-tag step order.

TensorBoard keeps a tag's points in step order and discards what it holds at later steps when an
older step shows up, and two writers in one directory clobber each other. So every client writing
a directory goes through the one `RunLog` of that directory, which refuses a step older than one
it has already written for the same tag. `Runs` maps each client's writers to their `RunLog`s.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from logger_client.protocol import DropReason
from logger_daemon.event_codec import session_start_event
from logger_daemon.event_file import Backlog, EventFile
from logger_daemon.history import (
    SESSION_START_TAG,
    RunHistory,
    checkpoint,
    checkpoint_event,
    delivery_mark,
    read_history,
)

if TYPE_CHECKING:
    from logger_daemon.remote import Remotes


class BadRunName(ValueError):
    """A run name that would leave its log directory."""


def resolve_run(logdir: str, run: str) -> str:
    """The directory of sub-run `run` of `logdir`; never outside `logdir` (no `..`, absolute path or link)."""
    if not os.path.isabs(logdir):
        raise BadRunName(f"logdir {logdir!r} is not absolute")
    root = os.path.normpath(logdir)
    if not run:
        return root
    if os.path.isabs(run) or "\0" in run or ".." in run.replace("\\", "/").split("/"):
        raise BadRunName(f"run {run!r} leaves {logdir!r}")
    path = os.path.normpath(os.path.join(root, run))
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise BadRunName(f"run {run!r} leaves {logdir!r} through a link")
    return path


class RunLog:
    """One run directory: its event file (created on first write), the last step of each tag, and
    what its files already held when this daemon opened it (see `history`)."""

    def __init__(self, path: str, filename_suffix: str, backlog: Backlog | None = None) -> None:
        self.path = path
        self.filename_suffix = filename_suffix
        self._backlog = backlog
        self.users: set[tuple[bytes, int]] = set()  # (client, writer id) writing here
        self.last_steps: dict[str, int] = {}
        self.file: EventFile | None = None
        history = self.read_history()
        #: Per client, the last message id whose records for this run were handled (or are being).
        self.delivered = history.delivered
        self._marked = dict(history.delivered)  # what the last delivery mark on disk says
        #: Events the files held after their last delivery mark: skipped if they come again.
        self.unmarked = history.unmarked
        self._disk_last_steps = history.last_steps  # by tag as written
        self._checkpoint = checkpoint(history)  # what the files held, for the file this daemon starts
        #: Clients whose writer opened this run as a new session (see `restart_if_resumed`), each
        #: with the last steps the run held then: steps other writers log later are not its past.
        self.fresh: dict[bytes, dict[str, int]] = {}

    def read_history(self) -> RunHistory:
        """What the run's files already hold (a remote run also reads its uploaded files)."""
        return read_history(self.path)

    def newest_elsewhere(self) -> str | None:
        """The newest name among the run's event files that are not in its directory (a remote
        run's uploaded files): new files must sort after it, as TensorBoard reads by name."""
        return None

    def event_file(self) -> EventFile:
        """The file this daemon appends to, starting with the delivery mark and a checkpoint of what
        is on disk (see `history`)."""
        if self.file is None:
            self.file = EventFile(
                self.path, self.filename_suffix, self._backlog, _continuation_mark, self.newest_elsewhere()
            )
            now = time.time()
            self.file.write(delivery_mark(now, self._marked))
            self.file.write(checkpoint_event(now, self._checkpoint))
        return self.file

    def mark_delivered(self) -> None:
        """Appends a delivery mark of the messages handled so far (see `history`), if this run has
        a file: called once their records are written."""
        if self.file is not None:
            # Optional: while the disk refuses writes, marks must not grow the memory held past its
            # bound, and a later mark covers what a left-out one would have said.
            self.file.write(delivery_mark(time.time(), self.delivered), optional=True)
            self._marked = dict(self.delivered)

    def seed(self, tag: str, written_tag: str) -> None:
        """Continues `tag`'s step order from the files, where it appears as `written_tag`."""
        if tag not in self.last_steps and written_tag in self._disk_last_steps:
            self.last_steps[tag] = last = self._disk_last_steps[written_tag]
            for held in self.fresh.values():  # on disk before any new session opened
                held.setdefault(tag, last)

    def last_step_on_disk(self, written_tag: str) -> int | None:
        """The last step of `written_tag` in the files this daemon found here (None: none)."""
        return self._disk_last_steps.get(written_tag)

    def open_session(self, client: bytes, continuing: bool) -> None:
        """A writer of `client` opens this run: a new session unless others write here or the
        writer continues one (announced again after a fork, or to a new daemon)."""
        if not continuing and not self.users:
            self.fresh[client] = dict(self.last_steps)

    def restart_if_resumed(self, client: bytes, tag: str, step: int, wall_time: float) -> bool:
        """A job resumed from a checkpoint logs steps it logged before: the first record of a new
        session at or below its tag's last step when the session opened starts a new session there
        (TensorBoard then hides the earlier session's events from that step on), so the new points
        win. Steps that writers opening the run with it log meanwhile are no past of its own."""
        held = self.fresh.pop(client, None)
        if held is None:
            return False
        last = held.get(tag)
        if last is None or step > last:
            return False
        self.purge_from(step, wall_time)
        return True

    def accepts(self, tag: str, step: int) -> bool:
        """Whether `step` may follow what `tag` already has; records it if so."""
        last = self.last_steps.get(tag)
        if last is not None and step < last:
            return False
        self.last_steps[tag] = step
        return True

    def first_accepted(self, tag: str, sorted_steps: np.ndarray) -> int:
        """How many of `tag`'s new steps (sorted) come before what it has; records the newest."""
        last = self.last_steps.get(tag)
        first = 0 if last is None else int(np.searchsorted(sorted_steps, last, side="left"))
        if first < len(sorted_steps):
            self.last_steps[tag] = int(sorted_steps[-1])
        return first

    def purge_from(self, step: int, wall_time: float) -> None:
        """A writer resumed at `step`: TensorBoard hides later events of earlier sessions."""
        self.event_file().write(session_start_event(wall_time, step))
        self.last_steps.clear()
        self._disk_last_steps.clear()  # a new session: the files' order no longer binds it

    def flush(self) -> None:
        """Hands what was written to the OS: readable by TensorBoard from then on."""
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _continuation_mark() -> bytes:
    """The mark a file continuing a torn one starts with: it claims nothing (marks may still wait
    in memory, behind records the disk refused), but makes the file one whose events after its
    last mark `history` recognises if they come again."""
    return delivery_mark(time.time(), {})


class RefusedWriter(ValueError):
    """A writer's records cannot go anywhere; `reason` is what they are counted under."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class _Writer:
    """A SummaryWriter of some client: its log directory and the runs it has written."""

    logdir: str
    filename_suffix: str
    runs: dict[str, RunLog] = field(default_factory=dict)
    #: Announced again (after a fork, or to a new daemon): it continues its session.
    continuing: bool = False


WriterKey = tuple[bytes, int]  # (client, writer id)


class Runs:
    """Every run directory the daemon writes, and which client's writer writes where.

    Writers that write the same directory share its `RunLog`, so one file holds them all in step
    order; a directory's file is closed when its last writer is.
    """

    def __init__(self, backlog: Backlog | None = None, remotes: Remotes | None = None) -> None:
        self._writers: dict[WriterKey, _Writer] = {}
        self._runs: dict[str, RunLog] = {}
        self._backlog = backlog
        #: Remote log directories (fsspec URLs), staged and uploaded; None: refused.
        self._remotes = remotes

    def run_of(self, options: dict[str, Any]) -> RunLog:
        """The run an OPEN's options name (its log directory). Raises RefusedWriter."""
        logdir = options.get("logdir")
        suffix = options.get("filename_suffix") or ""
        try:
            if type(logdir) is not str or type(suffix) is not str or "/" in suffix or "\0" in suffix:
                raise BadRunName(f"bad logdir {logdir!r} or filename_suffix {suffix!r}")
            if self._remotes is not None and self._remotes.is_remote(logdir):
                logdir = self._remotes.root(logdir, options.get("storage_options"))  # its staging directory
            return self._run_at(resolve_run(logdir, ""), suffix)
        except (BadRunName, OSError, ValueError) as exc:  # ValueError: e.g. a NUL in a path
            raise RefusedWriter(DropReason.BAD_LOGDIR, f"refusing a writer: {exc}") from exc

    def open_writer(
        self, client: bytes, writer: int, run: RunLog, options: dict[str, Any], wall_time: float, repeated: bool
    ) -> None:
        """Registers a writer of `run` (from `run_of`), with its purge if it asks for one, once:
        not when its OPEN was `repeated` (handled before, by this daemon or the one before it)."""
        purge_step = options.get("purge_step")
        if type(purge_step) is int and not repeated and (SESSION_START_TAG, purge_step, wall_time) not in run.unmarked:
            try:
                run.purge_from(purge_step, wall_time)
            except (OSError, ValueError) as exc:
                raise RefusedWriter(DropReason.BAD_LOGDIR, f"refusing a writer: {exc}") from exc
        continuing = options.get("announced") is True
        run.open_session(client, continuing)
        key = (client, writer)
        self._writers[key] = _Writer(run.path, run.filename_suffix, {"": run}, continuing)
        run.users.add(key)

    def run_for(self, client: bytes, writer: int, run_name: str) -> RunLog:
        """The run a writer's records of sub-run `run_name` go to. Raises RefusedWriter."""
        opened = self._writers.get((client, writer))
        if opened is None:
            raise RefusedWriter(DropReason.UNKNOWN_WRITER, f"writer {writer} of client {client.hex()} is not open")
        run = opened.runs.get(run_name)
        if run is None:
            try:
                run = self._run_at(resolve_run(opened.logdir, run_name), opened.filename_suffix)
            except BadRunName as exc:
                raise RefusedWriter(DropReason.BAD_RUN_NAME, str(exc)) from exc
            opened.runs[run_name] = run
            run.open_session(client, opened.continuing)
            run.users.add((client, writer))
        return run

    def close_writer(self, key: WriterKey) -> list[RunLog]:
        """The writer is closed: files no other writer uses are closed too. Returns those runs."""
        opened = self._writers.pop(key, None)
        if opened is None:
            return []
        closed = []
        for run in opened.runs.values():
            run.users.discard(key)
            if not run.users:
                run.close()
                self._runs.pop(run.path, None)
                closed.append(run)
        return closed

    def close_client(self, client: bytes) -> None:
        """Every writer of a client that is gone."""
        for key in [key for key in self._writers if key[0] == client]:
            self.close_writer(key)

    def open_files(self) -> int:
        return sum(1 for run in list(self._runs.values()) if run.file is not None)

    def fsync(self) -> None:
        for run in self._runs.values():
            if run.file is not None:
                run.file.fsync()

    def close(self) -> None:
        """Closes every file (fsynced first)."""
        for run in self._runs.values():
            run.close()
        self._runs.clear()
        self._writers.clear()

    def _run_at(self, path: str, suffix: str) -> RunLog:
        run = self._runs.get(path)
        if run is None:
            remote = self._remotes.run_log(path, suffix, self._backlog) if self._remotes is not None else None
            run = self._runs[path] = remote or RunLog(path, suffix, self._backlog)
        return run
