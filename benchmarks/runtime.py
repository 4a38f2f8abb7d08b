"""The suite's scratch space, its child processes, and the daemons they start - none outlives it.

One private root directory per suite run (short, under /tmp, mode 0700). Each task (one workload
for one writer) gets beneath it its own log directory and its own LOGGER_RUNTIME_DIR, so each
logger_client child starts its own daemon as a user's first writer does, and that daemon's memory
peak belongs to that workload alone. After each task the daemon is stopped with
`python -m logger_daemon stop --runtime-dir D`, then killed if it is still there; `close()`
stops every daemon and child that is left, whatever happened, and removes the root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from logger_client.runtime import daemon_pid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Pins every BLAS / OpenMP pool of a child to one thread (OPENBLAS_CORETYPE is left as it is).
THREAD_PINS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
#: A daemon left behind by a killed suite exits by itself after this long without a client.
DAEMON_IDLE_TIMEOUT_S = "60"


class ChildFailed(RuntimeError):
    """A benchmark child exited badly, timed out, or wrote no result."""


@dataclass
class Task:
    """Scratch space of one (workload, writer) run."""

    name: str
    path: str
    runtime_dir: str
    logdir: str

    def result_path(self, rank: int = 0) -> str:
        return os.path.join(self.path, f"result{rank}.json")

    def spec_path(self, rank: int = 0) -> str:
        return os.path.join(self.path, f"spec{rank}.json")

    def log_path(self, rank: int = 0) -> str:
        return os.path.join(self.path, f"child{rank}.log")


def _alive_daemon(pid: int) -> bool:
    try:
        import psutil

        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and any("logger_daemon" in part for part in process.cmdline())
    except Exception:
        return False


class Runtime:
    """Owns the suite's scratch root, children and daemons; `close()` leaves nothing running."""

    def __init__(self, keep_logs: bool = False) -> None:
        self.root = tempfile.mkdtemp(prefix="tbb-", dir="/tmp" if os.path.isdir("/tmp") else None)
        os.chmod(self.root, 0o700)
        self.keep_logs = keep_logs
        self._lock = threading.Lock()  # tasks may be started from several threads (--jobs)
        self._tasks: list[Task] = []
        self._children: list[subprocess.Popen] = []
        self.env = self._child_env()

    @staticmethod
    def _child_env() -> dict[str, str]:
        env = dict(os.environ)
        env.update(THREAD_PINS)
        env["LOGGER_IDLE_TIMEOUT_S"] = DAEMON_IDLE_TIMEOUT_S
        env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def task(self, name: str) -> Task:
        with self._lock:
            path = os.path.join(self.root, f"t{len(self._tasks):02d}")
            self._tasks.append(Task(name, path, os.path.join(path, "rt"), os.path.join(path, "logs")))
            task = self._tasks[-1]
        os.makedirs(task.runtime_dir, mode=0o700)
        os.chmod(task.runtime_dir, 0o700)
        os.makedirs(task.logdir)
        return task

    def child_env(self, task: Task) -> dict[str, str]:
        return {**self.env, "LOGGER_RUNTIME_DIR": task.runtime_dir}

    # -- children ----------------------------------------------------------------------------

    def start_child(
        self,
        task: Task,
        spec: dict[str, Any],
        rank: int = 0,
        interactive: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen:
        """Starts a benchmark child on `spec`; `env` adds to its environment (and its daemon's)."""
        import json

        spec = {**spec, "logdir": task.logdir, "result_path": task.result_path(rank), "rank": rank}
        with open(task.spec_path(rank), "w") as f:
            json.dump(spec, f)
        with open(task.log_path(rank), "wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.child", task.spec_path(rank)],
                cwd=REPO,
                env={**self.child_env(task), **(env or {})},
                stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
                stdout=subprocess.PIPE if interactive else log,
                stderr=log,
                text=True,
            )
        self._children.append(child)
        return child

    def finish_child(self, task: Task, child: subprocess.Popen, timeout_s: float, rank: int = 0) -> dict[str, Any]:
        """Waits for `child`; its result, or ChildFailed with the tail of its log."""
        import json

        try:
            child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._kill(child)
            raise ChildFailed(f"{task.name}: timed out after {timeout_s:.0f}s\n{self.log_tail(task, rank)}") from None
        finally:
            if child in self._children:
                self._children.remove(child)
        if child.returncode != 0:
            raise ChildFailed(f"{task.name}: exit status {child.returncode}\n{self.log_tail(task, rank)}")
        try:
            with open(task.result_path(rank)) as f:
                return json.load(f)
        except (OSError, ValueError) as exc:
            raise ChildFailed(f"{task.name}: no result ({exc})\n{self.log_tail(task, rank)}") from None

    def log_tail(self, task: Task, rank: int = 0, chars: int = 3000) -> str:
        try:
            with open(task.log_path(rank), errors="replace") as f:
                return f.read()[-chars:]
        except OSError:
            return ""

    def reap(self, children: list[subprocess.Popen]) -> None:
        """Kills the `children` still running and closes the pipes to them."""
        for child in children:
            self._kill(child)
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()

    @staticmethod
    def _kill(child: subprocess.Popen) -> None:
        if child.poll() is None:
            child.kill()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                pass

    # -- daemons -----------------------------------------------------------------------------

    def daemon_pid(self, task: Task) -> int | None:
        return daemon_pid(task.runtime_dir)

    def stop_daemon(self, task: Task, timeout_s: float = 15.0) -> None:
        """Stops the daemon of `task` (politely, then SIGKILL); returns once it is gone."""
        pid = self.daemon_pid(task)
        if pid is None or not _alive_daemon(pid):
            return
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "logger_daemon",
                    "stop",
                    "--force",
                    "--runtime-dir",
                    task.runtime_dir,
                    "--timeout",
                    str(timeout_s),
                ],
                cwd=REPO,
                env=self.child_env(task),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout_s + 30,
            )
        except subprocess.TimeoutExpired:
            pass
        if _alive_daemon(pid):  # `stop --force` could not even kill it: say so, do not hang
            print(f"warning: daemon {pid} of {task.runtime_dir} is still alive", file=sys.stderr)

    def remove_logs(self, task: Task) -> None:
        if not self.keep_logs:
            shutil.rmtree(task.logdir, ignore_errors=True)

    def close(self) -> None:
        """Kills children still running, stops every daemon, removes the scratch root."""
        for child in list(self._children):
            self._kill(child)
        self._children.clear()
        for task in self._tasks:
            self.stop_daemon(task)
        if self.keep_logs:
            return
        shutil.rmtree(self.root, ignore_errors=True)
