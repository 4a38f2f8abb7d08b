"""The read-back benchmark still runs: `python -m benchmarks --quick --only read_back`, every reader
reading back everything that was written (not a timing test)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("tbparse")
pytest.importorskip("psutil")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_reader_reads_back_what_was_written(tmp_path: Any) -> None:
    out = tmp_path / "read_back.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "read_back", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=500,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    assert doc["workloads"] == {} and doc["all_ran_and_verified"] is True
    entry = doc["read_back"]
    params = entry["params"]
    written = params["runs"] * params["tags"] * params["steps"]
    assert entry["write"]["close_confirmed"] is True and entry["write"]["verify"]["ok"] is True
    assert set(entry["readers"]) == {"logger_client", "EventAccumulator", "tbparse"}
    for reader, result in entry["readers"].items():
        assert result["verified"] is True, reader
        assert result["found"]["scalars"] == written, reader
        assert math.isfinite(result["read_s"]) and result["read_s"] > 0, reader
    # The reader never brings protobuf into the process that reads.
    assert entry["readers"]["logger_client"]["modules"] == []
    assert [t["name"] for t in entry["targets"]] == ["read_back_vs_event_accumulator", "read_back_vs_tbparse"]
    assert all(t["result"] in ("PASS", "FAIL") for t in entry["targets"])
    assert "## Reading logs back" in done.stdout and "| tbparse |" in done.stdout
