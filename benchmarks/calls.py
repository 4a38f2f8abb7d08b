"""Per-call workloads: what one `add_*` call costs the calling (training) thread.

Run inside a fresh benchmark child, one writer per child. The writer is constructed and warmed up
first (the first call starts threads, files or - for logger_client - the daemon; none of that is a
per-call cost) and left idle for `SETTLE_S`, then the calls are made in blocks that alternate
between two ways of timing:

* timed blocks: every call between a pair of `time.perf_counter_ns()`, minus the median cost of an
  empty pair measured just before -> the median and p99;
* untimed blocks: one clock pair around the whole block -> the mean is the sum of these blocks'
  wall time divided by their number of calls, with no per-call timer in it.

Alternating blocks (rather than two phases) means both see the same state of the writer (queue
lengths, background threads, garbage collector). Garbage collection stays on, as users have it.
Arguments are prepared before the loop; the loop itself is the same bare `for` for every writer.

The methods whose signature is not `(tag, value, step)` are called through a small function that
passes the same extra arguments to every writer (`bind`): add_pr_curve's labels and predictions,
add_embedding's metadata (10 000 str labels, built before the loop), add_audio's sample rate, and
add_figure's `close=False`. The figure is one matplotlib `Figure` per process, drawn again by every
call: each writer renders it in the call (a new Agg canvas, `draw()`), so keeping it open is what
makes the calls comparable (tensorboardX and torch close a pyplot figure with close=True; a figure
pyplot does not manage has nothing to close).

After `close()` each child also measures the call's floor, the same for every writer
(`floor_us`, the median of `FLOOR_REPEATS`): for array arguments an `np.copyto` of the same bytes
into warm buffers (the one copy logger_client's call makes), for add_figure the rendering
(`FigureCanvasAgg(figure).draw()`) that every writer does in the call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.writers import WriterAdapter

_EMPTY_PAIRS = 20_000
#: Idle time after the warm-up, for every writer alike, so that background start-up work
#: (logger_client faulting in its arena, the anchors' writer threads draining) ends before anything
#: is timed.
SETTLE_S = 0.5
#: Calls per block: about 100 blocks per workload, half of them timed call by call.
_BLOCKS = 100
#: Repeats of the floor measurement (median taken).
FLOOR_REPEATS = 10


def warmup_calls(calls: int) -> int:
    """Calls made on a separate tag before measuring (at least 2, at most 1000)."""
    return max(2, min(1000, calls // 50))


def expected_counts(params: dict[str, Any]) -> dict[str, int]:
    """The values of each kind the workload leaves on disk, warm-up included."""
    made = params["calls"] + warmup_calls(params["calls"])
    method = params["method"]
    if method == "add_scalar":
        return {"scalar": made}
    if method == "add_scalars":
        return {"scalar": made * params["keys"]}
    if method == "add_text":
        return {"text": made}
    if method == "add_histogram":
        return {"histogram": made}
    if method in ("add_image", "add_figure", "add_video"):  # a video is an image summary (a GIF)
        return {"image": made}
    if method == "add_pr_curve":
        return {"pr_curve": made}
    if method == "add_audio":
        return {"audio": made}
    if method == "add_embedding":  # projector files, not events: see verify.count_projector
        return {"embedding": made}
    raise ValueError(f"unknown call workload method {method!r}")


def embedding_rows(params: dict[str, Any]) -> int | None:
    """The data points of each embedding the workload logs (None: it logs none)."""
    return params["rows"] if params.get("method") == "add_embedding" else None


def _arguments(params: dict[str, Any], count: int, offset: int) -> tuple[str, list]:
    """(tag, one value argument per call): all built before anything is timed."""
    method = params["method"]
    if method == "add_scalar":
        return "bench/scalar", [(offset + i) * 0.5 for i in range(count)]
    if method == "add_scalars":
        keys = [f"k{j}" for j in range(params["keys"])]
        return "bench_scalars", [{key: (offset + i) * 0.5 + j for j, key in enumerate(keys)} for i in range(count)]
    if method == "add_text":
        return "bench/text", [f"step {offset + i}: loss **{(offset + i) * 0.5:.4f}**" for i in range(count)]
    rng = np.random.default_rng(0)
    if method == "add_histogram":
        values = rng.standard_normal(params["values"], dtype=np.float32)
        return "bench/histogram", [values] * count
    if method == "add_image":
        image = rng.random(tuple(params["shape"]), dtype=np.float32)
        return "bench/image", [image] * count
    if method == "add_figure":
        return "bench/figure", [_line_plot(params)] * count
    if method == "add_pr_curve":
        labels = rng.integers(0, 2, params["values"])  # int64, as torch.randint gives
        predictions = rng.random(params["values"], dtype=np.float32)
        return "bench/pr_curve", [(labels, predictions)] * count
    if method == "add_embedding":
        mat = rng.standard_normal((params["rows"], params["dim"]), dtype=np.float32)
        return "bench/embedding", [mat] * count
    if method == "add_audio":
        seconds = np.arange(round(params["seconds"] * params["sample_rate"])) / params["sample_rate"]
        samples = (0.5 * np.sin(2 * np.pi * 440.0 * seconds)).astype(np.float32)  # mono, in [-1, 1]
        return "bench/audio", [samples] * count
    if method == "add_video":
        video = rng.random((1, params["frames"], *params["shape"]), dtype=np.float32)  # N, T, C, H, W
        return "bench/video", [video] * count
    raise ValueError(f"unknown call workload method {method!r}")


def _line_plot(params: dict[str, Any]) -> Any:
    """A simple line plot: one axes, one line, labels and a legend (no pyplot: nothing to close)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=tuple(params["figsize"]), dpi=params["dpi"])
    axes = figure.add_subplot()
    x = np.linspace(0.0, 10.0, params["points"])
    axes.plot(x, np.exp(-x / 4) * np.cos(3 * x), label="loss")
    axes.set_xlabel("step")
    axes.set_ylabel("value")
    axes.legend()
    return figure


def bind(writer: Any, params: dict[str, Any]) -> Callable[[str, Any, int], Any]:
    """The call the loop makes, `call(tag, value, step)`, with the same extra arguments for every writer."""
    method = params["method"]
    function = getattr(writer, method)
    if method == "add_figure":

        def call(tag: str, value: Any, step: int) -> Any:
            return function(tag, value, step, close=False)

    elif method == "add_pr_curve":

        def call(tag: str, value: Any, step: int) -> Any:
            return function(tag, value[0], value[1], step)

    elif method == "add_embedding":
        metadata = [f"class {i % 10}" for i in range(params["rows"])]

        def call(tag: str, value: Any, step: int) -> Any:
            return function(value, metadata=metadata, global_step=step, tag=tag)

    elif method == "add_audio":
        rate = params["sample_rate"]

        def call(tag: str, value: Any, step: int) -> Any:
            return function(tag, value, step, sample_rate=rate)

    else:
        return function
    return call


def _arrays(method: str, value: Any) -> list[np.ndarray]:
    """The arrays one call passes (what logger_client copies)."""
    if method == "add_pr_curve":
        return list(value)
    if method in ("add_histogram", "add_image", "add_embedding", "add_audio", "add_video"):
        return [value]
    return []


def floor(params: dict[str, Any], value: Any) -> dict[str, Any]:
    """The cost every writer pays at least in one call (see the module's docstring); {} if none."""
    method = params["method"]
    once: Callable[[], Any]
    if method == "add_figure":
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        def once() -> Any:
            return FigureCanvasAgg(value).draw()

        what = "render: FigureCanvasAgg(figure).draw()"
    else:
        arrays = _arrays(method, value)
        if not arrays:
            return {}
        buffers = [np.empty_like(array) for array in arrays]
        pairs = list(zip(buffers, arrays))

        def once() -> Any:
            for buffer, array in pairs:
                np.copyto(buffer, array)

        once()  # the buffers' pages faulted in: warm
        what = f"copy: np.copyto of the call's {sum(a.nbytes for a in arrays):,} bytes into warm buffers"
    clock = time.perf_counter_ns
    samples = []
    for _ in range(FLOOR_REPEATS):
        t0 = clock()
        once()
        samples.append(clock() - t0)
    samples.sort()
    return {"floor_us": samples[len(samples) // 2] / 1e3, "floor": what}


def _timed_block(method: Any, tag: str, values: list, start: int, stop: int, out: list) -> None:
    clock = time.perf_counter_ns
    append = out.append
    for i in range(start, stop):
        value = values[i]
        t0 = clock()
        method(tag, value, i)
        append(clock() - t0)


def _untimed_block(method: Any, tag: str, values: list, start: int, stop: int) -> int:
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(start, stop):
        method(tag, values[i], i)
    return clock() - t0


def empty_pair_ns() -> int:
    """Median cost of an empty `perf_counter_ns()` pair: subtracted from every timed call."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    for _ in range(_EMPTY_PAIRS):
        t0 = clock()
        append(clock() - t0)
    samples.sort()
    return samples[len(samples) // 2]


def percentile(sorted_values: list, q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run(adapter: WriterAdapter, params: dict[str, Any], logdir: str) -> dict[str, Any]:
    calls = params["calls"]
    missing = adapter.missing(params["method"])
    if missing is not None:  # the writer would log nothing: nothing to time (see writers.py)
        return {"unsupported": missing}
    warmups = warmup_calls(calls)
    tag, values = _arguments(params, calls, 0)
    warm_tag, warm_values = _arguments(params, warmups, 0)
    warm_tag = "warmup/" + warm_tag

    t0 = time.perf_counter()
    writer = adapter.open(logdir)
    construct_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    method = bind(writer, params)
    for i in range(warmups):
        method(warm_tag, warm_values[i], i)
    writer.flush()
    warmup_s = time.perf_counter() - t0
    time.sleep(SETTLE_S)

    pair_ns = empty_pair_ns()
    block = max(1, calls // _BLOCKS)
    samples: list[int] = []
    untimed_ns = untimed_calls = 0
    wall0 = time.perf_counter_ns()
    for index, start in enumerate(range(0, calls, block)):
        stop = min(calls, start + block)
        if index % 2 == 0:
            _timed_block(method, tag, values, start, stop, samples)
        else:
            untimed_ns += _untimed_block(method, tag, values, start, stop)
            untimed_calls += stop - start
    loop_s = (time.perf_counter_ns() - wall0) / 1e9

    t0 = time.perf_counter()
    confirmed = adapter.close(writer)
    close_s = time.perf_counter() - t0

    floor_figures = floor(params, values[0])

    adjusted = sorted(max(0, s - pair_ns) for s in samples)
    if untimed_calls == 0:  # a single call: only a timed block ran
        untimed_ns, untimed_calls = sum(adjusted), len(adjusted)
    return {
        "calls": calls,
        "timed_calls": len(adjusted),
        "untimed_calls": untimed_calls,
        "block_calls": block,
        "median_us": adjusted[len(adjusted) // 2] / 1e3,
        "mean_us": untimed_ns / untimed_calls / 1e3,
        "p99_us": percentile(adjusted, 99) / 1e3,
        "min_us": adjusted[0] / 1e3,
        "max_us": adjusted[-1] / 1e3,
        "mean_of_timed_us": sum(adjusted) / len(adjusted) / 1e3,
        "timer_pair_ns": pair_ns,
        "construct_s": construct_s,
        "warmup_calls": warmups,
        "warmup_s": warmup_s,
        "loop_s": loop_s,
        "close_s": close_s,
        "close_confirmed": confirmed,
        **floor_figures,
    }
