"""Remote log directories: a writer's `logdir` that is an fsspec URL (`s3://bucket/run`, `gs://`,
`az://`, `memory://`, ...).

The daemon writes a remote run exactly as a local one, into a staging directory of its own
(`Settings.staging_dir`, one subdirectory per URL), and uploads each finished segment: the run's
event file is closed and a new one started once it holds `segment_bytes` or is `segment_s` old,
and when the run closes. A segment is a complete event file (it starts with the `file_version`
event and a delivery mark, like every file the daemon starts), uploaded once, whole, under its own
name, so the remote store holds only complete files and the bytes sent equal the bytes logged.

Uploads run on a thread of their own, in name order per directory (TensorBoard reads a run's files
in name order). A failed upload is retried with backoff, for as long as the daemon lives; the
staged file is deleted only once the store shows it, with its size. Segments still staged when a
daemon stops (or dies) are uploaded when a writer next opens their URL; a retried upload first
checks whether the object is already there, so nothing is sent twice.

A daemon opening a remote run reads its history (delivery marks, each tag's last step, see
`history`) from the files the remote store holds and from the staged ones, as it reads a local
directory, so a restarted daemon or a job resumed on another node neither repeats nor reorders
what is there. Within one daemon, the history read at a run's first open is kept, and a later
open reads only the files added since.
"""

from __future__ import annotations

import concurrent.futures
import copy
import hashlib
import logging
import os
import posixpath
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from logger_client.protocol import is_url_logdir
from logger_client.settings import Settings
from logger_daemon.event_file import Backlog, EventFile
from logger_daemon.history import RunHistory, read_file_into
from logger_daemon.runs import RunLog

log = logging.getLogger("logger_daemon")

_EVENTS = "events.out.tfevents."
#: The first retry of a failed upload waits this long; each next one twice as long.
_FIRST_RETRY_S = 1.0


class RemoteError(ValueError):
    """A remote log directory the daemon cannot use (no fsspec backend for it, bad options)."""


def filesystem(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """The fsspec filesystem of `url` and the path within it. Raises RemoteError."""
    scheme = url.split("://", 1)[0]
    try:
        import fsspec.core
    except ImportError:
        raise RemoteError(f"{scheme}:// log directories need fsspec: pip install fsspec") from None
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:  # fsspec's message names the backend to install
        raise RemoteError(f"{scheme}:// log directories need their fsspec backend: {exc}") from None
    except Exception as exc:  # unknown protocol, options the backend refuses
        raise RemoteError(f"cannot use {url!r}: {exc!r}") from None


def _staging_name(url: str) -> str:
    """The staging subdirectory of `url`: readable, and unique by a hash of the whole URL."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", url)[:60].strip("_.")
    return f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


# -- uploads ----------------------------------------------------------------------------------------


@dataclass(eq=False)
class Segment:
    """A staged event file and where it goes."""

    local: str
    remote: str
    fs: Any
    #: A previous try (or a previous daemon) may have stored it already: look before sending.
    maybe_there: bool = False
    #: A file beside the event files (the projector's), rewritten in place: kept after its upload,
    #: uploaded whole again when it changes.
    keep: bool = False
    size: int = 0
    attempts: int = 0
    next_try: float = 0.0
    done: bool = False

    @property
    def directory(self) -> str:
        return posixpath.dirname(self.remote)


class Uploader:
    """Uploads segments on its own thread, oldest first and in order per remote directory; retries
    failures with backoff; deletes a staged file once the store has it."""

    def __init__(self, retry_max_s: float, on_uploaded: Callable[[], None] | None = None) -> None:
        self._retry_max_s = retry_max_s
        self.on_uploaded = on_uploaded
        self._queue: list[Segment] = []
        self._queued: set[str] = set()  # local paths in the queue
        self._ready = threading.Condition()
        self._stopping = False
        self.uploaded = 0
        self.bytes_uploaded = 0
        self.failures = 0
        self._thread: threading.Thread | None = None

    def put(self, segment: Segment) -> None:
        """Queues `segment`, unless its file is queued already (or uploaded and gone)."""
        with self._ready:
            if segment.local in self._queued:
                return
            try:  # under the lock: a file that left the queue was deleted before it left
                segment.size = os.path.getsize(segment.local)
            except FileNotFoundError:
                return
            except OSError as exc:
                log.error("cannot queue %s for upload: %s", segment.local, exc)
                return
            self._queued.add(segment.local)
            self._queue.append(segment)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="logger-daemon-upload", daemon=True)
                self._thread.start()
            self._ready.notify()

    def pending(self, directory: str | None = None) -> list[Segment]:
        """Segments not uploaded yet (of one remote directory, if given)."""
        with self._ready:
            return [s for s in self._queue if directory is None or s.directory == directory]

    def counts(self) -> dict[str, int]:
        with self._ready:
            return {
                "segments_uploaded": self.uploaded,
                "bytes_uploaded": self.bytes_uploaded,
                "segments_pending": len(self._queue),
                "bytes_pending": sum(s.size for s in self._queue),
                "upload_failures": self.failures,
            }

    def drain(self, timeout_s: float) -> bool:
        """Waits until every queued segment is uploaded; False if some are not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._ready:
            while self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ready.wait(left)
        return True

    def stop(self) -> None:
        """Stops after the upload in progress; what is queued stays staged."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()

    def _due(self) -> tuple[list[Segment], float | None]:
        """The segments to try now (the oldest pending one of each directory, if its retry time has
        come) and how long until the next one is due."""
        now = time.monotonic()
        due: list[Segment] = []
        wait: float | None = None
        seen: set[str] = set()
        for segment in self._queue:
            if segment.directory in seen:
                continue  # a directory's files go up in name order: wait for the one before
            seen.add(segment.directory)
            if segment.next_try <= now:
                due.append(segment)
            else:
                wait = min(wait or segment.next_try - now, segment.next_try - now)
        return due, wait

    def _run(self) -> None:
        while True:
            with self._ready:
                due, wait = self._due()
                while not due and not self._stopping:
                    self._ready.wait(wait)
                    due, wait = self._due()
                if self._stopping:
                    return
            for segment in due:
                self._upload(segment)

    def _upload(self, segment: Segment) -> None:
        fs = segment.fs
        try:
            if segment.keep:  # as it is now: it may have grown since it was queued
                segment.size = os.path.getsize(segment.local)
            if segment.keep or not (segment.maybe_there and _stored(fs, segment.remote, segment.size)):
                fs.put_file(segment.local, segment.remote)
                if not _stored(fs, segment.remote, segment.size):
                    raise OSError(f"{segment.remote} is not in the store with {segment.size} bytes after its upload")
        except Exception as exc:  # whatever the backend raises: keep the file, count, retry
            segment.attempts += 1
            segment.maybe_there = True  # the store may have taken it before the error
            delay = retry_delay(segment.attempts, self._retry_max_s)
            segment.next_try = time.monotonic() + delay
            with self._ready:
                self.failures += 1
            log.warning(
                "upload of %s to %s failed (try %d), retrying in %.0fs: %r",
                segment.local,
                segment.remote,
                segment.attempts,
                delay,
                exc,
            )
            return
        try:
            if not segment.keep:
                os.unlink(segment.local)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("uploaded %s but cannot delete it: %s", segment.local, exc)
        with self._ready:
            self._queue.remove(segment)
            self._queued.discard(segment.local)
            self.uploaded += 1
            self.bytes_uploaded += segment.size
            segment.done = True
            self._ready.notify_all()
        if self.on_uploaded is not None:
            self.on_uploaded()


def retry_delay(failures: int, retry_max_s: float) -> float:
    """How long to wait after the `failures`-th failed try of an upload: 1 s, doubling, at most
    `retry_max_s`."""
    return min(retry_max_s, _FIRST_RETRY_S * 2 ** min(failures - 1, 62))


def _stored(fs: Any, path: str, size: int) -> bool:
    """Whether the store holds `path` with `size` bytes (asked afresh, not from a listing cache)."""
    fs.invalidate_cache(path)
    try:
        return int(fs.info(path)["size"]) == size
    except FileNotFoundError:
        return False


# -- remote runs ----------------------------------------------------------------------------------


@dataclass
class RemoteRoot:
    """A remote log directory: its filesystem, its path there, and its staging directory."""

    url: str
    fs: Any
    path: str
    staging: str

    def remote_dir(self, local_dir: str) -> str:
        """Where the run staged in `local_dir` (this root's staging directory or below) goes."""
        relative = os.path.relpath(local_dir, self.staging)
        return self.path if relative == "." else posixpath.join(self.path, *relative.split(os.sep))


class RemoteRunLog(RunLog):
    """A run of a remote log directory: written in its staging directory, and rolled into
    segments that the uploader sends."""

    def __init__(
        self, path: str, filename_suffix: str, backlog: Backlog | None, root: RemoteRoot, remotes: Remotes
    ) -> None:
        self.root = root
        self.remote_dir = root.remote_dir(path)
        self._remotes = remotes
        self._started = 0.0
        super().__init__(path, filename_suffix, backlog)

    def read_history(self) -> RunHistory:
        return self._remotes.history(self)

    def newest_elsewhere(self) -> str | None:
        return self._remotes.newest_name(self)

    def event_file(self) -> EventFile:
        if self.file is None:
            self._started = time.monotonic()
        return super().event_file()

    def roll(self) -> None:
        """Closes the current segment (fsynced) and queues it for upload; the next write starts
        a new one."""
        file, self.file = self.file, None
        if file is None:
            return
        try:
            file.close()
        finally:
            # Every staged event file of the run: one the disk tore goes on in a new file (see
            # event_file), and each is a segment.
            for name in _event_files(self.path):
                self._remotes.upload(self, os.path.join(self.path, name))
            self._remotes.upload_side_files(self)

    def roll_if_due(self, now: float, segment_bytes: int, segment_s: float) -> None:
        file = self.file
        if file is None or file.error is not None:  # closing a file the disk holds up gives up records
            return
        if file.bytes_written >= segment_bytes or now - self._started >= segment_s:
            self.roll()

    def close(self) -> None:
        self.roll()
        self._remotes.closed(self)


class Remotes:
    """The daemon's remote log directories, their runs, staging and uploads."""

    def __init__(self, settings: Settings) -> None:
        self.staging_dir = os.path.abspath(settings.staging_dir or os.path.join(settings.runtime_dir, "staging"))
        self._segment_bytes = settings.segment_bytes
        self._segment_s = settings.segment_s
        self._timeout_s = settings.remote_timeout_s
        self.wait_s = settings.upload_wait_s
        self.uploader = Uploader(settings.upload_retry_max_s)
        self._roots: dict[str, RemoteRoot] = {}  # by URL
        self._open: dict[str, RemoteRunLog] = {}  # by staging path
        #: Per staging path: the last file name read into its history, and the history then.
        self._history: dict[str, tuple[str, RunHistory]] = {}
        self.history_errors = 0
        self._side_files: dict[str, tuple[int, int]] = {}  # staged path -> (size, mtime) last queued
        self._calls: concurrent.futures.ThreadPoolExecutor | None = None

    # -- for Runs ---------------------------------------------------------------------------------

    def is_remote(self, logdir: str) -> bool:
        return is_url_logdir(logdir)

    def root(self, url: str, storage_options: Any) -> str:
        """The staging directory of remote log directory `url`. Raises RemoteError."""
        url = url.rstrip("/")
        root = self._roots.get(url)
        if root is None:
            if storage_options is not None and not isinstance(storage_options, dict):
                raise RemoteError(f"storage_options must be a map, got {type(storage_options).__name__}")
            fs, path = filesystem(url, storage_options)
            staging = os.path.join(self.staging_dir, _staging_name(url))
            root = self._roots[url] = RemoteRoot(url, fs, path.rstrip("/"), staging)
        return root.staging

    def run_log(self, path: str, filename_suffix: str, backlog: Backlog | None = None) -> RunLog | None:
        """A `RemoteRunLog` if `path` is a staging directory (or below one), else None."""
        for root in self._roots.values():
            if path == root.staging or path.startswith(root.staging + os.sep):
                run = RemoteRunLog(path, filename_suffix, backlog, root, self)
                self._open[path] = run
                return run
        return None

    # -- for RemoteRunLog --------------------------------------------------------------------------

    def history(self, run: RemoteRunLog) -> RunHistory:
        """The run's history from the store's files and the staged ones (see the module's doc);
        queues staged files a previous daemon left for upload."""
        staged = _event_files(run.path)
        for name in staged:
            self.upload(run, os.path.join(run.path, name), maybe_there=True)
        fs, remote_dir = run.root.fs, run.remote_dir
        listed = True
        try:
            stored = self._call(lambda: _remote_event_files(fs, remote_dir))
        except Exception as exc:
            listed = False
            self.history_errors += 1
            log.warning(
                "cannot list %s (%r): continuing from the %d staged file(s) only", run.root.url, exc, len(staged)
            )
            stored = []
        last, history = self._history.get(run.path, ("", RunHistory()))
        history = copy.deepcopy(history)
        names = sorted(set(staged) | set(stored))
        for name in names:
            if name <= last:
                continue
            try:
                with open(os.path.join(run.path, name), "rb") as file:
                    data = file.read()
            except FileNotFoundError:  # uploaded since it was listed
                try:
                    data = self._call(partial(fs.cat_file, posixpath.join(remote_dir, name)))
                except Exception as exc:
                    self.history_errors += 1
                    log.warning("cannot read %s/%s for its history: %r", remote_dir, name, exc)
                    continue
            read_file_into(history, data)
        if listed:  # else the next open tries the store again
            self._history[run.path] = (names[-1] if names else "", copy.deepcopy(history))
        return history

    def newest_name(self, run: RemoteRunLog) -> str | None:
        """The newest event file name the run's history read (in the store or staged)."""
        return self._history.get(run.path, ("", None))[0] or None

    def upload(self, run: RemoteRunLog, local: str, maybe_there: bool = False) -> None:
        remote = posixpath.join(run.remote_dir, os.path.basename(local))
        self.uploader.put(Segment(local, remote, run.root.fs, maybe_there))

    def upload_side_files(self, run: RemoteRunLog) -> None:
        """Queues the files beside the run's event files (the projector's) that changed since they
        were last queued: they are rewritten in place, so they go whole, and stay staged."""
        for directory, _, names in os.walk(run.path):
            for name in names:
                if name.startswith(_EVENTS):
                    continue
                local = os.path.join(directory, name)
                try:
                    status = os.stat(local)
                except OSError:
                    continue
                version = (status.st_size, status.st_mtime_ns)
                if self._side_files.get(local) == version:
                    continue
                self._side_files[local] = version
                remote = posixpath.join(run.root.remote_dir(directory), name)
                self.uploader.put(Segment(local, remote, run.root.fs, keep=True))

    def closed(self, run: RemoteRunLog) -> None:
        self._open.pop(run.path, None)

    # -- for Pipeline -----------------------------------------------------------------------------

    def roll_due(self) -> None:
        """Rolls every open remote run whose segment is big or old enough (write thread)."""
        now = time.monotonic()
        for run in list(self._open.values()):
            run.roll_if_due(now, self._segment_bytes, self._segment_s)

    def pending_of(self, runs: Iterable[RunLog]) -> list[Segment]:
        """Segments of these runs that are not uploaded yet."""
        return [s for run in runs if isinstance(run, RemoteRunLog) for s in self.uploader.pending(run.remote_dir)]

    def counts(self) -> dict[str, int]:
        """Upload counters for `status` and acknowledgements; empty while no remote dir was used."""
        if not self._roots:
            return {}
        return {**self.uploader.counts(), "history_errors": self.history_errors}

    def stop(self, timeout_s: float) -> bool:
        """Waits up to `timeout_s` for the uploads queued, then stops uploading."""
        done = self.uploader.drain(timeout_s)
        if not done:
            log.warning(
                "stopping with %d segment(s) still staged in %s", len(self.uploader.pending()), self.staging_dir
            )
        self.uploader.stop()
        return done

    def _call(self, function: Callable[[], Any]) -> Any:
        """`function()` on a helper thread, waited for at most `remote_timeout_s`: a store that
        does not answer must not hold the write thread longer."""
        if self._calls is None:
            self._calls = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="logger-daemon-remote")
        return self._calls.submit(function).result(self._timeout_s)


def _event_files(directory: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(directory) if name.startswith(_EVENTS))
    except FileNotFoundError:
        return []


def _remote_event_files(fs: Any, directory: str) -> list[str]:
    fs.invalidate_cache(directory)
    try:
        entries = fs.ls(directory, detail=True)
    except FileNotFoundError:
        return []
    return sorted(
        name
        for entry in entries
        if entry.get("type") == "file" and (name := posixpath.basename(entry["name"].rstrip("/"))).startswith(_EVENTS)
    )


# -- acknowledgements held for uploads -------------------------------------------------------------


@dataclass
class _Hold:
    seq: int
    segments: list[Segment]
    deadline: float
    drops: Counter[str] = field(default_factory=Counter)


class AckHolds:
    """Acknowledgements held back until segments are uploaded: a writer's `close()` returns True
    only once its remote run's tail is in the store. A client's acknowledgements are cumulative,
    so everything it sent after the close waits too, at most until the deadline."""

    def __init__(self) -> None:
        self._holds: dict[bytes, _Hold] = {}

    def hold(self, client: bytes, segments: list[Segment], deadline: float) -> None:
        if not segments:
            return
        held = self._holds.get(client)
        if held is None:
            self._holds[client] = _Hold(0, list(segments), deadline)
        else:
            held.segments.extend(segments)
            held.deadline = max(held.deadline, deadline)

    def apply(self, acks: dict[bytes, int], drops: dict[bytes, Counter[str]]) -> None:
        """Takes the held clients' acknowledgements (and drop counts) out of a cycle's."""
        for client, held in self._holds.items():
            if client in acks:
                held.seq = max(held.seq, acks.pop(client))
            if client in drops:
                held.drops += drops.pop(client)

    def release(
        self, now: float, gone: Iterable[bytes] = (), everything: bool = False
    ) -> tuple[dict[bytes, int], dict[bytes, Counter[str]], dict[bytes, int]]:
        """The holds that end now (uploaded, past their deadline, their client gone, or
        `everything`): (acks, drops, segments not uploaded) per client."""
        acks: dict[bytes, int] = {}
        drops: dict[bytes, Counter[str]] = {}
        missing: dict[bytes, int] = {}
        gone = set(gone)
        for client, held in list(self._holds.items()):
            left = [s for s in held.segments if not s.done]
            held.segments = left
            if left and now < held.deadline and client not in gone and not everything:
                continue
            del self._holds[client]
            if held.seq:
                acks[client] = held.seq
            if held.drops:
                drops[client] = held.drops
            if left:
                missing[client] = len(left)
        return acks, drops, missing

    def next_deadline(self) -> float | None:
        """The monotonic time at which the first hold ends unless its uploads finish first."""
        return min((held.deadline for held in self._holds.values()), default=None)

    def __bool__(self) -> bool:
        return bool(self._holds)
