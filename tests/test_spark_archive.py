"""The Spark driver's class-data-sharing archive (lake/spark.py): a driver JVM maps it, and an
archive the JVM cannot use (another JDK's, a damaged file) is skipped without a word."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lake.spark import ARCHIVE_ENV, build_class_archive

# A child starts its own driver JVM (the test session's shared one started long ago) and says
# which archive it was given, its stderr, and a job's result.
CHILD = """
import json
from lake.spark import spark_session
spark = spark_session()
jvm = spark._jvm
bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
    jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
)
rows = spark.range(100).selectExpr("sum(id) AS s").collect()
print(json.dumps({"archive": bean.getVMOption("SharedArchiveFile").getValue(), "sum": rows[0].s}))
"""


def start_driver(tmp_path: Path, archive: Path) -> tuple[dict, str]:
    env = {**os.environ, "REELFLOW_HOME": str(tmp_path / "home"), ARCHIVE_ENV: str(archive)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1]), child.stderr


@pytest.mark.parametrize("kind", ["built", "damaged"])
def test_the_driver_maps_the_archive_and_skips_one_it_cannot_use_quietly(kind, tmp_path):
    if kind == "built":
        # `make install` built it; a bare `pytest` builds it here once (about 30 s).
        archive = build_class_archive()
        assert archive is not None and archive.stat().st_size > 10_000_000
    else:
        archive = tmp_path / "other.jsa"
        archive.write_bytes(b"\x00not a CDS archive\x00" * 1000)
    started, stderr = start_driver(tmp_path, archive)
    assert started == {"archive": str(archive), "sum": 4950}
    assert "cds" not in stderr.lower() and "warning" not in stderr.lower(), stderr[-3000:]
