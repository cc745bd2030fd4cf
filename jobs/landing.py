"""Landing: parse a release's native files once into `lake/raw/<table>/`, by UTC day.

A daily run then reads only its day's landed partition instead of re-parsing a 12.5M-row
CSV. Landing is skipped when the release's files (by SHA-256), the reader and the quality
rules are unchanged; a lock keeps parallel daily runs (backfills) from landing twice.
Each landed table is swapped in whole (lake/commit.py), so a reader never sees half of one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F

from jobs.readers import DAILY_TABLES, Release, get_reader
from jobs.readers.native import NOW_ENV, iso_ms, landing_now_ms, pinned_now, time_bounds
from lake.commit import staged_partition
from lake.partitions import NULL_DAY, check_day
from lake.schema import QUARANTINE_REASON
from reelflow.config import Config, load_config
from reelflow.paths import Paths
from reelflow.state import write_json

LANDING_VERSION = "2"  # bump when a reader changes what it lands (2: issue 12 row rules)


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(release: Release, config: Config, clock: str | None = None) -> str:
    """Changes with the files (SHA-256), the reader version, the quality rules, the release
    options and an explicitly injected landing clock (`clock`)."""
    digest = hashlib.sha256(f"{LANDING_VERSION}|{release.dataset}|{release.variant}".encode())
    if clock is not None:
        digest.update(f"|now={clock}".encode())
    digest.update(json.dumps(config.quality.__dict__, sort_keys=True).encode())
    digest.update(json.dumps(release.options, sort_keys=True, default=str).encode())
    for path in release.all_files():
        digest.update(f"{path.name}|{file_digest(path)}".encode())
    return digest.hexdigest()


def landed(paths: Paths) -> dict[str, Any]:
    marker = paths.landing / "_landed.json"
    return json.loads(marker.read_text()) if marker.exists() else {}


def land(
    dataset: str,
    raw_dir: str | Path,
    config: Config | None = None,
    paths: Paths | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """Lands the release unless it is already landed as is; returns the landing summary.

    Every file the reader will read is checked (exists, header, at least one row) before a
    Spark session starts. `now_ms` (or $REELFLOW_NOW) is the landing clock of the
    plausible-time rule; given, it is part of the fingerprint, so that re-landing with the
    same clock is skipped and with another one is not. Left to the wall clock, a landing
    stands until the files or the rules change. The summary records the clock and the cutoff.
    """
    config = config or load_config()
    paths = paths or Paths.from_env()
    reader = get_reader(dataset)
    release = reader.detect(Path(raw_dir))
    check = getattr(reader, "check", None)
    if check is not None:
        check(release)
    injected = now_ms is not None or bool(os.environ.get(NOW_ENV))
    now_ms = landing_now_ms() if now_ms is None else int(now_ms)
    paths.landing.mkdir(parents=True, exist_ok=True)
    with open(paths.landing / "_landing.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        print_ = fingerprint(release, config, iso_ms(now_ms) if injected else None)
        previous = landed(paths)
        if previous.get("fingerprint") == print_:
            return {**previous, "skipped": True}
        from lake.spark import spark_session

        spark = spark_session(config.spark)
        with pinned_now(now_ms):
            tables = reader.read_tables(spark, release, config.quality)
        summary: dict[str, Any] = {}
        for name, frame in tables.items():
            with staged_partition(paths.landing, name) as staging:
                if name in DAILY_TABLES:
                    frame.write.partitionBy("ds").parquet(str(staging))
                else:
                    frame.drop("ds").coalesce(1).write.parquet(str(staging))
            summary[name] = _landed_counts(spark, paths.landing / name, name in DAILY_TABLES)
        earliest, latest = time_bounds(config.quality, now_ms)
        result = {
            "dataset": dataset,
            "variant": release.variant,
            "root": str(release.root),
            "files": [str(p) for p in release.all_files()],
            "fingerprint": print_,
            "landed_at": iso_ms(now_ms),
            "time_floor": iso_ms(earliest),
            "time_cutoff": iso_ms(latest),
            # Where a public release says it ends (a cut at its own midnight), else None.
            "release_end": getattr(reader, "RELEASE_END", None),
            "tables": summary,
        }
        write_json(paths.landing / "_landed.json", result)  # atomic: temp file + rename
        return {**result, "skipped": False}


def _landed_counts(spark, table_dir: Path, daily: bool) -> dict[str, Any]:
    frame = spark.read.parquet(str(table_dir))
    bad = F.col(QUARANTINE_REASON).isNotNull().cast("int")
    if not daily:
        row = frame.agg(F.count(F.lit(1)).alias("rows"), F.sum(bad).alias("rejected")).first()
        return {"rows": row["rows"], "rejected": row["rejected"] or 0}
    per_day = (
        frame.groupBy("ds")
        .agg(F.count(F.lit(1)).alias("rows"), F.sum(bad).alias("rejected"))
        .collect()
    )
    days = sorted(r["ds"] for r in per_day if r["ds"] not in (None, NULL_DAY))
    return {
        "rows": sum(r["rows"] for r in per_day),
        "days": days,
        "undated": sum(r["rows"] for r in per_day if r["ds"] in (None, NULL_DAY)),
    }


def run_days(ds: str, through: str | None = None) -> list[str]:
    """The days a daily run covers: its own day; with `through` (a first load's range, the
    `through` param), every landed day with interactions from DS through it, in order."""
    if not through or through == ds:
        return [ds]
    check_day(through, "through")
    if through < ds:
        raise ValueError(f"through {through} is before the run's day {ds}")
    held = landed(Paths.from_env()).get("tables", {}).get("interactions", {}).get("days") or []
    days = [d for d in held if ds <= d <= through]
    if not days:
        raise ValueError(f"the landed release has no interactions from {ds} through {through}")
    return days
