"""Print `name==floor` for each runtime dependency in pyproject.toml: the lowest versions it accepts.

.ci/run installs these as constraints in a second environment and runs the fast tests there, so the
ranges pyproject.toml declares are ranges that work, and raising a floor or adding a dependency
needs no second list kept in step.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)")


def lowest(pyproject: Path) -> list[str]:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for requirement in dependencies:
        match = FLOOR.match(requirement)
        if match is None:
            sys.exit(f"error: {requirement!r} in pyproject.toml has no '>=' floor to test")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


if __name__ == "__main__":
    print("\n".join(lowest(Path(__file__).resolve().parent.parent / "pyproject.toml")))
