"""Generated protobuf modules for TensorBoard event files (see proto/regenerate.py)."""
