"""The encoder of embeddings: the projector's files beside the run's events (no event)."""

from __future__ import annotations

from logger_client.protocol import VALUE, Record, RecordKind, record_options
from logger_daemon.encoders.base import Encoder
from logger_daemon.projector import write_embedding


def encode_embedding(record: Record, run_path: str) -> list[bytes]:
    """Writes the files of an EMBEDDING record (value {mat, (label_img)}; options tag,
    global_step, metadata, metadata_header) in `run_path`. The user's tag and step are in the
    options: the record's own tag and step only order it among the run's embeddings."""
    options = record_options(record)
    tag, step = options.get("tag"), options.get("global_step")
    if type(tag) is not str or type(step) is not int:
        raise ValueError("an embedding record needs the options tag (str) and global_step (int)")
    arrays = record[VALUE]
    if "mat" not in arrays:
        raise ValueError("an embedding record needs the array mat")
    try:
        write_embedding(
            run_path,
            tag,
            step,
            arrays["mat"],
            options.get("metadata"),
            options.get("metadata_header"),
            arrays.get("label_img"),
        )
    except OSError as exc:  # counted as io_error; the message names the embedding
        raise OSError(f"embedding {tag!r} at step {step}: {exc}") from exc
    return []


ENCODERS: dict[int, Encoder] = {RecordKind.EMBEDDING: encode_embedding}
