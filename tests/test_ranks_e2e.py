"""A data-parallel job's ranks through a real daemon: four processes with torchrun's environment
(`tests/rank_worker.py`) log into one log dir, and the event file read back with TensorBoard's
loader holds one value per step, combined from the ranks that gave one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from conftest import REPO, wait_for
from daemon_cli import cli, status_json
from logdirs import accumulator
from rank_worker import histogram_values, value
from test_reduce import tensorboardx_histogram

from logger_client import reader

HERE = os.path.dirname(os.path.abspath(__file__))
RANKS = 4


def run_job(tmp_path, logdir: str, **spec: Any) -> list[dict]:
    """Runs the fake ranks to their end; returns what each rank that lived reported."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    processes = []
    for rank in range(RANKS):
        rank_spec = {"logdir": logdir, "barrier": str(barrier), "result": str(tmp_path / f"result.{rank}"), **spec}
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(RANKS), "LOCAL_RANK": str(rank)}
        env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
        env.update(LOCAL_WORLD_SIZE=str(RANKS), TORCHELASTIC_RUN_ID=f"job-{tmp_path.name}", MASTER_ADDR="127.0.0.1")
        command = [sys.executable, os.path.join(HERE, "rank_worker.py"), json.dumps(rank_spec)]
        processes.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL))
    hung = processes[spec["rank_killed"]] if spec.get("signal") == "STOP" else None
    try:
        for process in processes:
            if process is not hung:
                process.wait(120)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    results = []
    for rank, process in enumerate(processes):
        if spec.get("kill_at") is not None and rank == spec.get("rank_killed"):
            assert process.returncode == -9
            continue
        assert process.returncode == 0, f"rank {rank} failed"
        with open(tmp_path / f"result.{rank}") as f:
            results.append(json.load(f))
    return results


def mean_of(ranks: range | list[int], tag: str, step: int) -> float:
    return float(np.mean([value(rank, tag, step) for rank in ranks]))


@pytest.mark.e2e
def test_four_ranks_write_one_mean_per_step_and_one_merged_histogram(daemon, logdir, tmp_path):
    steps = 100
    results = run_job(tmp_path, logdir, steps=steps, tags={"loss": 1}, histogram_every=20)
    assert all(result["closed"] for result in results)
    acc = accumulator(logdir)
    loss = acc.Scalars("loss")
    assert [event.step for event in loss] == list(range(steps))  # exactly one value per step
    np.testing.assert_allclose(
        [event.value for event in loss], [mean_of(range(RANKS), "loss", s) for s in range(steps)], rtol=1e-6
    )
    ours = reader.load(logdir).scalars[(".", "loss")]
    assert ours.ranks is not None and set(ours.ranks.tolist()) == {RANKS}
    histograms = acc.Histograms("weights")
    assert [h.step for h in histograms] == list(range(0, steps, 20))
    for histogram in histograms:
        every = np.concatenate([histogram_values(rank, histogram.step) for rank in range(RANKS)]).astype(np.float64)
        got = histogram.histogram_value
        assert (got.num, got.min, got.max) == (every.size, every.min(), every.max())
        assert got.sum == pytest.approx(every.sum(), rel=1e-9)
        assert sum(got.bucket) == every.size
    status = status_json()
    reduction = status["reduction"]
    assert reduction["values_by_ranks"] == {str(RANKS): steps + steps // 20}
    assert reduction["values_in"] == RANKS * (steps + steps // 20)
    assert reduction["values_partial"] == reduction["values_late"] == 0
    assert status["records_dropped"] == {}


@pytest.mark.e2e
def test_a_killed_rank_stalls_nothing_and_later_steps_say_three_ranks(daemon, logdir, tmp_path):
    steps, kill_at, wait_s = 200, 100, 1.0  # the scenario: SIGKILL at step 100
    tags = {"loss": 1, "acc": 10}  # acc: a tag logged every 10 steps
    results = run_job(tmp_path, logdir, steps=steps, tags=tags, kill_at=kill_at, rank_killed=3, step_s=0.01)
    # The other ranks never waited in a logging call for the dead one (the wait is the daemon's).
    assert len(results) == RANKS - 1 and all(result["closed"] for result in results)
    assert max(result["slowest_call_s"]["after"] for result in results) < wait_s / 2
    data = wait_for(lambda: reader.load(logdir), message="the log dir")
    for tag, every in tags.items():
        series = data.scalars[(".", tag)]
        logged = list(range(0, steps, every))
        assert series.step.tolist() == logged
        assert series.ranks is not None
        assert series.ranks.tolist() == [RANKS if step < kill_at else RANKS - 1 for step in logged]
        want = [mean_of(range(RANKS) if step < kill_at else range(RANKS - 1), tag, step) for step in logged]
        np.testing.assert_allclose(series.value, want, rtol=1e-6)
    assert [event.step for event in accumulator(logdir).Scalars("loss")] == list(range(steps))
    reduction = status_json()["reduction"]
    assert reduction["values_late"] == reduction["values_partial"] == 0  # rank 3 was seen gone at once
    assert reduction["values_by_ranks"] == {"3": 110, "4": 110}
    (job,) = reduction["jobs"].values()
    assert job["ranks"]["3"] == "gone"
    shown = cli("status").stdout
    assert "770 combined into 220 (110 of 3 rank(s), 110 of 4 rank(s))" in shown and "rank 3 gone" in shown


@pytest.mark.e2e
def test_a_hung_rank_holds_each_step_no_longer_than_the_bounded_wait(daemon, logdir, tmp_path):
    steps, hang_at, wait_s = 80, 40, 1.0
    spec = {"steps": steps, "tags": {"loss": 1}, "kill_at": hang_at, "rank_killed": 3, "signal": "STOP"}
    results = run_job(tmp_path, logdir, step_s=0.01, **spec)
    assert len(results) == RANKS - 1 and all(result["closed"] for result in results)
    assert max(result["slowest_call_s"]["after"] for result in results) < wait_s / 2
    # close() returns once every value it sent is on disk: the hung rank held them up for the
    # bounded wait at most (plus the time to start three processes' closes on two cores).
    assert max(result["close_s"] for result in results) < wait_s + 2.0
    series = reader.load(logdir).scalars[(".", "loss")]
    assert series.step.tolist() == list(range(steps))
    assert series.ranks is not None
    assert series.ranks.tolist() == [RANKS] * hang_at + [RANKS - 1] * (steps - hang_at)
    want = [mean_of(range(RANKS) if step < hang_at else range(RANKS - 1), "loss", step) for step in range(steps)]
    np.testing.assert_allclose(series.value, want, rtol=1e-6)
    reduction = status_json()["reduction"]
    assert reduction["values_partial"] >= 1 and reduction["values_late"] == 0


@pytest.mark.e2e
def test_a_torchrun_job_of_four_ranks_writes_each_mode_as_its_collectives_compute_it(daemon, logdir, tmp_path):
    steps = 200
    expected_path = tmp_path / "expected.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, HERE, os.environ.get("PYTHONPATH", "")])}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "MASTER_ADDR"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={RANKS}"]
    command += [os.path.join(HERE, "ddp_job.py"), logdir, str(expected_path), str(steps)]
    job = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr[-4000:]
    with open(expected_path) as f:
        expected = json.load(f)
    assert expected["closed"]  # every rank's close() returned True
    acc = accumulator(logdir)
    for tag, mode in [("loss", "mean"), ("loss_sum", "sum"), ("loss_max", "max"), ("loss_rank0", "rank0")]:
        events = acc.Scalars(tag)
        assert [event.step for event in events] == list(range(steps)), tag  # one value per step
        np.testing.assert_allclose([event.value for event in events], expected[mode], rtol=1e-6, err_msg=tag)
    data = reader.load(logdir)
    assert data.scalars[(".", "loss")].ranks.tolist() == [RANKS] * steps  # type: ignore[union-attr]
    assert data.scalars[(".", "loss_rank0")].ranks is None  # rank 0's own value, as a job of one writes it
    for rank in range(RANKS):
        own = accumulator(os.path.join(logdir, f"rank_{rank}")).Scalars("loss_per_rank")
        assert [event.step for event in own] == list(range(steps))
        want = [values[rank] for values in expected["per_rank"]]
        np.testing.assert_allclose([event.value for event in own], want, rtol=1e-6)
    histograms = acc.Histograms("grads")
    assert [h.step for h in histograms] == [step for step, _ in expected["grads"]]
    for histogram, (_, values) in zip(histograms, expected["grads"]):
        got, want = histogram.histogram_value, tensorboardx_histogram(np.array(values), tmp_path)
        assert (got.num, got.min, got.max) == (want.num, want.min, want.max)
        assert list(got.bucket_limit) == list(want.bucket_limit) and list(got.bucket) == list(want.bucket)
        assert got.sum == pytest.approx(want.sum, rel=1e-9)
    assert status_json()["records_dropped"] == {}
