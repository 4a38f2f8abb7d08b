"""Hostile local peers at scale: a msgpack bomb, a 1.2 GiB frame, 2 000 connections against an fd
limit of 1024, and an abort. The daemon stays up under the same pid, its memory stays under
512 MiB, and a writer alongside loses nothing.

(Garbage, truncated frames and wrong versions are in tests/test_hostile_peers.py.)
"""

from __future__ import annotations

import importlib.util
import os
import resource
import signal
import socket
import struct

import numpy as np
import pytest
import zmq
from conftest import start_daemon, wait_for
from daemon_cli import status_json
from raw_peer import RawPeer
from test_hostile_peers import scalars_in
from test_protocol import fixed

from logger_client import SummaryWriter
from logger_client.protocol import MessageKind
from logger_client.runtime import SOCKET_NAME

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

MEMORY_BOUND = 512 * 2**20
FD_LIMIT = 1024
FLOOD_CONNECTIONS = 2000


def peak_rss(pid: int) -> int:
    """The process's high-water resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def log_steps(writer: SummaryWriter, tag: str, steps: range) -> None:
    for step in steps:
        writer.add_scalar(tag, float(step), step)


def assert_all_on_disk(writer: SummaryWriter, logdir: str, tag: str, steps: range) -> None:
    assert writer.flush(timeout=30) is True, writer.stats()
    assert [step for step, _ in scalars_in(logdir, tag)] == list(steps)
    assert writer.stats()["records_dropped"] == {}


def nested_empty_lists_header(lists: int, per_list: int) -> bytes:
    """msgpack of {"records": [[[], [], ...] * lists]}: one byte on the wire per empty list."""
    body = b"".join(b"\xdd" + struct.pack(">I", per_list) + b"\x90" * per_list for _ in range(lists))
    return b"\x81\xa7records\xdc" + struct.pack(">H", lists) + body


def test_a_msgpack_bomb_is_refused_before_it_is_decoded_whole(daemon, runtime_dir, logdir):
    writer = SummaryWriter(logdir)
    log_steps(writer, "alive", range(500))
    peer = RawPeer(runtime_dir)
    try:
        bomb = nested_empty_lists_header(32, 1 << 20)  # 32 MiB: 33.5 million lists if decoded
        assert len(bomb) > 32 * 2**20
        peer.send([fixed(int(MessageKind.RECORDS)), bomb])
        refusal = peer.wait_for_reply(MessageKind.REFUSED, timeout_s=30)
    finally:
        peer.close()
    assert refusal["reason"] == "message_too_large" and "lists and maps" in refusal["detail"]
    log_steps(writer, "alive", range(500, 1000))
    assert_all_on_disk(writer, logdir, "alive", range(1000))
    status = status_json()
    assert status["records_dropped"] == {"message_too_large": 1}
    assert peak_rss(daemon.pid) < MEMORY_BOUND
    assert writer.close(timeout=20)


def test_a_frame_of_1_2_gib_is_refused_as_it_arrives(daemon, runtime_dir, logdir):
    writer = SummaryWriter(logdir)
    log_steps(writer, "alive", range(500))
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{runtime_dir}/{SOCKET_NAME}")
    huge = np.zeros(int(1.2 * 2**30), np.uint8)  # untouched pages: cheap for this process too
    tracker = sock.send_multipart([fixed(int(MessageKind.RECORDS)), b"\x80", huge.data], copy=False, track=True)
    assert tracker is not None
    # The daemon closes the connection on reading the frame's size: ZeroMQ lets go of the frame.
    wait_for(lambda: tracker.done, timeout_s=30, message="the daemon to refuse the frame")
    sock.close(0)
    context.term()
    del huge
    log_steps(writer, "alive", range(500, 1000))
    assert_all_on_disk(writer, logdir, "alive", range(1000))
    assert peak_rss(daemon.pid) < MEMORY_BOUND
    assert daemon.poll() is None
    assert writer.close(timeout=20)


def listening_status() -> dict | None:
    status = status_json()
    return status if status["connections"].get("listening") else None


def _fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_connections_past_the_fd_limit_are_refused_and_the_daemon_stays_up(runtime_dir, logdir):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD_CONNECTIONS + 200:
        pytest.skip(f"this test opens {FLOOD_CONNECTIONS} sockets; the hard fd limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD_CONNECTIONS + 200), hard))
    path = os.path.join(runtime_dir, SOCKET_NAME)
    try:
        with start_daemon(runtime_dir, preexec_fn=_fd_limit) as daemon:
            writer = SummaryWriter(logdir)
            log_steps(writer, "alive", range(1000))
            assert writer.flush(timeout=30)
            flood, refused = [], 0
            for _ in range(FLOOD_CONNECTIONS):
                conn = socket.socket(socket.AF_UNIX)
                try:
                    conn.connect(path)
                    flood.append(conn)
                except OSError:  # the path is hidden (cap reached), or nothing listens yet
                    conn.close()
                    refused += 1
            log_steps(writer, "alive", range(1000, 2000))  # the writer connected before carries on
            assert writer.flush(timeout=30), writer.stats()
            for conn in flood:
                conn.close()
            status = wait_for(listening_status, timeout_s=20, message="the daemon to accept connections again")
            assert status is not None
            assert daemon.poll() is None and status["pid"] == daemon.pid
            # The cap refused the flood; or, where the daemon could not count as fast as a peer
            # connected, libzmq aborted and the daemon came back in place (logger_daemon/rescue.py).
            assert refused > 0 and (status["connections"]["times_full"] >= 1 or status["restarts"] >= 1)
            log_steps(writer, "alive", range(2000, 3000))
            assert_all_on_disk(writer, logdir, "alive", range(3000))
            late = SummaryWriter(os.path.join(logdir, "late"))  # a new connection is accepted again
            log_steps(late, "late", range(100))
            assert_all_on_disk(late, os.path.join(logdir, "late"), "late", range(100))
            assert writer.close(timeout=20) and late.close(timeout=20)
            assert peak_rss(daemon.pid) < MEMORY_BOUND
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(
    importlib.util.find_spec("logger_daemon._rescue") is None, reason="the optional _rescue extension is not built"
)
def test_an_aborted_daemon_comes_back_in_place_and_nothing_is_lost(daemon, runtime_dir, logdir):
    writer = SummaryWriter(logdir)
    log_steps(writer, "alive", range(2000))
    assert writer.flush(timeout=30)
    log_steps(writer, "alive", range(2000, 3000))
    os.kill(daemon.pid, signal.SIGABRT)  # as libzmq's abort() would
    log_steps(writer, "alive", range(3000, 4000))
    assert_all_on_disk(writer, logdir, "alive", range(4000))
    status = status_json()
    assert status["pid"] == daemon.pid and status["restarts"] == 1
    assert daemon.poll() is None
    assert writer.close(timeout=20)
