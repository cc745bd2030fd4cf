"""Long-running local servers of a home, started in the background and stopped by PID:
`reelflow ui` (Airflow, MLflow, Feast) and `reelflow cluster` (a Spark standalone master and
workers) both keep theirs this way.

Each service runs in its own session (so a stop ends it with its children) and leaves
`<folder>/<name>.pid` (its PID and start time) and `<folder>/<name>.log`. A PID file whose
process is gone, or whose PID another process holds now (the start time differs: Airflow renames
its processes, so the command line cannot tell), is removed instead of obeyed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Service:
    name: str
    args: tuple[str, ...]  # after the program
    program: str  # a path, or a name looked up by the caller
    port: int | None = None
    health: str | None = None  # a path that answers 200 once it serves

    def url(self) -> str | None:
        return None if self.port is None else f"http://{HOST}:{self.port}"


def started_at(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22), None when
    there is no such process: with the PID it names one process, even after PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_file(folder: Path, service: Service) -> Path:
    return folder / f"{service.name}.pid"


def running(folder: Path, service: Service) -> int | None:
    """The recorded PID while that very process runs; a stale or unreadable file is removed."""
    path = pid_file(folder, service)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        pid, started = int(record["pid"]), int(record["started"])
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        path.unlink(missing_ok=True)
        return None
    if started_at(pid) != started:
        path.unlink(missing_ok=True)
        return None
    return pid


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def launch(folder: Path, service: Service, argv: list[str], env: dict[str, str], cwd: Path) -> int:
    """Starts `argv` in its own session, output to `<folder>/<name>.log`; records its PID."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{service.name}.log", "ab") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    record = {"pid": proc.pid, "started": started_at(proc.pid), "argv": argv}
    pid_file(folder, service).write_text(json.dumps(record))
    return proc.pid


def wait_until_served(folder: Path, services: list[Service], timeout_s: float) -> None:
    """Waits until every service with a port answers on its health path; raises naming the log
    of one that exited, or the one that did not answer in time."""
    deadline = time.monotonic() + timeout_s
    for service in services:
        if service.port is None:
            continue
        while not answers(service.url() + (service.health or "/")):
            if running(folder, service) is None:
                raise RuntimeError(f"{service.name} exited: see {folder / (service.name + '.log')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} did not answer on {service.url()} in time")
            time.sleep(1)


def stop(folder: Path, services: list[Service]) -> list[str]:
    """Stops each service by its recorded PID (its whole session: TERM, then KILL after 30 s),
    waiting for each; returns the names of those that were running."""
    stopped = []
    for service in services:
        pid = running(folder, service)
        pid_file(folder, service).unlink(missing_ok=True)
        if pid is None:
            continue
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                try:  # reap it when it is our own child (a start in this process)
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.2)
            if not Path(f"/proc/{pid}").exists():
                break
        stopped.append(service.name)
    return stopped
