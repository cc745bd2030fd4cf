"""reelflow/meter.py against real load: Python's own memory and CPU, and the Spark JVM's
(a child of this process) measured apart."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def test_python_memory_and_a_child_processes_cpu_are_measured():
    from reelflow.meter import StageMeter

    with StageMeter(interval_s=0.05) as meter:
        block = np.ones(300 * 1024**2 // 8)  # 300 MiB, touched
        subprocess.run(
            [sys.executable, "-c", "import time\nt = time.process_time()\n"
             "while time.process_time() - t < 0.6: pass"],
            check=True,
        )  # fmt: skip
    spent = meter.result
    assert block.sum() > 0
    assert spent["peak_rss_gib_python"] >= 0.29, spent
    assert spent["wall_seconds"] >= 0.6
    # The child's 0.6 s of CPU, minus what it spent before its first sample.
    assert spent["cpu_seconds_children"] >= 0.4, spent
    assert (
        spent["cpu_seconds"] >= spent["cpu_seconds_children"] + spent["cpu_seconds_python"] - 1e-6
    )


def test_the_spark_jvm_is_measured_apart(spark):
    from reelflow.meter import StageMeter

    with StageMeter(interval_s=0.05) as meter:
        total = spark.range(30_000_000).selectExpr("sum(id * 2) AS s").collect()[0]["s"]
    assert total == 30_000_000 * (30_000_000 - 1)
    spent = meter.result
    assert spent["peak_rss_gib_jvm"] > 0.05, spent
    assert (
        spent["peak_rss_gib_total"]
        >= spent["peak_rss_gib_python"] + spent["peak_rss_gib_jvm"] - 0.01
    )
    # The job's work is done by the JVM: most of the stage's CPU is the child's.
    assert spent["cpu_seconds_children"] > spent["cpu_seconds_python"], spent
