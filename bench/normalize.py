"""Benchmark: normalizing KuaiRec's big_matrix.csv, reelflow's Spark job vs DuckDB.

Both sides run the same transformation on the same generated file (full scale by default),
into which four line-level faults of a real log are written (`LINE_FAULTS`: a cut line, a
field too many, two lines in Latin-1): the line-level rules (invalid UTF-8, the wrong number of
fields), parse every column, apply the row rules (the id and number grammars, finite numbers
that fit a long, negative durations, the plausible-time window of one landing clock, the
watch-ratio range, exact duplicates), compute the UTC day, and write parquet partitioned by
day. Spark's built-in CSV reader, which has no line-level rules, is timed on the file without
the faults and checked against DuckDB on that file. The Spark job
runs through `spark-submit` (local[N]) as a cluster would; DuckDB runs in-process with the
same thread count. Their outputs are checked equal by an order-independent checksum, then
rows/s and the ratio (with and without spark-submit's start-up) are printed and written to
bench/results/normalize.json, with the commit; a tree with uncommitted changes is refused.

    .venv/bin/python bench/normalize.py [--scale full] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train_seq import git_state, machine, refuse_dirty, write_json  # noqa: E402
from jobs.readers.kuairec import MATRIX_COLUMNS as COLUMNS  # noqa: E402
from jobs.readers.native import (  # noqa: E402
    INTEGER_TEXT,
    NOW_ENV,
    NUMBER_TEXT,
    iso_ms,
    landing_now_ms,
    time_bounds,
)
from reelflow.config import QualityConfig  # noqa: E402
from synthetic.kuairec import generate_kuairec  # noqa: E402


def duckdb_normalize(
    csv: Path, out: Path, threads: int, quality: QualityConfig, now_ms: int
) -> float:
    """The reference: the row rules of jobs/readers/kuairec.py (README "Row rules"), in DuckDB
    SQL, in the same order with the same reasons: the id and number grammars (RE2, full
    match), finite numbers, HALF_UP rounding to longs that must fit, the plausible-time window
    of the landing clock `now_ms`, the watch-ratio range, then exact duplicates.

    The two line-level rules come first, as the reader's: a line that is not valid UTF-8
    ("invalid UTF-8 on line N", N from 1 with the header), then a line with the wrong number
    of fields. DuckDB's CSV reader rejects both lines (`store_rejects`); they are written
    beside the day partitions with every column null, as the reader quarantines them.
    Seconds to ms is round(double * 1000): the reader's exact HALF_UP of the double differs
    only for a value within 2**-40 of a half millisecond, which the file (ms precision)
    never holds."""
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    raw_cols = ", ".join(f'"{c}" AS raw_{c}' for c in COLUMNS)
    partition_cols = ", ".join(f"raw_{c}" for c in COLUMNS)
    earliest, latest = time_bounds(quality, now_ms)
    low, high = quality.watch_ratio_min, quality.watch_ratio_max
    # The reader's grammars (Java regexes anchored by ^ and \z), as RE2 full matches.
    integer = INTEGER_TEXT.removeprefix("^").removesuffix(r"\z")
    number = NUMBER_TEXT.removeprefix("^").removesuffix(r"\z")
    ids, numbers = ("user_id", "video_id"), ("play_duration", "video_duration", "watch_ratio")
    fields = {c: integer for c in ids} | {c: number for c in (*numbers, "timestamp")}

    def each(template: str, names=fields) -> str:
        return ",\n          ".join(template.format(c=c, grammar=fields[c]) for c in names)

    def to_long(rounded: str) -> str:  # a rounded double as a long, null when it does not fit
        fits = f"{rounded} >= -9223372036854775808 AND {rounded} < 9223372036854775808.0"
        return f"CASE WHEN {fits} THEN CAST({rounded} AS BIGINT) END"

    def number_rules(c: str, non_negative: bool, long_value: str) -> str:
        negative = f"WHEN {c} < 0 THEN 'negative {c}'" if non_negative else ""
        return (
            f"WHEN NOT ok_{c} THEN '{c} missing or not a number' {negative} "
            f"WHEN {long_value} IS NULL THEN '{c} out of range'"
        )

    # Staged like the reader (`with_numbers`): each field's match, cast and rounding once a row.
    sql = f"""
    COPY (
      WITH raw AS (
        SELECT {raw_cols} FROM read_csv('{csv}', header = true, all_varchar = true, delim = ',',
                                        quote = '"', escape = '"', new_line = '\\n',
                                        store_rejects = true)
      ), matched AS (
        SELECT *,
          {each("coalesce(regexp_full_match(trim(raw_{c}, ' '), '{grammar}'), false) AS ok_{c}")}
        FROM raw
      ), cast_ AS (
        SELECT *,
          {each("CASE WHEN ok_{c} THEN TRY_CAST(trim(raw_{c}, ' ') AS BIGINT) END AS {c}", ids)},
          {each("CASE WHEN ok_{c} THEN TRY_CAST(trim(raw_{c}, ' ') AS DOUBLE) END AS double_{c}", [*numbers, "timestamp"])}
        FROM matched
      ), parsed AS (
        SELECT *,
          {each("CASE WHEN isfinite(double_{c}) THEN double_{c} END AS {c}", numbers)},
          CASE WHEN isfinite(double_timestamp) THEN double_timestamp END AS seconds
        FROM cast_
      ), rounded AS (
        SELECT *, round(play_duration) AS round_play, round(video_duration) AS round_video,
          round(seconds * 1000) AS round_ms
        FROM parsed
      ), longs AS (
        SELECT *, {to_long("round_play")} AS watch_ms, {to_long("round_video")} AS duration_ms,
          {to_long("round_ms")} AS ts_ms
        FROM rounded
      ), checked AS (
        SELECT *, ts_ms BETWEEN {earliest} AND {latest} AS plausible, CASE
          WHEN user_id IS NULL THEN 'user_id missing or not an integer'
          WHEN video_id IS NULL THEN 'video_id missing or not an integer'
          {number_rules("timestamp", False, "ts_ms")}
          WHEN ts_ms < {earliest} THEN 'timestamp before {str(quality.min_event_time)[:10]} (quality.min_event_time)'
          WHEN ts_ms > {latest} THEN 'timestamp after {iso_ms(latest)} (quality.max_future_days)'
          {number_rules("play_duration", True, "watch_ms")}
          {number_rules("video_duration", True, "duration_ms")}
          WHEN watch_ratio IS NULL THEN 'watch_ratio missing or not a number'
          WHEN watch_ratio < {low} OR watch_ratio > {high} THEN 'watch_ratio outside [{low}, {high}]'
        END AS rule_reason,
        row_number() OVER (PARTITION BY {partition_cols}) AS copy_number
        FROM longs
      )
      SELECT {partition_cols}, user_id, video_id,
        CASE WHEN plausible THEN epoch_ms(ts_ms) END AS event_ts,
        watch_ms, duration_ms, watch_ratio, 'kuairec' AS source,
        CASE WHEN rule_reason IS NULL AND copy_number > 1 THEN 'exact duplicate row' ELSE rule_reason END
          AS quarantine_reason,
        CASE WHEN plausible THEN strftime(epoch_ms(ts_ms), '%Y-%m-%d') END AS ds
      FROM checked
    ) TO '{out}' (FORMAT parquet, PARTITION_BY (ds))
    """
    # Rejected lines (after the scan above has filled `reject_errors`): one row per line, the
    # invalid encoding first, with the output's columns and no day.
    rejected = f"""
    COPY (
      SELECT {", ".join(f"NULL::VARCHAR AS raw_{c}" for c in COLUMNS)}, NULL::BIGINT AS user_id,
        NULL::BIGINT AS video_id, NULL::TIMESTAMP AS event_ts, NULL::BIGINT AS watch_ms,
        NULL::BIGINT AS duration_ms, NULL::DOUBLE AS watch_ratio, 'kuairec' AS source,
        CASE WHEN bool_or(error_type = 'INVALID ENCODING') THEN 'invalid UTF-8 on line ' || line
             ELSE 'malformed row: wrong number of fields' END AS quarantine_reason
      FROM reject_errors GROUP BY line
    ) TO '{out}/ds=__HIVE_DEFAULT_PARTITION__/rejected_lines.parquet' (FORMAT parquet)
    """
    started = time.perf_counter()
    con.execute(sql)
    (out / "ds=__HIVE_DEFAULT_PARTITION__").mkdir(parents=True, exist_ok=True)
    con.execute(rejected)
    return time.perf_counter() - started


# Line-level faults of a real log, written into a copy of the generated file (which holds
# none) at these fractions of its lines: a cut line (a partial write), a line with a field too
# many, two lines in Latin-1 (not UTF-8), one of them also short of a field.
LINE_FAULTS = (
    (0.1, lambda line: line.rsplit(b",", 2)[0]),
    (0.35, lambda line: line + b",1"),
    (0.6, lambda line: line.replace(b",", "é,".encode("latin-1"), 1)),
    (0.85, lambda line: line.rsplit(b",", 1)[0].replace(b",", b"\xe9,", 1)),
)


def with_line_faults(release: Path, messy: Path) -> dict:
    """`messy`: the release with `LINE_FAULTS` in its big_matrix.csv (the other files linked);
    returns where they are. Made once per scratch folder."""
    marker = messy / "line_faults.json"
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(messy, ignore_errors=True)
    messy.mkdir(parents=True)
    for file in release.iterdir():
        if file.name != "big_matrix.csv":
            os.link(file, messy / file.name)
    lines = (release / "big_matrix.csv").read_bytes().split(b"\n")
    body = len(lines) - 2  # the header and the empty string after the last line end
    at = {1 + int(fraction * body): fault for fraction, fault in LINE_FAULTS}
    for index, fault in at.items():
        lines[index] = fault(lines[index])
    (messy / "big_matrix.csv").write_bytes(b"\n".join(lines))
    faults = {"lines": sorted(i + 1 for i in at)}  # line numbers from 1, the header's 1
    marker.write_text(json.dumps(faults))
    return faults


def checksum(path: Path) -> dict:
    """Row count, per-day counts and an order-independent hash of every output row."""
    con = duckdb.connect()
    rows = f"""
      SELECT user_id, video_id, epoch_ms(event_ts) AS ms, watch_ms, duration_ms, watch_ratio,
             quarantine_reason, NULLIF(CAST(ds AS VARCHAR), '__HIVE_DEFAULT_PARTITION__') AS ds
      FROM read_parquet('{path}/**/*.parquet', hive_partitioning = true)
    """
    total, digest = con.execute(
        f"SELECT count(*), bit_xor(hash(user_id, video_id, ms, watch_ms, duration_ms, watch_ratio, quarantine_reason, ds)) FROM ({rows})"
    ).fetchone()
    rejected = con.execute(
        f"SELECT count(*) FROM ({rows}) WHERE quarantine_reason IS NOT NULL"
    ).fetchone()[0]
    return {"rows": total, "rejected": rejected, "hash": str(digest)}


def line_level_reasons(path: Path) -> dict[str, int]:
    """How many output rows carry each line-level reason."""
    found = (
        duckdb.connect()
        .execute(
            f"""SELECT quarantine_reason, count(*) FROM read_parquet('{path}/**/*.parquet',
              hive_partitioning = true)
            WHERE quarantine_reason LIKE 'invalid UTF-8%' OR quarantine_reason LIKE 'malformed%'
            GROUP BY 1 ORDER BY 1"""
        )
        .fetchall()
    )
    return dict(found)


def spark_normalize(
    raw: Path, out: Path, threads: int, engine: str, now_ms: int
) -> tuple[float, float]:
    """Runs the Spark job through spark-submit; returns (job seconds, spark-submit wall seconds)."""
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_SUBMIT_MODE": "1",  # the master comes from spark-submit, not the session builder
        "REELFLOW_SPARK__CSV_ENGINE": engine,
        NOW_ENV: iso_ms(now_ms),  # both sides judge plausible times by one landing clock
    }
    spark_submit = Path(sys.executable).parent / "spark-submit"
    started = time.perf_counter()
    result = subprocess.run(
        [
            str(spark_submit),
            "--master",
            f"local[{threads}]",
            "--driver-memory",
            "6g",
            str(REPO / "bench" / "spark_land_interactions.py"),
            str(raw),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"spark-submit ({engine}) failed:\n{result.stderr[-4000:]}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("SPARK_SECONDS="))
    return float(line.split("=")[1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full", choices=["tiny", "demo", "small", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--allow-dirty", action="store_true")
    args = parser.parse_args()
    state = git_state()
    refuse_dirty(state, args.allow_dirty, "the result")

    work = Path(args.work or tempfile.mkdtemp(prefix="reelflow-bench-"))
    raw = work / "raw"
    if not (raw / "reelflow_manifest.json").exists():
        generate_kuairec(raw, scale=args.scale, seed=args.seed)
    manifest = json.loads((raw / "reelflow_manifest.json").read_text())
    rows = manifest["rows"]["big_matrix"]
    quality = QualityConfig()

    messy = work / "messy"
    faults = with_line_faults(raw, messy)
    rows += len(faults["lines"])  # each fault stays a row, quarantined

    duck_out, spark_out = work / "duckdb_out", work / "spark_out"
    clean_duck_out, builtin_out = work / "duckdb_clean_out", work / "spark_builtin_out"
    for folder in (duck_out, spark_out, clean_duck_out, builtin_out):
        shutil.rmtree(folder, ignore_errors=True)
    now_ms = landing_now_ms()
    duck_seconds = duckdb_normalize(
        messy / "big_matrix.csv", duck_out, args.threads, quality, now_ms
    )
    job_seconds, submit_seconds = spark_normalize(messy, spark_out, args.threads, "arrow", now_ms)
    spark_sum, duck_sum = checksum(spark_out), checksum(duck_out)
    if spark_sum != duck_sum:
        raise SystemExit(f"outputs differ: spark {spark_sum} vs duckdb {duck_sum}")
    line_reasons = line_level_reasons(spark_out)
    if sum(line_reasons.values()) != len(faults["lines"]):
        raise SystemExit(f"line-level faults at {faults['lines']}, quarantined: {line_reasons}")

    # Spark's built-in CSV reader has no line-level rules: timed on the file without faults,
    # its output checked against DuckDB's of that file.
    builtin_seconds, _ = spark_normalize(raw, builtin_out, args.threads, "spark", now_ms)
    duckdb_normalize(raw / "big_matrix.csv", clean_duck_out, args.threads, quality, now_ms)
    if checksum(builtin_out) != checksum(clean_duck_out):
        raise SystemExit("Spark's built-in CSV reader and DuckDB disagree on the clean file")

    report = {
        "benchmark": "normalize_kuairec_big_matrix",
        **state,
        "seed": args.seed,
        "scale": args.scale,
        "rows": rows,
        "threads": args.threads,
        "machine": machine(args.threads),
        "landing_clock": iso_ms(now_ms),
        "line_faults": {"lines": faults["lines"], "quarantined": line_reasons},
        "checksum": spark_sum,
        "spark_job_seconds": round(job_seconds, 2),
        "spark_submit_seconds": round(submit_seconds, 2),
        "duckdb_seconds": round(duck_seconds, 2),
        "spark_rows_per_s": round(rows / job_seconds),
        "duckdb_rows_per_s": round(rows / duck_seconds),
        "spark_over_duckdb": round(job_seconds / duck_seconds, 2),
        # With the JVM's start-up and the job's submission, as a scheduler pays them.
        "spark_submit_over_duckdb": round(submit_seconds / duck_seconds, 2),
        "spark_builtin_csv_seconds": round(builtin_seconds, 2),
        "spark_builtin_csv_over_duckdb": round(builtin_seconds / duck_seconds, 2),
    }
    out = REPO / "bench" / "results" / "normalize.json"
    write_json(out, report, indent=2)
    print(
        f"{rows:,} rows, {args.threads} threads, outputs identical ({spark_sum['rejected']} rejected, "
        f"line-level: {line_reasons})\n"
        f"  Spark job  {job_seconds:7.1f} s  {report['spark_rows_per_s']:>12,} rows/s  "
        f"(spark-submit wall {submit_seconds:.1f} s)\n"
        f"  Spark, built-in CSV reader {builtin_seconds:7.1f} s "
        f"({report['spark_builtin_csv_over_duckdb']}x DuckDB)\n"
        f"  DuckDB     {duck_seconds:7.1f} s  {report['duckdb_rows_per_s']:>12,} rows/s\n"
        f"  Spark / DuckDB time: {report['spark_over_duckdb']}x, "
        f"{report['spark_submit_over_duckdb']}x with spark-submit's start-up   -> {out.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
