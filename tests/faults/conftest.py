"""Fixtures of the fault suite: the `spawn` fixture of tests/test_daemon.py (scripts in processes of
their own, meeting the test at files; killed at teardown)."""

from test_daemon import spawn  # noqa: F401  (a fixture: pytest finds it here)
