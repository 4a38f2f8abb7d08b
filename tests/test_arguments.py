"""Arguments the daemon could not take are refused at the call, naming the argument, and nothing is
queued: text that is not valid UTF-8 (lone surrogates from undecodable bytes), names too long (a
run directory's name too, past the 255 bytes file systems take), NUL characters in paths. In
process, on an in-memory transport; tests/faults/test_bad_paths.py has the same through a daemon."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from logger_client import SummaryWriter, protocol
from logger_client._producer import pack_records
from logger_client.in_memory import InMemoryTransport
from logger_client.protocol import SCALAR_ROW, RecordKind

BAD_TEXT = "loss\udcff"  # what os.fsdecode gives for the byte 0xff
LONG = "t" * (protocol.MAX_NAME_CHARS + 1)


def writer(tmp_path: Any) -> tuple[SummaryWriter, InMemoryTransport]:
    transport = InMemoryTransport()
    return SummaryWriter(str(tmp_path), transport=transport), transport


CALLS: list[tuple[str, Callable[[SummaryWriter], Any], type[Exception], str]] = [
    ("scalar tag", lambda w: w.add_scalar(BAD_TEXT, 1.0, 0), ValueError, "tag is not valid text"),
    ("histogram tag", lambda w: w.add_histogram(BAD_TEXT, np.arange(3.0), 0), ValueError, "tag"),
    ("image tag", lambda w: w.add_image(BAD_TEXT, np.zeros((3, 2, 2)), 0), ValueError, "tag"),
    ("text tag", lambda w: w.add_text(BAD_TEXT, "x", 0), ValueError, "tag"),
    ("text", lambda w: w.add_text("t", BAD_TEXT, 0), ValueError, "text_string is not valid text"),
    ("main_tag", lambda w: w.add_scalars(BAD_TEXT, {"a": 1.0}, 0), ValueError, "main_tag"),
    ("scalars key", lambda w: w.add_scalars("m", {BAD_TEXT: 1.0}, 0), ValueError, "tag_scalar_dict key"),
    ("scalars key NUL", lambda w: w.add_scalars("m", {"a\0b": 1.0}, 0), ValueError, "NUL"),
    ("display_name", lambda w: w.add_scalar("t", 1.0, 0, display_name=BAD_TEXT), ValueError, "display_name"),
    ("long tag", lambda w: w.add_scalar(LONG, 1.0, 0), ValueError, "tag has 4097 characters"),
    ("long text tag", lambda w: w.add_text(LONG, "x", 0), ValueError, "tag has"),
    (
        "scalars key too long for a directory",
        lambda w: w.add_scalars("m", {"k" * 256: 1.0}, 0),
        ValueError,
        "256 bytes",
    ),
    (
        "hparams run_name",
        lambda w: w.add_hparams({"a": 1}, {"m": 1.0}, run_name=BAD_TEXT),
        ValueError,
        "run_name is not",
    ),
    ("long hparams run_name", lambda w: w.add_hparams({"a": 1}, {"m": 1.0}, run_name=LONG), ValueError, "run_name has"),
    (
        "hparams run_name too long for a directory",
        lambda w: w.add_hparams({"a": 1}, {"m": 1.0}, run_name="r" * 256),
        ValueError,
        "run_name 'r.* 256 bytes",
    ),
]


@pytest.mark.parametrize("name, call, error, message", CALLS, ids=[c[0] for c in CALLS])
def test_text_the_wire_cannot_carry_is_refused_at_the_call(tmp_path, name, call, error, message):
    w, transport = writer(tmp_path)
    with pytest.raises(error, match=message):
        call(w)
    w.add_scalar("good", 1.0, 0)  # the writer goes on
    assert [(r.tag, r.value) for r in transport.records()] == [("good", 1.0)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"logdir": "runs/\udcff"}, "logdir is not valid text"),
        ({"logdir": "runs/a\0b"}, "NUL"),
        ({"filename_suffix": ".\udcff"}, "filename_suffix is not valid text"),
    ],
)
def test_a_constructor_argument_the_daemon_cannot_take_is_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SummaryWriter(**{"logdir": str(tmp_path), **kwargs}, transport=InMemoryTransport())


def test_a_record_msgpack_refuses_is_left_out_of_its_batch_and_counted():
    row = SCALAR_ROW.pack(0, 1, 1.0, 2.0)
    bad = (RecordKind.TEXT, 1, "", "t", 0, 1.0, object())  # no writer makes one: a bug must not cost the batch
    good = (RecordKind.TEXT, 1, "", "t", 1, 1.0, "kept")
    packed, controls, refused = pack_records([row, bad, row, good])
    assert (controls, refused) == (0, 1)
    assert msgpack.unpackb(packed) == [row, row, list(good)]
