"""What the suite runs: every workload, its sizes (full and `--quick`), and the targets.

Every writer gets exactly the same workload and the same number of calls. Sizes for the call
workloads that the issue leaves open are chosen so that the suite's other workloads fit in 10
minutes on 2 cores (the anchors' own runs, above all their 1 000 000-call end-to-end runs, take
most of it; the 100 M-parameter model burst and the daemon's drains, whose sizes issue 15 gives,
add about 6), and so that the array workloads stay inside logger_client's documented client buffer
(1 GiB of arrays in flight): 40 histograms of 1e6 float32 are 160 MB, 30 images of 3x512x512
float32 are 94 MB, and the largest burst, 200 histograms of 4 MB, is 800 MB.

The methods of issue 13 (add_figure, add_pr_curve, add_embedding, add_audio, add_video) take
their sizes from the issue; their call counts (`CALLS_NEW`) from what the anchors pay a call, so
that the five add about two minutes to the suite on 2 cores: tensorboardX and torch spend
1.5-3 s on each 10 000 x 128 embedding (tens of thousands of str() calls for tensors.tsv), about
0.17 s on each video (moviepy writes the GIF to a temporary file), 30-170 ms on each figure. Their
arrays stay inside the client buffer too: 200 x 1.2 MB of labels and predictions, 100 x 1.8 MB of
audio, 6 x 5.1 MB of embeddings, 30 x 0.8 MB of video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GROUPS = ("calls", "bursts", "model_burst", "throughput", "training_loop", "daemon", "read_back", "reduce", "soak")
#: Groups a run leaves out unless `--only` names them: the soak takes minutes of its own.
OPT_IN = ("soak",)
#: How long the soak runs unless `--soak-s` says otherwise (full, --quick).
SOAK_S = (300.0, 5.0)
#: Full-size call counts of the methods of issue 13 (see the module's docstring).
CALLS_NEW = {"add_figure": 40, "add_pr_curve": 200, "add_embedding": 6, "add_audio": 100, "add_video": 30}


@dataclass(frozen=True)
class Workload:
    name: str
    group: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)


def _call(name: str, label: str, method: str, calls: int, **params: Any) -> Workload:
    return Workload(name, "calls", label, {"method": method, "calls": calls, **params})


def workloads(quick: bool, soak_s: float | None = None) -> list[Workload]:
    """The suite in run order; `quick` keeps every workload and writer but shrinks the sizes."""
    q = quick
    soak_s = soak_s if soak_s is not None else SOAK_S[q]
    histogram_values = 100_000 if q else 1_000_000
    return [
        _call("add_scalar", "add_scalar", "add_scalar", 2_000 if q else 100_000),
        _call("add_scalars", "add_scalars, 4 keys", "add_scalars", 100 if q else 2_500, keys=4),
        _call("add_text", "add_text", "add_text", 100 if q else 5_000),
        _call(
            "add_histogram",
            f"add_histogram, {histogram_values:.0e} float32".replace("e+0", "e"),
            "add_histogram",
            3 if q else 40,
            values=histogram_values,
        ),
        _call("add_image_small", "add_image 3x64x64 float32", "add_image", 10 if q else 500, shape=[3, 64, 64]),
        _call("add_image_large", "add_image 3x512x512 float32", "add_image", 3 if q else 30, shape=[3, 512, 512]),
        # The methods of issue 13 whose work tensorboardX does in the call (see calls.py for the arguments).
        _call(
            "add_figure",
            f"add_figure, line plot of {100 if q else 1_000} points, {'160x120' if q else '640x480'} px",
            "add_figure",
            3 if q else CALLS_NEW["add_figure"],
            points=100 if q else 1_000,
            figsize=[1.6, 1.2] if q else [6.4, 4.8],
            dpi=100,
        ),
        _call(
            "add_pr_curve",
            f"add_pr_curve, {1_000 if q else 100_000:.0e} labels".replace("e+0", "e"),
            "add_pr_curve",
            3 if q else CALLS_NEW["add_pr_curve"],
            values=1_000 if q else 100_000,
        ),
        _call(
            "add_embedding",
            f"add_embedding {100 if q else 10_000:,}x{8 if q else 128} float32 + metadata",
            "add_embedding",
            3 if q else CALLS_NEW["add_embedding"],
            rows=100 if q else 10_000,
            dim=8 if q else 128,
        ),
        _call(
            "add_audio",
            f"add_audio {0.1 if q else 10:g} s at 44.1 kHz float32",
            "add_audio",
            3 if q else CALLS_NEW["add_audio"],
            seconds=0.1 if q else 10.0,
            sample_rate=44_100,
        ),
        _call(
            "add_video",
            f"add_video {4 if q else 16} frames 3x{16 if q else 64}x{16 if q else 64} float32",
            "add_video",
            3 if q else CALLS_NEW["add_video"],
            frames=4 if q else 16,
            shape=[3, 16, 16] if q else [3, 64, 64],
        ),
        *_bursts(q),
        _model_burst(q),
        Workload(
            "e2e_one_writer", "throughput", "end-to-end, 1 writer", {"processes": 1, "calls": 5_000 if q else 1_000_000}
        ),
        # --quick starts 2 processes, not 4: each anchor process imports torch (seconds of CPU).
        Workload(
            "e2e_four_processes",
            "throughput",
            f"end-to-end, {2 if q else 4} processes x 1 writer, one log dir",
            {"processes": 2 if q else 4, "calls": 1_000 if q else 100_000},
        ),
        Workload(
            "training_loop",
            "training_loop",
            "training loop",
            {
                "steps": 20 if q else 2_000,
                "step_ms": 2.0,
                "scalars_per_step": 10,
                "arrays_every": 5 if q else 50,
                "image_shape": [3, 256, 256],
                "histogram_values": 100_000,
                # One pass of 40 blocks, each its own measurement: the median of 40 block pairs (a second
                # pass would take the suite past 10 minutes on a slow day; the anchors' runs are most of it).
                "repeats": 1,
            },
        ),
        *_daemon(q),
        # Written once by logger_client, then read by each reader (not per writer: see read_back.py).
        Workload(
            "read_back",
            "read_back",
            f"read back {4 * 10 * (500 if q else 25_000):,} scalars (10 tags, 4 runs)",
            {"runs": 4, "tags": 10, "steps": 500 if q else 25_000},
        ),
        # logger_client only, not per writer: ranks of one job, reduced by the daemon (see reduce.py).
        Workload(
            "reduce",
            "reduce",
            f"reduce, 8 ranks x {5_000 if q else 100_000:,} scalars, mean, one node and two",
            {"ranks": 8, "steps": 5_000 if q else 100_000},
        ),
        # logger_client only, opt-in (OPT_IN): see soak.py.
        Workload(
            "soak",
            "soak",
            f"soak, 4 processes x {soak_s:g} s at a training pace",
            {
                "processes": 4,
                "duration_s": soak_s,
                "step_ms": 10.0,
                "scalars_per_step": 20,
                "image_shape": [3, 64, 64],
                "sample_s": 1.0,
                "warmup_fraction": 0.2,
                "poll_s": 0.01,
            },
        ),
    ]


def _bursts(quick: bool) -> list[Workload]:
    """A histogram of every parameter, back to back, every step: 40 of 1e6 float32 (160 MB) and
    200 of 4 MB (800 MB, within the documented 1 GiB a burst), numpy and torch inputs."""
    values = 100_000 if quick else 1_000_000
    shown = f"{values:.0e}".replace("e+0", "e")
    sizes = ((40, 3), (200, 2))
    return [
        Workload(
            f"burst_{calls}_{source}",
            "bursts",
            f"burst of {calls} x add_histogram {shown} float32 ({source})",
            {"calls": 4 if quick else calls, "bursts": 2 if quick else bursts, "values": values, "input": source},
        )
        for calls, bursts in sizes
        for source in ("numpy", "torch")
    ]


def _model_burst(quick: bool) -> Workload:
    """A histogram of every parameter of a transformer stack of about 100 M parameters (400 MB in
    147 tensors) after each ~50 ms compute step, 20 steps (see model_burst.py)."""
    size = (
        {"vocab": 100, "d_model": 32, "heads": 2, "ff": 64, "layers": 2}
        if quick
        else {"vocab": 20_000, "d_model": 768, "heads": 12, "ff": 3072, "layers": 12}
    )
    return Workload(
        "model_burst",
        "model_burst",
        f"{'tiny' if quick else '100 M-parameter'} transformer stack: add_histogram of every parameter every step",
        {**size, "steps": 3 if quick else 20, "step_ms": 5.0 if quick else 50.0, "poll_s": 0.01},
    )


def _daemon(quick: bool) -> list[Workload]:
    """The daemon's CPU per scalar, per GB of histograms and per 100 PNGs, and its drain rate with 1
    and 2 encoding workers (see daemon_costs.py); logger_client only."""
    return [
        Workload(
            "daemon_scalars",
            "daemon",
            f"daemon CPU, {20_000 if quick else 1_000_000:,} add_scalar",
            {"kind": "scalars", "calls": 20_000 if quick else 1_000_000, "workers": [1], "rounds": 1 if quick else 2},
        ),
        Workload(
            "daemon_histograms",
            "daemon",
            f"daemon drain, {10 if quick else 200} x add_histogram {'1e5' if quick else '1e6'} float32",
            {
                "kind": "histograms",
                "calls": 10 if quick else 200,
                "values": 100_000 if quick else 1_000_000,
                "repeats": 1 if quick else 2,
                "workers": [1, 2],
                "rounds": 1 if quick else 2,
            },
        ),
        Workload(
            "daemon_images",
            "daemon",
            f"daemon drain, {10 if quick else 100} x add_image 3x{64 if quick else 512}x{64 if quick else 512} float32",
            {
                "kind": "images",
                "calls": 10 if quick else 100,
                "shape": [3, 64, 64] if quick else [3, 512, 512],
                "repeats": 1 if quick else 2,
                "workers": [1, 2],
                "rounds": 1,
            },
        ),
    ]


@dataclass(frozen=True)
class Target:
    """A goal from the issue, checked on the figures of one run."""

    name: str
    description: str
    workload: str
    threshold: float
    #: "ratio_min": reference / subject >= threshold; "max": subject value <= threshold.
    kind: str
    metric: str
    #: Unit of a "max" target's figure, where it is not microseconds or percent.
    unit: str = ""


TARGETS = [
    Target(
        "add_scalar_ratio",
        "add_scalar mean per call >= 30x lower than tensorboardX",
        "add_scalar",
        30.0,
        "ratio_min",
        "mean_us",
    ),
    Target("add_scalar_abs", "add_scalar mean per call <= 1 us", "add_scalar", 1.0, "max", "mean_us"),
    Target(
        "add_image_large_ratio",
        "add_image 3x512x512 mean per call >= 100x lower than tensorboardX",
        "add_image_large",
        100.0,
        "ratio_min",
        "mean_us",
    ),
    Target(
        "add_histogram_ratio",
        "add_histogram 1e6 mean per call >= 40x lower than tensorboardX",
        "add_histogram",
        40.0,
        "ratio_min",
        "mean_us",
    ),
    *(
        Target(
            f"{name}_ratio",
            f"{label} mean per call >= 20x lower than tensorboardX",
            name,
            20.0,
            "ratio_min",
            "mean_us",
        )
        for name, label in (
            ("add_pr_curve", "add_pr_curve 1e5 labels"),
            ("add_embedding", "add_embedding 10 000x128 + metadata"),
            ("add_audio", "add_audio 10 s at 44.1 kHz"),
            ("add_video", "add_video 16 frames 3x64x64"),
        )
    ),
    Target(
        "e2e_one_writer_ratio",
        "end-to-end scalars/s, one writer >= 20x tensorboardX's",
        "e2e_one_writer",
        20.0,
        "ratio_min",
        "scalars_per_s",
    ),
    *(
        Target(
            f"burst_{calls}_{source}_floor",
            f"{calls} x add_histogram 1e6 ({source}) in a burst: mean per call <= 2x the copy floor",
            f"burst_{calls}_{source}",
            2.0,
            "max",
            "x_copy_floor",
        )
        for calls in (40, 200)
        for source in ("numpy", "torch")
    ),
    Target(
        "burst_40_numpy_ratio",
        "40 x add_histogram 1e6 in a burst: mean per call >= 20x lower than tensorboardX",
        "burst_40_numpy",
        20.0,
        "ratio_min",
        "mean_us",
    ),
    Target(
        "model_burst_overhead",
        "100 M parameters as histograms every ~50 ms step: training-loop overhead",
        "model_burst",
        5.0,
        "max",
        "overhead_pct",
        "%",
    ),
    Target(
        "model_burst_dropped",
        "100 M parameters as histograms every step: dropped at the default bounds",
        "model_burst",
        0.0,
        "max",
        "dropped_total",
        "records",
    ),
    Target(
        "model_burst_latency_p99",
        "100 M parameters as histograms every step: call to readable on disk, p99",
        "model_burst",
        2.0,
        "max",
        "latency_p99_s",
        "s",
    ),
    Target("training_loop_overhead", "training-loop overhead <= 1 %", "training_loop", 1.0, "max", "overhead_pct"),
    Target(
        "e2e_one_writer_daemon_rss",
        "daemon peak RSS, end-to-end 1 writer (the scalar flood)",
        "e2e_one_writer",
        200.0,
        "max",
        "daemon_peak_rss_mb",
        "MiB",
    ),
]


@dataclass(frozen=True)
class ReadBackTarget:
    """A goal for reading back: logger_client's read time against another reader's, same data."""

    name: str
    description: str
    reader: str
    threshold: float


READ_BACK_TARGETS = [
    ReadBackTarget(
        "read_back_vs_event_accumulator",
        "reading 1e6 scalars back >= 10x faster than EventAccumulator",
        "EventAccumulator",
        10.0,
    ),
    ReadBackTarget("read_back_vs_tbparse", "reading 1e6 scalars back >= 10x faster than tbparse", "tbparse", 10.0),
]
