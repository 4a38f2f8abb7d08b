"""Runs the plan: every workload against every writer, one fresh child each, then reads back.

The suite process itself only starts children, watches the daemon, and verifies what was
written (after each child has exited, so verification's memory is never counted as the
benchmark's). It imports neither torch nor any writer.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks import (
    bursts,
    calls,
    daemon_costs,
    model_burst,
    read_back,
    reduce,
    soak,
    throughput,
    training_loop,
    verify,
)
from benchmarks.memory import DaemonMonitor
from benchmarks.plan import Workload
from benchmarks.runtime import ChildFailed, Runtime, Task
from benchmarks.writers import SUBJECT

#: Up to this size of a workload's files (events and projector files), TensorBoard's own (slow:
#: pure-Python CRC, Python TSV parsing) loaders re-count them as well.
CROSS_CHECK_MAX_BYTES = 4 * 2**20

_EXPECTED: dict[str, Callable[[dict[str, Any]], dict[str, int]]] = {
    "calls": calls.expected_counts,
    "bursts": bursts.expected_counts,
    "model_burst": model_burst.expected_counts,
    "daemon": daemon_costs.expected_counts,
    "throughput": throughput.expected_counts,
    "training_loop": training_loop.expected_counts,
}


class Suite:
    def __init__(self, runtime: Runtime, quick: bool, child_timeout_s: float, progress: Callable[[str], None]) -> None:
        self.runtime = runtime
        self.quick = quick
        self.child_timeout_s = child_timeout_s
        self.progress = progress
        self.started = time.monotonic()

    def log(self, message: str) -> None:
        self.progress(f"[{time.monotonic() - self.started:6.1f}s] {message}")

    # -- one task ----------------------------------------------------------------------------

    def calibrate(self, step_ms: float) -> dict[str, Any]:
        task = self.runtime.task("calibrate")
        child = self.runtime.start_child(task, {"group": "calibrate", "writer": None, "params": {"step_ms": step_ms}})
        result = self.runtime.finish_child(task, child, self.child_timeout_s)
        self.log(
            f"training loop: {result['rows']} rows of {result['width']} -> {result['measured_step_ms']:.2f} ms a step"
        )
        return result

    def run(
        self, workload: Workload, writer: str, params: dict[str, Any], env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """One workload for one writer: child(ren), daemon peak, read-back. Never raises ChildFailed.
        `env` adds to the child's environment (and its daemon's)."""
        task = self.runtime.task(f"{workload.name}/{writer}" + "".join(f"/{k}={v}" for k, v in (env or {}).items()))
        spec = {"group": workload.group, "workload": workload.name, "writer": writer, "params": params}
        t0 = time.monotonic()
        load_before = _load()
        try:
            monitor = DaemonMonitor(task.runtime_dir) if writer == SUBJECT else None
            if monitor is not None:
                monitor.__enter__()
            # Call to readable on disk of every record, where a daemon writes them as they come.
            tailer = (
                soak.ProbeTailer(task.logdir, params["poll_s"], tag=None)
                if workload.group == "model_burst" and writer == SUBJECT
                else None
            )
            if tailer is not None:
                tailer.start()
            try:
                if params.get("processes", 1) > 1:
                    result = self._run_processes(task, spec, params["processes"])
                else:
                    child = self.runtime.start_child(task, spec, env=env)
                    result = self.runtime.finish_child(task, child, self.child_timeout_s)
            finally:
                if monitor is not None:
                    monitor.__exit__()
                if tailer is not None:
                    tailer.stop()
            if "unsupported" not in result:  # else the child opened no writer (see writers.NEEDS)
                if monitor is not None:
                    result["daemon"] = monitor.report()
                if tailer is not None:
                    result.update(_latency(tailer, params["poll_s"]))
                self._verify(task, workload, params, result)
                if tailer is not None:
                    seen, logged = result["latency_s"], sum(result["expected"].values())
                    if seen["seen"] != logged or seen["duplicates"] or seen["damaged"]:
                        result["verify"]["ok"] = False
                        result["verify"]["note"] = f"the tailer read {seen['seen']} of {logged} records as they came"
        except ChildFailed as exc:
            result = {"error": str(exc)}
        except Exception as exc:  # a bug of the suite's own: report it with this workload, go on
            import traceback

            result = {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
        finally:
            self.runtime.stop_daemon(task)
            self.runtime.remove_logs(task)
        result["task_s"] = time.monotonic() - t0
        result["load_average_before"] = load_before
        self.log(f"{workload.name} / {writer}: {_summary(workload, result)}")
        return result

    def _verify(self, task: Task, workload: Workload, params: dict[str, Any], result: dict[str, Any]) -> None:
        """Reads back everything the workload logged (see verify.py) into `result["verify"]`."""
        expected = _EXPECTED[workload.group](params)
        result["expected"] = expected
        size = sum(
            os.path.getsize(os.path.join(directory, name))
            for directory, _, names in os.walk(task.logdir)
            for name in names
        )
        cross_check = self.quick or size <= CROSS_CHECK_MAX_BYTES
        result["verify"] = verify.verify(task.logdir, expected, cross_check, calls.embedding_rows(params))
        if not result["close_confirmed"]:
            result["verify"]["ok"] = False
            result["verify"]["note"] = "close() did not confirm that everything was written"

    @contextlib.contextmanager
    def _workload_task(self, task: Task, entry: dict[str, Any]) -> Iterator[None]:
        """Runs the block for one workload's `task`: a failure is noted as `entry["error"]` (a
        suite bug with its traceback) instead of raised; the task's daemon and logs go after."""
        try:
            yield
        except ChildFailed as exc:
            entry["error"] = str(exc)
        except Exception as exc:  # a bug of the suite's own: report it with this workload, go on
            import traceback

            entry["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        finally:
            self.runtime.stop_daemon(task)
            self.runtime.remove_logs(task)

    def run_daemon(self, workload: Workload) -> dict[str, Any]:
        """A daemon workload (logger_client only, see daemon_costs.py): a fresh child and daemon per
        worker count, the counts alternating in order from round to round; medians per count."""
        params = dict(workload.params)
        entry: dict[str, Any] = {"group": workload.group, "label": workload.label, "params": params, "runs": []}
        counts = list(params["workers"])
        for round_ in range(params["rounds"]):
            for workers in counts if round_ % 2 == 0 else counts[::-1]:
                env = {"LOGGER_ENCODE_WORKERS": str(workers)}
                result = self.run(workload, SUBJECT, params, env)
                result["round"] = round_
                result.setdefault("workers", workers)
                entry["runs"].append(result)
        entry.update(daemon_costs.summarize(entry["runs"], params))
        return entry

    def run_read_back(self, workload: Workload) -> dict[str, Any]:
        """Writes the workload's log directory once (logger_client), then reads it with each reader,
        one fresh child each. Never raises ChildFailed: a failed step is an "error" of its own."""
        params = dict(workload.params)
        task = self.runtime.task(workload.name)
        entry: dict[str, Any] = {"group": workload.group, "label": workload.label, "params": params, "readers": {}}
        t0 = time.monotonic()
        with self._workload_task(task, entry):
            spec = {"group": workload.group, "workload": workload.name, "writer": SUBJECT, "params": params}
            child = self.runtime.start_child(task, spec)
            entry["write"] = self.runtime.finish_child(task, child, self.child_timeout_s)
            self.runtime.stop_daemon(task)
            wanted = read_back.expected(params)
            # The writer's output is read back like every workload's: each record, CRCs checked.
            entry["write"]["verify"] = verify.verify(task.logdir, {"scalar": wanted["scalars"]}, self.quick)
            self.log(f"{workload.name}: {wanted['scalars']:,} scalars written in {entry['write']['write_s']:.1f} s")
            for rank, reader in enumerate(read_back.READERS, start=1):
                spec = {"group": workload.group, "workload": workload.name, "reader": reader, "params": params}
                try:
                    child = self.runtime.start_child(task, spec, rank=rank)
                    result = self.runtime.finish_child(task, child, self.child_timeout_s, rank)
                except ChildFailed as exc:
                    result = {"error": str(exc)}
                entry["readers"][reader] = result
                shown = (
                    f"{result['read_s']:.2f} s, {'verified' if result['verified'] else 'WRONG ' + str(result['found'])}"
                    if "error" not in result
                    else "ERROR " + result["error"].splitlines()[0]
                )
                self.log(f"{workload.name} / {reader}: {shown}")
        entry["task_s"] = time.monotonic() - t0
        return entry

    def run_soak(self, workload: Workload) -> dict[str, Any]:
        """The soak, logger_client only (see soak.py). Never raises ChildFailed."""
        params = dict(workload.params)
        task = self.runtime.task(workload.name)
        entry: dict[str, Any] = {"group": workload.group, "label": workload.label, "params": params}
        t0 = time.monotonic()
        with self._workload_task(task, entry):
            entry.update(soak.supervise(self.runtime, task, params, self.log))
            lat, rss = entry["latency_s"], entry["daemon"].get("rss_mib", {})
            self.log(
                f"soak: {'nothing lost' if entry['nothing_lost'] else 'LOST ' + str(entry['lost'])}, "
                f"call to readable median {lat['median']:.3f} s p99 {lat['p99']:.3f} s, "
                f"daemon RSS {rss.get('at_end') or 0:.0f} MiB, {rss.get('slope_per_h') or 0:+.2f} MiB/h"
            )
        if "error" in entry:
            self.log(f"soak: ERROR {entry['error'].splitlines()[0]}")
        entry["task_s"] = time.monotonic() - t0
        return entry

    def run_reduce(self, workload: Workload) -> dict[str, Any]:
        """The reduction rows, logger_client only (see reduce.py). Never raises."""
        entry: dict[str, Any] = {"group": workload.group, "label": workload.label, "params": dict(workload.params)}
        t0 = time.monotonic()
        try:
            entry.update(reduce.supervise(workload.params, self.log))
        except (Exception, SystemExit) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            self.log(f"reduce: ERROR {entry['error']}")
        entry["task_s"] = time.monotonic() - t0
        return entry

    def _run_processes(self, task: Task, spec: dict[str, Any], processes: int) -> dict[str, Any]:
        """N children into one log dir, released together once all have constructed their writer."""
        spec = {**spec, "wait_for_go": True}
        children = [self.runtime.start_child(task, spec, rank=rank, interactive=True) for rank in range(processes)]

        def kill_running() -> None:
            for c in children:
                if c.poll() is None:
                    c.kill()

        watchdog = threading.Timer(self.child_timeout_s, kill_running)
        watchdog.start()
        try:
            for rank, child in enumerate(children):
                assert child.stdout is not None  # interactive children have pipes
                while True:
                    line = child.stdout.readline()
                    if not line:
                        raise ChildFailed(
                            f"{task.name} rank {rank}: exited before READY\n{self.runtime.log_tail(task, rank)}"
                        )
                    if line.strip() == "READY":
                        break
            for child in children:
                assert child.stdin is not None
                child.stdin.write("GO\n")
                child.stdin.flush()
            workers = [
                self.runtime.finish_child(task, child, self.child_timeout_s, rank)
                for rank, child in enumerate(children)
            ]
        finally:
            watchdog.cancel()
            self.runtime.reap(children)
        return throughput.combine(workers, spec["params"])


def _summary(workload: Workload, result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"].splitlines()[0]
    if "unsupported" in result:
        return "NOT SUPPORTED here: " + result["unsupported"]
    checked = "verified" if result["verify"]["ok"] else f"VERIFY FAILED {result['verify']}"
    if workload.group == "calls":
        figure = f"median {result['median_us']:.2f} us, mean {result['mean_us']:.2f} us, p99 {result['p99_us']:.2f} us"
    elif workload.group == "bursts":
        figure = (
            f"mean {result['mean_us']:.1f} us a call ({result['x_copy_floor']:.2f}x the copy floor, first burst "
            f"{result['first_burst_mean_us']:.1f} us), dropped {result['dropped'] or 'none'}"
        )
    elif workload.group == "model_burst":
        figure = (
            f"overhead {result['overhead_pct']:.0f} % on {result['plain_step_ms']:.0f} ms steps, burst "
            f"{result['burst_mean_ms']:.0f} ms ({result['x_copy_floor']:.1f}x the copy floor, which is "
            f"{result['floor_overhead_pct']:.0f} % of a step), dropped {result['dropped'] or 'none'}"
        )
        if "latency_s" in result:
            figure += f", call to readable p99 {result['latency_s']['p99']:.2f} s"
    elif workload.group == "daemon":
        figure = daemon_costs.describe(result)
    elif workload.group == "throughput":
        figure = f"{result['scalars_per_s']:,.0f} scalars/s ({result['total_s']:.2f} s)"
    else:
        figure = f"overhead {result['overhead_pct']:.2f} % (close {result['close_s']:.2f} s)"
    return f"{figure}, {checked}, {result['task_s']:.1f} s"


def run_plan(
    plan: list[Workload],
    writers: list[str],
    quick: bool,
    keep_logs: bool,
    child_timeout_s: float,
    jobs: int = 1,
    progress: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs every workload for every writer; (workload results, run facts).

    `jobs` > 1 runs that many tasks at once (each has its own log dir, runtime dir and daemon):
    for `--quick`, whose figures mean nothing anyway, never for measuring.
    """
    runtime = Runtime(keep_logs=keep_logs)
    suite = Suite(runtime, quick, child_timeout_s, progress)
    results: dict[str, Any] = {}
    facts: dict[str, Any] = {
        "jobs": jobs,
        "scratch_dir": runtime.root if keep_logs else None,
        # Every daemon of this run has its runtime dir under it (removed at the end, unless kept).
        "scratch_root": runtime.root,
        "load_average_at_start": _load(),
    }
    try:
        entries: list[tuple[Workload, str, dict[str, Any]]] = []
        readings = [workload for workload in plan if workload.group == "read_back"]
        reductions = [workload for workload in plan if workload.group == "reduce"]
        soaks = [workload for workload in plan if workload.group == "soak"]
        daemons = [workload for workload in plan if workload.group == "daemon"]
        for workload in plan:
            if workload.group in ("read_back", "reduce", "soak", "daemon"):
                continue  # not per writer: run after the others, alone (read_back, reduce, soak, daemon_costs)
            params = dict(workload.params)
            if workload.group in ("training_loop", "model_burst"):
                calibration = suite.calibrate(params["step_ms"])
                params["rows"] = calibration["rows"]
                params["calibrated_step_ms"] = calibration["measured_step_ms"]
            entry: dict[str, Any] = {"group": workload.group, "label": workload.label, "params": params, "writers": {}}
            results[workload.name] = entry
            entries.extend((workload, writer, entry) for writer in writers)

        def one(item: tuple[Workload, str, dict[str, Any]]) -> dict[str, Any]:
            workload, writer, entry = item
            return suite.run(workload, writer, entry["params"])

        if jobs > 1:
            with ThreadPoolExecutor(jobs) as pool:
                outcomes = list(pool.map(one, entries))
        else:
            outcomes = [one(item) for item in entries]
        for (_, writer, entry), outcome in zip(entries, outcomes):
            entry["writers"][writer] = outcome
        for workload in daemons:
            results[workload.name] = suite.run_daemon(workload)
        for workload in readings:
            results[workload.name] = suite.run_read_back(workload)
        for workload in reductions:
            results[workload.name] = suite.run_reduce(workload)
        for workload in soaks:
            results[workload.name] = suite.run_soak(workload)
    finally:
        runtime.close()
    facts["load_average_at_end"] = _load()
    return results, facts


def _latency(tailer: soak.ProbeTailer, poll_s: float) -> dict[str, Any]:
    """Call to readable on disk of every record the tailer saw: median, p99, max."""
    ordered = sorted(tailer.latencies_s)
    figures: dict[str, Any] = {"seen": tailer.seen, "duplicates": tailer.duplicates, "damaged": tailer.damaged}
    if ordered:
        figures.update(
            median=ordered[len(ordered) // 2],
            p99=ordered[min(len(ordered) - 1, max(0, math.ceil(0.99 * len(ordered)) - 1))],
            max=ordered[-1],
        )
    figures["poll_s"] = poll_s
    return {"latency_s": figures, "latency_p99_s": figures.get("p99")}


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
