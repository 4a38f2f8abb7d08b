# Types of the optional C extension built from _speedups.c (see _fast.py for the Python fallbacks).
from collections.abc import Callable
from typing import Any

import numpy as np

STREAMING: int

class ScalarCall:
    def __init__(
        self,
        keys: dict[Any, int],
        queue: list[Any],
        batch_records: int,
        on_backlog: Callable[[int], None],
        fallback: Callable[..., None],
    ) -> None: ...
    def __call__(
        self, tag: Any, scalar_value: Any, global_step: Any = None, walltime: Any = None, *args: Any, **kwargs: Any
    ) -> None: ...

def append_scalar_row(queue: Any, key: int, step: Any, walltime: Any, value: Any) -> int: ...
def stream_copy(dst: np.ndarray, src: np.ndarray) -> None: ...
