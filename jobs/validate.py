"""Great Expectations gate over one day's normalized partitions.

A failed expectation raises `ValidationFailed` naming it, which fails the Airflow task and
so stops the DAG run before features are computed from bad data. The full result is kept as
JSON under lake/validation/<table>/ds=D.json.

The quarantine gate: for every table with a quarantine partition of day D
(lake/quarantine/<table>/ds=D, written by normalize in the same run as the normalized one),
the share of the day's rows that were quarantined, exact duplicate rows apart
(jobs.normalize.quarantine_share), must not exceed `quality.max_quarantine_share`; a table
over it fails the gate with its share and top reasons. The counts are read from the
partitions themselves, not from normalize's summary, so a day normalized by hand, by
spark-submit or by the DAG is gated the same way.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import functions as F

from jobs.landing import landed
from jobs.normalize import DUPLICATE
from lake.partitions import days_back, partition, partition_name
from lake.schema import INTERACTION_REQUIRED, INTERACTIONS, USERS, VIDEOS
from lake.spark import spark_session
from reelflow.config import Config, load_config
from reelflow.paths import Paths
from reelflow.state import write_text


class ValidationFailed(RuntimeError):
    pass


def _suite_interactions(
    gx,
    ds: str,
    config: Config,
    columns: list[str],
    trailing: list[int],
    release_end: str | None = None,
):
    day_start = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    day_end = day_start + timedelta(days=1) - timedelta(microseconds=1)
    q = config.quality
    ex = gx.expectations
    suite = gx.ExpectationSuite(name=f"{INTERACTIONS}_suite")
    for column in INTERACTION_REQUIRED:
        suite.add_expectation(ex.ExpectColumnToExist(column=column))
    for column in ("user_id", "video_id", "event_ts"):
        suite.add_expectation(ex.ExpectColumnValuesToNotBeNull(column=column))
    if trailing:
        # Volume against the trailing days' average: catches a half-delivered or doubled day.
        average = sum(trailing) / len(trailing)
        suite.add_expectation(
            ex.ExpectTableRowCountToBeBetween(
                min_value=max(1, int(average * q.volume_min_ratio)),
                max_value=int(average * q.volume_max_ratio) + 1,
            )
        )
    else:
        suite.add_expectation(ex.ExpectTableRowCountToBeBetween(min_value=1))
    if "watch_ratio" in columns:
        suite.add_expectation(
            ex.ExpectColumnValuesToBeBetween(
                column="watch_ratio", min_value=q.watch_ratio_min, max_value=q.watch_ratio_max
            )
        )
    # On the derived hour of day: GE's Spark engine does not compute max() of a timestamp.
    # The day a release ends on (KuaiRand: 16:00 UTC) is fresh if its last view comes within
    # freshness_hours of that end; every other day, of midnight.
    fresh_until = 24.0
    if release_end:
        end = datetime.fromisoformat(release_end)
        if day_start <= end < day_start + timedelta(days=1):
            fresh_until = (end - day_start).total_seconds() / 3600
    suite.add_expectation(
        ex.ExpectColumnMaxToBeBetween(
            column="hour_of_day", min_value=fresh_until - q.freshness_hours, max_value=24.0
        )
    )
    # Freshness and partition discipline: a day's partition holds only that UTC day.
    suite.add_expectation(
        ex.ExpectColumnValuesToBeBetween(column="event_ts", min_value=day_start, max_value=day_end)
    )
    # Referential integrity: every video watched is in that day's catalog. Looked up by a join
    # (`video_in_catalog`), not a value set: a set is the whole catalog collected to the
    # driver and shipped in the query, which a 4.4M-video catalog (KuaiRand-1K) cannot afford.
    suite.add_expectation(
        ex.ExpectColumnValuesToBeInSet(column="video_in_catalog", value_set=[True])
    )
    return suite


def _suite_catalog(gx, table: str, key: str):
    """Catalog tables (videos, users): keys present and unique, the table not empty."""
    ex = gx.expectations
    suite = gx.ExpectationSuite(name=f"{table}_suite")
    suite.add_expectation(ex.ExpectColumnValuesToNotBeNull(column=key))
    suite.add_expectation(ex.ExpectColumnValuesToBeUnique(column=key))
    suite.add_expectation(ex.ExpectTableRowCountToBeBetween(min_value=1))
    return suite


def _trailing_counts(spark, table_dir, ds: str, days: int, first_day: str | None) -> list[int]:
    """Row counts of the `days` days before DS that have a partition, the volume baseline.
    The release's first landed day is left out: a release is cut at its own midnight
    (KuaiRand's at Beijing's, 16:00 UTC), so its first UTC day holds only part of a day
    (KuaiRand-1K: its second day has 3x the first's rows, and failed the volume check)."""
    previous = [
        d
        for d in days_back(ds, days + 1)[:-1]
        if d != first_day and partition(table_dir, d).exists()
    ]
    return [spark.read.parquet(str(partition(table_dir, d))).count() for d in previous]


def _quarantine_gate(spark, ds: str, config: Config, paths: Paths) -> tuple[dict, list[str]]:
    """Per table with a quarantine partition of day D: counts, share, and a failure line
    when the share exceeds quality.max_quarantine_share."""
    from jobs.normalize import quarantine_share, top_reasons
    from lake.schema import QUARANTINE_REASON

    limit = config.quality.max_quarantine_share
    root = paths.quarantine(INTERACTIONS).parent
    report: dict[str, Any] = {}
    failures: list[str] = []
    tables = (
        sorted(p.name for p in root.iterdir() if not p.name.startswith("_"))
        if root.exists()
        else []
    )
    for table in tables:
        bad_dir = partition(paths.quarantine(table), ds)
        if not bad_dir.exists():
            continue
        rows = spark.read.parquet(str(bad_dir)).groupBy(QUARANTINE_REASON).count().collect()
        reasons = {r[QUARANTINE_REASON]: r["count"] for r in rows}
        good_dir = partition(paths.normalized(table), ds)
        written = spark.read.parquet(str(good_dir)).count() if good_dir.exists() else 0
        quarantined = sum(reasons.values())
        share, duplicates = quarantine_share(written + quarantined, reasons)
        report[table] = {
            "read": written + quarantined,
            "written": written,
            "quarantined": quarantined,
            "duplicates": duplicates,
            "quarantine_share": round(share, 6),
            "max_quarantine_share": limit,
            "success": share <= limit,
            "reasons": reasons,
        }
        if share > limit:
            broken = {r: n for r, n in reasons.items() if r != DUPLICATE}
            failures.append(
                f"{table}: quarantine share {share:.1%} of the day's rows "
                f"({quarantined - duplicates} of {written + quarantined - duplicates}, exact "
                f"duplicates apart: {duplicates}) exceeds quality.max_quarantine_share "
                f"{limit:.1%}; top reasons: {top_reasons(broken)}"
            )
    return report, failures


def _run(gx, context, name: str, suite, df) -> dict[str, Any]:
    source = context.data_sources.add_spark(name=f"{name}_source")
    asset = source.add_dataframe_asset(name=name)
    batch = asset.add_batch_definition_whole_dataframe(f"{name}_batch")
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name=f"{name}_validation")
    )
    result = definition.run(batch_parameters={"dataframe": df})
    failed = [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column"),
            "observed": r.result.get("observed_value", r.result.get("unexpected_count")),
            "expected": {
                k: r.expectation_config.kwargs[k]
                for k in ("min_value", "max_value")
                if r.expectation_config.kwargs.get(k) is not None
            },
        }
        for r in result.results
        if not r.success
    ]
    return {
        "success": bool(result.success),
        "evaluated": len(result.results),
        "failed": failed,
    }


def _release_end(landing: dict[str, Any]) -> str | None:
    """Where the landed release ends (a public release cut at its own midnight), as landing
    recorded it; a landing from before it recorded one asks the dataset's reader."""
    if "release_end" in landing or not landing.get("dataset"):
        return landing.get("release_end")
    from jobs.readers import get_reader

    return getattr(get_reader(landing["dataset"]), "RELEASE_END", None)


def _bounds(failed: dict[str, Any]) -> str:
    """ ", expected 1 .. 36" for a failed expectation with bounds, else ""."""
    bounds = failed.get("expected") or {}
    if not bounds:
        return ""
    return f", expected {bounds.get('min_value', '-inf')} .. {bounds.get('max_value', 'inf')}"


def validate_day(
    ds: str, config: Config | None = None, paths: Paths | None = None
) -> dict[str, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage pings from a batch job
    import great_expectations as gx

    config = config or load_config()
    paths = paths or Paths.from_env()
    spark = spark_session(config.spark)
    interactions = spark.read.parquet(str(partition(paths.normalized(INTERACTIONS), ds)))
    videos = spark.read.parquet(str(partition(paths.normalized(VIDEOS), ds)))
    landing = landed(paths)
    landed_days = landing.get("tables", {}).get(INTERACTIONS, {}).get("days") or [None]
    trailing = _trailing_counts(
        spark,
        paths.normalized(INTERACTIONS),
        ds,
        config.quality.volume_trailing_days,
        first_day=landed_days[0],
    )
    users_dir = partition(paths.normalized(USERS), ds)

    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keeps task logs readable
    suite = _suite_interactions(
        gx, ds, config, interactions.columns, trailing, _release_end(landing)
    )
    day_start = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    listed = videos.select("video_id").distinct().withColumn("_listed", F.lit(True))
    with_hour = (
        interactions.join(listed, "video_id", "left")
        .withColumn("video_in_catalog", F.coalesce("_listed", F.lit(False)))
        .drop("_listed")
        .withColumn(
            "hour_of_day",
            (F.unix_micros("event_ts") - F.lit(int(day_start.timestamp() * 1e6))) / F.lit(3.6e9),
        )
        .persist()  # each expectation is its own Spark action: read and join the day once
    )
    report = {
        INTERACTIONS: _run(gx, context, INTERACTIONS, suite, with_hour),
        VIDEOS: _run(gx, context, VIDEOS, _suite_catalog(gx, VIDEOS, "video_id"), videos),
    }
    if users_dir.exists():  # MicroLens and plain event logs have no user table
        users = spark.read.parquet(str(users_dir))
        report[USERS] = _run(gx, context, USERS, _suite_catalog(gx, USERS, "user_id"), users)
    with_hour.unpersist()
    quarantine, quarantine_failures = _quarantine_gate(spark, ds, config, paths)
    for table, table_report in report.items():
        if table in quarantine:
            table_report["quarantine"] = quarantine[table]
        out = partition(paths.validation(table), ds).with_suffix(".json")
        write_text(out, json.dumps(table_report, indent=2, default=str))
    failures = [
        f"{table}: {f['expectation']}({f['column']}) observed {f['observed']}{_bounds(f)}"
        for table, table_report in report.items()
        for f in table_report["failed"]
    ] + quarantine_failures
    if failures:
        raise ValidationFailed(f"validation of {partition_name(ds)} failed: " + "; ".join(failures))
    return {"ds": ds, "success": True, "tables": report, "quarantine": quarantine}
