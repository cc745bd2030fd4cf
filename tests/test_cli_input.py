"""Issue 12 ("Real-world input"), the CLI's and the runner's rows: each is reproduced here.

Fast on purpose: argparse-level calls of `reelflow.cli.main`, the planning and gate functions
directly, and one child `reelflow normalize` on the tiny release for the console-noise row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reelflow import cli

# --- row 2: `reelflow run` plans the landed days only, hands the plan over without argv ----


def test_run_plans_only_the_days_that_hold_data():
    landed = ["1970-01-01", "2020-07-05", "2020-07-06", "2100-01-01"]
    days = cli.plan_days(landed, "2020-07-01", "2020-07-31", max_days=400)
    assert days == ["2020-07-05", "2020-07-06"]


def test_run_sends_the_plan_in_ranges_of_consecutive_data_days():
    days = ["2020-07-01", "2020-07-02", "2020-07-05", "2020-07-06", "2020-07-09"]
    assert cli.day_ranges(days, 2) == [
        ("2020-07-01", "2020-07-02"),
        ("2020-07-05", "2020-07-06"),
        ("2020-07-09", "2020-07-09"),
    ]
    assert cli.day_ranges(days, 31) == [("2020-07-01", "2020-07-09")]
    assert cli.day_ranges(days, 1) == cli.day_ranges(days, 0) == [(d, d) for d in days]


def test_run_refuses_a_plan_spanning_more_than_max_days_naming_the_span_and_flags():
    landed = ["1970-01-01", "2020-07-05", "2100-01-01"]
    with pytest.raises(SystemExit) as info:
        cli.plan_days(landed, None, None, max_days=400)
    message = str(info.value)
    assert "1970-01-01" in message and "2100-01-01" in message
    assert "--start" in message and "--end" in message and "max_days" in message


def test_explicit_start_and_end_override_max_days():
    landed = ["1970-01-01", "2020-07-05", "2100-01-01"]
    assert cli.plan_days(landed, "1970-01-01", "2100-01-01", max_days=400) == landed


def test_the_plan_reaches_the_runner_child_without_the_command_line(home):
    from reelflow import airflow_runner

    plan = [("reelflow_daily", "2020-07-05", {"dataset": "kuairec", "raw": "/r"})] * 50_000
    cmd = airflow_runner.child_command(home, plan, "run")
    assert sum(len(part) for part in cmd) < 4096
    assert [list(p) for p in airflow_runner.load_plan(cmd[-1])] == [list(p) for p in plan]


# --- row 5: every day argument is a real YYYY-MM-DD date; lake paths never leave the lake --

DAY_ARGS = [
    ["normalize", "--dataset", "kuairec", "--raw", "/nowhere", "--ds"],
    ["validate", "--ds"],
    ["features", "--ds"],
    ["materialize", "--ds"],
    ["export", "--ds"],
    ["train", "--holdout"],
    ["run", "--dataset", "kuairec", "--raw", "/nowhere", "--start"],
    ["run", "--dataset", "kuairec", "--raw", "/nowhere", "--end"],
    ["reprocess", "--from"],
    ["reprocess", "--from", "2020-07-05", "--to"],
]


@pytest.mark.parametrize("bad", ["notadate", "../../../../escape", "2020-02-30", "2020-7-5"])
@pytest.mark.parametrize("argv", DAY_ARGS, ids=lambda a: f"{a[0]} {a[-1]}")
def test_every_day_argument_must_be_a_real_date(argv, bad, capsys):
    # Parsing alone: argparse refuses the value before any command runs.
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args([*argv, bad])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert bad in err and "YYYY-MM-DD" in err


@pytest.mark.parametrize("bad", ["notadate", "../../../../escape", "", "2020-13-01", "ds=x"])
def test_partition_refuses_anything_but_a_day(bad, tmp_path):
    from lake.partitions import partition

    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        partition(tmp_path / "table", bad)


def test_partition_accepts_a_day_and_the_undated_partition(tmp_path):
    from lake.partitions import UNDATED, partition

    assert partition(tmp_path, "2020-07-05") == tmp_path / "ds=2020-07-05"
    assert partition(tmp_path, UNDATED) == tmp_path / f"ds={UNDATED}"


def test_task_entry_points_refuse_a_bad_day(home):
    from reelflow import tasks

    with pytest.raises(ValueError, match="notadate"):
        tasks.record("notadate", "x", {})
    with pytest.raises(ValueError, match="escape"):
        tasks.validate("../../escape")
    assert not (home.runs).exists()


def test_spark_submit_entry_refuses_a_bad_day(capsys):
    from jobs import submit

    with pytest.raises(SystemExit):
        submit.parse_args(["--job", "normalize", "--ds", "../../escape"])
    assert "../../escape" in capsys.readouterr().err


# --- row 6: export of a day without features says so; no empty error messages -------------


def test_export_of_a_day_without_features_names_the_day_and_what_is_missing(home, capsys):
    assert cli.main(["export", "--ds", "2099-01-01"]) == 1
    err = capsys.readouterr().err
    assert "2099-01-01" in err and "user features" in err and "reelflow features" in err


def test_an_error_without_a_message_still_says_what_it_is(monkeypatch, capsys, home):
    def boom(args):
        raise AssertionError()

    monkeypatch.setattr(cli, "cmd_validate", boom)
    assert cli.main(["validate", "--ds", "2020-07-05"]) == 1
    err = capsys.readouterr().err.strip()
    assert "AssertionError" in err and not err.endswith("error:")


# --- row 7: a home records its dataset only after a successful landing ---------------------


def test_a_failed_normalize_does_not_claim_the_home(home, tmp_path, capsys):
    from reelflow.state import read_state

    wrong = tmp_path / "not-a-release"
    wrong.mkdir()
    assert cli.main(["normalize", "--dataset", "kuairec", "--raw", str(wrong)]) == 1
    assert read_state(home) == {}
    capsys.readouterr()
    # The right dataset is not refused because of the failed first try.
    assert cli.main(["normalize", "--dataset", "kuairand", "--raw", str(wrong)]) == 1
    assert "already holds" not in capsys.readouterr().err
    assert read_state(home) == {}


def test_state_is_written_atomically(home, tmp_path, monkeypatch):
    from reelflow import state

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", lambda src, dst: (replaced.append(Path(dst)), real_replace(src, dst))
    )
    state.record_home(home, "kuairec", tmp_path)
    assert replaced == [home.state_file]
    assert json.loads(home.state_file.read_text())["dataset"] == "kuairec"
    assert [p.name for p in home.home.iterdir()] == [home.state_file.name]


# --- row 8: recommend --k is at least 1 ------------------------------------------------------


@pytest.mark.parametrize("k", ["0", "-1"])
def test_recommend_k_must_be_at_least_one(k, capsys):
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["recommend", "--user", "1", "--k", k])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--k" in err and "at least 1" in err


# --- row 10: a tie with the champion is not an improvement -----------------------------------


def test_the_gate_does_not_promote_a_challenger_that_ties_the_champion():
    from models.gate import promotion_gate

    promoted, reason = promotion_gate(0.3, 0.1, 0.3, 0.0)
    assert not promoted
    assert "ties the champion" in reason
    promoted, reason = promotion_gate(0.31, 0.1, 0.3, 0.0)
    assert promoted and "beats" in reason
    promoted, _ = promotion_gate(0.305, 0.1, 0.3, 0.01)
    assert not promoted


# --- row 13: Spark's and Java's console noise stays out of a normal run's stderr -------------


def test_normalize_stderr_holds_no_spark_or_java_noise(tiny_raw, tmp_path):
    raw, manifest = tiny_raw
    env = {**os.environ, "REELFLOW_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "reelflow.cli", "normalize", "--dataset", "kuairec"]
        + ["--raw", str(raw), "--ds", manifest["days"][0], "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for noise in ("WARN", "NativeCodeLoader", "Setting default log level", "[Stage "):
        assert noise not in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "home" / "runs" / "logs" / "spark.log").exists()
