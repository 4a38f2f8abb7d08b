"""A small data-parallel training job for torchrun (gloo, CPU), for the reduction test:

    torchrun --standalone --nproc_per_node=4 ddp_job.py LOGDIR EXPECTED_JSON STEPS

Every rank opens `SummaryWriter(LOGDIR)` (its rank from torchrun's environment), logs its own loss
every step under one tag per reduction mode, and a histogram of its gradients every 20 steps. What
the daemon should write is computed here with the collectives (`all_reduce`, `all_gather`) and
rank 0 saves it to EXPECTED_JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from logger_client import SummaryWriter

HISTOGRAM_EVERY = 20


def main() -> None:
    logdir, expected_path, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = torch.Generator().manual_seed(100 + rank)  # each rank its own batches
    writer = SummaryWriter(logdir)
    expected: dict[str, Any] = {"mean": [], "sum": [], "max": [], "rank0": [], "per_rank": [], "grads": []}
    for step in range(steps):
        x = torch.randn(16, 8, generator=data)
        y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(16, 1, generator=data)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        # Each rank's own gradients (DDP's averaged ones are alike on every rank).
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]).double() * (rank + 1)
        optimizer.step()
        value = loss.item()
        writer.add_scalar("loss", value, step)  # the writer's default: mean
        writer.add_scalar("loss_sum", value, step, reduce="sum")
        writer.add_scalar("loss_max", value, step, reduce="max")
        writer.add_scalar("loss_rank0", value, step, reduce="rank0")
        writer.add_scalar("loss_per_rank", value, step, reduce="per_rank")
        if step % HISTOGRAM_EVERY == 0:
            writer.add_histogram("grads", grads.numpy(), step)
        # What the daemon should make of it, from the collectives.
        as_tensor = torch.tensor([value], dtype=torch.float64)
        total, highest = as_tensor.clone(), as_tensor.clone()
        dist.all_reduce(total, dist.ReduceOp.SUM)
        dist.all_reduce(highest, dist.ReduceOp.MAX)
        every = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
        dist.all_gather(every, as_tensor)
        expected["sum"].append(total.item())
        expected["mean"].append(total.item() / world)
        expected["max"].append(highest.item())
        expected["rank0"].append(every[0].item())
        expected["per_rank"].append([t.item() for t in every])
        if step % HISTOGRAM_EVERY == 0:
            gathered = [torch.zeros_like(grads) for _ in range(world)]
            dist.all_gather(gathered, grads)
            expected["grads"].append([step, torch.cat(gathered).tolist()])
    closed = writer.close()
    flags = torch.tensor([1 if closed else 0])
    dist.all_reduce(flags, dist.ReduceOp.MIN)
    if rank == 0:
        expected["closed"] = bool(flags.item())
        with open(expected_path, "w") as f:
            json.dump(expected, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
