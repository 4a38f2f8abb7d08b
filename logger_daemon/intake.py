"""The pipeline's first stage: check a client message's records and group them by (writer, run, tag).

Nothing here touches a file. A message becomes a list of steps in arrival order: `Parts` (its data
records grouped by (writer, run, tag)) and `OpenWriter` actions between them, so that the stage
that writes can apply a writer's open (and its purge) exactly after what came before it.

Records stay the lists msgpack decoded: at a million scalars a second an object per record would
be the bottleneck. Packed scalar rows (see `protocol.SCALAR_ROW`) are read as numpy columns by
the keys their client defined, with no object per row at all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from logger_client.protocol import (
    ARRAY_KINDS,
    ARRAY_MAP_KINDS,
    KIND,
    MAX_NAME_CHARS,
    RUN,
    SCALAR_ROW,
    SCALAR_ROW_DTYPE,
    STEP,
    TAG,
    VALUE,
    WALL_TIME,
    WRITER,
    DropReason,
    ProtocolError,
    Record,
    RecordKind,
    check_record,
    record_count,
)
from logger_daemon.stats import Drops

_SCALAR = RecordKind.SCALAR
_OPEN = RecordKind.OPEN
_CLOSE = RecordKind.CLOSE
_KEY = RecordKind.KEY
#: A bin of fewer rows than this is read row by row (a numpy call costs microseconds).
_FEW_ROWS = 16
_INT_ONLY = {int}
_NUMBER_TYPES = {int, float}


@dataclass
class Work:
    """One client message's raw records and arrays, or a flush, a hello or a goodbye."""

    client: bytes
    #: The message's sequence number, acknowledged once its records are written (0: none).
    seq: int
    records: list[Any] = field(default_factory=list)
    arrays: list[np.ndarray] = field(default_factory=list)
    flush: bool = False
    client_gone: bool = False
    #: Data records in `records`, a bin of packed scalar rows counted row by row.
    count: int = 0
    #: The message's id: kept by the client across daemons, so a record written before is known.
    mid: int = 0
    #: The client's own id, the same on each of its connections (`client` is the connection's).
    cid: bytes = b""

    @classmethod
    def of_records(
        cls,
        client: bytes,
        seq: int,
        records: list[Any],
        arrays: list[np.ndarray],
        mid: int = 0,
        cid: bytes | None = None,
    ) -> Work:
        """The work of a RECORDS message from connection `client` of the client `cid`."""
        return cls(client, seq, records, arrays, count=record_count(records), mid=mid, cid=cid or client)

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.arrays)


@dataclass
class Group:
    """What a cycle writes to one (run, tag), in arrival order: records (lists, as msgpack decoded
    them) and plain scalars as columns (from packed rows), each part with the client it came from."""

    records: list[Record] = field(default_factory=list)
    owners: list[tuple[bytes, int]] = field(default_factory=list)  # (client, count) per part of `records`
    columns: list[tuple[bytes, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    mixed: bool = False  # holds more than plain scalars: written record by record

    def count(self) -> int:
        return len(self.records) + sum(len(steps) for _, steps, _, _ in self.columns)

    def take(self, part: Group, client: bytes) -> None:
        """Adds one message's part for this (run, tag), sent by `client`."""
        if part.records:
            self.records.extend(part.records)
            self.owners.append((client, len(part.records)))
        self.columns.extend(part.columns)
        self.mixed |= part.mixed

    def rank_counts(self) -> np.ndarray | None:
        """How many ranks went into each value of `scalar_columns()` (0: not a combined value), or
        None when none is (see `logger_daemon.reduce`)."""
        return None

    def all_owners(self) -> list[tuple[bytes, int]]:
        """(client, count) of the records, then of the columns."""
        return self.owners + [(client, len(steps)) for client, steps, _, _ in self.columns]

    def as_records(self, tag: str) -> tuple[list[Record], list[tuple[bytes, int]]]:
        """Everything as records, columns turned into lists, with their owners in the same order."""
        records = list(self.records)
        for _, steps, wall_times, values in self.columns:
            records.extend(
                [_SCALAR, 0, "", tag, step, wall_time, value]
                for step, wall_time, value in zip(steps.tolist(), wall_times.tolist(), values.tolist())
            )
        return records, self.all_owners()

    def scalar_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[bytes, int]]] | None:
        """(steps, wall times, values, owners) of plain scalars; None if the records' fields are
        not all plain numbers (then they are checked one by one)."""
        steps: list = [r[STEP] for r in self.records]
        wall_times: list = [r[WALL_TIME] for r in self.records]
        values: list = [r[VALUE] for r in self.records]
        # One C-level pass per column: numpy would quietly take bools (and more) as numbers.
        if (
            not set(map(type, steps)) <= _INT_ONLY
            or not set(map(type, wall_times)) <= _NUMBER_TYPES
            or not set(map(type, values)) <= _NUMBER_TYPES
        ):
            return None
        listed_steps = np.array(steps, dtype=None if steps else np.int64)
        if listed_steps.dtype != np.int64:  # beyond 64 bits
            return None
        return (
            np.concatenate([listed_steps] + [part[1] for part in self.columns]),
            np.concatenate([np.array(wall_times, dtype=np.float64)] + [part[2] for part in self.columns]),
            np.concatenate([np.array(values, dtype=np.float64)] + [part[3] for part in self.columns]),
            self.all_owners(),
        )


#: One message's data records between two opens, by (writer id, run name, tag).
Parts = dict[tuple[int, str, str], Group]


@dataclass
class OpenWriter:
    """A checked OPEN record: the client's writer `writer` writes to `options["logdir"]`."""

    client: bytes
    writer: int
    options: dict[str, Any]
    wall_time: float


@dataclass
class Collected:
    """What one message asks for: `steps` in order, then the writers it closes."""

    steps: list[Parts | OpenWriter] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    received: int = 0


class Intake:
    """Checks records and groups them; keeps what each client's scalar keys name."""

    def __init__(self) -> None:
        # Per client: what the keys of its packed scalar rows name, (writer, run, tag).
        self._scalar_keys: defaultdict[bytes, dict[int, tuple[int, str, str]]] = defaultdict(dict)

    def forget(self, client: bytes) -> None:
        """The client is gone: its keys go with it."""
        self._scalar_keys.pop(client, None)

    def collect(self, work: Work, drops: Drops) -> Collected:
        """Checks a message's records and groups its data records; refusals go to `drops`."""
        client = work.client
        out = Collected()
        # Keyed by the raw (writer, run, tag): runs are looked up once per key, not per record.
        parts: defaultdict[tuple, Group] = defaultdict(Group)
        for record in work.records:
            if type(record) is bytes:
                out.received += self._collect_rows(client, record, parts, drops)
                continue
            # Plain scalars as lists are only shape-checked here; their fields are checked per
            # group, on whole columns, when they are encoded.
            if type(record) is list and len(record) == 7 and record[KIND] == _SCALAR:
                out.received += 1
                try:
                    parts[(record[WRITER], record[RUN], record[TAG])].records.append(record)
                except TypeError:  # an unhashable writer, run or tag
                    drops.add(DropReason.MALFORMED_RECORD, 1, client)
                continue
            try:
                check_record(record, len(work.arrays))
            except ProtocolError as exc:
                drops.add(exc.reason, 1, client)
                out.received += 1
                continue
            kind = record[KIND]
            if kind == _OPEN:
                self._end_part(client, parts, out, drops)
                out.steps.append(OpenWriter(client, record[WRITER], record[VALUE], float(record[WALL_TIME])))
            elif kind == _CLOSE:
                out.closed.append(record[WRITER])
            elif kind == _KEY:
                self._scalar_keys[client][record[VALUE]] = (record[WRITER], record[RUN], record[TAG])
            else:
                out.received += 1
                if kind in ARRAY_KINDS:
                    record[VALUE] = work.arrays[record[VALUE]]
                elif kind in ARRAY_MAP_KINDS:
                    record[VALUE] = {role: work.arrays[index] for role, index in record[VALUE].items()}
                group = parts[(record[WRITER], record[RUN], record[TAG])]
                group.records.append(record)
                group.mixed = True
        self._end_part(client, parts, out, drops)
        return out

    def _collect_rows(self, client: bytes, rows: bytes, parts: defaultdict, drops: Drops) -> int:
        """Adds a bin of packed scalar rows to `parts` as columns, one part per key; returns how
        many rows it held. No object per row: the rows stay in numpy from here to the encoder."""
        count, extra = divmod(len(rows), SCALAR_ROW.size)
        if extra:
            drops.add(DropReason.MALFORMED_RECORD, count + 1, client)
            return count + 1
        names = self._scalar_keys.get(client, {})
        if count < _FEW_ROWS:  # numpy's calls would cost more than these rows: lists, as msgpack gives
            unknown = 0
            for key, step, wall_time, value in SCALAR_ROW.iter_unpack(rows):
                name = names.get(key)
                if name is None:
                    unknown += 1
                else:
                    parts[name].records.append([_SCALAR, *name, step, wall_time, value])
            if unknown:
                drops.add(DropReason.UNKNOWN_SCALAR_KEY, unknown, client)
            return count
        table = np.frombuffer(rows, dtype=SCALAR_ROW_DTYPE)
        keys = table["key"]
        if (keys == keys[0]).all():  # one tag per batch: no sort needed
            split = [table]
        else:
            table = table[np.argsort(keys, kind="stable")]  # arrival order kept within a key
            split = np.split(table, np.flatnonzero(np.diff(table["key"])) + 1)
        for part in split:
            name = names.get(int(part["key"][0]))
            if name is None:
                drops.add(DropReason.UNKNOWN_SCALAR_KEY, len(part), client)
                continue
            parts[name].columns.append((client, part["step"], part["wall_time"], part["value"]))
        return count

    @staticmethod
    def _end_part(client: bytes, parts: defaultdict, out: Collected, drops: Drops) -> None:
        """Moves the groups gathered so far to `out` as one `Parts` step, refusing bad keys."""
        checked: Parts = {}
        for key, group in parts.items():
            writer, run_name, tag = key
            if (
                type(writer) is not int
                or type(run_name) is not str
                or type(tag) is not str
                or len(run_name) > MAX_NAME_CHARS
                or len(tag) > MAX_NAME_CHARS
            ):
                drops.add(DropReason.MALFORMED_RECORD, group.count(), client)
            else:
                checked[key] = group
        if checked:
            out.steps.append(checked)
        parts.clear()
