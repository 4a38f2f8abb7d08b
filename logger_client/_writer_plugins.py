"""SummaryWriter methods for PR curves, hparams, custom scalars, meshes and curves.

Each method checks its arguments where tensorboardX (or torch.utils.tensorboard) would fail, copies
its arrays once, and queues one record; thresholds, counts and every protobuf are made in the daemon
(`logger_daemon/encoders/plugins.py`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._convert import to_owned_array
from ._writer_base import WriterBase, check_tag, step_and_time
from .protocol import RecordKind

_PR_CURVE = RecordKind.PR_CURVE
_PR_CURVE_RAW = RecordKind.PR_CURVE_RAW

# -- PR curves -------------------------------------------------------------------------------------

#: tensorboardX and torch cap a PR curve's thresholds at 127 (their comment: more "breaks protobuf").
MAX_PR_THRESHOLDS = 127
#: The six rows of a PR curve tensor, in TensorBoard's order (pr_curve/metadata.py).
PR_CURVE_RAW_ROLES = (
    "true_positive_counts",
    "false_positive_counts",
    "true_negative_counts",
    "false_negative_counts",
    "precision",
    "recall",
)


def _check_num_thresholds(num_thresholds: Any) -> int:
    if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)):
        raise TypeError(f"num_thresholds must be an int, got {type(num_thresholds).__name__}")
    if num_thresholds < 1:
        raise ValueError(f"num_thresholds must be at least 1, got {num_thresholds}")
    return min(int(num_thresholds), MAX_PR_THRESHOLDS)


class PluginMethods(WriterBase):
    """Mixed into `SummaryWriter`: PR curves, hparams, custom scalars, meshes, curves."""

    # -- PR curves ---------------------------------------------------------------------------

    def add_pr_curve(
        self,
        tag: str,
        labels: Any,
        predictions: Any,
        global_step: int | None = None,
        num_thresholds: int = 127,
        weights: Any = None,
        walltime: float | None = None,
    ) -> None:
        """Logs a precision-recall curve of binary `labels` against `predictions` in [0, 1].

        The daemon counts TP/FP/TN/FN at `num_thresholds` evenly spaced thresholds (capped at 127,
        as tensorboardX does) exactly as tensorboardX's `compute_curve`, and writes the float
        [6, num_thresholds] tensor of the pr_curves plugin. `weights` (a number or an array that
        broadcasts with `labels`) weighs each example. `labels` and `predictions` must have the
        same shape.
        """
        check_tag(tag)
        thresholds = _check_num_thresholds(num_thresholds)
        step, walltime = step_and_time(global_step, walltime)
        empty = self._transport.empty_array
        value = {
            "labels": to_owned_array(labels, "labels", empty),
            "predictions": to_owned_array(predictions, "predictions", empty),
        }
        shape = value["labels"].shape
        if weights is not None:
            value["weights"] = to_owned_array(weights, "weights", empty)
            try:
                shape = np.broadcast_shapes(shape, value["weights"].shape)
            except ValueError:
                raise ValueError(
                    f"weights of shape {value['weights'].shape} do not broadcast with labels of shape {shape}"
                ) from None
        if shape != value["predictions"].shape:
            raise ValueError(
                f"labels (shape {shape}{' with weights' if weights is not None else ''}) and predictions "
                f"(shape {value['predictions'].shape}) must have the same shape"
            )
        self._submit_array(_PR_CURVE, tag, step, walltime, value, {"num_thresholds": thresholds})

    def add_pr_curve_raw(
        self,
        tag: str,
        true_positive_counts: Any,
        false_positive_counts: Any,
        true_negative_counts: Any,
        false_negative_counts: Any,
        precision: Any,
        recall: Any,
        global_step: int | None = None,
        num_thresholds: int = 127,
        weights: Any = None,
        walltime: float | None = None,
    ) -> None:
        """Logs a precision-recall curve from counts and rates computed elsewhere: six 1-D arrays
        of one length, one entry per threshold. `num_thresholds` (capped at 127) goes to the plugin
        metadata only; `weights` is accepted and unused, as in tensorboardX.

        tensorboardX accepts arrays of other shapes and writes a tensor TensorBoard cannot read;
        here they raise ValueError.
        """
        check_tag(tag)
        thresholds = _check_num_thresholds(num_thresholds)
        step, walltime = step_and_time(global_step, walltime)
        empty = self._transport.empty_array
        arguments = (
            true_positive_counts,
            false_positive_counts,
            true_negative_counts,
            false_negative_counts,
            precision,
            recall,
        )
        value = {role: to_owned_array(array, role, empty) for role, array in zip(PR_CURVE_RAW_ROLES, arguments)}
        shapes = {array.shape for array in value.values()}
        if len(shapes) != 1 or value["precision"].ndim != 1:
            described = ", ".join(f"{role} {array.shape}" for role, array in value.items())
            raise ValueError(f"true_positive_counts ... recall must be 1-D arrays of one length, got {described}")
        self._submit_array(_PR_CURVE_RAW, tag, step, walltime, value, {"num_thresholds": thresholds})

    def add_curve(
        self,
        tag: str,
        x: Any,
        y: Any,
        global_step: int | None = None,
        label: str | None = None,
        walltime: float | None = None,
    ) -> None:
        """Logs a curve of points (x[i], y[i]), e.g. a ROC curve (x = false positive rate, y = true
        positive rate), one curve per step. Neither tensorboardX nor torch has this method.

        TensorBoard has one chart that draws y against x for a step, with a step slider and runs
        overlaid: the PR Curves dashboard. So the curve is written as a pr_curves tensor whose
        recall row holds x and precision row holds y, in the order given (a line through the points
        in that order). Its tooltip names x "Recall" and y "Precision", its TP/FP/TN/FN columns are
        -1 (not counts) and its thresholds are only the points' ranks; its axes open on [0, 1], where
        ROC and PR curves lie (zoom out for others). `label` (e.g. "ROC curve (area = 0.93)") is
        logged as text at the same step under the same tag (the Text dashboard), since a chart's
        metadata is read once per tag and a label such as an AUC changes every step.
        """
        check_tag(tag)
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label must be a str or None, got {type(label).__name__}")
        step, walltime = step_and_time(global_step, walltime)
        empty = self._transport.empty_array
        value = {"x": to_owned_array(x, "x", empty), "y": to_owned_array(y, "y", empty)}
        if value["x"].ndim != 1 or value["x"].shape != value["y"].shape or not value["x"].size:
            raise ValueError(
                f"x and y must be 1-D arrays of one length (at least 1 point), got {value['x'].shape} "
                f"and {value['y'].shape}"
            )
        self._submit_array(_PR_CURVE_RAW, tag, step, walltime, value, {"label": label})
