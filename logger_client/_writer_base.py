"""What every `SummaryWriter` method shares: the constructor, the writer's connection to its
transport, turning checked arguments into queued records, and the lifecycle (flush, close, stats).

The methods themselves live by family: `writer.py` (scalars, histograms, images, text) and the
`_writer_*.py` mixins, each a subclass of `WriterBase`.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import datetime
from time import time
from typing import Any, TypeVar

import numpy as np

from ._convert import check_text, to_step, to_walltime
from ._daemon_transport import get_transport
from ._discovery import DaemonUnavailable, find_or_start_root
from ._remote import check_storage_options, require_backend
from ._writer_ranks import CALL_MODE, combined
from .in_memory import InMemoryTransport
from .protocol import INT64_MAX, INT64_MIN, MAX_NAME_CHARS, RecordKind, is_url_logdir
from .reduction import DEFAULT_MODE, SCALAR_MODES, check_mode, per_rank_run, rank_info
from .settings import Settings
from .transport import Transport, TransportStats

Number = int | float
_Writer = TypeVar("_Writer", bound="WriterBase")
#: What an array call does when the transport holds `max_buffer_bytes`: wait for room (up to
#: `overflow_wait_s`), or drop the array and count it.
OVERFLOW_POLICIES = frozenset(["wait", "drop"])
_IMAGE_AXES = frozenset("NCHW")
#: Kinds whose records may carry their combining mode to the daemon.
_COMBINED_KINDS = frozenset([RecordKind.SCALAR, RecordKind.HISTOGRAM])


#: The longest name of one file or directory, in bytes, that file systems take (Linux's NAME_MAX).
MAX_FILE_NAME_BYTES = 255


def check_tag(tag: Any, name: str = "tag") -> str:
    """`tag` if the daemon can take it: UTF-8 text of at most `MAX_NAME_CHARS` characters."""
    check_text(tag, name)
    if len(tag) > MAX_NAME_CHARS:
        raise ValueError(f"{name} has {len(tag)} characters; at most {MAX_NAME_CHARS} are allowed")
    return tag


def check_run_name(run: str, described: str) -> str:
    """`run`, a normalised sub-run path already checked as text, if the daemon can make it a
    directory: at most `MAX_NAME_CHARS` characters, none of its parts over `MAX_FILE_NAME_BYTES`."""
    if len(run) > MAX_NAME_CHARS:
        raise ValueError(f"{described} names a run of {len(run)} characters; at most {MAX_NAME_CHARS} are allowed")
    for part in run.split("/"):
        size = len(part.encode("utf-8"))
        if size > MAX_FILE_NAME_BYTES:
            raise ValueError(
                f"{described} names a directory of {size} bytes ({part[:20]!r}...); "
                f"file systems take at most {MAX_FILE_NAME_BYTES}"
            )
    return run


#: The (global_step, walltime) defaults of `SummaryWriter.use_metadata`, set for the duration of a
#: call made on a writer inside it (so only that writer's calls see them).
CALL_DEFAULTS: ContextVar[tuple[int | None, float | None] | None] = ContextVar("call_defaults", default=None)


def walltime_or_now(walltime: Any) -> float:
    """A record's wall time: now, unless given (or set by `use_metadata`)."""
    if walltime is None:
        defaults = CALL_DEFAULTS.get()
        if defaults is None or defaults[1] is None:
            return time()
        walltime = defaults[1]
    return to_walltime(walltime)


def step_and_time(global_step: Any, walltime: Any) -> tuple[int, float]:
    """The record's step (None is 0, as tensorboardX) and its wall time (now, unless given); inside
    `use_metadata`, None takes its defaults instead."""
    if global_step is None or walltime is None:
        defaults = CALL_DEFAULTS.get()
        if defaults is not None:
            global_step = defaults[0] if global_step is None else global_step
            walltime = defaults[1] if walltime is None else walltime
    if type(global_step) is not int or not INT64_MIN <= global_step <= INT64_MAX:  # an int64 needs no call
        global_step = to_step(global_step)
    return global_step, time() if walltime is None else to_walltime(walltime)


def check_dataformats(dataformats: Any, ndim: int, allowed_ndims: Sequence[int]) -> str:
    if not isinstance(dataformats, str):
        raise TypeError(f"dataformats must be a str such as 'CHW', got {type(dataformats).__name__}")
    layout = dataformats.upper()
    if not layout or set(layout) - _IMAGE_AXES or len(set(layout)) != len(layout):
        raise ValueError(f"dataformats must use each of the letters N, C, H, W at most once, got {dataformats!r}")
    if len(layout) not in allowed_ndims:
        raise ValueError(f"dataformats {dataformats!r} has {len(layout)} axes; this call takes {allowed_ndims}")
    if "H" not in layout or "W" not in layout:
        raise ValueError(f"dataformats {dataformats!r} must name both H and W")
    if len(layout) != ndim:
        raise ValueError(f"img_tensor has {ndim} dimensions but dataformats {dataformats!r} names {len(layout)}")
    return layout


def check_image(array: np.ndarray, layout: str) -> None:
    if array.size == 0:
        raise ValueError(f"img_tensor is empty (shape {array.shape})")
    # As tensorboardX: gray, gray+alpha (single images only), RGB, RGBA.
    channels = (1, 3, 4) if "N" in layout else (1, 2, 3, 4)
    if "C" in layout and array.shape[layout.index("C")] not in channels:
        raise ValueError(
            f"img_tensor has {array.shape[layout.index('C')]} channels on axis C of {layout!r}; expected {channels}"
        )


class WriterBase:
    """The state and plumbing of a writer; `SummaryWriter` documents the constructor."""

    #: The (global_step, walltime) defaults while `SummaryWriter.use_metadata` is in use, else None.
    _call_defaults: tuple[int | None, float | None] | None = None

    def __init__(
        self,
        logdir: str | None = None,
        comment: str | None = "",
        purge_step: int | None = None,
        max_queue: int | None = 10,
        flush_secs: Number | None = 120,
        filename_suffix: str | None = "",
        write_to_disk: bool | None = True,
        log_dir: str | None = None,
        comet_config: dict | None = None,
        *,
        transport: Transport | None = None,
        overflow: str | None = None,
        storage_options: dict[str, Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        job_id: str | None = None,
        reduce: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"SummaryWriter got unexpected keyword arguments: {sorted(kwargs)}")
        if log_dir is not None and logdir is None:
            logdir = log_dir
        if not logdir:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            logdir = os.path.join("runs", stamp + "_" + socket.gethostname() + (comment or ""))
        if not isinstance(logdir, (str, os.PathLike)):
            raise TypeError(f"logdir must be a str or path, got {type(logdir).__name__}")
        logdir = check_text(os.fspath(logdir), "logdir")
        if "\0" in logdir:
            raise ValueError("logdir must not contain a NUL character")
        # An fsspec URL (s3://bucket/run): the daemon stages and uploads; never a local "s3:" dir.
        self._remote = is_url_logdir(logdir)
        if self._remote:
            logdir = logdir.rstrip("/")
            if write_to_disk and transport is None:
                require_backend(logdir)
        self._storage_options = check_storage_options(storage_options)
        if purge_step is not None:
            purge_step = to_step(purge_step, "purge_step")
        if flush_secs is not None and not (isinstance(flush_secs, (int, float)) and flush_secs > 0):
            raise ValueError(f"flush_secs must be a positive number of seconds, got {flush_secs!r}")
        filename_suffix = check_text(filename_suffix or "", "filename_suffix")
        if "/" in filename_suffix or "\0" in filename_suffix:
            raise ValueError(f"filename_suffix must be a plain file name suffix, got {filename_suffix!r}")
        self.logdir = os.fspath(logdir)
        self.purge_step = purge_step
        self._flush_secs = flush_secs
        self._filename_suffix = filename_suffix
        self._write_to_disk = bool(write_to_disk)
        self._given_transport = transport
        # A job's ranks (None: a job of one) and how this writer's values combine across them.
        self._ranks = rank_info(rank, world_size, job_id)
        self._reduce = check_mode(DEFAULT_MODE if reduce is None else reduce, SCALAR_MODES)
        self._per_rank = self._ranks is not None and self._reduce == "per_rank"
        self._settings = Settings.from_env()
        if overflow is None:
            overflow, source = self._settings.overflow, "LOGGER_OVERFLOW"
        else:
            source = "overflow"
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"{source} must be one of {sorted(OVERFLOW_POLICIES)}, got {overflow!r}")
        #: How long an array call waits for room in the transport's buffer before it drops.
        self._overflow_wait_s = self._settings.overflow_wait_s if overflow == "wait" else 0.0
        self._closed = True
        # The key of this writer's packed scalar rows per tag (add_scalars: per (main_tag, key)).
        self._scalar_keys: dict[Any, int] = {}
        self._open()

    def _open(self) -> None:
        if not self._write_to_disk:
            self._transport: Transport = InMemoryTransport(keep=False)
        elif self._given_transport is not None:
            self._transport = self._given_transport
        else:
            # As tensorboardX: a log directory that cannot be made fails here, at construction,
            # not later in the daemon where the caller would never see it; the error names it.
            # (A remote one is made by its first upload.)
            if not self._remote:
                try:
                    os.makedirs(self.logdir, exist_ok=True)
                except OSError as exc:
                    raise type(exc)(exc.errno, f"logdir cannot be created: {exc.strerror}", exc.filename) from exc
            self._transport = get_transport(self._settings)
            self._start_root()
        self._queue = self._transport.queue
        self._batch_records = self._transport.batch_records
        options: dict[str, Any] = {
            "logdir": self.logdir if self._remote else os.path.abspath(self.logdir),
            "purge_step": self.purge_step,
            "filename_suffix": self._filename_suffix,
            "flush_secs": float(self._flush_secs or 120),
        }
        if self._storage_options is not None:
            options["storage_options"] = self._storage_options
        if self._ranks is not None:
            options.update(self._ranks.options(), reduce=self._reduce)
        self._writer_id = self._transport.open_writer(options)
        self._closed = False
        self._bind_add_scalar()

    def _start_root(self) -> None:
        """Rank 0 of a job across nodes starts the job's root daemon on its host, the job's
        MASTER_ADDR, if `LOGGER_ROOT_PORT` and `LOGGER_KEYS_DIR` say where and with which keys."""
        ranks, settings = self._ranks, self._settings
        if ranks is None or ranks.rank != 0 or not ranks.spans_nodes or not ranks.master_addr:
            return
        if not settings.root_port or not settings.keys_dir or settings.root_endpoint:
            return
        try:
            find_or_start_root(settings, ranks.master_addr)
        except (DaemonUnavailable, OSError) as exc:  # the job trains on; its nodes buffer, then count
            warnings.warn(f"the job's root daemon did not start: {exc}", RuntimeWarning, stacklevel=4)

    def _bind_add_scalar(self) -> None:
        """Called whenever the writer (re)opens: `SummaryWriter` binds its C add_scalar here."""

    def _own_run(self, run: str) -> str:
        """The run a record of sub-run `run` goes to: this rank's own, for a `per_rank` writer."""
        return per_rank_run(self._ranks.rank, run) if self._per_rank else run  # type: ignore[union-attr]

    def _ranked(self, kind: int, run: str, options: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
        """A record's run and options under the mode of the call making it (see `_writer_ranks`)."""
        mode = CALL_MODE.get()
        if mode is None:
            return self._own_run(run), options
        if mode == "per_rank":
            run = per_rank_run(self._ranks.rank, run)  # type: ignore[union-attr]
        if kind in _COMBINED_KINDS and (mode != self._reduce or not combined(mode)):
            options = {**(options or {}), "reduce": mode}
        return run, options

    def _ensure_open(self) -> None:
        # tensorboardX reopens its file writer on use after close(); so do we.
        if self._closed:
            self._open()

    def _append_record(self, record: tuple) -> None:
        queue = self._queue
        queue.append(record)
        if len(queue) >= self._batch_records:
            self._transport.on_backlog(len(queue))

    def _submit_array(
        self,
        kind: int,
        tag: str,
        step: int,
        walltime: float,
        value: np.ndarray | dict[str, np.ndarray],
        options: dict[str, Any],
        run: str = "",
    ) -> None:
        """Queues a record whose value is an owned array (or a map of names to owned arrays) within
        the transport's array bound: the arrays must come from `to_owned_array`."""
        self._ensure_open()
        if self._ranks is not None:
            run, ranked = self._ranked(kind, run, options)
            options = ranked or {}
        self._transport.submit_array(
            (kind, self._writer_id, run, tag, step, walltime, value, options), self._overflow_wait_s
        )

    def _queue_record(
        self,
        kind: int,
        tag: str,
        step: int,
        walltime: float,
        value: Any,
        options: dict[str, Any] | None = None,
        run: str = "",
    ) -> None:
        """Queues a record whose value is plain data (numbers, strings, lists, maps, bytes)."""
        self._ensure_open()
        if self._ranks is not None:
            run, options = self._ranked(kind, run, options)
        record = (kind, self._writer_id, run, tag, step, walltime, value)
        self._append_record(record if options is None else (*record, options))

    # -- lifecycle ---------------------------------------------------------------------------

    def get_logdir(self) -> str:
        """The directory this writer's event file is in, as given to the constructor."""
        return self.logdir

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until the daemon has written and fsynced everything logged before this call.

        Returns False if that did not happen within `timeout` seconds (default: flush_timeout_s).
        For a remote logdir (an fsspec URL) True means fsynced in the daemon's staging directory:
        the upload follows when the segment rolls (`segment_bytes`, `segment_s`) or at `close()`.
        """
        if self._closed:
            return True
        return self._transport.flush(self._settings.flush_timeout_s if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flushes and closes this writer, waiting at most `timeout` (default close_timeout_s).

        Returns whether the daemon confirmed everything written. Never blocks past the timeout,
        even when the daemon is gone. Closing twice is harmless. For a remote logdir, True also
        means the run's last segment is in the store, when this writer was the last one writing the
        run (the daemon uploads the tail as the run closes).
        """
        if self._closed:
            return True
        self._closed = True
        self._scalar_keys = {}  # keys name this writer's id: a reopened writer gets a new one
        self._bind_add_scalar()
        return self._transport.close_writer(
            self._writer_id, self._settings.close_timeout_s if timeout is None else timeout
        )

    def stats(self) -> TransportStats:
        """The process's transport counts: records sent, written, dropped by reason."""
        return self._transport.stats()

    def __enter__(self: _Writer) -> _Writer:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.close()
