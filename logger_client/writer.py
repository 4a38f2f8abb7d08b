"""`SummaryWriter`: tensorboardX's writer API, with the work moved out of the training process.

Each `add_*` call checks its arguments, turns them into a record (a packed row for a plain scalar,
else a tuple; arrays copied once into memory this client owns) and appends it to the process's
transport queue. Encoding, histogramming, protobuf and disk I/O all happen in the daemon.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from types import MethodType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._convert import check_text, to_float, to_owned_array, to_step, to_walltime
from ._fast import ScalarCall, append_scalar_row
from ._writer_base import (
    CALL_DEFAULTS,
    Number,
    WriterBase,
    check_dataformats,
    check_image,
    check_run_name,
    check_tag,
    step_and_time,
    walltime_or_now,
)
from ._writer_graph import GraphMethods
from ._writer_media import MediaMethods
from ._writer_plugins import PluginMethods
from ._writer_projector import ProjectorMethods
from ._writer_ranks import CALL_MODE, install_reduce_argument
from .protocol import SCALAR_ROW, RecordKind
from .reduction import SCALAR_MODES, check_mode

if TYPE_CHECKING:
    from .reader import LogData

__all__ = ["SummaryWriter"]

# Module-level names for the kinds: reading an enum member off its class costs ~150 ns a call.
_SCALAR = RecordKind.SCALAR
_HISTOGRAM = RecordKind.HISTOGRAM
_IMAGE = RecordKind.IMAGE
_IMAGES = RecordKind.IMAGES
_TEXT = RecordKind.TEXT
_pack_scalar_row = SCALAR_ROW.pack

#: `bins` names numpy.histogram understands, plus tensorboardX's own exponential 'tensorflow' bins.
HISTOGRAM_BIN_NAMES = frozenset(["tensorflow", "auto", "fd", "doane", "scott", "stone", "rice", "sturges", "sqrt"])


def _check_bins(bins: Any) -> str | int | list:
    if isinstance(bins, str):
        if bins not in HISTOGRAM_BIN_NAMES:
            raise ValueError(
                f"bins must be one of {sorted(HISTOGRAM_BIN_NAMES)}, an int or a sequence of edges; got {bins!r}"
            )
        return bins
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"bins must be a positive number of buckets, got {bins}")
        return int(bins)
    edges = np.asarray(bins, dtype=np.float64) if not hasattr(bins, "detach") else to_owned_array(bins, "bins")
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) < 0):
        raise ValueError("bins given as edges must be a 1-D increasing sequence of at least 2 numbers")
    return edges.tolist()


def _check_binnable(values: np.ndarray, bins: str | int | list) -> None:
    """What numpy would refuse in the daemon, refused here where the caller sees it (as tensorboardX).

    Only for non-default bins: the default 'tensorflow' bins take any values, and a default call
    pays for its one copy only.
    """
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"values holds NaN or infinity, which bins={bins!r} cannot bucket")
    if isinstance(bins, list) and not ((values >= bins[0]) & (values <= bins[-1])).any():
        raise ValueError(f"no element of values falls within the bins edges [{bins[0]}, {bins[-1]}]")


@lru_cache(maxsize=4096)  # the same few (main_tag, key) pairs, every step
def _check_run(main_tag: str, key: Any) -> str:
    """The sub-run of `add_scalars`, laid out as tensorboardX does: `<logdir>/<main_tag>/<key>`."""
    check_tag(key, "tag_scalar_dict key")
    if "\0" in key:
        raise ValueError(f"tag_scalar_dict key {key!r} holds a NUL character, which a directory name cannot")
    run = posixpath.normpath(posixpath.join(main_tag, key))
    if posixpath.isabs(run) or run == ".." or run.startswith("../") or run == ".":
        raise ValueError(f"main_tag {main_tag!r} with key {key!r} would leave the log directory")
    return check_run_name(run, f"main_tag {main_tag[:20]!r} with key {key[:20]!r}")


@lru_cache(maxsize=64)
def _add_methods(cls: type) -> tuple[tuple[str, Callable[..., Any], int | None, bool, int | None, bool], ...]:
    """Each public `add_*` method of a writer class with where it takes `global_step` and
    `walltime`: (name, function, step position, step by keyword, walltime position, walltime by
    keyword); positions count after `self`, None where not positional."""
    found = []
    for name in dir(cls):
        function = getattr(cls, name)
        if not name.startswith("add_") or not inspect.isfunction(function):
            continue
        parameters = list(inspect.signature(function).parameters.values())[1:]
        places: list[int | bool | None] = []
        for wanted in ("global_step", "walltime"):
            position = next((i for i, p in enumerate(parameters) if p.name == wanted), None)
            kind = parameters[position].kind if position is not None else None
            positional = kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            places += [position if positional else None, kind is not None and kind != inspect.Parameter.POSITIONAL_ONLY]
        found.append((name, function, *places))
    return tuple(found)  # type: ignore[arg-type]


def _fill(args: tuple, kwargs: dict[str, Any], position: int | None, keyword: bool, name: str, value: Any) -> tuple:
    """`args`/`kwargs` with the argument `name` set to `value` where the caller left it out or None."""
    if position is not None and len(args) > position:
        if args[position] is None:
            args = (*args[:position], value, *args[position + 1 :])
    elif keyword and kwargs.get(name) is None:
        kwargs[name] = value
    return args


#: tensorboardX's tag cleaning of scalar tags (the daemon's `clean_tag`), to recognise add_scalars runs.
_INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w.]")


def _is_add_scalars_run(run: str, tag: str) -> bool:
    """Whether a run of this name holding scalars under `tag` is one `add_scalars(main_tag, ...)`
    wrote: `<main_tag>/<key>`, with `tag` the main tag as the writer cleans it."""
    parts = run.split("/")
    return any(
        _INVALID_TAG_CHARACTERS.sub("_", "/".join(parts[:cut])).lstrip("/") == tag for cut in range(1, len(parts))
    )


class SummaryWriter(MediaMethods, PluginMethods, ProjectorMethods, GraphMethods, WriterBase):
    """Writes TensorBoard event files through the node's logging daemon.

    A drop-in for `tensorboardX.SummaryWriter` (and `torch.utils.tensorboard.SummaryWriter`):
    same constructor and methods, same defaults. Calls return after queueing the record; the
    daemon writes it. `flush()` waits until the daemon has written everything logged before it.

    Args:
        logdir: Directory of the run. Default `runs/<Mon-DD_HH-MM-SS>_<hostname><comment>`.
            An fsspec URL (`s3://bucket/run`, `gs://...`, `az://...`) writes there: the daemon
            stages event files locally and uploads each finished segment (README, remote log
            directories). Raises ImportError naming the package when the URL's backend is missing.
        comment: Suffix of the default logdir; ignored when `logdir` is given.
        purge_step: On resuming at step T, hide the earlier run's events at steps >= T.
        max_queue: Accepted for compatibility; batching is the transport's (see README).
        flush_secs: Longest delay before logged data is on disk; capped at 2 seconds.
        filename_suffix: Suffix of the event file names in `logdir`.
        write_to_disk: If False, calls are checked and discarded.
        log_dir: Alias of `logdir` (torch.utils.tensorboard's name).
        comet_config: Accepted for compatibility with tensorboardX; Comet is not used.
        transport: Where records go instead of the node's daemon, e.g. an
            `in_memory.InMemoryTransport()` to test training code without one (keyword only).
        overflow: What an array call does when the process holds `max_buffer_bytes` (1 GiB) of
            arrays the daemon has not written: "wait" for room on the calling thread, up to
            `overflow_wait_s` (10 s), then drop and count; or "drop" and count at once. Default
            `LOGGER_OVERFLOW`, "wait" (keyword only; see README, Bursts).
        storage_options: fsspec's options for a URL `logdir` (endpoint, credentials, ...), as
            plain data; they go to the daemon with the writer and are never written to disk.
            Without them, the backend's own configuration applies (keyword only).
        rank, world_size, job_id: This process's place in a data-parallel job (keyword only);
            default from torchrun's environment (`RANK`, `WORLD_SIZE`, `TORCHELASTIC_RUN_ID`, ...).
            Without a world size above 1 the writer is a job of one and writes as ever.
        reduce: How values several ranks log for one (run, tag, step) are written (keyword only):
            "mean" (default), "sum", "min", "max", "rank0" or "per_rank" (sub-run `rank_<r>`).
            Histograms merge under the first four; the other kinds come from rank 0 unless
            "per_rank". Every `add_*` call takes `reduce` too, for itself (README, Ranks).
    """

    def _bind_add_scalar(self) -> None:
        """Gives this writer the C add_scalar (see _speedups.c) over its current key table, queue
        and transport: the plain call without a Python frame, every other call to the method
        below. Bound again whenever one of those changes (open, close). Not where a subclass
        overrides add_scalar, or without the extension."""
        if self._ranks is not None and self._reduce == "rank0" and self._ranks.rank != 0:
            if type(self).add_scalar is SummaryWriter.add_scalar:
                self.add_scalar = MethodType(_add_scalar_of_rank0, self)  # type: ignore[method-assign]
            return
        if (
            ScalarCall is not None
            and type(self).add_scalar is SummaryWriter.add_scalar
            and type(self._queue) is list
            and self._call_defaults is None  # use_metadata's defaults need the Python method
        ):
            self.add_scalar = ScalarCall(  # type: ignore[method-assign]  # the instance's, over the method
                self._scalar_keys,
                self._queue,
                self._batch_records,
                self._transport.on_backlog,
                MethodType(SummaryWriter.add_scalar, self),
            )

    # -- scalars -----------------------------------------------------------------------------

    def add_scalar(
        self,
        tag: str,
        scalar_value: Number | Any,
        global_step: int | None = None,
        walltime: float | None = None,
        display_name: str | bool | None = "",
        summary_description: str | bool | None = "",
        new_style: bool = False,
        double_precision: bool = False,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs one scalar.

        `display_name`/`summary_description` are tensorboardX's options, `new_style`/
        `double_precision` torch.utils.tensorboard's. Positionally, torch's signature has its two
        flags where tensorboardX has the two strings: a bool there is taken as torch's flag.
        `reduce` (keyword only) combines this call's value across the ranks of a data-parallel
        job by another mode than the writer's (see the constructor). The plain call runs in C.
        """
        if reduce is not None:
            mode = check_mode(reduce, SCALAR_MODES)
            if self._ranks is not None and mode != self._reduce:
                self._add_scalar_reduced(tag, scalar_value, global_step, walltime, mode)
                return
        if display_name or summary_description or new_style or double_precision:
            self._add_scalar_with_options(
                tag, scalar_value, global_step, walltime, display_name, summary_description, new_style, double_precision
            )
            return
        # The training thread's hottest path: a dict hit and one call that reads the clock, packs
        # the row and appends it (in C where the extension is built; see _fast).
        key: int | None
        try:
            key = self._scalar_keys[tag]
        except (KeyError, TypeError):  # a new tag (checked there), or no tag at all
            key = self._new_scalar_key(tag, "", tag)
            if key is None:
                value = to_float(scalar_value, "scalar_value")
                self._append_record(
                    (
                        _SCALAR,
                        self._writer_id,
                        self._own_run(""),
                        tag,
                        to_step(global_step),
                        walltime_or_now(walltime),
                        value,
                    )
                )
                return
        length = append_scalar_row(self._queue, key, global_step, walltime, scalar_value)
        if length < 0:  # a value, step or walltime of another type: converted (or refused) here
            value = to_float(scalar_value, "scalar_value")
            length = append_scalar_row(self._queue, key, to_step(global_step), walltime_or_now(walltime), value)
        if length >= self._batch_records:
            self._transport.on_backlog(length)

    def _add_scalar_with_options(
        self,
        tag: str,
        value: Any,
        step: Any,
        walltime: Any,
        display_name: Any,
        summary_description: Any,
        new_style: Any,
        double_precision: Any,
    ) -> None:
        value, step, walltime = to_float(value, "scalar_value"), to_step(step), walltime_or_now(walltime)
        if isinstance(display_name, bool):  # torch's positional order: (..., new_style, double_precision)
            new_style = new_style or display_name
            display_name = ""
        if isinstance(summary_description, bool):
            double_precision = double_precision or summary_description
            summary_description = ""
        for name, text in (("display_name", display_name), ("summary_description", summary_description)):
            if text is not None:
                check_text(text, name)
        self._ensure_open()
        self._append_record(
            (
                _SCALAR,
                self._writer_id,
                self._own_run(""),
                check_tag(tag),
                step,
                walltime,
                value,
                {
                    "display_name": display_name or "",
                    "summary_description": summary_description or "",
                    "new_style": bool(new_style),
                    "double_precision": bool(double_precision),
                },
            )
        )

    def _add_scalar_reduced(self, tag: str, value: Any, step: Any, walltime: Any, mode: str) -> None:
        """A scalar whose call asks for another mode than its writer's: as a record carrying it."""
        if mode == "rank0" and self._ranks.rank != 0:  # type: ignore[union-attr]
            return
        check_tag(tag)
        value, step, walltime = to_float(value, "scalar_value"), to_step(step), walltime_or_now(walltime)
        token = CALL_MODE.set(mode)
        try:
            self._queue_record(_SCALAR, tag, step, walltime, value)
        finally:
            CALL_MODE.reset(token)

    def _new_scalar_key(self, cache_key: Any, run: str, tag: Any) -> int | None:
        """Checks a tag met for the first time and gets its key for packed rows (None: there are
        no keys left, the records go as tuples)."""
        check_tag(tag)
        self._ensure_open()
        key = self._transport.scalar_key(self._writer_id, self._own_run(run), tag)
        if key is not None:
            self._scalar_keys[cache_key] = key
        return key

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Mapping[str, Number | Any],
        global_step: int | None = None,
        walltime: float | None = None,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs several scalars under one chart: each key is a run `<logdir>/<main_tag>/<key>`."""
        check_tag(main_tag, "main_tag")
        if not isinstance(tag_scalar_dict, Mapping):
            raise TypeError(f"tag_scalar_dict must be a dict of name -> number, got {type(tag_scalar_dict).__name__}")
        step, walltime = step_and_time(global_step, walltime)
        self._ensure_open()
        mode = CALL_MODE.get()
        if mode is not None and mode != self._reduce:  # another mode than the writer's: as records
            for name, value in tag_scalar_dict.items():
                value = to_float(value, f"tag_scalar_dict[{name!r}]")
                self._queue_record(_SCALAR, main_tag, step, walltime, value, run=_check_run(main_tag, name))
            return
        keys = self._scalar_keys
        rows: list[bytes | tuple] = []
        for name, value in tag_scalar_dict.items():
            value = to_float(value, f"tag_scalar_dict[{name!r}]")
            key = keys.get((main_tag, name))
            if key is None:
                run = _check_run(main_tag, name)
                key = self._new_scalar_key((main_tag, name), run, main_tag)
                if key is None:
                    rows.append((_SCALAR, self._writer_id, self._own_run(run), main_tag, step, walltime, value))
                    continue
            rows.append(_pack_scalar_row(key, step, walltime, value))
        queue = self._queue
        queue.extend(rows)
        if len(queue) >= self._batch_records:
            self._transport.on_backlog(len(queue), len(rows))

    # -- arrays ------------------------------------------------------------------------------

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: int | None = None,
        bins: str | int | Sequence[float] = "tensorflow",
        walltime: float | None = None,
        max_bins: int | None = None,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs a histogram of `values`; the daemon computes it with tensorboardX's bucketing."""
        check_tag(tag)
        bins = _check_bins(bins)
        if max_bins is not None and not (isinstance(max_bins, (int, np.integer)) and max_bins > 0):
            raise ValueError(f"max_bins must be a positive int or None, got {max_bins!r}")
        step, walltime = step_and_time(global_step, walltime)
        array = to_owned_array(values, "values", self._transport.empty_array)
        if array.size == 0:
            raise ValueError("values is empty: a histogram needs at least one value")
        if bins != "tensorflow":
            _check_binnable(array, bins)
        options = {"bins": bins, "max_bins": None if max_bins is None else int(max_bins)}
        self._submit_array(_HISTOGRAM, tag, step, walltime, array, options)

    def add_image(
        self,
        tag: str,
        img_tensor: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        dataformats: str = "CHW",
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs an image: uint8 in [0, 255] or float in [0, 1]; layout given by `dataformats`."""
        check_tag(tag)
        step, walltime = step_and_time(global_step, walltime)
        array = to_owned_array(img_tensor, "img_tensor", self._transport.empty_array)
        layout = check_dataformats(dataformats, array.ndim, (2, 3, 4))
        check_image(array, layout)
        self._submit_array(_IMAGE, tag, step, walltime, array, {"dataformats": layout})

    def add_images(
        self,
        tag: str,
        img_tensor: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        dataformats: str = "NCHW",
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs a batch of images as one grid (8 per row). A list of CHW or HWC images is stacked."""
        check_tag(tag)
        step, walltime = step_and_time(global_step, walltime)
        if isinstance(img_tensor, list):
            if not isinstance(dataformats, str) or dataformats.upper() not in ("CHW", "HWC"):
                raise ValueError(f"a list of images needs dataformats 'CHW' or 'HWC', got {dataformats!r}")
            if not img_tensor:
                raise ValueError("img_tensor is an empty list")
            parts = [to_owned_array(image, "img_tensor") for image in img_tensor]
            if len({part.shape for part in parts}) != 1:
                raise ValueError("img_tensor: every image of the list must have the same shape")
            array, dataformats = np.stack(parts), "N" + dataformats.upper()
        else:
            array = to_owned_array(img_tensor, "img_tensor", self._transport.empty_array)
        layout = check_dataformats(dataformats, array.ndim, (4,))
        check_image(array, layout)
        self._submit_array(_IMAGES, tag, step, walltime, array, {"dataformats": layout})

    # -- text --------------------------------------------------------------------------------

    def add_text(
        self,
        tag: str,
        text_string: str,
        global_step: int | None = None,
        walltime: float | None = None,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs a string (markdown is rendered by TensorBoard's text plugin)."""
        check_tag(tag)
        check_text(text_string, "text_string")
        step, walltime = step_and_time(global_step, walltime)
        self._queue_record(_TEXT, tag, step, walltime, text_string)

    # -- defaults, reading back ---------------------------------------------------------------

    @contextlib.contextmanager
    def use_metadata(self, *, global_step: int | None = None, walltime: float | None = None) -> Iterator[SummaryWriter]:
        """Within the block, every `add_*` call on this writer made without a `global_step` (or
        with None) logs at `global_step`, and without a `walltime` at `walltime`.

        As tensorboardX: at least one of the two is required, and blocks do not nest on one writer.
        Unlike tensorboardX, the defaults apply to `add_scalars` too (tensorboardX's sub-run writers
        ignore them), and a block given only `global_step` logs at the current time (tensorboardX
        then writes wall time 0). Calls from other threads on this writer see the defaults as well;
        other writers do not.
        """
        if global_step is None and walltime is None:
            raise ValueError("use_metadata needs global_step or walltime (or both)")
        if self._call_defaults is not None:
            raise RuntimeError("use_metadata is already in use on this writer: blocks do not nest")
        defaults = (
            None if global_step is None else to_step(global_step),
            None if walltime is None else to_walltime(walltime),
        )
        self._call_defaults = defaults
        installed = []
        try:
            for name, function, step_at, step_keyword, walltime_at, walltime_keyword in _add_methods(type(self)):  # type: ignore[arg-type]
                setattr(
                    self,
                    name,
                    self._with_defaults(function, defaults, step_at, step_keyword, walltime_at, walltime_keyword),
                )
                installed.append(name)
            yield self
        finally:
            for name in installed:
                self.__dict__.pop(name, None)
            self._call_defaults = None
            self._bind_add_scalar()

    def _with_defaults(
        self,
        function: Callable[..., Any],
        defaults: tuple[int | None, float | None],
        step_at: int | None,
        step_keyword: bool,
        walltime_at: int | None,
        walltime_keyword: bool,
    ) -> Callable[..., Any]:
        """`function` bound to this writer, filling in `use_metadata`'s defaults: as arguments where
        it takes them, and for whatever it computes through `step_and_time` / `walltime_or_now`."""
        method = MethodType(function, self)
        step, walltime = defaults

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if step is not None:
                args = _fill(args, kwargs, step_at, step_keyword, "global_step", step)
            if walltime is not None:
                args = _fill(args, kwargs, walltime_at, walltime_keyword, "walltime", walltime)
            token = CALL_DEFAULTS.set(defaults)
            try:
                return method(*args, **kwargs)
            finally:
                CALL_DEFAULTS.reset(token)

        return call

    def load(self, logdir: str | os.PathLike[str] | None = None) -> LogData:
        """Reads a log directory back (default: this writer's, after `flush()`), see
        `logger_client.reader.load`: every run below it, scalars as numpy columns, histograms,
        images, audio, text, tensors, hparams. Not in tensorboardX (the seed's `writer.load`).
        A remote logdir (a URL) shows what is uploaded: the segments rolled or closed so far."""
        from .reader import load

        if not self._closed:
            self.flush()
        if logdir is None:
            return load(self.logdir, storage_options=self._storage_options)
        return load(logdir)

    def export_scalars_to_json(self, path: str | os.PathLike[str]) -> None:
        """Writes the scalars logged with `add_scalars` to `path` as JSON, in tensorboardX's layout:
        `{"<logdir>/<main_tag>/<key>": [[wall_time, step, value], ...], ...}`.

        tensorboardX keeps every add_scalars value in memory for this; here nothing is kept on the
        training thread: the writer flushes, then reads its log directory back and exports each
        add_scalars sub-run found there (`<main_tag>/<key>` holding tag `<main_tag>`). As in
        tensorboardX, each export holds only what was logged since this writer's previous export
        (counted per sub-run). Differences: values are those on disk (float32, as TensorBoard shows
        them; tensorboardX exports the float64 passed), a missing step is 0 (tensorboardX: null),
        and sub-runs already on disk when the writer started are exported too.
        """
        logdir = self.logdir
        exported: dict[str, int] = self.__dict__.setdefault("_exported_counts", {})
        found: dict[str, list[list[float]]] = {}
        if self._remote or os.path.isdir(logdir):
            data = self.load()
            for (run, tag), series in data.scalars.items():
                if run == "." or not _is_add_scalars_run(run, tag):
                    continue
                key = os.path.join(logdir, *run.split("/"))
                done = exported.get(key, 0)
                rows = zip(series.wall_time[done:].tolist(), series.step[done:].tolist(), series.value[done:].tolist())
                exported[key] = len(series)
                found.setdefault(key, []).extend([list(row) for row in rows])
        with open(path, "w") as f:
            json.dump({key: rows for key, rows in found.items() if rows}, f)


def _add_scalar_of_rank0(self: SummaryWriter, *args: Any, reduce: str | None = None, **kwargs: Any) -> None:
    """`add_scalar` of a rank other than 0 whose writer writes rank 0's scalars only: nothing,
    unless the call asks for another mode."""
    if reduce is not None and check_mode(reduce, SCALAR_MODES) != "rank0":
        SummaryWriter.add_scalar(self, *args, reduce=reduce, **kwargs)


install_reduce_argument(SummaryWriter)
