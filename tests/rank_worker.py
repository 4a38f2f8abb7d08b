"""One fake rank of a data-parallel job, for the reduction tests: a plain process with `RANK` and
`WORLD_SIZE` in its environment (torchrun's, without torch), logging through a real daemon.

    python rank_worker.py SPEC_JSON

SPEC: {"logdir", "steps", "tags": {tag: every_n_steps}, "barrier": dir, "kill_at": step or null,
"rank_killed": rank, "signal": "KILL" or "STOP", "result": path, "reduce": mode or null,
"histogram_every": n or 0, "step_s": seconds, "read_after_flush": bool}. Every rank opens its writer,
says so in the barrier directory and waits until every rank has (as a job's ranks meet in
init_process_group), then logs `value(rank, tag, step)`. The rank `rank_killed` flushes before step
`kill_at` (so that the daemon has what it logged) and SIGKILLs itself there (or SIGSTOPs: hangs).
The result file says how long the longest logging call took and what close returned.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np

from logger_client import SummaryWriter, reader


def value(rank: int, tag: str, step: int) -> float:
    """What rank `rank` logs for `tag` at `step` (the test computes the same)."""
    return (rank + 1) * 0.25 + step * 0.001 + (len(tag) % 7) * 10.0


def histogram_values(rank: int, step: int) -> np.ndarray:
    """The values of rank `rank`'s histogram at `step`."""
    return np.random.default_rng(1000 * step + rank).normal(rank, 1.0 + step / 100, size=500).astype(np.float32)


def main() -> None:
    spec = json.loads(sys.argv[1])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    kwargs = {} if spec.get("reduce") is None else {"reduce": spec["reduce"]}
    writer = SummaryWriter(spec["logdir"], **kwargs)
    writer.flush()
    barrier = spec["barrier"]
    open(os.path.join(barrier, f"ready.{rank}"), "w").close()
    deadline = time.monotonic() + 60
    while len([n for n in os.listdir(barrier) if n.startswith("ready.")]) < world:
        if time.monotonic() > deadline:
            sys.exit("the other ranks never came")
        time.sleep(0.005)
    slowest = {"before": 0.0, "after": 0.0}
    kill_at = spec.get("kill_at")
    for step in range(spec["steps"]):
        if kill_at is not None and step == kill_at and spec.get("rank_killed") == rank:
            writer.flush()  # what it logged before is with the daemon: only the kill loses anything
            os.kill(os.getpid(), signal.SIGSTOP if spec.get("signal") == "STOP" else signal.SIGKILL)
        when = "after" if kill_at is not None and step >= kill_at else "before"
        for tag, every in spec["tags"].items():
            if step % every == 0:
                started = time.perf_counter()
                writer.add_scalar(tag, value(rank, tag, step), step)
                slowest[when] = max(slowest[when], time.perf_counter() - started)
        if spec.get("histogram_every") and step % spec["histogram_every"] == 0:
            started = time.perf_counter()
            writer.add_histogram("weights", histogram_values(rank, step), step)
            slowest[when] = max(slowest[when], time.perf_counter() - started)
        time.sleep(spec.get("step_s", 0.002))
    result: dict = {}
    if spec.get("read_after_flush"):  # what flush() returned, and the loss steps on disk right then
        result["flushed"] = writer.flush()
        loss = reader.load(spec["logdir"]).scalars.get((".", "loss"))
        result["steps_on_disk"] = 0 if loss is None else len(loss.step)
    started = time.monotonic()
    closed = writer.close()
    result.update(slowest_call_s=slowest, closed=closed, close_s=time.monotonic() - started)
    result["stats"] = writer.stats()
    with open(spec["result"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
