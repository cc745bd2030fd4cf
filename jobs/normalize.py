"""Normalize one UTC day of a dataset into the unified schema.

Lands the release first (skipped when unchanged, jobs/landing.py), then for day D writes,
each as one atomic partition commit:
  lake/normalized/<table>/ds=D    rows that passed the row rules (daily tables: that day's
                                  rows; catalog tables `videos`, `users`: a snapshot)
  lake/quarantine/<table>/ds=D    rejected rows: native values + `quarantine_reason`
  lake/quarantine/<table>/ds=undated   rows whose time cannot be read (same set every run)
Static tables (KuaiRec's small_matrix, the social network) go to lake/normalized/<table>/
whole, once per landing. Returns rows read, written and quarantined per table, with reasons.

Runnable as `spark-submit jobs/normalize.py --dataset kuairec --raw DIR --ds D` and as
`normalize_day(...)`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.schema import QUARANTINE_REASON, UNDATED
from jobs.commit import staged_partition
from jobs.landing import UNDATED_PARTITION, land
from jobs.readers import DAILY_TABLES, READERS
from jobs.spark import spark_session
from reelflow.config import Config, load_config
from reelflow.paths import Paths

SNAPSHOT_TABLES = ("videos", "users")


def _write(df: DataFrame, table_dir: Path, partition: str) -> int:
    """Commits `df` as one partition of the table and returns its row count."""
    with staged_partition(table_dir, partition) as staging:
        df.coalesce(1).write.parquet(str(staging))
    return df.sparkSession.read.parquet(str(table_dir / partition)).count()


def _split(frame: DataFrame) -> tuple[DataFrame, DataFrame]:
    raw = [c for c in frame.columns if c.startswith("raw_")]
    unified = [
        c for c in frame.columns if not c.startswith("raw_") and c not in (QUARANTINE_REASON, "ds")
    ]
    good = frame.where(F.col(QUARANTINE_REASON).isNull()).select(*unified)
    bad = frame.where(F.col(QUARANTINE_REASON).isNotNull()).select(*raw, QUARANTINE_REASON)
    return good, bad


def _reasons(bad_dir: Path, spark) -> dict[str, int]:
    rows = spark.read.parquet(str(bad_dir)).groupBy(QUARANTINE_REASON).count().collect()
    return {r[QUARANTINE_REASON]: r["count"] for r in rows}


def normalize_day(
    dataset: str,
    raw_dir: str | Path,
    ds: str,
    config: Config | None = None,
    paths: Paths | None = None,
) -> dict[str, Any]:
    config = config or load_config()
    paths = paths or Paths.from_env()
    landing = land(dataset, raw_dir, config, paths)
    spark = spark_session(config.spark)
    counts: dict[str, dict[str, Any]] = {}
    for table in landing["tables"]:
        landed_dir = paths.landing / table
        if table in DAILY_TABLES:
            day_dir = landed_dir / f"ds={ds}"
            frame = (
                spark.read.parquet(str(day_dir))
                if day_dir.exists()
                # No row that day: an empty partition with the table's schema, so the gate sees it.
                else spark.read.parquet(str(landed_dir)).where(F.lit(False)).drop("ds")
            )
        elif table in SNAPSHOT_TABLES:
            frame = spark.read.parquet(str(landed_dir))
        else:
            counts[table] = _normalize_static(spark, table, landing["fingerprint"], paths)
            continue
        frame = frame.persist()
        good, bad = _split(frame)
        name = f"ds={ds}"
        counts[table] = {
            "read": frame.count(),
            "written": _write(good, paths.normalized(table), name),
            "quarantined": _write(bad, paths.quarantine(table), name),
            "reasons": _reasons(paths.quarantine(table) / name, spark),
        }
        frame.unpersist()
        if table in DAILY_TABLES and (landed_dir / UNDATED_PARTITION).exists():
            undated = spark.read.parquet(str(landed_dir / UNDATED_PARTITION))
            counts[table]["undated_quarantined"] = _write(
                _split(undated)[1], paths.quarantine(table), f"ds={UNDATED}"
            )
    return {
        "dataset": dataset,
        "ds": ds,
        "raw": str(raw_dir),
        "landing": "skipped (unchanged)" if landing["skipped"] else "landed",
        "tables": counts,
    }


def _normalize_static(spark, table: str, fingerprint: str, paths: Paths) -> dict[str, Any]:
    """Whole-table commit of a table with no day, once per landing."""
    marker = paths.normalized(table).parent / f"_{table}.landed"
    if marker.exists() and marker.read_text() == fingerprint:
        return {"static": True, "skipped": True}
    good, bad = _split(spark.read.parquet(str(paths.landing / table)))
    result = {
        "static": True,
        "written": _write(good, paths.normalized(table).parent, table),
        "quarantined": _write(bad, paths.quarantine(table).parent, table),
    }
    marker.write_text(fingerprint)
    return result


def normalize(
    dataset: str,
    raw_dir: str | Path,
    ds: str | None = None,
    config: Config | None = None,
    paths: Paths | None = None,
) -> dict[str, Any]:
    """One day, or every landed day when `ds` is None."""
    config = config or load_config()
    paths = paths or Paths.from_env()
    if ds is not None:
        return normalize_day(dataset, raw_dir, ds, config, paths)
    days = land(dataset, raw_dir, config, paths)["tables"]["interactions"]["days"]
    return {
        "dataset": dataset,
        "days": {d: normalize_day(dataset, raw_dir, d, config, paths)["tables"] for d in days},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(READERS))
    parser.add_argument("--raw", required=True)
    parser.add_argument("--ds", help="UTC day (default: every landed day)")
    args = parser.parse_args(argv)
    print(json.dumps(normalize(args.dataset, args.raw, args.ds), indent=2))


if __name__ == "__main__":
    main()
