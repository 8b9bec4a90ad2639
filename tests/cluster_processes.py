"""A Dask cluster on loopback made of real, separate processes, for the
fault tests: one ``dask scheduler`` and ``dask worker --nanny`` processes,
each worker started in a session (process group) of its own so that a whole
worker, nanny and worker child together, can be killed with one signal.

Every process logs to a file in the given directory; :meth:`ProcessCluster
.logs` returns their tails for assertion messages. :meth:`ProcessCluster
.close` kills every process group this cluster started and reaps them; it
is safe to call twice and after a failed start.

The processes find this module on their ``PYTHONPATH``, so that
:class:`CrashOnNextTask`, a worker plugin defined here, unpickles there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

HERE = Path(__file__).resolve().parent
DASK_CLI = [sys.executable, "-m", "dask"]
#: Seconds a process may take to start (imports on a loaded 2-core machine).
START_TIMEOUT = 60.0


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


class ProcessCluster:
    """``with ProcessCluster(tmp_path) as cluster: cluster.start_scheduler();
    cluster.add_worker("w0")``: killed and reaped, every process group, on exit."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = self.directory / "scheduler.json"
        self.processes: list[Process] = []
        self.address: str | None = None

    # -- starting ---------------------------------------------------------------
    def _spawn(self, name: str, arguments: list[str]) -> Process:
        log = self.directory / f"{name}.log"
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path,
                   # one BLAS thread per worker thread: the machine has 2 cores
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with open(log, "wb") as out:
            popen = subprocess.Popen(DASK_CLI + arguments, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     cwd=self.directory, start_new_session=True)
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_scheduler(self) -> str:
        """Starts the scheduler on a free loopback port; returns its address."""
        process = self._spawn("scheduler", [
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--no-show", "--scheduler-file", str(self.scheduler_file)])
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"the scheduler exited at start:\n{self.logs()}")
            try:
                self.address = json.loads(self.scheduler_file.read_text())["address"]
                return self.address
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                time.sleep(0.05)
        raise TimeoutError(f"no scheduler address after {START_TIMEOUT} s:\n{self.logs()}")

    def add_worker(self, name: str, nthreads: int = 1) -> Process:
        """A nanny and its worker (``name``), in a process group of their own."""
        assert self.address is not None, "start the scheduler first"
        return self._spawn(name, [
            "worker", self.address, "--name", name, "--nthreads", str(nthreads),
            "--nworkers", "1", "--nanny", "--no-dashboard", "--host", "127.0.0.1",
            "--memory-limit", "0", "--death-timeout", "30",
            "--local-directory", str(self.directory / name)])

    # -- faults -------------------------------------------------------------------
    def kill_group(self, process: Process) -> None:
        """SIGKILL the whole process group of ``process`` (nanny and worker)."""
        try:
            os.killpg(process.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.popen.wait(timeout=30)

    # -- inspection ---------------------------------------------------------------
    def logs(self, lines: int = 30) -> str:
        parts = []
        for process in self.processes:
            try:
                tail = process.log.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                tail = ["(no log)"]
            parts.append(f"--- {process.name} (pid {process.pid}, "
                         f"exit {process.popen.poll()}) ---\n" + "\n".join(tail))
        return "\n".join(parts)

    # -- cleaning up --------------------------------------------------------------
    def close(self) -> None:
        for process in reversed(self.processes):
            if process.popen.poll() is None or _group_alive(process.popen.pid):
                try:
                    os.killpg(process.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                process.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> ProcessCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def pid_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (absent, or a zombie not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Polls ``condition()`` until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class CrashOnNextTask(WorkerPlugin):
    """A worker plugin (``client.register_plugin``) that, once armed on a
    worker (:func:`arm_crash` through ``client.run``), SIGKILLs that worker
    as the next task starts executing there: its worker process alone
    (``whole_group=False``; its nanny then starts a new one) or its whole
    process group, nanny included. Unarmed on every (re)started worker."""

    name = "crash-on-next-task"

    def __init__(self, whole_group: bool):
        self.whole_group = whole_group
        self.armed = False

    def setup(self, worker: Any) -> None:
        self.armed = False

    def teardown(self, worker: Any) -> None:
        pass

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if self.armed and finish == "executing":
            if self.whole_group:
                os.killpg(os.getpgid(0), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)


def arm_crash(dask_worker: Any) -> int:
    """Run on one worker by ``client.run(arm_crash, workers=[address])``;
    returns the pid that will die."""
    dask_worker.plugins[CrashOnNextTask.name].armed = True
    return os.getpid()
