"""A bare ZeroMQ DEALER that speaks (or, on purpose, breaks) the protocol to a real daemon."""

from __future__ import annotations

import os
import time

import pytest
import zmq

from logger_client import protocol
from logger_client.protocol import MessageKind
from logger_client.runtime import endpoint


class RawPeer:
    """Connected to the daemon of a runtime dir; sends frames as given and numbers its messages."""

    def __init__(self, runtime_dir: str) -> None:
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.cid = os.urandom(16)
        self.sock.setsockopt(zmq.IDENTITY, self.cid)
        self.sock.connect(endpoint(runtime_dir))
        self.seq = 0

    def send(self, frames) -> None:
        self.sock.send_multipart(frames, copy=False)

    def send_message(self, kind: MessageKind, header: dict, arrays=()) -> int:
        self.seq += 1
        self.send(protocol.encode(kind, {**header, "cid": self.cid, "seq": self.seq}, list(arrays)))
        return self.seq

    def receive(self, timeout_s: float = 10.0) -> protocol.Message | None:
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        return protocol.decode(self.sock.recv_multipart())

    def wait_for_reply(self, kind: MessageKind, timeout_s: float = 10.0, seq: int = 0) -> dict:
        """The header of the next `kind` message (for ACK: one acknowledging `seq`); fails on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if (
                message is not None
                and message.kind == kind
                and (kind != MessageKind.ACK or message.header["acked"] >= seq)
            ):
                return message.header
        pytest.fail(f"no {kind.name} (seq {seq}) within {timeout_s}s")

    def wait_acked(self, seq: int, timeout_s: float = 10.0) -> None:
        self.wait_for_reply(MessageKind.ACK, timeout_s, seq)

    def close(self) -> None:
        self.sock.close(0)
        self.context.term()
