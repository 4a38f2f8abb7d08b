"""Reusing the memory of arrays already sent to the daemon.

Copying a tensor into freshly allocated memory costs far more than the copy: every new page
faults and is zeroed by the kernel (about 2 ms for 3 MB here, against 0.2 ms for the copy into
pages already touched). Images and histograms come back at the same sizes step after step, so
once ZeroMQ reports it has finished sending an array (its message tracker is done), the array's
buffer is kept, up to a byte budget, for the next array of its size.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict, deque
from typing import Any

import numpy as np


class ArrayPool:
    """Free buffers by size, at most `capacity_bytes` of them; thread-safe."""

    def __init__(self, capacity_bytes: int) -> None:
        self._capacity = capacity_bytes
        self._free: defaultdict[int, list[np.ndarray]] = defaultdict(list)
        self._free_bytes = 0
        self._sending: deque[tuple[Any, list[np.ndarray]]] = deque()  # (tracker, arrays), in send order
        self._lock = threading.Lock()

    def recycle_when_sent(self, tracker: Any, arrays: list[np.ndarray]) -> None:
        """Takes the arrays back once `tracker` (a zmq.MessageTracker) is done with their message."""
        self._sending.append((tracker, arrays))

    def _reclaim(self) -> None:
        sending = self._sending
        while sending and sending[0][0].done:
            for array in sending.popleft()[1]:
                self._give_back(array)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-contiguous array, on reused memory when a buffer of its size is free."""
        nbytes = math.prod(shape) * dtype.itemsize
        with self._lock:
            if not self._free.get(nbytes):
                self._reclaim()
            buffers = self._free.get(nbytes)
            buffer = buffers.pop() if buffers else None
            if buffer is not None:
                self._free_bytes -= nbytes
        if buffer is None:
            buffer = np.empty(nbytes, np.uint8)
        return buffer.view(dtype).reshape(shape)

    def _give_back(self, array: np.ndarray) -> None:
        """Keeps the memory of a sent array (if it came from here and the budget allows)."""
        buffer = array.base
        if not (isinstance(buffer, np.ndarray) and buffer.dtype == np.uint8 and buffer.ndim == 1
                and buffer.flags.owndata and buffer.nbytes == array.nbytes):
            return
        if self._free_bytes + buffer.nbytes <= self._capacity:
            self._free[buffer.nbytes].append(buffer)
            self._free_bytes += buffer.nbytes

    @property
    def free_bytes(self) -> int:
        return self._free_bytes
