"""A small data-parallel "training" run that logs through the daemon: `python -m logger_client.demo`.

Several worker processes (ranks) train a toy linear model on their own data shard and log scalars,
histograms, images and text into one log directory; rank 0 also logs per-rank losses with
`add_scalars`. The first writer starts the daemon; the rest find it. Ends by printing how to open
TensorBoard on the result.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys

import numpy as np

from logger_client import SummaryWriter


def train(rank: int, world_size: int, logdir: str, steps: int) -> None:
    """One rank: a noisy linear regression trained by gradient descent, logged every step."""
    rng = np.random.default_rng(rank)
    true_w = np.linspace(-1.0, 1.0, 16)
    w = np.zeros(16)
    with SummaryWriter(logdir) as writer:
        for step in range(steps):
            x = rng.normal(size=(256, 16))
            y = x @ true_w + 0.1 * rng.normal(size=256)
            error = x @ w - y
            loss = float(np.mean(error**2))
            gradient = 2.0 * x.T @ error / len(y)
            learning_rate = 0.05 * 0.5 * (1 + np.cos(np.pi * step / steps))
            w -= learning_rate * gradient
            writer.add_scalar(f"loss/rank{rank}", loss, step)
            writer.add_scalar(f"lr/rank{rank}", learning_rate, step)
            if rank == 0:
                writer.add_scalars("loss_by_split", {"train": loss, "val": loss * 1.1 + 0.01}, step)
            if step % 10 == 0:
                writer.add_histogram(f"weights/rank{rank}", w, step)
                writer.add_histogram(f"gradients/rank{rank}", gradient, step)
            if rank == 0 and step % 25 == 0:
                writer.add_image("weights_as_image", _weights_image(w, true_w), step, dataformats="HWC")
                writer.add_text("notes", f"step {step}: loss **{loss:.4f}**, world size {world_size}", step)


def _weights_image(w: np.ndarray, true_w: np.ndarray) -> np.ndarray:
    """A 64x64 RGB picture: learned weights in red, true weights in green, blended over rows."""
    rows = np.linspace(0.0, 1.0, 64)[:, None]
    red = np.clip(np.interp(np.linspace(0, 15, 64), np.arange(16), (w + 1) / 2), 0, 1)[None, :] * rows
    green = np.clip(np.interp(np.linspace(0, 15, 64), np.arange(16), (true_w + 1) / 2), 0, 1)[None, :] * (1 - rows)
    return np.stack([red, green, np.full((64, 64), 0.2)], axis=-1).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logdir", default=os.path.join("runs", "demo"))
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")  # like torchrun: independent processes
    workers = [
        context.Process(target=train, args=(rank, args.ranks, args.logdir, args.steps)) for rank in range(args.ranks)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    failed = [rank for rank, worker in enumerate(workers) if worker.exitcode != 0]
    if failed:
        print(f"ranks {failed} failed", file=sys.stderr)
        return 1
    print(f"wrote {args.ranks} ranks x {args.steps} steps to {os.path.abspath(args.logdir)}")
    print(f"open it with:  tensorboard --logdir {args.logdir}")
    print("the daemon stops by itself once idle; `logger-daemon status` shows it meanwhile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
