"""Only the optional C extension; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # Optional: where it cannot be built, logger_client/_fast.py does the same in Python.
        Extension("logger_client._speedups", ["logger_client/_speedups.c"], optional=True, extra_compile_args=["-O2"]),
        # Optional: without it, a daemon that aborts is replaced by the next client that needs one.
        Extension("logger_daemon._rescue", ["logger_daemon/_rescue.c"], optional=True),
        # Optional: without it, histograms of the default bins are counted by numpy, more slowly.
        Extension(
            "logger_daemon._histogram", ["logger_daemon/_histogram.c"], optional=True, extra_compile_args=["-O2"]
        ),
        # Optional: without it, the scalar fast path calls crc32c once per row, more slowly.
        Extension("logger_daemon._crc", ["logger_daemon/_crc.c"], optional=True, extra_compile_args=["-O2"]),
    ],
)
