"""What one stage of a run cost: wall time, CPU time and peak memory, Python and JVM apart.

    with StageMeter() as meter:
        summary = normalize_day(...)
    record(ds, "normalize", summary, meter)    # the summary gains "resources"

A thread samples this process and its descendants every `interval_s`. The Spark driver's JVM
is a child of the Python process (py4j) and outlives the stage (one session serves every task
of `reelflow run`), so neither `resource.getrusage` (children only once reaped, and a
process-lifetime peak) nor the stage's own clock can tell its share: the sampler keeps each
child's CPU time as first and last seen, and the peak resident memory of the Python process,
of the JVMs (every `java` descendant), and of the whole tree at one instant. A child that
lives less than one interval may go unseen: its CPU time is then missing (the sampling costs
well under 1% of a core at 0.2 s).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

GIB = 1024**3


def tree_rss(pid: int) -> int | None:
    """The resident bytes of process PID and all its descendants at one instant (a child
    gone between the listing and the read counts 0); None once PID itself is gone."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    rss = 0
    for proc in tree:
        try:
            rss += proc.memory_info().rss
        except psutil.Error:
            pass
    return rss


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


class StageMeter:
    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.me = psutil.Process()
        self.result: dict[str, Any] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._peaks = {"python": 0, "jvm": 0, "total": 0}
        self._jvm_seen = False
        self._cpu_first: dict[int, float] = {}  # child pid -> its CPU seconds when first seen
        self._cpu_last: dict[int, float] = {}

    def _children(self) -> list[psutil.Process]:
        try:
            return self.me.children(recursive=True)
        except psutil.Error:
            return []

    def _sample(self, first: bool = False) -> None:
        python = self.me.memory_info().rss
        jvm = total = 0
        for child in self._children():
            try:
                with child.oneshot():
                    rss, cpu, name = child.memory_info().rss, _cpu(child), child.name()
            except psutil.Error:  # gone between the listing and the read
                continue
            total += rss
            if name == "java":
                jvm += rss
                self._jvm_seen = True
            with self._lock:
                # A child already running when the stage began counts from then; one started
                # during the stage counts from its start.
                self._cpu_first.setdefault(child.pid, cpu if first else 0.0)
                self._cpu_last[child.pid] = cpu
        with self._lock:
            for key, value in (("python", python), ("jvm", jvm), ("total", python + total)):
                self._peaks[key] = max(self._peaks[key], value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> StageMeter:
        self._wall = time.perf_counter()
        self._own_cpu = _cpu(self.me)
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, name="stage-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.perf_counter() - self._wall
        own = _cpu(self.me) - self._own_cpu
        children = sum(self._cpu_last[pid] - self._cpu_first[pid] for pid in self._cpu_last)
        self.result = {
            "wall_seconds": round(wall, 3),
            "cpu_seconds": round(own + children, 3),
            "cpu_seconds_python": round(own, 3),
            "cpu_seconds_children": round(children, 3),
            "peak_rss_gib_python": round(self._peaks["python"] / GIB, 3),
            # None: no JVM under this process (the in-process stages that need no Spark, or
            # spark-submit, where the JVM is the driver's parent rather than its child).
            "peak_rss_gib_jvm": round(self._peaks["jvm"] / GIB, 3) if self._jvm_seen else None,
            "peak_rss_gib_total": round(self._peaks["total"] / GIB, 3),
            "sample_interval_s": self.interval_s,
        }
