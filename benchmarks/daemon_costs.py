"""The daemon's own cost: CPU seconds per unit of work written, and its encoding throughput with 1
and with 2 encoding workers.

logger_client only (the anchors have no daemon). Each run is a fresh benchmark child with its own
daemon, started by its first writer as a user's is, with `LOGGER_ENCODE_WORKERS` set by the suite
to the run's worker count. The daemon's CPU time is user + system time from /proc/<pid>/stat
(clock ticks, 10 ms), read by the child before and after the measured window.

* `scalars`: `calls` add_scalar calls as fast as they go, the daemon running meanwhile; the window
  runs from just before the first call until `close()` returns with everything written. CPU per
  scalar = the daemon's CPU in the window / `calls`.
* `histograms`, `images`: the work is queued first, then the daemon drains it alone, so that on a
  2-core machine the client never competes with it. Once a warm-up burst has been written (the
  daemon has mapped the arena pages the measured bursts use), the daemon is stopped (SIGSTOP), the
  burst is logged (`calls` arrays, within the client's 1 GiB buffer), the daemon is let go
  (SIGCONT) and `flush()` returns once it has written and acknowledged all of it: drain_s is that
  window, on the monotonic clock, and the daemon's CPU is taken over the same window. `repeats`
  such drains per child; the suite runs a child per worker count in alternating order, `rounds`
  times, and takes medians.

Images are smooth float32 pictures (they compress as pictures do, not as noise), the daemon
converting each to uint8 and encoding a PNG; histograms are standard-normal float32 with the
default bins.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np

from benchmarks.calls import SETTLE_S
from benchmarks.writers import WriterAdapter
from logger_client.runtime import daemon_pid

#: Distinct source arrays at most (cycled beyond).
_MAX_SOURCES = 40
#: How long a drain's flush() may take before the run counts as failed.
_DRAIN_TIMEOUT_S = 600.0


def expected_counts(params: dict[str, Any]) -> dict[str, int]:
    if params["kind"] == "scalars":
        return {"scalar": params["calls"]}
    kind = "histogram" if params["kind"] == "histograms" else "image"
    return {kind: params["calls"] * (1 + params["repeats"])}


def daemon_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the command name (which may hold spaces): utime, stime are 14 and 15.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _daemon_pid() -> int:
    pid = daemon_pid(os.environ["LOGGER_RUNTIME_DIR"])
    if pid is None:
        raise RuntimeError("the writer is open but its daemon wrote no pid file")
    return pid


def _sources(params: dict[str, Any]) -> list[np.ndarray]:
    count = min(params["calls"], _MAX_SOURCES)
    if params["kind"] == "images":
        from benchmarks.soak import smooth_images

        return smooth_images(params["shape"], count)
    rng = np.random.default_rng(15)
    return [rng.standard_normal(params["values"], dtype=np.float32) for _ in range(count)]


def run(adapter: WriterAdapter, params: dict[str, Any], logdir: str) -> dict[str, Any]:
    writer = adapter.open(logdir)
    writer.flush()
    time.sleep(SETTLE_S)
    pid = _daemon_pid()
    if params["kind"] == "scalars":
        result = _scalars(adapter, writer, pid, params["calls"])
    else:
        result = _drains(adapter, writer, pid, params)
    result["workers"] = int(os.environ.get("LOGGER_ENCODE_WORKERS", "0"))
    result["dropped"] = dict(writer.stats()["records_dropped"])
    return result


def _scalars(adapter: WriterAdapter, writer: Any, pid: int, calls: int) -> dict[str, Any]:
    add_scalar = writer.add_scalar
    cpu0, t0 = daemon_cpu_s(pid), time.monotonic()
    for i in range(calls):
        add_scalar("daemon/scalar", i * 0.5, i)
    confirmed = adapter.close(writer)
    wall_s, cpu_s = time.monotonic() - t0, daemon_cpu_s(pid) - cpu0
    return {
        "calls": calls,
        "wall_s": wall_s,
        "daemon_cpu_s": cpu_s,
        "daemon_cpu_us_per_scalar": cpu_s / calls * 1e6,
        "close_confirmed": confirmed,
    }


def _log(writer: Any, kind: str, sources: list[np.ndarray], calls: int, step: int) -> None:
    method = writer.add_histogram if kind == "histograms" else writer.add_image
    for i in range(calls):
        method(f"daemon/{kind}/{i:03d}", sources[i % len(sources)], step)


def _drains(adapter: WriterAdapter, writer: Any, pid: int, params: dict[str, Any]) -> dict[str, Any]:
    kind, calls = params["kind"], params["calls"]
    sources = _sources(params)
    _log(writer, kind, sources, calls, 0)  # the warm-up: the daemon maps the arena's pages
    if not writer.flush(timeout=_DRAIN_TIMEOUT_S):
        raise RuntimeError("the warm-up burst was not written")
    drains = []
    for step in range(1, 1 + params["repeats"]):
        os.kill(pid, signal.SIGSTOP)
        try:
            _log(writer, kind, sources, calls, step)
        finally:
            cpu0, t0 = daemon_cpu_s(pid), time.monotonic()
            os.kill(pid, signal.SIGCONT)
        flushed = writer.flush(timeout=_DRAIN_TIMEOUT_S)
        wall_s, cpu_s = time.monotonic() - t0, daemon_cpu_s(pid) - cpu0
        if not flushed:
            raise RuntimeError(f"drain {step} did not finish within {_DRAIN_TIMEOUT_S:g} s")
        drains.append({"drain_s": wall_s, "daemon_cpu_s": cpu_s})
    confirmed = adapter.close(writer)
    input_bytes = sum(sources[i % len(sources)].nbytes for i in range(calls))
    drain_s = sorted(d["drain_s"] for d in drains)[len(drains) // 2]
    cpu_s = sorted(d["daemon_cpu_s"] for d in drains)[len(drains) // 2]
    return {
        "calls": calls,
        "input_bytes": input_bytes,
        "drains": drains,
        "drain_s": drain_s,
        "daemon_cpu_s": cpu_s,
        "input_gb_per_s": input_bytes / 1e9 / drain_s,
        "arrays_per_s": calls / drain_s,
        "daemon_cpu_s_per_gb": cpu_s / (input_bytes / 1e9),
        "daemon_cpu_s_per_100": cpu_s / calls * 100,
        # Cores the daemon kept busy while draining: what a busy machine let it have shows here.
        "daemon_cores": cpu_s / drain_s,
        "close_confirmed": confirmed,
    }


# -- the suite's side ----------------------------------------------------------------------------


def describe(result: dict[str, Any]) -> str:
    """One run's figures in a line of the suite's progress."""
    cpu = result["daemon_cpu_s"]
    if "daemon_cpu_us_per_scalar" in result:
        per = result["daemon_cpu_us_per_scalar"]
        return f"daemon CPU {cpu:.2f} s, {per:.2f} us a scalar ({result['wall_s']:.2f} s)"
    return (
        f"{result['workers']} worker(s): drained {result['input_bytes'] / 1e6:,.0f} MB in {result['drain_s']:.2f} s "
        f"({result['input_gb_per_s']:.2f} GB/s), daemon CPU {cpu:.2f} s ({result['daemon_cores']:.2f} cores busy)"
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summarize(runs: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Medians per worker count over a workload's runs, and whether all were verified; for drains,
    the throughput of the most workers as a multiple of one worker's."""
    good = [r for r in runs if "error" not in r and r["verify"]["ok"]]
    out: dict[str, Any] = {"all_ran_and_verified": len(good) == len(runs) and bool(runs), "by_workers": {}}
    for workers in params["workers"]:
        mine = [r for r in good if r["workers"] == workers]
        if not mine:
            continue
        figures: dict[str, Any] = {"runs": len(mine), "daemon_cpu_s": _median([r["daemon_cpu_s"] for r in mine])}
        if params["kind"] == "scalars":
            figures["daemon_cpu_us_per_scalar"] = _median([r["daemon_cpu_us_per_scalar"] for r in mine])
            figures["wall_s"] = _median([r["wall_s"] for r in mine])
        else:
            for key in (
                "drain_s",
                "input_gb_per_s",
                "arrays_per_s",
                "daemon_cpu_s_per_gb",
                "daemon_cpu_s_per_100",
                "daemon_cores",
            ):
                figures[key] = _median([r[key] for r in mine])
            figures["input_gb_per_s_all"] = [round(r["input_gb_per_s"], 3) for r in mine]
        out["by_workers"][str(workers)] = figures
    by = out["by_workers"]
    if params["kind"] != "scalars" and "1" in by and len(by) > 1:
        most = str(max(int(w) for w in by))
        out["scaling"] = {"workers": int(most), "x_one_worker": by[most]["input_gb_per_s"] / by["1"]["input_gb_per_s"]}
    return out


#: (name, description, workload, threshold, unit, kind) of the daemon's goals.
TARGETS = (
    ("daemon_cpu_per_scalar", "daemon CPU per scalar written", "daemon_scalars", 1.0, "µs", "max"),
    (
        "daemon_histogram_scaling",
        "daemon histogram throughput, 2 encoding workers over 1",
        "daemon_histograms",
        1.7,
        "×",
        "min",
    ),
)


def evaluate_targets(entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """PASS/FAIL of each daemon target on the daemon workloads that ran ("not run" otherwise)."""
    rows = []
    for name, description, workload, threshold, unit, kind in TARGETS:
        row: dict[str, Any] = {
            "name": name,
            "description": description,
            "threshold": threshold,
            "unit": unit,
            "higher": kind == "min",
            "measured": None,
            "result": "not run",
        }
        entry = entries.get(workload)
        if entry is not None:
            if name == "daemon_cpu_per_scalar":
                row["measured"] = entry["by_workers"].get("1", {}).get("daemon_cpu_us_per_scalar")
            else:
                row["measured"] = (entry.get("scaling") or {}).get("x_one_worker")
            if row["measured"] is None:
                row["result"] = "error"
            else:
                held = row["measured"] <= threshold if kind == "max" else row["measured"] >= threshold
                row["result"] = "PASS" if held and entry["all_ran_and_verified"] else "FAIL"
        rows.append(row)
    return rows


def markdown(entries: dict[str, dict[str, Any]]) -> list[str]:
    """The daemon's section of the report."""
    if not entries:
        return []
    lines = [
        "",
        "## The daemon: CPU per unit written, and throughput with 1 and 2 encoding workers (logger_client only)",
        "",
        "| workload | encoding workers | runs | drain s (median) | throughput | daemon CPU s (cores busy) "
        "| daemon CPU per unit | verified on disk |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for entry in entries.values():
        verified = "✓" if entry["all_ran_and_verified"] else "✗"
        errors = [r["error"].splitlines()[0] for r in entry["runs"] if "error" in r]
        for workers, f in entry["by_workers"].items():
            if "daemon_cpu_us_per_scalar" in f:
                lines.append(
                    f"| {entry['label']} | {workers} | {f['runs']} | | {entry['params']['calls'] / f['wall_s']:,.0f} "
                    f"scalars/s (client running) | {f['daemon_cpu_s']:.2f} | {f['daemon_cpu_us_per_scalar']:.2f} µs "
                    f"a scalar ({f['daemon_cpu_s'] / entry['params']['calls'] * 1e6:.2f} s per 1 M) | {verified} |"
                )
                continue
            per = (
                f"{f['daemon_cpu_s_per_gb']:.2f} s per GB of input"
                if entry["params"]["kind"] == "histograms"
                else f"{f['daemon_cpu_s_per_100']:.2f} s per 100 images"
            )
            lines.append(
                f"| {entry['label']} | {workers} | {f['runs']} | {f['drain_s']:.2f} | {f['input_gb_per_s']:.2f} GB/s, "
                f"{f['arrays_per_s']:,.0f} arrays/s | {f['daemon_cpu_s']:.2f} ({f['daemon_cores']:.2f}) | {per} | "
                f"{verified} |"
            )
        if "scaling" in entry:
            lines.append(
                f"| {entry['label']}: {entry['scaling']['workers']} workers over 1 | | | | "
                f"{entry['scaling']['x_one_worker']:.2f}× | | | |"
            )
        lines += [f"| {entry['label']} | ERROR: {e.replace('|', '/')} | | | | | | |" for e in errors]
    return lines
