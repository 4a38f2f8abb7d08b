"""The training thread's hot operations: in C where the optional extension `_speedups` was built
(see `_speedups.c`: no Python frame for a plain add_scalar, one call for a row, streaming stores
for large arrays), else in Python here with the same results. `NATIVE` says which;
`LOGGER_PURE_PYTHON=1` in the environment leaves the extension out (for tests and diagnosis)."""

from __future__ import annotations

import os
from collections.abc import Callable
from time import time
from types import ModuleType
from typing import Any

from .protocol import INT64_MAX, INT64_MIN, SCALAR_ROW

__all__ = ["NATIVE", "STREAMING", "ScalarCall", "append_scalar_row", "stream_copy"]

_pack_row = SCALAR_ROW.pack


def _append_scalar_row(queue: list, key: int, step: Any, walltime: float | None, value: Any) -> int:
    """Appends a plain scalar's packed row (`walltime` None: now) and returns the queue's length;
    -1, appending nothing, when `step` is not an int64 or None, `walltime` not a float or None,
    or `value` not a float: the caller converts those (or refuses them)."""
    if type(value) is not float or (walltime is not None and type(walltime) is not float):
        return -1
    if step is None:
        step = 0
    elif type(step) is not int or not INT64_MIN <= step <= INT64_MAX:
        return -1
    queue.append(_pack_row(key, step, time() if walltime is None else walltime, value))
    return len(queue)


def _load_extension() -> ModuleType | None:
    if os.environ.get("LOGGER_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:  # built without a C compiler: add_scalar stays Python, numpy copies arrays
        return None
    return _speedups


_native = _load_extension()
NATIVE = _native is not None
STREAMING: int = _native.STREAMING if _native is not None else 0
ScalarCall = _native.ScalarCall if _native is not None else None
append_scalar_row: Callable[[Any, int, Any, Any, Any], int] = (
    _native.append_scalar_row if _native is not None else _append_scalar_row
)
stream_copy = _native.stream_copy if _native is not None else None
