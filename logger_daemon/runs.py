"""Run directories the daemon owns: safe paths, one event file each, per-tag step order.

TensorBoard keeps a tag's points in step order and discards what it holds at later steps when an
older step shows up, and two writers in one directory clobber each other. So every client writing
a directory goes through the one `RunLog` of that directory, which refuses a step older than one
it has already written for the same tag.
"""

from __future__ import annotations

import os

import numpy as np

from logger_daemon.event_codec import session_start_event
from logger_daemon.event_file import EventFile


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
    """One run directory: its event file (created on first write) and the last step of each tag."""

    def __init__(self, path: str, filename_suffix: str) -> None:
        self.path = path
        self.filename_suffix = filename_suffix
        self.users: set[tuple[bytes, int]] = set()  # (client, stream) writing here
        self.last_steps: dict[str, int] = {}
        self.file: EventFile | None = None

    def event_file(self) -> EventFile:
        if self.file is None:
            self.file = EventFile(self.path, self.filename_suffix)
        return self.file

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

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
