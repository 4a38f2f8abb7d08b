"""A real model's parameters as histograms every step: the seed's `named_parameters()` loop in a
training loop.

Run inside a fresh benchmark child, one writer per child. The model is a stack of transformer
blocks built with torch.nn (`torch.nn.Embedding`, `layers` x `torch.nn.TransformerEncoderLayer`,
a final `LayerNorm`): at the full size about 100 M float32 parameters (400 MB) in 147 tensors.
Each logged step is a compute step of about `step_ms` (the training loop's `x = tanh(x @ w)` on
one thread, `rows` calibrated once per suite run) followed by `add_histogram(name, param, step)`
for every parameter, as the seed's example does, for `steps` steps.

The loop's overhead: `steps` plain steps (compute only) are timed before the logged steps and
again after them (after an untimed `flush()`, so that no logging work is left running), and
overhead = the logged steps' wall time / the plain steps' mean x `steps` - 1. The training
thread's cost per burst is the wall time of each step's calls. Beside it the copy floor: an
`np.copyto` of every parameter's bytes into one warm buffer of their total size (median of
`FLOOR_REPEATS`), the least any writer that keeps the values past the call must pay, and that
floor as a share of a plain step: the overhead no writer can go below.

For logger_client the suite also times each histogram from the call to the moment its record is
readable on disk (`soak.ProbeTailer` over every summary event, the files read every `poll_s`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks import training_loop
from benchmarks.calls import SETTLE_S
from benchmarks.writers import WriterAdapter

#: Repeats of the copy floor (median taken).
FLOOR_REPEATS = 3
#: Parameter tensors of one `torch.nn.TransformerEncoderLayer`: attention in/out weights and
#: biases, two linear layers' weights and biases, two layer norms' weights and biases.
_TENSORS_PER_LAYER = 12


def tensors(params: dict[str, Any]) -> int:
    """Parameter tensors of the model: the embedding, the layers', the final norm's two."""
    return 1 + _TENSORS_PER_LAYER * params["layers"] + 2


def expected_counts(params: dict[str, Any]) -> dict[str, int]:
    return {"histogram": tensors(params) * params["steps"]}


def build_model(params: dict[str, Any]) -> Any:
    import torch

    torch.manual_seed(15)
    d_model = params["d_model"]
    return torch.nn.Sequential(
        torch.nn.Embedding(params["vocab"], d_model),
        *(
            torch.nn.TransformerEncoderLayer(d_model, params["heads"], params["ff"], batch_first=True)
            for _ in range(params["layers"])
        ),
        torch.nn.LayerNorm(d_model),
    )


def _plain_steps(x: np.ndarray, w: np.ndarray, steps: int) -> tuple[np.ndarray, list[int]]:
    clock = time.perf_counter_ns
    times = []
    for _ in range(steps):
        t0 = clock()
        x = np.tanh(x @ w)
        times.append(clock() - t0)
    return x, times


def _copy_floor_ns(sources: list[np.ndarray], buffer: np.ndarray) -> int:
    clock = time.perf_counter_ns
    t0 = clock()
    at = 0
    for array in sources:
        n = array.size
        np.copyto(buffer[at : at + n], array.reshape(-1))
        at += n
    return clock() - t0


def run(adapter: WriterAdapter, params: dict[str, Any], logdir: str) -> dict[str, Any]:
    training_loop._pin_torch_threads()
    model = build_model(params)
    named = [(f"params/{name}", param) for name, param in model.named_parameters()]
    if len(named) != tensors(params):
        raise RuntimeError(f"the model has {len(named)} parameter tensors, expected {tensors(params)}")
    sources = [param.detach().numpy() for _, param in named]
    total_values = sum(array.size for array in sources)
    buffer = np.empty(total_values, dtype=np.float32)
    buffer.fill(1.0)  # its pages faulted in and written before anything is timed

    rng = np.random.default_rng(0)
    x = rng.standard_normal((params["rows"], 256), dtype=np.float32)
    w = training_loop._weights(rng)
    steps = params["steps"]

    t0 = time.perf_counter()
    writer = adapter.open(logdir)
    construct_s = time.perf_counter() - t0
    writer.flush()
    time.sleep(SETTLE_S)

    x, _ = _plain_steps(x, w, 3)  # warm-up
    x, plain_before = _plain_steps(x, w, steps)
    floor_ns = sorted(_copy_floor_ns(sources, buffer) for _ in range(FLOOR_REPEATS))
    del buffer

    clock = time.perf_counter_ns
    add_histogram = writer.add_histogram
    step_ns: list[int] = []
    burst_ns: list[int] = []
    for step in range(steps):
        t0_ns = clock()
        x = np.tanh(x @ w)
        t1_ns = clock()
        for tag, param in named:
            add_histogram(tag, param, step)
        t2_ns = clock()
        step_ns.append(t2_ns - t0_ns)
        burst_ns.append(t2_ns - t1_ns)

    t0 = time.perf_counter()
    flushed = writer.flush()
    flush_s = time.perf_counter() - t0
    x, plain_after = _plain_steps(x, w, steps)
    dropped = dict(writer.stats()["records_dropped"]) if hasattr(writer, "stats") else {}

    t0 = time.perf_counter()
    confirmed = adapter.close(writer)
    close_s = time.perf_counter() - t0

    plain = plain_before + plain_after
    plain_step_ms = sum(plain) / len(plain) / 1e6
    floor_ms = floor_ns[len(floor_ns) // 2] / 1e6
    burst_ms = sorted(ns / 1e6 for ns in burst_ns)
    logged_s = sum(step_ns) / 1e9
    return {
        "parameters": int(total_values),
        "tensors": len(named),
        "burst_bytes": int(total_values) * 4,
        "steps": steps,
        "plain_step_ms": plain_step_ms,
        "plain_step_ms_before_after": [sum(plain_before) / steps / 1e6, sum(plain_after) / steps / 1e6],
        "logged_step_ms": logged_s * 1e3 / steps,
        "logged_s": logged_s,
        "overhead_pct": 100 * (logged_s * 1e3 / steps / plain_step_ms - 1),
        "burst_ms": [ns / 1e6 for ns in burst_ns],
        "burst_mean_ms": sum(burst_ms) / steps,
        "burst_median_ms": burst_ms[steps // 2],
        "burst_max_ms": burst_ms[-1],
        "copy_floor_ms": floor_ms,
        "copy_floor_all_ms": [ns / 1e6 for ns in floor_ns],
        "x_copy_floor": sum(burst_ms) / steps / floor_ms,
        "floor_overhead_pct": 100 * floor_ms / plain_step_ms,
        "dropped": dropped,
        "dropped_total": sum(dropped.values()),
        "flush_s": flush_s,
        "flush_confirmed": bool(flushed) if flushed is not None else True,
        "construct_s": construct_s,
        "close_s": close_s,
        "close_confirmed": confirmed,
    }
