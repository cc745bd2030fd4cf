"""The Spark tasks as a `spark-submit` application: the same job code as the in-process tasks.

    spark-submit --master local[2] jobs/submit.py --job normalize --ds 2020-07-05 \
        [--dataset kuairec --raw /path/to/release]

calls `jobs.normalize.normalize_days` / `features.compute.compute_features_days` (of the day,
or of the range `--through` ends), the functions the
DAG's @task tasks call in the worker's own process, and records the summary through
`reelflow.runs` as they do, so both paths write the same partitions and the same summary under
`$REELFLOW_HOME/runs/ds=D/`. The master comes from the submit command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jobs.landing import run_days
from lake.partitions import check_day
from reelflow.meter import StageMeter
from reelflow.runs import record_days, source

JOBS = ("normalize", "features")


def _day(value: str) -> str:
    try:
        return check_day(value, "--ds")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jobs/submit.py", description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, choices=JOBS)
    parser.add_argument("--ds", type=_day, required=True, help="the UTC day, YYYY-MM-DD")
    parser.add_argument(
        "--through",
        default="",
        help="a range's last day (the daily DAG's param); empty: --ds alone",
    )
    parser.add_argument("--dataset", default="", help="empty: the home's")
    parser.add_argument("--raw", default="", help="empty: the home's")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    # lake.spark.spark_session must keep the master that spark-submit gave the session.
    os.environ.setdefault("SPARK_SUBMIT_MODE", "1")
    days = run_days(args.ds, args.through or None)
    if args.job == "normalize":
        from jobs.normalize import normalize_days

        dataset, raw = source({"dataset": args.dataset, "raw": args.raw})
        with StageMeter() as meter:  # the driver's side: its JVM is its parent here
            summaries = normalize_days(dataset, raw, days)
        return record_days(days, "normalize", summaries, meter)
    from features.compute import compute_features_days

    with StageMeter() as meter:
        summaries = compute_features_days(days)
    return record_days(days, "features", summaries, meter)


def main(argv: list[str] | None = None) -> int:
    summary = run(parse_args(argv))
    print(json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
