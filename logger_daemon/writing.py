"""The pipeline's last stage: each (run, tag)'s records reduced, put in step order, encoded and
appended to the run's event file.

A (run, tag) never goes back in steps: TensorBoard would discard the newer points it holds. So the
records of a cycle are sorted by step (equal steps keep their arrival order), and a step older
than one already written for that tag is dropped and counted. Plain scalars are ordered and
encoded on whole numpy columns; anything else one record at a time. A record the event file
refuses (the disk refuses writes and the daemon holds all it may, see `event_file`) is counted as
`io_error` to its client.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import numpy as np

from logger_client.protocol import (
    KIND,
    STEP,
    WALL_TIME,
    DropReason,
    ProtocolError,
    Record,
    RecordKind,
    check_record,
    record_options,
)
from logger_daemon import summaries
from logger_daemon.encode_pool import Encoded, EncodePool
from logger_daemon.encoders import Encoder
from logger_daemon.intake import Group
from logger_daemon.reduce import REDUCED_HISTOGRAM, ranks_notes, reduce_records
from logger_daemon.runs import RunLog
from logger_daemon.stats import Drops

log = logging.getLogger("logger_daemon")

_SCALAR = RecordKind.SCALAR
_TEXT = RecordKind.TEXT
#: Kinds whose summaries carry the tag cleaned as tensorboardX cleans it.
_CLEANED_KINDS = frozenset(
    [RecordKind.SCALAR, RecordKind.HISTOGRAM, RecordKind.IMAGE, RecordKind.IMAGES, REDUCED_HISTOGRAM]
)

_clean_tag = lru_cache(maxsize=65536)(summaries.clean_tag)

Groups = dict[tuple[RunLog, str], Group]


def written_tag(kind: int, tag: str, options: dict[str, Any]) -> str:
    """The tag a record's summary carries in the file (tensorboardX cleans most tags)."""
    if kind == _SCALAR and options.get("new_style"):
        return tag
    if kind == _TEXT:
        return tag + "/text_summary"
    if kind in _CLEANED_KINDS:
        return _clean_tag(tag)
    return tag


class Written:
    """What writing a cycle's groups did: the runs touched, and records that were on disk already
    (sent again after a daemon restart) and so were not written twice. Records and bytes written
    are counted as files hand them to the OS (`event_file.Backlog`)."""

    def __init__(self) -> None:
        self.runs: set[RunLog] = set()
        self.duplicates = 0


def write_groups(groups: Groups, drops: Drops, pool: EncodePool | None = None) -> Written:
    """Writes every group to its run's event file, the heavy records encoded ahead on `pool`.
    Files are left unflushed: the caller hands them to the OS once per cycle."""
    out = Written()
    reduced = reduce_records(groups)
    heavy = ((run.path, group.records) for (run, _), group in reduced.items() if group.mixed)
    encoded = Encoded() if pool is None else pool.start(heavy)
    try:
        _write_groups(reduced, drops, encoded, out)
    finally:
        encoded.finish()
    return out


def _write_groups(groups: Groups, drops: Drops, encode: Encoder, out: Written) -> None:
    for (run, tag), group in groups.items():
        try:
            run.event_file()
        except (OSError, ValueError) as exc:
            log.error("cannot create an event file in %s: %s", run.path, exc)
            for client, count in group.all_owners():
                drops.add(DropReason.IO_ERROR, count, client)
            continue
        columns = None if group.mixed else group.scalar_columns()
        if columns is None:
            _write_each(run, tag, *group.as_records(tag), drops, out, encode)
        else:
            _write_scalars(run, tag, *columns, drops, out, group.rank_counts())
        out.runs.add(run)


def _write_scalars(
    run: RunLog,
    tag: str,
    steps: np.ndarray,
    wall_times: np.ndarray,
    values: np.ndarray,
    owners: list[tuple[bytes, int]],
    drops: Drops,
    out: Written,
    ranks: np.ndarray | None = None,
) -> None:
    """Plain scalars of one (run, tag), as columns: ordered and encoded on whole columns. `ranks`:
    how many ranks went into each value, where it combines several (0 where not)."""
    written = _clean_tag(tag)
    run.seed(tag, written)
    order = np.argsort(steps, kind="stable")  # equal steps keep their arrival order
    owner_of = np.repeat(np.arange(len(owners)), [count for _, count in owners])[order]
    steps, wall_times, values = steps[order], wall_times[order], values[order]
    if ranks is not None:
        ranks = ranks[order]
    if run.unmarked:  # right after a daemon restart: rows the old daemon wrote, sent again
        fresh = np.array([(written, s, w) not in run.unmarked for s, w in zip(steps.tolist(), wall_times.tolist())])
        out.duplicates += int(len(fresh) - fresh.sum())
        steps, wall_times, values, owner_of = steps[fresh], wall_times[fresh], values[fresh], owner_of[fresh]
        if ranks is not None:
            ranks = ranks[fresh]
    for index in np.unique(owner_of).tolist() if run.fresh else ():
        client = owners[index][0]
        first_row = int(np.flatnonzero(owner_of == index)[0])  # the client's lowest step
        run.restart_if_resumed(client, tag, int(steps[first_row]), float(wall_times[first_row]))
    first = run.first_accepted(tag, steps)
    _count_rows(drops, DropReason.STEP_OUT_OF_ORDER, owners, owner_of[:first])
    if first == len(steps):
        return
    clients = np.array([client for client, _ in owners], dtype=object)[owner_of[first:]]
    notes = ranks_notes(ranks[first:]) if ranks is not None else None
    appended = run.event_file().write_scalars(
        written, wall_times[first:], steps[first:], values[first:], clients, *(notes or ())
    )
    # Rows not appended: the disk refuses writes and the daemon holds all it may.
    _count_rows(drops, DropReason.IO_ERROR, owners, owner_of[first + appended :])


def _count_rows(drops: Drops, reason: DropReason, owners: list[tuple[bytes, int]], owner_of: np.ndarray) -> None:
    """Counts the rows `owner_of` (indices into `owners`) as dropped, each to its client."""
    if len(owner_of):
        for (client, _), count in zip(owners, np.bincount(owner_of, minlength=len(owners)).tolist()):
            if count:
                drops.add(reason, count, client)


def _write_each(
    run: RunLog,
    tag: str,
    records: list[Record],
    owners: list[tuple[bytes, int]],
    drops: Drops,
    out: Written,
    encode: Encoder,
) -> None:
    """Any records of one (run, tag), one at a time, in step order."""
    clients = [client for client, count in owners for _ in range(count)]
    checked = []
    for client, record in zip(clients, records):
        if len(record) == 7 and record[KIND] == _SCALAR:  # skipped the full check on the way in
            try:
                check_record(record, 0)
            except ProtocolError as exc:
                drops.add(exc.reason, 1, client)
                continue
        checked.append((record[STEP], client, record))
    checked.sort(key=_first)  # stable: equal steps keep their arrival order
    file = run.event_file()
    for step, client, record in checked:
        written = written_tag(record[KIND], tag, record_options(record))
        run.seed(tag, written)
        if run.unmarked and (written, step, record[WALL_TIME]) in run.unmarked:
            out.duplicates += 1  # the old daemon wrote it before it died; sent again
            continue
        if run.fresh:
            run.restart_if_resumed(client, tag, step, float(record[WALL_TIME]))
        if not run.accepts(tag, step):
            drops.add(DropReason.STEP_OUT_OF_ORDER, 1, client)
            continue
        try:
            events = encode(record, run.path)
        except OSError as exc:  # files an encoder writes beside the events (the projector's)
            log.error("cannot write the files of a %s record %r: %s", RecordKind(record[KIND]).name, tag, exc)
            drops.add(DropReason.IO_ERROR, 1, client)
            continue
        except Exception as exc:  # any value a peer sent that an encoder rejects (or no encoder)
            log.warning("cannot encode a %s record %r at step %d: %r", RecordKind(record[KIND]).name, tag, step, exc)
            drops.add(DropReason.ENCODE_ERROR, 1, client)
            continue
        if not file.write_record(events, client):  # the disk refuses writes and the daemon holds all it may
            drops.add(DropReason.IO_ERROR, 1, client)


def _first(item: tuple) -> Any:
    return item[0]
