"""The distributed path for real, on this machine's own servers: the daily DAG scheduled by
Airflow with its metadata DB on PostgreSQL, run by the CeleryExecutor on a real Celery worker
over the Redis broker, and Feast with its Redis online store and a registry on PostgreSQL.

Every server is a fresh database (PostgreSQL) or database number (Redis), dropped afterwards;
every Airflow process binds 127.0.0.1 and is stopped in a finalizer. MLflow on a PostgreSQL
backend is covered by tests/test_services.py. Skips with the reason where PostgreSQL or Redis is
absent; fails instead under REELFLOW_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, service_available

pytestmark = [pytest.mark.e2e, pytest.mark.services]

DAY = "2020-07-05"
RUN_ID = "reelflow_distributed_test"
PG = "postgresql://postgres@127.0.0.1:5432"
AIRFLOW = str(Path(sys.executable).parent / "airflow")


@pytest.fixture()
def servers():
    """Fresh PostgreSQL databases and Redis database numbers; dropped afterwards."""
    service_available("127.0.0.1", 5432, "PostgreSQL")
    service_available("127.0.0.1", 6379, "Redis")
    import psycopg
    import redis

    tag = secrets.token_hex(4)
    names = {"airflow": f"reelflow_airflow_{tag}", "feast": f"reelflow_feast_{tag}"}
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE DATABASE "{name}"')
    # Away from db 0, which other tools use; the broker and the online store apart.
    broker_db, online_db = 1 + os.getpid() % 7, 8 + os.getpid() % 7
    for db in (broker_db, online_db):
        redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
    yield {**names, "broker_db": broker_db, "online_db": online_db}
    for db in (broker_db, online_db):
        redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Processes:
    """Airflow's long-running processes, each in its own process group with its own log."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.procs = env, logs, {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        self.procs[name] = (
            subprocess.Popen(
                [AIRFLOW, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
            log,
        )

    def check_alive(self) -> None:
        for name, (proc, _) in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(
                    f"airflow {name} exited ({proc.returncode}):\n{self.tail(name)}"
                )

    def tail(self, name: str, chars: int = 4000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc, log in self.procs.values():
            try:
                proc.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            log.close()


def airflow(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"airflow {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def query(database: str, sql: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(f"{PG}/{database}") as conn:
        return conn.execute(sql, params).fetchall()


def test_daily_dag_on_celery_postgres_and_redis(servers, tiny_raw, tmp_path, monkeypatch):
    from reelflow.paths import DAGS_FOLDER, FEATURE_REPO

    raw, manifest = tiny_raw
    home = tmp_path / "home"
    # Only the daily DAG: training and export stay out of this run.
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "reelflow_daily.py").symlink_to(DAGS_FOLDER / "reelflow_daily.py")
    api_port = free_port()
    airflow_db = f"postgresql+psycopg://postgres@127.0.0.1:5432/{servers['airflow']}"
    env = {
        **os.environ,
        "REELFLOW_HOME": str(home),
        "REELFLOW_TASK_RETRIES": "0",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
        # psycopg 3 serves the async engine too (the default would want asyncpg).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": airflow_db,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{servers['broker_db']}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{airflow_db}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        # Airflow 3 workers run tasks through the api-server's execution API.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        # No scheduled runs: only the run this test triggers, for a day of the tiny data.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "FEAST_FS_YAML_FILE_PATH": str(FEATURE_REPO / "feature_store.redis.yaml"),
        "REELFLOW_FEAST_REGISTRY_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{servers['feast']}",
        "REELFLOW_FEAST_REDIS": f"127.0.0.1:6379,db={servers['online_db']}",
    }
    env.pop("REELFLOW_SPARK_CONN_ID", None)
    airflow(env, "db", "migrate")
    procs = Processes(env, tmp_path / "logs")
    try:
        procs.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port))
        procs.start("dag-processor", "dag-processor")
        procs.start("scheduler", "scheduler")
        procs.start("worker", "celery", "worker", "--concurrency", "1", "--queues", "default")
        deadline = time.monotonic() + 300
        while not query(
            servers["airflow"], "SELECT 1 FROM serialized_dag WHERE dag_id = 'reelflow_daily'"
        ):
            procs.check_alive()
            assert time.monotonic() < deadline, procs.tail("dag-processor")
            time.sleep(3)
        conf = {"dataset": "kuairec", "raw": str(raw.parent)}
        airflow(
            env,
            "dags",
            "trigger",
            "reelflow_daily",
            "--run-id",
            RUN_ID,
            "--logical-date",
            f"{DAY}T00:00:00+00:00",
            "--conf",
            json.dumps(conf),
        )
        deadline = time.monotonic() + 900
        state = None
        while state not in ("success", "failed"):
            procs.check_alive()
            assert time.monotonic() < deadline, (
                f"run still {state}:\n{procs.tail('scheduler')}\n{procs.tail('worker')}"
            )
            time.sleep(5)
            rows = query(servers["airflow"], "SELECT state FROM dag_run WHERE run_id = %s", RUN_ID)
            state = rows[0][0] if rows else None
        ran = query(servers["airflow"], "SELECT count(*) FROM dag_run")[0][0]
        tis = query(
            servers["airflow"],
            "SELECT task_id, state, queue, hostname, external_executor_id FROM task_instance"
            " WHERE run_id = %s",
            RUN_ID,
        )
        assert state == "success", (tis, procs.tail("worker", 8000))
    finally:
        procs.stop()

    assert ran == 1, "only the triggered run"
    # Every task ran as a Celery task on the worker, through the Redis broker.
    worker_log = (tmp_path / "logs" / "worker.log").read_text(errors="replace")
    assert {t[0] for t in tis} == {
        "apply_feature_repo",
        "land",
        "normalize",
        "validate",
        "features",
        "materialize",
    }
    for task_id, ti_state, queue, hostname, celery_id in tis:
        assert ti_state == "success" and queue == "default" and hostname, task_id
        assert celery_id and celery_id in worker_log, (task_id, celery_id)

    # The day's partitions, and Feast's Redis online store holds the user features.
    import pandas as pd
    import redis

    from reelflow.paths import Paths

    for key, value in env.items():
        if key.startswith(("REELFLOW_", "FEAST_")):
            monkeypatch.setenv(key, value)
    paths = Paths.from_env()
    normalized = pd.read_parquet(paths.normalized("interactions") / f"ds={DAY}")
    assert len(normalized) == manifest["valid_rows_per_day"][DAY]
    assert (paths.runs / f"ds={DAY}" / "materialize.json").exists()
    assert redis.Redis(host="127.0.0.1", port=6379, db=servers["online_db"]).dbsize() > 0
    from features.store import online_features

    user = int(normalized["user_id"].iloc[0])
    got = online_features([{"user_id": user}], ["user_features:views_28d"], paths)
    assert got["views_28d"][0] == int((normalized["user_id"] == user).sum())
