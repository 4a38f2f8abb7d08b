"""Cross-rank reduction: the pipeline's stage that combines the values the ranks of a data-parallel
job log for one (run, tag, step) into one value.

Only writers with ranks (`logger_client.reduction`) take part, and only in a run that two or more
ranks of their job write: a run one rank writes (the usual "rank 0 logs" pattern) passes through
unchanged, as does every record other than scalars and histograms of a combined mode (`mean`,
`sum`, `min`, `max`, histograms `merge`): the client settled `rank0` and `per_rank` already.

A combined value is gathered per (job, run, tag, mode) (a `_Gather`), one row per rank's value,
and an entry (step, k) (the k-th value each rank logs at that step, almost always k = 0) is
written once every rank expected for it has contributed or gone past it, or `wait_s` after its
first value came, with the ranks that did. Entries leave in (step, k) order, so each tag keeps its
step order. Expected are the ranks with a writer open on the run that log the tag (before a tag's
first entry is written: every such rank), less those silent for `silent_s` (not heard from at
all: dead, or hung). A rank's value for an entry already written is dropped and counted as
`rank_late`. How many ranks went into each value is written with it (`Summary.Value.node_name`,
see `logger_client.reduction.ranks_note`) and counted in `status`.

While a value waits here its message is not acknowledged: `held_floor` tells the pipeline up to
which sequence number a client may be acknowledged, and the run's delivery mark for the client's
combined records (its id + `COMBINED_MARK`) covers only messages whose every value was written,
so that a daemon restarted after a crash combines them again.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from logger_client.protocol import (
    INT64_MAX,
    INT64_MIN,
    KIND,
    OPTIONS,
    STEP,
    VALUE,
    WALL_TIME,
    DropReason,
    RecordKind,
    record_options,
)
from logger_client.reduction import COMBINED_MODES, ranks_note
from logger_daemon.aggregate import HistogramPartial, exact_parts, exact_sum, merge_histograms
from logger_daemon.intake import Group, Work
from logger_daemon.runs import RunLog
from logger_daemon.stats import Drops
from logger_daemon.summaries import clean_tag

log = logging.getLogger("logger_daemon")

__all__ = [
    "COMBINED_MARK",
    "REDUCED_HISTOGRAM",
    "Member",
    "ReducedGroup",
    "Reducer",
    "Released",
    "ranks_notes",
    "reduce_records",
]

#: The internal kind of a merged histogram: value a `HistogramPartial`, options {"ranks": n}.
#: Never on the wire (kinds there are positive).
REDUCED_HISTOGRAM = -int(RecordKind.HISTOGRAM)
#: Appended to a client's id to name its combined records in a run's delivery marks.
COMBINED_MARK = b"+"

_SCALAR = RecordKind.SCALAR
_HISTOGRAM = RecordKind.HISTOGRAM
_SCALAR_MODES = frozenset(["mean", "sum", "min", "max"])
_PARTIAL_KINDS = frozenset([RecordKind.PARTIAL_SCALARS, RecordKind.PARTIAL_HISTOGRAM])
_NO_STEP = (-(1 << 63), -1)
_NUMBER_TYPES = frozenset([int, float])

Groups = TypeVar("Groups", bound=dict[tuple[Any, str], Any])


def reduce_records(groups: Groups) -> Groups:
    """The write stage's hook: what the pipeline routed there is already reduced (see `Reducer`)."""
    return groups


def ranks_notes(counts: np.ndarray) -> tuple[list[str], np.ndarray]:
    """`EventFile.write_scalars`' node names for values of `counts` ranks (0: none)."""
    unique, index = np.unique(counts, return_inverse=True)
    return [ranks_note(int(count)) if count > 0 else "" for count in unique.tolist()], index.ravel()


class ReducedGroup(Group):
    """A group of combined values: plain scalars as columns, with how many ranks each combines."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: list[np.ndarray] = []

    def rank_counts(self) -> np.ndarray | None:
        return np.concatenate([np.zeros(len(self.records), np.int64), *self.counts])


@dataclass(frozen=True)
class Member:
    """A writer that takes part in combined values: who it is in which job, and how it combines."""

    job: str
    #: The run directory of its log dir (its sub-runs belong to the same job's members).
    root: str
    #: The rank (on a root daemon: the node) whose values it writes.
    who: int
    mode: str
    client: bytes
    #: Its OPEN was announced again (its client reconnected to this daemon, which restarted):
    #: values for steps the files already hold were written by the daemon before.
    resumed: bool = False
    #: On a node daemon: the root daemon its values go to ("": written here).
    forward: str = ""


@dataclass
class _Owner:
    """One message's values in one run: held until all are written."""

    client: bytes
    seq: int
    mark: bytes  # the client's id + COMBINED_MARK
    mid: int
    run: RunLog
    rows: int = 0


class _Rows:
    """Pending values of one gather, as numpy columns (any order)."""

    NAMES = ("step", "occ", "who", "wall", "part", "count", "lo", "hi", "arrival", "owner", "ref")
    DTYPES = ("i8", "i8", "i8", "f8", "f8", "i8", "f8", "f8", "f8", "i8", "i8")

    def __init__(self) -> None:
        self.chunks: list[dict[str, np.ndarray]] = []
        self.size = 0

    def add(self, **columns: np.ndarray) -> None:
        size = len(columns["step"])
        if size:
            self.chunks.append(columns)
            self.size += size

    def all(self) -> dict[str, np.ndarray]:
        if len(self.chunks) != 1:
            self.chunks = [
                {name: np.concatenate([chunk[name] for chunk in self.chunks]) for name in self.NAMES}
                if self.chunks
                else {name: np.empty(0, dtype) for name, dtype in zip(self.NAMES, self.DTYPES)}
            ]
        return self.chunks[0]

    def keep(self, columns: dict[str, np.ndarray], index: np.ndarray | slice) -> None:
        self.chunks = [{name: column[index] for name, column in columns.items()}]
        self.size = len(self.chunks[0]["step"])


@dataclass
class _Gather:
    """One (job, run, tag, mode)'s values waiting to be combined."""

    job: str
    root: str
    run: RunLog
    tag: str
    mode: str
    histogram: bool
    #: The root daemon its entries go to ("": written here).
    forward: str = ""
    rows: _Rows = field(default_factory=_Rows)
    #: Per contributor: (its last step, how many values it gave at that step).
    progress: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: The last entry (step, k) written.
    released: tuple[int, int] = _NO_STEP
    #: Contributors that logged this tag; `settled` once its first entry is written.
    participants: set[int] = field(default_factory=set)
    settled: bool = False
    payloads: dict[int, HistogramPartial] = field(default_factory=dict)
    dirty: bool = False
    #: When the oldest waiting entry is due (monotonic clock; inf: none waits).
    due: float = math.inf
    #: The tag's last step in the files, for a resumed member's gather: values up to it were
    #: written before a restart and are duplicates if they come again (None: no such step).
    on_disk: int | None = None

    def passed_all(self, expected: Iterable[int]) -> tuple[int, int] | None:
        """The first entry not every expected contributor has given or gone past (None: the one
        before any step, when one of them has given nothing yet); an open end for none."""
        low: tuple[int, int] | None = (1 << 63, 0)
        for who in expected:
            position = self.progress.get(who)
            if position is None:
                return None
            if low is None or position < low:
                low = position
        return low


@dataclass
class Released:
    """Entries of one gather written out: per entry its step, k, wall time (the latest of its
    values), how many ranks, and the combined scalar or histogram."""

    gather: _Gather
    steps: np.ndarray
    occs: np.ndarray
    walls: np.ndarray
    ranks: np.ndarray
    lows: np.ndarray
    highs: np.ndarray
    #: The exactly summed parts of the entries (scalars), entry i's at `part_edges[i]:part_edges[i + 1]`.
    part_values: np.ndarray
    part_edges: np.ndarray
    histograms: list[HistogramPartial]
    client: bytes  # to whom a refusal of these values is reported
    expected: int

    def values(self) -> np.ndarray:
        """The written scalar of each entry, by the gather's mode."""
        mode = self.gather.mode
        if mode == "min":
            return self.lows
        if mode == "max":
            return self.highs
        parts, edges = self.part_values.tolist(), self.part_edges.tolist()
        sums = np.array([exact_sum(parts[start:stop]) for start, stop in itertools.pairwise(edges)], np.float64)
        return sums / self.ranks if mode == "mean" else sums

    def group(self) -> ReducedGroup:
        """The entries as the write stage takes them."""
        group = ReducedGroup()
        if self.gather.histogram:
            tag = self.gather.tag
            for step, wall, histogram in zip(self.steps.tolist(), self.walls.tolist(), self.histograms):
                group.records.append([REDUCED_HISTOGRAM, 0, "", tag, step, wall, histogram, {}])
            group.owners.append((self.client, len(self.histograms)))
            group.mixed = True
        else:
            group.columns.append((self.client, self.steps, self.walls, self.values()))
            group.counts.append(self.ranks)
        return group


class _Job:
    """The writers of one job, by the log dir they write."""

    def __init__(self) -> None:
        self.open: defaultdict[str, Counter[int]] = defaultdict(Counter)  # root -> who -> writers
        self.shared: set[str] = set()  # roots two or more contributors wrote
        self.client_of: dict[int, bytes] = {}
        self.gone: set[int] = set()
        #: How many ranks the job has here (0: unknown), and how many each contributor stands for:
        #: a tag's first entry waits for all of them to have a writer open (or for `wait_s`).
        self.expect = 0
        self.weight: dict[int, int] = {}
        self.joined: defaultdict[str, set[int]] = defaultdict(set)  # root -> who ever opened it

    def all_joined(self, root: str) -> bool:
        """Whether every rank the job has here has opened a writer on `root` (it may have closed
        it since: then it is not waited for)."""
        return sum(self.weight.get(who, 1) for who in self.joined.get(root, ())) >= self.expect


class Reducer:
    """Gathers and combines values across ranks; see the module's docstring."""

    def __init__(
        self,
        wait_s: float,
        silent_s: float,
        heard: Callable[[bytes], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wait_s = wait_s
        self.silent_s = silent_s
        self._heard = heard
        self._clock = clock
        self._members: dict[tuple[bytes, int], Member] = {}
        self._jobs: defaultdict[str, _Job] = defaultdict(_Job)
        self._gathers: dict[tuple[str, str, str, str], _Gather] = {}
        self._owners: dict[int, _Owner] = {}
        self._next_owner = 1
        self._held: defaultdict[bytes, Counter[int]] = defaultdict(Counter)  # client -> seq -> rows
        self._marks: defaultdict[tuple[RunLog, bytes], Counter[int]] = defaultdict(Counter)  # mids held
        self._taken_mid: dict[tuple[RunLog, bytes], int] = {}
        self._last_value: dict[bytes, float] = {}  # client -> when its last value came
        self._forwarded: dict[bytes, set[str]] = {}  # client -> the roots its writers forward to
        self._next_check = 0.0
        self.counts: Counter[str] = Counter()
        self.by_ranks: Counter[int] = Counter()
        self._contributors: dict[str, int] = {}  # a root's node names -> contributor numbers
        self._paused_until = 0.0
        #: On a node daemon: the root endpoint a ranked writer's OPEN options send it to ("":
        #: none). Its values are then combined here even in a run only one local rank writes (the
        #: root combines them with other nodes').
        self.route: Callable[[dict[str, Any]], str] | None = None
        #: Called with each member whose writer closes (the node's link to its root).
        self.on_close: Callable[[Member], None] | None = None

    def pause(self, now: float) -> None:
        """The daemon stopped reading for a while (it was behind) and reads again: for `wait_s`
        from `now`, entries wait for every rank and no rank is silent (any thread)."""
        self._paused_until = now + self.wait_s

    def active(self) -> bool:
        """Whether any writer of a job with ranks is known."""
        return bool(self._jobs)

    # -- writers -----------------------------------------------------------------------------------

    def contributor(self, name: str) -> int:
        """A number for a contributor known by name (a node, on a root daemon)."""
        return self._contributors.setdefault(name, len(self._contributors))

    def open_writer(self, client: bytes, writer: int, run: RunLog, options: dict[str, Any]) -> None:
        """A writer opened; if its OPEN names its rank, it takes part in its job's combined values."""
        rank, job, mode = options.get("rank"), options.get("job", ""), options.get("reduce", "mean")
        contributor = options.get("contributor")
        # A rank stands for itself among its node's local ranks; a node (at the root) for its
        # ranks among the job's.
        expect, weight = options.get("local_world_size"), options.get("ranks", 1)
        if type(contributor) is str:
            rank = self.contributor(contributor)
            expect, weight = options.get("world_size"), options.get("ranks")
        if type(rank) is not int or type(job) is not str or type(mode) is not str:
            return
        forward = self.route(options) if self.route is not None and type(contributor) is not str else ""
        member = Member(job, run.path, rank, mode, client, options.get("announced") is True, forward)
        self._members[(client, writer)] = member
        if forward:
            self._forwarded.setdefault(client, set()).add(forward)
        state = self._jobs[job]
        state.open[run.path][rank] += 1
        state.joined[run.path].add(rank)
        state.client_of[rank] = client
        state.gone.discard(rank)
        self._last_value.setdefault(client, self._clock())
        if type(expect) is int:
            state.expect = max(state.expect, expect)
        if type(weight) is int and weight >= 1:
            state.weight[rank] = weight
        if len(state.open[run.path]) >= 2 or type(contributor) is str:
            state.shared.add(run.path)
        for gather in self._gathers.values():
            if gather.job == job and gather.root == run.path:
                gather.dirty = True

    def member(self, client: bytes, writer: int) -> Member | None:
        """The member a writer is, if its values are combined (its run is written by several)."""
        member = self._members.get((client, writer))
        if member is None or not (member.forward or member.root in self._jobs[member.job].shared):
            return None
        return member

    def close_writer(self, key: tuple[bytes, int]) -> None:
        """A writer closed: its rank is no longer expected once it has no writer open there."""
        member = self._members.pop(key, None)
        if member is None:
            return
        if self.on_close is not None:
            self.on_close(member)
        state = self._jobs[member.job]
        opened = state.open[member.root]
        opened[member.who] -= 1
        if opened[member.who] <= 0:
            del opened[member.who]
            if not any(who == member.who for opened_here in state.open.values() for who in opened_here):
                state.gone.add(member.who)
        for gather in self._gathers.values():
            if gather.job == member.job and gather.root == member.root:
                gather.dirty = True

    def close_client(self, client: bytes) -> None:
        """A client is gone: its writers close, and nothing more of it is acknowledged."""
        for key in [key for key in self._members if key[0] == client]:
            self.close_writer(key)
        self._held.pop(client, None)
        self._last_value.pop(client, None)
        self._forwarded.pop(client, None)

    def forwards(self, client: bytes) -> set[str]:
        """The root daemons `client`'s writers (open or closed since) sent their values to."""
        return self._forwarded.get(client, set())

    def waiting(self, job: str, root: str) -> bool:
        """Whether values of `job` in the log dir `root` wait here."""
        return any(g.rows.size for g in self._gathers.values() if g.job == job and g.root == root)

    def forget_closed_runs(self) -> None:
        """Drops the gathers of runs no writer uses any more (all written by then)."""
        for key in [key for key, gather in self._gathers.items() if not gather.run.users and not gather.rows.size]:
            del self._gathers[key]
        for job in [job for job, state in self._jobs.items() if not any(state.open.values())]:
            if not any(gather.job == job for gather in self._gathers.values()):
                del self._jobs[job]

    # -- values in ---------------------------------------------------------------------------------

    @staticmethod
    def split(member: Member, part: Group) -> tuple[Group, Group]:
        """`part` (one message's records of one run and tag) as (what is combined, the rest)."""
        combined, rest = Group(), Group()
        if part.columns and member.mode in _SCALAR_MODES:
            combined.columns = part.columns
        else:
            rest.columns = part.columns
        for record in part.records:
            kind = record[KIND]
            mode = record_options(record).get("reduce", member.mode) if len(record) > OPTIONS else member.mode
            if (
                (kind == _SCALAR and mode in _SCALAR_MODES)
                or (kind == _HISTOGRAM and mode in COMBINED_MODES)
                or kind in _PARTIAL_KINDS
            ):
                combined.records.append(record)
            else:
                rest.records.append(record)
                rest.mixed |= kind != _SCALAR or len(record) > 7
        return combined, rest

    def take(self, work: Work, member: Member, run: RunLog, tag: str, part: Group, drops: Drops) -> Group | None:
        """Takes the values of `part` (one message's records of `run` and `tag`) that are combined;
        returns the rest, to be written as they are (None if nothing is left)."""
        combined, rest = self.split(member, part)
        if combined.columns or combined.records:
            now = self._clock()
            owner = self._owner(work, run)
            # Per mode, the message's values in step order (as a tag is written): small batches
            # came as records, larger ones as columns, and the two are not in arrival order.
            scalars: defaultdict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = defaultdict(list)
            for _, steps, walls, values in combined.columns:
                scalars[member.mode].append((steps, walls, values))
            listed: defaultdict[str, list[list[Any]]] = defaultdict(list)
            for record in combined.records:
                kind = record[KIND]
                if kind == _SCALAR:
                    if len(record) == 7 and not _plain_scalar(record):  # skipped the full check on the way in
                        drops.add(DropReason.MALFORMED_RECORD, 1, work.client)
                        continue
                    listed[record_options(record).get("reduce", member.mode)].append(record)
                elif kind == RecordKind.PARTIAL_SCALARS:
                    self._add_partial_columns(member, run, tag, owner, record, drops, now)
                else:
                    self._add_histogram(member, run, tag, owner, record, drops, now)
            for mode, records in listed.items():
                scalars[mode].insert(
                    0,
                    (
                        np.array([r[STEP] for r in records], np.int64),
                        np.array([r[WALL_TIME] for r in records], np.float64),
                        np.array([r[VALUE] for r in records], np.float64),
                    ),
                )
            for mode, pieces in scalars.items():
                steps, walls, values = (np.concatenate([piece[i] for piece in pieces]) for i in range(3))
                if len(pieces) > 1:
                    order = np.argsort(steps, kind="stable")
                    steps, walls, values = steps[order], walls[order], values[order]
                self._add(member, run, tag, mode, False, owner, steps, walls, values, None, drops, now)
            self._settle_owner(owner)
        if rest.records:
            rest.owners.append((work.client, len(rest.records)))
        return rest if rest.records or rest.columns else None

    def _owner(self, work: Work, run: RunLog) -> int:
        number = self._next_owner
        self._next_owner += 1
        self._owners[number] = _Owner(work.client, work.seq, work.cid + COMBINED_MARK, work.mid, run)
        return number

    def _settle_owner(self, number: int) -> None:
        owner = self._owners[number]
        key = (owner.run, owner.mark)
        if owner.mid:
            self._taken_mid[key] = max(self._taken_mid.get(key, 0), owner.mid)
        if not owner.rows:
            del self._owners[number]
            self._update_mark(key)

    def _gather(self, member: Member, run: RunLog, tag: str, mode: str, histogram: bool) -> _Gather:
        key = (member.job, run.path, tag, "merge" if histogram else mode)
        gather = self._gathers.get(key)
        if gather is not None and gather.run is not run and gather.rows.size:
            # Its run closed while values waited (its writers left before another rank's came):
            # they wait on in the run's new log, for the ranks still to come.
            gather.run = run
        elif gather is None or gather.run is not run:
            gather = self._gathers[key] = _Gather(member.job, member.root, run, tag, key[3], histogram, member.forward)
            if member.resumed:
                gather.on_disk = run.last_step_on_disk(clean_tag(tag))
        return gather

    def _add(
        self,
        member: Member,
        run: RunLog,
        tag: str,
        mode: str,
        histogram: bool,
        owner_number: int,
        steps: np.ndarray,
        walls: np.ndarray,
        values: np.ndarray,
        refs: np.ndarray | None,
        drops: Drops,
        now: float,
        counts: np.ndarray | None = None,
        lows: np.ndarray | None = None,
        highs: np.ndarray | None = None,
        extras: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Adds one contributor's values (in the order it logged them) to their gather."""
        gather = self._gather(member, run, tag, mode, histogram)
        owner = self._owners[owner_number]
        who = member.who
        n = len(steps)
        if n == 0:
            return
        self._last_value[owner.client] = now
        gather.participants.add(who)
        gather.dirty = True
        gather.due = min(gather.due, now + self.wait_s)
        last, count = gather.progress.get(who, _NO_STEP)
        # A contributor never goes back in steps (as a tag's steps never do on disk).
        ceiling = np.maximum.accumulate(steps)
        ordered = (steps >= ceiling) & (steps >= last)
        if not ordered.all():
            drops.add(DropReason.STEP_OUT_OF_ORDER, int(n - ordered.sum()), owner.client)
            keep = np.flatnonzero(ordered)
            steps, walls, values = steps[keep], walls[keep], values[keep]
            refs, counts, lows, highs = _kept(keep, refs, counts, lows, highs)
            extras = _kept_extras(extras, keep, n)
            n = len(steps)
            if n == 0:
                return
        index = np.arange(n)
        starts = np.concatenate([[True], steps[1:] != steps[:-1]])
        occ = index - np.maximum.accumulate(np.where(starts, index, 0))
        occ[steps == last] += count
        gather.progress[who] = (int(steps[-1]), int(occ[-1]) + 1)
        released_step, released_occ = gather.released
        late = (steps < released_step) | ((steps == released_step) & (occ <= released_occ))
        written = steps <= gather.on_disk if gather.on_disk is not None else np.zeros(n, bool)
        late &= ~written
        if late.any() or written.any():
            late_count = int(late.sum())
            self.counts["late"] += late_count
            self.counts["duplicate"] += int(written.sum())
            if late_count:
                drops.add(DropReason.RANK_LATE, late_count, owner.client)
            keep = np.flatnonzero(~(late | written))
            steps, walls, values, occ = steps[keep], walls[keep], values[keep], occ[keep]
            refs, counts, lows, highs = _kept(keep, refs, counts, lows, highs)
            extras = _kept_extras(extras, keep, n)
            n = len(steps)
            if n == 0:
                return
        self.counts["values_in"] += int(n if counts is None else counts.sum())
        columns = {
            "step": steps,
            "occ": occ.astype(np.int64),
            "who": np.full(n, who, np.int64),
            "wall": walls.astype(np.float64, copy=False),
            "part": values.astype(np.float64, copy=False),
            "count": np.ones(n, np.int64) if counts is None else counts,
            "lo": values if lows is None else lows,
            "hi": values if highs is None else highs,
            "arrival": np.full(n, now),
            "owner": np.full(n, owner_number, np.int64),
            "ref": np.full(n, -1, np.int64) if refs is None else refs,
        }
        gather.rows.add(**columns)
        if extras is not None:  # the further parts of exact partial sums, as rows that count no rank
            rows_of, flat = extras
            if flat.size:
                gather.rows.add(
                    step=steps[rows_of],
                    occ=occ[rows_of].astype(np.int64),
                    who=np.full(flat.size, who, np.int64),
                    wall=walls[rows_of].astype(np.float64),
                    part=flat,
                    count=np.zeros(flat.size, np.int64),
                    lo=np.full(flat.size, np.inf),
                    hi=np.full(flat.size, -np.inf),
                    arrival=np.full(flat.size, now),
                    owner=np.full(flat.size, owner_number, np.int64),
                    ref=np.full(flat.size, -1, np.int64),
                )
                n += flat.size
        owner.rows += n
        self._held[owner.client][owner.seq] += n
        self._marks[(run, owner.mark)][owner.mid] += n

    def _add_histogram(
        self, member: Member, run: RunLog, tag: str, owner: int, record: list, drops: Drops, now: float
    ) -> None:
        options = record_options(record)
        try:
            if record[KIND] == RecordKind.PARTIAL_HISTOGRAM:
                partial = _histogram_partial(record)
            else:
                partial = HistogramPartial.of_values(
                    record[VALUE], options.get("bins", "tensorflow"), options.get("max_bins")
                )
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("cannot take a histogram %r at step %d: %r", tag, record[STEP], exc)
            drops.add(DropReason.ENCODE_ERROR, 1, self._owners[owner].client)
            return
        gather = self._gather(member, run, tag, "merge", True)
        ref = self._next_owner  # any number not in use
        self._next_owner += 1
        gather.payloads[ref] = partial
        self._add(
            member,
            run,
            tag,
            "merge",
            True,
            owner,
            np.array([record[STEP]], np.int64),
            np.array([float(record[WALL_TIME])]),
            np.zeros(1),
            np.array([ref], np.int64),
            drops,
            now,
            counts=np.array([partial.ranks], np.int64),
        )

    def _add_partial_columns(
        self, member: Member, run: RunLog, tag: str, owner: int, record: list, drops: Drops, now: float
    ) -> None:
        """A node's partial aggregates as columns (a PARTIAL_SCALARS record)."""
        value, options = record[VALUE], record_options(record)
        try:
            mode = str(options.get("reduce", member.mode))
            steps = _column(value, "step", "i")
            n = steps.size
            walls, sums, lows, highs = (_column(value, name, "f", n) for name in ("wall", "sum", "min", "max"))
            counts = _column(value, "count", "i", n)
            extra_of = _column(value, "extra_of", "i") if "extra_of" in value else np.empty(0, np.int64)
            extra = _column(value, "extra", "f", extra_of.size) if extra_of.size else np.empty(0)
            if mode not in _SCALAR_MODES or (counts < 1).any() or ((extra_of < 0) | (extra_of >= n)).any():
                raise ValueError(f"partials of mode {mode!r}, counts or parts out of range")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("refusing partial values %r: %r", tag, exc)
            drops.add(DropReason.MALFORMED_RECORD, 1, self._owners[owner].client)
            return
        self._add(
            member,
            run,
            tag,
            mode,
            False,
            owner,
            steps,
            walls,
            sums,
            None,
            drops,
            now,
            counts=counts,
            lows=lows,
            highs=highs,
            extras=(extra_of, extra),
        )

    # -- values out --------------------------------------------------------------------------------

    def release(self, drops: Drops, force: bool = False) -> list[Released]:
        """The entries ready to be written (all of them with `force`), gather by gather."""
        now = self._clock()
        check_all = force or now >= self._next_check
        if check_all:  # ranks may have fallen silent since
            self._next_check = now + min(0.25, self.wait_s / 4)
        out = []
        for gather in list(self._gathers.values()):
            if not gather.rows.size or not (gather.dirty or check_all or now >= gather.due):
                continue
            gather.dirty = False
            released = self._release(gather, now, force)
            if released is not None:
                out.append(released)
        return out

    def next_wake(self) -> float | None:
        """When a waiting entry may be due (monotonic clock), None if nothing waits."""
        due = [gather.due for gather in self._gathers.values() if gather.rows.size]
        return min(self._next_check, *due) if due else None

    def expected(self, gather: _Gather, now: float) -> set[int]:
        """Who a gather's next entries wait for."""
        state = self._jobs[gather.job]
        members = set(state.open.get(gather.root, ()))
        if gather.settled:
            members &= gather.participants
        return {who for who in members if not self._silent(state.client_of.get(who), now)}

    def _silent(self, client: bytes | None, now: float) -> bool:
        if client is None:
            return True
        if now < self._paused_until:
            return False
        heard = self._heard(client) if self._heard is not None else self._last_value.get(client)
        return heard is None or now - heard > self.silent_s

    def _release(self, gather: _Gather, now: float, force: bool) -> Released | None:
        rows = gather.rows.all()
        expected = self.expected(gather, now)
        low = gather.passed_all(expected)
        if not gather.settled and not self._jobs[gather.job].all_joined(gather.root):
            low = None  # a rank (or node) of the job has not opened its writer yet: wait for it
        order = np.lexsort((rows["who"], rows["occ"], rows["step"]))
        steps, occs = rows["step"][order], rows["occ"][order]
        new_entry = np.concatenate([[True], (steps[1:] != steps[:-1]) | (occs[1:] != occs[:-1])])
        starts = np.flatnonzero(new_entry)
        entry_steps, entry_occs = steps[starts], occs[starts]
        if low is None:
            complete = np.zeros(len(starts), bool)
        else:
            complete = (entry_steps < low[0]) | ((entry_steps == low[0]) & (entry_occs < low[1]))
        due = np.minimum.reduceat(rows["arrival"][order], starts) + self.wait_s <= now
        ready = complete | (due & (now >= self._paused_until)) | force
        blocked = np.flatnonzero(~ready)
        entries = len(starts) if not blocked.size else int(blocked[0])
        if entries == 0:
            return None
        cut = int(starts[entries]) if entries < len(starts) else len(order)
        taken, kept = order[:cut], order[cut:]
        gather.due = float(rows["arrival"][kept].min()) + self.wait_s if kept.size else math.inf
        gather.rows.keep(rows, kept)
        columns = {name: column[taken] for name, column in rows.items()}
        bounds = starts[:entries]
        ranks = np.add.reduceat(columns["count"], bounds)
        released = Released(
            gather,
            columns["step"][bounds],
            columns["occ"][bounds],
            np.maximum.reduceat(columns["wall"], bounds),
            ranks,
            np.minimum.reduceat(columns["lo"], bounds),
            np.maximum.reduceat(columns["hi"], bounds),
            columns["part"],
            np.append(bounds, cut),
            [],
            self._owners[int(columns["owner"][0])].client,
            len(expected),
        )
        edges = np.append(bounds, cut).tolist()
        if gather.histogram:
            refs = columns["ref"].tolist()
            for start, stop in itertools.pairwise(edges):
                released.histograms.append(merge_histograms([gather.payloads.pop(r) for r in refs[start:stop]]))
        gather.released = (int(released.steps[-1]), int(released.occs[-1]))
        gather.settled = True
        self._account(columns["owner"], released, complete[:entries])
        return released

    def _account(self, owners: np.ndarray, released: Released, complete: np.ndarray) -> None:
        """Counts what was released and lets go of what its messages held."""
        self.counts["values_out"] += len(released.steps)
        self.counts["partial"] += int((~complete).sum())
        self.by_ranks.update(released.ranks.tolist())
        numbers, rows = np.unique(owners, return_counts=True)
        for number, count in zip(numbers.tolist(), rows.tolist()):
            owner = self._owners[number]
            owner.rows -= count
            held = self._held.get(owner.client)
            if held is not None:
                held[owner.seq] -= count
                if held[owner.seq] <= 0:
                    del held[owner.seq]
            key = (owner.run, owner.mark)
            marks = self._marks[key]
            marks[owner.mid] -= count
            if marks[owner.mid] <= 0:
                del marks[owner.mid]
            if owner.rows <= 0:
                del self._owners[number]
            self._update_mark(key)

    def _update_mark(self, key: tuple[RunLog, bytes]) -> None:
        """The run's delivery mark of a client's combined records: every message before the first
        one still held (see `history`)."""
        run, mark = key
        held = self._marks.get(key)
        upto = (min(held) - 1) if held else self._taken_mid.get(key, 0)
        if not held:
            self._marks.pop(key, None)
        if upto > run.delivered.get(mark, 0):
            run.delivered[mark] = upto

    # -- acknowledgements and status ---------------------------------------------------------------

    def held_floor(self, client: bytes) -> int | None:
        """The lowest sequence number of `client` with a value still waiting here."""
        held = self._held.get(client)
        return min(held) if held else None

    def status(self) -> dict[str, Any]:
        """Counts and, per job, its ranks: `open` (a writer open), `silent`, `gone`."""
        now = self._clock()
        jobs = {}
        for job, state in self._jobs.items():
            ranks: dict[str, str] = {}
            for opened in state.open.values():
                for who in opened:
                    ranks[str(who)] = "silent" if self._silent(state.client_of.get(who), now) else "open"
            for who in state.gone:
                ranks.setdefault(str(who), "gone")
            jobs[job] = {"ranks": dict(sorted(ranks.items(), key=lambda item: int(item[0])))}
        waiting = sum(gather.rows.size for gather in self._gathers.values())
        return {
            "wait_s": self.wait_s,
            "values_in": self.counts["values_in"],
            "values_written": self.counts["values_out"],
            "values_partial": self.counts["partial"],
            "values_late": self.counts["late"],
            "values_duplicate": self.counts["duplicate"],
            "values_by_ranks": {str(k): v for k, v in sorted(self.by_ranks.items())},
            "waiting": waiting,
            "jobs": jobs,
        }


def _plain_scalar(record: list) -> bool:
    """Whether a plain scalar record's step, wall time and value are numbers of the right types."""
    step, wall, value = record[STEP], record[WALL_TIME], record[VALUE]
    return (
        type(step) is int
        and INT64_MIN <= step <= INT64_MAX
        and type(wall) in _NUMBER_TYPES
        and type(value) in _NUMBER_TYPES
    )


def _histogram_partial(record: list) -> HistogramPartial:
    """The histogram partial a node forwarded (a PARTIAL_HISTOGRAM record)."""
    value, options = record[VALUE], record[OPTIONS] if len(record) > OPTIONS else {}
    partial = HistogramPartial(
        options["bins"],
        options.get("max_bins"),
        float(options["min"]),
        float(options["max"]),
        int(options["num"]),
        [float(x) for x in options["sum"]],
        [float(x) for x in options["sum_squares"]],
        ranks=int(options["ranks"]),
    )
    if "counts" in value:
        partial.counts = np.asarray(value["counts"], np.int64)
        partial.edges = np.asarray(value["edges"], np.float64)
        if partial.edges.shape != (partial.counts.size + 1,):
            raise ValueError("histogram counts and edges do not match")
    else:
        partial.values = np.asarray(value["values"], np.float64)
    if partial.ranks < 1 or math.isnan(partial.num):
        raise ValueError("a histogram partial of no rank")
    return partial


def partial_histograms(released: Released) -> tuple[list[list[Any]], list[np.ndarray]]:
    """Released histogram entries as PARTIAL_HISTOGRAM records for a root daemon
    (`logger_daemon.forward`): the record lists (array indices into the second item)."""
    gather = released.gather
    records: list[list[Any]] = []
    arrays: list[np.ndarray] = []
    steps, walls = released.steps.tolist(), released.walls.tolist()
    for step, wall, histogram in zip(steps, walls, released.histograms):
        options: dict[str, Any] = {
            "bins": histogram.bins if not isinstance(histogram.bins, np.ndarray) else histogram.bins.tolist(),
            "max_bins": histogram.max_bins,
            "min": histogram.minimum,
            "max": histogram.maximum,
            "num": histogram.num,
            "sum": histogram.sum_parts,
            "sum_squares": histogram.sum_squares_parts,
            "ranks": histogram.ranks,
            "reduce": "merge",
        }
        if histogram.counts is not None and histogram.edges is not None:
            value: dict[str, Any] = {"counts": len(arrays), "edges": len(arrays) + 1}
            arrays += [histogram.counts, histogram.edges]
        else:
            assert histogram.values is not None
            value = {"values": len(arrays)}
            arrays.append(histogram.values)
        records.append([RecordKind.PARTIAL_HISTOGRAM, 0, "", gather.tag, step, wall, value, options])
    return records, arrays


def partial_columns(released: Released) -> dict[str, np.ndarray]:
    """Released scalar entries as a PARTIAL_SCALARS record's columns: per entry its step, wall
    time, rank count, min, max and rounded sum; the sums' further parts (`extra`, of entry
    `extra_of`) make each exact."""
    sums, extra_of, extra = exact_parts(released.part_values, released.part_edges)
    return {
        "step": released.steps,
        "wall": released.walls,
        "count": released.ranks.astype(np.int64),
        "sum": sums,
        "min": released.lows,
        "max": released.highs,
        "extra_of": extra_of,
        "extra": extra,
    }


def _column(value: dict[str, Any], name: str, kind: str, size: int | None = None) -> np.ndarray:
    """A column of a PARTIAL_SCALARS record, checked: one dimension, numbers of `kind` ("i", "f")."""
    column = value[name]
    if not isinstance(column, np.ndarray) or column.ndim != 1 or column.dtype.kind != kind:
        raise ValueError(f"{name}: not a 1-d {kind} array")
    if size is not None and column.size != size:
        raise ValueError(f"{name}: {column.size} values for {size} entries")
    return column.astype(np.int64 if kind == "i" else np.float64, copy=False)


def _kept_extras(
    extras: tuple[np.ndarray, np.ndarray] | None, keep: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The further sum parts of the entries at `keep` (of `size`), renumbered."""
    if extras is None:
        return None
    number = np.full(size, -1, np.int64)
    number[keep] = np.arange(keep.size)
    renumbered = number[extras[0]]
    kept = renumbered >= 0
    return renumbered[kept], extras[1][kept]


def _kept(keep: np.ndarray, *columns: np.ndarray | None) -> tuple[np.ndarray | None, ...]:
    """The rows at `keep` of each column given (a column that is None stays None)."""
    return tuple(None if column is None else column[keep] for column in columns)
