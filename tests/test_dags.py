"""The DAG files as Airflow loads them: ids, tasks, wiring, schedules, retries, queues, the
day-wide data interval, and the failure record. No DAG runs here (tests/test_e2e.py runs them)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import timedelta
from types import SimpleNamespace

import pendulum
import pytest

from reelflow.paths import DAGS_FOLDER, REPO_ROOT

DAY = pendulum.datetime(2026, 1, 1, tz="UTC")
TASKS = {
    "reelflow_daily": {
        "apply_feature_repo": set(),
        "land": {"apply_feature_repo"},
        "normalize": {"land"},
        "validate": {"normalize"},
        "features": {"validate"},
        "materialize": {"features"},
    },
    "reelflow_train": {
        "train_ranker": set(),
        "train_gru": set(),
        "train_bert4rec": set(),
        "train_sasrec": set(),
        "train_student": {"train_sasrec"},
    },
    "reelflow_export": {"export": set()},
}


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    """A private AIRFLOW_HOME and REELFLOW_HOME, set before Airflow is first imported."""
    root = tmp_path_factory.mktemp("airflow")
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_HOME", str(root / "airflow"))
    mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_FOLDER))
    mp.setenv("REELFLOW_HOME", str(root / "home"))
    for name in ("REELFLOW_DATASET", "REELFLOW_RAW", "REELFLOW_TASK_RETRIES"):
        mp.delenv(name, raising=False)
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def dagbag(airflow_env):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


@pytest.fixture(scope="module")
def scheduler_dags(dagbag):
    """The DAGs as the scheduler sees them: serialized and deserialized, core timetables."""
    from airflow.serialization.serialized_objects import DagSerialization

    return {
        dag_id: DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
        for dag_id, dag in dagbag.dags.items()
    }


def test_every_dag_file_loads_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(TASKS)


@pytest.mark.parametrize("dag_id", sorted(TASKS))
def test_tasks_and_their_dependencies(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert {t.task_id: set(t.upstream_task_ids) for t in dag.tasks} == TASKS[dag_id]


@pytest.mark.parametrize("dag_id", sorted(TASKS))
def test_every_task_retries_with_backoff_times_out_and_records_failures(dagbag, dag_id):
    from reelflow.dag_defaults import FailDataErrors, record_failure

    dag = dagbag.dags[dag_id]
    assert dag.doc_md and dag.tags and "reelflow" in dag.tags
    assert dag.catchup is False and dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_exponential_backoff > 1 and task.max_retry_delay, task.task_id
        assert isinstance(task.retry_policy, FailDataErrors), task.task_id
        assert timedelta(0) < task.execution_timeout <= timedelta(hours=8), task.task_id
        assert record_failure in task.on_failure_callback, task.task_id
        assert task.doc_md, f"{task.task_id} has no doc_md (docstring)"


def test_training_tasks_go_to_the_gpu_queue_and_pool_and_nothing_else_does(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            training = dag.dag_id == "reelflow_train"
            assert (task.queue == "gpu") is training, task.task_id
            assert (task.pool == "gpu") is training, task.task_id


def test_tasks_declare_the_assets_they_produce(dagbag):
    from reelflow.dag_defaults import CHAMPION, FEATURES, NORMALIZED, ONLINE_FEATURES

    daily = dagbag.dags["reelflow_daily"]
    assert all(task.outlets for task in daily.tasks)
    assert daily.get_task("normalize").outlets == [NORMALIZED]
    assert daily.get_task("features").outlets == [FEATURES]
    assert daily.get_task("materialize").outlets == [ONLINE_FEATURES]
    # Every training task can promote, so every one announces a possible new champion.
    for task in dagbag.dags["reelflow_train"].tasks:
        assert task.outlets == [CHAMPION], task.task_id
    assert dagbag.dags["reelflow_export"].get_task("export").outlets


def test_schedules_as_the_scheduler_sees_them(scheduler_dags):
    from airflow.timetables.assets import AssetOrTimeSchedule
    from airflow.timetables.interval import CronDataIntervalTimetable
    from airflow.timetables.trigger import CronTriggerTimetable

    daily = scheduler_dags["reelflow_daily"].timetable
    assert isinstance(daily, CronDataIntervalTimetable)
    assert daily.summary == "0 0 * * *"

    train = scheduler_dags["reelflow_train"].timetable
    assert isinstance(train, AssetOrTimeSchedule)
    assert isinstance(train.timetable, CronTriggerTimetable)
    assert train.timetable.summary == "0 4 * * 0"  # weekly floor: Sundays 04:00 UTC
    assert {a.name for _, a in train.asset_condition.iter_assets()} == {"reelflow_features"}

    export = scheduler_dags["reelflow_export"].timetable
    assert isinstance(export, AssetOrTimeSchedule)
    assert isinstance(export.timetable, CronDataIntervalTimetable)
    assert export.timetable.summary == "0 3 * * *"  # nightly
    assert {a.name for _, a in export.asset_condition.iter_assets()} == {"reelflow_champion"}


def test_a_daily_run_covers_its_whole_utc_day(scheduler_dags):
    from airflow.timetables.base import DataInterval, TimeRestriction

    timetable = scheduler_dags["reelflow_daily"].timetable
    day = DataInterval(DAY, DAY.add(days=1))
    # Scheduled: the run after the previous day's covers exactly day D and starts after it.
    info = timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(DAY.subtract(days=1), DAY),
        restriction=TimeRestriction(earliest=DAY.subtract(days=30), latest=None, catchup=True),
    )
    assert info.data_interval == day
    assert info.logical_date == DAY and info.run_after == day.end
    # Triggered by hand during D+1: the last complete UTC day, D.
    assert timetable.infer_manual_data_interval(run_after=DAY.add(days=1, hours=9)) == day


def test_the_weekly_training_floor_fires_on_sundays(scheduler_dags):
    from airflow.timetables.base import TimeRestriction

    floor = scheduler_dags["reelflow_train"].timetable
    info = floor.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=DAY, latest=None, catchup=True),
    )
    assert info.run_after == pendulum.datetime(2026, 1, 4, 4, tz="UTC")  # the first Sunday


def test_manual_params_are_validated(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    from reelflow.names import DATASETS

    params = dagbag.dags["reelflow_daily"].params
    # Null: the home's source. Nullable, so that the UI's forms submit with the defaults.
    assert params.validate() == {"dataset": None, "raw": None, "through": None}
    assert params.get_param("dataset").schema["enum"] == [None, *DATASETS]
    assert params.get_param("dataset").schema["type"] == ["null", "string"]
    assert {params.get_param(k).schema["title"] for k in ("dataset", "raw")} == {
        "Dataset",
        "Raw release folder",
    }
    trial = copy.deepcopy(params)
    trial["dataset"], trial["raw"] = "kuairand", "/data/KuaiRand-Pure"
    trial["through"] = "2020-07-09"  # a first load's range
    bad = (("dataset", "movielens"), ("raw", "relative/path"), ("raw", ""), ("through", "07/09"))
    for key, value in bad:
        with pytest.raises(ParamValidationError, match=f"Invalid input for param {key}"):
            copy.deepcopy(params)[key] = value


def test_a_run_covers_the_range_its_param_or_its_interval_names(airflow_env):
    """`through` from the param; without it, from an interval that starts on the run's day and
    spans more (a range's run, recorded over [D, E+1) and run again by a Clear or a backfill
    whose form sent the default params); a scheduled run's [D, D+1) and a manual run's
    [D-1, D) are one day."""
    from reelflow.dag_defaults import run_params, run_through

    def context(start, end, through=None, ds="2026-01-01"):
        interval = {"data_interval_start": start, "data_interval_end": end}
        return {"ds": ds, "params": {"dataset": None, "through": through}, **interval}

    assert run_through(context(DAY, DAY.add(days=1))) is None  # scheduled or backfilled
    assert run_through(context(DAY.subtract(days=1), DAY)) is None  # triggered by hand
    assert run_through(context(DAY, DAY.add(days=4))) == "2026-01-04"  # a range run, rerun
    assert run_through(context(DAY, DAY.add(days=1), through="2026-01-09")) == "2026-01-09"
    assert run_through({"ds": None, "params": {}}) is None  # asset-triggered
    ranged = run_params(context(DAY, DAY.add(days=4)))
    assert ranged == {"dataset": None, "through": "2026-01-04"}


def test_the_failure_callback_records_what_failed_and_why(airflow_env):
    from reelflow.dag_defaults import record_failure

    try:
        raise RuntimeError("Redis not reachable at redis:6379")
    except RuntimeError as exc:
        error = exc
    ti = SimpleNamespace(
        dag_id="reelflow_daily",
        task_id="materialize",
        run_id="scheduled__2026-01-01T00:00:00+00:00",
        map_index=-1,
        try_number=3,
        max_tries=2,
    )
    record_failure({"ti": ti, "ds": "2026-01-01", "exception": error})

    out = airflow_env / "home/runs/ds=2026-01-01/failures/reelflow_daily.materialize.json"
    record = json.loads(out.read_text())
    assert record["error_type"] == "RuntimeError"
    assert record["error"] == "Redis not reachable at redis:6379"
    assert "test_the_failure_callback_records_what_failed_and_why" in record["traceback"]
    assert (record["try_number"], record["max_tries"], record["run_id"]) == (3, 2, ti.run_id)


def test_a_run_without_logical_date_files_under_its_triggering_day(airflow_env):
    """Asset-triggered runs have no logical date: the day comes from the asset events."""
    from reelflow.dag_defaults import CHAMPION, champion_unchanged, run_day

    def events(*extras):
        return {CHAMPION: [SimpleNamespace(extra=extra) for extra in extras]}

    run = SimpleNamespace(run_after=DAY.add(hours=5))
    triggered = {
        "dag_run": run,
        "triggering_asset_events": events(
            {"ds": "2025-12-30", "promoted": False}, {"ds": "2025-12-31", "promoted": True}
        ),
    }
    assert run_day(triggered) == "2025-12-31"
    assert not champion_unchanged(triggered)
    nothing_new = {"dag_run": run, "triggering_asset_events": events({"ds": "2025-12-31"})}
    assert champion_unchanged(nothing_new)
    assert run_day({"dag_run": run, "triggering_asset_events": {}}) == "2026-01-01"
    assert run_day({"ds": "2025-06-01", "dag_run": run}) == "2025-06-01"
    assert not champion_unchanged({"ds": "2025-06-01"})  # a nightly run always exports


def test_data_errors_fail_at_once_and_other_errors_retry():
    from airflow.sdk import RetryAction

    from reelflow.dag_defaults import FailDataErrors

    class ValidationFailed(RuntimeError):  # jobs.validate's, by name (no Spark import here)
        pass

    policy = FailDataErrors()
    assert policy.evaluate(ValidationFailed("x"), 1, 2).action == RetryAction.FAIL
    assert policy.evaluate(ValueError("x"), 1, 2).action == RetryAction.FAIL
    assert policy.evaluate(ConnectionError("x"), 1, 2).action == RetryAction.DEFAULT


def test_dag_files_import_nothing_heavy_at_parse_time(airflow_env):
    """The scheduler parses DAG files every loop: Spark, torch, Feast, MLflow stay out."""
    heavy = ["pyspark", "torch", "feast", "mlflow", "pandas", "faiss", "great_expectations"]
    code = (
        "import runpy, sys, pathlib\n"
        f"for f in sorted(pathlib.Path({str(DAGS_FOLDER)!r}).glob('*.py')): runpy.run_path(str(f))\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_migrate_creates_the_gpu_pool(tmp_path, monkeypatch):
    from reelflow import airflow_runner
    from reelflow.dag_defaults import GPU_POOL
    from reelflow.paths import Paths

    monkeypatch.setenv("REELFLOW_GPU_POOL_SLOTS", "2")
    paths = Paths(tmp_path / "home")
    airflow_runner.migrate(paths)
    airflow_runner.migrate(paths)  # idempotent
    listed = subprocess.run(
        [airflow_runner._airflow(), "pools", "get", GPU_POOL, "--output", "json"],
        env=airflow_runner.airflow_env(paths),
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert json.loads(listed.stdout)[0]["slots"] in (2, "2")
