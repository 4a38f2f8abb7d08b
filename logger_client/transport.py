"""What a `SummaryWriter` needs from the thing that carries its records: the `Transport` interface.

Two implementations: the daemon's (`get_transport()`, one per process, over ZeroMQ) and
`logger_client.in_memory.InMemoryTransport`, which keeps records in this process (or discards
them, for `write_to_disk=False`), so that training code can be tested without a daemon.

Records are the tuples and packed rows described in `logger_client.protocol`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import numpy as np

if TYPE_CHECKING:
    import zmq

    from .settings import Settings

__all__ = ["Link", "PendingFlush", "Transport", "TransportStats", "connect_link"]


class TransportStats(TypedDict):
    """What `SummaryWriter.stats()` returns: counts since this process connected."""

    #: Data records handed to the daemon.
    records_sent: int
    #: Data records the daemon confirmed written.
    records_written: int
    #: Records lost, by `protocol.DropReason` value: what this client could not keep, and what the
    #: daemon refused of its records.
    records_dropped: dict[str, int]
    #: Array bytes queued or not yet acknowledged.
    array_bytes_held: int
    #: Pre-faulted memory this process holds for array copies (see README, client memory).
    arena_bytes: int
    #: Items waiting in the queue.
    queued: int
    #: Data records logged and not yet confirmed written (queued, or sent and unacknowledged):
    #: they are delivered when a daemon can be had, or counted as `daemon_unreachable` at exit.
    records_pending: int
    #: Why the transport stopped working, if it did.
    error: str | None
    #: The daemon's counters for remote log dirs (fsspec URLs), as of its last acknowledgement:
    #: `segments_uploaded`, `bytes_uploaded`, `segments_pending` and `bytes_pending` (staged on the
    #: daemon's disk, waiting), `upload_failures` (failed tries, each retried), `history_errors`.
    #: Empty while the daemon has no remote log dir.
    uploads: dict[str, int]
    #: Why the daemon's disk refuses writes (full, over quota), as its last acknowledgement said:
    #: it holds this process's records meanwhile (`records_pending`), up to its bound
    #: (`LOGGER_DAEMON_HELD_BYTES`), and drops the rest as `io_error`. None when writes go through.
    write_error: str | None


class Transport(Protocol):
    """Carries a process's records. `queue` is appended to by writers directly (a plain scalar as
    one packed row, anything else as a record tuple); every other call goes through a method."""

    #: The items writers append; `on_backlog` is called once it holds `batch_records` or more.
    queue: Any
    batch_records: int

    def open_writer(self, options: dict[str, Any]) -> int:
        """Registers a writer (its OPEN options); returns the writer's id."""
        ...

    def scalar_key(self, writer: int, run: str, tag: str) -> int | None:
        """A key for packed scalar rows of (writer, run, tag); None when no key is left."""
        ...

    def close_writer(self, writer: int, timeout_s: float) -> bool:
        """Closes a writer; whether everything it logged was written within `timeout_s`."""
        ...

    def submit_array(self, record: tuple, wait_s: float = 0.0) -> None:
        """Queues a record whose value is an array (obtained from `empty_array`, or owned); if the
        transport holds too many array bytes, waits up to `wait_s` for room, then drops it."""
        ...

    def empty_array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Memory for the one copy of a logged array."""
        ...

    def on_backlog(self, length: int, added: int = 1) -> None:
        """The queue reached `length` items with the last append of `added`."""
        ...

    def flush(self, timeout_s: float) -> bool:
        """Whether everything queued before the call was written within `timeout_s`."""
        ...

    def stats(self) -> TransportStats:
        """Counts of what was sent, written and dropped."""
        ...


class PendingFlush(Protocol):
    """A flush asked for without waiting: `done` is set once the daemon acknowledged it (`ok`) or
    it failed (`ok` False)."""

    done: threading.Event
    ok: bool


class Link(Transport, Protocol):
    """A transport to a daemon at a fixed endpoint, used by another daemon (a node's link to the
    root daemon of a job across nodes): it never starts a daemon, and closes writers unwaited."""

    def queue_close(self, writer: int) -> None:
        """Queues a writer's close without waiting for it."""
        ...

    def request_flush(self) -> PendingFlush:
        """Queues a flush behind everything queued so far, without waiting for it."""
        ...

    def dropped_total(self) -> int:
        """Records dropped so far, all reasons: the sum of `stats()["records_dropped"]`, cheaply."""
        ...

    def shutdown(self, timeout_s: float) -> bool:
        """Sends what is left, waits up to `timeout_s` for it to be acknowledged, and stops."""
        ...


def connect_link(settings: Settings, endpoint: str, secure: Callable[[zmq.Socket], None] | None = None) -> Link:
    """A `Link` to the daemon at `endpoint`, within `settings`' client bounds (it buffers while
    that daemon is away and resends what it had not acknowledged); `secure` sets up each of its
    sockets first (CURVE keys)."""
    from ._daemon_transport import DaemonTransport

    return DaemonTransport(settings, find_endpoint=lambda _: endpoint, daemon_alive=lambda _: True, secure=secure)
