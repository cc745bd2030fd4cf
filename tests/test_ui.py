"""`reelflow ui` on a fresh home: the Airflow, MLflow and Feast UIs start on loopback, the
Airflow login it prints works and lists the project's DAGs, nothing listens beyond
127.0.0.1, and `--stop` ends every process, stale PID files included."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import psutil
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e


def _json(url: str, data: dict | None = None, token: str | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=None if data is None else json.dumps(data).encode(),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _listening(pid: int) -> list[str]:
    """The addresses the process `pid` and its children listen on."""
    found = []
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found += [c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN]
    return found


def test_ui_starts_on_loopback_logs_in_lists_the_dags_and_stops(tmp_path, monkeypatch):
    from reelflow import ui
    from reelflow.paths import Paths

    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path / "home"))
    for name in ("AIRFLOW", "MLFLOW", "FEAST"):
        monkeypatch.setenv(f"REELFLOW_{name}_PORT", str(free_port()))
    paths = Paths.from_env()
    try:
        report = ui.start(paths)
        services = report["services"]
        assert all(s["running"] for s in services.values()), services
        assert len(report["started"]) == 6

        # The login it prints, as the UI's login form sends it.
        login = report["airflow_login"]
        assert login["user"] == "admin" and login["password"] != "?"
        airflow = services["airflow-api-server"]["url"]
        token = _json(
            f"{airflow}/auth/token", {"username": "admin", "password": login["password"]}
        )["access_token"]
        deadline = time.monotonic() + 180
        while True:  # the dag-processor parses the project's DAGs (no examples)
            dags = _json(f"{airflow}/api/v2/dags", token=token)["dags"]
            if {"reelflow_daily", "reelflow_train", "reelflow_export"} <= {
                d["dag_id"] for d in dags
            }:
                break
            assert time.monotonic() < deadline, dags
            time.sleep(3)
        assert all(d["dag_id"].startswith("reelflow_") for d in dags)
        assert _json(services["mlflow"]["url"] + "/api/2.0/mlflow/experiments/search?max_results=5")

        # Nothing listens beyond loopback: every process started, and all their children.
        records = [json.loads(p.read_text()) for p in (paths.home / "ui").glob("*.pid")]
        addresses = [ip for r in records for ip in _listening(r["pid"])]
        assert addresses and set(addresses) == {"127.0.0.1"}, addresses

        # Started twice: nothing new. Status also reports the champions (none yet).
        assert ui.start(paths)["started"] == []
        status = ui.status(paths)
        assert status["champions"]["reelflow-ranker"] is None
        assert "Airflow login: user admin" in ui.describe(status)
    finally:
        stopped = ui.stop(paths)
    assert len(stopped["stopped"]) == 6
    for record in records:
        assert not psutil.pid_exists(record["pid"]) or psutil.Process(record["pid"]).status() == (
            psutil.STATUS_ZOMBIE
        )

    # A stale PID file (a process that is not the service: this test's own) stops nothing.
    stale = {"pid": os.getpid(), "started": 1}  # a PID another process holds now
    (paths.home / "ui" / "airflow-scheduler.pid").write_text(json.dumps(stale))
    assert not ui.status(paths, champions=False)["services"]["airflow-scheduler"]["running"]
    assert not (paths.home / "ui" / "airflow-scheduler.pid").exists()
    (paths.home / "ui" / "mlflow.pid").write_text("not json")
    assert ui.stop(paths)["stopped"] == []
