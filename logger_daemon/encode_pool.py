"""Encoding a cycle's heavy records on a small pool of threads, ahead of the write.

Histograms, PNGs, GIFs and WAVs are most of what the daemon spends on arrays, and the work is
numpy, zlib and the `_histogram` extension, which release the GIL: threads run it side by side
in one process, on memory they already share (a client's arena is mapped once). So before a
cycle is written, `EncodePool.start` hands the records of the pooled kinds to the pool, in the
order they will be written; the writer (`writing._write_each`) still goes through every (run, tag)
in step order on the pipeline thread, and takes each record's events from `Encoded` as it comes
to it, waiting for that one if it is not done. What the pool adds is only time: the order of the
events in a file, the drops (an encoder's exception is raised where the writer asks for the
events) and the acknowledgement after the write are the writer's, as without a pool.

With one worker nothing is handed over: the writer encodes inline, as it always did.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from logger_client.protocol import KIND, STEP, VALUE, Record, RecordKind
from logger_daemon.encoders import ENCODERS

__all__ = ["POOLED_KINDS", "EncodePool", "Encoded", "default_workers"]

#: Kinds whose encoders are pure (record in, Events out: no file beside the events, no shared
#: state) and heavy enough to be worth a hand-over.
POOLED_KINDS = frozenset(
    [
        RecordKind.HISTOGRAM,
        RecordKind.IMAGE,
        RecordKind.IMAGES,
        RecordKind.IMAGE_WITH_BOXES,
        RecordKind.AUDIO,
        RecordKind.VIDEO,
        RecordKind.PR_CURVE,
    ]
)
#: Records with fewer array bytes are encoded inline: a hand-over costs tens of microseconds.
MIN_POOLED_BYTES = 64 * 1024


def default_workers() -> int:
    """Half the cores this process may run on, at least one: the other half is the training's."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


def _array_bytes(record: Record) -> int:
    value = record[VALUE]
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(array.nbytes for array in value.values() if isinstance(array, np.ndarray))
    return 0


def _step(record: Record) -> int:
    step = record[STEP]
    return step if type(step) is int else 0


class Encoded:
    """The events of the records handed to the pool, by record; any other record is encoded
    when asked. Called as an encoder: `encoded(record, run_path)`."""

    def __init__(self, futures: dict[int, tuple[Record, Future[list[bytes]]]] | None = None) -> None:
        # Keyed by id(record), with the record kept alive so that its id stays its own.
        self._futures = futures or {}
        #: How many records were handed to the pool.
        self.handed_over = len(self._futures)

    def __call__(self, record: Record, run_path: str) -> list[bytes]:
        entry = self._futures.pop(id(record), None)
        if entry is None:
            return ENCODERS[record[KIND]](record, run_path)
        return entry[1].result()  # the encoder's exception, if it raised, is raised here

    def finish(self) -> None:
        """The cycle is written: records it skipped (duplicates, late steps) are not encoded, and
        none still being encoded reads a client's memory after the cycle is acknowledged."""
        for _, future in self._futures.values():
            future.cancel()
        for _, future in self._futures.values():
            if not future.cancelled():
                future.exception()  # waits; an error of a record nobody wrote is nobody's
        self._futures.clear()


class EncodePool:
    """`workers` threads that encode the pooled kinds (one worker: none, the writer encodes)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._executor = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="logger-daemon-encode") if self.workers > 1 else None
        )

    def start(self, groups: Iterable[tuple[str, list[Record]]]) -> Encoded:
        """Starts encoding the pooled records of a cycle: `groups` gives each (run path, records)
        in the order the writer takes them; within one, they are handed over in step order."""
        executor = self._executor
        if executor is None:
            return Encoded()
        futures: dict[int, tuple[Record, Future[list[bytes]]]] = {}
        for run_path, records in groups:
            pooled = [
                record
                for record in records
                if type(record) is list and record[KIND] in POOLED_KINDS and _array_bytes(record) >= MIN_POOLED_BYTES
            ]
            pooled.sort(key=_step)  # stable, as the writer's order
            for record in pooled:
                futures[id(record)] = (record, executor.submit(ENCODERS[record[KIND]], record, run_path))
        return Encoded(futures)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
