"""The daemon's memory under a flood of scalars is bounded by its settings, and the back-pressure
that bounds it reaches the clients' own bounds, counted, never blocking a call.

Not a timing test: the figures checked are memory high-water marks and counts.
"""

from __future__ import annotations

import signal

import pytest
from conftest import wait_for

from logger_client import SummaryWriter
from logger_client.reader import load

pytestmark = pytest.mark.e2e

#: issue 11: the daemon's peak RSS under the 1 000 000-scalar flood stays under this.
DAEMON_PEAK_MIB = 200


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def test_a_frozen_daemon_resuming_under_a_backlog_stays_within_its_memory_bound(daemon, logdir):
    # Two million scalars pile up while the daemon is frozen (SIGSTOP: alive, reading nothing),
    # then reach it at once: what ZeroMQ queues per connection (daemon_receive_hwm) and what the
    # daemon takes in before it stops reading (daemon_queue_records) bound its memory.
    writer = SummaryWriter(logdir)
    assert writer.flush(timeout=30)
    logged = 2_000_000  # within the client's bounds: max_pending_records queued plus as many sent
    daemon.send_signal(signal.SIGSTOP)
    try:
        for step in range(logged):  # every call returns while the daemon is frozen: none waits on it
            writer.add_scalar("loss", step / 8, step)
        # The client sends up to its bound of unacknowledged records; the rest waits in its queue.
        wait_for(lambda: writer.stats()["records_sent"] >= 1_000_000, timeout_s=60, message="the client to send")
    finally:
        daemon.send_signal(signal.SIGCONT)
    assert writer.close(timeout=120)
    stats = writer.stats()
    assert stats["records_dropped"] == {}
    assert stats["records_written"] == logged
    assert _peak_rss_mib(daemon.pid) < DAEMON_PEAK_MIB
    assert len(load(logdir).scalars[(".", "loss")]) == logged


def test_a_flood_beyond_the_clients_bound_is_kept_or_counted(daemon, logdir, monkeypatch):
    # A client bound far below the flood: the daemon pushes back (it stops reading past its queue
    # bound), the client's queue fills, and what does not fit is dropped at the call and counted.
    monkeypatch.setenv("LOGGER_MAX_PENDING_RECORDS", "20000")
    writer = SummaryWriter(logdir)
    logged = 1_000_000
    for step in range(logged):
        writer.add_scalar("loss", step / 8, step)
    writer.close(timeout=60)  # False: records were dropped
    stats = writer.stats()
    dropped = stats["records_dropped"]
    assert set(dropped) <= {"client_queue_full"}, dropped
    on_disk = len(load(logdir).scalars[(".", "loss")])
    assert on_disk == stats["records_written"]
    assert on_disk + dropped.get("client_queue_full", 0) == logged
    assert _peak_rss_mib(daemon.pid) < DAEMON_PEAK_MIB
