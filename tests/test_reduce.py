"""Values of a data-parallel job's ranks combined per (run, tag, step), in process: the pipeline's
reducer fed the messages of fake ranks (clients whose writers name their rank), files read back
with TensorBoard's loader and ours. A fake clock stands for time: the bounded wait is exact here.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
import tensorboardX
from tensorboardX.summary import histogram as tbx_histogram
from test_pipeline import WALL, Harness, key_record, load, open_record, row

from logger_client import reader
from logger_client.protocol import RecordKind
from logger_client.reduction import ranks_from_note, ranks_note
from logger_daemon.aggregate import HistogramPartial, exact_parts, exact_sum, expansion, merge_histograms
from logger_daemon.intake import Work
from logger_daemon.pipeline import Pipeline
from logger_daemon.reduce import Reducer

RANKS = [b"rank-0", b"rank-1", b"rank-2", b"rank-3"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Job(Harness):
    """A pipeline with a reducer on a fake clock, and four fake ranks of one job."""

    def __init__(self, wait_s: float = 1.0, heard: dict[bytes, float] | None = None) -> None:
        super().__init__()
        self.clock = Clock()
        self.heard = heard
        self.reducer = Reducer(wait_s, silent_s=2.5, heard=heard.get if heard is not None else None, clock=self.clock)
        self.pipeline = Pipeline(self.stats, fsync_interval_s=30.0, on_written=self._on_written, reducer=self.reducer)

    def open(self, logdir: str, ranks: tuple[int, ...] = (0, 1, 2, 3), tags: tuple[str, ...] = ("loss",), **options):
        works = []
        for rank in ranks:
            opened = open_record(logdir, rank=rank, world_size=4, job="job-1", **{"reduce": "mean", **options})
            works.append(self.work(RANKS[rank], [opened] + [key_record(k, tag) for k, tag in enumerate(tags)]))
        self.run(*works)

    def rows(self, rank: int, steps, key: int = 0, value=None) -> Work:
        value = value or (lambda rank, step: rank + step / 8)
        return self.packed_work(RANKS[rank], [row(key, step, value(rank, step)) for step in steps])

    def later(self, seconds: float) -> None:
        self.clock.now += seconds
        if self.heard is not None:
            for client in self.heard:
                self.heard[client] = self.clock.now
        self.run()


def series(logdir: str, tag: str = "loss") -> reader.Scalars:
    return reader.load(logdir).scalars.get((".", tag), reader.Scalars(np.zeros(0), np.zeros(0), np.zeros(0)))


def ranks_of(logdir: str, tag: str = "loss") -> list[int]:
    """How many ranks went into each value of the tag, as the file says."""
    ranks = series(logdir, tag).ranks
    assert ranks is not None
    return ranks.tolist()


@pytest.fixture
def job() -> Job:
    return Job()


def test_four_ranks_give_one_mean_per_step_with_their_count_and_then_acks(job, logdir):
    job.open(logdir)
    job.run(*[job.rows(rank, range(50)) for rank in range(4)])
    loss = series(logdir)
    assert loss.step.tolist() == list(range(50))
    np.testing.assert_allclose(loss.value, np.arange(50) / 8 + 1.5, rtol=1e-6)
    assert loss.ranks is not None and set(loss.ranks.tolist()) == {4}
    assert job.acks[-1] == dict.fromkeys(RANKS, 2)
    # TensorBoard's loader sees an ordinary scalar series.
    assert [e.step for e in load(logdir).Scalars("loss")] == list(range(50))
    status = job.reducer.status()
    assert (status["values_in"], status["values_written"], status["values_by_ranks"]) == (200, 50, {"4": 50})
    assert status["values_partial"] == status["values_late"] == 0


@pytest.mark.parametrize(("mode", "expected"), [("sum", lambda v: v.sum(0)), ("min", min), ("max", max)])
def test_a_writer_chooses_sum_min_or_max(logdir, mode, expected):
    job = Job()
    job.open(logdir, reduce=mode)
    values = np.random.default_rng(0).normal(size=(4, 20))
    job.run(*[job.rows(rank, range(20), value=lambda r, s: float(values[r, s])) for rank in range(4)])
    if mode == "sum":
        want = [math.fsum(values[:, s]) for s in range(20)]
    else:
        want = [expected(values[:, s].tolist()) for s in range(20)]
    np.testing.assert_allclose(series(logdir).value, want, rtol=1e-6)


def test_one_call_chooses_another_mode_than_its_writer(job, logdir):
    job.open(logdir)
    records = [(RecordKind.SCALAR, 1, "", "total", 3, WALL, float(rank + 1), {"reduce": "sum"}) for rank in range(4)]
    job.run(*[job.work(RANKS[rank], [records[rank]]) for rank in range(4)])
    assert series(logdir, "total").value.tolist() == [10.0]


def test_a_run_one_rank_writes_is_written_exactly_as_by_a_job_of_one(tmp_path):
    outputs = []
    for ranked in (False, True):
        logdir = str(tmp_path / f"ranked-{ranked}")
        job = Job()
        ranks: dict[str, Any] = {"rank": 0, "world_size": 4, "job": "j", "reduce": "mean"} if ranked else {}
        opened = open_record(logdir, **ranks)
        histogram = (RecordKind.HISTOGRAM, 1, "", "h", 3, WALL, 0, {"bins": "tensorflow", "max_bins": None})
        job.run(job.work(RANKS[0], [opened, key_record(0, "loss"), histogram], [np.arange(10.0)]))
        job.run(job.rows(0, [0, 1, 2, 2, 1]))
        data = reader.load(logdir)
        assert data.scalars[(".", "loss")].ranks is None and data.histograms[(".", "h")][0].ranks is None
        outputs.append((data.scalars[(".", "loss")].value.tolist(), job.refused, data.histograms[(".", "h")][0]))
    assert outputs[0][:2] == outputs[1][:2]
    assert outputs[0][2].bucket_counts.tolist() == outputs[1][2].bucket_counts.tolist()


def test_a_missing_rank_holds_a_step_for_the_bounded_wait_then_it_is_written_without_it(job, logdir):
    job.open(logdir)
    job.run(*[job.rows(rank, [0, 1]) for rank in range(3)])
    assert len(series(logdir)) == 0
    assert job.acks[-1] == {}  # nothing acknowledged while its values wait
    job.later(0.9)
    assert len(series(logdir)) == 0
    job.later(0.2)
    loss = series(logdir)
    assert (loss.step.tolist(), ranks_of(logdir)) == ([0, 1], [3, 3])
    np.testing.assert_allclose(loss.value, [1.0, 1.0 + 1 / 8], rtol=1e-6)
    assert job.acks[-1] == dict.fromkeys(RANKS[:3], 2)
    # The lagging rank's values come too late: counted, to it; later steps still wait for it.
    job.run(job.rows(3, [0, 1, 2]), *[job.rows(rank, [2]) for rank in range(3)])
    assert job.refused == {(RANKS[3], "rank_late"): 2}
    assert ranks_of(logdir) == [3, 3, 4]
    status = job.reducer.status()
    assert (status["values_partial"], status["values_late"]) == (2, 2)


def test_a_rank_logging_a_tag_every_10_steps_holds_no_step_back_past_its_next_one(job, logdir):
    job.open(logdir)
    for start in (0, 10, 20):
        job.run(*[job.rows(rank, range(start, start + 10)) for rank in range(3)], job.rows(3, [start]))
    loss = series(logdir)
    # No time went by: every step was written because rank 3 went past it, none by the wait.
    assert loss.step.tolist() == list(range(21))  # 21 to 29 wait for rank 3 to log 30 (or the wait)
    assert ranks_of(logdir) == ([4] + [3] * 9) * 2 + [4]
    np.testing.assert_allclose(loss.value[1:10], np.arange(1, 10) / 8 + 1.0, rtol=1e-6)
    assert job.reducer.status()["values_partial"] == 0 and job.refused == {}


def test_tags_at_different_rates_do_not_wait_for_each_other(job, logdir):
    job.open(logdir, tags=("loss", "acc"))
    job.run(
        *[job.rows(rank, range(30)) for rank in range(4)],
        *[job.rows(rank, range(0, 30, 3), key=1) for rank in (0, 1)],  # ranks 2 and 3 never log acc
    )
    assert len(series(logdir)) == 30  # loss is not held up by acc
    assert len(series(logdir, "acc")) == 0  # acc's first step waits for the ranks that never log it...
    job.later(1.1)
    acc = series(logdir, "acc")
    assert acc.step.tolist() == list(range(0, 30, 3)) and set(ranks_of(logdir, "acc")) == {2}
    job.run(*[job.rows(rank, [30], key=1) for rank in (0, 1)])  # ...and then only for those that do
    assert series(logdir, "acc").step.tolist()[-1] == 30


def test_a_rank_whose_client_is_gone_or_silent_is_not_waited_for(logdir):
    heard = dict.fromkeys(RANKS, 1000.0)
    job = Job(heard=heard)
    job.open(logdir)
    job.run(*[job.rows(rank, range(5)) for rank in range(4)])
    job.run(*[job.rows(rank, range(5, 10)) for rank in range(3)], Work(RANKS[3], 0, client_gone=True))
    assert len(series(logdir)) == 10  # gone: no wait at all
    heard[RANKS[2]] = 990.0  # rank 2 sent nothing, not even a heartbeat, for 10 s
    job.run(*[job.rows(rank, [10]) for rank in range(2)])
    assert ranks_of(logdir)[-1] == 2
    assert job.reducer.status()["jobs"]["job-1"]["ranks"] == {"0": "open", "1": "open", "2": "silent", "3": "gone"}


def test_a_flush_is_acknowledged_once_what_it_covers_is_written(job, logdir):
    job.open(logdir)
    job.run(*[job.rows(rank, [0]) for rank in range(2)])
    job.run(Work(RANKS[0], job.next_seq(RANKS[0]), flush=True))
    assert RANKS[0] not in job.acks[-1]
    job.run(*[job.rows(rank, [0]) for rank in (2, 3)])
    assert job.acks[-1][RANKS[0]] == 3


def tensorboardx_histogram(values: np.ndarray, tmp_path) -> Any:
    """tensorboardX's HistogramProto of `values` with its default bins (what add_histogram writes)."""
    writer = tensorboardX.SummaryWriter(str(tmp_path / "tensorboardx"))
    bins = writer.default_bins
    writer.close()
    return tbx_histogram("h", values, bins).value[0].histo


def test_histograms_of_the_ranks_merge_into_the_histogram_of_all_their_values(job, logdir, tmp_path):
    job.open(logdir)
    rng = np.random.default_rng(1)
    values = [rng.normal(rank, 1 + rank, size=1000).astype(np.float32) for rank in range(4)]
    options = {"bins": "tensorflow", "max_bins": None}
    job.run(
        *[
            job.work(RANKS[rank], [(RecordKind.HISTOGRAM, 1, "", "grads", 20, WALL + rank, 0, options)], [values[rank]])
            for rank in range(4)
        ]
    )
    (merged,) = load(logdir).Histograms("grads")
    want = tensorboardx_histogram(np.concatenate(values), tmp_path)
    got = merged.histogram_value
    assert (got.min, got.max, got.num) == (want.min, want.max, want.num)
    assert list(got.bucket_limit) == list(want.bucket_limit) and list(got.bucket) == list(want.bucket)
    assert got.sum == pytest.approx(want.sum, rel=1e-12)
    assert got.sum_squares == pytest.approx(want.sum_squares, rel=1e-12)
    assert merged.wall_time == WALL + 3  # the latest of its values
    (ours,) = reader.load(logdir).histograms[(".", "grads")]
    assert ours.ranks == 4


def test_a_restarted_daemon_combines_what_was_not_written_and_skips_what_was(tmp_path):
    logdir = str(tmp_path / "run")
    job = Job()
    job.open(logdir)
    job.run(*[job.rows(rank, [0, 1]) for rank in range(4)], *[job.rows(rank, [2]) for rank in range(3)])
    job.pipeline.stop()  # the daemon dies: step 2 waited for rank 3, its messages unacknowledged
    again = Job()
    again._seq = job._seq  # the clients resend their messages not acknowledged, with their ids
    resent = []
    for rank in range(4):
        again._seq[RANKS[rank]] = 0
        opened = open_record(logdir, rank=rank, world_size=4, job="job-1", reduce="mean", announced=True)
        resent.append(again.work(RANKS[rank], [opened, key_record(0, "loss")]))
    again.run(*resent)
    for rank in range(4):  # message ids as before: 2 (steps 0 and 1), 3 (step 2)
        again._seq[RANKS[rank]] = 1
        again.run(again.rows(rank, [0, 1]))
        if rank < 3:
            again.run(again.rows(rank, [2]))
    again.run(again.rows(3, [2]))
    loss = series(logdir)
    assert (loss.step.tolist(), ranks_of(logdir)) == ([0, 1, 2], [4, 4, 4])
    assert again.stats.snapshot()["records_duplicate"] == 8


def test_partial_sums_are_exact_whatever_the_grouping():
    rng = random.Random(7)
    for _ in range(200):
        values = [rng.uniform(-1, 1) * 10 ** rng.randint(-20, 20) for _ in range(rng.randint(1, 12))]
        split = rng.randint(0, len(values))
        parts = expansion(values[:split]) + expansion(values[split:])
        assert exact_sum(parts) == math.fsum(values)
    assert math.isnan(exact_sum([math.inf, -math.inf])) and exact_sum([1e308, 1e308]) == math.inf


def test_histogram_partials_merge_alike_however_they_are_grouped():
    rng = np.random.default_rng(3)
    ranks = [HistogramPartial.of_values(rng.normal(size=300)) for _ in range(4)]
    together = merge_histograms(ranks).proto()
    nodes = merge_histograms([merge_histograms(ranks[:2]), merge_histograms(ranks[2:])]).proto()
    assert together == nodes
    estimator = [HistogramPartial.of_values(rng.normal(size=50), bins="auto") for _ in range(2)]
    assert merge_histograms(estimator).proto().num == 100


def test_the_ranks_note_reads_back():
    assert ranks_from_note(ranks_note(12)) == 12
    assert ranks_from_note("") is None and ranks_from_note("conv1") is None


def test_counters_of_the_status_add_up(job, logdir):
    job.open(logdir)
    job.run(*[job.rows(rank, range(10)) for rank in range(4)], *[job.rows(rank, [10]) for rank in range(2)])
    job.later(2.0)
    status = job.reducer.status()
    assert status["values_in"] == sum(int(k) * v for k, v in status["values_by_ranks"].items())
    assert Counter(ranks_of(logdir)) == Counter({4: 10, 2: 1})


def test_exact_parts_of_many_entries_at_once_sum_exactly_to_each_entry_s_values():
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 6, size=500)
    values = rng.normal(0, 1, sizes.sum()) * 10.0 ** rng.integers(-12, 12, sizes.sum())
    edges = np.concatenate([[0], np.cumsum(sizes)])
    sums, extra_of, extra = exact_parts(values, edges)
    assert extra.size > 0  # rounding lost bits, and the parts kept them
    for entry in range(sizes.size):
        parts = [float(sums[entry]), *extra[extra_of == entry].tolist()]
        assert exact_sum(parts) == exact_sum(values[edges[entry] : edges[entry + 1]].tolist())
