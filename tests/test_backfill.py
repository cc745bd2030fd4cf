"""Backfills through Airflow's own scheduler on the embedded default, and `reelflow reprocess`.

The end-to-end test starts `airflow dag-processor`, `api-server` (loopback, a free port) and
`scheduler` (LocalExecutor on the SQLite metadata DB, as Airflow 3.3 supports) against a
private home, creates a 3-day backfill of reelflow_daily with `airflow backfill create` (what
the UI's backfill form does), then the same backfill with `--reprocess-behavior completed`,
and checks that the daily partitions come out the same: a checksum over each partition's
rows (order-independent) and its file count. reelflow_train and reelflow_export stay paused
(the daily DAG's asset events would trigger them and change the lake under the test).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reelflow.cli import affected_days
from tests.conftest import free_port, reelflow_cli

# A hang guard, not a speed check: two days, backfilled and reprocessed, take about 5 minutes
# on an idle machine, and `make test`'s second worker or other work on a shared machine can make it several times that.
BACKFILL_TIMEOUT_S = 2400


# -- the day range that `reelflow reprocess` re-runs ------------------------------------------


def test_affected_days_reach_the_long_window_and_stop_at_the_data():
    last = "2020-12-31"
    days = affected_days("2020-07-05", None, last, window=28)
    assert days[0] == "2020-07-05" and len(days) == 28
    assert days[-1] == "2020-08-01"  # D + 27: the last day whose 28-day features read D
    # Clipped at the last day of data.
    assert affected_days("2020-12-20", None, last, window=28)[-1] == last
    # --to E: the window reaches from E.
    days = affected_days("2020-07-05", "2020-07-10", last, window=28)
    assert days[0] == "2020-07-05" and days[-1] == "2020-08-06"
    assert affected_days("2020-07-05", None, "2020-07-07", window=28) == [
        "2020-07-05",
        "2020-07-06",
        "2020-07-07",
    ]


def test_affected_days_refuse_a_day_past_the_data():
    with pytest.raises(SystemExit):
        affected_days("2021-01-05", None, "2020-12-31", window=28)
    with pytest.raises(SystemExit):
        affected_days("2020-07-05", "2020-07-01", "2020-12-31", window=28)


def _fake_home(home, monkeypatch, scheduler: bool, paused: set[str] = frozenset()):
    """`reelflow reprocess` with Airflow replaced by a recorder (no process is started)."""
    from reelflow import airflow_runner, cli
    from reelflow.state import claim_home

    claim_home(home, "kuairec", home.home / "raw")
    calls = []
    monkeypatch.setattr(cli, "data_days", lambda dataset, raw: ["2020-07-01", "2020-08-31"])
    monkeypatch.setattr(airflow_runner, "scheduler_running", lambda paths: scheduler)
    monkeypatch.setattr(airflow_runner, "paused_dags", lambda paths: set(paused))
    monkeypatch.setattr(airflow_runner, "migrate", lambda paths: calls.append(("migrate",)))
    monkeypatch.setattr(
        airflow_runner,
        "run_dags",
        lambda paths, plan, log_name, ledger=None: calls.append(("run", plan)),
    )
    monkeypatch.setattr(
        airflow_runner, "backfill", lambda paths, dag, a, b: calls.append(("backfill", dag, a, b))
    )
    monkeypatch.setattr(
        airflow_runner,
        "wait_for_runs",
        lambda paths, dag, days=(), run_ids=(): calls.append(("wait", dag, list(days or run_ids))),
    )
    monkeypatch.setattr(
        airflow_runner, "trigger", lambda paths, dag, ds: calls.append(("trigger", dag, ds)) or ds
    )
    return calls


def test_reprocess_backfills_then_trains_and_exports_through_the_scheduler(home, monkeypatch):
    from reelflow.cli import main

    calls = _fake_home(home, monkeypatch, scheduler=True)
    assert main(["reprocess", "--from", "2020-08-20", "--json"]) == 0
    assert calls == [
        ("backfill", "reelflow_daily", "2020-08-20", "2020-08-31"),
        ("wait", "reelflow_daily", [f"2020-08-{d}" for d in range(20, 32)]),
        ("trigger", "reelflow_train", "2020-08-31"),
        ("wait", "reelflow_train", ["2020-08-31"]),
        ("trigger", "reelflow_export", "2020-08-31"),
        ("wait", "reelflow_export", ["2020-08-31"]),
    ]


def test_reprocess_refuses_paused_dags_under_a_scheduler(home, monkeypatch):
    from reelflow.cli import main

    calls = _fake_home(home, monkeypatch, scheduler=True, paused={"reelflow_train"})
    with pytest.raises(SystemExit, match="reelflow_train"):
        main(["reprocess", "--from", "2020-08-20"])
    assert calls == []
    # Without training, a paused reelflow_train does not matter.
    assert main(["reprocess", "--from", "2020-08-30", "--skip-train"]) == 0
    assert calls[0] == ("backfill", "reelflow_daily", "2020-08-30", "2020-08-31")


def test_reprocess_without_a_scheduler_runs_dags_test(home, monkeypatch, capsys):
    from reelflow.cli import main

    calls = _fake_home(home, monkeypatch, scheduler=False)
    assert main(["reprocess", "--from", "2020-07-01", "--to", "2020-07-02", "--json"]) == 0
    (_, plan) = calls[-1]
    days = [ds for dag, ds, _ in plan if dag == "reelflow_daily"]
    assert days[0] == "2020-07-01" and days[-1] == "2020-07-29" and len(days) == 29
    assert plan[-2:] == [
        ("reelflow_train", "2020-07-29", None),
        ("reelflow_export", "2020-07-29", None),
    ]
    assert "no scheduler" in capsys.readouterr().err


# -- partition checksums ----------------------------------------------------------------------


def _cell(value):
    if isinstance(value, np.ndarray | list | tuple):
        return repr(tuple(_cell(v) for v in value))
    if isinstance(value, dict):
        return repr(sorted((k, _cell(v)) for k, v in value.items()))
    return value


def partition_checksum(folder: Path) -> tuple[str, int]:
    """(sha256 over the partition's rows, sorted; its parquet file count). Lists and arrays
    are compared as tuples; row order and file names do not matter."""
    files = sorted(p for p in folder.rglob("*.parquet"))
    df = pd.read_parquet(folder) if files else pd.DataFrame()
    df = df[sorted(df.columns)]
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(_cell).astype(str)
    df = df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)
    rows = pd.util.hash_pandas_object(df, index=False).to_numpy()
    digest = hashlib.sha256(repr(list(df.columns)).encode() + rows.tobytes()).hexdigest()
    return digest, len(files)


def lake_checksums(lake: Path, days: list[str]) -> dict[str, tuple[str, int]]:
    """Every normalized and feature partition of the days, by relative path."""
    out = {}
    for layer in ("normalized", "features"):
        for table in sorted((lake / layer).iterdir()) if (lake / layer).exists() else []:
            for ds in days:
                part = table / f"ds={ds}"
                if part.is_dir():
                    out[str(part.relative_to(lake))] = partition_checksum(part)
    return out


# -- the scheduler ------------------------------------------------------------------------------


class AirflowStack:
    """dag-processor + api-server + scheduler of one AIRFLOW_HOME, on loopback."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.db = Path(env["AIRFLOW_HOME"]) / "airflow.db"

    def airflow(self, *args: str) -> str:
        airflow = str(Path(sys.executable).parent / "airflow")
        for attempt in range(5):
            result = subprocess.run(
                [airflow, *args], env=self.env, capture_output=True, text=True, timeout=300
            )
            # SQLite: the scheduler holds the write lock for moments; nothing was changed.
            if result.returncode == 0 or "database is locked" not in result.stderr:
                break
            time.sleep(2 * (attempt + 1))
        assert result.returncode == 0, f"airflow {args}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def start(self, name: str, *args: str) -> None:
        airflow = str(Path(sys.executable).parent / "airflow")
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [airflow, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.log_dir
        )
        self.procs.append((name, proc))

    def check_alive(self) -> None:
        for name, proc in self.procs:
            assert proc.poll() is None, f"airflow {name} exited:\n{self.tail(name)}"

    def tail(self, name: str, lines: int = 60) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(sql, params).fetchall()

    def wait_for(self, what: str, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.tail('scheduler')}")
            time.sleep(2)

    def wait_backfill(self, backfill_id: int, timeout: float = BACKFILL_TIMEOUT_S) -> list[tuple]:
        def done() -> bool:
            states = self.query("SELECT state FROM dag_run WHERE backfill_id = ?", backfill_id)
            failed = [s for (s,) in states if s == "failed"]
            assert not failed, f"backfill {backfill_id} failed:\n{self.task_log_tail()}"
            completed = self.query("SELECT completed_at FROM backfill WHERE id = ?", backfill_id)
            return bool(completed and completed[0][0])

        self.wait_for(f"backfill {backfill_id}", done, timeout)
        return self.query(
            "SELECT logical_date, data_interval_start, data_interval_end, state, run_type "
            "FROM dag_run WHERE backfill_id = ? ORDER BY logical_date",
            backfill_id,
        )

    def task_log_tail(self) -> str:
        logs = sorted(
            (Path(self.env["AIRFLOW_HOME"]) / "logs").rglob("*.log"), key=os.path.getmtime
        )
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in logs[-2:])


def _utc_day(value: str) -> date:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    assert ts == ts.normalize(), f"{value} is not midnight UTC"
    return ts.date()


@pytest.mark.e2e
def test_backfill_through_the_scheduler_reprocesses_to_the_same_partitions(tiny_raw, tmp_path):
    from reelflow.airflow_runner import airflow_env, migrate
    from reelflow.paths import Paths
    from reelflow.state import claim_home

    raw, manifest = tiny_raw
    # The last two days: `reelflow reprocess --from <first of them>` then reaches exactly
    # these two (the 28-day horizon stops at the data's last day). Two, not more: each day is
    # a DAG run of six tasks, twice, and two already show one run per day, in order.
    days = manifest["days"][-2:]
    paths = Paths(tmp_path / "home")
    claim_home(paths, "kuairec", raw.parent)  # scheduled runs take the home's source
    port = free_port()
    env = airflow_env(paths)
    env.update(
        {
            # start_date in the future: unpausing the daily DAG makes no scheduled run of
            # "yesterday" beside the backfill (backfill runs ignore start_date).
            "REELFLOW_START_DATE": "2099-01-01",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
        }
    )
    paths.airflow.mkdir(parents=True, exist_ok=True)
    migrate(paths)
    stack = AirflowStack(env, tmp_path)
    started = time.monotonic()
    try:
        stack.start("dag-processor", "dag-processor")
        stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port))
        stack.wait_for(
            "the three DAGs to be parsed",
            lambda: len(stack.query("SELECT dag_id FROM dag WHERE dag_id LIKE 'reelflow_%'")) >= 3,
            timeout=180,
        )
        stack.airflow("dags", "pause", "reelflow_train")
        stack.airflow("dags", "pause", "reelflow_export")
        stack.airflow("dags", "unpause", "reelflow_daily")
        stack.start("scheduler", "scheduler")

        stack.airflow(
            "backfill", "create", "--dag-id", "reelflow_daily",
            "--from-date", days[0], "--to-date", days[-1], "--max-active-runs", "1",
        )  # fmt: skip
        (first_id,) = stack.query("SELECT max(id) FROM backfill")[0]
        runs = stack.wait_backfill(first_id)
        first_s = time.monotonic() - started

        # Each run is one UTC day: [D 00:00, D+1 00:00), from the metadata DB.
        assert [r[3] for r in runs] == ["success"] * len(days)
        assert all(r[4] == "backfill" for r in runs)
        for ds, (logical, start, end, _, _) in zip(days, runs, strict=True):
            day = date.fromisoformat(ds)
            assert _utc_day(logical) == day
            assert _utc_day(start) == day
            assert _utc_day(end) == day + timedelta(days=1)
        # Training and export stayed paused: no run of theirs.
        assert stack.query("SELECT count(*) FROM dag_run WHERE dag_id != 'reelflow_daily'") == [
            (0,)
        ]
        before = lake_checksums(paths.lake, days)
        assert any(k.startswith("normalized/") for k in before)
        assert any(k.startswith("features/") for k in before)
        assert all(ds in " ".join(before) for ds in days)

        # The documented command: it finds the scheduler and creates the backfill with
        # `--reprocess-behavior completed` for the fixed day and the days whose features
        # read it, and waits for them.
        result = reelflow_cli(
            "reprocess", "--from", days[0], "--skip-train", "--json", env=env, timeout=2400
        )
        assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        summary = json.loads(result.stdout)
        assert summary["mode"] == "scheduler"
        assert summary["days"] == days
        (second_id,) = stack.query("SELECT max(id) FROM backfill")[0]
        assert second_id != first_id
        reruns = stack.wait_backfill(second_id, timeout=120)
        assert [r[3] for r in reruns] == ["success"] * len(days)
        # The same runs, cleared and run again (not skipped as already done).
        skipped = stack.query(
            "SELECT count(*) FROM backfill_dag_run WHERE backfill_id = ? "
            "AND exception_reason IS NOT NULL",
            second_id,
        )
        assert skipped == [(0,)]
        after = lake_checksums(paths.lake, days)
        assert after == before
        print(
            f"first backfill {first_s:.0f}s, both {time.monotonic() - started:.0f}s; "
            f"{len(after)} partitions unchanged"
        )
    finally:
        stack.stop()


def test_backfill_waits_while_another_backfill_of_the_dag_runs(monkeypatch, tmp_path):
    """Airflow refuses a second running backfill of a DAG; `backfill` waits for the first to end
    (here: refused twice, then created) and fails at once on any other error. The refusal is
    stubbed: the race it answers (seen in CI, the metadata DB still counting a backfill as
    running) cannot be produced on demand."""
    from reelflow import airflow_runner
    from reelflow.paths import Paths

    calls: list[tuple[str, ...]] = []
    answers = ["AlreadyRunningBackfill", "AlreadyRunningBackfill", None]

    def airflow_out(paths, *args, attempts=5):
        calls.append(args)
        refusal = answers.pop(0)
        if refusal:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n...{refusal}: Another ...")
        return ""

    monkeypatch.setattr(airflow_runner, "_airflow_out", airflow_out)
    paths = Paths(tmp_path)
    airflow_runner.backfill(paths, "reelflow_daily", "2020-07-07", "2020-07-08", poll_s=0)
    assert len(calls) == 3 and calls[0] == calls[-1]
    assert calls[0][:2] == ("backfill", "create") and "completed" in calls[0]

    answers[:] = ["AlreadyRunningBackfill"] * 3
    with pytest.raises(RuntimeError, match="AlreadyRunningBackfill"):
        airflow_runner.backfill(
            paths, "reelflow_daily", "2020-07-07", "2020-07-08", wait_running_s=0, poll_s=0
        )
    answers[:] = ["DagNotFound"]
    calls.clear()
    with pytest.raises(RuntimeError, match="DagNotFound"):
        airflow_runner.backfill(paths, "reelflow_daily", "2020-07-07", "2020-07-08", poll_s=0)
    assert len(calls) == 1
