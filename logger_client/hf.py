"""A Hugging Face `transformers` Trainer callback that logs through the logging daemon:

    from transformers import Trainer, TrainingArguments
    from logger_client.hf import TensorBoardCallback

    tensorboard = TensorBoardCallback("runs/my_model")
    args = TrainingArguments("out", report_to="none", logging_steps=10)  # "none": not the stock callback too
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=val, callbacks=[tensorboard])
    trainer.train()
    trainer.evaluate()  # logged to the same run
    tensorboard.close()  # optional: the process flushes at exit

Unlike transformers' own `TensorBoardCallback`, the writer is not closed at the end of `train()`:
metrics of a later `evaluate()` or `predict()` go to the same run, never to a
torch.utils.tensorboard writer the stock callback would open instead. Importing this module
imports `transformers`.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from typing import Any

from transformers import TrainerCallback

from .writer import SummaryWriter

__all__ = ["TensorBoardCallback"]

log = logging.getLogger(__name__)

#: Where metrics of each kind go, as the stock callback names them: `eval_loss` is `eval/loss`.
_SECTIONS = (("eval_", "eval/"), ("test_", "test/"))


def tag_of(key: str) -> str:
    """The TensorBoard tag of a Trainer log key: `eval_*` in `eval/`, `test_*` in `test/`, the
    rest in `train/` (as transformers' callback tags them)."""
    for prefix, section in _SECTIONS:
        if key.startswith(prefix):
            return section + key[len(prefix) :]
    return "train/" + key


class TensorBoardCallback(TrainerCallback):
    """Logs a Trainer's metrics, arguments and model config through our `SummaryWriter`.

    Args:
        log_dir: The run's directory. Default, as transformers: `$TENSORBOARD_LOGGING_DIR`, else
            `args.logging_dir` (transformers 4), else `<output_dir>/runs/<date>_<host>`; each
            trial of a hyperparameter search in `<that>/<trial name>`.
        tb_writer: A writer to use instead of making one (then `log_dir` is not used, and the
            writer is closed only by `close()`).
        **writer_kwargs: Other `SummaryWriter` arguments, for the writer made here.

    What it logs, as transformers' `TensorBoardCallback` does: at the start of training the
    training arguments and the model's config as text (`args`, `model_config`); at each log,
    every number as a scalar at the global step and every string as text, under `train/`,
    `eval/` or `test/`. Only the main process (`state.is_world_process_zero`) logs. Unlike it,
    `on_log` does not wait for the disk, and the end of training flushes the writer instead of
    closing it.
    """

    def __init__(self, log_dir: str | None = None, tb_writer: SummaryWriter | None = None, **writer_kwargs: Any):
        self.log_dir = log_dir
        #: The writer in use (None until the first log, or on processes other than the main one).
        self.tb_writer = tb_writer
        self._writer_kwargs = writer_kwargs
        self._own_writer = False
        self._base: str | None = None

    def run_directory(self, args: Any, state: Any) -> str:
        """The directory of this training's run (see `log_dir`), chosen at its first use: a second
        `train()` goes on in the same run, as with the stock callback."""
        if self._base is None:
            self._base = os.path.expanduser(
                self.log_dir
                or os.environ.get("TENSORBOARD_LOGGING_DIR")
                or getattr(args, "logging_dir", None)
                or os.path.join(args.output_dir, "runs", f"{datetime.now():%b%d_%H-%M-%S}_{socket.gethostname()}")
            )
        if getattr(state, "is_hyper_param_search", False) and getattr(state, "trial_name", None):
            return os.path.join(self._base, state.trial_name)
        return self._base

    def _writer(self, args: Any, state: Any) -> SummaryWriter:
        directory = self.run_directory(args, state) if self._own_writer or self.tb_writer is None else None
        if self.tb_writer is not None and directory is not None and self.tb_writer.get_logdir() != directory:
            self.tb_writer.close()  # a new trial of a search: a run of its own
            self.tb_writer = None
        if self.tb_writer is None:
            self.tb_writer = SummaryWriter(directory, **self._writer_kwargs)
            self._own_writer = True
        return self.tb_writer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        writer = self._writer(args, state)
        writer.add_text("args", args.to_json_string())
        config = getattr(kwargs.get("model"), "config", None)
        if config is not None:
            writer.add_text("model_config", config.to_json_string())

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        writer = self.tb_writer if self.tb_writer is not None else self._writer(args, state)
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)):
                writer.add_scalar(tag_of(key), value, state.global_step)
            elif isinstance(value, str):
                writer.add_text(tag_of(key), value, state.global_step)
            else:
                log.warning("not logged to TensorBoard: %s = %r is neither a number nor a string", key, value)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Everything of the training on disk now, as the stock callback's close() does; the writer
        # stays open for an evaluate() or predict() after train().
        if self.tb_writer is not None:
            self.tb_writer.flush()

    def close(self) -> bool:
        """Closes the writer: whether everything logged is on disk. Logging after it opens the
        writer again, in the same run."""
        return self.tb_writer.close() if self.tb_writer is not None else True
