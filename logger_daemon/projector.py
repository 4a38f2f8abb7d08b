"""The files of TensorBoard's projector, laid out as tensorboardX lays them out in a run directory:

    <run>/projector_config.pbtxt                 one `embeddings { ... }` entry per embedding logged
    <run>/<step, 5 digits>/<tag, escaped>/tensors.tsv    the matrix, one row a line, tab-separated
                                          metadata.tsv   the labels (a header line with columns)
                                          sprite.png     the thumbnails (see `sprite`)

The text of each file is byte for byte tensorboardX's, but for the escaping of strings in the
pbtxt (tensorboardX writes them raw, so a quote in a tag breaks the whole file).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from logger_daemon.sprite import sprite_png

__all__ = [
    "CONFIG_FILE",
    "embedding_subdir",
    "metadata_tsv",
    "pbtxt_entry",
    "tensors_tsv",
    "write_embedding",
]

CONFIG_FILE = "projector_config.pbtxt"
_TAG_ESCAPES = str.maketrans({"%": "%25", "/": "%2f", "\\": "%5c"})
# Text format's escapes for a quoted string; other characters, non-ASCII included, stay as they are.
_PBTXT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PBTXT_ESCAPES.update({chr(code): f"\\{code:03o}" for code in range(0x20) if chr(code) not in _PBTXT_ESCAPES})
_PBTXT_ESCAPES[chr(0x7F)] = "\\177"
_PBTXT_TABLE = str.maketrans(_PBTXT_ESCAPES)


def embedding_subdir(step: int, tag: str) -> str:
    """`<step zero-padded to 5 digits>/<tag>` with `%`, `/` and `\\` of the tag escaped, as
    tensorboardX names an embedding's directory."""
    return f"{str(step).zfill(5)}/{tag.translate(_TAG_ESCAPES)}"


def tensors_tsv(matrix: np.ndarray) -> bytes:
    """tensors.tsv: one line per row, each value as Python's `str` of it (shortest round trip for
    floats, whatever the dtype), tab-separated."""
    if matrix.ndim != 2:
        raise ValueError(f"mat: expected 2-D, got shape {matrix.shape}")
    # The repr of the nested list formats every number in C, a third faster than str() per value;
    # no number's repr holds "[", "]" or ", ", so the brackets and separators are cut exactly.
    text = repr(matrix.tolist())[2:-2].replace(", ", "\t").replace("]\t[", "\n")
    return (text + "\n").encode("ascii")


def metadata_tsv(metadata: Sequence[str] | Sequence[Sequence[str]], header: Sequence[str] | None = None) -> bytes:
    """metadata.tsv: one label a line; with `header`, a header line, then one row of columns a
    line, tab-separated. Labels are written as given (tensorboardX escapes nothing either)."""
    if header:
        lines = ["\t".join(header)] + ["\t".join(_strings(row, "metadata row")) for row in metadata]
    else:
        lines = _strings(metadata, "metadata")
    return "".join([line + "\n" for line in lines]).encode("utf-8")


def pbtxt_entry(tag: str, step: int, has_metadata: bool, image_size: tuple[int, int] | None) -> bytes:
    """One `embeddings { ... }` entry of projector_config.pbtxt, in tensorboardX's text layout;
    `image_size` is a thumbnail's (height, width), when there is a sprite."""
    subdir = embedding_subdir(step, tag)
    lines = [
        "embeddings {",
        f'tensor_name: "{_quoted(tag)}:{str(step).zfill(5)}"',
        f'tensor_path: "{_quoted(subdir)}/tensors.tsv"',
    ]
    if has_metadata:
        lines.append(f'metadata_path: "{_quoted(subdir)}/metadata.tsv"')
    if image_size is not None:
        height, width = image_size
        lines += [
            "sprite {",
            f'image_path: "{_quoted(subdir)}/sprite.png"',
            f"single_image_dim: {width}",
            f"single_image_dim: {height}",
            "}",
        ]
    lines.append("}")
    return "".join([line + "\n" for line in lines]).encode("utf-8")


def write_embedding(
    run_path: str,
    tag: str,
    step: int,
    matrix: np.ndarray,
    metadata: Sequence[str] | Sequence[Sequence[str]] | None = None,
    metadata_header: Sequence[str] | None = None,
    label_img: np.ndarray | None = None,
) -> None:
    """Writes one embedding's files in `run_path` and appends its entry to the run's config.

    Every file's content is made before the first is written, so a value refused (ValueError)
    leaves nothing behind. Each file is replaced whole (written aside, then renamed), so a reader
    never sees half of one; an embedding logged again at the same step and tag replaces the
    files, and its entry is appended again, as tensorboardX does. Raises OSError when a file
    cannot be written.
    """
    if tag in (".", ".."):
        raise ValueError(f"tag {tag!r} cannot name a directory")
    contents = {"tensors.tsv": tensors_tsv(matrix)}
    if metadata is not None:
        if len(metadata) != matrix.shape[0]:
            raise ValueError(f"metadata: {len(metadata)} labels for {matrix.shape[0]} rows of mat")
        contents["metadata.tsv"] = metadata_tsv(metadata, metadata_header)
    image_size = None
    if label_img is not None:
        if label_img.ndim != 4 or label_img.shape[0] != matrix.shape[0]:
            raise ValueError(f"label_img: shape {label_img.shape} for {matrix.shape[0]} rows of mat")
        contents["sprite.png"] = sprite_png(label_img)
        image_size = (label_img.shape[2], label_img.shape[3])
    entry = pbtxt_entry(tag, step, metadata is not None, image_size)
    directory = os.path.join(run_path, embedding_subdir(step, tag))
    os.makedirs(directory, exist_ok=True)
    for name, data in contents.items():
        _replace(os.path.join(directory, name), data)
    with open(os.path.join(run_path, CONFIG_FILE), "ab") as config:
        config.write(entry)


def _replace(path: str, data: bytes) -> None:
    aside = path + ".tmp"
    with open(aside, "wb") as file:
        file.write(data)
    os.replace(aside, path)


def _quoted(text: str) -> str:
    return text.translate(_PBTXT_TABLE)


def _strings(values: Sequence[object], name: str) -> list[str]:
    if not all(type(value) is str for value in values):
        raise TypeError(f"{name}: expected a list of str")
    return list(values)  # type: ignore[arg-type]
