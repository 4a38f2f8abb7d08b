"""Every tunable default of client and daemon, each a named constant with an environment override.

One place to look: a value read here is read nowhere else. Settings are read when a transport or a
daemon starts (not at import), so a test or a launcher can set the environment first.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields

__all__ = ["ENV_PREFIX", "Settings"]

#: Every setting `name` is overridden by the environment variable `LOGGER_<NAME>`.
ENV_PREFIX = "LOGGER_"


def _default_runtime_dir() -> str:
    """A directory only this user can open: under $XDG_RUNTIME_DIR when the session has one (a
    per-user tmpfs), else in the user's cache directory; never in a shared directory such as
    /tmp, where another user could create it first. Named per host: home directories are often
    shared between the nodes of a cluster."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, f"tb-logger-{os.getuid()}")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "tb-logger", socket.gethostname())


@dataclass(frozen=True)
class Settings:
    """Defaults for client and daemon; `Settings.from_env()` applies `LOGGER_<NAME>` overrides."""

    #: Directory of the daemon's socket, locks and log (see `runtime`); default per user.
    runtime_dir: str = ""
    #: Small records per message; a full batch is sent at once, a partial one after `linger_s`.
    batch_records: int = 4096
    #: Longest a record waits in the client before it is sent (visibility within 2 s by default).
    linger_s: float = 0.25
    #: Upper bound of array bytes the client holds unacknowledged: a burst of arrays up to this size
    #: is kept whole whatever the daemon's speed; past it the writer's `overflow` policy applies.
    #: The daemon takes no larger frame (its own setting, at least 64 MiB): keep both sides' alike.
    max_buffer_bytes: int = 1024 * 2**20
    #: Memory for array copies, shared with the daemon (virtual; faulted in as arrays are logged,
    #: the first 64 MiB when the transport starts; 0: none). See _arena.
    arena_bytes: int = 1024 * 2**20
    #: Bytes of the arena faulted in when the transport starts, off the training thread. A process
    #: whose first burst of arrays is larger (a model's parameters) pays a page fault for each page
    #: beyond, once; warming as much as it logs at once makes that resident from the start.
    arena_warm_bytes: int = 64 * 2**20
    #: What an array call does when `max_buffer_bytes` are held: "wait" for room on the calling
    #: thread (up to `overflow_wait_s`, then drop and count), or "drop" it and count at once.
    #: A writer's `overflow` argument overrides it.
    overflow: str = "wait"
    #: Longest an array call waits for room under the "wait" policy. After a wait that timed out,
    #: calls drop at once until the daemon acknowledges something again.
    overflow_wait_s: float = 10.0
    #: Upper bound of small records waiting in the client before it drops (and counts).
    max_pending_records: int = 1_000_000
    #: How long `flush()` waits for the daemon's acknowledgement.
    flush_timeout_s: float = 60.0
    #: How long `close()` waits for the daemon to write everything, whatever the daemon's state.
    close_timeout_s: float = 10.0
    #: How long a client waits for a daemon it started (or found) to answer.
    connect_timeout_s: float = 20.0
    #: A client with nothing to send says it is alive this often.
    heartbeat_s: float = 1.0
    #: The daemon forgets a client silent for this long (process killed without a goodbye).
    client_timeout_s: float = 15.0
    #: A daemon started by a client exits after this long with no client (0: never).
    idle_timeout_s: float = 120.0
    #: The daemon fsyncs every open event file this often, besides on flush() and close.
    fsync_interval_s: float = 30.0
    #: Array bytes the daemon queues between receiving and writing before it stops reading.
    daemon_queue_bytes: int = 1024 * 2**20
    #: Threads the daemon encodes histograms, images, audio and video on (0: half the cores this
    #: machine gives the daemon, at least one; 1: on the write thread, no pool).
    encode_workers: int = 0
    #: Records the daemon queues between receiving and writing before it stops reading.
    daemon_queue_records: int = 50_000
    #: Messages ZeroMQ queues in the daemon per client connection before it stops reading it.
    daemon_receive_hwm: int = 100
    #: Where the daemon stages the event files of remote log dirs (fsspec URLs) before uploading
    #: them; default `<runtime_dir>/staging`.
    staging_dir: str = ""
    #: A remote run's staged event file is closed and uploaded once it holds this many bytes ...
    segment_bytes: int = 64 * 2**20
    #: ... or once it is this old, whichever comes first (and when the run is closed).
    segment_s: float = 60.0
    #: Failed uploads are retried after 1 s, doubling up to this long between tries, for ever.
    upload_retry_max_s: float = 30.0
    #: Longest the daemon holds a closing writer's acknowledgement until its tail is uploaded, and
    #: waits for uploads when it stops; what is left stays staged and is uploaded later.
    upload_wait_s: float = 10.0
    #: Longest the daemon waits to list or read a remote run's files when it first opens the run.
    remote_timeout_s: float = 30.0
    #: Longest a step of a tag several ranks of a job log waits for the ranks that have not given
    #: their value yet; then it is written with those that have (see README, Ranks).
    reduce_wait_s: float = 1.0
    #: A node daemon's root daemon (tcp://HOST:PORT) for jobs across nodes: ranked writers'
    #: records go there, combined per node; "" writes them on this node (see README, Ranks).
    root_endpoint: str = ""
    #: The CURVE key directory of `logger-daemon keygen`, for the root and its nodes.
    keys_dir: str = ""
    #: With `keys_dir`, and no `root_endpoint`: the tcp port of the root daemon of each job across
    #: nodes, on the host of the job's MASTER_ADDR; rank 0's writer starts it there, and every
    #: node's daemon forwards that job's ranks to it (0: jobs across nodes are not combined).
    root_port: int = 0
    #: Encoded bytes the daemon holds in memory while the disk refuses writes (full, over quota),
    #: written in order and acknowledged once it takes them again; records past it are dropped
    #: as `io_error`.
    daemon_held_bytes: int = 64 * 2**20

    @classmethod
    def from_env(cls) -> Settings:
        """Defaults overridden by `LOGGER_RUNTIME_DIR`, `LOGGER_BATCH_RECORDS`, `LOGGER_LINGER_S`, ..."""
        values = {}
        for field in fields(cls):
            raw = os.environ.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            kind: type = type(field.default)
            try:
                values[field.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
        settings = cls(**values)
        if not settings.runtime_dir:
            settings = cls(**{**values, "runtime_dir": _default_runtime_dir()})
        return settings
