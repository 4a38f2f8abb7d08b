"""The connection cap, in process on real ZeroMQ sockets: at the cap the socket's path is hidden
while connections already made carry on; below it the path comes back."""

from __future__ import annotations

import os
import resource
import socket

import pytest
import zmq
from conftest import wait_for

from logger_daemon.connections import ConnectionGuard, connection_cap, raise_fd_limit


@pytest.fixture
def router(tmp_path):
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/daemon.sock"
    guard = ConnectionGuard(sock, endpoint, cap=5)
    sock.bind(endpoint)
    guard.bound()
    try:
        yield sock, guard, endpoint, str(tmp_path / "daemon.sock")
    finally:
        guard.close()
        sock.close(0)
        context.term()


def raw_connections(path: str, count: int) -> list[socket.socket]:
    opened = []
    for _ in range(count):
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(path)
        opened.append(conn)
    return opened


def settle(guard: ConnectionGuard, until) -> None:
    def seen() -> bool:
        guard.on_events()
        return until()

    wait_for(seen, timeout_s=10, message="the guard to see the connections")


def test_at_the_cap_the_path_is_hidden_and_a_connected_peer_carries_on(router):
    sock, guard, endpoint, path = router
    dealer = sock.context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    dealer.send(b"before")
    assert sock.poll(5000) and sock.recv_multipart()[1] == b"before"

    flood = raw_connections(path, 4)  # with the dealer: 5, the cap
    settle(guard, lambda: not guard.listening)
    assert not os.path.exists(path) and guard.status()["times_full"] == 1
    with pytest.raises(FileNotFoundError):
        raw_connections(path, 1)
    dealer.send(b"while full")  # a peer connected before the cap is not cut off
    assert sock.poll(5000) and sock.recv_multipart()[1] == b"while full"

    for conn in flood:
        conn.close()
    settle(guard, lambda: guard.listening)
    assert os.path.exists(path) and guard.status()["open"] == 1
    late = sock.context.socket(zmq.DEALER)
    late.setsockopt(zmq.LINGER, 0)
    late.connect(endpoint)
    late.send(b"after")
    assert sock.poll(5000) and sock.recv_multipart()[1] == b"after"
    dealer.close(0)
    late.close(0)


def test_the_path_comes_back_only_well_below_the_cap(router):
    _, guard, _, path = router
    flood = raw_connections(path, 5)
    settle(guard, lambda: not guard.listening)
    assert guard.resume_below == 3
    flood.pop().close()
    flood.pop().close()  # 3 open: below the cap, not below three quarters of it
    settle(guard, lambda: guard.open == 3)
    assert not guard.listening and not os.path.exists(path)
    flood.pop().close()
    settle(guard, lambda: guard.listening)
    assert os.path.exists(path)
    for conn in flood:
        conn.close()


def test_closing_the_guard_removes_the_link_that_kept_the_socket(router):
    _, guard, _, path = router
    assert os.path.exists(f"{path}.held")
    guard.close()
    assert not os.path.exists(f"{path}.held")
    guard.close = lambda: None  # the fixture closes it again


def test_the_cap_leaves_the_daemon_a_reserve_of_fds():
    assert connection_cap(1024) == 768
    assert connection_cap(65536) == 49152
    assert connection_cap(100) == 1


def test_the_soft_fd_limit_is_raised_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 64:
        pytest.skip(f"hard fd limit {hard}")
    lowered = 32 if hard == resource.RLIM_INFINITY else min(32, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(lowered, 32), hard))
    try:
        raised = raise_fd_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
        assert raised == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
