"""The three writers under test, behind one small interface.

Each adapter imports its writer only when asked (a benchmark child imports exactly one of them,
so its memory and start-up are that writer's alone) and opens it the way its users do: default
arguments, one writer per process. Differences that matter for reading the figures:

* `logger_client` - `close()` waits for the daemon's acknowledgement that everything is written
  and fsynced; its return value says whether that happened. The suite passes a long timeout so
  that a slow daemon shows up as a long close, never as a short one with data still in flight.
* `tensorboardX` - importing it imports torch when torch is installed (as here); every call also
  goes through its comet logger hook (disabled by default, as its users get it).
* `torch` - `torch.utils.tensorboard.SummaryWriter`.

Some methods need a package the writer does not import by itself (`NEEDS`). Where it is missing
the writer's method logs nothing (tensorboardX and torch print a message and write an empty
summary value), so `WriterAdapter.missing` says so before anything is timed and the suite reports
that writer's row of the workload as not supported, with the reason. torch.utils.tensorboard 2.13's
add_video imports `moviepy.editor`, which moviepy 2 removed: with moviepy 2 installed (as
tensorboardX 2.6.5 supports) torch's add_video writes no video.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

#: How long the suite lets logger_client's close() wait for the daemon (its default is 10 s).
LOGGER_CLIENT_CLOSE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class WriterAdapter:
    """How to open, close and name one writer."""

    name: str
    description: str
    distribution: str
    _load: Callable[[], type]
    #: Whether close() confirms that everything is on disk (else: close() just returns).
    confirms_close: bool = False

    def load(self) -> type:
        """Imports the writer's class (what `import` costs a user; timed apart from the calls)."""
        return self._load()

    def open(self, logdir: str, filename_suffix: str = "") -> Any:
        """A writer on `logdir`, constructed with its defaults (and `filename_suffix`, if given)."""
        if filename_suffix:
            return self._load()(logdir, filename_suffix=filename_suffix)
        return self._load()(logdir)

    def close(self, writer: Any) -> bool:
        """Closes `writer`; whether the writer confirmed everything written (True if it cannot say)."""
        if self.confirms_close:
            return bool(writer.close(timeout=LOGGER_CLIENT_CLOSE_TIMEOUT_S))
        writer.close()
        return True

    def missing(self, method: str) -> str | None:
        """Why this writer's `method` cannot log anything here (a package it needs is missing), or None."""
        need = NEEDS.get((self.name, method))
        if need is None:
            return None
        module, why = need
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # its parent package is missing
            found = False
        return None if found else f"{module} cannot be imported: {why}"

    def version(self) -> str | None:
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return None


def _logger_client() -> type:
    from logger_client import SummaryWriter

    return SummaryWriter


def _tensorboardx() -> type:
    from tensorboardX import SummaryWriter

    return SummaryWriter


def _torch() -> type:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


_FIGURES = ("matplotlib", "add_figure renders with matplotlib")
#: (writer, method) -> (the module the method needs, why).
NEEDS: dict[tuple[str, str], tuple[str, str]] = {
    ("logger_client", "add_figure"): _FIGURES,
    ("tensorboardX", "add_figure"): _FIGURES,
    ("torch", "add_figure"): _FIGURES,
    ("tensorboardX", "add_audio"): ("soundfile", "tensorboardX's add_audio writes the WAV with soundfile"),
    ("tensorboardX", "add_video"): ("moviepy", "tensorboardX's add_video writes the GIF with moviepy"),
    ("torch", "add_video"): (
        "moviepy.editor",
        "torch.utils.tensorboard's add_video imports moviepy.editor (moviepy < 2); without it the call "
        "prints a message and writes an empty summary value",
    ),
}

WRITERS: dict[str, WriterAdapter] = {
    adapter.name: adapter
    for adapter in (
        WriterAdapter(
            "logger_client",
            "logger_client.SummaryWriter (this project)",
            "tb-logger-service",
            _logger_client,
            confirms_close=True,
        ),
        WriterAdapter("tensorboardX", "tensorboardX.SummaryWriter", "tensorboardX", _tensorboardx),
        WriterAdapter("torch", "torch.utils.tensorboard.SummaryWriter", "torch", _torch),
    )
}

#: The writer every ratio is taken against.
REFERENCE = "tensorboardX"
#: The writer under test.
SUBJECT = "logger_client"
