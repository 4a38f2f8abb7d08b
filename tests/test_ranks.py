"""Writers of a data-parallel job's ranks, in process (an in-memory transport): where a rank learns
its place in the job, and what each call of each mode sends (the daemon combines the rest)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from logger_client import SummaryWriter
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import RecordKind
from logger_client.reduction import rank_info

IMAGE = np.zeros((3, 4, 4), np.uint8)


@pytest.fixture(autouse=True)
def no_job(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)


def writer_of(tmp_path, **kwargs) -> tuple[SummaryWriter, InMemoryTransport]:
    """A writer, typed: mypy checks the `reduce` argument of each add_* call below."""
    transport = InMemoryTransport()
    return SummaryWriter(str(tmp_path / "run"), transport=transport, **kwargs), transport


def sent(transport: InMemoryTransport) -> list[tuple]:
    return [(r.kind, r.run, r.tag, r.options.get("reduce")) for r in transport.records()]


def test_torchrun_s_environment_names_the_rank_the_job_and_its_restart():
    env = {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "GROUP_RANK": "1",
        "TORCHELASTIC_RUN_ID": "abc",
        "TORCHELASTIC_RESTART_COUNT": "2",
        "MASTER_ADDR": "node0",
        "MASTER_PORT": "29500",
    }
    info = rank_info(environ=env)
    assert info is not None
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size) == (5, 8, 1, 4)
    assert (info.job, info.node, info.master_addr) == ("abc/2", "1", "node0")
    assert rank_info(environ={**env, "TORCHELASTIC_RESTART_COUNT": "3"}).job != info.job  # type: ignore[union-attr]
    assert rank_info(rank=1, world_size=2, job_id="mine", environ={}).job == "mine"  # type: ignore[union-attr]


def test_without_a_world_of_several_ranks_a_writer_is_a_job_of_one(tmp_path):
    assert rank_info(environ={}) is None and rank_info(environ={"WORLD_SIZE": "1", "RANK": "0"}) is None
    writer, transport = writer_of(tmp_path)
    assert "rank" not in transport.writers[1]
    writer.add_scalar("loss", 1.0, 0, reduce="sum")  # accepted, and changes nothing
    writer.add_image("i", IMAGE, 0, reduce="per_rank")
    assert sent(transport) == [(RecordKind.SCALAR, "", "loss", None), (RecordKind.IMAGE, "", "i", None)]
    with pytest.raises(ValueError, match="reduce must be one of"):
        writer.add_scalar("loss", 1.0, 0, reduce="median")
    with pytest.raises(ValueError, match="rank 4 is not below world_size 4"):
        SummaryWriter(str(tmp_path / "x"), transport=InMemoryTransport(), rank=4, world_size=4)


def test_the_open_tells_the_daemon_the_rank_and_the_writer_s_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    _, transport = writer_of(tmp_path, reduce="max")
    options = transport.writers[1]
    assert (options["rank"], options["world_size"], options["reduce"], options["job"]) == (2, 4, "max", "")


def test_by_default_a_rank_sends_scalars_and_histograms_and_leaves_the_rest_to_rank_0(tmp_path):
    for rank in (0, 1):
        writer, transport = writer_of(tmp_path, rank=rank, world_size=2)
        writer.add_scalar("loss", 1.0, 0)
        writer.add_histogram("h", np.arange(3.0), 0)
        writer.add_image("i", IMAGE, 0)
        writer.add_text("t", "hello", 0)
        writer.add_scalars("group", {"a": 1.0}, 0)
        combined = [
            (RecordKind.SCALAR, "", "loss", None),
            (RecordKind.HISTOGRAM, "", "h", "merge"),
        ]
        rank0_only = [(RecordKind.IMAGE, "", "i", None), (RecordKind.TEXT, "", "t", None)]
        assert sent(transport) == combined + (rank0_only if rank == 0 else []) + [
            (RecordKind.SCALAR, "group/a", "group", None)
        ]


def test_a_per_rank_writer_writes_every_call_to_its_rank_s_sub_run(tmp_path):
    writer, transport = writer_of(tmp_path, rank=3, world_size=4, reduce="per_rank")
    writer.add_scalar("loss", 1.0, 0)
    writer.add_scalar("loss", 1.0, 0, display_name="shown as")  # the slow path of options
    writer.add_scalars("group", {"a": 1.0}, 0)
    writer.add_image("i", IMAGE, 0)
    writer.add_histogram("h", np.arange(3.0), 0)
    assert [(r.kind, r.run) for r in transport.records()] == [
        (RecordKind.SCALAR, "rank_3"),
        (RecordKind.SCALAR, "rank_3"),
        (RecordKind.SCALAR, "rank_3/group/a"),
        (RecordKind.IMAGE, "rank_3"),
        (RecordKind.HISTOGRAM, "rank_3"),
    ]


def test_a_rank0_writer_of_another_rank_sends_nothing_unless_a_call_asks(tmp_path):
    writer, transport = writer_of(tmp_path, rank=1, world_size=2, reduce="rank0")
    writer.add_scalar("loss", 1.0, 0)
    writer.add_histogram("h", np.arange(3.0), 0)
    writer.add_scalars("group", {"a": 1.0}, 0)
    assert sent(transport) == []
    writer.add_scalar("loss", 2.0, 1, reduce="mean")
    writer.add_histogram("h", np.arange(3.0), 1, reduce="merge")
    assert sent(transport) == [(RecordKind.SCALAR, "", "loss", "mean"), (RecordKind.HISTOGRAM, "", "h", "merge")]


def test_a_call_overrides_its_writer_s_mode(tmp_path):
    writer, transport = writer_of(tmp_path, rank=1, world_size=2)
    writer.add_scalar("loss", 1.0, 0, reduce="sum")
    writer.add_scalar("lr", 1.0, 0, reduce="rank0")  # not rank 0: nothing
    writer.add_scalar("own", 1.0, 0, reduce="per_rank")
    writer.add_scalars("group", {"a": 1.0}, 0, reduce="max")
    writer.add_image("i", IMAGE, 0, reduce="per_rank")
    writer.add_histogram("h", np.arange(3.0), 0, reduce="per_rank")
    assert sent(transport) == [
        (RecordKind.SCALAR, "", "loss", "sum"),
        (RecordKind.SCALAR, "rank_1", "own", "per_rank"),
        (RecordKind.SCALAR, "group/a", "group", "max"),
        (RecordKind.IMAGE, "rank_1", "i", None),
        (RecordKind.HISTOGRAM, "rank_1", "h", "per_rank"),
    ]
    with pytest.raises(ValueError, match="reduce must be one of 'rank0', 'per_rank'"):
        writer.add_image("i", IMAGE, 0, reduce="mean")
    with pytest.raises(ValueError, match="reduce must be one of"):
        writer.add_histogram("h", np.arange(3.0), 0, reduce="sum")


def test_every_add_method_takes_reduce_as_a_keyword_only_argument():
    for name, method in inspect.getmembers(SummaryWriter, inspect.isfunction):
        if name.startswith("add_"):
            parameter = inspect.signature(method).parameters.get("reduce")
            assert parameter is not None and parameter.kind == inspect.Parameter.KEYWORD_ONLY, name


def test_a_job_across_nodes_finds_its_root_at_master_addr_and_a_job_on_one_node_has_none():
    from logger_client.settings import Settings
    from logger_daemon.forward import Forwarder

    env = {"RANK": "0", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "node-a"}
    across = rank_info(environ=env)
    alone = rank_info(environ={**env, "LOCAL_WORLD_SIZE": "8"})
    assert across is not None and alone is not None
    assert across.spans_nodes and not alone.spans_nodes
    by_port = Forwarder("", None, Settings(root_port=5555))
    assert by_port.route(across.options()) == "tcp://node-a:5555"
    assert by_port.route(alone.options()) == ""  # combined on its node
    assert Forwarder("", None, Settings()).route(across.options()) == ""  # no port: no root
    assert Forwarder("tcp://root:7", None, Settings()).route(alone.options()) == "tcp://root:7"  # given
