"""End-to-end throughput: scalars per second from the first call until `close()` returns with
everything written.

One writer: a benchmark child constructs its writer (not timed: for logger_client that starts the
daemon; reported as `construct_s`), then times `calls` add_scalar calls and the `close()` after
them. logger_client's close() returns once the daemon has acknowledged every record as written
(and fsynced); tensorboardX's and torch's once their own thread has written and closed the file.

Several processes: the suite starts N children into one log directory, one writer each (as the
anchors' users do: each rank opens its own writer; logger_client's ranks share one daemon, which
writes one file). Each child constructs its writer, says READY and waits for GO, so imports and
construction are outside the window. The window runs from the earliest first call to the latest
close() return, on CLOCK_MONOTONIC (one clock for every process of the machine). Each rank logs
its own tag, in step order.

Each rank's writer gets `filename_suffix=".rank<r>"`: tensorboardX names its event files
`events.out.tfevents.<seconds>.<host>` with no pid, so writers of several processes started in
the same second write one file name and clobber each other. The suffix is what a tensorboardX
user must do; the other writers get the same argument so that the workload is the same for all
three.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmarks.writers import WriterAdapter


def expected_counts(params: dict[str, Any]) -> dict[str, int]:
    return {"scalar": params["calls"] * params["processes"]}


def run(
    adapter: WriterAdapter, params: dict[str, Any], logdir: str, rank: int = 0, wait_for_go: bool = False
) -> dict[str, Any]:
    calls = params["calls"]
    tag = f"e2e/rank{rank}"
    t0 = time.perf_counter()
    writer = adapter.open(logdir, filename_suffix=f".rank{rank}" if params["processes"] > 1 else "")
    construct_s = time.perf_counter() - t0
    add_scalar = writer.add_scalar
    if wait_for_go:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        if sys.stdin.readline().strip() != "GO":
            raise RuntimeError("the suite did not say GO")

    start_ns = time.monotonic_ns()
    for i in range(calls):
        add_scalar(tag, i * 0.5, i)
    calls_done_ns = time.monotonic_ns()
    confirmed = adapter.close(writer)
    end_ns = time.monotonic_ns()
    # logger_client says what it dropped and why: a verify failure then explains itself.
    dropped = writer.stats()["records_dropped"] if hasattr(writer, "stats") else None

    total_s = (end_ns - start_ns) / 1e9
    return {
        "rank": rank,
        "calls": calls,
        "construct_s": construct_s,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "calls_s": (calls_done_ns - start_ns) / 1e9,
        "close_s": (end_ns - calls_done_ns) / 1e9,
        "total_s": total_s,
        "scalars_per_s": calls / total_s,
        "close_confirmed": confirmed,
        "writer_dropped": dropped,
    }


def combine(workers: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """One figure for N processes: all their scalars over the window first call .. last close()."""
    start = min(w["start_ns"] for w in workers)
    end = max(w["end_ns"] for w in workers)
    total_s = (end - start) / 1e9
    scalars = sum(w["calls"] for w in workers)
    return {
        "processes": len(workers),
        "calls": scalars,
        "total_s": total_s,
        "scalars_per_s": scalars / total_s,
        "calls_s": max(w["calls_s"] for w in workers),
        "close_s": max(w["close_s"] for w in workers),
        "construct_s": max(w["construct_s"] for w in workers),
        "close_confirmed": all(w["close_confirmed"] for w in workers),
        "peak_rss_mb": max(w["peak_rss_mb"] for w in workers),
        "per_process": [
            {key: w[key] for key in ("rank", "calls_s", "close_s", "total_s", "scalars_per_s", "peak_rss_mb")}
            for w in workers
        ],
    }
