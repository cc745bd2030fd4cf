"""Runs reelflow's DAGs through Airflow itself: real task instances, a real metadata DB.

`airflow dags test` executes every task of one DAG run in-process against the metadata DB
under $REELFLOW_HOME/airflow (SQLite on the embedded default), with no scheduler or workers.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reelflow.paths import DAGS_FOLDER, Paths
from reelflow.state import write_text

# The pool of reelflow.dag_defaults.TRAINING_ARGS, named here too so that the CLI process
# does not import Airflow (importing it sets up ~/airflow when AIRFLOW_HOME is unset).
GPU_POOL = "gpu"


def api_port() -> int:
    """The Airflow api-server's port on loopback (`reelflow ui`): REELFLOW_AIRFLOW_PORT."""
    return int(os.environ.get("REELFLOW_AIRFLOW_PORT", "8080"))


def jwt_secret(home: Path) -> str:
    """The secret the api-server signs task tokens with: generated once under the home (the
    api-server, scheduler and workers must share it; Airflow's own default is a new random
    one per process)."""
    path = home / "jwt_secret"
    if not path.exists():
        write_text(path, secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow_env(paths: Paths) -> dict[str, str]:
    """The Airflow settings of a home, the one place for `reelflow run` (`airflow dags test`),
    `reelflow ui` (api-server, scheduler, dag-processor, triggerer) and the tests: the project's
    DAGs, no examples, the api-server on loopback, the execution API's URL and a shared JWT
    secret, the login's password file under the home."""
    home = paths.airflow
    home.mkdir(parents=True, exist_ok=True)
    port = api_port()
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
    for key, value in {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",  # two cores: more task processes only contend
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
            home / "simple_auth_manager_passwords.json.generated"
        ),
    }.items():
        env.setdefault(key, value)
    env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", jwt_secret(home))
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
        # SQLite lets one writer in at a time and gives up after 5 s by default: with a
        # scheduler, a dag-processor and a CLI command on two busy cores, wait longer.
        env.setdefault(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS",
            "reelflow.airflow_runner.SQLITE_CONNECT_ARGS",
        )
    # A foreground one-shot run reports a failure at once; the DAGs' retries (with minutes of
    # backoff) are for scheduled deployments. REELFLOW_TASK_RETRIES=2 restores them here.
    env.setdefault("REELFLOW_TASK_RETRIES", "0")
    return env


SQLITE_CONNECT_ARGS = {"timeout": 60}  # seconds a SQLite connection waits for the write lock


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def _airflow_out(paths: Paths, *args: str, attempts: int = 5) -> str:
    for attempt in range(attempts):
        result = subprocess.run(
            [_airflow(), *args], env=airflow_env(paths), capture_output=True, text=True
        )
        # On the embedded SQLite metadata DB a running scheduler holds the write lock for a
        # moment at a time; a command that met it changed nothing, so it is tried again.
        locked = "database is locked" in result.stderr + result.stdout
        if result.returncode == 0 or not locked or attempt == attempts - 1:
            break
        time.sleep(2 * (attempt + 1))
    if result.returncode != 0:
        raise RuntimeError(
            f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def migrate(paths: Paths) -> None:
    """Brings the metadata DB to this Airflow's schema and creates the `gpu` pool that the
    training tasks run in (a task in a missing pool never runs under a scheduler). Both steps
    are idempotent; `REELFLOW_GPU_POOL_SLOTS` (default 1) sets how many train at once."""
    _airflow_out(paths, "db", "migrate")
    slots = os.environ.get("REELFLOW_GPU_POOL_SLOTS", "1")
    _airflow_out(paths, "pools", "set", GPU_POOL, slots, "reelflow training tasks")


class Ledger:
    """What a run's earlier attempts finished, so that `reelflow run` resumes: a JSON file of
    units ("DAG_ID DS"), each with the tasks that succeeded in its newest DAG run and whether
    that run succeeded. A complete unit is skipped; a failed one runs again with its succeeded
    tasks marked success rather than run (`dags test --mark-success-pattern`), so their
    recorded summaries and costs stay those of the attempt that did the work.

    The ledger belongs to one `key` (the release's landed fingerprint and the config): a
    changed release or setting starts it afresh, and so does `reelflow run --rerun`.
    """

    def __init__(self, path: Path, key: str, units: dict[str, dict] | None = None):
        self.path, self.key, self.units = Path(path), key, units or {}

    @classmethod
    def start(cls, path: Path, key: str, rerun: bool = False) -> Ledger:
        """The ledger at PATH if it belongs to KEY (and not `rerun`), else an empty one."""
        found = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        if rerun or found.get("key") != key:
            found = {}
        ledger = cls(path, key, found.get("units"))
        ledger.save()
        return ledger

    @classmethod
    def load(cls, path: Path) -> Ledger:
        found = json.loads(Path(path).read_text())
        return cls(path, found["key"], found["units"])

    def save(self) -> None:
        write_text(self.path, json.dumps({"key": self.key, "units": self.units}, indent=1))

    def unit(self, dag_id: str, ds: str) -> dict:
        return self.units.get(f"{dag_id} {ds}", {"tasks": [], "complete": False})

    def record(self, dag_id: str, ds: str, tasks: list[str], complete: bool) -> None:
        self.units[f"{dag_id} {ds}"] = {"tasks": sorted(tasks), "complete": complete}
        self.save()

    def plan_status(self, plan: list) -> dict[str, int]:
        """How many of PLAN's units are done, half done (tasks to skip) and to run."""
        units = [self.unit(dag_id, ds) for dag_id, ds, _ in plan]
        return {
            "complete": sum(u["complete"] for u in units),
            "resumed": sum(not u["complete"] and bool(u["tasks"]) for u in units),
            "to_run": sum(not u["complete"] for u in units),
        }


def child_command(
    paths: Paths, plan: list, log_name: str, ledger: Ledger | None = None
) -> list[str]:
    """The runner child's command line: the plan goes in a JSON file under the home's
    runs/logs (written atomically), never on the command line, whose length the OS limits."""
    plan_file = paths.runs / "logs" / f"{log_name}.plan.json"
    write_text(plan_file, json.dumps(plan))
    return [sys.executable, "-m", "reelflow.airflow_runner", str(plan_file)] + (
        [str(ledger.path)] if ledger else []
    )


def load_plan(plan_file: str) -> list:
    """The child's side of `child_command`: the plan's (dag_id, ds, conf) entries."""
    return json.loads(Path(plan_file).read_text())


def run_dags(
    paths: Paths,
    plan: list[tuple[str, str, dict | None]],
    log_name: str = "run",
    ledger: Ledger | None = None,
) -> None:
    """Runs `airflow dags test` for each (dag_id, ds, conf) of the plan, in order, in ONE process.

    One process shares Airflow's imports and the Spark JVM across all the DAG runs, which
    saves about 40 s per day against one `airflow dags test` process per day. Raises with the
    log's tail at the first failed DAG run. With a `ledger`, finished units are skipped and
    each unit's outcome is recorded in it as soon as its DAG run ends.
    """
    log_dir = paths.runs / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{log_name}.log"
    cmd = child_command(paths, plan, log_name, ledger)
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


def scheduler_running(paths: Paths) -> bool:
    """Whether a scheduler heartbeats into this home's metadata DB (`airflow jobs check`)."""
    result = subprocess.run(
        [
            _airflow(),
            "jobs",
            "check",
            "--job-type",
            "SchedulerJob",
            "--allow-multiple",
            "--limit",
            "10",
        ],
        env=airflow_env(paths),
        capture_output=True,
        text=True,
    )
    return result.returncode == 0


def dag_runs(paths: Paths, dag_id: str) -> list[dict]:
    """`airflow dags list-runs DAG -o json`."""
    out = _airflow_out(paths, "dags", "list-runs", dag_id, "-o", "json")
    lines = [line for line in out.splitlines() if line.startswith("[")]
    return json.loads(lines[-1]) if lines else []


def paused_dags(paths: Paths) -> set[str]:
    """The paused DAGs of this home's metadata DB (`airflow dags list`)."""
    out = _airflow_out(paths, "dags", "list", "-o", "json")
    lines = [line for line in out.splitlines() if line.startswith("[")]
    dags = json.loads(lines[-1]) if lines else []
    return {d["dag_id"] for d in dags if str(d.get("is_paused")).lower() == "true"}


def wait_for_runs(
    paths: Paths,
    dag_id: str,
    *,
    days: list[str] = (),
    run_ids: list[str] = (),
    poll_s: float = 15,
    timeout_s: float = 0,
) -> None:
    """Waits until the DAG's runs of the logical days (or with the run ids) succeed; raises
    when one fails, or after `timeout_s` if set."""
    started = time.monotonic()
    while True:
        states = {key: None for key in [*days, *run_ids]}
        for run in dag_runs(paths, dag_id):
            for key in (run["run_id"], (run.get("logical_date") or "")[:10]):
                if key in states:
                    states[key] = run["state"]
        failed = sorted(key for key, state in states.items() if state == "failed")
        if failed:
            raise RuntimeError(f"{dag_id}: failed runs for {', '.join(failed)} (see the UI)")
        if all(state == "success" for state in states.values()):
            return
        if timeout_s and time.monotonic() - started > timeout_s:
            raise RuntimeError(f"{dag_id}: runs not done after {timeout_s:.0f} s: {states}")
        time.sleep(poll_s)


def backfill(
    paths: Paths,
    dag_id: str,
    first: str,
    last: str,
    reprocess: bool = True,
    wait_running_s: float = 3600,
    poll_s: float = 10,
) -> None:
    """`airflow backfill create` of the logical days FIRST..LAST, re-running the days that
    already ran when `reprocess` (`--reprocess-behavior completed`: succeeded and failed runs
    are cleared and run again); one run at a time, oldest first, so that each day's features
    read the days before it as they are now. While another backfill of the DAG runs, waits up
    to `wait_running_s` for it to finish."""
    args = ["backfill", "create", "--dag-id", dag_id, "--from-date", first, "--to-date", last]
    args += ["--max-active-runs", "1"]
    if reprocess:
        args += ["--reprocess-behavior", "completed"]
    started = time.monotonic()
    while True:
        try:
            _airflow_out(paths, *args)
            return
        except RuntimeError as exc:
            # Airflow runs one backfill per DAG at a time. Another one may be running, or this
            # command's own earlier try: `backfill create` commits the backfill before creating
            # its runs, so a try that then met SQLite's lock (retried by _airflow_out) left one
            # behind (seen in CI). Either way, it ends; then this one is created.
            if "AlreadyRunningBackfill" not in str(exc) or (
                time.monotonic() - started > wait_running_s
            ):
                raise
        print(
            f"another backfill of {dag_id} is running: waiting for it to finish",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(poll_s)


def trigger(paths: Paths, dag_id: str, ds: str) -> str:
    """`airflow dags trigger` of a manual run whose logical date falls on day DS (its tasks
    work on that day); the time of day is now's, since one logical date holds one run."""
    now = datetime.now(UTC)
    run_id = f"reprocess__{ds}__{now:%Y%m%dT%H%M%S}"
    logical = f"{ds}T{now:%H:%M:%S}+00:00"
    _airflow_out(paths, "dags", "trigger", dag_id, "--run-id", run_id, "--logical-date", logical)
    return run_id


def _newest_run(session, dag_id: str, ds: str):
    """The newest DagRun of DAG_ID whose logical date is day DS at midnight (`dags test`'s)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    day = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    return session.scalars(
        select(DagRun)
        .where(DagRun.dag_id == dag_id, DagRun.logical_date == day)
        .order_by(DagRun.id.desc())
        .limit(1)
    ).first()


def _record_as_run(dag_id: str, ds: str, started: datetime, through: str | None = None) -> None:
    """`dags test` records its run as a test: started at the logical date (a 2020 day, so
    the UI showed runs of 2,341 days), over the timetable's guess for a manual run, `[D-1, D)`,
    by the user `dag_test`. Recorded here as a scheduler would have it: the day the tasks
    worked on, `[D, D+1)` (what a backfill of D records; a range's run, `[D, through+1)`), the
    real start time (the end time is already real), and who ran it."""
    import getpass

    from airflow.utils.session import create_session

    day = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    with create_session() as session:
        run = _newest_run(session, dag_id, ds)
        if run is None:
            return
        last = datetime.fromisoformat(through).replace(tzinfo=UTC) if through else day
        run.data_interval_start, run.data_interval_end = day, last + timedelta(days=1)
        run.start_date = started
        run.triggering_user_name = f"reelflow run ({getpass.getuser()})"


def _succeeded_tasks(dag_id: str, ds: str) -> tuple[list[str], bool]:
    """The task ids that succeeded in the newest run of DAG_ID on day DS, and whether the run
    itself succeeded."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = _newest_run(session, dag_id, ds)
        if run is None:
            return [], False
        tasks = session.scalars(
            select(TaskInstance.task_id).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run.run_id,
                TaskInstance.state == "success",
            )
        ).all()
        return sorted(tasks), run.state == "success"


def _main(plan_file: str, ledger_file: str | None = None) -> int:
    """Child process: the same code path as `airflow dags test DAG DS --conf …`, once per entry
    (with a ledger: skipping complete units, and marking the tasks an earlier attempt of a
    unit finished as succeeded instead of running them)."""
    from airflow.cli import cli_parser

    parser = cli_parser.get_parser()
    ledger = Ledger.load(Path(ledger_file)) if ledger_file else None
    for dag_id, ds, conf in load_plan(plan_file):
        unit = ledger.unit(dag_id, ds) if ledger else {"tasks": [], "complete": False}
        if unit["complete"]:
            print(f"[reelflow] {dag_id} {ds} done in an earlier attempt: skipped", flush=True)
            continue
        argv = ["dags", "test", dag_id, ds] + (["--conf", json.dumps(conf)] if conf else [])
        if unit["tasks"]:
            argv += ["--mark-success-pattern", "|".join(re.escape(t) for t in unit["tasks"])]
        print(f"[reelflow] airflow {' '.join(argv)}", flush=True)
        args = parser.parse_args(argv)
        started = datetime.now(UTC)
        try:
            args.func(args)
            failure = None
        except SystemExit as exc:  # `dags test` exits when the DAG run failed
            failure = exc
        _record_as_run(dag_id, ds, started, (conf or {}).get("through"))
        if ledger:
            ledger.record(dag_id, ds, *_succeeded_tasks(dag_id, ds))
        if failure is not None:
            print(f"[reelflow] {dag_id} {ds} failed: {failure}", flush=True)
            return 1
        print(f"[reelflow] {dag_id} {ds} succeeded", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:]))
