"""The daemon's write path, on its own thread: check -> route -> reduce -> encode -> write, then
flush, fsync and acknowledge.

Values several ranks of a job log for one step go to the `Reducer` on the way (see `reduce`): they
wait there for the other ranks (within a bound), so their messages are acknowledged only once what
they carried is written.

The server loop hands over each client message as it came (`put`). A cycle (`process`) takes
everything waiting: `intake` checks and groups each message's records, this module routes each
group to its run, `writing` orders, encodes and appends them, and only once the files it touched
are flushed (TensorBoard can read them from then on) are the cycle's messages acknowledged.
Slow encoding delays acknowledgements, never a training process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from logger_client.protocol import DropReason
from logger_client.settings import Settings
from logger_daemon.encode_pool import EncodePool
from logger_daemon.event_file import Backlog, EventFile
from logger_daemon.forward import Forwarder, RootFlush
from logger_daemon.intake import Group, Intake, OpenWriter, Parts, Work
from logger_daemon.reduce import COMBINED_MARK, Member, Reducer
from logger_daemon.remote import AckHolds, Remotes
from logger_daemon.runs import RefusedWriter, RunLog, Runs
from logger_daemon.stats import Drops, Stats
from logger_daemon.writing import Groups, write_groups

log = logging.getLogger("logger_daemon")

#: Called with the cycle's acknowledgements {client: seq}, refusals {client: {reason: count}}, and,
#: for acknowledgements held for uploads that ended without them, {client: segments not uploaded}.
#: A seq of 0 acknowledges nothing: that client's acknowledgement waits for the disk.
OnWritten = Callable[[dict[bytes, int], dict[bytes, Counter[str]], dict[bytes, int]], None]
#: How often records the disk refused are tried again.
RETRY_S = 0.5
#: How often a node looks whether its roots completed a flush it waits for.
ROOT_FLUSH_POLL_S = 0.01

#: A cycle takes messages holding at most this many array bytes (and at least one message): a
#: burst of arrays is written and acknowledged in parts, and each part's acknowledgement hands
#: its client's arena slots back while the next part is encoded.
CYCLE_ARRAY_BYTES = 64 * 2**20


@dataclass
class _RootFlushWait:
    """A forwarding client's FLUSH: acknowledged once `flush` (asked of its roots when the node
    could acknowledge the FLUSH) is done and clean, or at `deadline`."""

    seq: int
    deadline: float
    flush: RootFlush | None = None


class Pipeline:
    """Owns every run directory and event file; fed by `put`, acknowledges through `on_written`."""

    def __init__(
        self,
        stats: Stats,
        fsync_interval_s: float,
        on_written: OnWritten,
        held_bytes: int = Settings.daemon_held_bytes,
        encode_workers: int = 1,
        remotes: Remotes | None = None,
        reducer: Reducer | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        self._stats = stats
        self._fsync_interval_s = fsync_interval_s
        self._on_written = on_written
        self._inbox: list[Work] = []
        self._inbox_bytes = 0
        self._inbox_records = 0
        self._ready = threading.Condition()
        self._stopping = False
        self._intake = Intake()
        self._backlog = Backlog(held_bytes)
        self._runs = Runs(self._backlog, remotes)
        self._remotes = remotes
        self._holds = AckHolds()  # acknowledgements waiting for a closed remote run's upload
        if remotes is not None:
            remotes.uploader.on_uploaded = self.wake
        self._drops = Drops(stats)
        self._marked: set[RunLog] = set()  # runs that handled new messages this cycle
        #: Acknowledgements waiting, in order, for what their cycle appended to files the disk
        #: refused: (acks, [(file, its `appended` at the cycle's end)]).
        self._waiting: deque[tuple[dict[bytes, int], list[tuple[EventFile, int]]]] = deque()
        self._last_fsync = self._last_retry = time.monotonic()
        self._pool = EncodePool(encode_workers)
        self.reducer = reducer if reducer is not None else Reducer(wait_s=1.0, silent_s=2.5)
        # A node daemon of jobs with a root: their ranks' records go there instead of to disk.
        self.forwarder = forwarder
        if forwarder is not None:
            self.reducer.route = forwarder.route
            self.reducer.on_close = forwarder.close
        #: How long a flush of forwarded values waits for the roots (then the client's flush has
        #: timed out, and its later messages are acknowledged again).
        self.root_flush_s = Settings.flush_timeout_s
        # Per client whose writers forward, its FLUSHes waiting for the roots, in order.
        self._root_flushes: dict[bytes, list[_RootFlushWait]] = {}
        # Per client: the last sequence number received and acknowledged, and the flush waiting
        # for values the reducer holds (acknowledged after an fsync).
        self._received: dict[bytes, int] = {}
        self._acked: dict[bytes, int] = {}
        self._flush_at: dict[bytes, int] = {}
        #: The reducer's `status()` as of the last cycle that combined values (read by `status`).
        self.reduction_status: dict = self.reducer.status()
        self._thread = threading.Thread(target=self._run, name="logger-daemon-pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, work: Work) -> None:
        with self._ready:
            self._inbox.append(work)
            self._inbox_bytes += work.nbytes
            self._inbox_records += work.count
            self._ready.notify()

    def queued(self) -> tuple[int, int]:
        """(records, array bytes) waiting to be written."""
        with self._ready:
            return self._inbox_records, self._inbox_bytes

    def open_files(self) -> int:
        return self._runs.open_files()

    @property
    def encode_workers(self) -> int:
        return self._pool.workers

    def wake(self) -> None:
        """Makes the write thread look at rolls and held acknowledgements now (an upload ended)."""
        with self._ready:
            self._ready.notify()

    def upload_counts(self) -> dict[str, int]:
        """Remote log directories' upload counters; empty when none was used."""
        return self._remotes.counts() if self._remotes is not None else {}

    def uploading(self) -> bool:
        """Whether staged segments wait for upload."""
        return self._remotes is not None and bool(self._remotes.uploader.pending())

    def held(self) -> tuple[int, int, str | None]:
        """(records, bytes) held in memory because the disk refused them, and why (None: it does
        not). Safe from any thread."""
        return (*self._backlog.held(), self._backlog.error())

    def stop(self, timeout_s: float | None = None) -> None:
        """Writes everything handed over so far, fsyncs and closes every file."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        else:  # driven by `process` on the caller's thread
            self._runs.close()
        self._pool.close()
        if self._remotes is not None:  # the tails of remote runs, closed just now
            self._remotes.stop(self._remotes.wait_s)
            self._release_holds(everything=True)

    def _run(self) -> None:
        while True:
            with self._ready:
                if not self._inbox and not self._stopping:
                    timeout = RETRY_S if self._backlog.blocked else min(1.0, self._fsync_interval_s)
                    for due in (self.reducer.next_wake(), self._holds.next_deadline()):
                        if due is not None:
                            timeout = max(0.0, min(timeout, due - time.monotonic()))
                    if self._root_flushes:  # a root's acknowledgement comes on the link's thread
                        timeout = min(timeout, ROOT_FLUSH_POLL_S)
                    self._ready.wait(timeout=timeout)
                batch = self._take_cycle()
                stopping = self._stopping
            if batch or self.reducer.next_wake() is not None:
                try:
                    self.process(batch)
                except Exception:  # never stop writing for everyone because of one batch
                    log.exception("a write cycle failed")
                    self._fail(batch)
            if self._root_flushes:
                self._check_root_flushes()
            if self._backlog.blocked and time.monotonic() - self._last_retry >= RETRY_S:
                self._retry()
            if time.monotonic() - self._last_fsync >= self._fsync_interval_s:
                self._fsync()
            if self._remotes is not None:
                self._remotes.roll_due()
                self._release_holds()
            if stopping and not batch:
                self._write_released(force=True)
                self._runs.close()  # gives up what the disk still refuses, counted
                acks, drops = self._acknowledge({})
                if acks or drops:
                    self._send(acks, drops)
                if self.forwarder is not None:
                    self.forwarder.close_all(timeout_s=10.0)
                return

    def _take_cycle(self) -> list[Work]:
        """The oldest messages of the inbox, up to `CYCLE_ARRAY_BYTES` of arrays and up to a client
        that left (its writers close at the end of the cycle: what it sends once back, after a
        HELLO, goes in the next one); holds `_ready`."""
        inbox = self._inbox
        taken = nbytes = records = 0
        for work in inbox:
            size = work.nbytes
            if taken and nbytes + size > CYCLE_ARRAY_BYTES:
                break
            taken += 1
            nbytes += size
            records += work.count
            if work.client_gone:
                break
        batch = inbox[:taken]
        del inbox[:taken]
        self._inbox_bytes -= nbytes
        self._inbox_records -= records
        return batch

    # -- one cycle ---------------------------------------------------------------------------------

    def process(self, batch: list[Work]) -> None:
        """One write cycle over `batch`, on the calling thread: everything in it is written (or
        counted as dropped), the files flushed, then acknowledged through `on_written`."""
        groups: Groups = defaultdict(Group)
        acks: dict[bytes, int] = {}
        closing: list[tuple[bytes, int]] = []
        gone: list[bytes] = []
        fsync = False
        if self._backlog.blocked:  # room may have come back: what waits goes before what is new
            self._backlog.retry()
        for work in batch:
            collected = self._intake.collect(work, self._drops)
            self._stats.add_received(collected.received)
            repeated: dict[RunLog, bool] = {}  # per run: whether this message was handled there before
            for step in collected.steps:
                if isinstance(step, OpenWriter):
                    self._write(groups)  # a purge must follow what came before it
                    groups = defaultdict(Group)
                    self._open_writer(work, step, repeated)
                else:
                    self._route(work, step, groups, repeated)
            closing.extend((work.client, writer) for writer in collected.closed)
            if work.flush:
                fsync = True
                self._flush_at[work.client] = work.seq
                if self.forwarder is not None and self.reducer.forwards(work.client):
                    pending = self._root_flushes.setdefault(work.client, [])
                    pending.append(_RootFlushWait(work.seq, time.monotonic() + self.root_flush_s))
            if work.client_gone:
                gone.append(work.client)
            if work.seq:
                acks[work.client] = work.seq
        self._write(groups)
        # Ranks that leave are no longer waited for: what they held up is written before their
        # files may close.
        for key in closing:
            self.reducer.close_writer(key)
        for client in gone:
            self.reducer.close_client(client)
        self._write_released()
        if self.forwarder is not None:
            self.forwarder.settle(self.reducer.waiting)
        if self.reducer.active():
            self.reduction_status = self.reducer.status()
        for run in self._marked:
            run.mark_delivered()
            run.flush()
        self._marked.clear()
        acks = self._acknowledgeable(acks, gone)
        if fsync or any(seq >= self._flush_at.pop(client, seq + 1) for client, seq in acks.items()):
            self._fsync()
        for key in closing:
            closed = self._runs.close_writer(key)
            if self._remotes is not None and closed:
                deadline = time.monotonic() + self._remotes.wait_s
                self._holds.hold(key[0], self._remotes.pending_of(closed), deadline)
        for client in gone:
            self._runs.close_client(client)
            self._intake.forget(client)
        if closing or gone:
            self.reducer.forget_closed_runs()
        self._send(*self._acknowledge(acks), gone)

    def _write_released(self, force: bool = False) -> None:
        """Writes the combined values the reducer has ready (every one with `force`)."""
        released = self.reducer.release(self._drops, force)
        if not released:
            return
        groups: dict[tuple[RunLog, str], Group] = {}
        for entries in released:
            gather = entries.gather
            if gather.forward and self.forwarder is not None:
                self.forwarder.partials(entries)
                continue
            groups[(gather.run, gather.tag)] = entries.group()
            self._marked.add(gather.run)
        self._write(groups)

    def _acknowledgeable(self, acks: dict[bytes, int], gone: list[bytes]) -> dict[bytes, int]:
        """What may be acknowledged now: everything received, but for a client with values the
        reducer still holds, only the messages before the first of those."""
        self._received.update(acks)
        for client in gone:
            for table in (self._received, self._acked, self._flush_at, self._root_flushes):
                table.pop(client, None)
        out = {}
        for client, received in self._received.items():
            floor = self.reducer.held_floor(client)
            upto = received if floor is None else min(received, floor - 1)
            if client in self._root_flushes:
                upto = self._root_flushed(client, upto)
            if upto > self._acked.get(client, 0):
                out[client] = self._acked[client] = upto
        return out

    def _root_flushed(self, client: bytes, upto: int) -> int:
        """How far a client whose values go to roots may be acknowledged: its FLUSH only once the
        roots wrote everything it logged before (all of it was forwarded by the time the node
        could acknowledge the FLUSH). A root that fails the flush, or a link that dropped, holds
        it until the client's flush has timed out (it returns False)."""
        assert self.forwarder is not None
        pending = self._root_flushes[client]
        while pending:
            wait = pending[0]
            if upto < wait.seq:
                return upto
            if wait.flush is None:
                wait.flush = self.forwarder.request_flush(self.reducer.forwards(client))
            if time.monotonic() < wait.deadline and not (wait.flush.done() and wait.flush.clean()):
                return wait.seq - 1
            pending.pop(0)
        del self._root_flushes[client]
        return upto

    def _check_root_flushes(self) -> None:
        """Acknowledges the flushes the roots have completed since the last cycle."""
        acks = self._acknowledgeable({}, [])
        if acks:
            self._send(*self._acknowledge(acks))

    def _route(self, work: Work, parts: Parts, groups: Groups, repeated: dict[RunLog, bool]) -> None:
        """Adds one message's parts, keyed by (writer, run name, tag), to `groups` by (run, tag);
        skips those of a message handled before (resent to this daemon after a crash)."""
        client = work.client
        for (writer, run_name, tag), whole in parts.items():
            try:
                run = self._runs.run_for(client, writer, run_name)
            except RefusedWriter as exc:
                count = whole.count()
                log.warning("dropping %d record(s): %s", count, exc)
                self._drops.add(exc.reason, count, client)
                continue
            part = whole
            member = self.reducer.member(client, writer)
            if member is not None and member.forward and self.forwarder is not None:
                rest = self.reducer.take(work, member, run, tag, whole, self._drops)
                if rest is not None:
                    self.forwarder.as_is(member, run_name, tag, rest)
                continue
            if member is not None:
                if work.mid and run.delivered.get(work.cid + COMBINED_MARK, 0) >= work.mid:
                    rest = self._reducer_skip(member, whole)  # combined before this daemon restarted
                else:
                    rest = self.reducer.take(work, member, run, tag, whole, self._drops)
                if rest is None:
                    continue
                part = rest
            if self._repeated(work, run, repeated):
                self._stats.add_duplicates(part.count())
                continue
            groups[(run, tag)].take(part, client)

    def _reducer_skip(self, member: Member, part: Group) -> Group | None:
        """A message sent again after a restart whose combined values were all written: they are
        counted as duplicates; the rest of it goes on as usual."""
        combined, rest = self.reducer.split(member, part)
        self._stats.add_duplicates(combined.count())
        if rest.records:
            rest.owners.append((member.client, len(rest.records)))
        return rest if rest.records or rest.columns else None

    def _open_writer(self, work: Work, step: OpenWriter, repeated: dict[RunLog, bool]) -> None:
        try:
            run = self._runs.run_of(step.options)
            self._runs.open_writer(
                step.client, step.writer, run, step.options, step.wall_time, self._repeated(work, run, repeated)
            )
            self.reducer.open_writer(step.client, step.writer, run, step.options)
            member = self.reducer.member(step.client, step.writer)
            if member is not None and member.forward and self.forwarder is not None:
                self.forwarder.open(member, step.options)
        except RefusedWriter as exc:
            log.warning("%s", exc)
            self._drops.add(exc.reason, 1, step.client)

    def _repeated(self, work: Work, run: RunLog, repeated: dict[RunLog, bool]) -> bool:
        """Whether `work` was handled for `run` before (its id is covered by the run's delivery
        marks); decided once per message and run, and noted as delivered if not."""
        if not work.mid:
            return False
        decided = repeated.get(run)
        if decided is None:
            decided = repeated[run] = run.delivered.get(work.cid, 0) >= work.mid
            if not decided:
                run.delivered[work.cid] = work.mid
                self._marked.add(run)
        return decided

    def _write(self, groups: Groups) -> None:
        written = write_groups(groups, self._drops, self._pool)
        for run in written.runs:
            run.flush()  # readable by TensorBoard from here on: what is acked is visible
        if written.duplicates:
            self._stats.add_duplicates(written.duplicates)

    def _send(self, acks: dict[bytes, int], drops: dict[bytes, Counter[str]], gone: list[bytes] | None = None) -> None:
        """Hands acknowledgements on, less those held until a closed remote run is uploaded."""
        if self._holds:
            self._holds.apply(acks, drops)
            self._release_holds(gone)
        self._on_written(acks, drops, {})

    def _release_holds(self, gone: list[bytes] | None = None, everything: bool = False) -> None:
        """Sends the held acknowledgements whose uploads are done, or that waited long enough."""
        if not self._holds:
            return
        acks, drops, missing = self._holds.release(time.monotonic(), gone or (), everything)
        if acks or drops:
            self._on_written(acks, drops, missing)

    def _acknowledge(self, acks: dict[bytes, int]) -> tuple[dict[bytes, int], dict[bytes, Counter[str]]]:
        """What to tell the clients after a cycle: its acknowledgements, the drops since the last
        time (io_error for records a closed file gave up among them), and the counts written.

        While files hold records the disk refused, acknowledgements wait, in order, until what
        was appended to those files by then is on disk or given up: a seq is acknowledged only
        once written, and never before an earlier one. A client whose ack waits gets 0 for now."""
        records, nbytes, lost = self._backlog.take()
        self._stats.add_written(records, nbytes, self._backlog.take_by_directory())
        for client, count in lost.items():
            self._drops.add(DropReason.IO_ERROR, count, client)
        waits = [(file, file.appended) for file in self._backlog.blocked]
        if waits or self._waiting:
            if acks:
                self._waiting.append((acks, waits))
            acks = dict.fromkeys(acks, 0)
            while self._waiting and all(file.settled >= mark for file, mark in self._waiting[0][1]):
                acks.update(self._waiting.popleft()[0])
        return acks, self._drops.take()

    def _retry(self) -> None:
        """Tries again to write what the disk refused, and acknowledges what that completes."""
        self._backlog.retry()
        self._last_retry = time.monotonic()
        acks, drops = self._acknowledge({})
        if acks or drops:
            self._send(acks, drops)

    def _fsync(self) -> None:
        self._runs.fsync()
        self._last_fsync = time.monotonic()

    def _fail(self, batch: list[Work]) -> None:
        """Acknowledges a batch whose cycle failed, its records counted as `internal_error`."""
        acks: dict[bytes, int] = {}
        for work in batch:
            self._drops.add(DropReason.INTERNAL_ERROR, work.count, work.client)
            if work.seq:
                acks[work.client] = work.seq
        self._send(*self._acknowledge(acks))
