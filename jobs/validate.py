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
from lake.spark import read_days, spark_session
from reelflow.config import Config, load_config
from reelflow.paths import Paths
from reelflow.state import write_text


class ValidationFailed(RuntimeError):
    pass


def _row_rules(gx, suite, config: Config, columns: list[str]):
    """The rules every interaction row must meet, for one day or a range: the unified schema's
    columns, keys and time present, the watch ratio within the configured bounds."""
    q, ex = config.quality, gx.expectations
    for column in INTERACTION_REQUIRED:
        suite.add_expectation(ex.ExpectColumnToExist(column=column))
    for column in ("user_id", "video_id", "event_ts"):
        suite.add_expectation(ex.ExpectColumnValuesToNotBeNull(column=column))
    if "watch_ratio" in columns:
        suite.add_expectation(
            ex.ExpectColumnValuesToBeBetween(
                column="watch_ratio", min_value=q.watch_ratio_min, max_value=q.watch_ratio_max
            )
        )
    return suite


def _volume_bounds(trailing: list[int], config: Config) -> tuple[int, int | None]:
    """A day's row count bounds: against the trailing days' average (catches a half-delivered
    or doubled day), or at least one row without trailing days."""
    if not trailing:
        return 1, None
    average, q = sum(trailing) / len(trailing), config.quality
    return max(1, int(average * q.volume_min_ratio)), int(average * q.volume_max_ratio) + 1


def _fresh_until(ds: str, release_end: str | None) -> float:
    """The hour of day D by which its last view must have come, less freshness_hours: the day
    a release ends on (KuaiRand: 16:00 UTC) ends then; every other day, at midnight."""
    day_start = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    if release_end:
        end = datetime.fromisoformat(release_end)
        if day_start <= end < day_start + timedelta(days=1):
            return (end - day_start).total_seconds() / 3600
    return 24.0


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
    suite = _row_rules(gx, gx.ExpectationSuite(name=f"{INTERACTIONS}_suite"), config, columns)
    low, high = _volume_bounds(trailing, config)
    suite.add_expectation(
        ex.ExpectTableRowCountToBeBetween(min_value=low, **({"max_value": high} if high else {}))
    )
    # On the derived hour of day: GE's Spark engine does not compute max() of a timestamp.
    suite.add_expectation(
        ex.ExpectColumnMaxToBeBetween(
            column="hour_of_day",
            min_value=_fresh_until(ds, release_end) - q.freshness_hours,
            max_value=24.0,
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


def _day_counts(spark, table_dir, days: list[str]) -> dict[str, int]:
    """Row counts of the days of `days` that have a partition (an empty one counts 0), in one
    grouped read."""
    held = [d for d in days if partition(table_dir, d).exists()]
    frame = read_days(spark, table_dir, held)
    counted = dict(frame.groupBy("ds").count().collect()) if frame is not None else {}
    return {d: counted.get(d, 0) for d in held}


def _trailing(ds: str, days: int, first_day: str | None, counts: dict[str, int]) -> list[int]:
    """Row counts of the `days` days before DS that have a partition (`counts`, from
    `_day_counts`), the volume baseline. The release's first landed day is left out: a
    release is cut at its own midnight (KuaiRand's at Beijing's, 16:00 UTC), so its first UTC
    day holds only part of a day (KuaiRand-1K: its second day has 3x the first's rows, and
    failed the volume check)."""
    return [counts[d] for d in days_back(ds, days + 1)[:-1] if d != first_day and d in counts]


def _quarantine_gate(
    spark, days: list[str], config: Config, paths: Paths
) -> tuple[dict[str, dict], list[str]]:
    """Per day of `days` and table with a quarantine partition of that day: counts, share, and
    a failure line when the share exceeds quality.max_quarantine_share (one grouped read of
    each table over the days)."""
    from jobs.normalize import quarantine_share, top_reasons
    from lake.schema import QUARANTINE_REASON

    limit = config.quality.max_quarantine_share
    root = paths.quarantine(INTERACTIONS).parent
    report: dict[str, dict[str, Any]] = {ds: {} for ds in days}
    failures: list[str] = []
    tables = (
        sorted(p.name for p in root.iterdir() if not p.name.startswith("_"))
        if root.exists()
        else []
    )
    for table in tables:
        held = [ds for ds in days if partition(paths.quarantine(table), ds).exists()]
        if not held:
            continue
        reasons: dict[str, dict[str, int]] = {ds: {} for ds in held}
        for r in (
            read_days(spark, paths.quarantine(table), held)
            .groupBy("ds", QUARANTINE_REASON)
            .count()
            .collect()
        ):
            reasons[r["ds"]][r[QUARANTINE_REASON]] = r["count"]
        good = read_days(spark, paths.normalized(table), held)
        written = dict(good.groupBy("ds").count().collect()) if good is not None else {}
        for ds in held:
            n_written, counted = written.get(ds, 0), reasons[ds]
            quarantined = sum(counted.values())
            share, duplicates = quarantine_share(n_written + quarantined, counted)
            report[ds][table] = {
                "read": n_written + quarantined,
                "written": n_written,
                "quarantined": quarantined,
                "duplicates": duplicates,
                "quarantine_share": round(share, 6),
                "max_quarantine_share": limit,
                "success": share <= limit,
                "reasons": counted,
            }
            if share > limit:
                broken = {r: n for r, n in counted.items() if r != DUPLICATE}
                failures.append(
                    f"{table}: quarantine share {share:.1%} of the day's rows "
                    f"({quarantined - duplicates} of {n_written + quarantined - duplicates}, exact "
                    f"duplicates apart: {duplicates}) exceeds quality.max_quarantine_share "
                    f"{limit:.1%}; top reasons: {top_reasons(broken)}"
                    + (f" ({partition_name(ds)})" if len(days) > 1 else "")
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
    trailing_days = config.quality.volume_trailing_days
    before = days_back(ds, trailing_days + 1)[:-1]
    counts = _day_counts(spark, paths.normalized(INTERACTIONS), before)
    trailing = _trailing(ds, trailing_days, landed_days[0], counts)
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
    quarantine, quarantine_failures = _quarantine_gate(spark, [ds], config, paths)
    quarantine = quarantine[ds]
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


def validate_days(
    days: list[str], config: Config | None = None, paths: Paths | None = None
) -> dict[str, dict[str, Any]]:
    """The gate over many days (a first load) in one Great Expectations run per table instead
    of one per day: the row rules over every day's rows at once (an event inside its own
    partition's day, a watched video in that day's catalog), and the per-day rules (volume
    against the trailing days, freshness, catalog keys unique and present) over a frame of
    one row per day, with the same bounds `validate_day` computes. A range that fails is
    validated day by day, oldest first, so the error names the first failing day and its
    expectation exactly as a daily run would. Returns each day's summary."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    days = sorted(set(days))
    if len(days) == 1:
        return {days[0]: validate_day(days[0], config, paths)}
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    config = config or load_config()
    paths = paths or Paths.from_env()
    q = config.quality
    spark = spark_session(config.spark)
    table_dir = {t: paths.normalized(t) for t in (INTERACTIONS, VIDEOS, USERS)}
    for table in (INTERACTIONS, VIDEOS):
        missing = [d for d in days if not partition(table_dir[table], d).exists()]
        if missing:
            raise FileNotFoundError(
                f"no normalized {table} of {', '.join(partition_name(d) for d in missing[:3])} "
                f"under {table_dir[table]}"
            )
    landing = landed(paths)
    first_day = (landing.get("tables", {}).get(INTERACTIONS, {}).get("days") or [None])[0]
    release_end = _release_end(landing)
    interactions = read_days(spark, table_dir[INTERACTIONS], days)
    videos = read_days(spark, table_dir[VIDEOS], days)
    listed = videos.select("ds", "video_id").distinct().withColumn("_listed", F.lit(True))
    with_hour = (
        interactions.join(listed, ["ds", "video_id"], "left")
        .withColumn("video_in_catalog", F.coalesce("_listed", F.lit(False)))
        .drop("_listed")
        .withColumn(
            "hour_of_day",
            (F.col("event_ts").cast("double") - F.to_timestamp("ds").cast("double")) / 3600.0,
        )
        .persist()
    )
    # The per-day frame: rows, the volume bounds from the trailing days, the freshness floor.
    trailing_days = q.volume_trailing_days
    span = sorted({d for ds in days for d in days_back(ds, trailing_days + 1)})
    counts = _day_counts(spark, table_dir[INTERACTIONS], span)
    max_hour = dict(with_hour.groupBy("ds").agg(F.max("hour_of_day")).collect())
    catalog_rows = dict(videos.groupBy("ds").count().collect())
    users_days = [d for d in days if partition(table_dir[USERS], d).exists()]
    users = read_days(spark, table_dir[USERS], users_days)
    user_rows = dict(users.groupBy("ds").count().collect()) if users is not None else {}
    per_day = []
    for ds in days:
        low, high = _volume_bounds(_trailing(ds, trailing_days, first_day, counts), config)
        per_day.append(
            (
                ds,
                counts.get(ds, 0),
                low,
                high or 2**62,
                max_hour.get(ds),
                _fresh_until(ds, release_end) - q.freshness_hours,
                catalog_rows.get(ds, 0),
                user_rows.get(ds, 0) if ds in users_days else None,  # MicroLens: no user table
            )
        )
    daily = spark.createDataFrame(
        per_day,
        "ds string, rows long, volume_min long, volume_max long, max_hour double, "
        "fresh_from double, catalog_rows long, user_rows long",
    )
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    ex = gx.expectations
    rows_suite = gx.ExpectationSuite(name=f"{INTERACTIONS}_suite")
    _row_rules(gx, rows_suite, config, interactions.columns)
    rows_suite.add_expectation(  # each event inside its own partition's UTC day
        ex.ExpectColumnValuesToBeBetween(
            column="hour_of_day", min_value=0.0, max_value=24.0, strict_max=True
        )
    )
    rows_suite.add_expectation(
        ex.ExpectColumnValuesToBeInSet(column="video_in_catalog", value_set=[True])
    )
    days_suite = gx.ExpectationSuite(name="days_suite")
    for a, b in (("rows", "volume_min"), ("volume_max", "rows"), ("max_hour", "fresh_from")):
        days_suite.add_expectation(
            ex.ExpectColumnPairValuesAToBeGreaterThanB(column_A=a, column_B=b, or_equal=True)
        )
    for column in ("catalog_rows", "user_rows"):  # nulls (no user table) are not checked
        days_suite.add_expectation(ex.ExpectColumnValuesToBeBetween(column=column, min_value=1))
    catalog_suite = gx.ExpectationSuite(name=f"{VIDEOS}_suite")
    catalog_suite.add_expectation(ex.ExpectColumnValuesToNotBeNull(column="video_id"))
    catalog_suite.add_expectation(
        ex.ExpectCompoundColumnsToBeUnique(column_list=["ds", "video_id"])
    )
    report = {
        INTERACTIONS: _run(gx, context, INTERACTIONS, rows_suite, with_hour),
        "days": _run(gx, context, "days", days_suite, daily),
        VIDEOS: _run(gx, context, VIDEOS, catalog_suite, videos),
    }
    if users is not None:
        users_suite = gx.ExpectationSuite(name=f"{USERS}_suite")
        users_suite.add_expectation(ex.ExpectColumnValuesToNotBeNull(column="user_id"))
        users_suite.add_expectation(
            ex.ExpectCompoundColumnsToBeUnique(column_list=["ds", "user_id"])
        )
        report[USERS] = _run(gx, context, USERS, users_suite, users)
    with_hour.unpersist()
    quarantine, quarantine_failures = _quarantine_gate(spark, days, config, paths)
    if quarantine_failures or not all(r["success"] for r in report.values()):
        # Name the first failing day as its own run would: validate day by day, oldest first.
        return {ds: validate_day(ds, config, paths) for ds in days}
    span_of = [days[0], days[-1]]
    out = {}
    for ds in days:
        tables = {
            table: {
                "success": True,
                "evaluated": report[table]["evaluated"]
                + (table == INTERACTIONS) * len(days_suite.expectations),
                "failed": [],
                "range": span_of,
            }
            for table in (INTERACTIONS, VIDEOS, *([USERS] if ds in users_days else []))
        }
        for table, table_report in tables.items():
            if table in quarantine[ds]:
                table_report["quarantine"] = quarantine[ds][table]
            out_file = partition(paths.validation(table), ds).with_suffix(".json")
            write_text(out_file, json.dumps(table_report, indent=2, default=str))
        out[ds] = {
            "ds": ds,
            "success": True,
            "tables": tables,
            "quarantine": quarantine[ds],
            "range": span_of,
        }
    return out
