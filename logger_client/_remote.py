"""Remote log directories on the client's side (a logdir that `protocol.is_url_logdir` calls a
URL, `s3://bucket/run`): checking at the writer's constructor that the URL's fsspec backend is
installed (without importing it), and opening a URL for the reader.

The daemon stages and uploads what a writer logs to a URL (`logger_daemon/remote.py`); the
client never imports fsspec unless it is given a URL.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import msgpack

#: The backend package of common schemes, for the message when fsspec itself is missing.
_BACKENDS = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "adl": "adlfs",
}


def require_backend(url: str) -> None:
    """Raises ImportError naming the package to install if `url`'s scheme has no fsspec backend
    here, ValueError if fsspec knows no such scheme."""
    scheme = url.split("://", 1)[0].lower()
    try:
        from fsspec.registry import known_implementations, registry
    except ImportError:
        backend = _BACKENDS.get(scheme)
        packages = "fsspec" + (f" {backend}" if backend else "")
        raise ImportError(
            f"{scheme}:// log directories need fsspec{f' and {backend}' if backend else ''}: pip install {packages}"
        ) from None
    if scheme in registry:  # registered at run time by the user
        return
    known = known_implementations.get(scheme)
    if known is None:
        raise ValueError(f"{scheme}:// is not a protocol fsspec knows; logdir must be a local path or an fsspec URL")
    module = known["class"].rsplit(".", 1)[0]
    package = module.split(".")[0]
    if package == "fsspec":  # a backend inside fsspec: importing it finds what it lacks
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"{scheme}:// log directories need {known.get('err') or exc}") from None
    elif _missing(package):
        raise ImportError(f"{scheme}:// log directories need {package}: pip install {package}")


def _missing(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is None
    except (ImportError, ValueError):  # a broken or half-imported package
        return True


def check_storage_options(storage_options: Any) -> dict[str, Any] | None:
    """`storage_options` if it can travel to the daemon: a map of plain data (str keys; str,
    numbers, bools, None, lists and maps as values)."""
    if storage_options is None:
        return None
    if not isinstance(storage_options, dict) or not all(isinstance(key, str) for key in storage_options):
        raise TypeError("storage_options must be a dict with str keys (fsspec's options for the logdir URL)")
    try:
        msgpack.packb(storage_options, strict_types=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"storage_options must hold plain data (str, numbers, bools, None, lists, dicts) for the daemon: {exc}"
        ) from None
    return dict(storage_options)


def open_url(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem of `url` and the path within it (for the reader)."""
    require_backend(url)
    import fsspec.core

    return fsspec.core.url_to_fs(url, **(storage_options or {}))
