"""One benchmark process: `python -m benchmarks.child SPEC.json` runs one workload for one writer.

The suite starts a fresh child per (workload, writer) so that memory peaks, imports and background
threads never carry over from one writer to the next. The spec names the workload, the writer, the
log directory and where to write the result (JSON). The suite sets the environment: BLAS and
OpenMP pinned to one thread, and for logger_client a private LOGGER_RUNTIME_DIR, in which the
client starts its daemon itself, as a user's first SummaryWriter does.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        spec: dict[str, Any] = json.load(f)
    started = time.perf_counter()
    from benchmarks import calls, memory, throughput, training_loop
    from benchmarks.writers import WRITERS

    group, params, logdir = spec["group"], spec["params"], spec["logdir"]
    if group == "calibrate":
        result = training_loop.calibrate(params["step_ms"])
    elif group == "read_back" and spec.get("reader"):
        from benchmarks import read_back

        result = read_back.read(spec["reader"], params, logdir)
    else:
        adapter = WRITERS[spec["writer"]]
        t0 = time.perf_counter()
        adapter.load()
        import_s = time.perf_counter() - t0
        if group == "calls":
            result = calls.run(adapter, params, logdir)
        elif group == "bursts":
            from benchmarks import bursts

            result = bursts.run(adapter, params, logdir)
        elif group == "model_burst":
            from benchmarks import model_burst

            result = model_burst.run(adapter, params, logdir)
        elif group == "daemon":
            from benchmarks import daemon_costs

            result = daemon_costs.run(adapter, params, logdir)
        elif group == "throughput":
            result = throughput.run(
                adapter, params, logdir, rank=spec.get("rank", 0), wait_for_go=spec.get("wait_for_go", False)
            )
        elif group == "training_loop":
            result = training_loop.run(adapter, params, logdir)
        elif group == "read_back":
            from benchmarks import read_back

            result = read_back.write(adapter, params, logdir)
        elif group == "soak":
            from benchmarks import soak

            result = soak.run(adapter, params, logdir, rank=spec.get("rank", 0))
        else:
            raise ValueError(f"unknown workload group {group!r}")
        result["import_s"] = import_s
    result["peak_rss_mb"] = memory.self_peak_rss_mb()
    result["process_s"] = time.perf_counter() - started
    result["modules"] = sorted(
        name for name in ("torch", "tensorflow", "google.protobuf", "logger_daemon") if name in sys.modules
    )
    with open(spec["result_path"], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
