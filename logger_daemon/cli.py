"""`logger-daemon run | status | stop | export`: the daemon's command line."""

from __future__ import annotations

import argparse
import csv
import gc
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

import zmq

from logger_client import protocol
from logger_client.protocol import MessageKind
from logger_client.runtime import (
    DAEMON_LOCK_NAME,
    LOG_NAME,
    PID_NAME,
    LockTimeout,
    daemon_pid,
    daemon_running,
    endpoint,
    ensure_runtime_dir,
    take_lock,
)
from logger_client.settings import Settings

log = logging.getLogger("logger_daemon")

#: How long `stop --force` waits for a killed daemon to be gone.
_KILL_WAIT_S = 10.0
#: How long `stop --endpoint` waits for each STATUS answer while the daemon there winds down.
_SILENT_PROBE_S = 0.5
_SILENT_POLL_S = 0.05
#: How long a starting daemon retries the lock: a client probing "is one running?" holds it briefly.
_LOCK_RETRY_S = 1.0


def _take_daemon_lock(runtime_dir: str) -> int | None:
    """The lock's fd, held for the process's life; None if another daemon holds it."""
    try:
        return take_lock(os.path.join(runtime_dir, DAEMON_LOCK_NAME), _LOCK_RETRY_S)
    except LockTimeout:
        return None


def _detach() -> None:
    """Double fork: the daemon is reparented to init, in its own session, with no terminal."""
    if os.fork() > 0:
        os._exit(0)  # the launcher: the client waits for this exit
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def run(args: argparse.Namespace) -> int:
    """Serves until stopped: `logger-daemon stop`, SIGTERM/SIGINT, or `--idle-timeout` with no client."""
    from logger_daemon import rescue
    from logger_daemon.server import Server  # protobuf and friends load only for `run`

    settings = Settings.from_env()
    runtime_dir = ensure_runtime_dir(args.runtime_dir or settings.runtime_dir)
    keys_dir = args.keys or settings.keys_dir
    forward_to = "" if args.root else (args.forward_to or settings.root_endpoint)
    if args.root and (not keys_dir or not (args.endpoint or "").startswith("tcp://")):
        print("run --root needs --endpoint tcp://HOST:PORT and --keys DIR (see logger-daemon keygen)", file=sys.stderr)
        return 2
    if args.detach and args.lock_fd is None:
        _detach()
    if args.detach:
        logging.basicConfig(
            filename=os.path.join(runtime_dir, LOG_NAME),
            level=args.log_level,
            format="%(asctime)s %(process)d %(levelname)s %(message)s",
        )
    else:
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    if args.lock_fd is not None:
        lock_fd = rescue.inherited_lock(os.path.join(runtime_dir, DAEMON_LOCK_NAME), args.lock_fd)
        log.warning("restarted in place after an abort (%d so far)", args.restarts)
    else:
        taken = _take_daemon_lock(runtime_dir)
        if taken is None:
            log.info("a daemon already serves %s", runtime_dir)
            return 0 if args.detach else 1
        lock_fd = taken
    with open(os.path.join(runtime_dir, PID_NAME), "w") as pid_file:
        pid_file.write(f"{os.getpid()}\n")
    idle = settings.idle_timeout_s if args.idle_timeout is None else args.idle_timeout
    if args.restarts < rescue.MAX_RESTARTS:
        again = ["-m", "logger_daemon", "run", "--runtime-dir", runtime_dir, "--idle-timeout", repr(idle)]
        again += ["--log-level", args.log_level, "--lock-fd", str(lock_fd), "--restarts", str(args.restarts + 1)]
        again += (["--endpoint", args.endpoint] if args.endpoint else []) + (["--detach"] if args.detach else [])
        again += (["--root"] if args.root else []) + (["--keys", args.keys] if args.keys else [])
        again += ["--forward-to", args.forward_to] if args.forward_to else []
        if rescue.arm(again):
            rescue.keep_lock_across_exec(lock_fd)
    # Records are short-lived containers, created by the million: collecting every 700 of them
    # (the default) would cost more than decoding them. Startup objects are frozen out of scans.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    server = Server(
        args.endpoint or endpoint(runtime_dir),
        settings,
        idle,
        restarts=args.restarts,
        keys_dir=keys_dir,
        forward_to=forward_to,
        root=args.root,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.request_stop())
    # Past a file-size limit a write fails with EFBIG, which the daemon handles as a full disk;
    # the signal that comes with it would kill the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        server.serve()
    finally:
        try:
            os.unlink(os.path.join(runtime_dir, PID_NAME))
        except FileNotFoundError:
            pass
        os.close(lock_fd)
    return 0


def request(
    runtime_dir: str, kind: MessageKind, timeout_s: float, at: str = "", keys_dir: str = ""
) -> dict[str, Any] | None:
    """Sends one control message to the daemon of `runtime_dir` (or at endpoint `at`, a root with
    `keys_dir`); its reply header, or None on timeout."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if keys_dir:
            from logger_daemon.keys import secure_client

            secure_client(sock, keys_dir)
        sock.connect(at or endpoint(runtime_dir))
        sock.send_multipart(protocol.encode(kind, {}))
        if not sock.poll(int(timeout_s * 1000)):
            return None
        return protocol.decode(sock.recv_multipart()).header
    finally:
        sock.close()
        context.term()


def status(args: argparse.Namespace) -> int:
    """Prints the daemon's counters; exit 1 if no daemon runs."""
    runtime_dir = args.runtime_dir or Settings.from_env().runtime_dir
    if not args.endpoint and not daemon_running(runtime_dir):
        print(f"no daemon is running for {runtime_dir}", file=sys.stderr)
        return 1
    if args.watch:
        return _watch(runtime_dir, args)
    reply = request(runtime_dir, MessageKind.STATUS, args.timeout, args.endpoint or "", args.keys or "")
    if reply is None:
        print(f"the daemon did not answer within {args.timeout}s", file=sys.stderr)
        return 1
    reply.pop("cid", None)
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
        return 0
    print(f"daemon pid {reply['pid']} on {reply['endpoint']}, up {reply['uptime_s']:.0f}s")
    print(f"clients: {len(reply['clients'])}")
    for client in reply["clients"]:
        print(f"  pid {client['pid']} on {client['host']}: {client['records']} records")
    print(f"records received: {reply['records_received']}")
    print(f"records written:  {reply['records_written']}")
    dropped = reply["records_dropped"]
    print(f"records dropped:  {sum(dropped.values())}" + "".join(f"\n  {k}: {v}" for k, v in sorted(dropped.items())))
    print(f"queue depth:      {reply['queue_records']} records, {reply['queue_bytes']} array bytes")
    print(f"bytes written:    {reply['bytes_written']} in {reply['open_files']} open file(s)")
    if "encode_workers" in reply:  # a daemon of an earlier version does not say
        print(f"encoding threads: {reply['encode_workers']}")
    uploads = reply.get("uploads")
    if uploads:
        print(
            f"uploads:          {uploads['segments_uploaded']} segment(s), {uploads['bytes_uploaded']} bytes;"
            f" {uploads['segments_pending']} staged ({uploads['bytes_pending']} bytes);"
            f" {uploads['upload_failures']} failed attempt(s)"
        )
    if reply.get("write_error"):
        print(f"the disk refuses writes: {reply['write_error']}")
        print(f"records held:     {reply['records_held']} ({reply['bytes_held']} bytes), written when it takes them")
    _print_reduction(reply.get("reduction") or {})
    refused = (reply.get("connections") or {}).get("refused_peers")
    if refused:
        print(f"peers refused:    {refused} (failed the CURVE handshake)")
    root = reply.get("root")
    if root:
        lost = sum(root["records_dropped"].values())
        print(f"root {root['root']}: {root['records_forwarded']} records forwarded, {root['records_pending']} pending")
        if "values_forwarded" in root:  # a node of an earlier version does not say
            print(f"  combined values: {root['values_forwarded']} forwarded, {root['values_dropped']} dropped")
        print(f"  dropped: {lost}" + "".join(f"\n    {k}: {v}" for k, v in sorted(root["records_dropped"].items())))
    return 0


def _print_reduction(reduction: dict) -> None:
    """The values combined across ranks, by how many ranks went into each (nothing without ranks)."""
    if not reduction.get("values_in") and not reduction.get("jobs"):
        return
    by_ranks = ", ".join(f"{count} of {ranks} rank(s)" for ranks, count in reduction["values_by_ranks"].items())
    print(f"rank values:      {reduction['values_in']} combined into {reduction['values_written']} ({by_ranks})")
    print(f"  written after the {reduction['wait_s']}s wait without every rank: {reduction['values_partial']}")
    print(f"  late (step already written): {reduction['values_late']}; waiting: {reduction['waiting']}")
    for job, state in reduction["jobs"].items():
        print(f"  job {job or '(no id)'}: " + ", ".join(f"rank {r} {how}" for r, how in state["ranks"].items()))


def _watch(runtime_dir: str, args: argparse.Namespace) -> int:
    """`status --watch`: the status redrawn every `--interval` seconds until Ctrl-C."""
    from logger_daemon.watch import watch

    # A frozen daemon must not hold the view up for long: a turn waits at most two intervals.
    timeout_s = min(args.timeout, max(2 * args.interval, 1.0))

    def ask() -> dict[str, Any] | None:
        reply = request(runtime_dir, MessageKind.STATUS, timeout_s) if daemon_running(runtime_dir) else None
        if reply is not None:
            reply.pop("cid", None)
        return reply

    return watch(ask, runtime_dir, args.interval, args.json)


def _wait_gone(runtime_dir: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while daemon_running(runtime_dir):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_silent(at: str, keys_dir: str, timeout_s: float) -> bool:
    """Waits until the daemon at endpoint `at` no longer answers STATUS (it has stopped serving)."""
    deadline = time.monotonic() + timeout_s
    while request("", MessageKind.STATUS, _SILENT_PROBE_S, at, keys_dir) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(_SILENT_POLL_S)
    return True


def stop(args: argparse.Namespace) -> int:
    """Asks the daemon to write everything and exit; waits for it to be gone (`--force`: then kills)."""
    if args.endpoint and not args.runtime_dir:  # a root on another host: no lock or pid to watch here
        return _stop_at_endpoint(args)
    runtime_dir = args.runtime_dir or Settings.from_env().runtime_dir
    if not daemon_running(runtime_dir):
        print(f"no daemon is running for {runtime_dir}", file=sys.stderr)
        return 0
    pid = daemon_pid(runtime_dir)  # read first: a stopping daemon removes its pid file
    request(runtime_dir, MessageKind.STOP, args.timeout, args.endpoint or "", args.keys or "")
    if _wait_gone(runtime_dir, args.timeout):
        print("daemon stopped")
        return 0
    if args.force and pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if _wait_gone(runtime_dir, _KILL_WAIT_S):
            print(f"daemon killed after {args.timeout}s", file=sys.stderr)
            return 0
    print(f"the daemon is still running after {args.timeout}s", file=sys.stderr)
    return 1


def _stop_at_endpoint(args: argparse.Namespace) -> int:
    if args.force:
        print("stop --force kills a daemon of this host: give its --runtime-dir too", file=sys.stderr)
        return 2
    if request("", MessageKind.STOP, args.timeout, args.endpoint, args.keys or "") is None:
        print(f"no daemon answered at {args.endpoint} within {args.timeout}s", file=sys.stderr)
        return 1
    if _wait_silent(args.endpoint, args.keys or "", args.timeout):
        print("daemon stopped")
        return 0
    print(f"the daemon at {args.endpoint} still answers after {args.timeout}s", file=sys.stderr)
    return 1


EXPORT_HELP = """\
Writes the scalars and text of a log directory (every run below it, as `logger_client.reader.load`
reads it) for spreadsheets and scripts.

csv: one row per value, columns
  run        the run: a directory below LOGDIR holding event files ("." for LOGDIR itself)
  tag        the tag as written (text summaries end in "/text_summary")
  kind       "scalar" or "text"
  step       the global step (integer)
  wall_time  seconds since the epoch (float)
  value      the scalar, or the text
Rows come run by run and tag by tag (sorted), each tag's values in the order they were written.

json: {"logdir": ..., "scalars": [{"run", "tag", "step": [...], "wall_time": [...], "value": [...]}],
"text": [{"run", "tag", "step": [...], "wall_time": [...], "text": [...]}], "damage": [...]}; the same
columns as arrays, one object per (run, tag). A value that is NaN or infinite is the string "NaN",
"Infinity" or "-Infinity" (as protobuf's JSON mapping writes doubles), so the output is strict JSON.
"damage" lists the event files whose reading stopped at a torn or corrupt record (also said on stderr).
"""


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {pattern!r} ({exc})") from None


def _json_number(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _text_cell(text: Any) -> str:
    return text if isinstance(text, str) else json.dumps(text.tolist())  # a table: its cells as JSON


def export(args: argparse.Namespace) -> int:
    """Prints the scalars and text of a log directory as csv or json (`EXPORT_HELP`)."""
    from logger_client.reader import load

    try:
        data = load(args.logdir)
    except FileNotFoundError as exc:
        print(f"logger-daemon export: {exc}", file=sys.stderr)
        return 1

    def wanted(key: tuple[str, str]) -> bool:
        return (args.run is None or args.run.search(key[0]) is not None) and (
            args.tag is None or args.tag.search(key[1]) is not None
        )

    scalars = {key: series for key, series in sorted(data.scalars.items()) if wanted(key)}
    texts = {key: items for key, items in sorted(data.text.items()) if wanted(key)}
    for damage in data.damage:
        print(
            f"logger-daemon export: {damage.path}: {damage.reason} at byte {damage.offset}, "
            f"{damage.records_skipped} record(s) not read",
            file=sys.stderr,
        )
    try:
        with open(args.output, "w", newline="") if args.output else _stdout() as out:
            _write_export(out, args.format, data.logdir, scalars, texts, data.damage)
    except BrokenPipeError:  # `export ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _write_export(
    out: IO[str], output_format: str, logdir: str, scalars: dict[Any, Any], texts: dict[Any, Any], damaged: list[Any]
) -> None:
    if output_format == "csv":
        rows = csv.writer(out, lineterminator="\n")
        rows.writerow(["run", "tag", "kind", "step", "wall_time", "value"])
        for key in sorted(set(scalars) | set(texts)):
            run, tag = key
            if key in scalars:
                series = scalars[key]
                for step, wall_time, value in zip(
                    series.step.tolist(), series.wall_time.tolist(), series.value.tolist()
                ):
                    rows.writerow([run, tag, "scalar", step, repr(wall_time), repr(value)])
            for item in texts.get(key, []):
                rows.writerow([run, tag, "text", item.step, repr(item.wall_time), _text_cell(item.text)])
    else:
        document = {
            "logdir": logdir,
            "scalars": [
                {
                    "run": run,
                    "tag": tag,
                    "step": series.step.tolist(),
                    "wall_time": series.wall_time.tolist(),
                    "value": [_json_number(value) for value in series.value.tolist()],
                }
                for (run, tag), series in scalars.items()
            ],
            "text": [
                {
                    "run": run,
                    "tag": tag,
                    "step": [item.step for item in items],
                    "wall_time": [item.wall_time for item in items],
                    "text": [item.text if isinstance(item.text, str) else item.text.tolist() for item in items],
                }
                for (run, tag), items in texts.items()
            ],
            "damage": [
                {
                    "path": damage.path,
                    "offset": damage.offset,
                    "reason": damage.reason,
                    "records_skipped": damage.records_skipped,
                    "bytes_skipped": damage.bytes_skipped,
                }
                for damage in damaged
            ],
        }
        json.dump(document, out, allow_nan=False)
        out.write("\n")


class _stdout:
    """sys.stdout as a context manager that leaves it open."""

    def __enter__(self) -> IO[str]:
        return sys.stdout

    def __exit__(self, *exc: Any) -> None:
        sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `logger-daemon` console script."""
    parser = argparse.ArgumentParser(prog="logger-daemon", description=__doc__)
    parser.add_argument("--runtime-dir", help="directory of the socket and lock (default: per-user, see README)")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="serve in the foreground (or --detach)")
    run_parser.add_argument("--runtime-dir", default=argparse.SUPPRESS)
    run_parser.add_argument("--endpoint", help="ZeroMQ endpoint to bind instead of the runtime dir's ipc socket")
    run_parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="exit after this many seconds with no client (0: never; default never for a daemon started by hand)",
    )
    run_parser.add_argument("--detach", action="store_true", help="fork into the background (clients use this)")
    run_parser.add_argument("--log-level", default="INFO")
    # Set by the daemon itself when it re-executes after an abort (see logger_daemon/rescue.py).
    run_parser.add_argument("--lock-fd", type=int, default=None, help=argparse.SUPPRESS)
    run_parser.add_argument("--restarts", type=int, default=0, help=argparse.SUPPRESS)
    run_parser.add_argument(
        "--root", action="store_true", help="the root daemon of a multi-node job: bind --endpoint tcp://... with --keys"
    )
    run_parser.add_argument("--forward-to", metavar="ENDPOINT", help="a node's root daemon (tcp://HOST:PORT)")
    run_parser.add_argument("--keys", metavar="DIR", help="the job's CURVE key directory (logger-daemon keygen)")
    keygen_parser = commands.add_parser("keygen", help="write a multi-node job's CURVE keys into DIR")
    keygen_parser.add_argument("dir", metavar="DIR", help="a private directory, copied to every node; not a log dir")
    for name, helptext in (("status", "print clients and counters"), ("stop", "write everything, then exit")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--runtime-dir", default=argparse.SUPPRESS)
        sub.add_argument("--timeout", type=float, default=10.0)
        sub.add_argument("--endpoint", help="a root daemon's tcp://HOST:PORT (with --keys) instead of this node's")
        sub.add_argument("--keys", metavar="DIR", help="the job's CURVE key directory, for --endpoint")
        if name == "status":
            sub.add_argument("--json", action="store_true", help="as JSON (with --watch: one line per turn)")
            sub.add_argument("--watch", action="store_true", help="redraw every --interval seconds, like top")
            sub.add_argument("--interval", type=float, default=1.0, help="seconds between turns of --watch")
        else:
            sub.add_argument(
                "--force", action="store_true", help="SIGKILL the daemon if it has not stopped by --timeout"
            )
    export_parser = commands.add_parser(
        "export",
        help="print a log directory's scalars and text as csv or json",
        description=EXPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export_parser.add_argument("logdir", metavar="LOGDIR", help="log directory (or one event file)")
    export_parser.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default csv)")
    export_parser.add_argument("--run", type=_regex, metavar="REGEX", help="only runs whose name this matches (search)")
    export_parser.add_argument("--tag", type=_regex, metavar="REGEX", help="only tags this matches (search)")
    export_parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    args = parser.parse_args(argv)
    if args.command == "run" and args.idle_timeout is None and not args.detach:
        args.idle_timeout = 0.0
    return {"run": run, "status": status, "stop": stop, "export": export, "keygen": keygen}[args.command](args)


def keygen(args: argparse.Namespace) -> int:
    """Writes the root's and the nodes' CURVE certificates (see `logger_daemon.keys`)."""
    from logger_daemon.keys import BadKeys, generate

    try:
        paths = generate(args.dir)
    except (BadKeys, OSError) as exc:
        print(f"keygen: {exc}", file=sys.stderr)
        return 1
    print("\n".join(paths))
    print(f"copy {args.dir} to every node of the job (mode 700); never into a log directory")
    return 0
