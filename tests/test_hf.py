"""`logger_client.hf.TensorBoardCallback`: a transformers Trainer (a tiny BERT made from a config,
nothing downloaded) trains and then evaluates; every metric of both is in our run, read back by
TensorBoard's loader, and no torch.utils.tensorboard writer is opened."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from test_lightning import event_dirs, no_torch_writer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils.data import Dataset  # noqa: E402

from logger_client import hf  # noqa: E402
from logger_client.hf import TensorBoardCallback, tag_of  # noqa: E402
from logger_client.testing import RecordingWriter  # noqa: E402

#: e2e as a whole: importing transformers takes seconds (see conftest's pytest_ignore_collect).
pytestmark = pytest.mark.e2e

EPOCHS = 2
EXAMPLES = 16
BATCH = 4


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class Examples(Dataset):
    """Random token sequences with a label: enough for a Trainer to train and evaluate."""

    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 32, (count, 8), generator=generator)
        self.labels = torch.randint(0, 2, (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "input_ids": self.ids[index],
            "attention_mask": torch.ones(8, dtype=torch.long),
            "labels": self.labels[index],
        }


def tiny_trainer(output_dir: str, callback: TensorBoardCallback) -> Any:
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=2,
    )
    args = transformers.TrainingArguments(
        output_dir,
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        logging_steps=1,
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return transformers.Trainer(
        model=transformers.BertForSequenceClassification(config),
        args=args,
        train_dataset=Examples(EXAMPLES, 0),
        eval_dataset=Examples(8, 1),
        callbacks=[callback],
    )


@pytest.mark.e2e
def test_a_trainer_trains_then_evaluates_into_our_run(runtime_dir: str, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    run = str(tmp_path / "tb" / "run")
    output = str(tmp_path / "output")
    callback = TensorBoardCallback(run)
    with no_torch_writer():
        trainer = tiny_trainer(output, callback)
        trainer.train()
        after_training = trainer.evaluate()
        assert callback.close() is True
    steps = EPOCHS * EXAMPLES // BATCH
    assert trainer.state.global_step == steps
    acc = ea.EventAccumulator(run, size_guidance={ea.SCALARS: 0, ea.TENSORS: 0}).Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()[ea.SCALARS]}
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, steps + 1))
    # One evaluation per epoch during train(), and the evaluate() after it at the last step.
    assert [step for step, _ in scalars["eval/loss"]] == [steps // 2, steps, steps]
    assert scalars["eval/loss"][-1][1] == pytest.approx(after_training["eval_loss"])
    for tag in ("train/learning_rate", "train/grad_norm", "train/epoch", "train/train_runtime", "eval/runtime"):
        assert tag in scalars, tag
    texts = acc.Tags()[ea.TENSORS]
    assert {"args/text_summary", "model_config/text_summary"} <= set(texts)
    assert json.loads(acc.Tensors("args/text_summary")[0].tensor_proto.string_val[0])["num_train_epochs"] == EPOCHS
    assert event_dirs(str(tmp_path)) == [os.path.join("tb", "run")]  # nothing in <output>/runs
    assert callback.tb_writer is not None and callback.tb_writer.stats()["records_dropped"] == {}


def state(**changes: Any) -> Any:
    return SimpleNamespace(
        **{
            "is_world_process_zero": True,
            "is_hyper_param_search": False,
            "trial_name": None,
            "global_step": 3,
            **changes,
        }
    )


def arguments(output_dir: str, **fields: Any) -> Any:
    return SimpleNamespace(output_dir=output_dir, to_json_string=lambda: '{"output_dir": "out"}', **fields)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[RecordingWriter]:
    """The callback's writers, made as RecordingWriters (no daemon)."""
    made: list[RecordingWriter] = []

    def make(*args: Any, **kwargs: Any) -> RecordingWriter:
        made.append(RecordingWriter(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(hf, "SummaryWriter", make)
    return made


def test_logs_are_tagged_as_transformers_tags_them(recording: list[RecordingWriter], tmp_path) -> None:
    callback = TensorBoardCallback(str(tmp_path))
    callback.on_log(
        arguments("out"), state(), None, logs={"loss": 0.5, "eval_acc": 1, "test_f1": 0.25, "note": "x", "bad": [1]}
    )
    (writer,) = recording
    assert writer.tags() == ["eval/acc", "test/f1", "train/loss", "train/note"]
    assert writer.scalars("train/loss") == [(3, 0.5)] and writer.texts("train/note") == [(3, "x")]
    assert [tag_of(key) for key in ("eval_loss", "test_loss", "epoch")] == ["eval/loss", "test/loss", "train/epoch"]


def test_the_run_directory_as_transformers_chooses_it(recording: list[RecordingWriter], tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = str(tmp_path / "out")
    default = TensorBoardCallback()
    default.on_train_begin(arguments(out), state(), None)
    directory = recording[-1].get_logdir()
    assert os.path.dirname(directory) == os.path.join(out, "runs")
    default.on_train_begin(arguments(out), state(), None)  # train() again: the same run, the same writer
    assert len(recording) == 1
    default.on_train_begin(arguments(out), state(is_hyper_param_search=True, trial_name="t1"), None)
    assert recording[-1].get_logdir() == os.path.join(directory, "t1")  # a trial's own run
    assert [call.method for call in recording[0].calls][-1] == "close"
    TensorBoardCallback().on_log(arguments(out, logging_dir=str(tmp_path / "old")), state(), None, logs={"a": 1})
    assert recording[-1].get_logdir() == str(tmp_path / "old")  # transformers 4's logging_dir
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "env"))
    TensorBoardCallback().on_log(arguments(out), state(), None, logs={"a": 1})
    assert recording[-1].get_logdir() == str(tmp_path / "env")


def test_a_given_writer_is_kept_and_other_processes_log_nothing(recording: list[RecordingWriter], tmp_path) -> None:
    given = RecordingWriter(str(tmp_path))
    callback = TensorBoardCallback(tb_writer=given)
    callback.on_train_begin(arguments("out"), state(is_hyper_param_search=True, trial_name="t"), None)
    callback.on_log(arguments("out"), state(), None, logs={"loss": 1.0})
    callback.on_train_end(arguments("out"), state(), None)
    callback.on_log(arguments("out"), state(), None, logs={"eval_loss": 2.0})  # after train(): the same writer
    assert recording == [] and given.scalars("train/loss") == [(3, 1.0)] and given.scalars("eval/loss") == [(3, 2.0)]
    assert [call.method for call in given.calls] == ["add_text", "add_scalar", "flush", "add_scalar"]
    other = TensorBoardCallback(str(tmp_path))
    other.on_train_begin(arguments("out"), state(is_world_process_zero=False), None)
    other.on_log(arguments("out"), state(is_world_process_zero=False), None, logs={"loss": 1.0})
    assert recording == [] and other.tb_writer is None
