# Types of the optional C extension built from _histogram.c.
from typing import Any

def count(
    values: Any, itemsize: int, base: Any, threshold: Any, low: float, high: float, counts: Any, extremes: Any, /
) -> bool: ...
