"""Log directories, run names and tags that are bad paths: `..`, absolute paths, links out of the
tree, NUL characters, 4 KiB names, undecodable bytes (lone surrogates).

Where the client can tell, the call raises, naming the argument, and nothing of it is logged;
where only the daemon can (a link made after the writer opened, a peer that skips the client's
checks), it refuses the record and counts it by reason in `logger-daemon status`, and the writer's
`stats()` shows it. Either way nothing is written outside the log directory and the writer's
other records all arrive. A tag is a name, not a path: one that looks like a path is written as it
is, in the writer's own file.

The in-process checks of each argument are in tests/test_arguments.py; a raw peer's run names with
`..`, absolute paths and links are in tests/test_daemon.py::test_a_raw_client_cannot_write_outside_the_logdir.
Faults suite: a real daemon; the files read back with TensorBoard's loader.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from daemon_cli import status_json
from raw_peer import RawPeer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logger_client import SummaryWriter, protocol
from logger_client.protocol import MessageKind, RecordKind

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

BAD_TEXT = "run\udcff"  # os.fsdecode(b"run\xff"): undecodable bytes in a name


def scalars(path: str) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(path, size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def tree(path) -> set[str]:
    """Every file and directory below `path`, relative to it (links not followed)."""
    found = set()
    for directory, names, files in os.walk(path):
        for name in names + files:
            found.add(os.path.relpath(os.path.join(directory, name), path))
    return found


def refused_calls(logdir: str) -> list[tuple[str, Callable[[SummaryWriter], Any], type[Exception], str]]:
    """(case, call, error, what its message says): each names the argument it refuses."""
    hparams = ({"lr": 0.1}, {"accuracy": 1.0})
    return [
        ("main_tag ..", lambda w: w.add_scalars("../escape", {"a": 1.0}, 0), ValueError, "main_tag '../escape'"),
        ("main_tag absolute", lambda w: w.add_scalars("/escape", {"a": 1.0}, 0), ValueError, "main_tag '/escape'"),
        ("key ..", lambda w: w.add_scalars("g", {"../../x": 1.0}, 0), ValueError, "key '../../x' would leave"),
        ("key absolute", lambda w: w.add_scalars("g", {"/x": 1.0}, 0), ValueError, "key '/x' would leave"),
        ("key NUL", lambda w: w.add_scalars("g", {"a\0b": 1.0}, 0), ValueError, "tag_scalar_dict key .* NUL"),
        ("key 4 KiB", lambda w: w.add_scalars("g", {"k" * 4097: 1.0}, 0), ValueError, "key has 4097 characters"),
        ("key 256 bytes", lambda w: w.add_scalars("g", {"k" * 256: 1.0}, 0), ValueError, "key 'k+' names a .*256"),
        ("key undecodable", lambda w: w.add_scalars("g", {BAD_TEXT: 1.0}, 0), ValueError, "key is not valid text"),
        ("tag 4 KiB", lambda w: w.add_scalar("t" * 4097, 1.0, 0), ValueError, "tag has 4097 characters"),
        ("tag undecodable", lambda w: w.add_scalar(BAD_TEXT, 1.0, 0), ValueError, "tag is not valid text"),
        ("run_name ..", lambda w: w.add_hparams(*hparams, run_name="../x"), ValueError, "run_name '../x' must"),
        ("run_name absolute", lambda w: w.add_hparams(*hparams, run_name="/x"), ValueError, "run_name '/x' must"),
        ("run_name 256 bytes", lambda w: w.add_hparams(*hparams, run_name="r" * 256), ValueError, "run_name .*256"),
        ("run_name undecodable", lambda w: w.add_hparams(*hparams, run_name=BAD_TEXT), ValueError, "run_name is not"),
        ("embedding tag ..", lambda w: w.add_embedding(np.eye(3), tag=".."), ValueError, "tag '..' cannot name"),
        ("logdir NUL", lambda w: SummaryWriter(logdir + "/a\0b"), ValueError, "logdir must not contain a NUL"),
        ("logdir undecodable", lambda w: SummaryWriter(logdir + "/" + BAD_TEXT), ValueError, "logdir is not valid"),
        (
            "logdir bytes",
            lambda w: SummaryWriter(os.fsencode(logdir)),  # type: ignore[arg-type]
            TypeError,
            "logdir must be a str",
        ),
        ("logdir 4 KiB", lambda w: SummaryWriter(logdir + "/" + "d" * 4096), OSError, "logdir cannot be created"),
        ("suffix a path", lambda w: SummaryWriter(logdir, filename_suffix="/x"), ValueError, "filename_suffix"),
    ]


def test_names_the_client_can_judge_are_refused_at_the_call_and_the_rest_arrives(daemon, logdir, tmp_path):
    (tmp_path / "outside").mkdir()
    before = tree(tmp_path)
    writer = SummaryWriter(logdir)
    calls = refused_calls(logdir)
    for step, (_case, call, error, message) in enumerate(calls):
        writer.add_scalar("good", float(step), step)
        with pytest.raises(error, match=message):
            call(writer)
        writer.add_scalars("group", {"ok": float(step)}, step)  # add_scalars' runs work alongside
    # Tags that look like paths are names, written in the writer's own file (cleaned as
    # tensorboardX cleans them: a leading "/" goes).
    path_like = {
        "../../escape": "../../escape",
        "/etc/passwd": "etc/passwd",
        "a/../b": "a/../b",
        "t" * 4096: "t" * 4096,
    }
    for tag in path_like:
        writer.add_scalar(tag, 1.0, 0)
    # A log dir with `..` is a path like any other: where it leads is the writer's own choice.
    dotted = SummaryWriter(os.path.join(logdir, "x", "..", "dotted"))
    dotted.add_scalar("good", 1.0, 0)
    assert dotted.close(timeout=20) is True
    assert writer.close(timeout=20) is True

    assert writer.stats()["records_dropped"] == {} and status_json()["records_dropped"] == {}
    found = scalars(logdir)
    assert found["good"] == [(step, float(step)) for step in range(len(calls))]
    assert all(found[written] == [(0, 1.0)] for written in path_like.values())
    assert scalars(os.path.join(logdir, "group", "ok"))["group"] == [(step, float(step)) for step in range(len(calls))]
    assert scalars(os.path.join(logdir, "dotted")) == {"good": [(0, 1.0)]}
    # Nothing written outside the log directory; in it only the runs logged, and `x`, which the
    # `dotted` writer's os.makedirs made on its way (as tensorboardX's does).
    assert all(path.startswith("runs" + os.sep) for path in tree(tmp_path) - before)
    runs = {name for name in os.listdir(logdir) if not name.startswith("events.out.tfevents.")}
    assert runs == {"group", "dotted", "x"}


def test_a_link_out_of_the_tree_made_after_the_writer_opened_is_refused_by_the_daemon(daemon, logdir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    writer = SummaryWriter(logdir)
    writer.add_scalars("swap", {"a": 0.0}, 0)
    writer.add_scalar("good", 0.0, 0)
    assert writer.flush(timeout=20) is True
    # Links made after the writer opened: the client does not look at the file system (the
    # daemon may see another one, and a link can appear between the call and the write).
    os.symlink(outside, os.path.join(logdir, "escape"))  # a run directory that is a link
    os.mkdir(os.path.join(logdir, "deep"))
    os.symlink(outside, os.path.join(logdir, "deep", "b"))  # a link below a run's first part
    os.rename(os.path.join(logdir, "swap"), os.path.join(logdir, "swapped"))
    os.symlink(outside, os.path.join(logdir, "swap"))  # swapped for a link while it is written
    writer.add_scalars("escape", {"a": 1.0}, 1)
    writer.add_scalars("deep", {"b": 1.0}, 1)
    writer.add_scalars("swap", {"a": 1.0}, 1)  # goes on in the file the daemon had open
    writer.add_scalar("good", 1.0, 1)
    assert writer.flush(timeout=20) is False  # two records were refused
    assert writer.stats()["records_dropped"] == {"bad_run_name": 2}
    assert status_json()["records_dropped"] == {"bad_run_name": 2}
    writer.add_scalar("good", 2.0, 2)
    assert writer.close(timeout=20) is True

    assert os.listdir(outside) == []
    assert scalars(logdir)["good"] == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert scalars(os.path.join(logdir, "swapped", "a"))["swap"] == [(0, 0.0), (1, 1.0)]
    logged, written = 7, writer.stats()["records_written"]
    assert written + 2 == logged


def test_bad_names_from_a_peer_that_skips_the_clients_checks_are_counted_by_reason(daemon, runtime_dir, logdir):
    """What the client refuses at the call, sent anyway by a raw peer: the daemon refuses each
    record (or the message it cannot decode) and counts it by reason; the good records arrive."""
    peer = RawPeer(runtime_dir)
    scalar = int(RecordKind.SCALAR)

    def opened(writer: int, options: dict) -> list:
        return [int(RecordKind.OPEN), writer, "", "", 0, time.time(), options]

    try:
        peer.send_message(MessageKind.HELLO, {"pid": os.getpid(), "host": "raw"})
        peer.wait_for_reply(MessageKind.WELCOME)
        records = [
            opened(1, {"logdir": logdir}),
            [scalar, 1, "", "good", 1, 1.0, 1.0],
            [scalar, 1, "a\0b", "t", 1, 1.0, 1.0],  # bad_run_name
            [scalar, 1, "r" * (protocol.MAX_NAME_CHARS + 1), "t", 1, 1.0, 1.0],  # malformed_record
            [scalar, 1, "r" * 256, "t", 1, 1.0, 1.0],  # io_error: no directory has such a name
            [scalar, 1, "", "t" * (protocol.MAX_NAME_CHARS + 1), 1, 1.0, 1.0],  # malformed_record
            opened(2, {"logdir": "relative/dir"}),  # bad_logdir, and its record unknown_writer
            [scalar, 2, "", "t", 1, 1.0, 1.0],
            opened(3, {"logdir": logdir + "/a\0b"}),  # bad_logdir, and its record unknown_writer
            [scalar, 3, "", "t", 1, 1.0, 1.0],
            [scalar, 1, "", "good", 2, 1.0, 2.0],
        ]
        peer.send_message(MessageKind.RECORDS, {"records": records})
        # A run name that is not UTF-8 at all: the message cannot be decoded, and is refused whole.
        peer.seq += 1
        frames = protocol.encode(
            MessageKind.RECORDS, {"cid": peer.cid, "seq": peer.seq, "records": [[scalar, 1, "RUNX", "t", 3, 1.0, 3.0]]}
        )
        frames[1] = frames[1].replace(b"\xa4RUNX", b"\xa4RU\xffX")
        peer.send(frames)
        refused = peer.wait_for_reply(MessageKind.REFUSED)
        assert refused["reason"] == "malformed_message" and "utf-8" in refused["detail"], refused
        peer.seq -= 1  # never taken: the next message reuses its number
        peer.wait_acked(peer.send_message(MessageKind.FLUSH, {}))
    finally:
        peer.close()
    status = status_json()
    assert status["records_dropped"] == {
        "bad_run_name": 1,
        "malformed_record": 2,
        "io_error": 1,
        "bad_logdir": 2,
        "unknown_writer": 2,
        "malformed_message": 1,
    }
    assert status["records_written"] == 2
    assert scalars(logdir)["good"] == [(1, 1.0), (2, 2.0)]
    assert sorted(os.listdir(logdir)) == [name for name in os.listdir(logdir) if name.startswith("events.out")]
