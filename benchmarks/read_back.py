"""Reading logs back: the same log directory read by each reader, timed and checked.

The data is written once, by logger_client (one writer per run, `runs` runs of `tags` tags,
`steps` steps each: 1 000 000 scalars in the full suite), in a child of its own. Then each reader
reads the whole directory in a fresh child:

* `logger_client` - `logger_client.reader.load(logdir)`: every run, scalars as numpy columns.
* `EventAccumulator` - TensorBoard's `EventAccumulator` per run directory, `size_guidance` 0 for
  scalars (keep every event), `Reload()` then `Scalars(tag)` for each tag.
* `tbparse` - `tbparse.SummaryReader(logdir, extra_columns={"dir_name", "wall_time"}).scalars`, a
  pandas DataFrame (it reads through EventAccumulator).

Only the read is timed (`read_s`), from the call until the reader's result holds every scalar;
importing the reader is timed apart (`import_s`). Every reader's result is then checked against
what was written: the number of scalars, of (run, tag) series, and the exact sums of the steps and
the values (each value is k/8, exact in float32, so the sums do not depend on order).
"""

from __future__ import annotations

import os
import time
from typing import Any

READERS = ("logger_client", "EventAccumulator", "tbparse")


def _value(step: int, tag: int) -> float:
    return ((step * 7 + tag * 13) % 1000) / 8  # exact in float32 and in sums of float64


def expected(params: dict[str, Any]) -> dict[str, Any]:
    """What every reader must find."""
    runs, tags, steps = params["runs"], params["tags"], params["steps"]
    value_sum = sum(_value(step, tag) for tag in range(tags) for step in range(steps)) * runs
    return {
        "scalars": runs * tags * steps,
        "series": runs * tags,
        "step_sum": runs * tags * steps * (steps - 1) // 2,
        "value_sum": value_sum,
    }


def write(adapter: Any, params: dict[str, Any], logdir: str) -> dict[str, Any]:
    """Writes the workload's scalars with `adapter`'s writer (logger_client in the suite)."""
    runs, tags, steps = params["runs"], params["tags"], params["steps"]
    names = [f"metric/{index}" for index in range(tags)]
    t0 = time.perf_counter()
    writers = [adapter.open(os.path.join(logdir, f"run{run}")) for run in range(runs)]
    for step in range(steps):
        for writer in writers:
            add_scalar = writer.add_scalar
            for index, name in enumerate(names):
                add_scalar(name, _value(step, index), step)
    closed = [adapter.close(writer) for writer in writers]  # every one, even after a failure
    return {"write_s": time.perf_counter() - t0, "close_confirmed": all(closed)}


def _read_logger_client(logdir: str) -> tuple[float, dict[str, Any]]:
    from logger_client.reader import load

    t0 = time.perf_counter()
    data = load(logdir)
    read_s = time.perf_counter() - t0
    series = list(data.scalars.values())
    return read_s, {
        "scalars": sum(len(s) for s in series),
        "series": len(series),
        "step_sum": sum(int(s.step.sum()) for s in series),
        "value_sum": sum(float(s.value.sum()) for s in series),
    }


def _read_event_accumulator(logdir: str) -> tuple[float, dict[str, Any]]:
    from tensorboard.backend.event_processing import event_accumulator as ea

    t0 = time.perf_counter()
    found: list[list[Any]] = []
    for directory, _, names in sorted(os.walk(logdir)):
        if any("tfevents" in name for name in names):
            accumulator = ea.EventAccumulator(directory, size_guidance={ea.SCALARS: 0})
            accumulator.Reload()
            found.extend(accumulator.Scalars(tag) for tag in accumulator.Tags()[ea.SCALARS])
    read_s = time.perf_counter() - t0
    return read_s, {
        "scalars": sum(len(events) for events in found),
        "series": len(found),
        "step_sum": sum(event.step for events in found for event in events),
        "value_sum": sum(event.value for events in found for event in events),
    }


def _read_tbparse(logdir: str) -> tuple[float, dict[str, Any]]:
    from tbparse import SummaryReader  # type: ignore[import-untyped]

    t0 = time.perf_counter()
    frame = SummaryReader(logdir, extra_columns={"dir_name", "wall_time"}).scalars
    read_s = time.perf_counter() - t0
    return read_s, {
        "scalars": len(frame),
        "series": int(frame.groupby(["dir_name", "tag"]).ngroups) if len(frame) else 0,
        "step_sum": int(frame["step"].sum()) if len(frame) else 0,
        "value_sum": float(frame["value"].astype(float).sum()) if len(frame) else 0.0,
    }


_READ = {
    "logger_client": _read_logger_client,
    "EventAccumulator": _read_event_accumulator,
    "tbparse": _read_tbparse,
}


def _import(reader: str) -> None:
    if reader == "logger_client":
        import logger_client.reader  # noqa: F401
    elif reader == "EventAccumulator":
        from tensorboard.backend.event_processing import event_accumulator  # noqa: F401
    else:
        import tbparse  # noqa: F401


def read(reader: str, params: dict[str, Any], logdir: str) -> dict[str, Any]:
    """Reads `logdir` with `reader`; the time, and what it found next to what it should have."""
    t0 = time.perf_counter()
    _import(reader)
    import_s = time.perf_counter() - t0
    read_s, found = _READ[reader](logdir)
    wanted = expected(params)
    return {
        "reader": reader,
        "import_s": import_s,
        "read_s": read_s,
        "scalars_per_s": found["scalars"] / read_s if read_s > 0 else None,
        "found": found,
        "expected": wanted,
        "verified": found == wanted,
    }
