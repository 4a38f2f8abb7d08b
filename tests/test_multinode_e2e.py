"""A job across two "nodes" on loopback: each node's daemon combines its two ranks and forwards
partial aggregates over tcp with CURVE to a root daemon, which alone writes. The root's file must
hold what one daemon writes for the same four ranks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import numpy as np
import pytest
import zmq
from conftest import REPO, start_daemon, wait_for
from daemon_cli import cli
from test_ranks_e2e import HERE, RANKS, mean_of

from logger_client import reader
from logger_client.runtime import daemon_running
from logger_daemon.keys import generate

NODES = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daemon_process(runtime_dir: str, *args: str) -> contextlib.AbstractContextManager[subprocess.Popen]:
    """`logger-daemon run` with `args` for the block; a root or node may take longer to stop."""
    return start_daemon(runtime_dir, args=args, stop_timeout_s=20.0)


def private_dir(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)  # short: ipc socket paths are limited
    os.chmod(path, 0o700)
    return path


def start_ranks(tmp_path, logdir: str, runtime_dirs: list[str], **spec) -> list[subprocess.Popen]:
    """The fake ranks of `tests/rank_worker.py`, ranks r on node r // (RANKS // len(runtime_dirs))."""
    barrier = tmp_path / f"barrier-{len(runtime_dirs)}"
    barrier.mkdir()
    per_node = RANKS // len(runtime_dirs)
    processes = []
    for rank in range(RANKS):
        node = rank // per_node
        result = str(tmp_path / f"result-{len(runtime_dirs)}.{rank}")
        rank_spec = {"logdir": logdir, "barrier": str(barrier), "result": result, **spec}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
        env.update(RANK=str(rank), WORLD_SIZE=str(RANKS), LOCAL_RANK=str(rank % per_node), GROUP_RANK=str(node))
        env.update(LOCAL_WORLD_SIZE=str(per_node), TORCHELASTIC_RUN_ID=f"job-{len(runtime_dirs)}")
        env.update(LOGGER_RUNTIME_DIR=runtime_dirs[node], MASTER_ADDR="127.0.0.1")
        command = [sys.executable, os.path.join(HERE, "rank_worker.py"), json.dumps(rank_spec)]
        processes.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL))
    return processes


def finish_ranks(tmp_path, processes: list[subprocess.Popen], nodes: int) -> list[dict]:
    """Waits for the ranks to end well; what each reported."""
    try:
        for process in processes:
            assert process.wait(120) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    results = []
    for rank in range(RANKS):
        with open(tmp_path / f"result-{nodes}.{rank}") as f:
            results.append(json.load(f))
    return results


def run_ranks(tmp_path, logdir: str, runtime_dirs: list[str], **spec) -> list[dict]:
    return finish_ranks(tmp_path, start_ranks(tmp_path, logdir, runtime_dirs, **spec), len(runtime_dirs))


def root_status(endpoint: str, keys: str) -> dict:
    result = cli("status", "--json", "--endpoint", endpoint, "--keys", keys)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def keys() -> Iterator[str]:
    path = private_dir("tbk-")
    os.rmdir(path)
    generate(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def job_dirs(runtime_dir) -> Iterator[list[str]]:
    """Runtime dirs: [root, node 0, node 1] (`runtime_dir` is the single-node daemon's)."""
    paths = [private_dir("tbr-") for _ in range(NODES + 1)]
    yield paths
    for path in paths:
        assert not daemon_running(path)
        shutil.rmtree(path, ignore_errors=True)


def start_root(root_dir: str, keys: str, endpoint: str) -> contextlib.AbstractContextManager[subprocess.Popen]:
    return daemon_process(root_dir, "--root", "--endpoint", endpoint, "--keys", keys)


@contextlib.contextmanager
def two_nodes_and_a_root(job_dirs: list[str], keys: str, port: int) -> Iterator[str]:
    endpoint = f"tcp://127.0.0.1:{port}"
    root_dir, *node_dirs = job_dirs
    with contextlib.ExitStack() as stack:
        stack.enter_context(start_root(root_dir, keys, endpoint))
        for node_dir in node_dirs:
            stack.enter_context(daemon_process(node_dir, "--forward-to", endpoint, "--keys", keys))
        yield endpoint


def written(logdir: str) -> tuple[list[int], list[float], list[int], list]:
    """The loss's steps, values and rank counts, and the histograms, in `logdir` so far."""
    if not os.path.isdir(logdir) or not os.listdir(logdir):
        return [], [], [], []
    data = reader.load(logdir)
    loss = data.scalars.get((".", "loss"))
    if loss is None:
        return [], [], [], []
    ranks = loss.ranks.tolist() if loss.ranks is not None else []
    histograms = [(h.step, h.num, h.bucket_counts.tolist(), h.ranks) for h in data.histograms.get((".", "weights"), [])]
    return loss.step.tolist(), loss.value.tolist(), ranks, histograms


def complete(logdir: str, steps: int) -> tuple | None:
    """What `written` gives once every step's loss and every histogram is there."""
    got = written(logdir)
    return got if len(got[0]) == steps and len(got[3]) == steps // 20 else None


@pytest.mark.e2e
def test_two_nodes_and_a_root_write_what_one_node_writes(daemon, tmp_path, job_dirs, keys):
    steps = 60
    spec = {"steps": steps, "tags": {"loss": 1}, "histogram_every": 20}
    single = str(tmp_path / "single")
    run_ranks(tmp_path, single, [os.environ["LOGGER_RUNTIME_DIR"]], **spec)
    expected = wait_for(lambda: complete(single, steps), message="the single node's file")
    assert expected is not None

    spread = str(tmp_path / "spread")
    with two_nodes_and_a_root(job_dirs, keys, free_port()) as endpoint:
        results = run_ranks(tmp_path, spread, job_dirs[1:], **spec)
        assert all(result["closed"] for result in results)
        got = wait_for(lambda: complete(spread, steps), message="the root's file")
        assert got is not None
        status = root_status(endpoint, keys)
        shown = cli("status", "--runtime-dir", job_dirs[1]).stdout  # a node: what it forwarded
    assert f"root {endpoint}: " in shown and "dropped: 0" in shown
    assert got[0] == expected[0] == list(range(steps))
    assert got[1] == expected[1]  # the same float32s: sums are exact, whatever the grouping
    np.testing.assert_allclose(got[1], [mean_of(range(RANKS), "loss", s) for s in range(steps)], rtol=1e-6)
    assert got[2] == expected[2] == [RANKS] * steps
    assert got[3] == expected[3] and len(got[3]) == steps // 20
    # Only the root wrote: no node left a file of its own in the log dir.
    assert len([name for name in os.listdir(spread) if name.startswith("events.out")]) == 1
    assert status["reduction"]["values_by_ranks"] == {str(RANKS): steps + steps // 20}
    assert status["records_dropped"] == {}


@pytest.mark.e2e
def test_a_peer_without_the_key_is_refused_and_counted(runtime_dir, job_dirs, keys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with daemon_process(job_dirs[0], "--root", "--endpoint", endpoint, "--keys", keys):
        context = zmq.Context()
        try:
            strangers = []
            plain = context.socket(zmq.DEALER)  # no CURVE at all
            other_public, other_secret = zmq.curve_keypair()
            wrong = context.socket(zmq.DEALER)  # CURVE, but not the root's key
            wrong.curve_serverkey, wrong.curve_publickey, wrong.curve_secretkey = (
                other_public,
                other_public,
                other_secret,
            )
            for sock in (plain, wrong):
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(endpoint)
                sock.send(b"hello")
                strangers.append(sock)
            wait_for(
                lambda: root_status(endpoint, keys)["connections"]["refused_peers"] >= 2,
                message="the root to count both strangers",
            )
            shown = cli("status", "--endpoint", endpoint, "--keys", keys).stdout
            assert re.search(r"peers refused: +\d+ \(failed the CURVE handshake\)", shown)  # they retry
            assert all(not sock.poll(200) for sock in strangers)  # neither got an answer
        finally:
            context.destroy(linger=0)


@pytest.mark.e2e
def test_a_root_killed_and_restarted_loses_nothing_the_nodes_buffered(runtime_dir, tmp_path, job_dirs, keys):
    steps = 150
    root_dir, *node_dirs = job_dirs
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    logdir = str(tmp_path / "spread")
    with contextlib.ExitStack() as nodes:
        root = nodes.enter_context(start_root(root_dir, keys, endpoint))
        for node_dir in node_dirs:
            nodes.enter_context(daemon_process(node_dir, "--forward-to", endpoint, "--keys", keys))
        ranks = start_ranks(tmp_path, logdir, node_dirs, steps=steps, tags={"loss": 1}, step_s=0.02)
        wait_for(lambda: len(written(logdir)[0]) >= 20, message="the first steps at the root")
        root.kill()  # in the middle of the job: what the nodes sent since its last ack is lost with it
        root.wait(10)
        wait_for(lambda: not daemon_running(root_dir), message="the root's lock to go")
        with start_root(root_dir, keys, endpoint):
            results = finish_ranks(tmp_path, ranks, NODES)
            assert all(result["closed"] for result in results)
            wait_for(lambda: len(written(logdir)[0]) >= steps, message="every step")
            got = written(logdir)
            status = root_status(endpoint, keys)
    assert got[0] == list(range(steps))  # each step once: nothing lost, nothing written twice
    assert got[2] == [RANKS] * steps
    np.testing.assert_allclose(got[1], [mean_of(range(RANKS), "loss", s) for s in range(steps)], rtol=1e-6)
    assert status["records_dropped"] == {}
    assert status["reduction"]["values_written"] < steps  # the new root wrote only what the old had not


@pytest.mark.e2e
def test_a_node_without_its_root_buffers_within_its_bound_and_counts_the_rest(
    runtime_dir, tmp_path, job_dirs, keys, monkeypatch
):
    steps, bound = 300, 4096
    root_dir, *node_dirs = job_dirs
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    logdir = str(tmp_path / "spread")
    # The node daemons' link to the root: a small bound of bytes, partials of 16 steps a record.
    monkeypatch.setenv("LOGGER_MAX_BUFFER_BYTES", str(bound))
    monkeypatch.setenv("LOGGER_BATCH_RECORDS", "16")
    with contextlib.ExitStack() as nodes:
        for node_dir in node_dirs:
            nodes.enter_context(daemon_process(node_dir, "--forward-to", endpoint, "--keys", keys))
        monkeypatch.delenv("LOGGER_MAX_BUFFER_BYTES")
        monkeypatch.delenv("LOGGER_BATCH_RECORDS")
        # No root yet: every rank still logs, and its flush and close say that nothing is on
        # disk yet (False, within their bounds) instead of waiting on the root.
        monkeypatch.setenv("LOGGER_FLUSH_TIMEOUT_S", "1")
        monkeypatch.setenv("LOGGER_CLOSE_TIMEOUT_S", "1")
        results = run_ranks(tmp_path, logdir, node_dirs, steps=steps, tags={"loss": 1}, step_s=0.0)
        assert not any(result["closed"] for result in results)
        assert all(result["close_s"] < 5 for result in results)
        with start_root(root_dir, keys, endpoint):

            def settled() -> list[dict] | None:
                links = [json.loads(cli("status", "--json", "--runtime-dir", d).stdout)["root"] for d in node_dirs]
                return links if all(link["records_pending"] == 0 for link in links) else None

            links = wait_for(settled, timeout_s=30, message="the nodes to hand the root what they kept")
            assert links is not None
            status = root_status(endpoint, keys)
    for link in links:
        dropped = link["records_dropped"]
        assert set(dropped) == {"client_buffer_full"} and link["values_dropped"] > 0
        # Every partial record the node made is on disk at the root or counted dropped ...
        assert link["records_written"] + dropped["client_buffer_full"] == link["records_forwarded"]
        # ... and so is every step's value; what it kept fit the bound (queued plus unacknowledged
        # bytes, at least 48 a value: step, wall time, count, sum, min, max).
        assert link["values_forwarded"] == steps
        assert 0 < steps - link["values_dropped"] <= bound // 48
    loss = written(logdir)
    assert len(loss[0]) == len(set(loss[0])) > 0 and set(loss[2]) <= {2, 4}
    assert status["reduction"]["values_in"] == sum(2 * (steps - link["values_dropped"]) for link in links)


@pytest.mark.e2e
def test_the_root_is_found_from_master_addr_and_started_by_rank_0(runtime_dir, tmp_path, job_dirs, keys, monkeypatch):
    """Nothing started by hand: the ranks start their nodes' daemons, rank 0 the root on its host
    (MASTER_ADDR, here 127.0.0.1) at LOGGER_ROOT_PORT; each node's daemon forwards there. A rank's
    flush() returns True only once the root has written what the rank logged before it."""
    steps, port = 40, free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    root_dir = os.path.join(job_dirs[1], "root")  # the runtime dir of node 0 (rank 0's), `root/`
    logdir = str(tmp_path / "spread")
    monkeypatch.setenv("LOGGER_ROOT_PORT", str(port))
    monkeypatch.setenv("LOGGER_KEYS_DIR", keys)
    try:
        spec = {"steps": steps, "tags": {"loss": 1}, "histogram_every": 20, "read_after_flush": True}
        results = run_ranks(tmp_path, logdir, job_dirs[1:], **spec)
        assert daemon_running(root_dir)
        status = root_status(endpoint, keys)
        shown = cli("status", "--runtime-dir", job_dirs[2]).stdout  # node 1: what it forwarded
        got = written(logdir)
        # The root as if on another host: reached at its endpoint alone, never killed from here.
        refused_force = cli("stop", "--force", "--endpoint", endpoint, "--keys", keys)
        stopped = cli("stop", "--endpoint", endpoint, "--keys", keys, "--timeout", "15")
        wait_for(lambda: not daemon_running(root_dir), message="the root to stop")
    finally:
        cli("stop", "--runtime-dir", root_dir, "--endpoint", endpoint, "--keys", keys, "--timeout", "15")
        for node_dir in job_dirs[1:]:
            cli("stop", "--force", "--runtime-dir", node_dir)
        wait_for(lambda: not daemon_running(root_dir), message="the root to stop")
    assert [(r["flushed"], r["steps_on_disk"], r["closed"]) for r in results] == [(True, steps, True)] * RANKS
    assert refused_force.returncode == 2 and "--runtime-dir" in refused_force.stderr
    assert (stopped.returncode, stopped.stdout.strip()) == (0, "daemon stopped"), stopped.stderr
    assert f"root {endpoint}: " in shown and "dropped: 0" in shown
    assert got[0] == list(range(steps)) and got[2] == [RANKS] * steps
    np.testing.assert_allclose(got[1], [mean_of(range(RANKS), "loss", s) for s in range(steps)], rtol=1e-6)
    assert len(got[3]) == steps // 20 and all(h[3] == RANKS for h in got[3])
    assert len([name for name in os.listdir(logdir) if name.startswith("events.out")]) == 1  # the root's
    assert status["reduction"]["values_by_ranks"] == {str(RANKS): steps + steps // 20}
    assert status["records_dropped"] == {}
