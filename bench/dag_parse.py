"""Benchmark: what parsing reelflow's DAG files costs Airflow, against a minimal TaskFlow DAG.

Airflow 3's dag-processor parses every DAG file again and again (each file at most every
`[dag_processor] min_file_process_interval`, 30 s by default), each time in a child process
forked from the processor, which has Airflow itself imported already. This benchmark does
the same: one warm parent process imports Airflow and `DagBag`, then for every parse forks a
fresh child that loads one file with `DagBag(dag_folder=<file>)` (module import, DAG
construction, `dag.validate()`) and reports its wall time. Each child starts from the
parent's modules only, so what a DAG file imports (reelflow.dag_defaults, pendulum) is paid
on every parse, as it is in the processor. The reference is a minimal TaskFlow DAG (one
task, nothing imported beyond `airflow.sdk`), parsed the same way in the same run; the
ratio is what reelflow's files cost over Airflow's own floor. Fresh interpreters
(`python -c ...`) would mostly time the import of Airflow, which the processor never pays
per file. Per file: mean, p50 and p95 in ms, to bench/results/dag_parse.json.

    .venv/bin/python bench/dag_parse.py [--parses 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MINIMAL_DAG = """
import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2020, 1, 1, tz="UTC"), catchup=False)
def minimal():
    @task
    def hello():
        return 1

    hello()


minimal()
"""


def parse_in_fork(path: Path) -> tuple[float, int, int]:
    """Forks a child that parses `path` with DagBag; returns (ms, DAGs, tasks) it reports."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, report, leave without running the parent's cleanup
        os.close(read)
        from airflow.dag_processing.dagbag import DagBag

        start = time.perf_counter()
        bag = DagBag(dag_folder=str(path))
        ms = (time.perf_counter() - start) * 1000
        tasks = sum(len(d.tasks) for d in bag.dags.values())
        failed = 1 if bag.import_errors else 0
        os.write(write, json.dumps([ms, len(bag.dags), tasks, failed]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        ms, dags, tasks, failed = json.loads(fh.read())
    os.waitpid(pid, 0)
    if failed:
        raise RuntimeError(f"{path} has import errors")
    return ms, dags, tasks


def measure(path: Path, parses: int) -> dict[str, object]:
    parse_in_fork(path)  # first parse writes __pycache__; not counted
    runs = [parse_in_fork(path) for _ in range(parses)]
    ms = np.array([r[0] for r in runs])
    return {
        "file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name,
        "dags": runs[0][1],
        "tasks": runs[0][2],
        "parses": parses,
        "mean_ms": round(float(ms.mean()), 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parses", type=int, default=50, help="parses per file")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dag_parse.json")
    args = parser.parse_args()

    load = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="reelflow-dag-parse-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(scratch / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "REELFLOW_HOME": str(scratch / "home"),
        }
    )
    # What the dag-processor has loaded before it forks a parser.
    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401

    reference = scratch / "minimal_dag.py"
    reference.write_text(MINIMAL_DAG)
    minimal = measure(reference, args.parses)
    files = [measure(path, args.parses) for path in sorted((REPO / "dags").glob("*.py"))]
    for entry in [*files, minimal]:
        entry["over_minimal_mean"] = round(entry["mean_ms"] / minimal["mean_ms"], 2)
        print(
            f"{entry['file']:28s} {entry['dags']} DAG, {entry['tasks']} tasks: mean "
            f"{entry['mean_ms']:.1f} ms, p95 {entry['p95_ms']:.1f} ms "
            f"({entry['over_minimal_mean']}x the minimal DAG)",
            flush=True,
        )
    import airflow

    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    report = {
        "benchmark": "dag_parse",
        "git_commit": commit,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # Other work on the machine inflates every side alike; the ratio is the result.
            "loadavg_at_start": [round(x, 2) for x in load],
        },
        "airflow": airflow.__version__,
        "method": "DagBag(dag_folder=file) in a child forked from a process with Airflow imported",
        "parses_per_file": args.parses,
        "files": files,
        "reference": minimal,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
