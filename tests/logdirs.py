"""A log directory read back as TensorBoard reads it, for tests that check what a daemon wrote."""

from __future__ import annotations

import os

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def event_files(logdir: str) -> list[str]:
    """The paths of the directory's event files, in name order (TensorBoard's reading order)."""
    return sorted(os.path.join(logdir, name) for name in os.listdir(logdir) if name.startswith("events.out.tfevents."))


def accumulator(logdir: str) -> EventAccumulator:
    """TensorBoard's loader over the directory, keeping every event of every kind."""
    acc = EventAccumulator(logdir, size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(logdir: str, tag: str) -> list[tuple[int, float]]:
    """(step, value) of `tag` as TensorBoard shows them; empty while nothing of it is on disk."""
    if not os.path.isdir(logdir) or not event_files(logdir):
        return []
    acc = accumulator(logdir)
    if tag not in acc.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in acc.Scalars(tag)]
