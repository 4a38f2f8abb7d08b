"""What a writer of a data-parallel job does with a call, by how the call is to be combined across
ranks (`logger_client.reduction`): which calls this rank skips, which go to its own sub-run, and
which carry their mode to the daemon.

Scalars and histograms of the combined modes (`mean`, `sum`, `min`, `max`; `merge`) go to the
daemon, which combines the ranks' values per (run, tag, step). `rank0` is settled here: other ranks
skip the call before any argument is converted or copied. `per_rank` sends the call to the sub-run
`rank_<r>`. Every `add_*` method declares the keyword-only `reduce` argument (so type checkers and
`help()` show it); `install_reduce_argument` wraps each but `add_scalar` (which applies `reduce`
itself, to keep its plain call in C) in what applies it, before the method runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from .reduction import ARRAY_MODES, COMBINED_MODES, HISTOGRAM_MODES, SCALAR_MODES, check_mode

#: The mode of the `add_*` call running on this thread, when its writer has ranks.
CALL_MODE: ContextVar[str | None] = ContextVar("call_mode", default=None)

_SCALAR_FAMILY, _HISTOGRAM_FAMILY, _ARRAY_FAMILY = "scalars", "histograms", "arrays"
_ALLOWED = {
    _SCALAR_FAMILY: SCALAR_MODES,
    _HISTOGRAM_FAMILY: HISTOGRAM_MODES,
    _ARRAY_FAMILY: ARRAY_MODES,
}
#: Methods that take `reduce` in their own signature.
_NATIVE = frozenset(["add_scalar"])


def _family(name: str) -> str:
    if name == "add_scalars":
        return _SCALAR_FAMILY
    if name == "add_histogram":
        return _HISTOGRAM_FAMILY
    return _ARRAY_FAMILY


def call_mode(family: str, writer_mode: str, reduce: str | None) -> str:
    """The mode of one call: `reduce` if given (checked for the family), else the writer's own
    mode as it applies to the family (histograms merge where scalars combine; the rest take
    rank 0's unless the writer writes per rank)."""
    if reduce is not None:
        return check_mode(reduce, _ALLOWED[family])
    if family == _SCALAR_FAMILY or writer_mode in ("rank0", "per_rank"):
        return writer_mode
    return "merge" if family == _HISTOGRAM_FAMILY else "rank0"


def combined(mode: str) -> bool:
    """Whether the daemon combines the ranks' values of this mode."""
    return mode in COMBINED_MODES


def _with_reduce(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    family = _family(name)
    allowed = _ALLOWED[family]

    @functools.wraps(function)
    def method(self: Any, *args: Any, reduce: str | None = None, **kwargs: Any) -> Any:
        ranks = self._ranks
        if ranks is None:  # a job of one: the call as it always was
            if reduce is not None:
                check_mode(reduce, allowed)
            return function(self, *args, **kwargs)
        mode = call_mode(family, self._reduce, reduce)
        if mode == "rank0" and ranks.rank != 0:
            return None  # nothing converted, nothing copied
        token = CALL_MODE.set(mode)
        try:
            return function(self, *args, **kwargs)
        finally:
            CALL_MODE.reset(token)

    if "reduce" not in inspect.signature(function).parameters:
        raise TypeError(f"{name} must declare the keyword-only argument reduce")
    method.__doc__ = (function.__doc__ or "") + (
        "\n\n        `reduce` (keyword only): how this call is combined across the ranks of a data-parallel"
        f" job, one of {', '.join(allowed)}; default: the writer's."
    )
    return method


def install_reduce_argument(cls: type) -> None:
    """Wraps every public `add_*` method of `cls` (but those applying it themselves) in what
    applies its `reduce` argument and the rank rules above."""
    for name in dir(cls):
        function = getattr(cls, name)
        if name.startswith("add_") and name not in _NATIVE and inspect.isfunction(function):
            setattr(cls, name, _with_reduce(name, function))
