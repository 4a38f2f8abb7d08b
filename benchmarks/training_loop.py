"""Training-loop overhead: what logging adds to the wall time of a loop of real (numpy) work.

The step is `x = tanh(x @ w)` on float32, `x` of `rows` x 256 and `w` 256 x 256, with `rows`
calibrated once per suite run (in its own child) so that a step takes about `step_ms` on one BLAS
thread; every writer's child then runs the same `rows`. BLAS, OpenMP and torch are pinned to one
thread, so the loop's own run-to-run noise is small and the other core is left to what the writers
run beside the training thread (tensorboardX's and torch's writer threads, logger_client's I/O
thread and daemon).

Each step reads `scalars_per_step` metrics off `x` (as `loss.item()` would give: the plain loop
does it too) and logs them as scalars; every `arrays_every` steps it also logs one image
(3x256x256 float32) and one histogram (1e5 float32).
One child per writer runs `repeats` times the logged loop of `steps` steps, cut into blocks of
`arrays_every` steps, each block timed beside a plain block and beside a control block (plain too)
or, in alternate rounds, a null block (the logged loop calling a writer that does nothing), of the
same length, in rotating order, with one writer kept open throughout (see `run`).
overhead = the median over all block pairs of logged / plain - 1, on the wall clock. Beside it:
the median of control / plain - 1, the noise floor of that figure on this machine, and of
null / plain - 1, the call floor: what the same calls cost when the writer does nothing at all
(the training step leaves the interpreter's caches cold, so even empty calls cost microseconds).
Also reported: the same medians on the CPU time of the training thread and of the whole process,
and the ratio of total times. The writer's close() comes after all blocks and is reported beside
(close_s), not in the loop.
"""

from __future__ import annotations

import itertools
import sys
import time
from typing import Any

import numpy as np

from benchmarks import calls
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

    def __enter__(self) -> _Clocks:
        self.t0 = (time.perf_counter(), time.thread_time(), time.process_time())
        return self

    def __exit__(self, *exc: Any) -> None:
        now = (time.perf_counter(), time.thread_time(), time.process_time())
        self.wall, self.thread_cpu, self.process_cpu = (b - a for a, b in zip(self.t0, now))


def _plain_loop(x: np.ndarray, w: np.ndarray, steps: int, scalars: int = 0) -> _Clocks:
    """The training loop with no logging. It still reads its `scalars` metrics off `x` each step,
    as a step computes its loss whether or not it is logged: what differs from the logged loop
    is only the calls to the writer."""
    with _Clocks() as clocks:
        for _ in range(steps):
            x = np.tanh(x @ w)
            x[0, :scalars].tolist()  # the metrics a step computes anyway, as loss.item()
    return clocks


class _NullWriter:
    """The calls of the logged loop, doing nothing: the null blocks' writer (the call floor)."""

    def add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: Any = None,
        walltime: Any = None,
        display_name: str = "",
        summary_description: str = "",
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        pass

    def add_image(
        self, tag: str, img_tensor: Any, global_step: Any = None, walltime: Any = None, dataformats: str = "CHW"
    ) -> None:
        pass

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: Any = None,
        bins: Any = "tensorflow",
        walltime: Any = None,
        max_bins: Any = None,
    ) -> None:
        pass


def _logged_loop(
    x: np.ndarray,
    w: np.ndarray,
    steps: int,
    writer: Any,
    first_step: int,
    tags: list[str],
    every: int,
    image: np.ndarray,
    histogram: np.ndarray,
    prefix: str = "train",
) -> _Clocks:
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
        # Up to 64 MiB of x: enough for the model burst's ~50 ms steps on a fast core.
        rows = int(min(65536, max(16, round(rows * step_ms / 1e3 / step_s(rows)))))
    return {"rows": rows, "width": _WIDTH, "measured_step_ms": step_s(rows) * 1e3}


def expected_counts(params: dict[str, Any]) -> dict[str, int]:
    steps, repeats = params["steps"], params["repeats"]
    arrays = repeats * len(range(0, steps, params["arrays_every"])) + 1  # + the warm-up's
    return {
        "scalar": repeats * steps * params["scalars_per_step"] + params["scalars_per_step"],
        "image": arrays,
        "histogram": arrays,
    }


#: The three kinds of block a round runs, in an order that rotates through all six permutations,
#: so that no kind always follows another (work a writer leaves behind lands on every kind alike).
#: The third kind is a control block in even rounds, a null block in odd ones.
_ORDERS = tuple(itertools.permutations(("plain", "logged", "third")))


def run(adapter: WriterAdapter, params: dict[str, Any], logdir: str) -> dict[str, Any]:
    """Rounds of blocks of `arrays_every` steps each, timed one by one: a plain block, a logged
    block (the logged loop's next `arrays_every` steps, so its image and histogram come first), and
    a third block: a control block (plain again) in even rounds, a null block (the logged loop with
    a writer that does nothing) in odd ones. Adjacent blocks see the same machine, so a block
    pair's ratio is free of the drift of a shared VM, whose speed can wander within a minute; the
    control/plain ratios measure what is left, the method's own noise floor, and the null/plain
    ratios the call floor; both are reported beside."""
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
    _logged_loop(
        x0, w, 1, writer, 0, [f"warmup/scalar{j}" for j in range(len(tags))], every, image, histogram, prefix="warmup"
    )
    writer.flush()
    time.sleep(calls.SETTLE_S)

    # blocks[kind][repeat][round]: None where a round has no block of that kind.
    blocks: dict[str, list[list[_Clocks | None]]] = {"plain": [], "logged": [], "control": [], "null": []}
    null_writer = _NullWriter()
    for r in range(repeats):
        for timed in blocks.values():
            timed.append([])
        for index, first in enumerate(range(0, steps, every)):
            length = min(every, steps - first)
            third, absent = ("null", "control") if index % 2 else ("control", "null")
            # Each order twice in a row, once with each third kind: neither kind sees one order more.
            rotation = _ORDERS[(r * steps // every + index // 2) % len(_ORDERS)]
            order = [third if kind == "third" else kind for kind in rotation]
            blocks[absent][r].append(None)
            for kind in order:
                if kind == "logged":
                    clocks = _logged_loop(x0, w, length, writer, r * steps + first, tags, every, image, histogram)
                elif kind == "null":
                    clocks = _logged_loop(x0, w, length, null_writer, r * steps + first, tags, every, image, histogram)
                else:
                    clocks = _plain_loop(x0, w, length, len(tags))
                blocks[kind][r].append(clocks)

    t0 = time.perf_counter()
    confirmed = adapter.close(writer)
    close_s = time.perf_counter() - t0

    def pair_pct(kind: str, clock: str, repeat: int | None = None) -> list[float]:
        rounds = range(repeats) if repeat is None else (repeat,)
        return [
            (getattr(a, clock) / getattr(p, clock) - 1.0) * 100.0
            for r in rounds
            for a, p in zip(blocks[kind][r], blocks["plain"][r])
            if a is not None
        ]

    def total(kind: str, clock: str, repeat: int) -> float:
        return sum(getattr(c, clock) for c in blocks[kind][repeat])

    def median(values: list[float]) -> float:
        return float(np.median(values)) if values else float("nan")  # nan: a loop too short for that kind

    plain_s = [total("plain", "wall", r) for r in range(repeats)]
    logged_s = [total("logged", "wall", r) for r in range(repeats)]
    return {
        "rows": rows,
        "steps": steps,
        "repeats": repeats,
        "block_steps": every,
        "blocks_per_kind": sum(len(b) for b in blocks["plain"]),
        "plain_s": plain_s,
        "logged_s": logged_s,
        "plain_median_s": median(plain_s),
        "logged_median_s": median(logged_s),
        "step_ms": median(plain_s) / steps * 1e3,
        # The target's figure: the median over every (logged, plain) block pair of all repeats.
        "overhead_pct": median(pair_pct("logged", "wall")),
        "overhead_pct_per_repeat": [median(pair_pct("logged", "wall", r)) for r in range(repeats)],
        # The same loops compared by their total time (sensitive to the VM's drift).
        "overhead_pct_total_time": (sum(logged_s) / sum(plain_s) - 1.0) * 100.0,
        # control/plain: identical work, so anything but 0 is the method's noise.
        "noise_floor_pct": median(pair_pct("control", "wall")),
        "noise_floor_iqr_pct": [float(v) for v in np.percentile(pair_pct("control", "wall"), [25, 75])],
        # null/plain: the same calls into a writer that does nothing; the floor of any writer here.
        "call_floor_pct": median(pair_pct("null", "wall")),
        "call_floor_thread_cpu_pct": median(pair_pct("null", "thread_cpu")),
        "overhead_iqr_pct": [float(v) for v in np.percentile(pair_pct("logged", "wall"), [25, 75])],
        # Beside the wall-clock figure: CPU time of the training thread (not inflated by other
        # processes taking the core, nor by waiting for the GIL) and of the whole process (adds the
        # writer's own threads), as medians over the same block pairs.
        "thread_cpu_overhead_pct": median(pair_pct("logged", "thread_cpu")),
        "process_cpu_overhead_pct": median(pair_pct("logged", "process_cpu")),
        "construct_s": construct_s,
        "close_s": close_s,
        "close_confirmed": confirmed,
    }
