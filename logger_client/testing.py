"""A writer for unit tests of training code: `RecordingWriter` is a `SummaryWriter` that checks
every call exactly as the real one does (the same code raises the same errors) and keeps what
it logged in this process. No daemon, no thread, nothing on disk.

    from logger_client.testing import RecordingWriter

    writer = RecordingWriter("runs/test")
    train(writer)  # the code under test, given the writer
    assert writer.scalars("loss") == [(0, 1.0), (1, 0.5)]
    assert [call.method for call in writer.calls] == ["add_scalar", "add_scalar", "close"]

It is built on `logger_client.in_memory.InMemoryTransport`: `writer.records()` are the records as
the daemon would receive them (values converted, arrays copied), `writer.calls` the calls as made.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .in_memory import InMemoryTransport, LoggedRecord
from .protocol import RecordKind
from .writer import SummaryWriter

__all__ = ["Call", "RecordingWriter"]


class Call(NamedTuple):
    """One call that returned (a call that raised is not recorded). Arguments are kept as passed,
    not copied: an array changed after the call shows the change here (`records()` does not)."""

    #: The method's name, e.g. "add_scalar".
    method: str
    #: The positional arguments, as passed.
    args: tuple
    #: The keyword arguments, as passed.
    kwargs: dict[str, Any]
    #: Every parameter by name, defaults filled in: `call.arguments["global_step"]`.
    arguments: dict[str, Any]


#: The methods whose calls are recorded: every `add_*`, and `flush` and `close`.
RECORDED = tuple(sorted(name for name in dir(SummaryWriter) if name.startswith("add_") or name in ("flush", "close")))


class RecordingWriter(SummaryWriter):
    """A `SummaryWriter` whose records stay in this process, and which records its calls.

    Takes `SummaryWriter`'s arguments; `transport` defaults to a new `InMemoryTransport`. A method
    called by another (`add_custom_scalars_multilinechart` calls `add_custom_scalars`) is recorded
    once, as the outer call. `write_to_disk=False` discards records as the real writer does (calls
    are still recorded).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        transport = kwargs.setdefault("transport", InMemoryTransport())
        #: The transport holding this writer's records.
        self.transport: InMemoryTransport = transport
        #: Every call that returned, in order.
        self.calls: list[Call] = []
        self._nesting = threading.local()
        self._writer_ids: set[int] = set()  # a writer reopened after close() gets a new id
        super().__init__(*args, **kwargs)

    def _open(self) -> None:
        super()._open()
        self._writer_ids.add(self._writer_id)

    # -- what was logged -----------------------------------------------------------------------

    def records(
        self, tag: str | None = None, kind: RecordKind | None = None, run: str | None = None
    ) -> list[LoggedRecord]:
        """The data records this writer logged, in order, optionally only those of one tag, kind
        or run (`""` is the writer's own directory; `add_scalars` logs to `<main_tag>/<key>`)."""
        return [
            record
            for record in self.transport.records()
            if record.writer in self._writer_ids
            and (tag is None or record.tag == tag)
            and (kind is None or record.kind == kind)
            and (run is None or record.run == run)
        ]

    def scalars(self, tag: str, run: str = "") -> list[tuple[int, float]]:
        """`(step, value)` of each scalar logged under `tag`, in order. For `add_scalars(main_tag,
        {key: value})` the tag is `main_tag` and the run `f"{main_tag}/{key}"`. Values as logged
        (float64); TensorBoard keeps them as float32."""
        return [(record.step, record.value) for record in self.records(tag, RecordKind.SCALAR, run)]

    def texts(self, tag: str) -> list[tuple[int, str]]:
        """`(step, text)` of each `add_text` under `tag`."""
        return [(record.step, record.value) for record in self.records(tag, RecordKind.TEXT, "")]

    def histograms(self, tag: str) -> list[tuple[int, np.ndarray]]:
        """`(step, values)` of each `add_histogram` under `tag`: the values, not yet bucketed."""
        return [(record.step, record.value) for record in self.records(tag, RecordKind.HISTOGRAM, "")]

    def images(self, tag: str) -> list[tuple[int, np.ndarray]]:
        """`(step, array)` of each `add_image` or `add_images` under `tag`, as passed (its layout is
        the record's `options["dataformats"]`)."""
        kinds = (RecordKind.IMAGE, RecordKind.IMAGES)
        return [(record.step, record.value) for record in self.records(tag) if record.kind in kinds]

    def tags(self, kind: RecordKind | None = None) -> list[str]:
        """The tags logged (of one kind), sorted."""
        return sorted({record.tag for record in self.records(kind=kind)})

    def clear(self) -> None:
        """Forgets every call and record so far (the writer stays open)."""
        self.calls.clear()
        self.transport.queue[:] = [
            item for item in self.transport.queue if type(item) is not bytes and item[0] == RecordKind.OPEN
        ]


def _recording(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(function)

    @functools.wraps(function)
    def method(self: RecordingWriter, *args: Any, **kwargs: Any) -> Any:
        nesting = self._nesting
        depth = getattr(nesting, "depth", 0)
        nesting.depth = depth + 1
        try:
            result = function(self, *args, **kwargs)
        finally:
            nesting.depth = depth
        if depth == 0:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            del arguments[next(iter(signature.parameters))]  # self
            self.calls.append(Call(name, args, kwargs, arguments))
        return result

    return method


for _name in RECORDED:
    setattr(RecordingWriter, _name, _recording(_name, getattr(SummaryWriter, _name)))
del _name
