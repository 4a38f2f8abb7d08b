"""Training-loop overhead: what logging adds to the wall time of a loop of real (numpy) work.

The step is `x = tanh(x @ w)` on float32, `x` of `rows` x 256 and `w` 256 x 256, with `rows`
calibrated once per suite run (in its own child) so that a step takes about `step_ms` on one BLAS
thread; every writer's child then runs the same `rows`. BLAS, OpenMP and torch are pinned to one
thread, so the loop's own run-to-run noise is small and the other core is left to what the writers
run beside the training thread (tensorboardX's and torch's writer threads, logger_client's I/O
thread and daemon).

Each step logs `scalars_per_step` scalars (the first values of `x`, as `loss.item()` would give);
every `arrays_every` steps also one image (3x256x256 float32) and one histogram (1e5 float32).
One child per writer runs `repeats` pairs of (loop without logging, loop with logging) with the
same writer, alternating which of the pair goes first; overhead = median(logged) / median(plain)
- 1, on the wall clock. Beside it, the same ratio on the CPU time of the training thread and of the
whole process (the wall clock also counts time lost to other processes on a shared machine; the
thread's CPU time does not, nor time spent waiting for the GIL). The writer's close() comes after
all pairs and is reported beside (close_s), not in the loop.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from benchmarks.writers import WriterAdapter

_WIDTH = 256
_WARMUP_STEPS = 20


def _pin_torch_threads() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _weights(rng: np.random.Generator) -> np.ndarray:
    # Gain 1.5 keeps tanh(x @ w) away from 0 (denormals would slow the step down over time).
    return rng.standard_normal((_WIDTH, _WIDTH), dtype=np.float32) * np.float32(1.5 / np.sqrt(_WIDTH))


def _arrays(rows: int, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((rows, _WIDTH), dtype=np.float32)
    w = _weights(rng)
    image = rng.random(tuple(params["image_shape"]), dtype=np.float32)
    histogram = rng.standard_normal(params["histogram_values"], dtype=np.float32)
    return x0, w, image, histogram


class _Clocks:
    """Wall time, CPU time of this (the training) thread and of the whole process, over a loop."""

    def __enter__(self) -> "_Clocks":
        self.t0 = (time.perf_counter(), time.thread_time(), time.process_time())
        return self

    def __exit__(self, *exc: Any) -> None:
        now = (time.perf_counter(), time.thread_time(), time.process_time())
        self.wall, self.thread_cpu, self.process_cpu = (b - a for a, b in zip(self.t0, now))


def _plain_loop(x: np.ndarray, w: np.ndarray, steps: int) -> _Clocks:
    with _Clocks() as clocks:
        for _ in range(steps):
            x = np.tanh(x @ w)
    return clocks


def _logged_loop(x: np.ndarray, w: np.ndarray, steps: int, writer: Any, first_step: int, tags: list[str],
                 every: int, image: np.ndarray, histogram: np.ndarray, prefix: str = "train") -> float:
    scalars = len(tags)
    add_scalar = writer.add_scalar
    with _Clocks() as clocks:
        for s in range(steps):
            x = np.tanh(x @ w)
            step = first_step + s
            row = x[0, :scalars].tolist()
            for j in range(scalars):
                add_scalar(tags[j], row[j], step)
            if s % every == 0:
                writer.add_image(f"{prefix}/image", image, step)
                writer.add_histogram(f"{prefix}/activations", histogram, step)
    return clocks


def calibrate(step_ms: float) -> dict[str, Any]:
    """Rows of `x` for which one step takes about `step_ms` here, on one thread."""
    _pin_torch_threads()
    rng = np.random.default_rng(0)
    w = _weights(rng)

    def step_s(rows: int) -> float:
        x = rng.standard_normal((rows, _WIDTH), dtype=np.float32)
        _plain_loop(x, w, 5)
        best = float("inf")
        for _ in range(5):
            best = min(best, _plain_loop(x, w, 20).wall / 20)
        return best

    rows = 256
    for _ in range(3):
        rows = int(min(16384, max(16, round(rows * step_ms / 1e3 / step_s(rows)))))
    return {"rows": rows, "width": _WIDTH, "measured_step_ms": step_s(rows) * 1e3}


def expected_counts(params: dict[str, Any]) -> dict[str, int]:
    steps, repeats = params["steps"], params["repeats"]
    arrays = repeats * len(range(0, steps, params["arrays_every"])) + 1  # + the warm-up's
    return {
        "scalar": repeats * steps * params["scalars_per_step"] + params["scalars_per_step"],
        "image": arrays,
        "histogram": arrays,
    }


def run(adapter: WriterAdapter, params: dict[str, Any], logdir: str) -> dict[str, Any]:
    _pin_torch_threads()
    rows = params["rows"]
    steps, every, repeats = params["steps"], params["arrays_every"], params["repeats"]
    x0, w, image, histogram = _arrays(rows, params)
    tags = [f"train/scalar{j}" for j in range(params["scalars_per_step"])]

    t0 = time.perf_counter()
    writer = adapter.open(logdir)
    construct_s = time.perf_counter() - t0
    # Warm-up: numpy, BLAS, and one of everything the loop logs (on other tags), written out.
    _plain_loop(x0, w, _WARMUP_STEPS)
    _logged_loop(x0, w, 1, writer, 0, [f"warmup/scalar{j}" for j in range(len(tags))], every, image, histogram,
                 prefix="warmup")
    writer.flush()

    plain: list[_Clocks] = []
    logged: list[_Clocks] = []
    for r in range(repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        for with_logging in order:
            if with_logging:
                logged.append(_logged_loop(x0, w, steps, writer, r * steps, tags, every, image, histogram))
            else:
                plain.append(_plain_loop(x0, w, steps))

    t0 = time.perf_counter()
    confirmed = adapter.close(writer)
    close_s = time.perf_counter() - t0

    def median(loops: list[_Clocks], clock: str) -> float:
        return float(np.median([getattr(loop, clock) for loop in loops]))

    def overhead(clock: str) -> float:
        return (median(logged, clock) / median(plain, clock) - 1.0) * 100.0

    return {
        "rows": rows,
        "steps": steps,
        "repeats": repeats,
        "plain_s": [loop.wall for loop in plain],
        "logged_s": [loop.wall for loop in logged],
        "plain_median_s": median(plain, "wall"),
        "logged_median_s": median(logged, "wall"),
        "step_ms": median(plain, "wall") / steps * 1e3,
        "overhead_pct": overhead("wall"),
        "overhead_pct_per_pair": [(lg.wall / pl.wall - 1.0) * 100.0 for pl, lg in zip(plain, logged)],
        # Beside the wall-clock figure (the one the target is about): CPU time of the training
        # thread (not inflated by other processes taking the core, nor by waiting for the GIL)
        # and of the whole process (adds the writer's own threads).
        "thread_cpu_overhead_pct": overhead("thread_cpu"),
        "process_cpu_overhead_pct": overhead("process_cpu"),
        "plain_thread_cpu_s": [loop.thread_cpu for loop in plain],
        "logged_thread_cpu_s": [loop.thread_cpu for loop in logged],
        "plain_process_cpu_s": [loop.process_cpu for loop in plain],
        "logged_process_cpu_s": [loop.process_cpu for loop in logged],
        "construct_s": construct_s,
        "close_s": close_s,
        "close_confirmed": confirmed,
    }
