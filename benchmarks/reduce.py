"""Cross-rank reduction: 8 ranks log one scalar tag for N steps each, reduced by `mean`.

    python -m benchmarks.reduce [--ranks 8] [--steps 100000] [--nodes 1|2]

Measures, on this machine, with real processes and daemons: the aggregate rank values per second
reduced to disk (all ranks' values / time from the first call to the last reduced value readable
on disk) and the time from the last rank's call for a step to that step's reduced value on disk
(median and p99 over all steps). The second is found by reading the file back while the job runs
(`logger_client.reader`): each step is timestamped when a read first sees it, so it includes up to
one read's duration. With `--nodes 2`, two node daemons on loopback forward to a root daemon
(tcp, CURVE) that writes. Nothing here has an anchor to compare with: tensorboardX and torch do not
reduce across ranks (their users call all_reduce in the training step).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import numpy as np

from logger_client import reader
from logger_client.runtime import daemon_running
from logger_daemon.keys import generate

_RANK = """
import os, sys, time
from logger_client import SummaryWriter
logdir, barrier, steps, world = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(os.environ["WORLD_SIZE"])
rank = int(os.environ["RANK"])
writer = SummaryWriter(logdir)
writer.flush()
open(os.path.join(barrier, f"ready.{rank}"), "w").close()
while len(os.listdir(barrier)) < world:
    time.sleep(0.001)
for step in range(steps):
    writer.add_scalar("loss", rank + step * 1e-3, step)
assert writer.close(timeout=600)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _daemon(runtime_dir: str, *args: str) -> Iterator[None]:
    command = [sys.executable, "-m", "logger_daemon", "run", "--runtime-dir", runtime_dir, *args]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not daemon_running(runtime_dir):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"a daemon did not start: {command}")
            time.sleep(0.02)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _private_dir(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o700)
    return path


def run(ranks: int, steps: int, nodes: int) -> dict[str, float]:
    """One job; the figures of the module's docstring."""
    work = _private_dir("tbb-")
    logdir, barrier = os.path.join(work, "run"), os.path.join(work, "barrier")
    os.mkdir(barrier)
    runtime_dirs = [_private_dir("tbb-") for _ in range(nodes)]
    with contextlib.ExitStack() as stack:
        if nodes > 1:
            keys = os.path.join(work, "keys")
            generate(keys)
            root_dir = _private_dir("tbb-")
            endpoint = f"tcp://127.0.0.1:{_free_port()}"
            stack.enter_context(_daemon(root_dir, "--root", "--endpoint", endpoint, "--keys", keys))
            for runtime_dir in runtime_dirs:
                stack.enter_context(_daemon(runtime_dir, "--forward-to", endpoint, "--keys", keys))
        else:
            stack.enter_context(_daemon(runtime_dirs[0]))
        per_node = ranks // nodes
        processes = []
        for rank in range(ranks):
            env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(ranks), "LOCAL_RANK": str(rank % per_node)}
            env.update(LOCAL_WORLD_SIZE=str(per_node), GROUP_RANK=str(rank // per_node), TORCHELASTIC_RUN_ID="bench")
            env.update(LOGGER_RUNTIME_DIR=runtime_dirs[rank // per_node])
            command = [sys.executable, "-c", _RANK, logdir, barrier, str(steps)]
            processes.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL))
        while len(os.listdir(barrier)) < ranks:
            time.sleep(0.001)
        started = time.time()
        seen = np.full(steps, np.nan)
        walls = np.full(steps, np.nan)
        count = 0
        deadline = time.monotonic() + 600
        while count < steps and time.monotonic() < deadline:
            time.sleep(0.02)
            if not os.path.isdir(logdir) or not any(n.startswith("events") for n in os.listdir(logdir)):
                continue
            loss = reader.load(logdir).scalars.get((".", "loss"))
            now = time.time()
            if loss is None or len(loss) == count:
                continue
            new = loss.step[count:]
            seen[new] = now
            walls[new] = loss.wall_time[count:]
            count = len(loss)
        for process in processes:
            process.wait(600)
    for path in [work, *runtime_dirs]:
        shutil.rmtree(path, ignore_errors=True)
    if count < steps:
        raise SystemExit(f"only {count} of {steps} steps reached the disk")
    latency = seen - walls
    return {
        "ranks": ranks,
        "nodes": nodes,
        "steps": steps,
        "rank_values_per_s": ranks * steps / (float(np.nanmax(seen)) - started),
        "visible_median_s": float(np.median(latency)),
        "visible_p99_s": float(np.percentile(latency, 99)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, choices=(1, 2), default=1)
    args = parser.parse_args()
    print(json.dumps(run(args.ranks, args.steps, args.nodes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
