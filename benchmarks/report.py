"""Figures -> ratios, targets, a markdown table and a JSON document; and comparing two runs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from benchmarks import daemon_costs
from benchmarks import reduce as reduce_workload
from benchmarks import soak as soak_workload
from benchmarks.calls import SETTLE_S
from benchmarks.plan import READ_BACK_TARGETS, TARGETS
from benchmarks.runtime import REPO, THREAD_PINS
from benchmarks.writers import REFERENCE, SUBJECT, WRITERS

SCHEMA = 1

METHOD = {
    "per_call": (
        "One fresh process per (workload, writer). The writer is constructed and warmed up "
        f"(warmup_calls calls on another tag, then flush(), then {SETTLE_S:g} s idle so that background start-up "
        "work ends, for every writer alike) before anything is timed. The calls are "
        "made in ~100 blocks that alternate: in timed blocks each call sits between a pair of "
        "time.perf_counter_ns() and the median cost of an empty pair (timer_pair_ns) is subtracted "
        "-> median_us and p99_us (nearest rank); in untimed blocks one clock pair spans the block "
        "-> mean_us = sum of untimed blocks' wall time / their calls (no per-call timer in it). "
        "Arguments are built before the loop. GC on. close() is timed after the loop (close_s), "
        "not in the per-call figures. Ratios are tensorboardX's figure / this writer's, same run. "
        "add_pr_curve, add_embedding, add_audio and add_figure are called through a small function "
        "that adds the same arguments for every writer (labels and predictions; metadata, built before "
        "the loop; sample_rate; close=False: one matplotlib Figure, not pyplot's, drawn again by every "
        "call). floor_us (after close(), median of 10): for array arguments an np.copyto of the same "
        "bytes into warm buffers, the one copy logger_client's call makes; for add_figure "
        "FigureCanvasAgg(figure).draw(), the rendering every writer does in the call."
    ),
    "bursts": (
        "One fresh process per (workload, writer). The writer is constructed, flushed and left idle "
        f"{SETTLE_S:g} s; no array is logged before the first burst (first_burst_mean_us: a process's "
        "first array calls). Each burst logs `calls` histograms of `values` float32 on as many tags, "
        "back to back, one clock pair around the burst -> mean per call; flush() after it, untimed "
        "(flush_s). Copy floor: just before each burst, np.copyto of the same source arrays in the "
        "same order into one buffer of their size written beforehand -> copy_floor_us per copy; "
        "x_copy_floor = the bursts' wall time / the floors', summed over the bursts (the target's figure; "
        "also for the first burst alone and for the later ones). Torch inputs are "
        "CPU tensors (floor: the same bytes). Sources: at most 40 distinct arrays, cycled. `dropped`: "
        "logger_client's records_dropped after the last burst. Ratios are tensorboardX's mean / this "
        "writer's, same run."
    ),
    "model_burst": (
        "One fresh process per writer. A torch.nn model (Embedding, layers x TransformerEncoderLayer, "
        "LayerNorm; full size ~100 M float32 parameters in 147 tensors, 400 MB); a compute step of "
        "~step_ms (x = tanh(x @ w), rows calibrated once per suite run, one thread). steps plain "
        "steps are timed, then steps logged steps (the compute step, then add_histogram(name, param, "
        "step) for every named parameter, as the seed does; burst_ms = the calls' wall time per step), "
        "then flush() (untimed in the loop: flush_s) and steps plain steps again. overhead_pct = the "
        "logged steps' mean / the plain steps' mean (before and after) - 1. Copy floor: np.copyto of "
        "every parameter's bytes into one warm buffer of their total size, median of 3 -> "
        "copy_floor_ms; floor_overhead_pct = that floor / the plain step: the overhead of a single "
        "copy of the burst, below which no writer that keeps the values can go. x_copy_floor = "
        "burst_mean_ms / copy_floor_ms. For logger_client, the suite reads every event file's new "
        "bytes every poll_s as TensorBoard would and times each histogram from the wall time stamped "
        "at the call to the moment its whole record was readable (latency_s: median, p99 nearest "
        "rank, max); every record must be seen once. dropped: logger_client's records_dropped at the "
        "end, default bounds and overflow policy."
    ),
    "daemon": (
        "logger_client only: one fresh child and daemon per (worker count, round), "
        "LOGGER_ENCODE_WORKERS set for the daemon, worker counts alternating in order from round to "
        "round; medians per worker count. Daemon CPU = utime + stime from /proc/<pid>/stat (10 ms "
        "ticks) over the window. Scalars: the window runs from the first add_scalar until close() "
        "returns with everything written, the client logging as fast as it can meanwhile. Histograms "
        "and images: after a warm-up burst has been written, the daemon is stopped (SIGSTOP), the "
        "burst is logged (within the client's 1 GiB buffer), the daemon is let go (SIGCONT) and the "
        "window runs until flush() returns with everything acknowledged as written: the daemon drains "
        "the queue alone (drain_s; throughput = input bytes / drain_s). repeats drains per child. "
        "Scaling = the median throughput with 2 workers / with 1."
    ),
    "throughput": (
        "add_scalar calls, timed from the first call until close() returns; writer construction "
        "(for logger_client: starting its daemon) is excluded and reported as construct_s. "
        "logger_client's close() returns once the daemon acknowledged everything written and "
        "fsynced (timeout raised to 600 s so that it never returns early). With several "
        "processes: one writer per process into one log dir, each rank its own tag, all released "
        "together after construction; the window is earliest first call .. latest close() return "
        "(CLOCK_MONOTONIC)."
    ),
    "training_loop": (
        "x = tanh(x @ w) in float32 with rows calibrated to ~step_ms a step on one BLAS thread "
        "(OMP/OPENBLAS/MKL_NUM_THREADS=1, torch.set_num_threads(1)). One process, one writer open "
        "throughout. Every step reads its scalars_per_step metrics off x (.tolist(), as loss.item() "
        "would), with or without logging. The logged loop runs in blocks of arrays_every steps "
        "(each block's first step logs the image and histogram); each block is timed beside a plain "
        "block and a third block of the same length, in an order rotating through the permutations: "
        "a control block (plain again) in even rounds, a null block (the logged loop with a writer "
        "whose methods do nothing) in odd ones. overhead_pct (the target's figure) = median "
        "over all blocks of logged / plain - 1 on the wall clock; noise_floor_pct = the same median "
        "for control / plain (identical work: the method's resolution on this machine); "
        "call_floor_pct = the same for null / plain (what making the calls costs at all, the floor "
        "of any writer). overhead_pct_total_time: sum of "
        "logged / sum of plain - 1. thread_cpu_overhead_pct, process_cpu_overhead_pct: the median "
        "pair ratio on time.thread_time() and time.process_time(). close() after all blocks, "
        "reported as close_s."
    ),
    "memory": (
        "Benchmark process: getrusage(RUSAGE_SELF).ru_maxrss at its end (includes the writer's "
        "imports: tensorboardX imports torch when installed). Daemon: the kernel's VmHWM of the "
        "daemon process read before it is stopped, with psutil sampling every 50 ms as fallback."
    ),
    "verification": (
        "After each child exits, every event file under its log dir is read back (TFRecord framing "
        "and both CRC-32C checked, Events parsed with TensorBoard's protos) and the summary values "
        "of each kind must equal what the workload logged, warm-up included. Outputs up to 4 MiB "
        "(all of them with --quick) are also re-counted with TensorBoard's EventFileLoader. "
        "add_video's GIFs and add_figure's renderings count as images, add_pr_curve's tensors as "
        "pr_curve. Embeddings write files, not events: each entry of projector_config.pbtxt (parsed as "
        "TensorBoard's ProjectorConfig) counts once its tensors.tsv and metadata.tsv hold the rows "
        "logged (line counts; the cross-check parses tensors.tsv with the projector plugin's reader), "
        "and a tensors.tsv no entry names fails the workload."
    ),
    "read_back": (
        "One log dir written once by logger_client (one writer per run, every tag every step), its "
        "daemon stopped, then read by each reader in a fresh process: logger_client.reader.load; "
        "TensorBoard's EventAccumulator per run directory (size_guidance 0 for scalars, Reload() then "
        "Scalars(tag) for every tag); tbparse.SummaryReader(logdir, extra_columns={dir_name, wall_time})"
        ".scalars. read_s times the read only (import_s apart). Each reader's result is checked: "
        "scalars, (run, tag) series, exact sums of steps and values (values are k/8, exact in "
        "float32). Ratios: the other reader's read_s / logger_client's, same run."
    ),
    "soak": (
        "logger_client only, opt-in (--only soak, --soak-s). N processes, one writer each on a run of "
        "its own, log at a fixed pace (each step: scalars, the first a probe, and one image) for "
        "duration_s. The daemon's /proc status, stat and fd directory are sampled every sample_s; "
        "growth per hour = least-squares slope after the first warmup_fraction of the run, with its "
        "standard error, and the slope over each half of that window. Call to readable: a thread of "
        "the suite reads the event files' new bytes every poll_s (no flush asked for), frames them "
        "with logger_client._tfrecord_read and decodes "
        "each probe's event; latency = when it first read the whole record - the wall time the "
        "writer stamped at the call. Logged vs on disk: every child's counts against the whole log "
        "dir read back (CRCs checked), every probe seen once. See benchmarks/soak.py."
    ),
    "notes": [
        "tensorboardX calls its comet logger hook on every call (disabled by default): measured as "
        "users get it by default.",
        "tensorboardX 2.6 imports torch when torch is installed, so its process memory includes torch.",
        "Each logger_client child starts its own daemon (LOGGER_RUNTIME_DIR per task); the daemon "
        "inherits the pinned BLAS environment.",
        "e2e_four_processes gives each rank's writer filename_suffix='.rank<r>': tensorboardX names "
        "its files events.out.tfevents.<seconds>.<host> (no pid), so same-second writers of several "
        "processes clobber one file (with defaults 1 000 of 4 000 scalars were left).",
        "A writer whose method needs a package that cannot be imported here logs nothing with it: its "
        'row of that workload is not measured and says why ("unsupported"); torch.utils.tensorboard\'s '
        "add_video needs moviepy.editor, which moviepy 2 removed.",
        "The figures are wall-clock on a machine that may be shared: load_average_at_start/_at_end "
        "and each task's load_average_before say how busy it was.",
    ],
}

_LOWER_IS_BETTER = {
    *("mean_us", "median_us", "p99_us", "floor_us", "overhead_pct", "peak_rss_mb", "total_s", "read_s"),
    *("x_copy_floor", "first_burst_mean_us", "copy_floor_us"),
    *("latency_median_s", "latency_p99_s", "daemon_rss_at_end_mib", "daemon_cpu_mean_pct"),
    *("burst_mean_ms", "daemon_cpu_us_per_scalar", "daemon_cpu_s_per_gb", "daemon_cpu_s_per_100"),
    *("visible_median_s", "visible_p99_s"),
}


# -- facts of the run ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = models[0] if models else None
    except OSError:
        info["cpu_model"] = platform.processor() or None
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def versions() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in (
        "tb-logger-service",
        "tensorboardX",
        "torch",
        "tensorboard",
        "numpy",
        "pyzmq",
        "msgpack",
        "protobuf",
        "crc32c",
        "psutil",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["writers"] = {name: adapter.version() for name, adapter in WRITERS.items()}
    found["git"] = _git()
    return found


def _git() -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = run("status", "--porcelain", "--", "logger_client", "logger_daemon")
    return {
        "commit": run("rev-parse", "HEAD"),
        "product_code_modified": bool(status) if status is not None else None,
        "modified": status.splitlines() if status else [],
    }


def environment() -> dict[str, Any]:
    return {
        "thread_pins": THREAD_PINS,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "logger_overrides": {k: v for k, v in os.environ.items() if k.startswith("LOGGER_")},
    }


def now() -> dict[str, str]:
    stamp = datetime.now(timezone.utc)
    return {"date": stamp.isoformat(timespec="seconds"), "date_local": stamp.astimezone().isoformat(timespec="seconds")}


# -- ratios and targets --------------------------------------------------------------------------


def _ok(result: dict[str, Any] | None) -> bool:
    """Whether `result` holds figures: it ran, without error, and the writer supports the method here."""
    return result is not None and bool(result) and "error" not in result and "unsupported" not in result


def _accepted(writer: str, result: dict[str, Any]) -> bool:
    """Whether `result` lets the run pass: ran and verified, or an anchor that cannot log the
    method here (a package it needs is missing: see writers.NEEDS)."""
    if "unsupported" in result and "error" not in result:
        return writer != SUBJECT
    return _ok(result) and result["verify"]["ok"]


def add_ratios(workloads: dict[str, Any]) -> None:
    """Each writer's figures as multiples of tensorboardX's in the same run (>1: better)."""
    for entry in workloads.values():
        reference = entry["writers"].get(REFERENCE)
        for result in entry["writers"].values():
            if not (_ok(result) and _ok(reference)):
                continue
            if entry["group"] == "bursts":
                if result["mean_us"] > 0:
                    result[f"mean_x_lower_than_{REFERENCE}"] = reference["mean_us"] / result["mean_us"]
            elif entry["group"] == "model_burst":
                if result["burst_mean_ms"] > 0:
                    result[f"burst_x_lower_than_{REFERENCE}"] = reference["burst_mean_ms"] / result["burst_mean_ms"]
            elif entry["group"] == "calls":
                for metric in ("mean_us", "median_us", "p99_us"):
                    if result[metric] > 0:
                        result[f"{metric[:-3]}_x_lower_than_{REFERENCE}"] = reference[metric] / result[metric]
            elif entry["group"] == "throughput":
                result[f"x_{REFERENCE}_throughput"] = result["scalars_per_s"] / reference["scalars_per_s"]


def _metric(result: dict[str, Any], metric: str) -> Any:
    """A figure of a writer's result; `daemon_peak_rss_mb` is the peak of the daemon it used."""
    if metric == "daemon_peak_rss_mb":
        return (result.get("daemon") or {}).get("peak_rss_mb")
    return result.get(metric)


def evaluate_targets(workloads: dict[str, Any]) -> list[dict[str, Any]]:
    evaluated = []
    for target in TARGETS:
        row: dict[str, Any] = {
            "name": target.name,
            "description": target.description,
            "threshold": target.threshold,
            "measured": None,
            "result": "not run",
        }
        entry = workloads.get(target.workload)
        if entry is not None:
            subject = entry["writers"].get(SUBJECT)
            reference = entry["writers"].get(REFERENCE)
            if target.kind == "ratio_min" and _ok(subject) and _ok(reference):
                if target.metric in _LOWER_IS_BETTER:
                    measured = (
                        reference[target.metric] / subject[target.metric] if subject[target.metric] else float("inf")
                    )
                else:
                    measured = subject[target.metric] / reference[target.metric]
                row["measured"] = measured
                row["result"] = "PASS" if measured >= target.threshold else "FAIL"
            elif target.kind == "max" and _ok(subject) and _metric(subject, target.metric) is not None:
                row["measured"] = _metric(subject, target.metric)
                row["result"] = "PASS" if row["measured"] <= target.threshold else "FAIL"
                if target.unit:
                    row["unit"] = target.unit
                if _ok(reference) and _metric(reference, target.metric) is not None:
                    row[f"{REFERENCE}_value"] = _metric(reference, target.metric)
            elif reference is not None and "unsupported" in reference and _ok(subject):
                row["result"] = "not measured"
                row["note"] = f"{REFERENCE}: {reference['unsupported']}"
            elif subject is not None or reference is not None:
                row["result"] = "error"
            if _ok(subject) and not subject["verify"]["ok"] and row["result"] == "PASS":
                row["result"] = "FAIL"
                row["note"] = "the data logged was not all on disk"
        evaluated.append(row)
    return evaluated


def read_back_ok(entry: dict[str, Any] | None) -> bool:
    """Whether the read-back workload wrote its data and every reader read all of it back."""
    if entry is None:
        return True
    write = entry.get("write", {})
    return (
        "error" not in entry
        and write.get("close_confirmed") is True
        and write.get("verify", {}).get("ok") is True
        and bool(entry["readers"])
        and all(_ok(r) and r["verified"] for r in entry["readers"].values())
    )


def add_read_back_ratios(entry: dict[str, Any]) -> None:
    """Each other reader's read time as a multiple of logger_client's (>1: logger_client is faster)."""
    subject = entry["readers"].get(SUBJECT)
    if not _ok(subject):
        return
    for result in entry["readers"].values():
        if _ok(result) and subject["read_s"] > 0:
            result[f"x_{SUBJECT}_time"] = result["read_s"] / subject["read_s"]


def evaluate_read_back_targets(entry: dict[str, Any] | None) -> list[dict[str, Any]]:
    evaluated = []
    for target in READ_BACK_TARGETS:
        row: dict[str, Any] = {
            "name": target.name,
            "description": target.description,
            "threshold": target.threshold,
            "measured": None,
            "result": "not run",
        }
        if entry is not None:
            result = entry["readers"].get(target.reader)
            if _ok(result) and f"x_{SUBJECT}_time" in result:
                row["measured"] = result[f"x_{SUBJECT}_time"]
                row["result"] = "PASS" if row["measured"] >= target.threshold else "FAIL"
                if not read_back_ok(entry):
                    row["result"] = "FAIL"
                    row["note"] = "a reader did not read back everything that was written"
            else:
                row["result"] = "error"
        evaluated.append(row)
    return evaluated


def build_document(
    workloads: dict[str, Any],
    quick: bool,
    argv: list[str],
    total_s: float,
    started: dict[str, str],
    facts: dict[str, Any],
) -> dict[str, Any]:
    # Read-back is not per writer: it has a section of its own, not a row of `workloads`.
    read_back = workloads.pop("read_back", None)
    if read_back is not None:
        add_read_back_ratios(read_back)
        read_back["targets"] = evaluate_read_back_targets(read_back)
    # So are the soak and the reduction (logger_client only).
    soak = workloads.pop("soak", None)
    if soak is not None:
        soak["targets"] = soak_workload.evaluate_targets(soak)
    reduction = workloads.pop("reduce", None)
    if reduction is not None:
        reduction["targets"] = reduce_workload.evaluate_targets(reduction)
    # And the daemon's workloads (logger_client only).
    daemon = {name: workloads.pop(name) for name in [n for n, e in workloads.items() if e["group"] == "daemon"]}
    add_ratios(workloads)
    ok = all(_accepted(w, r) for e in workloads.values() for w, r in e["writers"].items())
    ok = ok and read_back_ok(read_back) and (soak is None or ("error" not in soak and soak["nothing_lost"]))
    ok = ok and (
        reduction is None or ("error" not in reduction and all(r["verified"] for r in reduction["rows"].values()))
    )
    ok = ok and all(entry["all_ran_and_verified"] for entry in daemon.values())
    return {
        "schema": SCHEMA,
        **started,
        "quick": quick,
        "argv": argv,
        "total_s": round(total_s, 1),
        "all_ran_and_verified": ok,
        "machine": machine(),
        "versions": versions(),
        "environment": environment(),
        "method": METHOD,
        "reference": REFERENCE,
        "subject": SUBJECT,
        "targets": evaluate_targets(workloads),
        "workloads": workloads,
        "read_back": read_back,
        "soak": soak,
        "reduce": reduction,
        "daemon": {"workloads": daemon, "targets": daemon_costs.evaluate_targets(daemon)} if daemon else None,
        **facts,
    }


# -- markdown ------------------------------------------------------------------------------------


def _us(value: float) -> str:
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _x(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.1f}×" if value < 100 else f"{value:,.0f}×"


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _load(values: list[float] | None) -> str:
    return "/".join(f"{x:.1f}" for x in values) if values else "?"


def _verified(result: dict[str, Any]) -> str:
    check = result["verify"]
    found = ", ".join(f"{n:,} {kind}" for kind, n in check["found"].items())
    return ("✓ " if check["ok"] else "✗ ") + found


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _error_row(leading: list[str], result: dict[str, Any], columns: int) -> str:
    """A table row for a workload that failed: its `leading` cells, the error, empty cells."""
    if "unsupported" in result and "error" not in result:
        message = "not supported here: " + result["unsupported"].replace("|", "/")
    else:
        message = "ERROR: " + result.get("error", "?").splitlines()[0].replace("|", "/")
    return "| " + " | ".join([*leading, message]) + " |" + " |" * (columns - len(leading) - 1)


def markdown(doc: dict[str, Any]) -> str:
    m, v = doc["machine"], doc["versions"]
    workloads = doc["workloads"]
    quick = " (--quick: sizes too small to mean anything)" if doc["quick"] else ""
    modified = " (product code modified)" if v["git"]["product_code_modified"] else ""
    lines = [
        f"# logger_client vs tensorboardX vs torch.utils.tensorboard{quick}",
        "",
        f"{doc['date']} · {m['cpu_count']} cores ({m['usable_cores']} usable), {m.get('cpu_model')}, "
        f"{m.get('memory_gib')} GiB · Python {m['python']} · tensorboardX {v['tensorboardX']} · "
        f"torch {v['torch']} · tensorboard {v['tensorboard']} · numpy {v['numpy']} · "
        f"logger_client {v['tb-logger-service']} @ {(v['git']['commit'] or '?')[:10]}{modified} · "
        f"suite {doc['total_s']:.0f} s · load average {_load(doc.get('load_average_at_start'))} at start, "
        f"{_load(doc.get('load_average_at_end'))} at end"
        + (f" · {doc['jobs']} tasks at once (not a measurement)" if doc.get("jobs", 1) > 1 else ""),
        "",
        "## Targets (ratios to tensorboardX in this run)",
        "",
        "| target | measured | goal | result |",
        "|---|---:|---:|:---:|",
    ]
    soak_targets = (doc.get("soak") or {}).get("targets") or []
    reduce_targets = (doc.get("reduce") or {}).get("targets") or []
    daemon_targets = (doc.get("daemon") or {}).get("targets") or []
    targets = doc["targets"] + ((doc.get("read_back") or {}).get("targets") or []) + reduce_targets + soak_targets
    for t in targets + daemon_targets:
        measured = t["measured"]
        if t.get("unit"):
            lines.append(f"| {t['description']} | {' | '.join(_with_unit(t))} | **{t['result']}** |")
            continue
        if measured is None:
            shown = ""
        elif t["name"].endswith("_ratio") or t["name"].startswith("read_back_"):
            shown = _x(measured)
        elif t["name"].endswith("_floor"):
            shown = f"{measured:.2f}×"
        elif t["name"] == "training_loop_overhead":
            shown = f"{measured:.2f} %" + (
                f" (tensorboardX {t[f'{REFERENCE}_value']:.1f} %)" if f"{REFERENCE}_value" in t else ""
            )
        else:
            shown = f"{measured:.2f} µs"
        ratio = t["name"].endswith("_ratio") or t["name"].startswith("read_back_")
        unit = "×" if t["name"].endswith("_floor") else ""
        goal = f"≥ {t['threshold']:g}×" if ratio else f"≤ {t['threshold']:g}{unit}"
        lines.append(f"| {t['description']} | {shown} | {goal} | **{t['result']}** |")

    calls_rows = [e for e in workloads.values() if e["group"] == "calls"]
    if calls_rows:
        lines += [
            "",
            "## Per-call cost on the calling thread (µs per call)",
            "",
            "| workload | writer | calls | median | mean | p99 | mean: × lower than tensorboardX | floor "
            "| close() s | verified on disk |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for entry in calls_rows:
            for writer, r in entry["writers"].items():
                if not _ok(r):
                    lines.append(_error_row([entry["label"], writer], r, 10))
                    continue
                floor = f"{_us(r['floor_us'])} ({r['floor'].split(':')[0]})" if "floor_us" in r else ""
                lines.append(
                    f"| {entry['label']} | {writer} | {r['calls']:,} | {_us(r['median_us'])} | "
                    f"{_us(r['mean_us'])} | {_us(r['p99_us'])} | {_x(r.get(f'mean_x_lower_than_{REFERENCE}'))} | "
                    f"{floor} | {r['close_s']:.2f} | {_verified(r)} |"
                )
        lines += [
            "",
            "Floor: what any writer pays in the call at least, measured in the same process: copy = an "
            "np.copyto of the call's arrays into warm buffers; render = matplotlib drawing the figure.",
        ]

    lines += _bursts_markdown([e for e in workloads.values() if e["group"] == "bursts"])
    lines += _model_burst_markdown([e for e in workloads.values() if e["group"] == "model_burst"])

    tp_rows = [e for e in workloads.values() if e["group"] == "throughput"]
    if tp_rows:
        lines += [
            "",
            "## End-to-end throughput (first call until close() returns, everything written)",
            "",
            "| workload | writer | scalars | seconds | scalars/s | × tensorboardX | of which close() s "
            "| verified on disk |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for entry in tp_rows:
            for writer, r in entry["writers"].items():
                if not _ok(r):
                    lines.append(_error_row([entry["label"], writer], r, 8))
                    continue
                lines.append(
                    f"| {entry['label']} | {writer} | {r['calls']:,} | {r['total_s']:.2f} | "
                    f"{r['scalars_per_s']:,.0f} | {_x(r.get(f'x_{REFERENCE}_throughput'))} | {r['close_s']:.2f} | "
                    f"{_verified(r)} |"
                )

    for entry in workloads.values():
        if entry["group"] != "training_loop":
            continue
        p = entry["params"]
        lines += [
            "",
            f"## Training-loop overhead ({p['steps']:,} steps of ~{p['calibrated_step_ms']:.1f} ms, "
            f"{p['scalars_per_step']} scalars a step, a {'x'.join(map(str, p['image_shape']))} image and a "
            f"{p['histogram_values']:,}-value histogram every {p['arrays_every']} steps; "
            f"{_count(p['repeats'], 'repeat')}, each block of {p['arrays_every']} steps timed beside a plain one)",
            "",
            "| writer | no logging s | logging s | overhead: median of block pairs | middle half of pairs | "
            "per repeat | noise floor (plain vs plain) | call floor (a writer doing nothing) | "
            "overhead of total time | training thread CPU | process CPU | close() s | verified on disk |",
            "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for writer, r in entry["writers"].items():
            if not _ok(r):
                lines.append(_error_row([writer], r, 13))
                continue
            repeats = ", ".join(f"{x:.2f}" for x in r["overhead_pct_per_repeat"])
            low, high = r["overhead_iqr_pct"]
            lines.append(
                f"| {writer} | {sum(r['plain_s']):.3f} | {sum(r['logged_s']):.3f} | **{r['overhead_pct']:.2f} %** | "
                f"{low:.2f} .. {high:.2f} % | {repeats} | {r['noise_floor_pct']:.2f} % | "
                f"{r['call_floor_pct']:.2f} % | "
                f"{r['overhead_pct_total_time']:.2f} % | {r['thread_cpu_overhead_pct']:.2f} % | "
                f"{r['process_cpu_overhead_pct']:.2f} % | {r['close_s']:.2f} | {_verified(r)} |"
            )

    lines += _read_back_markdown(doc.get("read_back"))
    lines += reduce_workload.markdown(doc.get("reduce"))
    lines += soak_workload.markdown(doc.get("soak"))
    lines += daemon_costs.markdown((doc.get("daemon") or {}).get("workloads") or {})

    writers = list(WRITERS)
    lines += [
        "",
        "## Peak resident memory (MiB)",
        "",
        "| workload | "
        + " | ".join(f"{w} process" + (f" | {w} daemon" if w == SUBJECT else "") for w in writers)
        + " |",
        "|---|" + "---:|" * (len(writers) + 1),
    ]
    for entry in workloads.values():
        cells = []
        for w in writers:
            r = entry["writers"].get(w)
            cells.append(_mb(r.get("peak_rss_mb")) if _ok(r) else "")
            if w == SUBJECT:
                cells.append(_mb(r.get("daemon", {}).get("peak_rss_mb")) if _ok(r) else "")
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    lines += ["", "Method and raw figures: see the JSON (`method`, `workloads`).", ""]
    return "\n".join(lines)


def _bursts_markdown(entries: list[dict[str, Any]]) -> list[str]:
    if not entries:
        return []
    lines = [
        "",
        "## Bursts of array calls on the calling thread (µs per call, mean over each burst)",
        "",
        "| workload | writer | calls × bursts | mean | first burst | later bursts | copy floor | × copy floor "
        "| × floor: first burst | × floor: later bursts | × lower than tensorboardX | flush after a burst s "
        "| dropped | verified on disk |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for entry in entries:
        for writer, r in entry["writers"].items():
            if not _ok(r):
                lines.append(_error_row([entry["label"], writer], r, 14))
                continue
            dropped = ", ".join(f"{n} {reason}" for reason, n in r["dropped"].items()) or "none"
            lines.append(
                f"| {entry['label']} | {writer} | {r['calls']} × {r['bursts']} | {_us(r['mean_us'])} | "
                f"{_us(r['first_burst_mean_us'])} | {_us(r['later_bursts_mean_us'])} | {_us(r['copy_floor_us'])} | "
                f"{r['x_copy_floor']:.2f}× | {r['x_copy_floor_first_burst']:.2f}× | "
                f"{r['x_copy_floor_later_bursts']:.2f}× | {_x(r.get(f'mean_x_lower_than_{REFERENCE}'))} | "
                f"{max(r['flush_s']):.2f} | {dropped} | {_verified(r)} |"
            )
    return lines


def _model_burst_markdown(entries: list[dict[str, Any]]) -> list[str]:
    lines = []
    for entry in entries:
        p = entry["params"]
        lines += [
            "",
            f"## A model's parameters as histograms every step: {entry['label']} ({p['layers']} layers, "
            f"d_model {p['d_model']}; {p['steps']} steps of ~{p['calibrated_step_ms']:.0f} ms compute)",
            "",
            "| writer | parameters (MB) | plain step ms | logged step ms | overhead | burst on the training thread "
            "ms: mean (median, max) | × lower than tensorboardX | copy floor ms | × copy floor | floor as overhead "
            "| flush after s | call to readable s: median, p99 | dropped | verified on disk |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for writer, r in entry["writers"].items():
            if not _ok(r):
                lines.append(_error_row([writer], r, 14))
                continue
            latency = r.get("latency_s")
            seen = f"{latency['median']:.2f}, {latency['p99']:.2f}" if latency and "p99" in latency else ""
            dropped = ", ".join(f"{n} {reason}" for reason, n in r["dropped"].items()) or "none"
            lines.append(
                f"| {writer} | {r['parameters'] / 1e6:,.1f} M ({r['burst_bytes'] / 1e6:,.0f}) | "
                f"{r['plain_step_ms']:.1f} | {r['logged_step_ms']:.1f} | **{r['overhead_pct']:.0f} %** | "
                f"{r['burst_mean_ms']:.1f} ({r['burst_median_ms']:.1f}, {r['burst_max_ms']:.1f}) | "
                f"{_x(r.get(f'burst_x_lower_than_{REFERENCE}'))} | {r['copy_floor_ms']:.1f} | "
                f"{r['x_copy_floor']:.2f}× | {r['floor_overhead_pct']:.0f} % | {r['flush_s']:.2f} | {seen} | "
                f"{dropped} | {_verified(r)} |"
            )
    return lines


def _with_unit(target: dict[str, Any]) -> tuple[str, str]:
    """A target's measured figure and its goal, in the target's unit."""
    measured, unit, threshold = target["measured"], target["unit"], target["threshold"]
    if unit == "records":
        return ("" if measured is None else f"{measured:,.0f}"), f"{threshold:,.0f}"
    if measured is None:
        shown = ""
    elif unit == "MiB/h":
        shown = f"{measured:+.2f} MiB/h" + (f" (± {target['stderr']:.2f})" if target.get("stderr") is not None else "")
    elif unit == "s":
        shown = f"{measured:.3f} s"
    elif unit == "%":
        shown = f"{measured:,.1f} %" + (
            f" (tensorboardX {target[f'{REFERENCE}_value']:,.0f} %)" if f"{REFERENCE}_value" in target else ""
        )
    elif unit in ("µs", "×"):
        shown = f"{measured:.2f} {unit}"
    else:
        shown = f"{measured:,.0f} {unit}"
    return shown, f"{'≥' if target.get('higher') else '≤'} {threshold:,g} {unit}"


def _read_back_markdown(entry: dict[str, Any] | None) -> list[str]:
    if entry is None:
        return []
    lines = ["", f"## Reading logs back: {entry['label']}, written once by {SUBJECT}", ""]
    if "error" in entry:
        return [*lines, f"ERROR: {entry['error'].splitlines()[0]}"]
    write = entry.get("write", {})
    check = write.get("verify", {})
    lines += [
        f"Written in {write.get('write_s', 0):.1f} s; on disk "
        + ("✓ " if check.get("ok") else "✗ ")
        + ", ".join(f"{n:,} {kind}" for kind, n in check.get("found", {}).items()),
        "",
        f"| reader | scalars | read s | scalars/s | × {SUBJECT}'s time | import s | peak RSS MiB | verified |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for reader, r in entry["readers"].items():
        if not _ok(r):
            lines.append(_error_row([reader], r, 8))
            continue
        found = r["found"]
        verified = "✓" if r["verified"] else f"✗ expected {r['expected']}, found {found}"
        lines.append(
            f"| {reader} | {found['scalars']:,} | {r['read_s']:.2f} | {r['scalars_per_s']:,.0f} | "
            f"{_x(r.get(f'x_{SUBJECT}_time'))} | {r['import_s']:.2f} | {_mb(r.get('peak_rss_mb'))} | {verified} |"
        )
    return lines


# -- files and comparison ------------------------------------------------------------------------


def write(doc: dict[str, Any], out: str) -> list[str]:
    """Writes `out` (JSON), a dated copy beside it, and the markdown beside each; the paths written."""
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    stamp = doc["date"].replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
    stem = os.path.splitext(os.path.basename(out))[0]
    dated = os.path.join(directory, f"{stem}-{stamp}{'-quick' if doc['quick'] else ''}.json")
    written = []
    text = markdown(doc)
    for path in (out, dated):
        with open(path, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=False, default=str)
            f.write("\n")
        with open(os.path.splitext(path)[0] + ".md", "w") as f:
            f.write(text)
        written.append(path)
    return written


def _figures(doc: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for name, entry in doc.get("workloads", {}).items():
        for writer, r in entry["writers"].items():
            if not _ok(r):
                continue
            keys = {
                "calls": ("median_us", "mean_us", "p99_us", "floor_us"),
                "bursts": ("mean_us", "first_burst_mean_us", "x_copy_floor"),
                "throughput": ("scalars_per_s",),
                "training_loop": ("overhead_pct",),
                "model_burst": ("overhead_pct", "burst_mean_ms", "x_copy_floor", "latency_p99_s"),
            }.get(entry["group"], ())
            for key in (*keys, "peak_rss_mb"):
                if r.get(key) is not None:
                    flat[f"{name} / {writer} / {key}"] = r[key]
            daemon_peak = r.get("daemon", {}).get("peak_rss_mb")
            if daemon_peak is not None:
                flat[f"{name} / {writer} / daemon_peak_rss_mb"] = daemon_peak
    for name, entry in ((doc.get("daemon") or {}).get("workloads") or {}).items():
        for workers, figures in entry["by_workers"].items():
            for key in ("daemon_cpu_us_per_scalar", "daemon_cpu_s_per_gb", "daemon_cpu_s_per_100", "input_gb_per_s"):
                if key in figures:
                    flat[f"{name} / {workers} workers / {key}"] = figures[key]
    for reader, r in ((doc.get("read_back") or {}).get("readers") or {}).items():
        if _ok(r):
            flat[f"read_back / {reader} / read_s"] = r["read_s"]
    reduction = doc.get("reduce")
    if _ok(reduction):
        assert reduction is not None
        for row_name, row in reduction["rows"].items():
            for key in ("rank_values_per_s", "visible_median_s", "visible_p99_s"):
                flat[f"reduce {row_name} / {SUBJECT} / {key}"] = row[key]
    soak = doc.get("soak")
    if _ok(soak):
        assert soak is not None
        for key, value in (
            ("latency_median_s", soak["latency_s"]["median"]),
            ("latency_p99_s", soak["latency_s"]["p99"]),
            ("daemon_rss_at_end_mib", soak["daemon"].get("rss_mib", {}).get("at_end")),
            ("daemon_cpu_mean_pct", (soak["daemon"].get("cpu_pct") or {}).get("mean")),
        ):
            if value is not None:
                flat[f"soak / {SUBJECT} / {key}"] = value
    return flat


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A markdown table of every figure both runs have: earlier, later, change."""
    lines = [f"## {new.get('date')} compared with {old.get('date')}", ""]
    if old.get("machine", {}).get("cpu_count") != new.get("machine", {}).get("cpu_count"):
        lines += [
            f"Different machines: {old.get('machine', {}).get('cpu_count')} vs "
            f"{new.get('machine', {}).get('cpu_count')} cores.",
            "",
        ]
    if old.get("quick") != new.get("quick"):
        lines += ["One of the two runs is --quick: its figures are not comparable.", ""]
    lines += ["| figure | earlier | later | change | |", "|---|---:|---:|---:|---|"]
    before, after = _figures(old), _figures(new)
    for key in sorted(set(before) & set(after)):
        a, b = before[key], after[key]
        change = (b / a - 1) * 100 if a else float("inf")
        metric = key.rsplit(" / ", 1)[1]
        better = (change < 0) == (metric in _LOWER_IS_BETTER or metric == "daemon_peak_rss_mb")
        verdict = ("better" if better else "worse") if abs(change) >= 1 else ""
        lines.append(f"| {key} | {a:,.4g} | {b:,.4g} | {change:+.1f} % | {verdict} |")
    return "\n".join(lines) + "\n"
