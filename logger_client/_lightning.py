"""The one implementation behind `logger_client.lightning` and `logger_client.pytorch_lightning`:
Lightning's `TensorBoardLogger` with our writer as its `experiment`, made for either package.

Lightning's logger is two layers: the Fabric logger (the writer, metrics, hparams summaries,
flush and close) and the Trainer's logger on top (hparams storage and `hparams.yaml`, the graph,
versions). Ours replaces only the Fabric layer, by a subclass of it placed just below the
Trainer's logger in the method order, so everything the Trainer's layer does is Lightning's own.
Where Lightning reaches into torch's private file writer (the hparams summaries), ours calls
`add_hparams`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from .writer import SummaryWriter

#: The hparams session of Lightning's summaries is the writer's own directory, not a sub-run.
_OWN_RUN = "."

LOGGER_DOC = """Lightning's `TensorBoardLogger` (from `{package}.loggers`), writing through the
logging daemon: `experiment` is a `logger_client.SummaryWriter`.

Takes Lightning's arguments with its defaults: `save_dir`, `name` ("lightning_logs"), `version`
(the next `version_N`), `log_graph` (False), `default_hp_metric` (True), `prefix`, `sub_dir`; any
other keyword goes to the writer. Logs land in `save_dir/name/version[/sub_dir]`, as Lightning's.
Metrics, hyperparameters (with `hp_metric`), the graph and `hparams.yaml` are what Lightning's
logger writes; only global rank 0 writes. Differences: `save()` does not wait for the disk (the
Trainer calls it after every logging step), `finalize()` does; the graph needs no `tensorboard`
package. Like Lightning's logger, the constructor needs `tensorboard` or `tensorboardX`
importable (Lightning checks for them), though neither is used to write.
"""


def logger_class(package: str, fabric_package: str) -> type:
    """Our TensorBoardLogger for the Trainer of `package` ("lightning.pytorch" with
    "lightning.fabric", or "pytorch_lightning" with "lightning_fabric")."""
    trainer_loggers = importlib.import_module(f"{package}.loggers.tensorboard")
    fabric_loggers = importlib.import_module(f"{fabric_package}.loggers.tensorboard")
    rank_zero_experiment = importlib.import_module(f"{fabric_package}.loggers.logger").rank_zero_experiment
    rank_zero_only = importlib.import_module(f"{fabric_package}.utilities.rank_zero").rank_zero_only
    helpers = importlib.import_module(f"{fabric_package}.utilities.logger")

    class FabricLayer(fabric_loggers.TensorBoardLogger):  # type: ignore[name-defined]
        """Lightning Fabric's TensorBoardLogger, writing through our `SummaryWriter`."""

        _experiment: SummaryWriter | None

        @property
        @rank_zero_experiment
        def experiment(self) -> SummaryWriter:
            """The `logger_client.SummaryWriter` of this run (`log_dir`), made on first use, on
            global rank 0 only (other ranks get Lightning's do-nothing stand-in)."""
            if self._experiment is None:
                if self.root_dir:
                    self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
            return self._experiment

        @rank_zero_only
        def log_hyperparams(
            self, params: Any, metrics: Mapping[str, Any] | Any = None, step: int | None = None
        ) -> None:
            """Logs the hyperparameters (flattened, as Lightning flattens them) and the metrics
            (`hp_metric` = -1 by default) for TensorBoard's HParams dashboard: the metrics as
            scalars through `log_metrics`, the hparams plugin's three summaries at `step` through
            `add_hparams`, both in this run's directory."""
            flat = self._sanitize_params(helpers._flatten_dict(helpers._convert_params(params)))
            if metrics is None:
                metrics = {"hp_metric": -1} if self._default_hp_metric else None
            elif not isinstance(metrics, dict):
                metrics = {"hp_metric": metrics}
            if not metrics:
                return
            self.log_metrics(metrics, step)
            # The values went out as scalars just above (with the prefix): here only their names.
            self.experiment.add_hparams(flat, metrics, run_name=_OWN_RUN, global_step=step, metric_scalars=False)

        @rank_zero_only
        def save(self) -> None:
            """Makes sure the writer exists; unlike Lightning's, does not wait for the disk.

            The Trainer calls `save()` after every `log_metrics`. Lightning's flushes its writer
            there; ours would wait for the daemon to write and fsync, on the training thread. The
            daemon writes each record within about a second anyway, and `finalize` waits for all
            of it.
            """
            _ = self.experiment

        @rank_zero_only
        def finalize(self, status: str) -> None:
            """Closes the writer: returns once the daemon has written and fsynced everything (or
            after `LOGGER_CLOSE_TIMEOUT_S`)."""
            if self._experiment is not None:
                self._experiment.close()

    class TensorBoardLogger(trainer_loggers.TensorBoardLogger, FabricLayer):  # type: ignore[name-defined]
        __doc__ = LOGGER_DOC.format(package=package)

        def __init__(
            self,
            save_dir: Any,
            name: str | None = "lightning_logs",
            version: int | str | None = None,
            log_graph: bool = False,
            default_hp_metric: bool = True,
            prefix: str = "",
            sub_dir: Any = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(
                save_dir,
                name=name,
                version=version,
                log_graph=log_graph,
                default_hp_metric=default_hp_metric,
                prefix=prefix,
                sub_dir=sub_dir,
                **kwargs,
            )
            # Lightning turns the graph off without the tensorboard package; our add_graph does not need it.
            self._log_graph = log_graph

    TensorBoardLogger.__module__ = "logger_client." + package.split(".")[0]
    TensorBoardLogger.__qualname__ = "TensorBoardLogger"
    return TensorBoardLogger
