"""What a run directory already holds, read when a daemon first opens it, so that a daemon that
replaces one that died neither loses nor repeats a point.

After each write cycle the daemon appends to a run's event file a delivery mark: per client, the
id of the last message whose records for this run it has handled. A client whose daemon died
resends every message not acknowledged, with its original id; the new daemon skips the records a
mark covers. A crash can still leave records after the last mark (written, not yet marked): those
are remembered by identity (tag, step, wall time, as written) and skipped when they come again.
Each tag's last step on disk continues the rule that a tag never goes back in steps.

A mark is an Event that carries only a `log_message`, which TensorBoard's loaders (and our reader)
ignore; not `source_metadata`, whose writer name TensorBoard logs as an error past 128 characters.

Each file a daemon starts holds, after its opening mark, a checkpoint of the history it read (the
same kind of Event): a daemon opening the run reads the files from the newest checkpoint on, not
every file the run ever had, so a restart costs the same early and late in a long run.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass, field

from logger_daemon.protos.event_pb2 import Event, LogMessage
from logger_daemon.tfrecord import read_head_records, read_records

log = logging.getLogger("logger_daemon")

#: The start of a delivery mark's `log_message.message`; a JSON map of client id (hex) to id follows.
MARK_PREFIX = "tb-logger-service delivered "
#: The start of a history checkpoint's `log_message.message`; a JSON object follows (`checkpoint`).
CHECKPOINT_PREFIX = "tb-logger-service history "
#: A checkpoint is among a file's first records: file_version, the opening mark, the checkpoint.
_HEAD_RECORDS = 3
#: The identity under which a SessionLog START is remembered (it has no tag).
SESSION_START_TAG = ""

#: (tag as written, step, wall time) of one event.
Identity = tuple[str, int, float]


def delivery_mark(wall_time: float, delivered: dict[bytes, int]) -> bytes:
    """The serialized Event marking, per client, the last message handled for this run."""
    payload = json.dumps({client.hex(): mid for client, mid in sorted(delivered.items())}, separators=(",", ":"))
    mark = LogMessage(level=LogMessage.DEBUGGING, message=MARK_PREFIX + payload)
    return Event(wall_time=wall_time, log_message=mark).SerializeToString()


@dataclass
class RunHistory:
    """What the event files of a run directory hold."""

    #: Per client, the last message id handled for this run.
    delivered: dict[bytes, int] = field(default_factory=dict)
    #: Per tag as written, the step of its last event (since the last SessionLog START).
    last_steps: dict[str, int] = field(default_factory=dict)
    #: Events written after the last delivery mark of their file: a crash left them unmarked.
    unmarked: set[Identity] = field(default_factory=set)


def checkpoint(history: RunHistory) -> str:
    """`history` as a checkpoint's payload (JSON), made when a run is opened: a file started
    later carries what its files held then, not what this daemon has done since."""
    return json.dumps(
        {
            "delivered": {client.hex(): mid for client, mid in sorted(history.delivered.items())},
            "last_steps": history.last_steps,
            "unmarked": sorted(history.unmarked),
        },
        separators=(",", ":"),
    )


def checkpoint_event(wall_time: float, payload: str) -> bytes:
    """The serialized Event carrying a checkpoint's payload (see `checkpoint`)."""
    message = LogMessage(level=LogMessage.DEBUGGING, message=CHECKPOINT_PREFIX + payload)
    return Event(wall_time=wall_time, log_message=message).SerializeToString()


def read_history(directory: str) -> RunHistory:
    """The history of `directory`'s event files, in the order TensorBoard reads them (by name):
    from the newest file that starts with a checkpoint (what the files before it held), or from
    the first file if none does.

    A file's tail after its last valid record (torn by a crash) is ignored, as TensorBoard does.
    Files with no delivery mark (another writer's, or an older daemon's) count for last steps only.
    """
    paths = sorted(glob.glob(os.path.join(glob.escape(directory), "events.out.tfevents.*")))
    history, first = RunHistory(), 0
    for index in range(len(paths) - 1, -1, -1):
        found = _checkpoint_of(paths[index])
        if found is not None:
            history, first = found, index
            break
    for path in paths[first:]:
        try:
            with open(path, "rb") as file:
                records = read_records(file.read())
        except OSError as exc:
            log.warning("cannot read %s for its history: %s", path, exc)
            continue
        _read_file(records, history)
    return history


def _checkpoint_of(path: str) -> RunHistory | None:
    """The checkpoint among the first records of the file at `path`, if it has a valid one."""
    try:
        with open(path, "rb") as file:
            head = read_head_records(file, _HEAD_RECORDS)
    except OSError:
        return None
    for data in head:
        try:
            message = Event.FromString(data).log_message.message
        except Exception:  # protobuf's DecodeError, and anything else a foreign file holds
            return None
        if message.startswith(CHECKPOINT_PREFIX):
            return _parse_checkpoint(message[len(CHECKPOINT_PREFIX) :])
    return None


def _parse_checkpoint(payload: str) -> RunHistory | None:
    try:
        state = json.loads(payload)
        return RunHistory(
            delivered={bytes.fromhex(client): int(mid) for client, mid in state["delivered"].items()},
            last_steps={str(tag): int(step) for tag, step in state["last_steps"].items()},
            unmarked={(str(tag), int(step), float(wall)) for tag, step, wall in state["unmarked"]},
        )
    except (ValueError, KeyError, AttributeError, TypeError):
        log.warning("ignoring a malformed history checkpoint %r", payload[:200])
        return None


def read_file_into(history: RunHistory, data: bytes) -> None:
    """Adds one event file's bytes to `history`; files must come in name order (as in
    `read_history`). For files that are not in a local directory (a remote run's, see `remote`)."""
    _read_file(read_records(data), history)


def _read_file(records: list[bytes], history: RunHistory) -> None:
    marked = False
    since_mark: set[Identity] = set()
    for data in records:
        try:
            event = Event.FromString(data)
        except Exception:  # protobuf's DecodeError, and anything else a foreign file holds
            continue
        message = event.log_message.message
        if message.startswith(MARK_PREFIX):
            marked = True
            since_mark.clear()
            _merge_mark(message[len(MARK_PREFIX) :], history.delivered)
        elif event.HasField("summary"):
            for value in event.summary.value:
                history.last_steps[value.tag] = event.step
                since_mark.add((value.tag, event.step, event.wall_time))
        elif event.HasField("session_log") and event.session_log.status == event.session_log.START:
            history.last_steps.clear()
            since_mark.add((SESSION_START_TAG, event.step, event.wall_time))
    if marked:
        history.unmarked |= since_mark


def _merge_mark(payload: str, delivered: dict[bytes, int]) -> None:
    try:
        marks = json.loads(payload)
        for client_hex, mid in marks.items():
            client = bytes.fromhex(client_hex)
            delivered[client] = max(delivered.get(client, 0), int(mid))
    except (ValueError, AttributeError, TypeError):
        log.warning("ignoring a malformed delivery mark %r", payload[:200])
