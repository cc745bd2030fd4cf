"""Normalize one UTC day of a dataset's native files into the unified schema.

Writes, each as one atomic partition commit:
  lake/normalized/{interactions,videos,users}/ds=D     rows that passed the row rules
  lake/quarantine/{interactions,videos,users}/ds=D     rejected rows, raw values + reason
  lake/quarantine/interactions/ds=undated              rows whose time cannot be read at all
and returns the counts (read, written, quarantined per table).

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

from features.schema import INTERACTIONS, QUARANTINE_REASON, UNDATED, USERS, VIDEOS
from jobs.commit import staged_partition
from jobs.readers import kuairec
from jobs.spark import spark_session
from reelflow.config import Config, load_config
from reelflow.paths import Paths

READERS = {"kuairec": kuairec}


def _write(df: DataFrame, table_dir: Path, ds: str) -> int:
    """Commits `df` as partition ds of the table and returns its row count."""
    with staged_partition(table_dir, f"ds={ds}") as staging:
        df.coalesce(1).write.parquet(str(staging))
    return df.sparkSession.read.parquet(str(table_dir / f"ds={ds}")).count()


def _split(df: DataFrame, keep: list[str], raw: list[str]) -> tuple[DataFrame, DataFrame]:
    good = df.where(F.col(QUARANTINE_REASON).isNull()).select(*keep)
    bad = df.where(F.col(QUARANTINE_REASON).isNotNull()).select(*raw, QUARANTINE_REASON)
    return good, bad


def normalize_day(
    dataset: str,
    raw_dir: str | Path,
    ds: str,
    config: Config | None = None,
    paths: Paths | None = None,
) -> dict[str, Any]:
    config = config or load_config()
    paths = paths or Paths.from_env()
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(READERS)}")
    reader = READERS[dataset]
    raw_dir = Path(raw_dir)
    spark = spark_session(config.spark)

    interactions = reader.read_interactions(spark, raw_dir, config.quality).persist()
    raw_cols = [c for c in interactions.columns if c.startswith("raw_")]
    keep = ["user_id", "video_id", "event_ts", "watch_ms", "duration_ms", "watch_ratio", "source"]
    day = interactions.where(F.col("ds") == ds)
    good, bad = _split(day, keep, raw_cols)
    counts: dict[str, dict[str, int]] = {}
    written = _write(good.orderBy("user_id", "event_ts"), paths.normalized(INTERACTIONS), ds)
    quarantined = _write(bad, paths.quarantine(INTERACTIONS), ds)
    counts[INTERACTIONS] = {"read": day.count(), "written": written, "quarantined": quarantined}
    # Rows with no readable time belong to no day; every run rewrites the same full set.
    undated = interactions.where(F.col("ds").isNull()).select(*raw_cols, QUARANTINE_REASON)
    counts[INTERACTIONS]["undated_quarantined"] = _write(
        undated, paths.quarantine(INTERACTIONS), UNDATED
    )
    interactions.unpersist()

    for table, frame, columns in (
        (
            VIDEOS,
            reader.read_videos(spark, raw_dir),
            ["video_id", "categories", "primary_category", "caption", "category_name"],
        ),
        (USERS, reader.read_users(spark, raw_dir), None),
    ):
        frame = frame.persist()
        columns = columns or [c for c in frame.columns if c != QUARANTINE_REASON]
        raw = [c for c in frame.columns if c != QUARANTINE_REASON]
        good, bad = _split(frame, columns, raw)
        counts[table] = {
            "read": frame.count(),
            "written": _write(good.orderBy(columns[0]), paths.normalized(table), ds),
            "quarantined": _write(bad, paths.quarantine(table), ds),
        }
        frame.unpersist()
    return {"dataset": dataset, "ds": ds, "raw": str(raw_dir), "tables": counts}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(READERS))
    parser.add_argument("--raw", required=True)
    parser.add_argument("--ds", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(normalize_day(args.dataset, args.raw, args.ds), indent=2))


if __name__ == "__main__":
    main()
