"""A node daemon's link to the root daemon of a job that spans several nodes: what the node's ranks
log is written by the root only.

The node combines its own ranks' values as usual (`reduce.Reducer`), and instead of writing them
sends them on as partial aggregates (PARTIAL_SCALARS: columns of count, exact sum, min, max per
step; PARTIAL_HISTOGRAM: bucket counts or values), which the root combines with the other nodes' (one contributor per
node). Everything else its ranks log (rank 0's records, per-rank sub-runs, images ...) goes on as
it came. The link is an ordinary client of the root (`logger_client.transport.connect_link` over tcp, with CURVE keys):
so it buffers within the client's bounds while the root is away (counting what it drops), and
resends what the root had not acknowledged when it is back, under the same message ids, which a
restarted root recognises from its delivery marks (nothing is written twice).

Per (job, log dir) the link opens two writers at the root: one for partials, opened with the node
as its contributor, the job's world size and how many ranks the node runs; one for the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from logger_client.protocol import ARRAY_KINDS, ARRAY_MAP_KINDS, OPTIONS, RUN, VALUE, WRITER, RecordKind
from logger_client.reduction import root_endpoint
from logger_client.settings import Settings
from logger_client.transport import Link, PendingFlush, connect_link
from logger_daemon.intake import Group
from logger_daemon.keys import secure_client
from logger_daemon.reduce import Member, Released, partial_columns, partial_histograms

log = logging.getLogger("logger_daemon")

__all__ = ["LINK_LINGER_S", "Forwarder", "RootFlush"]

#: Longest a node's link to a root holds what it was given before sending it.
LINK_LINGER_S = 0.02


@dataclass
class _Link:
    """The root's writers for one (job, log dir) of this node, and how many local writers use it."""

    transport: Link
    partials: int
    rest: int
    users: int = 0


class Forwarder:
    """Sends a node's ranked records to root daemons (pipeline thread only): to `endpoint` if
    given, else to each job's root at its MASTER_ADDR and `settings.root_port`."""

    def __init__(self, endpoint: str, keys_dir: str | None, settings: Settings) -> None:
        self.endpoint = endpoint
        self._secure = (lambda sock: secure_client(sock, keys_dir)) if keys_dir else None
        self._settings = settings
        self._transports: dict[str, Link] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        self._closing: list[tuple[str, str]] = []
        self.records_sent = 0
        #: Combined values sent as partials, and those of them the link had no room for.
        self.values_sent = 0
        self.values_dropped = 0

    def route(self, options: dict[str, Any]) -> str:
        """The root endpoint of a ranked writer, from its OPEN options ("": its job is combined
        and written on this node: it runs on this node only, or no root is known)."""
        if self.endpoint:
            return self.endpoint
        world, local, master = options.get("world_size"), options.get("local_world_size"), options.get("master_addr")
        if type(world) is not int or type(local) is not int or world <= local or not master:
            return ""
        if type(master) is not str or not self._settings.root_port:
            return ""
        return root_endpoint(master, self._settings.root_port)

    def _transport(self, endpoint: str) -> Link:
        transport = self._transports.get(endpoint)
        if transport is None:
            # The node batches already (a pipeline cycle's values): a client's linger would only
            # add its quarter second to every value's way to disk.
            settings = replace(self._settings, linger_s=min(self._settings.linger_s, LINK_LINGER_S))
            transport = self._transports[endpoint] = connect_link(settings, endpoint, self._secure)
        return transport

    def open(self, member: Member, options: dict[str, Any]) -> None:
        """A local writer of a job opened: the root hears of this node's part in it at once, so
        that it waits for this node from the job's first step."""
        key = (member.job, member.root)
        link = self._links.get(key)
        if link is None:
            node = str(options.get("node") or os.uname().nodename)
            combined = {
                "logdir": member.root,
                "filename_suffix": options.get("filename_suffix") or "",
                "flush_secs": float(options.get("flush_secs") or 120),
                "job": member.job,
                "contributor": f"{node}",
                "world_size": options.get("world_size"),
                "ranks": options.get("local_world_size") or 1,
                "reduce": "mean",
            }
            plain = {key: combined[key] for key in ("logdir", "filename_suffix", "flush_secs")}
            transport = self._transport(member.forward)
            link = self._links[key] = _Link(transport, transport.open_writer(combined), transport.open_writer(plain))
        link.users += 1

    def close(self, member: Member) -> None:
        """A local writer closed: once none uses the link, the root no longer waits for this node."""
        key = (member.job, member.root)
        link = self._links.get(key)
        if link is None:
            return
        link.users -= 1
        if link.users <= 0:
            self._closing.append(key)  # closed by `settle`, after what the close lets go of

    def settle(self, waiting: Callable[[str, str], bool]) -> None:
        """Closes at the root the links no local writer uses any more and for which nothing
        `waiting(job, log dir)` in the reducer (end of a pipeline cycle)."""
        still = []
        for key in self._closing:
            link = self._links.get(key)
            if link is None or link.users > 0:
                continue
            if waiting(*key):
                still.append(key)
                continue
            del self._links[key]
            link.transport.queue_close(link.partials)
            link.transport.queue_close(link.rest)
        self._closing = still

    def partials(self, released: Released) -> None:
        """Combined values of this node's ranks, on to the root as partial aggregates: scalars as
        columns (PARTIAL_SCALARS, `batch_records` entries a record), histograms one by one."""
        gather = released.gather
        link = self._links.get((gather.job, gather.root))
        entries = len(released.steps)
        if link is None:
            log.warning("no link to the root for job %r: %d value(s) lost", gather.job, entries)
            return
        run = os.path.relpath(gather.run.path, gather.root)
        run = "" if run == "." else run
        transport = link.transport
        if not gather.histogram:
            columns = partial_columns(released)
            options = {"reduce": gather.mode}
            for piece in _pieces(columns, transport.batch_records):
                step, wall = int(piece["step"][0]), float(piece["wall"][-1])
                self._submit(
                    transport,
                    (RecordKind.PARTIAL_SCALARS, link.partials, run, gather.tag, step, wall, piece, options),
                    len(piece["step"]),
                )
            return
        records, arrays = partial_histograms(released)
        for record in records:
            record[WRITER], record[RUN] = link.partials, run
            record[VALUE] = {name: arrays[index] for name, index in record[VALUE].items()}
            self._submit(transport, tuple(record), 1)

    def _submit(self, transport: Link, record: tuple, values: int) -> None:
        """Queues an array record of `values` values; counts them dropped if the link's byte bound
        had no room (it drops at once, never waits: the pipeline thread calls)."""
        before = transport.dropped_total()
        transport.submit_array(record)
        self.records_sent += 1
        self.values_sent += values
        if transport.dropped_total() > before:
            self.values_dropped += values

    def as_is(self, member: Member, run_name: str, tag: str, group: Group) -> None:
        """Records of this node's ranks that are not combined (rank 0's, per-rank, other kinds)."""
        link = self._links.get((member.job, member.root))
        if link is None:
            return
        for record in group.records:
            out = list(record)
            out[WRITER] = link.rest
            value = out[VALUE]
            # The rank's arrays may live in its shared arena, reused once its message is acknowledged.
            if record[0] in ARRAY_KINDS or record[0] in ARRAY_MAP_KINDS:
                out[VALUE] = {k: np.array(v) for k, v in value.items()} if type(value) is dict else np.array(value)
                if len(out) <= OPTIONS:
                    out.append({})
                link.transport.submit_array(tuple(out))
            else:
                self._append(link.transport, tuple(out))
        for _, steps, walls, values in group.columns:
            for step, wall, value in zip(steps.tolist(), walls.tolist(), values.tolist()):
                self._append(link.transport, (RecordKind.SCALAR, link.rest, run_name, tag, step, wall, value))

    def _append(self, transport: Link, record: tuple) -> None:
        queue = transport.queue
        queue.append(record)
        self.records_sent += 1
        if len(queue) >= transport.batch_records:
            transport.on_backlog(len(queue))

    def request_flush(self, endpoints: set[str]) -> RootFlush:
        """Asks the roots at `endpoints` to write and fsync everything sent them so far."""
        transports = [self._transport(endpoint) for endpoint in sorted(endpoints)]
        return RootFlush([(t.request_flush(), t, t.dropped_total()) for t in transports])

    def status(self) -> dict[str, Any]:
        """The links' counters, summed: what they sent, what the roots have not acknowledged, what
        they dropped."""
        stats: dict[str, Any] = {"root": self.endpoint or ", ".join(sorted(self._transports))}
        stats.update(records_forwarded=self.records_sent, records_written=0, records_pending=0, records_dropped={})
        stats.update(values_forwarded=self.values_sent, values_dropped=self.values_dropped)
        for transport in self._transports.values():
            counts = transport.stats()
            stats["records_written"] += counts["records_written"]
            stats["records_pending"] += counts["records_pending"]
            for reason, count in counts["records_dropped"].items():
                stats["records_dropped"][reason] = stats["records_dropped"].get(reason, 0) + count
        return stats

    def close_all(self, timeout_s: float) -> bool:
        """Sends what is left and waits up to `timeout_s` for the roots to acknowledge it."""
        shut = [transport.shutdown(timeout_s) for transport in self._transports.values()]  # each one
        return all(shut)


def _pieces(columns: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    """PARTIAL_SCALARS columns cut into records of at most `size` entries (a link's batch)."""
    entries = len(columns["step"])
    if entries <= size:
        return [columns]
    pieces = []
    extra_of, extra = columns["extra_of"], columns["extra"]
    for start in range(0, entries, size):
        stop = min(start + size, entries)
        piece = {name: columns[name][start:stop] for name in ("step", "wall", "count", "sum", "min", "max")}
        inside = (extra_of >= start) & (extra_of < stop)
        piece.update(extra_of=extra_of[inside] - start, extra=extra[inside])
        pieces.append(piece)
    return pieces


@dataclass
class RootFlush:
    """A node's flush of what it forwarded: done once every root acknowledged it; `clean` if each
    did and no link dropped anything meanwhile."""

    requests: list[tuple[PendingFlush, Link, int]]

    def done(self) -> bool:
        return all(request.done.is_set() for request, _, _ in self.requests)

    def clean(self) -> bool:
        return all(request.ok and link.dropped_total() == dropped for request, link, dropped in self.requests)
