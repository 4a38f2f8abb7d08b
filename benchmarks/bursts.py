"""Bursts of array calls: a histogram of every parameter of a model, back to back, every step.

Run inside a fresh benchmark child, one writer per child. The writer is constructed and flushed
(for logger_client: its daemon started and connected), then left idle for `SETTLE_S`; no array is
logged before the first burst, so the first burst shows what a process's first array calls cost.
Each burst logs `calls` histograms of `values` float32 on as many tags (a model's parameters),
back to back; `flush()` follows it, untimed, so every burst starts from an idle writer.

Beside each burst, the copy floor: `np.copyto` of the same source arrays, in the same order, into
one buffer of their size, written once beforehand (warm). An array call can cost no less than
copying its bytes once; `x_copy_floor` is the writer's mean per call over the floor's mean per
copy, both measured in this process, burst by burst. Torch inputs are CPU tensors; their floor
copies the same bytes (`tensor.numpy()`, a view).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.calls import SETTLE_S
from benchmarks.writers import WriterAdapter

#: Distinct source arrays at most (cycled beyond): 40 of 1e6 float32 are 160 MB of inputs.
_MAX_SOURCES = 40


def expected_counts(params: dict[str, Any]) -> dict[str, int]:
    return {"histogram": params["calls"] * params["bursts"]}


def _sources(params: dict[str, Any]) -> tuple[list[Any], list[np.ndarray]]:
    """(what each call logs, the same bytes as numpy arrays), built before anything is timed."""
    rng = np.random.default_rng(15)
    count = min(params["calls"], _MAX_SOURCES)
    arrays = [rng.standard_normal(params["values"], dtype=np.float32) for _ in range(count)]
    if params["input"] == "torch":
        import torch

        tensors = [torch.from_numpy(array) for array in arrays]
        return tensors, [tensor.numpy() for tensor in tensors]
    return list(arrays), arrays


def _copy_floor_ns(sources: list[np.ndarray], calls: int) -> int:
    """Wall time of `calls` copies of the sources (cycled) into one warm buffer."""
    buffer = np.empty_like(sources[0])
    buffer.fill(1.0)  # its pages faulted in and written before anything is timed
    clock = time.perf_counter_ns
    count = len(sources)
    t0 = clock()
    for i in range(calls):
        np.copyto(buffer, sources[i % count])
    return clock() - t0


def _burst_ns(method: Any, tags: list[str], values: list[Any], step: int) -> int:
    clock = time.perf_counter_ns
    count = len(values)
    t0 = clock()
    for i, tag in enumerate(tags):
        method(tag, values[i % count], step)
    return clock() - t0


def run(adapter: WriterAdapter, params: dict[str, Any], logdir: str) -> dict[str, Any]:
    calls, bursts = params["calls"], params["bursts"]
    values, numpy_sources = _sources(params)
    tags = [f"params/layer{i:03d}.weight" for i in range(calls)]

    t0 = time.perf_counter()
    writer = adapter.open(logdir)
    construct_s = time.perf_counter() - t0
    writer.flush()
    time.sleep(SETTLE_S)

    burst_ns: list[int] = []
    floor_ns: list[int] = []
    flush_s: list[float] = []
    for step in range(bursts):
        floor_ns.append(_copy_floor_ns(numpy_sources, calls))
        burst_ns.append(_burst_ns(writer.add_histogram, tags, values, step))
        t0 = time.perf_counter()
        writer.flush()
        flush_s.append(time.perf_counter() - t0)
    dropped = dict(writer.stats()["records_dropped"]) if hasattr(writer, "stats") else {}

    t0 = time.perf_counter()
    confirmed = adapter.close(writer)
    close_s = time.perf_counter() - t0

    per_call = [ns / calls / 1e3 for ns in burst_ns]
    floor = [ns / calls / 1e3 for ns in floor_ns]
    multiples = [us / floor_us for us, floor_us in zip(per_call, floor)]
    later = per_call[1:] or per_call
    return {
        "calls": calls,
        "bursts": bursts,
        "mean_us": sum(burst_ns) / (calls * bursts) / 1e3,
        "burst_mean_us": per_call,
        "first_burst_mean_us": per_call[0],
        "later_bursts_mean_us": sum(later) / len(later),
        "copy_floor_us": sum(floor_ns) / (calls * bursts) / 1e3,
        "copy_floor_per_burst_us": floor,
        "x_copy_floor": sum(burst_ns) / sum(floor_ns),
        "x_copy_floor_per_burst": multiples,
        "x_copy_floor_first_burst": multiples[0],
        "x_copy_floor_later_bursts": sum(burst_ns[1:]) / sum(floor_ns[1:]) if bursts > 1 else multiples[0],
        "burst_bytes": calls * numpy_sources[0].nbytes,
        "dropped": dropped,
        "flush_s": flush_s,
        "construct_s": construct_s,
        "close_s": close_s,
        "close_confirmed": confirmed,
    }
