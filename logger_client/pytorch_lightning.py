"""Lightning's TensorBoardLogger writing through the logging daemon, for the `pytorch_lightning`
package (with `lightning_fabric`):

    from pytorch_lightning import Trainer
    from logger_client.pytorch_lightning import TensorBoardLogger

    trainer = Trainer(logger=TensorBoardLogger("tb_logs", name="my_model"))

Importing this module imports `pytorch_lightning`. For `lightning.pytorch`, use
`logger_client.lightning`. See `TensorBoardLogger` for what it writes.
"""

from __future__ import annotations

from ._lightning import logger_class

__all__ = ["TensorBoardLogger"]

TensorBoardLogger = logger_class("pytorch_lightning", "lightning_fabric")
