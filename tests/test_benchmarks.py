"""The benchmark suite still runs: `python -m benchmarks --quick` end to end, every workload against
every writer, with everything it logged read back from disk.

Not a timing test: nothing here looks at how fast anything was. It checks the shape of the JSON,
that every figure is a sane number, that every read-back verification passed (also through
TensorBoard's own loader, which --quick always uses), and that no daemon outlived the suite.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytest.importorskip("tensorboardX")
pytest.importorskip("torch")
pytest.importorskip("tensorboard")
pytest.importorskip("psutil")
# What the anchors' add_figure, add_audio and add_video need.
pytest.importorskip("matplotlib")
pytest.importorskip("soundfile")
pytest.importorskip("moviepy")

# The quick suite takes about a minute on 2 idle cores; more when the machine is busy.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

WRITERS = ("logger_client", "tensorboardX", "torch")
CALLS = (
    "add_scalar",
    "add_scalars",
    "add_text",
    "add_histogram",
    "add_image_small",
    "add_image_large",
    "add_figure",
    "add_pr_curve",
    "add_embedding",
    "add_audio",
    "add_video",
)
#: Call workloads with a floor (a copy of their arrays, or the figure's rendering).
FLOORED = CALLS[3:]
BURSTS = ("burst_40_numpy", "burst_40_torch", "burst_200_numpy", "burst_200_torch")
THROUGHPUT = ("e2e_one_writer", "e2e_four_processes")
DAEMON = ("daemon_scalars", "daemon_histograms", "daemon_images")
TARGETS = (
    "add_scalar_ratio",
    "add_scalar_abs",
    "add_image_large_ratio",
    "add_histogram_ratio",
    "add_pr_curve_ratio",
    "add_embedding_ratio",
    "add_audio_ratio",
    "add_video_ratio",
    "e2e_one_writer_ratio",
    *(f"{name}_floor" for name in BURSTS),
    "burst_40_numpy_ratio",
    "model_burst_overhead",
    "model_burst_dropped",
    "model_burst_latency_p99",
    "training_loop_overhead",
    "e2e_one_writer_daemon_rss",
)


def _unsupported_here() -> set[tuple[str, str]]:
    """The (workload, writer) pairs the suite reports as not supported here: torch's add_video
    imports moviepy.editor, which moviepy 2 removed."""
    try:
        editor = importlib.util.find_spec("moviepy.editor") is not None
    except ImportError:
        editor = False
    return set() if editor else {("add_video", "torch")}


def _measured(doc: dict) -> list[tuple[str, str, dict]]:
    """(workload, writer, result) of every result that holds figures."""
    return [
        (name, writer, result)
        for name, entry in doc["workloads"].items()
        for writer, result in entry["writers"].items()
        if "unsupported" not in result
    ]


def _daemon_pids(root: str) -> set[int]:
    """Daemons whose runtime dir lies under `root` (another suite may run on the machine meanwhile)."""
    import psutil

    pids = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any("logger_daemon" in part for part in cmdline) and any(p.startswith(root + "/") for p in cmdline):
            pids.add(process.pid)
    return pids


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, str]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-5000:]}\nstderr:\n{done.stderr[-5000:]}"
    with open(out) as f:
        doc = json.load(f)
    assert doc["scratch_root"].startswith("/tmp/tbb-")
    leftover = _daemon_pids(doc["scratch_root"])
    assert not leftover, f"daemons left running by the suite: {leftover}"
    assert not os.path.exists(doc["scratch_root"])
    return doc, done.stdout, str(out)


def test_every_workload_ran_for_every_writer(quick_run: tuple[dict, str, str]) -> None:
    doc, _, _ = quick_run
    assert doc["quick"] is True
    assert set(doc["workloads"]) == {*CALLS, *BURSTS, *THROUGHPUT, "training_loop", "model_burst"}
    assert set(doc["daemon"]["workloads"]) == set(DAEMON)
    unsupported = set()
    for name, entry in doc["workloads"].items():
        assert set(entry["writers"]) == set(WRITERS), name
        for writer, result in entry["writers"].items():
            assert "error" not in result, f"{name}/{writer}: {result.get('error')}"
            if "unsupported" in result:
                assert "moviepy.editor" in result["unsupported"], result
                unsupported.add((name, writer))
    assert unsupported == _unsupported_here()


def test_everything_logged_was_read_back(quick_run: tuple[dict, str, str]) -> None:
    doc, _, _ = quick_run
    assert doc["all_ran_and_verified"] is True
    kinds = {}
    for name, writer, result in _measured(doc):
        check = result["verify"]
        assert check["ok"], f"{name}/{writer}: {check}"
        assert check["found"] == check["expected"], f"{name}/{writer}"
        assert check["tensorboard_loader_found"] == check["expected"], f"{name}/{writer}"
        assert sum(check["expected"].values()) > 0
        assert not check["damaged"] and not check["incomplete"]
        assert result["close_confirmed"] is True
        kinds[name] = set(check["expected"])
    # Each new method's records are counted as its own kind (embeddings: projector files).
    assert kinds["add_figure"] == kinds["add_video"] == {"image"}
    assert kinds["add_pr_curve"] == {"pr_curve"}
    assert kinds["add_audio"] == {"audio"}
    assert kinds["add_embedding"] == {"embedding"}


def test_figures_are_sane(quick_run: tuple[dict, str, str]) -> None:
    doc, _, _ = quick_run
    workloads = doc["workloads"]
    for name in CALLS:
        for writer, r in workloads[name]["writers"].items():
            if (name, writer) in _unsupported_here():
                continue
            assert r["calls"] == workloads[name]["params"]["calls"]
            assert r["timed_calls"] + r["untimed_calls"] == r["calls"] or r["calls"] == 1
            for key in ("median_us", "mean_us", "p99_us", "peak_rss_mb"):
                assert _positive(r[key]), f"{name}/{writer}: {key}={r[key]}"
            assert r["min_us"] <= r["median_us"] <= r["p99_us"] <= r["max_us"], f"{name}/{writer}"
            assert _positive(r["mean_x_lower_than_tensorboardX"]), f"{name}/{writer}"
            assert _positive(r["floor_us"]) if name in FLOORED else "floor_us" not in r, f"{name}/{writer}"
        assert workloads[name]["writers"]["tensorboardX"]["mean_x_lower_than_tensorboardX"] == pytest.approx(1.0)
    for name in BURSTS:
        params = workloads[name]["params"]
        for writer, r in workloads[name]["writers"].items():
            assert (r["calls"], r["bursts"]) == (params["calls"], params["bursts"])
            assert len(r["burst_mean_us"]) == len(r["copy_floor_per_burst_us"]) == params["bursts"]
            for key in ("mean_us", "first_burst_mean_us", "copy_floor_us", "x_copy_floor", "peak_rss_mb"):
                assert _positive(r[key]), f"{name}/{writer}: {key}={r[key]}"
            assert _positive(r["mean_x_lower_than_tensorboardX"]), f"{name}/{writer}"
        assert workloads[name]["writers"]["logger_client"]["dropped"] == {}
    for name in THROUGHPUT:
        params = workloads[name]["params"]
        for writer, r in workloads[name]["writers"].items():
            assert r["calls"] == params["calls"] * params["processes"]
            assert _positive(r["scalars_per_s"]) and _positive(r["total_s"]), f"{name}/{writer}"
            assert _positive(r["x_tensorboardX_throughput"])
        four = workloads["e2e_four_processes"]
        assert len(four["writers"]["logger_client"]["per_process"]) == four["params"]["processes"] > 1
    loop = workloads["training_loop"]
    for r in loop["writers"].values():
        assert len(r["plain_s"]) == len(r["logged_s"]) == loop["params"]["repeats"]
        assert _positive(r["plain_median_s"]) and _positive(r["logged_median_s"])
        assert math.isfinite(r["overhead_pct"])
    burst = workloads["model_burst"]
    for writer, r in burst["writers"].items():
        assert r["tensors"] == 1 + 12 * burst["params"]["layers"] + 2, writer
        assert len(r["burst_ms"]) == r["steps"] == burst["params"]["steps"]
        for key in ("plain_step_ms", "logged_step_ms", "burst_mean_ms", "copy_floor_ms", "x_copy_floor"):
            assert _positive(r[key]), f"model_burst/{writer}: {key}={r[key]}"
        assert math.isfinite(r["overhead_pct"])
    ours = burst["writers"]["logger_client"]
    assert ours["dropped"] == {} and ours["dropped_total"] == 0
    # Every histogram was read as it came, once, its delay from the call timed.
    assert ours["latency_s"]["seen"] == ours["expected"]["histogram"] and not ours["latency_s"]["duplicates"]
    assert 0 < ours["latency_s"]["median"] <= ours["latency_s"]["p99"] <= ours["latency_s"]["max"]
    # The daemon's own costs: each run read back whole, each worker count measured.
    for name, entry in doc["daemon"]["workloads"].items():
        assert entry["all_ran_and_verified"], name
        for r in entry["runs"]:
            assert r["verify"]["found"] == r["verify"]["expected"] == r["expected"], name
            assert r["close_confirmed"] is True and r["dropped"] == {}, name
            # CPU comes in 10 ms ticks: a quick run's small drain may read none.
            assert math.isfinite(r["daemon_cpu_s"]) and r["daemon_cpu_s"] >= 0, name
        assert set(entry["by_workers"]) == {str(w) for w in entry["params"]["workers"]}, name
    assert doc["daemon"]["workloads"]["daemon_scalars"]["by_workers"]["1"]["daemon_cpu_us_per_scalar"] >= 0
    for name in ("daemon_histograms", "daemon_images"):
        entry = doc["daemon"]["workloads"][name]
        assert _positive(entry["scaling"]["x_one_worker"]) and entry["scaling"]["workers"] == 2
        for figures in entry["by_workers"].values():
            assert _positive(figures["input_gb_per_s"]) and figures["daemon_cpu_s_per_gb"] >= 0
    # The daemon was seen and measured for every logger_client workload.
    for name, entry in workloads.items():
        daemon = entry["writers"]["logger_client"]["daemon"]
        assert _positive(daemon["peak_rss_mb"]), name


def test_report_has_context_and_targets(quick_run: tuple[dict, str, str]) -> None:
    doc, stdout, out = quick_run
    assert doc["machine"]["cpu_count"] == os.cpu_count()
    for name in ("tensorboardX", "torch", "tensorboard", "tb-logger-service"):
        assert doc["versions"][name], name
    assert doc["date"] and doc["method"]["per_call"]
    assert doc["soak"] is None  # opt-in: only a run whose --only names it soaks
    reduction = doc["reduce"]  # not per writer: a section of its own
    assert set(reduction["rows"]) == {"1_node", "2_nodes"}
    assert all(row["verified"] and _positive(row["rank_values_per_s"]) for row in reduction["rows"].values())
    assert len(reduction["targets"]) == 4 and all(t["result"] in ("PASS", "FAIL") for t in reduction["targets"])
    assert [t["name"] for t in doc["targets"]] == list(TARGETS)
    assert [t["name"] for t in doc["daemon"]["targets"]] == ["daemon_cpu_per_scalar", "daemon_histogram_scaling"]
    for target in doc["targets"] + doc["daemon"]["targets"]:
        assert target["result"] in ("PASS", "FAIL"), target
    for heading in (
        "## Targets",
        "## Per-call cost",
        "## Bursts of array calls",
        "## End-to-end throughput",
        "## A model's parameters as histograms every step",
        "## Training-loop overhead",
        "## Reduction across ranks",
        "## The daemon: CPU per unit written",
        "## Peak resident memory",
    ):
        assert heading in stdout
    for writer in WRITERS:
        assert f"| add_scalar | {writer} |" in stdout
    for name, writer in _unsupported_here():
        label = doc["workloads"][name]["label"]
        assert f"| {label} | {writer} | not supported here: moviepy.editor" in stdout
    assert os.path.exists(os.path.splitext(out)[0] + ".md")
    dated = [n for n in os.listdir(os.path.dirname(out)) if n.startswith("quick-") and n.endswith("-quick.json")]
    assert len(dated) == 1


def test_compare_two_runs(quick_run: tuple[dict, str, str]) -> None:
    _, _, out = quick_run
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--compare", out, "--against", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "add_scalar / logger_client / mean_us" in done.stdout
    assert "+0.0 %" in done.stdout
