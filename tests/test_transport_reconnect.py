"""The transport's I/O thread noticing that its daemon is gone, in process: a real DaemonTransport
over real ZeroMQ sockets, the test playing two daemons one after the other (see test_sender's
FakeDaemon), with the transport's seams for finding a daemon and asking whether it lives.
"""

from __future__ import annotations

import time

from conftest import wait_for
from test_sender import FakeDaemon, context  # noqa: F401  (a fixture: pytest finds it here)

from logger_client import _daemon_transport
from logger_client._daemon_transport import DaemonTransport
from logger_client.protocol import MessageKind
from logger_client.settings import Settings


def test_a_dead_daemons_dropped_connection_is_noticed_at_once(context, tmp_path, monkeypatch):  # noqa: F811
    """The lock is probed when the connection drops, not only every `_PROBE_S`: with that probe
    an hour away, the client still moves to the next daemon within a second."""
    monkeypatch.setattr(_daemon_transport, "_PROBE_S", 3600.0)
    endpoints = [f"ipc://{tmp_path}/first.sock", f"ipc://{tmp_path}/second.sock"]
    first = FakeDaemon(context, endpoints[0])
    asked: list[float] = []
    first_alive = True

    def find_endpoint(settings: Settings) -> str:
        asked.append(time.monotonic())
        return endpoints[min(len(asked), 2) - 1]

    def daemon_alive(settings: Settings) -> bool:
        return first_alive if len(asked) == 1 else True

    transport = DaemonTransport(Settings(), find_endpoint, daemon_alive)
    try:
        identity, hello = first.receive()
        assert hello.kind == MessageKind.HELLO
        first.reply(identity, MessageKind.WELCOME, {"daemon_pid": 1})
        transport.wait_connected()
        second = FakeDaemon(context, endpoints[1])
        first_alive = False  # as the kernel releases a killed daemon's lock with its sockets
        first.sock.close(linger=0)
        gone_at = time.monotonic()
        wait_for(lambda: len(asked) == 2, timeout_s=10, message="the client to look for the next daemon")
        assert asked[1] - gone_at < 1.0
        assert second.receive()[1].kind == MessageKind.HELLO
    finally:
        transport.shutdown(0.0)
