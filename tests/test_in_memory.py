"""The in-memory transport: a SummaryWriter with no daemon, for tests of training code, and the
discarding transport of `write_to_disk=False`."""

from __future__ import annotations

import numpy as np
import pytest

from logger_client import SummaryWriter
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import RecordKind


def test_a_writer_on_an_in_memory_transport_keeps_every_record_in_order(tmp_path):
    transport = InMemoryTransport()
    writer = SummaryWriter(str(tmp_path / "run"), transport=transport)
    for step in range(3):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.add_scalars("group", {"a": 1.0, "b": 2.0}, 3)
    values = np.arange(6.0)
    writer.add_histogram("weights", values, 4)
    values[:] = -1  # the record holds its own copy
    writer.add_text("notes", "hello", 5)
    assert writer.flush() and writer.close()
    records = transport.records()
    assert [(r.kind, r.run, r.tag, r.step) for r in records] == [
        (RecordKind.SCALAR, "", "loss", 0),
        (RecordKind.SCALAR, "", "loss", 1),
        (RecordKind.SCALAR, "", "loss", 2),
        (RecordKind.SCALAR, "group/a", "group", 3),
        (RecordKind.SCALAR, "group/b", "group", 3),
        (RecordKind.HISTOGRAM, "", "weights", 4),
        (RecordKind.TEXT, "", "notes", 5),
    ]
    assert records[1].value == 0.5
    np.testing.assert_array_equal(records[5].value, np.arange(6.0))
    assert records[5].options == {"bins": "tensorflow", "max_bins": None}
    assert next(iter(transport.writers.values()))["logdir"].endswith("run")
    assert writer.stats()["records_written"] == 7
    assert not (tmp_path / "run").exists()  # nothing reached a disk


def test_an_in_memory_writer_checks_arguments_as_the_real_one(tmp_path):
    writer = SummaryWriter(str(tmp_path), transport=InMemoryTransport())
    with pytest.raises(TypeError, match="tag"):
        writer.add_scalar(3, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dataformats"):
        writer.add_image("img", np.zeros((3, 4, 4)), dataformats="XYZ")


def test_write_to_disk_false_discards_everything(tmp_path):
    writer = SummaryWriter(str(tmp_path / "nothing"), write_to_disk=False)
    for step in range(10_000):
        writer.add_scalar("loss", 0.1, step)
    writer.add_image("img", np.zeros((3, 4, 4)), 0)
    assert writer.stats()["queued"] == 0 and writer.stats()["records_written"] == 0
    assert writer.close()
    assert not (tmp_path / "nothing").exists()
