"""Lightning's TensorBoardLogger writing through the logging daemon, for `lightning.pytorch`:

    from lightning.pytorch import Trainer
    from logger_client.lightning import TensorBoardLogger

    trainer = Trainer(logger=TensorBoardLogger("tb_logs", name="my_model"))

Importing this module imports `lightning`. For the `pytorch_lightning` package, use
`logger_client.pytorch_lightning`. See `TensorBoardLogger` for what it writes.
"""

from __future__ import annotations

from ._lightning import logger_class

__all__ = ["TensorBoardLogger"]

TensorBoardLogger = logger_class("lightning.pytorch", "lightning.fabric")
