"""`reelflow cluster`: a Spark standalone cluster on loopback, from the pyspark install.

    reelflow cluster up       # a master and two workers on 127.0.0.1; prints the master URL
    reelflow cluster status   # the master's view: workers alive, applications run
    reelflow cluster down     # stops them (by the PIDs under $REELFLOW_HOME/cluster)

A real cluster for the daily DAG's Spark tasks on one machine: `spark-class
org.apache.spark.deploy.master.Master` and `...worker.Worker` (the same classes a cluster's
hosts run), every port bound to 127.0.0.1. With the connection it prints
(`AIRFLOW_CONN_REELFLOW_SPARK`, `REELFLOW_SPARK_CONN_ID=reelflow_spark`), `normalize` and
`features` go through `SparkSubmitOperator` to `spark://127.0.0.1:7077` (reelflow/spark_submit.py);
the driver runs in the task's process (client mode), the executors on the workers. On a real
cluster the connection names the real master instead, and nothing here runs.

Ports: `REELFLOW_SPARK_MASTER_PORT` (7077), `REELFLOW_SPARK_MASTER_UI_PORT` (8081; Airflow's UI
has 8080), the workers' UIs `REELFLOW_SPARK_WORKER_UI_PORT` and the next ones (8082, 8083). Each
worker offers `REELFLOW_SPARK_WORKER_CORES` cores (1) and `REELFLOW_SPARK_WORKER_MEMORY` (2g).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from reelflow import processes
from reelflow.paths import Paths
from reelflow.processes import HOST, Service

WORKERS = 2
START_TIMEOUT_S = 120
# Found, not imported: only the Spark jobs import pyspark (the import contracts, pyproject).
SPARK_CLASS = str(Path(importlib.util.find_spec("pyspark").origin).parent / "bin" / "spark-class")
CONN_ID = "reelflow_spark"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(f"REELFLOW_SPARK_{name}_PORT", str(default)))


def master_url() -> str:
    return f"spark://{HOST}:{_port('MASTER', 7077)}"


def services(paths: Paths | None = None) -> list[Service]:
    """The master and the workers; each worker keeps its executors' folders (their logs) under
    `$REELFLOW_HOME/cluster/work/<worker>`."""
    work = _folder(paths or Paths.from_env()) / "work"
    master_ui = _port("MASTER_UI", 8081)
    worker_ui = _port("WORKER_UI", 8082)
    cores = os.environ.get("REELFLOW_SPARK_WORKER_CORES", "1")
    memory = os.environ.get("REELFLOW_SPARK_WORKER_MEMORY", "2g")
    master = Service(
        "spark-master",
        (
            "org.apache.spark.deploy.master.Master",
            "--host",
            HOST,
            "--port",
            str(_port("MASTER", 7077)),
            "--webui-port",
            str(master_ui),
        ),
        SPARK_CLASS,
        master_ui,
        "/json/",
    )
    workers = [
        Service(
            f"spark-worker-{i + 1}",
            (
                "org.apache.spark.deploy.worker.Worker",
                master_url(),
                "--host",
                HOST,
                "--cores",
                cores,
                "--memory",
                memory,
                "--webui-port",
                str(worker_ui + i),
                "--work-dir",
                str(work / f"spark-worker-{i + 1}"),
            ),
            SPARK_CLASS,
            worker_ui + i,
            "/json/",
        )
        for i in range(WORKERS)
    ]
    return [master, *workers]


def _folder(paths: Paths) -> Path:
    return paths.home / "cluster"


def _env(paths: Paths) -> dict[str, str]:
    env = dict(os.environ)
    env["SPARK_LOCAL_IP"] = HOST  # every port the daemons open (RPC, REST 6066) on loopback
    return env


def connection() -> dict[str, str]:
    """The environment that sends the daily DAG's Spark tasks to this master."""
    host, port = master_url().rsplit(":", 1)
    conn = {"conn_type": "spark", "host": host, "port": int(port)}
    return {
        "REELFLOW_SPARK_CONN_ID": CONN_ID,
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(conn),
    }


def master_state() -> dict[str, Any] | None:
    """The master's JSON view (workers, active and completed applications), None when down."""
    url = f"http://{HOST}:{_port('MASTER_UI', 8081)}/json/"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def up(paths: Paths) -> dict[str, Any]:
    """Starts what is not running and waits until the master sees every worker alive."""
    folder, env, started = _folder(paths), _env(paths), []
    for service in services(paths):
        if processes.running(folder, service) is not None:
            continue
        if processes.answers(service.url() + service.health):
            raise RuntimeError(
                f"port {service.port} already serves something else: set the "
                "REELFLOW_SPARK_*_PORT variables to free ports"
            )
        processes.launch(folder, service, [SPARK_CLASS, *service.args], env, paths.home)
        started.append(service.name)
        if service.name == "spark-master":  # workers register with it: let it listen first
            processes.wait_until_served(folder, [service], START_TIMEOUT_S)
    processes.wait_until_served(folder, services(paths), START_TIMEOUT_S)
    deadline = time.monotonic() + START_TIMEOUT_S
    while (state := master_state()) is None or state.get("aliveworkers", 0) < WORKERS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the master sees {state and state.get('aliveworkers')} workers")
        time.sleep(1)
    return {**status(paths), "started": started}


def down(paths: Paths) -> dict[str, Any]:
    return {"stopped": processes.stop(_folder(paths), services(paths))}


def status(paths: Paths) -> dict[str, Any]:
    folder = _folder(paths)
    state = master_state()
    return {
        "master": master_url(),
        "services": {
            s.name: {"running": processes.running(folder, s) is not None, "url": s.url()}
            for s in services(paths)
        },
        "alive_workers": None if state is None else state.get("aliveworkers"),
        "applications": None
        if state is None
        else {
            "active": [a["name"] for a in state.get("activeapps", [])],
            "completed": [a["name"] for a in state.get("completedapps", [])],
        },
        "connection": connection(),
    }


def describe(report: dict[str, Any]) -> str:
    lines = [f"master {report['master']}, alive workers: {report['alive_workers']}"]
    for name, s in report["services"].items():
        lines.append(f"{name:16} {'running' if s['running'] else 'stopped':8} {s['url']}")
    lines.append("send the daily DAG's Spark tasks to it:")
    lines += [f"  export {k}='{v}'" for k, v in report["connection"].items()]
    return "\n".join(lines)
