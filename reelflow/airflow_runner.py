"""Runs reelflow's DAGs through Airflow itself: real task instances, a real metadata DB.

`airflow dags test` executes every task of one DAG run in-process against the metadata DB
under $REELFLOW_HOME/airflow (SQLite on the embedded default), with no scheduler or workers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from reelflow.paths import DAGS_FOLDER, Paths

# The pool of reelflow.dag_defaults.TRAINING_ARGS, named here too so that the CLI process
# does not import Airflow (importing it sets up ~/airflow when AIRFLOW_HOME is unset).
GPU_POOL = "gpu"


def airflow_env(paths: Paths) -> dict[str, str]:
    home = paths.airflow
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "REELFLOW_HOME": str(paths.home),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        }
    )
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    # A foreground one-shot run reports a failure at once; the DAGs' retries (with minutes of
    # backoff) are for scheduled deployments. REELFLOW_TASK_RETRIES=2 restores them here.
    env.setdefault("REELFLOW_TASK_RETRIES", "0")
    return env


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def _airflow_cli(paths: Paths, *args: str) -> None:
    result = subprocess.run(
        [_airflow(), *args], env=airflow_env(paths), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def migrate(paths: Paths) -> None:
    """Brings the metadata DB to this Airflow's schema and creates the `gpu` pool that the
    training tasks run in (a task in a missing pool never runs under a scheduler). Both steps
    are idempotent; `REELFLOW_GPU_POOL_SLOTS` (default 1) sets how many train at once."""
    _airflow_cli(paths, "db", "migrate")
    slots = os.environ.get("REELFLOW_GPU_POOL_SLOTS", "1")
    _airflow_cli(paths, "pools", "set", GPU_POOL, slots, "reelflow training tasks")


def run_dags(paths: Paths, plan: list[tuple[str, str, dict | None]], log_name: str = "run") -> None:
    """Runs `airflow dags test` for each (dag_id, ds, conf) of the plan, in order, in ONE process.

    One process shares Airflow's imports and the Spark JVM across all the DAG runs, which
    saves about 40 s per day against one `airflow dags test` process per day. Raises with the
    log's tail at the first failed DAG run.
    """
    log_dir = paths.runs / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{log_name}.log"
    cmd = [sys.executable, "-m", "reelflow.airflow_runner", json.dumps(plan)]
    with open(log, "w") as fh:
        result = subprocess.run(cmd, env=airflow_env(paths), stdout=fh, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        text = log.read_text(errors="replace")
        lines = [line for line in text.splitlines() if "Calculating Metrics" not in line]
        # The task's own exception line says what failed; the tail says where.
        causes = [
            line.strip() for line in lines if re.search(r"\b\w+(Error|Failed|Exception): ", line)
        ]
        cause = f"cause: {causes[-1]}\n" if causes else ""
        tail = "\n".join(lines[-40:])
        raise RuntimeError(f"Airflow run failed (full log: {log}):\n{cause}{tail}")


def _main(plan_json: str) -> int:
    """Child process: the same code path as `airflow dags test DAG DS --conf …`, once per entry."""
    from airflow.cli import cli_parser

    parser = cli_parser.get_parser()
    for dag_id, ds, conf in json.loads(plan_json):
        argv = ["dags", "test", dag_id, ds] + (["--conf", json.dumps(conf)] if conf else [])
        print(f"[reelflow] airflow {' '.join(argv)}", flush=True)
        args = parser.parse_args(argv)
        try:
            args.func(args)
        except SystemExit as exc:  # `dags test` exits when the DAG run failed
            print(f"[reelflow] {dag_id} {ds} failed: {exc}", flush=True)
            return 1
        print(f"[reelflow] {dag_id} {ds} succeeded", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
