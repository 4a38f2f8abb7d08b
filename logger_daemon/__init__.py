"""The sidecar daemon: receives records from training processes and writes TensorBoard event files."""

import os as _os
import sys as _sys

# The daemon's parallelism is its encoding pool. A BLAS pool of its own (numpy's dot, for a
# histogram's sum of squares) would spin on the cores the pool and the training need: in the
# daemon's process, before numpy loads, one BLAS thread, whatever the training's environment says.
if "numpy" not in _sys.modules:
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        _os.environ[_name] = "1"
