"""Turning user arguments (Python numbers, numpy, torch or JAX values) into plain values and arrays.

Torch and JAX are recognised by duck typing so that importing this client never imports them.
Errors name the argument that was wrong, at the call that passed it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._fast import STREAMING, stream_copy
from .protocol import ALLOWED_DTYPES, INT64_MAX, INT64_MIN


def _is_torch_tensor(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numel")


def to_float(value: Any, name: str) -> float:
    """A single number as a float: Python numbers, numpy scalars and one-element arrays or tensors."""
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real number, got numpy {value.dtype}")
        return float(value)
    if _is_torch_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"{name} must hold exactly one element, got a tensor of shape {tuple(value.shape)}")
        if value.is_complex():
            raise TypeError(f"{name} must be a real number, got a complex tensor")
        return float(value.item())
    if hasattr(value, "__array__") or isinstance(value, (list, tuple)):
        array = np.asarray(value)
        if array.size != 1:
            raise ValueError(f"{name} must hold exactly one element, got shape {array.shape}")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real number, got an array of {array.dtype}")
        return float(array.reshape(()))
    raise TypeError(f"{name} must be a number, numpy scalar or one-element array/tensor, got {type(value).__name__}")


def to_step(value: Any, name: str = "global_step") -> int:
    """A step as an int, the way tensorboardX stores it (`int(step)`); None is step 0."""
    if value is None:
        return 0
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if _is_torch_tensor(value) or isinstance(value, np.ndarray):
        value = to_float(value, name)
    try:
        step = int(value)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if not INT64_MIN <= step <= INT64_MAX:
        raise ValueError(f"{name} must fit in 64 bits, got {step}")
    return step


def check_text(value: Any, name: str) -> str:
    """`value` if it is a str that UTF-8 can encode (the wire's and TensorBoard's text); a str
    holding lone surrogates (from undecodable bytes) is refused here, where the caller sees it."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.isascii():  # O(1) for most strings: CPython knows when a str is ASCII
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{name} is not valid text: {exc.reason} at position {exc.start} ({value[exc.start : exc.end]!r})"
            ) from None
    return value


def to_walltime(value: Any) -> float:
    """An explicit walltime (seconds since the epoch) as a float."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"walltime must be a number of seconds, got {type(value).__name__}") from None


#: Arrays from this size on are copied with streaming stores: the training process never reads
#: the copy, so it need not pass through (and evict) this core's caches. Smaller ones may as well.
STREAM_MIN_BYTES = 256 * 1024

EmptyArray = Callable[[tuple, np.dtype], np.ndarray]


def new_array(shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Fresh memory for an owned array (no arena)."""
    return np.empty(shape, dtype)


def to_owned_array(value: Any, name: str, empty: EmptyArray = new_array) -> np.ndarray:
    """A C-contiguous numpy array that this client owns: the one copy the training thread pays.

    The caller may change its tensor right after the call returns, so the bytes are copied now,
    into memory from `empty` (the transport's arena of pre-faulted memory). A GPU tensor's transfer
    to host memory is that copy.
    """
    if type(value) is np.ndarray:
        source = value  # the common case first: the torch test is a failed attribute lookup (an exception)
    elif _is_torch_tensor(value):
        tensor = value.detach()
        on_host = tensor.device.type == "cpu"
        if not on_host:
            tensor = tensor.cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor, on_host = tensor.float(), False  # numpy has no bfloat16; .float() is the copy
        source = tensor.numpy()
        if not on_host:
            return _checked(np.ascontiguousarray(source), name)
    elif isinstance(value, np.ndarray):
        source = value
    elif hasattr(value, "__array__") or isinstance(value, (list, tuple, int, float, np.generic)):
        return _checked(np.array(value, order="C"), name)  # a new array: already ours
    else:
        raise TypeError(f"{name} must be a numpy array, a torch tensor or array-like, got {type(value).__name__}")
    native = _checked(source, name)
    if native is not source:
        return native  # converted from a foreign byte order: that copy is already ours
    owned = empty(source.shape, source.dtype)
    if STREAMING and stream_copy is not None and owned.nbytes >= STREAM_MIN_BYTES and source.flags.c_contiguous:
        stream_copy(owned, source)
    else:
        np.copyto(owned, source)
    return owned


#: numpy's dtype classes of the element types that may be logged: a class test is cheap, where
#: numpy 2's `dtype.name` is Python code (tens of µs on a training step's cold caches).
_ALLOWED_DTYPE_CLASSES = frozenset(
    type(np.dtype(code)) for code in np.typecodes["All"] if np.dtype(code).name in ALLOWED_DTYPES
)


def _checked(array: np.ndarray, name: str) -> np.ndarray:
    """`array`, if its element type may be logged; if its byte order is foreign, a new C-contiguous
    copy in native order (arrays cross the wire native: the daemon reads them by dtype name)."""
    if type(array.dtype) not in _ALLOWED_DTYPE_CLASSES:
        raise TypeError(f"{name} has dtype {array.dtype}, which cannot be logged; use a real numeric dtype")
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="), order="C")
