"""SummaryWriter methods for PR curves, hparams, custom scalars, meshes and curves.

Each method checks its arguments where tensorboardX (or torch.utils.tensorboard) would fail, copies
its arrays once, and queues one record; thresholds, counts and every protobuf are made in the daemon
(`logger_daemon/encoders/plugins.py`).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from time import time
from typing import Any

import numpy as np

from ._convert import _is_torch_tensor, to_float, to_owned_array, to_step
from ._writer_base import WriterBase, check_run_name, check_tag, step_and_time
from .protocol import RecordKind

_PR_CURVE = RecordKind.PR_CURVE
_PR_CURVE_RAW = RecordKind.PR_CURVE_RAW
_HPARAMS = RecordKind.HPARAMS
_SCALAR = RecordKind.SCALAR
_CUSTOM_SCALARS = RecordKind.CUSTOM_SCALARS
_MESH = RecordKind.MESH

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


# -- hparams ---------------------------------------------------------------------------------------

#: The record tag of add_hparams: the first of the three summaries it writes.
HPARAMS_TAG = "_hparams_/experiment"
#: How add_hparams classifies an hparam value: the daemon builds the protobuf from these.
HPARAM_NUMBER, HPARAM_STRING, HPARAM_BOOL, HPARAM_UNSET = "number", "string", "bool", "unset"


def _check_sub_run(name: Any, argument: str) -> str:
    """add_hparams' session directory `<logdir>/<name>`, which must stay inside the log directory."""
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str, got {type(name).__name__}")
    check_tag(name, argument)  # valid text of at most MAX_NAME_CHARS, as the daemon takes run names
    run = posixpath.normpath(name)
    # The daemon refuses a run that leaves the log directory; refused here, where the caller sees it.
    if posixpath.isabs(run) or ".." in run.replace("\\", "/").split("/") or "\0" in run:
        raise ValueError(f"{argument} {name!r} must name a directory inside the log directory")
    return "" if run == "." else check_run_name(run, f"{argument} {name[:20]!r}")


def _one_number(value: Any, name: str) -> float:
    """A torch tensor hparam as torch.utils.tensorboard takes it: its first element."""
    array = to_owned_array(value, name)
    if array.ndim > 1 or array.size == 0:
        raise ValueError(f"{name} must be a tensor of one element or a 1-D tensor, got shape {tuple(array.shape)}")
    return to_float(array.reshape(-1)[0], name)


def _hparams_tensorboardX(hparam_dict: Mapping[str, Any]) -> list[list]:
    """tensorboardX's reading of hparam values: None is left out, str/bool/int/float are kept,
    a callable is its name, anything else is listed with no type and no value."""
    entries: list[list] = []
    for key, value in hparam_dict.items():
        if value is None:
            continue
        if isinstance(value, str):
            entries.append([key, HPARAM_STRING, value, None])
        elif isinstance(value, bool):
            entries.append([key, HPARAM_BOOL, value, None])
        elif isinstance(value, (int, float)):
            entries.append([key, HPARAM_NUMBER, to_float(value, f"hparam_dict[{key!r}]"), None])
        elif callable(value):
            entries.append([key, HPARAM_STRING, getattr(value, "__name__", str(value)), None])
        else:
            entries.append([key, HPARAM_UNSET, None, None])
    return entries


def _hparams_torch(hparam_dict: Mapping[str, Any], domains: Any) -> list[list]:
    """torch.utils.tensorboard's reading: None is left out, int/float (bool too: it is an int) are
    numbers, str strings, a tensor its first element; anything else raises. `domains` lists the
    discrete values of some hparams, each of the hparam's own type."""
    if not isinstance(domains, Mapping):
        raise TypeError(f"hparam_domain_discrete must be a dict {{name: [values]}}, got {type(domains).__name__}")
    for key, values in domains.items():
        if (
            key not in hparam_dict
            or not isinstance(values, list)
            or not all(isinstance(d, type(hparam_dict[key])) for d in values)
        ):
            raise TypeError(
                f"hparam_domain_discrete[{key!r}] must be a list of values of the type of hparam_dict[{key!r}]"
            )
    entries: list[list] = []
    for key, value in hparam_dict.items():
        name = f"hparam_dict[{key!r}]"
        if value is None:
            continue
        domain = domains.get(key)
        if isinstance(value, (int, float)):
            numbers = None if domain is None else [to_float(d, f"hparam_domain_discrete[{key!r}]") for d in domain]
            entries.append([key, HPARAM_NUMBER, to_float(value, name), numbers])
        elif isinstance(value, str):
            entries.append([key, HPARAM_STRING, value, None if domain is None else list(domain)])
        elif _is_torch_tensor(value):
            entries.append([key, HPARAM_NUMBER, _one_number(value, name), None])
        else:
            raise ValueError(f"{name} must be an int, float, str, bool or torch.Tensor, got {type(value).__name__}")
    return entries


# -- custom scalars --------------------------------------------------------------------------------

#: The tag TensorBoard's custom_scalars plugin reads its layout from.
CUSTOM_SCALARS_TAG = "custom_scalars__config__"


def _tags(tags: Any, argument: str) -> list[str]:
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Sequence):
        raise TypeError(f"{argument} must be a list of tags (str), got {type(tags).__name__}")
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"{argument} must hold tags (str), got a {type(tag).__name__}")
    return list(tags)


def _check_layout(layout: Any) -> dict[str, dict[str, list]]:
    """The layout as plain data, charts as ["Multiline" | "Margin", [tags]]. As tensorboardX, any
    chart type other than "Margin" is a multiline chart; a margin chart takes exactly 3 tags."""
    if not isinstance(layout, Mapping):
        raise TypeError(f"layout must be a dict {{category: {{title: [type, tags]}}}}, got {type(layout).__name__}")
    plain: dict[str, dict[str, list]] = {}
    for category, charts in layout.items():
        if not isinstance(category, str):
            raise TypeError(f"layout: category names must be str, got {type(category).__name__}")
        if not isinstance(charts, Mapping):
            raise TypeError(f"layout[{category!r}] must be a dict {{title: [type, tags]}}, got {type(charts).__name__}")
        plain[category] = {}
        for title, chart in charts.items():
            where = f"layout[{category!r}][{title!r}]"
            if not isinstance(title, str):
                raise TypeError(f"layout[{category!r}]: chart titles must be str, got {type(title).__name__}")
            if isinstance(chart, (str, bytes)) or not isinstance(chart, Sequence) or len(chart) < 2:
                raise TypeError(f"{where} must be [type, tags], e.g. ['Multiline', ['loss/train', 'loss/val']]")
            tags = _tags(chart[1], f"{where}[1]")
            if chart[0] == "Margin":
                if len(tags) != 3:
                    raise ValueError(f"{where}: a Margin chart takes 3 tags (value, lower, upper), got {len(tags)}")
                plain[category][title] = ["Margin", tags]
            else:
                plain[category][title] = ["Multiline", tags]
    return plain


# -- meshes ----------------------------------------------------------------------------------------


def _mesh_part(value: Any, name: str, empty: Any) -> np.ndarray:
    array = to_owned_array(value, name, empty)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must have shape (B, N, 3), got {array.shape}")
    return array


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
        *,
        reduce: str | None = None,
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
        *,
        reduce: str | None = None,
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
        *,
        reduce: str | None = None,
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

    # -- hparams -----------------------------------------------------------------------------

    def add_hparams(
        self,
        hparam_dict: Mapping[str, Any],
        metric_dict: Mapping[str, Any],
        hparam_domain_discrete: Mapping[str, list] | None = None,
        run_name: str | None = None,
        global_step: int | None = None,
        name: str | None = None,
        *,
        metric_scalars: bool = True,
        reduce: str | None = None,
    ) -> None:
        """Logs a session of hyperparameters and its metrics for TensorBoard's HParams dashboard.

        Writes, in the sub-run `<logdir>/<name>` (default: the time of the call), the three
        summaries of the hparams plugin (experiment, session start with the values, session end)
        and each metric as a scalar at `global_step`.

        Takes torch.utils.tensorboard's arguments (`hparam_domain_discrete`, `run_name`, in its
        positional order) and tensorboardX's (`name`, an alias of `run_name`; positionally
        tensorboardX's third and fourth are `name` and `global_step`: a str third argument is taken
        as the name, a number fourth as the step). Called with `hparam_domain_discrete` or
        `run_name`, it writes what torch writes: a bool is a number, a tensor its first element,
        another type raises ValueError, the hparams summaries are at `global_step`. Otherwise it
        writes what tensorboardX writes: a bool is a bool, a callable its name, another type is
        listed with no value, the hparams summaries are at step 0. Metric tags are cleaned as
        `add_scalar` cleans them (torch keeps them as given).

        `metric_scalars=False` (keyword only, our addition) lists the metrics in the experiment
        without writing their values, for a caller that logs them as scalars itself (Lightning's
        logger does); their values are then not looked at.
        """
        if isinstance(hparam_domain_discrete, str):  # tensorboardX's positional order: (..., name, global_step)
            if name is not None:
                raise TypeError("add_hparams got the session name twice (third argument and name=)")
            name, hparam_domain_discrete = hparam_domain_discrete, None
            if run_name is not None and not isinstance(run_name, str):
                if global_step is not None:
                    raise TypeError("add_hparams got global_step twice (fourth argument and global_step=)")
                global_step, run_name = run_name, None
        elif run_name is not None and not isinstance(run_name, str) and global_step is None and name is None:
            global_step, run_name = run_name, None  # (hparam_dict, metric_dict, None, step): tensorboardX's order
        if name is not None and run_name is not None and name != run_name:
            raise ValueError(f"name and run_name are aliases; got {name!r} and {run_name!r}")
        torch_style = hparam_domain_discrete is not None or run_name is not None
        if not isinstance(hparam_dict, Mapping):
            raise TypeError(f"hparam_dict must be a dict, got {type(hparam_dict).__name__}")
        if not isinstance(metric_dict, Mapping):
            raise TypeError(f"metric_dict must be a dict, got {type(metric_dict).__name__}")
        for key in hparam_dict:
            if not isinstance(key, str):
                raise TypeError(f"hparam_dict keys must be str, got {type(key).__name__}")
        if torch_style:
            entries = _hparams_torch(hparam_dict, hparam_domain_discrete or {})
        else:
            entries = _hparams_tensorboardX(hparam_dict)
        metrics = []
        for key, value in metric_dict.items():
            check_tag(key, "metric_dict keys")
            metrics.append((key, to_float(value, f"metric_dict[{key!r}]") if metric_scalars else 0.0))
        session = run_name if run_name is not None else name
        run = _check_sub_run(session or str(time()), "run_name" if run_name is not None else "name")
        step = to_step(global_step)
        walltime = time()
        value = {"hparams": entries, "metrics": [key for key, _ in metrics]}
        self._queue_record(_HPARAMS, HPARAMS_TAG, step if torch_style else 0, walltime, value, run=run)
        for key, number in metrics if metric_scalars else ():
            self._queue_record(_SCALAR, key, step, walltime, number, run=run)

    # -- custom scalars ----------------------------------------------------------------------

    def add_custom_scalars(
        self, layout: Mapping[str, Mapping[str, Sequence[Any]]], *, reduce: str | None = None
    ) -> None:
        """Lays out charts of scalar tags in TensorBoard's Custom Scalars dashboard.

        `layout` is `{category: {title: [type, tags]}}`, type "Multiline" (any number of tags, each
        a regular expression) or "Margin" (3 tags: value, lower, upper). Written at step 0 under
        `custom_scalars__config__`, as tensorboardX does; TensorBoard shows the run's last layout.
        """
        self._queue_record(_CUSTOM_SCALARS, CUSTOM_SCALARS_TAG, 0, time(), _check_layout(layout))

    def add_custom_scalars_multilinechart(
        self, tags: Sequence[str], category: str = "default", title: str = "untitled", *, reduce: str | None = None
    ) -> None:
        """A layout of one multiline chart of `tags` (see `add_custom_scalars`; it replaces the
        run's layout, as in tensorboardX)."""
        self.add_custom_scalars({category: {title: ["Multiline", _tags(tags, "tags")]}})

    def add_custom_scalars_marginchart(
        self, tags: Sequence[str], category: str = "default", title: str = "untitled", *, reduce: str | None = None
    ) -> None:
        """A layout of one margin chart: `tags` are the value, lower and upper tags (exactly 3)."""
        tags = _tags(tags, "tags")
        if len(tags) != 3:
            raise ValueError(f"tags must be 3 tags (value, lower, upper), got {len(tags)}")
        self.add_custom_scalars({category: {title: ["Margin", tags]}})

    # -- meshes ------------------------------------------------------------------------------

    def add_mesh(
        self,
        tag: str,
        vertices: Any,
        colors: Any = None,
        faces: Any = None,
        config_dict: dict[str, Any] | None = None,
        global_step: int | None = None,
        walltime: float | None = None,
        *,
        reduce: str | None = None,
    ) -> None:
        """Logs a mesh or point cloud for TensorBoard's Mesh dashboard.

        `vertices` (B, N, 3) coordinates, `colors` (B, N, 3) in [0, 255], `faces` (B, F, 3) vertex
        indices; `config_dict` the three.js scene configuration (JSON-serializable). Written as
        tensorboardX does, one summary per part under `<tag>_1` (vertices), `<tag>_2` (faces),
        `<tag>_3` (colors), plus the `components` bitmask of the parts present, which tensorboardX
        leaves out (TensorBoard then expects all three parts). Arrays of another shape raise
        ValueError (tensorboardX fails or writes a tensor TensorBoard cannot read).
        """
        check_tag(tag)
        try:
            json_config = json.dumps(config_dict, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise TypeError(f"config_dict must be JSON-serializable: {err}") from None
        step, walltime = step_and_time(global_step, walltime)
        empty = self._transport.empty_array
        value = {"vertices": _mesh_part(vertices, "vertices", empty)}
        if faces is not None:
            value["faces"] = _mesh_part(faces, "faces", empty)
        if colors is not None:
            value["colors"] = _mesh_part(colors, "colors", empty)
        self._submit_array(_MESH, tag, step, walltime, value, {"json_config": json_config})
