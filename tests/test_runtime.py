"""The runtime directory: private to its user, found the same way by clients and daemons, refused
with an error that says what to fix when someone else could reach it. In process; the refusals are
in the fault suite (marked `faults`), with test_daemon.py's refusal by a writer and a daemon."""

from __future__ import annotations

import os

import pytest

from logger_client.runtime import LockTimeout, ensure_runtime_dir, hold_lock, take_lock
from logger_client.settings import Settings


@pytest.mark.faults
def test_the_default_is_under_xdg_runtime_dir_else_the_users_cache_never_tmp(monkeypatch, tmp_path):
    monkeypatch.delenv("LOGGER_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert Settings.from_env().runtime_dir == str(tmp_path / "run" / f"tb-logger-{os.getuid()}")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    default = Settings.from_env().runtime_dir
    assert default.startswith(str(tmp_path / "home" / ".cache" / "tb-logger"))
    assert ensure_runtime_dir(default) == default and os.stat(default).st_mode & 0o777 == 0o700


@pytest.mark.faults
def test_a_directory_open_to_others_is_refused_saying_what_to_fix(tmp_path):
    path = tmp_path / "open"
    path.mkdir(mode=0o777)
    os.chmod(path, 0o777)
    with pytest.raises(PermissionError, match=r"open to other users.*chmod 700.*LOGGER_RUNTIME_DIR"):
        ensure_runtime_dir(str(path))


@pytest.mark.faults
def test_a_symbolic_link_is_refused_even_to_a_private_directory(tmp_path):
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(PermissionError, match="symbolic link"):
        ensure_runtime_dir(str(link))


@pytest.mark.faults
@pytest.mark.skipif(os.getuid() != 0, reason="making a directory another user owns needs root")
def test_a_directory_another_user_made_first_is_refused(tmp_path):
    path = tmp_path / "squatted"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)  # nobody
    with pytest.raises(PermissionError, match=r"belongs to uid 65534.*another user made it"):
        ensure_runtime_dir(str(path))


def test_a_path_too_long_for_a_unix_socket_is_refused(tmp_path):
    deep = tmp_path / ("d" * 120)
    with pytest.raises(ValueError, match="too long for a unix socket"):
        ensure_runtime_dir(str(deep))


def test_a_lock_held_elsewhere_times_out_and_is_taken_once_free(tmp_path):
    path = str(tmp_path / "some.lock")
    with hold_lock(path, 1.0):
        pid = os.fork()
        if pid == 0:  # another process: flock is per open file, so it must not get the lock
            try:
                take_lock(path, 0.2)
                os._exit(1)
            except LockTimeout:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    os.close(take_lock(path, 0.2))
