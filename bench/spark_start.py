"""Benchmark: a Spark task's start-up with the driver's class-data-sharing archive, against the
same task without it.

    .venv/bin/python bench/spark_start.py [--repeats 7]     # bench/results/spark_start.json

Every Airflow task of the daily DAG is a fresh process that starts its own Spark driver JVM
(lake/spark.py), and on a small day that start-up is most of the task. `make install` dumps
the classes a driver loads into an AppCDS archive that each driver maps instead of loading and
verifying them again. Two cases, each a fresh child process as a task is:

- `session`: `spark_session()` and one tiny job (`spark.range(100)` summed): the JVM's floor.
- `normalize`: `reelflow normalize` of one day of a tiny generated KuaiRec release (the CLI a
  task runs: land check, Spark reader, quarantine, Parquet out), wall time of the process.

The two sides alternate (with, without, with, ...) in one run, after one unmeasured warm-up
each (file caches, the landing), so load on a shared machine falls on both alike; the ratio of
medians is the result. `REELFLOW_SPARK_CLASS_ARCHIVE=0` is the side without. The record holds
the git commit, whether the tree was dirty (refused unless --allow-dirty), the seed of the
generated release and the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train_seq import git_state, machine, refuse_dirty, write_json  # noqa: E402
from lake.spark import ARCHIVE_ENV, build_class_archive  # noqa: E402

SESSION = (
    "from lake.spark import spark_session; "
    "assert spark_session().range(100).selectExpr('sum(id)').collect()[0][0] == 4950"
)


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    child = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"{argv[1:4]} failed:\n{child.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="measured runs per side and case")
    parser.add_argument("--seed", type=int, default=0, help="of the generated release")
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "spark_start.json")
    args = parser.parse_args()
    state = git_state()
    refuse_dirty(state, args.allow_dirty, "the result")
    archive = build_class_archive()
    if archive is None:
        raise SystemExit("this JDK made no class archive: nothing to compare")

    from synthetic.kuairec import generate_kuairec

    scratch = Path(tempfile.mkdtemp(prefix="reelflow-spark-start-"))
    raw = scratch / "KuaiRec 2.0" / "data"
    day = generate_kuairec(raw, scale="tiny", seed=args.seed)["days"][0]
    cases = {
        "session": [sys.executable, "-c", SESSION],
        "normalize": [sys.executable, "-m", "reelflow.cli", "normalize", "--dataset", "kuairec"]
        + ["--raw", str(raw), "--ds", day, "--json"],
    }
    home = {"REELFLOW_HOME": str(scratch / "home")}
    sides = {
        side: {**os.environ, **home, ARCHIVE_ENV: value}
        for side, value in (("with_archive", str(archive)), ("without_archive", "0"))
    }
    results: dict[str, dict] = {}
    for case, argv in cases.items():
        seconds: dict[str, list[float]] = {side: [] for side in sides}
        for env in sides.values():  # warm-up, not counted
            timed(argv, env)
        for _ in range(args.repeats):
            for side, env in sides.items():
                seconds[side].append(round(timed(argv, env), 3))
        medians = {side: statistics.median(v) for side, v in seconds.items()}
        results[case] = {
            "seconds": seconds,
            "median_s": {side: round(m, 3) for side, m in medians.items()},
            "without_over_with": round(medians["without_archive"] / medians["with_archive"], 2),
            "saved_s": round(medians["without_archive"] - medians["with_archive"], 2),
        }
        print(
            f"{case:10s} median {medians['with_archive']:.2f} s with the archive, "
            f"{medians['without_archive']:.2f} s without: "
            f"{results[case]['without_over_with']}x, {results[case]['saved_s']:.2f} s saved",
            flush=True,
        )
    record = {
        "benchmark": "spark_start",
        **state,
        "seed": args.seed,
        "machine": machine(threads=0),
        "archive_mib": round(archive.stat().st_size / 2**20),
        "repeats": args.repeats,
        "method": "fresh child process per run, sides alternating, one warm-up each; medians",
        "cases": results,
    }
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
