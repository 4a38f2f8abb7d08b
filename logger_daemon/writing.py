"""The pipeline's last stage: each (run, tag)'s records reduced, put in step order, encoded and
appended to the run's event file.

A (run, tag) never goes back in steps: TensorBoard would discard the newer points it holds. So the
records of a cycle are sorted by step (equal steps keep their arrival order), and a step older
than one already written for that tag is dropped and counted. Plain scalars are ordered and
encoded on whole numpy columns; anything else one record at a time.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import numpy as np

from logger_client.protocol import (
    KIND,
    STEP,
    DropReason,
    ProtocolError,
    Record,
    RecordKind,
    check_record,
)
from logger_daemon import summaries
from logger_daemon.encoders import ENCODERS
from logger_daemon.intake import Group
from logger_daemon.reduce import reduce_records
from logger_daemon.runs import RunLog
from logger_daemon.stats import Drops

log = logging.getLogger("logger_daemon")

_SCALAR = RecordKind.SCALAR

_clean_tag = lru_cache(maxsize=65536)(summaries.clean_tag)

Groups = dict[tuple[RunLog, str], Group]


def write_groups(groups: Groups, drops: Drops) -> tuple[int, int, set[RunLog]]:
    """Writes every group to its run's event file; returns (records written, bytes written, the
    runs written to). Files are left unflushed: the caller hands them to the OS once per cycle."""
    touched: set[RunLog] = set()
    written = nbytes = 0
    for (run, tag), group in reduce_records(groups).items():
        try:
            file = run.event_file()
        except (OSError, ValueError) as exc:
            log.error("cannot create an event file in %s: %s", run.path, exc)
            for client, count in group.all_owners():
                drops.add(DropReason.IO_ERROR, count, client)
            continue
        before = file.bytes_written
        columns = None if group.mixed else group.scalar_columns()
        if columns is None:
            written += _write_each(run, tag, *group.as_records(tag), drops)
        else:
            written += _write_scalars(run, tag, *columns, drops)
        nbytes += file.bytes_written - before
        touched.add(run)
    return written, nbytes, touched


def _write_scalars(
    run: RunLog,
    tag: str,
    steps: np.ndarray,
    wall_times: np.ndarray,
    values: np.ndarray,
    owners: list[tuple[bytes, int]],
    drops: Drops,
) -> int:
    """Plain scalars of one (run, tag), as columns: ordered and encoded on whole columns."""
    order = np.argsort(steps, kind="stable")  # equal steps keep their arrival order
    steps, wall_times, values = steps[order], wall_times[order], values[order]
    first = run.first_accepted(tag, steps)
    if first:
        owner_of = np.repeat(np.arange(len(owners)), [count for _, count in owners])
        late = np.bincount(owner_of[order[:first]], minlength=len(owners))
        for (client, _), count in zip(owners, late.tolist()):
            if count:
                drops.add(DropReason.STEP_OUT_OF_ORDER, count, client)
    if first == len(steps):
        return 0
    run.event_file().write_scalars(_clean_tag(tag), wall_times[first:], steps[first:], values[first:])
    return len(steps) - first


def _write_each(run: RunLog, tag: str, records: list[Record], owners: list[tuple[bytes, int]], drops: Drops) -> int:
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
    written = 0
    for step, client, record in checked:
        if not run.accepts(tag, step):
            drops.add(DropReason.STEP_OUT_OF_ORDER, 1, client)
            continue
        try:
            events = ENCODERS[record[KIND]](record, run.path)
        except OSError as exc:  # files an encoder writes beside the events (the projector's)
            log.error("cannot write the files of a %s record %r: %s", RecordKind(record[KIND]).name, tag, exc)
            drops.add(DropReason.IO_ERROR, 1, client)
            continue
        except Exception as exc:  # any value a peer sent that an encoder rejects (or no encoder)
            log.warning("cannot encode a %s record %r at step %d: %r", RecordKind(record[KIND]).name, tag, step, exc)
            drops.add(DropReason.ENCODE_ERROR, 1, client)
            continue
        for event in events:
            file.write(event)
        written += 1
    return written


def _first(item: tuple) -> Any:
    return item[0]
