# Types of the optional C extension built from _rescue.c.
from collections.abc import Sequence

def arm(argv: Sequence[str], /) -> None: ...
