"""Ranks of a data-parallel job, and how the values several ranks log for one step are combined.

A writer learns its rank, the job's size and the job's id from torchrun's environment (`RANK`,
`WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `GROUP_RANK`, `TORCHELASTIC_RUN_ID`,
`TORCHELASTIC_RESTART_COUNT`, `MASTER_ADDR`, `MASTER_PORT`) or from its keyword arguments; without
them it is a job of one, and nothing here applies. The daemon imports this module for the names
below, and for how it marks in an event file how many ranks a value combines.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ARRAY_MODES",
    "DEFAULT_MODE",
    "MODES",
    "RANKS_NOTE_PREFIX",
    "SCALAR_MODES",
    "RankInfo",
    "check_mode",
    "per_rank_run",
    "rank_info",
    "ranks_from_note",
    "ranks_note",
    "root_endpoint",
]

#: How a scalar tag logged by several ranks at one step is written: their mean, sum, min or max;
#: rank 0's value only; or each rank's under its own sub-run `rank_<r>`.
SCALAR_MODES = ("mean", "sum", "min", "max", "rank0", "per_rank")
#: Histograms also merge (the default): one histogram of every rank's values.
HISTOGRAM_MODES = ("merge", "rank0", "per_rank")
#: Images, audio, video, text, graphs, embeddings and the rest: rank 0 (the default) or per rank.
ARRAY_MODES = ("rank0", "per_rank")
MODES = (*SCALAR_MODES, "merge")
#: A writer's default: scalars by their mean (histograms merged, the rest from rank 0).
DEFAULT_MODE = "mean"
#: The modes the daemon combines across ranks; the others the client settles alone.
COMBINED_MODES = frozenset(["mean", "sum", "min", "max", "merge"])

#: Written in `Summary.Value.node_name` of a value several ranks went into, before their number.
#: TensorBoard ignores node_name when a value has a tag; `logger_client.reader` reads it back.
RANKS_NOTE_PREFIX = "tb-logger ranks="


def ranks_note(count: int) -> str:
    """The node_name of a value `count` ranks went into."""
    return f"{RANKS_NOTE_PREFIX}{count}"


def ranks_from_note(node_name: str) -> int | None:
    """How many ranks a value's node_name says went into it; None when it says nothing of ranks."""
    if not node_name.startswith(RANKS_NOTE_PREFIX):
        return None
    try:
        return int(node_name[len(RANKS_NOTE_PREFIX) :])
    except ValueError:
        return None


def per_rank_run(rank: int, run: str) -> str:
    """The sub-run a rank's `per_rank` values go to: `rank_<r>`, above any run of the call."""
    return f"rank_{rank}" if not run else f"rank_{rank}/{run}"


def check_mode(mode: object, allowed: tuple[str, ...] = MODES, name: str = "reduce") -> str:
    """`mode` if it is one of `allowed`; else a ValueError naming the argument."""
    if not isinstance(mode, str) or mode not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {mode!r}")
    return mode


@dataclass(frozen=True)
class RankInfo:
    """Where a writer's process sits in its job."""

    rank: int
    world_size: int
    #: The rank among the processes of this node, and how many this node runs.
    local_rank: int
    local_world_size: int
    #: Names the job (and its restart): ranks of different jobs are never combined.
    job: str
    #: Names this node within the job (torchrun's GROUP_RANK, else the host name).
    node: str
    #: The host of the job's master (torchrun's MASTER_ADDR), where a root daemon can run.
    master_addr: str

    @property
    def spans_nodes(self) -> bool:
        """Whether the job's ranks run on more than this node."""
        return self.world_size > self.local_world_size

    def options(self) -> dict[str, object]:
        """The writer's OPEN options that tell the daemon its place in the job."""
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "local_rank": self.local_rank,
            "local_world_size": self.local_world_size,
            "job": self.job,
            "node": self.node,
            "master_addr": self.master_addr,
        }


def root_endpoint(master_addr: str, port: int) -> str:
    """Where the root daemon of a job across nodes listens: its MASTER_ADDR, at `root_port`."""
    return f"tcp://{master_addr}:{port}"


def _int(value: object, name: str) -> int:
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must not be negative, got {number}")
    return number


def rank_info(
    rank: int | None = None,
    world_size: int | None = None,
    job_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RankInfo | None:
    """This writer's place in its job, from the arguments or else torchrun's environment; None for
    a job of one (no world size, or a world size of 1), which writes exactly as without ranks."""
    env = os.environ if environ is None else environ
    if world_size is None and env.get("WORLD_SIZE"):
        world_size = _int(env["WORLD_SIZE"], "WORLD_SIZE")
    if world_size is None:
        if rank:
            raise ValueError("rank was given without world_size (or WORLD_SIZE in the environment)")
        return None
    world_size = _int(world_size, "world_size")
    if world_size <= 1:
        return None
    if rank is None:
        rank = _int(env.get("RANK", "0"), "RANK")
    rank = _int(rank, "rank")
    if rank >= world_size:
        raise ValueError(f"rank {rank} is not below world_size {world_size}")
    local_world_size = _int(env.get("LOCAL_WORLD_SIZE") or world_size, "LOCAL_WORLD_SIZE")
    local_rank = _int(env.get("LOCAL_RANK") or rank % max(local_world_size, 1), "LOCAL_RANK")
    master_addr = env.get("MASTER_ADDR", "")
    if job_id is None:
        run_id = env.get("TORCHELASTIC_RUN_ID", "")
        if run_id and run_id != "none":
            # torchrun restarts a failed group with the same run id and the next restart count:
            # values of the failed attempt must not be combined with the next one's.
            job_id = f"{run_id}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        elif master_addr:
            job_id = f"{master_addr}:{env.get('MASTER_PORT', '')}"
        else:
            job_id = ""
    if not isinstance(job_id, str):
        raise TypeError(f"job_id must be a str, got {type(job_id).__name__}")
    node = env.get("GROUP_RANK") or socket.gethostname()
    return RankInfo(rank, world_size, local_rank, local_world_size, job_id, node, master_addr)
