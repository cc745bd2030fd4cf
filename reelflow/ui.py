"""`reelflow ui`: the Airflow, MLflow and Feast UIs of one home, on loopback only.

    reelflow ui            # start what is not running; print each URL and the Airflow login
    reelflow ui --status   # what runs, and who set each model's @champion
    reelflow ui --stop     # stop everything it started (by the PIDs under $REELFLOW_HOME/ui)

Airflow runs as a scheduler would in production, on the embedded default: the api-server (the
UI and the execution API the tasks report to), the scheduler (LocalExecutor), the
dag-processor and the triggerer, with the home's settings (`airflow_runner.airflow_env`: the
project's DAGs, no examples, the JWT secret generated once under the home). The login is
Airflow's simple auth manager: user `admin`, the password Airflow generates into a file under
`$REELFLOW_HOME/airflow` (printed here). MLflow's UI serves the home's tracking store, Feast's
the feature repo.

Nothing listens beyond 127.0.0.1. Airflow's log server (`serve-logs`, started beside a
scheduler or triggerer) binds every interface with no setting to change it
(airflow/utils/serve_logs/core.py: `host=""`), so they run with `--skip-serve-logs`: with
LocalExecutor on one machine the api-server reads the task logs from `AIRFLOW_HOME/logs`
itself. Each process runs in its own session, so `--stop` ends it with its children; a PID file
whose process is gone (or whose PID another process holds now: the file records the start
time too) is removed instead of stopping anything.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reelflow import airflow_runner, processes
from reelflow.airflow_runner import airflow_env, api_port
from reelflow.paths import FEATURE_REPO, Paths
from reelflow.processes import HOST, Service
from reelflow.runs import public_release_last_day
from reelflow.state import write_json

START_TIMEOUT_S = 180  # the api-server takes 20-60 s to answer on two busy cores


def services(paths: Paths) -> list[Service]:
    airflow_port = api_port()
    mlflow_port = int(os.environ.get("REELFLOW_MLFLOW_PORT", "5000"))
    feast_port = int(os.environ.get("REELFLOW_FEAST_PORT", "8888"))
    from models.tracking import tracking_uri

    tracking = tracking_uri(paths)
    return [
        Service(
            "airflow-api-server",
            ("api-server", "--host", HOST, "--port", str(airflow_port)),
            "airflow",
            airflow_port,
            "/api/v2/monitor/health",
        ),
        Service("airflow-dag-processor", ("dag-processor",), "airflow"),
        Service("airflow-scheduler", ("scheduler", "--skip-serve-logs"), "airflow"),
        Service("airflow-triggerer", ("triggerer", "--skip-serve-logs"), "airflow"),
        Service(
            "mlflow",
            (
                "server",
                "--backend-store-uri",
                tracking,
                "--default-artifact-root",
                paths.mlflow_artifacts.as_uri(),
                "--no-serve-artifacts",
                "--host",
                HOST,
                "--port",
                str(mlflow_port),
            ),
            "mlflow",
            mlflow_port,
            "/health",
        ),
        Service(
            "feast", ("ui", "--host", HOST, "--port", str(feast_port)), "feast", feast_port, "/"
        ),
    ]


def _ui_dir(paths: Paths) -> Path:
    folder = paths.home / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _program(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def airflow_login(paths: Paths) -> dict[str, str]:
    """The simple auth manager's user and the password Airflow generated for it."""
    env = airflow_env(paths)
    file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    passwords = json.loads(file.read_text()) if file.exists() else {}
    return {"user": "admin", "password": passwords.get("admin", "?"), "file": str(file)}


def start(paths: Paths) -> dict[str, Any]:
    """Starts every service that is not running, waits until each answers, returns the URLs
    and the Airflow login."""
    # Looked up on the module at call time, not bound at import: a test that swaps
    # airflow_runner.migrate for a recorder while this module is first imported (the CLI's
    # scheduler check imports it) must not leave a stack start that never migrates.
    airflow_runner.migrate(paths)  # the metadata DB and the gpu pool, as `reelflow run` does
    env, folder = airflow_env(paths), _ui_dir(paths)
    last_day = public_release_last_day(paths)
    if last_day and "REELFLOW_END_DATE" not in env:
        env["REELFLOW_END_DATE"] = last_day  # reelflow_daily schedules nothing past the data
    started = []
    for service in services(paths):
        if processes.running(folder, service) is not None:
            continue
        if service.port is not None and processes.answers(service.url() + (service.health or "/")):
            raise RuntimeError(
                f"port {service.port} already serves something else; set "
                f"REELFLOW_{service.name.split('-')[-1].upper()}_PORT to another port"
            )
        cwd = FEATURE_REPO if service.program == "feast" else paths.home
        argv = [_program(service.program), *service.args]
        processes.launch(folder, service, argv, env, cwd)
        if service.name == "airflow-dag-processor":
            # The DAGs are parsed with this end date until this process is restarted: a start
            # that finds it running keeps the record of the date it was started with.
            end = env.get("REELFLOW_END_DATE")
            write_json(folder / "schedule.json", {"daily_end_date": end})
        started.append(service.name)
    processes.wait_until_served(folder, services(paths), START_TIMEOUT_S)
    return {**status(paths, champions=False), "started": started}


def daily_end_date(paths: Paths) -> str | None:
    """The end date the running dag-processor parses reelflow_daily with (None: no end)."""
    file = _ui_dir(paths) / "schedule.json"
    return json.loads(file.read_text()).get("daily_end_date") if file.exists() else None


def scheduler_started(paths: Paths) -> bool:
    """Whether the scheduler `reelflow ui` started on this home still runs (its PID file)."""
    (scheduler,) = [s for s in services(paths) if s.name == "airflow-scheduler"]
    return processes.running(_ui_dir(paths), scheduler) is not None


def stop(paths: Paths) -> dict[str, Any]:
    """Stops every service by its recorded PID (its whole session), waiting for each."""
    return {"stopped": processes.stop(_ui_dir(paths), services(paths))}


def status(paths: Paths, champions: bool = True) -> dict[str, Any]:
    """Each service (running, PID, URL), the Airflow login and, with `champions`, who set
    each registered model's @champion (a move made by hand is found and recorded here)."""
    found = {}
    for service in services(paths):
        pid = processes.running(_ui_dir(paths), service)
        found[service.name] = {"running": pid is not None, "pid": pid, "url": service.url()}
    report: dict[str, Any] = {"services": found, "airflow_login": airflow_login(paths)}
    if champions:
        report["champions"] = champion_report(paths)
    report["at"] = datetime.now(UTC).isoformat()
    return report


def champion_report(paths: Paths) -> dict[str, Any]:
    from models.gate import champion_origin
    from models.registry import MODELS
    from models.tracking import registered_name, setup_tracking

    setup_tracking(paths)
    return {registered_name(m): champion_origin(registered_name(m)) for m in MODELS}


def describe(report: dict[str, Any]) -> str:
    """The lines `reelflow ui` prints."""
    lines = []
    for name, s in report["services"].items():
        where = f" {s['url']}" if s["url"] else ""
        lines.append(f"{name:22} {'running' if s['running'] else 'stopped':8}{where}")
    login = report["airflow_login"]
    lines.append(
        f"Airflow login: user {login['user']}, password {login['password']} ({login['file']})"
    )
    for model, origin in report.get("champions", {}).items():
        if origin is None:
            lines.append(f"{model}: no @champion")
        else:
            note = " (set outside the gate: recorded now)" if origin["detected"] else ""
            lines.append(
                f"{model}@champion v{origin['version']}: {origin['set_by']} at "
                f"{origin['set_at']}{note}"
            )
    return "\n".join(lines)
