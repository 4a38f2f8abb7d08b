"""fork() and DataLoader workers logging through a writer they inherited: every record arrives,
nothing hangs, nothing of the parent's is sent twice.

Faults suite: each test runs a real daemon and real processes, and counts what is on disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def run_script(tmp_path, code: str, *args: object, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        cwd=str(tmp_path),
    )


def scalar_steps(logdir: str) -> dict[str, list[int]]:
    accumulator = EventAccumulator(logdir, size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [event.step for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


FORK_WHILE_LOGGING = """
import json, os, sys, threading
from logger_client import SummaryWriter

logdir, children, per_child = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
writer = SummaryWriter(logdir)
stop = threading.Event()
parent_steps = [0]

def log_in_parent():  # keeps the queue, its locks and the packing busy across every fork
    while not stop.is_set():
        writer.add_scalar("parent", 1.0, parent_steps[0])
        parent_steps[0] += 1

thread = threading.Thread(target=log_in_parent)
thread.start()
pids = []
for index in range(children):
    pid = os.fork()
    if pid == 0:
        for step in range(per_child):
            writer.add_scalar(f"child/{index}", float(step), step)
        stats = writer.stats()
        ok = writer.close(timeout=20)
        with open(f"child-{index}.json", "w") as out:
            json.dump({"closed": ok, "dropped": stats["records_dropped"]}, out)
        sys.exit(0)
    pids.append(pid)
stop.set()  # every fork happened mid-logging; more of the parent's scalars would only slow the read-back
thread.join()
for pid in pids:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
assert writer.close(timeout=30)
print(json.dumps({"parent_steps": parent_steps[0], "dropped": writer.stats()["records_dropped"]}))
"""


def test_children_forked_while_the_parent_logs_deliver_everything_and_never_hang(daemon, logdir, tmp_path):
    children, per_child = 12, 3000
    done = run_script(tmp_path, FORK_WHILE_LOGGING, logdir, children, per_child, timeout_s=120)
    assert done.returncode == 0, done.stderr[-3000:]
    parent = json.loads(done.stdout.strip().splitlines()[-1])
    assert parent["dropped"] == {}
    for index in range(children):
        child = json.loads((tmp_path / f"child-{index}.json").read_text())
        assert child == {"closed": True, "dropped": {}}, index
    steps = scalar_steps(logdir)
    for index in range(children):
        assert steps[f"child/{index}"] == list(range(per_child)), index
    assert steps["parent"] == list(range(parent["parent_steps"]))  # nothing of the parent's twice


SPAWN_WITH_PREEXEC_FN = """
import json, subprocess, sys
from logger_client import SummaryWriter

logdir, runs, per_run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
writer = SummaryWriter(logdir)
failed = []
for run in range(runs):
    for step in range(per_run):
        writer.add_scalar("parent", float(step), run * per_run + step)
    assert writer.flush()
    # The child runs the at-fork hooks, then closes every fd it inherited or made, then execs.
    child = subprocess.run(
        [sys.executable, "-c", "print('ran')"], preexec_fn=lambda: None, capture_output=True, text=True
    )
    if child.returncode != 0 or child.stdout != "ran\\n":
        failed.append([child.returncode, child.stderr[-500:]])
ok = writer.close(timeout=30)
print(json.dumps({"failed": failed, "closed": ok, "dropped": writer.stats()["records_dropped"]}))
"""


def test_programs_run_with_a_preexec_fn_beside_an_open_writer_start_and_nothing_is_lost(daemon, logdir, tmp_path):
    runs, per_run = 20, 100
    done = run_script(tmp_path, SPAWN_WITH_PREEXEC_FN, logdir, runs, per_run, timeout_s=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"failed": [], "closed": True, "dropped": {}}
    assert scalar_steps(logdir) == {"parent": list(range(runs * per_run))}


DATALOADER = """
import json, sys
import torch
from torch.utils.data import DataLoader, Dataset
from logger_client import SummaryWriter

logdir, items, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
writer = SummaryWriter(logdir)
writer.add_scalar("parent", 0.0, 0)

class Logged(Dataset):
    def __len__(self):
        return items

    def __getitem__(self, index):
        worker = torch.utils.data.get_worker_info().id
        writer.add_scalar(f"worker/{worker}", float(index), index)
        return index

seen = 0
for batch in DataLoader(Logged(), batch_size=50, num_workers=workers):
    seen += len(batch)
assert seen == items
assert writer.close(timeout=30)
print(json.dumps({"dropped": writer.stats()["records_dropped"]}))
"""


def test_dataloader_workers_deliver_what_they_log_up_to_their_exit(daemon, logdir, tmp_path):
    items, workers = 20_000, 2
    done = run_script(tmp_path, DATALOADER, logdir, items, workers, timeout_s=120)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = scalar_steps(logdir)
    logged = sorted(step for tag, found in steps.items() if tag.startswith("worker/") for step in found)
    assert logged == list(range(items))  # the tail each worker logged just before its exit too
    assert all(found == sorted(found) for found in steps.values())
