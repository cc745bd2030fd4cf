"""Benchmark: normalizing KuaiRec's big_matrix.csv, reelflow's Spark job vs DuckDB.

Both sides run the same transformation on the same generated file (full scale by default):
parse every column, apply the row rules (ids, numbers, negative durations, watch-ratio range,
exact duplicates), compute the UTC day, and write parquet partitioned by day. The Spark job
runs through `spark-submit` (local[N]) as a cluster would; DuckDB runs in-process with the
same thread count. Their outputs are checked equal by an order-independent checksum, then
rows/s and the ratio are printed and written to bench/results/normalize.json.

    .venv/bin/python bench/normalize.py [--scale full] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobs.readers.kuairec import MATRIX_COLUMNS as COLUMNS  # noqa: E402
from reelflow.config import QualityConfig  # noqa: E402
from synthetic.kuairec import generate_kuairec  # noqa: E402


def duckdb_normalize(csv: Path, out: Path, threads: int, quality: QualityConfig) -> float:
    """The reference: the same rules as jobs/readers/kuairec.py, in DuckDB SQL."""
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    raw_cols = ", ".join(f'"{c}" AS raw_{c}' for c in COLUMNS)
    partition_cols = ", ".join(f"raw_{c}" for c in COLUMNS)
    sql = f"""
    COPY (
      WITH raw AS (
        SELECT {raw_cols} FROM read_csv('{csv}', header = true, all_varchar = true, delim = ',',
                                        quote = '"', escape = '"', new_line = '\\n')
      ), parsed AS (
        SELECT *,
          TRY_CAST(trim(raw_user_id) AS BIGINT) AS user_id,
          TRY_CAST(trim(raw_video_id) AS BIGINT) AS video_id,
          TRY_CAST(trim(raw_play_duration) AS DOUBLE) AS play_duration,
          TRY_CAST(trim(raw_video_duration) AS DOUBLE) AS video_duration,
          TRY_CAST(trim(raw_watch_ratio) AS DOUBLE) AS watch_ratio,
          epoch_ms(CAST(round(TRY_CAST(trim(raw_timestamp) AS DOUBLE) * 1000) AS BIGINT)) AS event_ts
        FROM raw
      ), checked AS (
        SELECT *, CASE
          WHEN user_id IS NULL THEN 'user_id missing or not an integer'
          WHEN video_id IS NULL THEN 'video_id missing or not an integer'
          WHEN event_ts IS NULL THEN 'timestamp missing or not a number'
          WHEN play_duration IS NULL THEN 'play_duration not a number'
          WHEN play_duration < 0 THEN 'negative play_duration'
          WHEN video_duration IS NULL THEN 'video_duration not a number'
          WHEN video_duration < 0 THEN 'negative video_duration'
          WHEN watch_ratio IS NULL THEN 'watch_ratio not a number'
          WHEN watch_ratio < {quality.watch_ratio_min} OR watch_ratio > {quality.watch_ratio_max}
            THEN 'watch_ratio outside [{quality.watch_ratio_min}, {quality.watch_ratio_max}]'
        END AS rule_reason,
        row_number() OVER (PARTITION BY {partition_cols}) AS copy_number
        FROM parsed
      )
      SELECT {partition_cols}, user_id, video_id, event_ts,
        CAST(round(play_duration) AS BIGINT) AS watch_ms,
        CAST(round(video_duration) AS BIGINT) AS duration_ms,
        watch_ratio, 'kuairec' AS source,
        CASE WHEN rule_reason IS NULL AND copy_number > 1 THEN 'exact duplicate row' ELSE rule_reason END
          AS quarantine_reason,
        strftime(event_ts, '%Y-%m-%d') AS ds
      FROM checked
    ) TO '{out}' (FORMAT parquet, PARTITION_BY (ds))
    """
    started = time.perf_counter()
    con.execute(sql)
    return time.perf_counter() - started


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


def spark_normalize(raw: Path, out: Path, threads: int, engine: str) -> tuple[float, float]:
    """Runs the Spark job through spark-submit; returns (job seconds, spark-submit wall seconds)."""
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_SUBMIT_MODE": "1",  # the master comes from spark-submit, not the session builder
        "REELFLOW_SPARK__CSV_ENGINE": engine,
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


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full", choices=["tiny", "demo", "small", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="reelflow-bench-"))
    raw = work / "raw"
    if not (raw / "reelflow_manifest.json").exists():
        generate_kuairec(raw, scale=args.scale, seed=args.seed)
    manifest = json.loads((raw / "reelflow_manifest.json").read_text())
    rows = manifest["rows"]["big_matrix"]
    quality = QualityConfig()

    duck_out, spark_out = work / "duckdb_out", work / "spark_out"
    for folder in (duck_out, spark_out):
        shutil.rmtree(folder, ignore_errors=True)
    duck_seconds = duckdb_normalize(raw / "big_matrix.csv", duck_out, args.threads, quality)

    job_seconds, submit_seconds = spark_normalize(raw, spark_out, args.threads, "arrow")
    builtin_out = work / "spark_builtin_out"
    shutil.rmtree(builtin_out, ignore_errors=True)
    builtin_seconds, _ = spark_normalize(raw, builtin_out, args.threads, "spark")
    if checksum(builtin_out) != checksum(spark_out):
        raise SystemExit("Spark's built-in CSV reader and the Arrow source disagree")

    spark_sum, duck_sum = checksum(spark_out), checksum(duck_out)
    if spark_sum != duck_sum:
        raise SystemExit(f"outputs differ: spark {spark_sum} vs duckdb {duck_sum}")

    report = {
        "benchmark": "normalize_kuairec_big_matrix",
        "git_commit": git_commit(),
        "seed": args.seed,
        "scale": args.scale,
        "rows": rows,
        "threads": args.threads,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "checksum": spark_sum,
        "spark_job_seconds": round(job_seconds, 2),
        "spark_submit_seconds": round(submit_seconds, 2),
        "duckdb_seconds": round(duck_seconds, 2),
        "spark_rows_per_s": round(rows / job_seconds),
        "duckdb_rows_per_s": round(rows / duck_seconds),
        "spark_over_duckdb": round(job_seconds / duck_seconds, 2),
        "spark_builtin_csv_seconds": round(builtin_seconds, 2),
        "spark_builtin_csv_over_duckdb": round(builtin_seconds / duck_seconds, 2),
    }
    out = REPO / "bench" / "results" / "normalize.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{rows:,} rows, {args.threads} threads, outputs identical ({spark_sum['rejected']} rejected)\n"
        f"  Spark job  {job_seconds:7.1f} s  {report['spark_rows_per_s']:>12,} rows/s  "
        f"(spark-submit wall {submit_seconds:.1f} s)\n"
        f"  Spark, built-in CSV reader {builtin_seconds:7.1f} s "
        f"({report['spark_builtin_csv_over_duckdb']}x DuckDB)\n"
        f"  DuckDB     {duck_seconds:7.1f} s  {report['duckdb_rows_per_s']:>12,} rows/s\n"
        f"  Spark / DuckDB time: {report['spark_over_duckdb']}x   -> {out.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
