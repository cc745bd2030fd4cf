"""The daily DAG with a Spark connection: `normalize` and `features` run through
SparkSubmitOperator against a Spark standalone cluster on loopback (`reelflow cluster`), on
both its workers, and write the same partitions as the same job code in this process's own
session. (The same operator against `local[2]` differs only in the master's URL; that run
was this module's test before the cluster existed.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pandas as pd
import pytest

from reelflow.paths import DAGS_FOLDER
from tests.conftest import free_port

DAY = "2020-07-05"


def table_rows(path) -> list[str]:
    """A table's rows as sorted JSON strings: equal lists mean equal contents, whatever the
    file layout or row order."""
    frame = pd.read_parquet(path)
    frame = frame[sorted(frame.columns)]
    return sorted(json.dumps(row, default=str) for row in frame.to_dict("records"))


def lake_tables(paths) -> dict[str, list[str]]:
    tables = {
        "normalized/interactions": paths.normalized("interactions"),
        "quarantine/interactions": paths.quarantine("interactions"),
    }
    for view in sorted((paths.lake / "features").iterdir()):
        tables[f"features/{view.name}"] = view
    return {name: table_rows(path) for name, path in tables.items()}


PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags["reelflow_daily"]
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "tasks": {t.task_id: [type(t).__name__, sorted(t.downstream_task_ids), [a.name for a in t.outlets]]
              for t in dag.tasks},
    "provider": "airflow.providers.apache.spark.operators.spark_submit" in sys.modules,
}))
"""


def parse_daily(tmp_path, conn_id: str | None) -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "REELFLOW_HOME": str(tmp_path / "home"),
    }
    env.pop("REELFLOW_SPARK_CONN_ID", None)
    if conn_id:
        env["REELFLOW_SPARK_CONN_ID"] = conn_id
    out = subprocess.run(
        [sys.executable, "-c", PARSE, str(DAGS_FOLDER / "reelflow_daily.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_spark_connection_switches_only_the_spark_tasks_to_spark_submit(tmp_path):
    local, submit = parse_daily(tmp_path, None), parse_daily(tmp_path, "reelflow_spark")
    assert local["errors"] == {} and submit["errors"] == {}
    # Unset, parsing never imports the provider's operator; set, only normalize and features change.
    assert not local["provider"] and submit["provider"]
    assert set(local["tasks"]) == set(submit["tasks"])
    for task_id, (kind, downstream, outlets) in submit["tasks"].items():
        assert [downstream, outlets] == local["tasks"][task_id][1:], task_id
        spark = task_id in ("normalize", "features")
        assert (kind == "ReelflowSparkSubmitOperator") == spark, task_id


def test_the_submit_entry_takes_the_tasks_arguments():
    from jobs.submit import parse_args

    args = parse_args(["--job", "normalize", "--ds", DAY, "--dataset", "", "--raw", ""])
    assert (args.job, args.ds, args.dataset, args.raw) == ("normalize", DAY, "", "")
    with pytest.raises(SystemExit):
        parse_args(["--job", "train", "--ds", DAY])


def submit_day(tiny_raw, tmp_path, monkeypatch, conn: dict) -> tuple:
    """The daily DAG for DAY with a Spark connection defined by the environment, as a
    deployment would: (its home's paths, the runner's log, its normalize summary, its tables)."""
    from reelflow import airflow_runner
    from reelflow.paths import Paths

    raw, manifest = tiny_raw
    conf = {"dataset": "kuairec", "raw": str(raw.parent)}
    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "submit"))
    monkeypatch.setenv("REELFLOW_SPARK_CONN_ID", "reelflow_spark")
    monkeypatch.setenv("AIRFLOW_CONN_REELFLOW_SPARK", json.dumps(conn))
    submitted = Paths.from_env()
    airflow_runner.migrate(submitted)
    airflow_runner.run_dags(submitted, [("reelflow_daily", DAY, conf)], log_name="submit")
    log = (submitted.runs / "logs" / "submit.log").read_text(errors="replace")
    assert "--job normalize" in log and "--job features" in log
    for step in ("normalize", "validate", "features", "materialize"):
        assert (submitted.runs / f"ds={DAY}" / f"{step}.json").exists(), step
    normalized = pd.read_parquet(submitted.normalized("interactions") / f"ds={DAY}")
    assert len(normalized) == manifest["valid_rows_per_day"][DAY]
    summary = json.loads((submitted.runs / f"ds={DAY}" / "normalize.json").read_text())
    return submitted, log, summary, lake_tables(submitted)


def same_as_the_local_session(tiny_raw, monkeypatch, submitted, summary, got) -> None:
    """The same job code in this process's local session, on the same landed day (landing is
    not what is compared), from scratch, writes the same tables."""
    from reelflow import tasks

    raw, _ = tiny_raw
    monkeypatch.delenv("REELFLOW_SPARK_CONN_ID")
    for table in ("normalized", "quarantine", "features"):
        shutil.rmtree(submitted.lake / table)
    local_summary = tasks.normalize(DAY, {"dataset": "kuairec", "raw": str(raw.parent)})
    tasks.features(DAY)
    assert summary["tables"] == local_summary["tables"]
    want = lake_tables(submitted)
    assert set(got) == set(want) and len(want) > 2
    for name in want:
        assert got[name] == want[name], name


def two_free_ports() -> int:
    """A port P with P + 1 free too (the workers' UIs take consecutive ports)."""
    while True:
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue


@pytest.mark.e2e
def test_the_daily_dag_on_a_standalone_cluster_uses_both_workers_and_writes_the_same(
    tiny_raw, tmp_path, monkeypatch, spark
):
    """`reelflow cluster up`: a master and two workers on loopback; the daily DAG's Spark tasks
    go to it through SparkSubmitOperator, executors on both workers run tasks, and the tables
    are those of the local session."""
    import urllib.request

    from reelflow import cluster
    from reelflow.paths import Paths

    monkeypatch.setenv("REELFLOW_SPARK_MASTER_PORT", str(free_port()))
    monkeypatch.setenv("REELFLOW_SPARK_MASTER_UI_PORT", str(free_port()))
    monkeypatch.setenv("REELFLOW_SPARK_WORKER_UI_PORT", str(two_free_ports()))
    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "submit"))
    home = Paths.from_env()
    try:
        report = cluster.up(home)
        assert report["alive_workers"] == 2 and len(report["started"]) == 3
        conn = json.loads(report["connection"]["AIRFLOW_CONN_REELFLOW_SPARK"])
        submitted, log, summary, got = submit_day(tiny_raw, tmp_path, monkeypatch, conn)
        assert log.count(f"Spark-Submit cmd: spark-submit --master {cluster.master_url()}") == 2

        # The master ran both jobs; each worker ran executors of them, which ran tasks.
        state = cluster.master_state()
        # One application per Spark task (lake.spark names each session "reelflow").
        assert [a["name"] for a in state["completedapps"]] == ["reelflow", "reelflow"]
        assert len(state["workers"]) == 2
        for worker in state["workers"]:
            with urllib.request.urlopen(worker["webuiaddress"] + "/json/", timeout=10) as r:
                executors = json.loads(r.read())["finishedexecutors"]
            assert {e["appid"] for e in executors} == {a["id"] for a in state["completedapps"]}
            first_ui = f"http://127.0.0.1:{os.environ['REELFLOW_SPARK_WORKER_UI_PORT']}"
            name = "spark-worker-1" if worker["webuiaddress"] == first_ui else "spark-worker-2"
            work = home.home / "cluster" / "work" / name
            ran = [
                f for e in executors
                if "Running task" in (f := work / e["appid"] / str(e["id"]) / "stderr").read_text()
            ]  # fmt: skip
            assert ran, (name, executors)
        same_as_the_local_session(tiny_raw, monkeypatch, submitted, summary, got)
    finally:
        stopped = cluster.down(home)["stopped"]
    assert sorted(stopped) == ["spark-master", "spark-worker-1", "spark-worker-2"]
    assert cluster.master_state() is None
