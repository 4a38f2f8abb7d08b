"""`logger-daemon status --watch`: the daemon's status redrawn once a second, like `top`.

Each turn asks the daemon for its status (the STATUS message `status` sends) and shows it with
rates over the last interval: records received and written per second, per run and per client,
bytes written per second, and drops by reason. On a terminal each frame replaces the last (plain
ANSI: cursor home, clear to the end); piped, frames follow one another, each starting with its
header line. `--json` prints one JSON line per turn instead. Ctrl-C ends it (exit status 0).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import IO, Any

#: Cursor to the top left, then clear to the end of the screen: a frame replaces the last.
REDRAW = "\x1b[H\x1b[J"

Status = dict[str, Any]


def rates(previous: tuple[float, Status] | None, now: float, status: Status) -> dict[str, Any] | None:
    """Per-second rates between two status replies (None for the first): counters' increases
    over the time between the two requests."""
    if previous is None:
        return None
    then, before = previous
    elapsed = max(now - then, 1e-6)

    def per_s(new: float, old: float) -> float:
        return round(max(new - old, 0) / elapsed, 1)

    old_runs = before.get("records_written_by_run", {})
    old_clients = {client["id"]: client["records"] for client in before.get("clients", [])}
    old_drops = before.get("records_dropped", {})
    return {
        "records_received_per_s": per_s(status["records_received"], before["records_received"]),
        "records_written_per_s": per_s(status["records_written"], before["records_written"]),
        "bytes_written_per_s": per_s(status["bytes_written"], before["bytes_written"]),
        "runs": {
            run: per_s(count, old_runs.get(run, 0)) for run, count in status.get("records_written_by_run", {}).items()
        },
        "clients": {
            client["id"]: per_s(client["records"], old_clients.get(client["id"], client["records"]))
            for client in status.get("clients", [])
        },
        "dropped": {
            reason: per_s(count, old_drops.get(reason, 0))
            for reason, count in status.get("records_dropped", {}).items()
        },
    }


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _rate(value: dict[str, Any] | None, *keys: str) -> str:
    for key in keys:
        value = None if value is None else value.get(key)
    return "-" if value is None else f"{value:,.1f}"


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, keeping its end (a path's last parts say most)."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def frame(status: Status | None, per_s: dict[str, Any] | None, source: str, interval_s: float, width: int) -> str:
    """One screen of the view: `status` (None: no daemon answered) with `per_s` from `rates`."""
    clock = time.strftime("%H:%M:%S")
    if status is None:
        return f"logger-daemon status  {clock}  no daemon answering for {source} (Ctrl-C quits)\n"
    lines = [
        f"logger-daemon status  {clock}  pid {status['pid']}, up {_duration(status['uptime_s'])}, "
        f"{status['endpoint']}  (every {interval_s:g}s, Ctrl-C quits)",
        f"clients {len(status['clients'])}   queue {status['queue_records']:,} records, "
        f"{_size(status['queue_bytes'])} arrays   open files {status['open_files']}   "
        f"restarts {status.get('restarts', 0)}",
        f"records/s  received {_rate(per_s, 'records_received_per_s')}   "
        f"written {_rate(per_s, 'records_written_per_s')}   "
        f"bytes written/s {'-' if per_s is None else _size(per_s['bytes_written_per_s'])}",
        f"totals     received {status['records_received']:,}   written {status['records_written']:,}   "
        f"duplicate {status.get('records_duplicate', 0):,}   bytes written {_size(status['bytes_written'])}",
    ]
    if status.get("write_error"):
        lines.append(
            f"held       {status['records_held']:,} records, {_size(status['bytes_held'])}: the disk refuses writes "
            f"({status['write_error']})"
        )
    dropped = status["records_dropped"]
    lines.append(f"dropped    {sum(dropped.values()):,}")
    for reason, count in sorted(dropped.items()):
        lines.append(f"  {reason:<22} {count:>12,}  {_rate(per_s, 'dropped', reason):>10}/s")
    lines += ["", f"{'RECORDS/S':>10} {'WRITTEN':>12}  RUN"]
    runs = status.get("records_written_by_run", {})
    by_rate = sorted(runs, key=lambda run: (-(per_s or {}).get("runs", {}).get(run, 0.0), run))
    for run in by_rate:
        lines.append(f"{_rate(per_s, 'runs', run):>10} {runs[run]:>12,}  {_fit(run, max(width - 25, 20))}")
    lines += ["", f"{'RECORDS/S':>10} {'RECORDS':>12}  {'PID':>8}  HOST"]
    for client in status["clients"]:
        rate = _rate(per_s, "clients", client["id"])
        lines.append(f"{rate:>10} {client['records']:>12,}  {client['pid']:>8}  {client['host']}")
    return "\n".join(line[:width] for line in lines) + "\n"


def watch(
    ask: Callable[[], Status | None],
    source: str,
    interval_s: float = 1.0,
    as_json: bool = False,
    out: IO[str] | None = None,
) -> int:
    """Shows `ask()`'s status every `interval_s` until Ctrl-C (or a closed pipe); exit status 0."""
    out = out or sys.stdout
    redraw = not as_json and out.isatty()
    previous: tuple[float, Status] | None = None
    try:
        while True:
            asked = time.monotonic()
            status = ask()
            per_s = None if status is None else rates(previous, asked, status)
            if as_json:
                line: dict[str, Any] = {"time": round(time.time(), 3), "status": status, "rates": per_s}
                if status is None:
                    line["error"] = f"no daemon answering for {source}"
                out.write(json.dumps(line, sort_keys=True) + "\n")
            else:
                width = shutil.get_terminal_size().columns if redraw else 200
                out.write((REDRAW if redraw else "") + frame(status, per_s, source, interval_s, width))
                if not redraw:
                    out.write("\n")
            out.flush()
            previous = None if status is None else (asked, status)
            time.sleep(max(interval_s - (time.monotonic() - asked), 0.0))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `... | head`: the reader is gone, and so is what is left to write
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 0
