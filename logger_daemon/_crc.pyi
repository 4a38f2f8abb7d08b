# Types of the optional C extension built from _crc.c.
from typing import Any

def crc_rows(rows: Any, length: int, out: Any, /) -> None: ...
