"""`logger_client.lightning.TensorBoardLogger` (and `logger_client.pytorch_lightning`'s): a Lightning
Trainer trains a tiny model with our logger and with Lightning's stock one, and TensorBoard's loader
reads the same tags, scalars, hparams plugin data (with `hp_metric`), graph and `hparams.yaml` from
both. Ours goes through a real daemon and never opens a torch writer."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from test_parity import assert_same

from logger_daemon.protos.plugin_hparams_pb2 import HParamsPluginData

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

import lightning.pytorch as L  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger as StockLogger  # noqa: E402
from lightning.pytorch.utilities.rank_zero import rank_zero_only  # noqa: E402

from logger_client import SummaryWriter  # noqa: E402
from logger_client.lightning import TensorBoardLogger  # noqa: E402

#: e2e as a whole: importing Lightning takes seconds (see conftest's pytest_ignore_collect).
pytestmark = pytest.mark.e2e

GUIDANCE = {ea.SCALARS: 0, ea.TENSORS: 0, ea.GRAPH: 0, ea.RUN_METADATA: 0}


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def no_torch_writer() -> Iterator[None]:
    """Fails any attempt to open a torch.utils.tensorboard writer within the block."""
    from torch.utils import tensorboard

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a torch.utils.tensorboard SummaryWriter was opened")

    original = tensorboard.SummaryWriter.__init__
    tensorboard.SummaryWriter.__init__ = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        tensorboard.SummaryWriter.__init__ = original  # type: ignore[method-assign]


def tiny_module(lightning: Any) -> Any:
    """A LightningModule of `lightning` (lightning.pytorch or pytorch_lightning) with hyperparameters
    and an example input (for the graph)."""

    class Tiny(lightning.LightningModule):
        def __init__(self, lr: float = 0.1, hidden: int = 4, activation: str = "relu", nested: Any = None) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
            self.example_input_array = torch.zeros(2, 3)

        def forward(self, x: Any) -> Any:
            return self.net(x)

        def training_step(self, batch: Any, index: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, index: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return Tiny(nested={"depth": 2, "norm": True})


def fit(lightning: Any, logger: Any, epochs: int = 2) -> Any:
    lightning.seed_everything(0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    trainer = lightning.Trainer(
        max_epochs=epochs,
        logger=logger,
        log_every_n_steps=2,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(tiny_module(lightning), data, data)
    return trainer


def snapshot(directory: str) -> dict[str, Any]:
    """What TensorBoard's loader reads from one run: tags, scalars, the hparams plugin's
    contents, the graph and its run metadata."""
    acc = ea.EventAccumulator(directory, size_guidance=GUIDANCE).Reload()
    tags = acc.Tags()
    try:
        hparams = {tag: HParamsPluginData.FromString(c) for tag, c in acc.PluginTagToContent("hparams").items()}
    except KeyError:
        hparams = {}
    return {
        "tags": {kind: tags[kind] for kind in (ea.SCALARS, ea.TENSORS, ea.GRAPH, ea.RUN_METADATA)},
        "scalars": {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags[ea.SCALARS]},
        "hparams": hparams,
        "graph": acc.Graph() if tags[ea.GRAPH] else None,
        "run_metadata": {tag: acc.RunMetadata(tag) for tag in tags[ea.RUN_METADATA]},
    }


def read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read()


def event_dirs(root: str) -> list[str]:
    return sorted(
        os.path.relpath(directory, root)
        for directory, _, files in os.walk(root)
        if any(name.startswith("events.out.tfevents") for name in files)
    )


@pytest.mark.e2e
def test_a_trainer_writes_through_our_logger_what_lightning_s_logger_writes(runtime_dir: str, tmp_path) -> None:
    ours_root, theirs_root = str(tmp_path / "ours"), str(tmp_path / "theirs")
    with no_torch_writer():
        trainer = fit(L, TensorBoardLogger(ours_root, log_graph=True))
    logger = trainer.logger
    assert isinstance(logger.experiment, SummaryWriter)
    assert logger.log_dir == os.path.join(ours_root, "lightning_logs", "version_0") == trainer.log_dir
    assert logger.experiment.stats()["records_dropped"] == {}
    ours = snapshot(logger.log_dir)
    reference = fit(L, StockLogger(theirs_root, log_graph=True))
    theirs = snapshot(reference.logger.log_dir)

    assert event_dirs(ours_root) == event_dirs(theirs_root) == [os.path.join("lightning_logs", "version_0")]
    assert sorted(ours["scalars"]) == ["epoch", "hp_metric", "train_loss", "val_loss"]
    assert ours["scalars"]["hp_metric"] == [(0, -1.0)]
    assert len(ours["scalars"]["val_loss"]) == 2  # one a validation epoch
    experiment = ours["hparams"]["_hparams_/experiment"].experiment
    assert [info.name.tag for info in experiment.metric_infos] == ["hp_metric"]
    start = ours["hparams"]["_hparams_/session_start_info"].session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.1)
    assert start.hparams["activation"].string_value == "relu"
    assert start.hparams["nested/depth"].number_value == 2  # flattened, as Lightning flattens
    assert ours["graph"] is not None and ours["tags"][ea.RUN_METADATA] == ["step1"]
    assert_same(ours, theirs)
    assert read(logger.log_dir, "hparams.yaml") == read(reference.logger.log_dir, "hparams.yaml")


@pytest.mark.e2e
def test_hyperparameters_metrics_prefix_and_versions_as_lightning_s(runtime_dir: str, tmp_path) -> None:
    """The logger's own calls, outside a Trainer: explicit metrics and step, a prefix, a sub_dir,
    dict metrics, no default hp_metric, the next version; both loggers read back alike."""

    def calls(logger: Any) -> None:
        logger.log_hyperparams({"lr": 0.01, "opt": {"name": "adam", "betas": (0.9, 0.99)}, "flag": True})
        logger.log_hyperparams({"lr": 0.02}, {"acc": 0.5, "loss": torch.tensor(0.25)}, step=3)
        logger.log_metrics({"loss": torch.tensor(1.5), "acc": 0.75}, step=4)
        logger.log_metrics({"pair": {"a": 1.0, "b": 2.0}}, step=5)
        logger.save()
        logger.finalize("success")

    for root in ("ours", "theirs"):
        for number in range(2):  # version_0 exists: the second logger takes version_1
            kind = TensorBoardLogger if root == "ours" else StockLogger
            logger = kind(str(tmp_path / root), name="exp", prefix="p", sub_dir="sub", default_hp_metric=bool(number))
            assert logger.version == number
            calls(logger)
    for version in ("version_0", "version_1"):
        ours_dir, theirs_dir = (str(tmp_path / root / "exp" / version / "sub") for root in ("ours", "theirs"))
        ours, theirs = snapshot(ours_dir), snapshot(theirs_dir)
        assert_same(ours, theirs)
        assert read(ours_dir, "hparams.yaml") == read(theirs_dir, "hparams.yaml")
    first = snapshot(str(tmp_path / "ours" / "exp" / "version_1" / "sub"))
    assert first["scalars"]["p-hp_metric"] == [(0, -1.0)] and first["scalars"]["p-acc"] == [(3, 0.5), (4, 0.75)]
    # add_scalars' sub-runs: tensorboardX's layout <main_tag>/<key> (torch's writer: <main_tag>_<key>).
    for version in ("version_0", "version_1"):
        ours_dirs = event_dirs(str(tmp_path / "ours" / "exp" / version))
        assert ours_dirs == ["sub", "sub/p-pair/a", "sub/p-pair/b"]
        assert event_dirs(str(tmp_path / "theirs" / "exp" / version)) == ["sub", "sub/p-pair_a", "sub/p-pair_b"]
        for key in ("a", "b"):
            ours_run = snapshot(str(tmp_path / "ours" / "exp" / version / "sub" / "p-pair" / key))
            theirs_run = snapshot(str(tmp_path / "theirs" / "exp" / version / "sub" / f"p-pair_{key}"))
            assert ours_run["scalars"] == theirs_run["scalars"] == {"p-pair": [(5, 1.0 if key == "a" else 2.0)]}


def test_only_global_rank_zero_writes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On other ranks the experiment is Lightning's do-nothing stand-in: no writer, no daemon, no files."""
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = TensorBoardLogger(str(tmp_path), log_graph=True)
    assert not isinstance(logger.experiment, SummaryWriter)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.log_graph(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    logger.save()
    logger.finalize("success")
    assert os.listdir(tmp_path) == []


def test_the_constructor_takes_lightning_s_arguments_and_defaults() -> None:
    import inspect

    ours = inspect.signature(TensorBoardLogger).parameters
    theirs = inspect.signature(StockLogger).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]
    assert issubclass(TensorBoardLogger, StockLogger)


@pytest.mark.e2e
def test_the_pytorch_lightning_package_gets_its_own_logger(runtime_dir: str, tmp_path) -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from logger_client.pytorch_lightning import TensorBoardLogger as PLLogger

    assert issubclass(PLLogger, pl.loggers.TensorBoardLogger)
    with no_torch_writer():
        trainer = fit(pl, PLLogger(str(tmp_path), log_graph=True), epochs=1)
    assert trainer.log_dir == trainer.logger.log_dir  # the Trainer knows it for one of its own
    found = snapshot(trainer.logger.log_dir)
    assert sorted(found["scalars"]) == ["epoch", "hp_metric", "train_loss", "val_loss"]
    assert sorted(found["hparams"]) == [
        "_hparams_/experiment",
        "_hparams_/session_end_info",
        "_hparams_/session_start_info",
    ]
    assert found["graph"] is not None
