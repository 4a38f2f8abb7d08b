"""Soak: training processes logging at a training pace for minutes; does the daemon hold steady?

`processes` children (4) each open one writer on a run of their own (`<logdir>/rank<r>`) and, once
all are constructed, log for `duration_s` at a fixed pace: every `step_ms` (10 ms) one step of
`scalars_per_step` scalars (20) and one image (`image_shape`, 3x64x64 float32). A step starts at
its slot on the schedule (start + step x step_ms), or at once if the process is behind; steps are
never made up in bursts. Meanwhile the suite process watches the daemon and the event files:

* **Daemon resources.** Every `sample_s` (1 s) it reads the daemon's /proc/<pid>/status (VmRSS
  and its parts: RssAnon, private memory, where a leak would show; RssShmem, the clients' arenas
  it maps; RssFile), /proc/<pid>/stat (user + system CPU time) and /proc/<pid>/fd (open fds).
  After a warm-up (the first `warmup_fraction`, 20 %, of the run: event files, the arenas' pages
  and the allocator's pools settle there) a least-squares line through the samples gives the
  growth per hour, with its standard error: a leak shows as a slope, noise as a wide error. The
  line through each half of that window is given too: a leak grows in both, while a single step
  of the allocator (which a line through a short window reads as growth) shows in one only.
* **Call to readable.** One of each step's scalars is a probe (tag `probe`), logged first. Its
  event carries the wall time the writer stamped at the call. A tailer thread reads each event
  file's new bytes every `poll_s` (10 ms), as TensorBoard would (no flush, no fsync asked for),
  frames them with the project's reader (`logger_client._tfrecord_read.frame`), decodes each
  probe's event (`logger_client._event_decode.decode_event`), and takes the latency as the time
  it first read the whole record minus that wall time. So a figure is what a user waits between
  the call and TensorBoard being able to read the point: the client's linger, the socket, the
  daemon's cycle and its write to the OS, plus up to `poll_s` of polling (wall clock: one clock
  for every process of the machine).
* **Logged versus on disk.** Each child counts what it logged; after every writer's close() the
  whole log directory is read back (benchmarks/verify.py, CRCs checked) and must hold exactly that,
  and the tailer must have seen every probe once.

Only logger_client is soaked: the anchors have no daemon to watch.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Any

from benchmarks import verify
from benchmarks.runtime import ChildFailed, Runtime, Task

PROBE_TAG = "probe"
#: How long beyond their run the children may take to close (a busy machine slows the daemon).
_CLOSE_MARGIN_S = 120.0


# -- the child: one training process -------------------------------------------------------------------


def smooth_images(shape: list[int], count: int) -> list[Any]:
    """`count` smooth float32 images in [0, 1] (they compress as pictures do, not as noise)."""
    import numpy as np

    channels, height, width = shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for k in range(count):
        phase = 2 * math.pi * k / count
        planes = [0.5 + 0.5 * np.sin(x / 7 + y / 11 + phase + c) for c in range(channels)]
        images.append(np.stack(planes).astype(np.float32))
    return images


def run(adapter: Any, params: dict[str, Any], logdir: str, rank: int) -> dict[str, Any]:
    """One soak process: constructs its writer, says READY, waits for GO, then logs at pace."""
    duration_s, step_s = params["duration_s"], params["step_ms"] / 1000
    tags = [PROBE_TAG] + [f"scalar/{index:02d}" for index in range(1, params["scalars_per_step"])]
    images = smooth_images(params["image_shape"], 16)
    writer = adapter.open(os.path.join(logdir, f"rank{rank}"))
    add_scalar, add_image = writer.add_scalar, writer.add_image
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "GO":
        raise RuntimeError("the suite did not say GO")

    step_ns: list[int] = []  # what each step's logging cost this (training) thread
    late = 0
    start = time.monotonic()
    end = start + duration_s
    step = 0
    while True:
        slot = start + step * step_s
        if slot >= end:
            break
        now = time.monotonic()
        if now < slot:
            time.sleep(slot - now)
        elif now - slot > step_s:
            late += 1
        t0 = time.perf_counter_ns()
        for index, tag in enumerate(tags):
            add_scalar(tag, (step % 1000) / 8 + index, step)
        add_image("image", images[step % len(images)], step)
        step_ns.append(time.perf_counter_ns() - t0)
        step += 1
    calls_done = time.monotonic()
    confirmed = adapter.close(writer)
    closed = time.monotonic()
    stats = writer.stats() if hasattr(writer, "stats") else {}
    step_ns.sort()
    return {
        "rank": rank,
        "steps": step,
        "planned_steps": math.ceil(duration_s / step_s - 1e-9),
        "late_steps": late,
        "logged": {"scalar": step * len(tags), "image": step},
        "probes": step,
        "step_log_us": {
            "median": step_ns[len(step_ns) // 2] / 1000 if step_ns else None,
            "p99": _nearest_rank(step_ns, 0.99) / 1000 if step_ns else None,
            "max": step_ns[-1] / 1000 if step_ns else None,
        },
        "run_s": calls_done - start,
        "close_s": closed - calls_done,
        "close_confirmed": confirmed,
        "writer_dropped": stats.get("records_dropped"),
    }


# -- the suite's side: the daemon's resources, the probes, the read-back ------------------------------


def _nearest_rank(ordered: list[Any], fraction: float) -> Any:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


class DaemonSampler:
    """Samples a process's memory, CPU time, open fds and threads every `interval_s` from /proc."""

    FIELDS = ("t_s", "rss_mib", "anon_mib", "file_mib", "shmem_mib", "cpu_s", "fds", "threads")

    def __init__(self, pid: int, interval_s: float) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[list[float]] = []
        self.errors = 0
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stops sampling (harmless when stopped already)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        due = self._t0
        while not self._stop.is_set():
            self.sample()
            due += self.interval_s
            self._stop.wait(max(0.0, due - time.monotonic()))

    def sample(self) -> None:
        try:
            t = time.monotonic() - self._t0
            status = {}
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    status[name] = rest.split()
            with open(f"/proc/{self.pid}/stat") as f:
                # Fields after the command name (which may hold spaces): utime, stime are 14, 15.
                fields = f.read().rsplit(")", 1)[1].split()
            cpu_s = (int(fields[11]) + int(fields[12])) / self._ticks
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        except (OSError, ValueError, IndexError):
            self.errors += 1  # the daemon gone: the run's other checks say why
            return

        def mib(name: str) -> float:
            return int(status[name][0]) / 1024 if name in status else math.nan

        self.samples.append(
            [
                round(t, 3),
                mib("VmRSS"),
                mib("RssAnon"),
                mib("RssFile"),
                mib("RssShmem"),
                cpu_s,
                fds,
                int(status["Threads"][0]),
            ]
        )


class ProbeTailer:
    """Reads the new bytes of every event file under `logdir` every `poll_s`; notes when each probe
    event (each summary event of tag `tag`; of any tag if None) is first readable, and its latency
    from the wall time stamped at the call."""

    def __init__(self, logdir: str, poll_s: float, tag: str | None = PROBE_TAG) -> None:
        self.logdir = logdir
        self.poll_s = poll_s
        self.tag = tag
        self.latencies_s: list[float] = []
        self.duplicates = 0
        self.damaged: list[str] = []
        self._seen: set[tuple[str, str, int]] = set()
        self._files: dict[str, tuple[Any, bytes]] = {}  # path -> (open file, bytes of a torn record)
        # Summary.Value.tag, as it starts the value's bytes; without a tag every record is decoded.
        self._needle = b"\x0a" + bytes([len(tag)]) + tag.encode() if tag is not None else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-tailer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops after one more pass over the files (everything written by now is read); harmless
        when stopped already."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.poll()
        for handle, _ in self._files.values():
            handle.close()

    @property
    def seen(self) -> int:
        return len(self._seen)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.poll_s)

    def poll(self) -> None:
        for path in verify.event_files(self.logdir):
            entry = self._files.get(path)
            if entry is None:
                entry = self._files[path] = (open(path, "rb"), b"")  # noqa: SIM115 (held while tailing)
            handle, pending = entry
            data = handle.read()
            readable_at = time.time()
            if data:
                self._files[path] = (handle, self._scan(path, pending + data, readable_at))

    def _scan(self, path: str, buf: bytes, readable_at: float) -> bytes:
        """Notes the probes among the complete records of `buf`; returns the torn tail, if any."""
        import numpy as np

        from logger_client._event_decode import decode_event
        from logger_client._tfrecord_read import frame

        framing = frame(buf)
        if framing.problem not in (None, "torn"):
            self.damaged.append(f"{path}: {framing.problem} at byte {framing.stop}")
        starts, lengths = framing.starts, framing.lengths
        if self._needle is None:
            for start, length in zip(starts.tolist(), lengths.tolist()):
                self._note(path, decode_event(memoryview(buf)[start + 12 : start + 12 + length]), readable_at)
            return buf[framing.stop :]
        at = buf.find(self._needle, 0, framing.stop)
        while at >= 0:
            index = int(np.searchsorted(starts, at, side="right")) - 1
            start = int(starts[index]) + 12
            self._note(path, decode_event(memoryview(buf)[start : start + int(lengths[index])]), readable_at)
            at = buf.find(self._needle, start + int(lengths[index]), framing.stop)
        return buf[framing.stop :]

    def _note(self, path: str, event: Any, readable_at: float) -> None:
        if event.what != "summary":
            return
        for value in event.data:
            if self.tag is None or value.tag == self.tag:
                key = (os.path.dirname(path), value.tag, event.step)
                if key in self._seen:
                    self.duplicates += 1
                else:
                    self._seen.add(key)
                    self.latencies_s.append(readable_at - event.wall_time)
                return


def fit(ts: list[float], ys: list[float]) -> dict[str, float | None]:
    """Least-squares slope of `ys` over `ts` (seconds), per hour, with its standard error."""
    n = len(ts)
    if n < 3:
        return {"slope_per_h": None, "stderr_per_h": None}
    t_mean, y_mean = sum(ts) / n, sum(ys) / n
    sxx = sum((t - t_mean) ** 2 for t in ts)
    if sxx == 0:
        return {"slope_per_h": None, "stderr_per_h": None}
    slope = sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys)) / sxx
    residual = sum((y - y_mean - slope * (t - t_mean)) ** 2 for t, y in zip(ts, ys))
    stderr = math.sqrt(residual / (n - 2) / sxx)
    return {"slope_per_h": slope * 3600, "stderr_per_h": stderr * 3600}


def analyse(samples: list[list[float]], warmup_s: float, end_s: float) -> dict[str, Any]:
    """Start, peak, and growth per hour between `warmup_s` and `end_s` (the end of the logging: the
    writers' close, which unmaps the arenas, must not count as shrinkage) of each sampled figure;
    CPU as % of a core."""
    columns = {name: [s[i] for s in samples] for i, name in enumerate(DaemonSampler.FIELDS)}
    kept = [i for i, t in enumerate(columns["t_s"]) if warmup_s <= t <= end_s]
    ts = [columns["t_s"][i] for i in kept]
    out: dict[str, Any] = {
        "samples": len(samples),
        "fitted_samples": len(kept),
        "warmup_s": warmup_s,
        "end_s": end_s,
    }
    for name in ("rss_mib", "anon_mib", "file_mib", "shmem_mib", "fds", "threads"):
        values = columns[name]
        if not values or any(math.isnan(v) for v in values):
            continue
        fitted = [values[i] for i in kept]
        half = len(kept) // 2
        out[name] = {
            "first": values[0],
            "after_warmup": values[kept[0]] if kept else None,
            "at_end": values[kept[-1]] if kept else None,
            "after_close": values[-1],
            "max": max(values),
            **fit(ts, fitted),
            # A leak grows in both halves of the window alike; a step of the allocator shows in
            # one of them only, though the line through the whole window takes it for growth.
            "halves_per_h": [fit(ts[cut], fitted[cut])["slope_per_h"] for cut in (slice(half), slice(half, None))],
        }
    # CPU: the share of one core used between consecutive samples.
    t, cpu = columns["t_s"], columns["cpu_s"]
    shares = [(t[i], 100 * (cpu[i] - cpu[i - 1]) / (t[i] - t[i - 1])) for i in range(1, len(t)) if t[i] > t[i - 1]]
    within = [(at, share) for at, share in shares if warmup_s <= at <= end_s]
    if within and kept:
        span = t[kept[-1]] - t[kept[0]]
        out["cpu_pct"] = {
            "mean": 100 * (cpu[kept[-1]] - cpu[kept[0]]) / span if span > 0 else None,
            "max": max(share for _, share in within),
            **fit([at for at, _ in within], [share for _, share in within]),
        }
    out["cpu_s_total"] = cpu[-1] - cpu[0] if cpu else None
    return out


def supervise(runtime: Runtime, task: Task, params: dict[str, Any], log: Any) -> dict[str, Any]:
    """Runs the soak's children into `task`, watching its daemon and files; the soak's result."""
    processes = params["processes"]
    spec = {"group": "soak", "workload": "soak", "writer": "logger_client", "params": params}
    children = [runtime.start_child(task, spec, rank=rank, interactive=True) for rank in range(processes)]
    timeout_s = params["duration_s"] + _CLOSE_MARGIN_S + 60

    def kill_running() -> None:
        for c in children:
            if c.poll() is None:
                c.kill()

    watchdog = threading.Timer(timeout_s, kill_running)
    watchdog.start()
    sampler: DaemonSampler | None = None
    tailer = ProbeTailer(task.logdir, params["poll_s"])
    try:
        for rank, child in enumerate(children):
            assert child.stdout is not None  # interactive children have pipes
            line = child.stdout.readline()
            while line and line.strip() != "READY":
                line = child.stdout.readline()
            if not line:
                raise ChildFailed(f"soak rank {rank}: exited before READY\n{runtime.log_tail(task, rank)}")
        pid = runtime.daemon_pid(task)
        if pid is None:
            raise ChildFailed("soak: the children are ready but no daemon runs")
        sampler = DaemonSampler(pid, params["sample_s"])
        sampler.start()
        tailer.start()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("GO\n")
            child.stdin.flush()
        log(f"soak: {processes} processes logging for {params['duration_s']:g} s (daemon pid {pid})")
        workers = [runtime.finish_child(task, child, timeout_s, rank) for rank, child in enumerate(children)]
        sampler.stop()
        tailer.stop()
    finally:
        watchdog.cancel()
        if sampler is not None:
            sampler.stop()
        tailer.stop()
        runtime.reap(children)
    return summarize(workers, sampler.samples, tailer, task.logdir, params)


def summarize(
    workers: list[dict[str, Any]], samples: list[list[float]], tailer: ProbeTailer, logdir: str, params: dict[str, Any]
) -> dict[str, Any]:
    logged = {kind: sum(w["logged"][kind] for w in workers) for kind in ("scalar", "image")}
    checked = verify.verify(logdir, logged, cross_check=False)
    probes = sum(w["probes"] for w in workers)
    latencies = sorted(tailer.latencies_s)
    dropped: dict[str, int] = {}
    for w in workers:
        for reason, count in (w["writer_dropped"] or {}).items():
            dropped[reason] = dropped.get(reason, 0) + count
    lost = sum(logged.values()) - sum(checked["found"].values())
    ok = (
        checked["ok"]
        and all(w["close_confirmed"] for w in workers)
        and not dropped
        and tailer.seen == probes
        and not tailer.duplicates
        and not tailer.damaged
    )
    return {
        "processes": len(workers),
        "duration_s": params["duration_s"],
        "steps": sum(w["steps"] for w in workers),
        "planned_steps": sum(w["planned_steps"] for w in workers),
        "late_steps": sum(w["late_steps"] for w in workers),
        "logged": logged,
        "on_disk": checked["found"],
        "lost": lost,
        "writer_dropped": dropped,
        "close_confirmed": all(w["close_confirmed"] for w in workers),
        "nothing_lost": ok,
        "verify": checked,
        "probes": {
            "logged": probes,
            "seen": tailer.seen,
            "duplicates": tailer.duplicates,
            "damaged": tailer.damaged,
        },
        "latency_s": {
            "median": latencies[len(latencies) // 2] if latencies else None,
            "p99": _nearest_rank(latencies, 0.99) if latencies else None,
            "max": latencies[-1] if latencies else None,
            "min": latencies[0] if latencies else None,
            "poll_s": params["poll_s"],
        },
        "daemon": {
            **analyse(samples, params["duration_s"] * params["warmup_fraction"], params["duration_s"]),
            "fields": list(DaemonSampler.FIELDS),
            "series": samples,
        },
        "per_process": [
            {key: w[key] for key in ("rank", "steps", "late_steps", "step_log_us", "run_s", "close_s")} for w in workers
        ],
    }


# -- targets -------------------------------------------------------------------------------------------

#: (name, description, threshold, unit) of the soak's goals; each measured on the soak's result.
TARGETS = (
    ("soak_rss_growth", "soak: daemon RSS growth after warm-up", 1.0, "MiB/h"),
    ("soak_latency_p99", "soak: call to readable on disk, p99", 1.0, "s"),
    ("soak_lost", "soak: records logged but not on disk", 0.0, "records"),
)


def evaluate_targets(entry: dict[str, Any] | None) -> list[dict[str, Any]]:
    """PASS/FAIL of each soak target; "error" if the soak failed, "not run" without one."""
    rows = []
    for name, description, threshold, unit in TARGETS:
        row: dict[str, Any] = {
            "name": name,
            "description": description,
            "threshold": threshold,
            "unit": unit,
            "measured": None,
            "result": "not run",
        }
        if entry is not None:
            if "error" in entry:
                row["result"] = "error"
            else:
                if name == "soak_rss_growth":
                    rss = entry["daemon"].get("rss_mib", {})
                    row["measured"] = rss.get("slope_per_h")
                    row["stderr"] = rss.get("stderr_per_h")
                elif name == "soak_latency_p99":
                    row["measured"] = entry["latency_s"]["p99"]
                else:
                    row["measured"] = entry["lost"] + sum(entry["writer_dropped"].values())
                if row["measured"] is None:
                    row["result"] = "error"
                else:
                    row["result"] = "PASS" if row["measured"] <= threshold else "FAIL"
                if name == "soak_lost" and not entry["nothing_lost"]:
                    row["result"] = "FAIL"
        rows.append(row)
    return rows


def markdown(entry: dict[str, Any] | None) -> list[str]:
    """The soak's section of the report."""
    if entry is None:
        return []
    lines = ["", "## Soak: daemon resources, latency and losses at a training pace", ""]
    if "error" in entry:
        return [*lines, f"ERROR: {entry['error'].splitlines()[0]}"]
    p = entry["params"]
    d = entry["daemon"]
    lat = entry["latency_s"]
    lines += [
        f"{entry['processes']} processes x {p['duration_s']:g} s, each step ({p['step_ms']:g} ms) "
        f"{p['scalars_per_step']} scalars and one {'x'.join(map(str, p['image_shape']))} float32 image; "
        f"{entry['steps']:,} of {entry['planned_steps']:,} planned steps ({entry['late_steps']:,} late). "
        f"Daemon sampled every {p['sample_s']:g} s, fitted from {d['warmup_s']:.0f} s (the warm-up) to "
        f"{d['end_s']:.0f} s (the end of logging; the writers then close).",
        "",
        "| figure | first | after warm-up | end of logging | after close | max "
        "| growth per hour (± std. error); in each half |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("rss_mib", "RSS, MiB"),
        ("anon_mib", "of which private (RssAnon), MiB"),
        ("shmem_mib", "of which shared (RssShmem: clients' arenas), MiB"),
        ("fds", "open fds"),
        ("threads", "threads"),
    ):
        figure = d.get(key)
        if figure is None:
            continue
        slope = figure["slope_per_h"]
        growth = "" if slope is None else f"{slope:+.2f} (± {figure['stderr_per_h']:.2f})" + _halves(figure)
        lines.append(
            f"| {label} | {figure['first']:,.1f} | {_maybe(figure['after_warmup'])} | {_maybe(figure['at_end'])} | "
            f"{figure['after_close']:,.1f} | {figure['max']:,.1f} | {growth} |"
        )
    cpu = d.get("cpu_pct")
    if cpu is not None:
        mean = "" if cpu["mean"] is None else f"mean {cpu['mean']:.1f} %"
        slope = (
            "" if cpu["slope_per_h"] is None else f", {cpu['slope_per_h']:+.2f} (± {cpu['stderr_per_h']:.2f}) points/h"
        )
        lines.append(f"| CPU, % of a core | | | | | {cpu['max']:.0f} | {mean}{slope} |")
    steps = sorted(w["step_log_us"]["p99"] for w in entry["per_process"] if w["step_log_us"]["p99"] is not None)
    lines += [
        "",
        f"Call to readable on disk ({entry['probes']['seen']:,} probes of {entry['probes']['logged']:,}; "
        f"files polled every {lat['poll_s'] * 1000:g} ms): median {lat['median']:.3f} s, p99 {lat['p99']:.3f} s, "
        f"max {lat['max']:.3f} s. Logged {_kinds(entry['logged'])}; on disk {_kinds(entry['on_disk'])} "
        + ("✓" if entry["nothing_lost"] else f"✗ (dropped {entry['writer_dropped']})")
        + (f". A step's 21 calls, p99 per process: {', '.join(f'{x:.0f}' for x in steps)} µs." if steps else "."),
    ]
    return lines


def _halves(figure: dict[str, Any]) -> str:
    halves = figure.get("halves_per_h") or []
    if len(halves) != 2 or None in halves:
        return ""
    return f"; {halves[0]:+.2f}, {halves[1]:+.2f}"


def _maybe(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {kind}" for kind, n in counts.items())
