"""The sidecar daemon: receives records from training processes and writes TensorBoard event files."""
