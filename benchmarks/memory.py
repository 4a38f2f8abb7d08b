"""Peak resident memory: of a benchmark process (its own high-water mark) and of the daemon.

A benchmark child reads its own peak with `getrusage(RUSAGE_SELF).ru_maxrss`, which the kernel
keeps exactly, so no sampling thread competes with the calls being timed. The daemon is another
process: `DaemonMonitor` runs in the suite's own process, follows `<runtime dir>/daemon.pid`,
samples the daemon's RSS with psutil, and before the daemon is stopped reads the kernel's
high-water mark (`VmHWM` in /proc/<pid>/status) - exact where /proc exists, the sampled maximum
elsewhere.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from typing import Any

from logger_client.runtime import daemon_pid

_MB = 1024 * 1024


def self_peak_rss_mb() -> float:
    """This process's peak RSS so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (_MB if sys.platform == "darwin" else 1024), 1)


def self_rss_mb() -> float | None:
    """This process's current RSS in MiB."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / _MB, 1)
    except (OSError, ValueError):
        try:
            import psutil
        except ImportError:
            return None
        return round(psutil.Process().memory_info().rss / _MB, 1)


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


class DaemonMonitor:
    """Follows the daemon of a runtime directory while a benchmark runs; reports its peak RSS."""

    def __init__(self, runtime_dir: str, interval_s: float = 0.05) -> None:
        self._runtime_dir = runtime_dir
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._sampled: dict[int, float] = {}
        self._processes: dict[int, Any] = {}
        self._thread = threading.Thread(target=self._run, name="daemon-monitor", daemon=True)

    def __enter__(self) -> DaemonMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            self.sample(psutil)
            self._stop.wait(self._interval_s)

    def sample(self, psutil: Any = None) -> None:
        if psutil is None:
            import psutil
        pid = daemon_pid(self._runtime_dir)
        if pid is not None and pid not in self._processes:
            try:
                self._processes[pid] = psutil.Process(pid)
            except psutil.Error:
                return
        for pid, process in list(self._processes.items()):
            try:
                rss = process.memory_info().rss / _MB
            except psutil.Error:
                continue
            self._sampled[pid] = max(self._sampled.get(pid, 0.0), rss)

    def report(self) -> dict[str, Any]:
        """Call while the daemon still runs (before stopping it): peak RSS of each daemon seen."""
        self.sample()
        daemons = []
        for pid in sorted(set(self._sampled) | set(self._processes)):
            hwm = _vm_hwm_mb(pid)
            sampled = self._sampled.get(pid)
            daemons.append(
                {
                    "pid": pid,
                    "peak_rss_mb": hwm if hwm is not None else (round(sampled, 1) if sampled else None),
                    "method": "VmHWM" if hwm is not None else "psutil sampling",
                    "sampled_max_rss_mb": round(sampled, 1) if sampled else None,
                }
            )
        peaks = [d["peak_rss_mb"] for d in daemons if d["peak_rss_mb"] is not None]
        return {"peak_rss_mb": max(peaks) if peaks else None, "daemons": daemons}
