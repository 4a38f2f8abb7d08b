"""`python -m benchmarks`: the whole suite, each workload against all three writers.

    python -m benchmarks                      # full suite (~14 min on 2 cores)
    python -m benchmarks --quick --out /tmp/q.json   # tiny sizes: checks that the suite works
    python -m benchmarks --only add_scalar,e2e_one_writer
    python -m benchmarks --only soak --soak-s 300   # the soak (not in a run that does not name it)
    python -m benchmarks --compare benchmarks/results/latest-<date>.json  # after a run: what changed

Prints a markdown table and writes the same figures as JSON to --out (default
benchmarks/results/latest.json) plus a dated copy beside it, each with a .md twin.
Exit status 1 if any workload failed to run or what it logged was not all read back from disk.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from benchmarks import report
from benchmarks.plan import GROUPS, OPT_IN, SOAK_S, workloads
from benchmarks.suite import run_plan
from benchmarks.writers import WRITERS

DEFAULT_OUT = "benchmarks/results/latest.json"


def _select(names: list[str] | None, quick: bool, soak_s: float | None = None) -> list:
    plan = workloads(quick, soak_s)
    if not names:
        return [w for w in plan if w.group not in OPT_IN]
    known = {w.name for w in plan} | set(GROUPS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; choose from {sorted(known)}")
    return [w for w in plan if w.name in names or w.group in names]


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a check that every benchmark works, not a measurement"
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"JSON path (default {DEFAULT_OUT}); a dated copy goes beside it"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only these workloads or groups (comma-separated or repeated): "
        + ", ".join([w.name for w in workloads(False)] + list(GROUPS)),
    )
    parser.add_argument(
        "--writers",
        default=",".join(WRITERS),
        help=f"comma-separated subset of {','.join(WRITERS)} (ratios need tensorboardX)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="tasks run at once (default 1; --quick: 2). Figures from more than 1 are not measurements",
    )
    parser.add_argument(
        "--soak-s",
        type=float,
        default=None,
        help=f"seconds the soak runs (default {SOAK_S[0]:g}, --quick {SOAK_S[1]:g}); "
        "the soak runs only when --only names it",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the event files and child logs (path printed)")
    parser.add_argument(
        "--child-timeout", type=float, default=None, help="seconds one child may run (default 900, quick 180)"
    )
    parser.add_argument(
        "--compare",
        metavar="EARLIER.json",
        help="compare with an earlier run: without a suite run when --against is given, else after this run",
    )
    parser.add_argument("--against", metavar="LATER.json", help="with --compare: the later run (runs nothing)")
    args = parser.parse_args(argv)

    if args.compare and args.against:
        with open(args.compare) as f, open(args.against) as g:
            print(report.compare(json.load(f), json.load(g)))
        return 0

    names = [n.strip() for item in (args.only or []) for n in item.split(",") if n.strip()] or None
    writers = [w.strip() for w in args.writers.split(",") if w.strip()]
    if unknown := [w for w in writers if w not in WRITERS]:
        parser.error(f"unknown writer(s) {unknown}; choose from {list(WRITERS)}")
    plan = _select(names, args.quick, args.soak_s)
    timeout = args.child_timeout or (180.0 if args.quick else 900.0)

    signal.signal(signal.SIGTERM, _terminate)
    started_at = report.now()
    t0 = time.monotonic()
    try:
        results, facts = run_plan(
            plan, writers, args.quick, args.keep_logs, timeout, jobs=args.jobs or (2 if args.quick else 1)
        )
    except KeyboardInterrupt:
        print("interrupted: children and daemons stopped", file=sys.stderr)
        return 130
    doc = report.build_document(results, args.quick, argv, time.monotonic() - t0, started_at, facts)
    paths = report.write(doc, args.out)
    print(report.markdown(doc))
    if args.compare:
        with open(args.compare) as f:
            print(report.compare(json.load(f), doc))
    print(f"wrote {', '.join(paths)} (and .md beside each); suite took {doc['total_s']:.0f} s", file=sys.stderr)
    if facts.get("scratch_dir"):
        print(f"event files and child logs kept in {facts['scratch_dir']}", file=sys.stderr)
    return 0 if doc["all_ran_and_verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
