"""The whole pipeline on tiny generated data, run through Airflow by `reelflow run`."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from tests.conftest import feast_online_over_http, feature_values, free_port, reelflow_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lake(pipeline_run, monkeypatch_module):
    monkeypatch_module.setenv("REELFLOW_HOME", str(pipeline_run["home"]))
    from reelflow.paths import Paths

    return Paths.from_env()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def partition_rows(table_dir, ds) -> int:
    return len(pd.read_parquet(table_dir / f"ds={ds}"))


def test_every_generated_row_is_normalized_or_quarantined(pipeline_run, lake):
    manifest = pipeline_run["manifest"]
    for ds, written in manifest["rows_per_day"].items():
        normalized = partition_rows(lake.normalized("interactions"), ds)
        quarantined = partition_rows(lake.quarantine("interactions"), ds)
        assert normalized + quarantined == written, ds
        assert normalized == manifest["valid_rows_per_day"][ds], ds
    reasons = pd.read_parquet(lake.quarantine("interactions"))["quarantine_reason"]
    assert reasons.notna().all()


def test_validation_passed_for_every_day(pipeline_run, lake):
    for ds in pipeline_run["manifest"]["days"]:
        for table in ("interactions", "videos"):
            report = json.loads((lake.validation(table) / f"ds={ds}.json").read_text())
            assert report["success"] and report["evaluated"] > 0, (table, ds)


def test_online_features_for_a_known_user(pipeline_run, lake):
    from features.store import online_features

    user = int(pd.read_parquet(lake.normalized("interactions"))["user_id"].iloc[0])
    row = online_features(
        [{"user_id": user}], ["user_features:views_28d", "user_features:category_affinity"]
    )
    assert row["views_28d"][0] and row["views_28d"][0] > 0
    assert len(row["category_affinity"][0]) == 31


def test_champion_is_registered_and_beats_popularity(pipeline_run, lake):
    from mlflow import MlflowClient

    from models.tracking import CHAMPION, registered_name, setup_tracking

    RANKER = registered_name("ranker")
    setup_tracking(lake)
    client = MlflowClient()
    champion = client.get_model_version_by_alias(RANKER, CHAMPION)
    assert champion.tags["gate"] == "promoted"
    metrics = client.get_run(champion.run_id).data.metrics
    last_day = pipeline_run["manifest"]["days"][-1]
    params = client.get_run(champion.run_id).data.params
    assert params["test_ds"] == last_day and params["val_ds"] < last_day
    for split in ("val", "test"):
        assert metrics[f"{split}_ndcg_at_10"] > metrics[f"popularity_{split}_ndcg_at_10"]
        assert metrics[f"{split}_recall_at_10"] > metrics[f"popularity_{split}_recall_at_10"]
    assert {"test_mrr_at_10", "test_ndcg_at_20", "val_mrr_at_20"} <= set(metrics)
    # KuaiRec's fully observed block: scored too, next to popularity.
    assert {"small_matrix_ndcg_at_10", "popularity_small_matrix_ndcg_at_10"} <= set(metrics)
    assert metrics["small_matrix_users"] > 0


def test_the_rankers_training_set_is_bounded_by_days_and_a_logged_sample_of_views(
    pipeline_run, lake
):
    """`ranker.train_days` keeps the last days before the validation day, `max_train_views` a
    seeded sample of their views (each with its negatives); the run logs what it kept."""
    from mlflow import MlflowClient

    from models.ranker_data import ServiceFeatures, build_training_data
    from models.tracking import CHAMPION, registered_name, setup_tracking
    from reelflow.config import load_config

    setup_tracking(lake)
    client = MlflowClient()
    champion = client.get_model_version_by_alias(registered_name("ranker"), CHAMPION)
    run = client.get_run(champion.run_id).data
    params = run.params
    # The default bound holds the tiny release whole, and the time budget does not bind.
    assert float(params["ranker.max_train_minutes"]) > 0
    assert run.metrics["stopped_by_time_budget"] == 0
    # Early stopping on validation NDCG@10 keeps the best epoch, at most `ranker.epochs`.
    assert 1 <= run.metrics["best_epoch"] <= run.metrics["epochs_run"]
    assert run.metrics["epochs_run"] <= float(params["ranker.epochs"])
    assert int(params["train_views"]) == int(params["train_views_available"]) > 0
    days = params["train_days"].split(",")
    assert int(params["train_rows"]) == int(params["train_views"]) * 4
    config = load_config(
        {"REELFLOW_RANKER__TRAIN_DAYS": "1", "REELFLOW_RANKER__MAX_TRAIN_VIEWS": "25"}
    )
    features = ServiceFeatures.of("ranker_v1", lake)
    bounded = build_training_data(params["val_ds"], config, features)
    assert bounded.train_days == days[-1:]
    on_last_day = partition_rows(lake.features("labels"), days[-1])
    assert bounded.views_available == on_last_day > 25
    assert bounded.views_kept == 25
    assert len(bounded.targets["exposed"]) == 25 * 4
    assert int(bounded.targets["exposed"].sum()) == 25
    # The video table holds exactly the videos the kept views watched; a sampled unexposed
    # video outside them reads the "unknown video" row 0.
    viewed = bounded.train["video_idx"][bounded.targets["exposed"] == 1].numpy()
    assert (viewed > 0).all() and len(np.unique(viewed)) == len(bounded.video_vocab.ids)
    again = build_training_data(params["val_ds"], config, features)
    assert all(torch_equal(bounded.train[k], again.train[k]) for k in bounded.train)


def test_a_catalog_past_the_rerank_depth_is_ranked_in_two_stages(pipeline_run, lake):
    """The champion's validation day: at a depth as large as the catalog every video passes
    through the heads (the numbers the run logged); at a smaller depth the ranking is the
    two-stage one (a first stage pooled like the export's candidates), says so, and still
    ranks every video. The video table holds the videos
    viewed in the training rows, not the whole catalog."""
    from mlflow import MlflowClient

    from models.bundle import load_version
    from models.ranker_data import ServiceFeatures, Split
    from models.tracking import CHAMPION, registered_name, setup_tracking
    from reelflow.config import load_config

    setup_tracking(lake)
    champion = MlflowClient().get_model_version_by_alias(registered_name("ranker"), CHAMPION)
    run = MlflowClient().get_run(champion.run_id).data
    bundle = load_version("ranker", int(champion.version))
    assert len(bundle.video_vocab.ids) == int(run.params["video_vocabulary"])
    assert bundle.model.config.sparse_videos
    features = ServiceFeatures.of("ranker_v1", lake)
    val_ds = run.params["val_ds"]
    exact = Split.build(val_ds, load_config({}), features)
    n_videos = len(exact.video_frame)
    assert n_videos <= exact.rerank_depth and exact.protocol.startswith("every one of")
    assert exact.score(bundle)["ndcg@10"] == pytest.approx(run.metrics["val_ndcg_at_10"])
    config = load_config({"REELFLOW_RANKER__EVAL_RERANK_DEPTH": "20"})
    staged = Split.build(val_ds, config, features)
    assert "10 best unseen by the towers' dot product, up to 3 best" in staged.protocol
    assert "the most popular unseen filling to 20" in staged.protocol
    metrics = staged.score(bundle)
    assert metrics["videos"] == n_videos and metrics["users"] == len(exact.holdout.user_ids)
    assert 0.0 <= metrics["ndcg@10"] <= 1.0


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_gate_keeps_a_worse_challenger_out_and_promote_reruns_it(pipeline_run, lake):
    """A barely trained challenger is rejected on its own validation day; forcing it is
    recorded; `promote` of the better version re-scores both and moves the alias back."""
    from mlflow import MlflowClient

    from models.tracking import CHAMPION, registered_name, setup_tracking

    RANKER = registered_name("ranker")
    setup_tracking(lake)
    client = MlflowClient()
    good = str(client.get_model_version_by_alias(RANKER, CHAMPION).version)
    env = {
        **pipeline_run["env"],
        "REELFLOW_RANKER__EPOCHS": "1",
        "REELFLOW_RANKER__LR": "0.000001",
    }
    trained = reelflow_cli("train", "--model", "ranker", "--json", env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    bad = json.loads(trained.stdout)
    assert bad["promoted"] is False and bad["gate"]["decision"] == "rejected"
    assert str(client.get_model_version_by_alias(RANKER, CHAMPION).version) == good
    tags = client.get_model_version(RANKER, str(bad["version"])).tags
    assert float(tags["gate_champion_score"]) > float(tags["gate_challenger_score"])
    assert tags["gate_champion_version"] == good and tags["gate_split"].startswith("val_ds=")

    forced = reelflow_cli(
        "promote",
        "--model",
        "ranker",
        "--version",
        str(bad["version"]),
        "--force",
        "--json",
        env=pipeline_run["env"],
    )
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert json.loads(forced.stdout)["decision"] == "forced"
    assert str(client.get_model_version_by_alias(RANKER, CHAMPION).version) == str(bad["version"])

    back = reelflow_cli(
        "promote", "--model", "ranker", "--version", good, "--json", env=pipeline_run["env"]
    )
    assert back.returncode == 0, back.stderr[-3000:]
    assert json.loads(back.stdout)["decision"] == "promoted"
    assert str(client.get_model_version_by_alias(RANKER, CHAMPION).version) == good
    # History is kept: every version stays registered with its gate decision.
    versions = client.search_model_versions(f"name='{RANKER}'")
    assert {str(v.version): v.tags["gate"] for v in versions}[str(bad["version"])] == "forced"


def test_sequence_models_are_trained_registered_and_gated_by_the_dag(pipeline_run, lake):
    """reelflow_train trains GRU, BERT4Rec, SASRec and the student (distilling this run's SASRec);
    each is a registered `reelflow-<model>` version with its gate decision; `reelflow train
    --model gru` from the command line adds a version gated the same way."""
    from mlflow import MlflowClient

    from models.tracking import setup_tracking

    setup_tracking(lake)
    client = MlflowClient()
    for model in ("gru", "bert4rec", "sasrec", "student"):
        version = client.get_model_version(f"reelflow-{model}", "1")
        assert version.tags["gate"] in ("promoted", "rejected"), model
        metrics = client.get_run(version.run_id).data.metrics
        assert {"test_ndcg_at_10", "val_ndcg_at_10", "popularity_test_ndcg_at_10"} <= set(metrics)
    student = client.get_model_version("reelflow-student", "1")
    assert client.get_run(student.run_id).data.params["teacher_version"] == "1"

    trained = reelflow_cli(
        "train",
        "--model",
        "gru",
        "--holdout",
        pipeline_run["manifest"]["days"][-1],
        "--json",
        env=pipeline_run["env"],
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads(trained.stdout)
    assert summary["model"] == "reelflow-gru" and summary["version"] == 2
    assert summary["gate"]["decision"] in ("promoted", "rejected")
    assert "test_ndcg_at_10" in summary["metrics"]


def test_index_holds_the_champions_embeddings_and_the_manifest_says_which(pipeline_run, lake):
    """The index holds the video table of the embedding model's champion (the student, or the
    ranker's two-tower vectors where no student is champion), as the manifest records."""
    import faiss

    from models.bundle import load_version
    from models.tracking import champion_version, registered_name, setup_tracking

    RANKER = registered_name("ranker")

    export = lake.exports / "latest"
    manifest = json.loads((export / "manifest.json").read_text())
    ds = manifest["ds"]
    index = faiss.read_index(str(export / "index.faiss"))
    video_ids = np.load(export / "video_ids.npy")
    catalog = pd.read_parquet(lake.normalized("videos") / f"ds={ds}")
    assert index.ntotal == len(video_ids) == manifest["index"]["size"]
    assert set(video_ids) <= set(catalog["video_id"])
    assert manifest["index"]["recall"] >= manifest["index"]["recall_floor"] == 0.95

    setup_tracking(lake)
    used = manifest["models"]["embeddings"]
    stored = index.reconstruct_n(0, index.ntotal)
    if used["name"] == RANKER:
        assert champion_version("reelflow-student") is None  # the fallback only then
        bundle = load_version("ranker", used["version"])
        features = pd.read_parquet(lake.features("video_features") / f"ds={ds}")
        frame = features.set_index("video_id").loc[video_ids].reset_index()
        expected = bundle.item_vectors(video_ids, frame)[1]
    else:
        assert used["name"] == "reelflow-student"
        assert int(champion_version(used["name"]).version) == used["version"]
        bundle = load_version("student", used["version"])
        expected = bundle.item_vectors(video_ids)[1]
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)


def test_an_index_below_the_recall_floor_is_refused_and_the_last_export_stays_live(
    pipeline_run, lake
):
    from jobs.ann import IndexBelowRecallFloor
    from jobs.export import export_candidates
    from reelflow.config import Config, ExportConfig

    latest = lake.exports / "latest"
    before = (latest.resolve(), (latest / "manifest.json").read_text())
    ds = pipeline_run["manifest"]["days"][-1]
    # An IVF index (the catalog is above exact_max_videos) cannot reach a recall of 1.01.
    strict = Config(export=ExportConfig(exact_max_videos=10, recall_floor=1.01))
    with pytest.raises(IndexBelowRecallFloor, match="below the floor 1.01"):
        export_candidates(ds, config=strict, paths=lake)
    assert (latest.resolve(), (latest / "manifest.json").read_text()) == before


def test_every_user_has_k_unwatched_candidates(pipeline_run, lake):
    from reelflow.config import load_config

    k = load_config().export.candidates_per_user
    ds = pipeline_run["manifest"]["days"][-1]
    candidates = pd.read_parquet(lake.candidates / f"ds={ds}")
    users = pd.read_parquet(lake.normalized("users") / f"ds={ds}")["user_id"]
    counts = candidates.groupby("user_id").size()
    assert set(counts.index) == set(users)
    assert (counts == k).all()
    assert not candidates.duplicated(["user_id", "video_id"]).any()
    watched = pd.read_parquet(lake.normalized("interactions"))[
        ["user_id", "video_id"]
    ].drop_duplicates()
    overlap = candidates.merge(watched, on=["user_id", "video_id"])
    assert overlap.empty, f"{len(overlap)} candidates were already watched"
    # Every row names its source; active users get 3 of 20 exploration slots (15%).
    assert set(candidates["source"]) <= {
        "ann",
        "affinity",
        "trending",
        "cold_start",
        "explore",
        "fallback",
    }
    personal = candidates[candidates["source"] != "fallback"]
    explored = personal[personal["source"].isin(["cold_start", "explore"])]
    assert (explored.groupby("user_id").size() == 3).all()
    assert explored["user_id"].nunique() == personal["user_id"].nunique()


def test_recommend_reads_the_online_store(pipeline_run, lake):
    ds = pipeline_run["manifest"]["days"][-1]
    candidates = pd.read_parquet(lake.candidates / f"ds={ds}")
    user = int(candidates["user_id"].iloc[0])
    env = {**os.environ, "REELFLOW_HOME": str(pipeline_run["home"])}
    result = reelflow_cli("recommend", "--user", str(user), "--k", "5", "--json", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    online = json.loads(result.stdout)
    expected = (
        candidates[candidates["user_id"] == user].sort_values("rank")["video_id"].head(5).tolist()
    )
    assert [c["video_id"] for c in online["candidates"]] == expected
    assert online["user_features"]["views_28d"] is not None


def test_recommend_answers_an_unknown_user_with_the_fallback_list(pipeline_run, lake):
    env = {**os.environ, "REELFLOW_HOME": str(pipeline_run["home"])}
    result = reelflow_cli("recommend", "--user", "987654321", "--k", "5", "--json", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    fallback = json.loads((lake.exports / "latest" / "fallback.json").read_text())
    assert [c["video_id"] for c in answer["candidates"]] == fallback["video_ids"][:5]
    assert {c["source"] for c in answer["candidates"]} == {"fallback"}


def test_feast_serve_returns_the_latest_candidates_and_features(pipeline_run, lake):
    """What a feed server reads, over HTTP from `feast serve`: the `serving_v1` service."""
    ds = pipeline_run["manifest"]["days"][-1]
    candidates = pd.read_parquet(lake.candidates / f"ds={ds}")
    users = pd.read_parquet(lake.features("user_features") / f"ds={ds}").set_index("user_id")
    user = int(candidates.loc[candidates["user_id"].isin(users.index), "user_id"].iloc[0])
    answer = feast_online_over_http(
        pipeline_run["home"], {"feature_service": "serving_v1", "entities": {"user_id": [user]}}
    )
    values = feature_values(answer)
    expected = candidates[candidates["user_id"] == user].sort_values("rank")["video_id"].tolist()
    assert values["video_ids"] == [expected]
    latest = pd.read_parquet(lake.features("user_sequences") / f"ds={ds}").set_index("user_id")
    assert values["seq_video_ids"] == [list(latest.loc[user, "seq_video_ids"])]
    assert values["views_28d"] == [int(users.loc[user, "views_28d"])]


def test_run_summary_reports_each_stage(pipeline_run):
    summary = json.loads(pipeline_run["stdout"])
    assert set(summary["days"]) == set(pipeline_run["manifest"]["days"])
    assert all(
        day["validation"] == "passed" and day["materialized"] for day in summary["days"].values()
    )
    assert summary["train"]["promoted"] is True
    assert set(summary["sequence_models"]) == {"gru", "bert4rec", "sasrec", "student"}
    assert 0 < summary["export"]["index"]["size"] <= 400  # videos the embedding model knows
    # What each stage cost, summed over the days (reelflow/meter.py).
    days, stages = len(summary["days"]), summary["stages"]
    for stage in ("land", "normalize", "validate", "features", "materialize"):
        assert stages[stage]["days"] == days, stage
    # The release is parsed once, by `reelflow run` before the DAG runs (its JVM included).
    assert stages["land_release"]["days"] == 1
    assert stages["land_release"]["peak_rss_gib_jvm"] > 0.05, stages["land_release"]
    for stage in ("land_release", "normalize", "features", "train_ranker", "train_gru", "export"):
        cost = stages[stage]
        assert 0 < cost["wall_seconds"] and 0 < cost["cpu_seconds"], (stage, cost)
        assert 0 < cost["peak_rss_gib_python"] <= cost["peak_rss_gib_total"], (stage, cost)
    # The Spark stages run a JVM under the task's process: its memory is measured.
    assert stages["normalize"]["peak_rss_gib_jvm"] > 0.05, stages["normalize"]


def test_cold_start_plan_follows_normalized_performance_day_to_day(pipeline_run, lake):
    """Exports of the last two days: each new video of the first gets a cohort; the next day
    a strong one (normalized performance >= 1.2) doubles it, a weak one stops. Runs last
    among the pipeline tests: it re-publishes the exports."""
    from jobs.export import export_candidates
    from lake.schema import EXPOSURE_PLAN
    from reelflow.config import ColdStartConfig, Config

    # Cohorts of 10 (of the 120 tiny users) so that doubling shows.
    cfg = ColdStartConfig(cohort_users=10)
    first, second = pipeline_run["manifest"]["days"][-2:]
    export_candidates(first, config=Config(cold_start=cfg), paths=lake)
    export_candidates(second, config=Config(cold_start=cfg), paths=lake)
    before = pd.read_parquet(lake.lake / EXPOSURE_PLAN / f"ds={first}").set_index("video_id")
    after = pd.read_parquet(lake.lake / EXPOSURE_PLAN / f"ds={second}").set_index("video_id")
    perf = pd.read_parquet(lake.features("video_features") / f"ds={second}").set_index("video_id")[
        "normalized_performance"
    ]
    started = before[before["state"] == "new"]
    assert len(started) > 0 and (started["cohort_users"] > 0).all()
    for video, row in started.iterrows():
        value, now = perf.get(video), after.loc[video]
        if pd.isna(value):
            assert now["state"] == "hold" and now["cohort_users"] == row["cohort_users"]
        elif value >= cfg.expansion_threshold:
            assert now["state"] == "grow" and now["cohort_users"] == 2 * row["cohort_users"]
        else:
            assert now["state"] == "stop" and now["cohort_users"] == 0
    # The cohorts became exploration slots of the second day's lists.
    candidates = pd.read_parquet(lake.candidates / f"ds={second}")
    exploring = after[after["cohort_users"] > 0].index
    cold = candidates[candidates["source"] == "cold_start"]
    assert set(cold["video_id"]) <= set(exploring)


def test_a_failed_gate_stops_the_dag_run_before_features(tiny_raw, tmp_path):
    """Through Airflow: a day that breaks an expectation fails `validate`, names it, and no
    feature of that day is written."""
    raw, manifest = tiny_raw
    day = manifest["days"][0]
    home = tmp_path / "home"
    # Demand a view in the day's last 36 seconds: the generated day ends earlier, so the
    # freshness expectation breaks.
    env = {**os.environ, "REELFLOW_HOME": str(home), "REELFLOW_QUALITY__FRESHNESS_HOURS": "0.01"}
    run_args = ("run", "--dataset", "kuairec", "--raw", str(raw), "--start", day, "--end", day)
    result = reelflow_cli(*run_args, "--skip-train", env=env, timeout=900)
    assert result.returncode != 0
    assert "expect_column_max_to_be_between(hour_of_day)" in result.stderr
    assert (home / "lake" / "normalized" / "interactions" / f"ds={day}").exists()
    assert not (home / "lake" / "features" / "user_features" / f"ds={day}").exists()


def test_an_interrupted_run_resumes_skipping_what_it_finished(tiny_raw, tmp_path):
    """`reelflow run` keeps a ledger of finished DAG runs: a second attempt skips a finished
    day and resumes a failed one at its failed task (the tasks before it are marked success,
    not run again: their summaries and costs stay the first attempt's), and the report sums
    each stage over the days whichever attempt ran them. `--rerun` runs everything again."""
    raw, manifest = tiny_raw
    first, second = manifest["days"][:2]
    home = tmp_path / "home"
    # A DAG run per day: the unit of the ledger is a DAG run (here a day, by default a range).
    env = {**os.environ, "REELFLOW_HOME": str(home), "REELFLOW_RUN__RANGE_DAYS": "1"}
    run = ("run", "--dataset", "kuairec", "--raw", str(raw), "--skip-train", "--json")
    done = reelflow_cli(*run, "--start", first, "--end", first, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    # The Spark tasks sent to a connection that does not exist: normalize fails at once.
    broken = {**env, "REELFLOW_SPARK_CONN_ID": "no_such_cluster"}
    failed = reelflow_cli(*run, "--start", first, "--end", second, env=broken, timeout=900)
    assert failed.returncode != 0
    assert "resuming: 1 done in an earlier attempt" in failed.stderr
    ledger = json.loads((home / "runs" / "logs" / "run.ledger.json").read_text())["units"]
    assert ledger[f"reelflow_daily {first}"]["complete"]
    half = ledger[f"reelflow_daily {second}"]
    assert half == {"tasks": ["apply_feature_repo", "land"], "complete": False}
    runs = home / "runs"
    first_normalize = (runs / f"ds={first}" / "normalize.json").stat().st_mtime_ns
    land = (runs / f"ds={second}" / "land.json").stat().st_mtime_ns

    resumed = reelflow_cli(*run, "--start", first, "--end", second, env=env, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 done in an earlier attempt, 1 to finish" in resumed.stderr
    log = (runs / "logs" / "run.log").read_text()
    assert f"reelflow_daily {first} done in an earlier attempt: skipped" in log
    assert "--mark-success-pattern apply_feature_repo|land" in log
    assert (runs / f"ds={first}" / "normalize.json").stat().st_mtime_ns == first_normalize
    assert (runs / f"ds={second}" / "land.json").stat().st_mtime_ns == land
    summary = json.loads(resumed.stdout)
    assert summary["days"][second]["validation"] == "passed"
    for stage in ("land", "normalize", "validate", "features", "materialize"):
        assert summary["stages"][stage]["days"] == 2, (stage, summary["stages"][stage])
    ledger = json.loads((runs / "logs" / "run.ledger.json").read_text())["units"]
    assert ledger[f"reelflow_daily {second}"]["complete"]

    again = reelflow_cli(*run, "--start", first, "--end", first, "--rerun", env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" not in again.stderr
    assert (runs / f"ds={first}" / "normalize.json").stat().st_mtime_ns > first_normalize


def lake_rows(home, table_dir) -> dict[str, list[str]]:
    """Each day's partition of a lake table: its rows sorted, floats to 9 decimals (sums over a
    window may add in another order), maps and arrays as plain sorted values."""
    import pyarrow.parquet as pq

    def plain(value):
        if isinstance(value, float):
            return None if value != value else round(value, 9)
        if isinstance(value, list):
            if value and isinstance(value[0], tuple):  # a map, as pyarrow gives it
                return sorted(value)
            return [plain(v) for v in value]
        return value

    out = {}
    for folder in sorted(table_dir.glob("ds=*")):
        rows = pq.read_table(folder).to_pylist()
        out[folder.name] = sorted(repr([plain(v) for v in row.values()]) for row in rows)
    return out


def test_a_first_load_in_ranges_writes_what_daily_runs_write(pipeline_run, lake, tmp_path):
    """`reelflow run` sends the tiny release's days through reelflow_daily as one range (one
    Spark job per stage): the lake it writes (normalized and quarantined rows, the daily
    partials and user_recent lists, features, sequences and labels), the validation reports and
    the online store's values are those of a DAG run per day."""
    from features.store import online_features

    raw, days = pipeline_run["raw"], pipeline_run["manifest"]["days"]
    home = tmp_path / "daily"
    env = {**os.environ, "REELFLOW_HOME": str(home), "REELFLOW_RUN__RANGE_DAYS": "1"}
    run = ("run", "--dataset", "kuairec", "--raw", str(raw.parent), "--skip-train", "--json")
    daily = reelflow_cli(*run, env=env, timeout=1500)
    assert daily.returncode == 0, daily.stderr[-3000:]
    assert f"{len(days)} days in daily runs of up to 1 days" in daily.stderr
    ranged = pipeline_run["home"] / "lake"
    # What the daily stages write (the range's home also trained and exported: candidates).
    tables = [
        f"{kind}/{name}"
        for kind in ("normalized", "quarantine", "features", "aggregates")
        for name in sorted(
            p.name for p in (home / "lake" / kind).iterdir() if not p.name.startswith("_")
        )
    ]
    assert {"features/labels", "aggregates/user_recent", "normalized/videos"} <= set(tables)
    for table in tables:
        a, b = lake_rows(ranged, ranged / table), lake_rows(home, home / "lake" / table)
        assert a == b, table
    for table in ("normalized/interactions", "features/user_features", "aggregates/user_recent"):
        assert set(lake_rows(ranged, ranged / table)) >= {f"ds={d}" for d in days}, table
    for ds in days:
        for table in ("interactions", "videos"):
            reports = [
                json.loads((root / "validation" / table / f"ds={ds}.json").read_text())
                for root in (ranged, home / "lake")
            ]
            assert all(r["success"] for r in reports), (table, ds)
    from reelflow.paths import Paths

    users = sorted(set(pd.read_parquet(lake.normalized("interactions"))["user_id"]))
    refs = [
        "user_features:views_28d",
        "user_features:mean_watch_ratio_28d",
        "user_features:category_affinity",
        "user_sequences:seq_video_ids",
    ]
    rows = [{"user_id": int(u)} for u in users]
    want = online_features(rows, refs, Paths(home))
    got = online_features(rows, refs, lake)
    for name in ("views_28d", "category_affinity", "seq_video_ids"):
        assert got[name] == want[name], name
    assert all(
        (x is None and y is None) or abs(x - y) <= 1e-6
        for x, y in zip(got["mean_watch_ratio_28d"], want["mean_watch_ratio_28d"], strict=True)
    )


def test_run_history_is_what_a_scheduler_would_record(pipeline_run):
    """`reelflow run` goes through `airflow dags test`, which records a test run (started at
    the 2020 logical date, interval [D-1, D), user dag_test); the UI must show the run of days
    D..E (one range: the tiny release's days) over [D, E+1) with its real start and end."""
    import sqlite3
    from datetime import date, datetime, timedelta

    db = sqlite3.connect(pipeline_run["home"] / "airflow" / "airflow.db")
    rows = db.execute(
        "SELECT logical_date, data_interval_start, data_interval_end, start_date, end_date, "
        "triggering_user_name FROM dag_run WHERE dag_id = 'reelflow_daily'"
    ).fetchall()
    days = pipeline_run["manifest"]["days"]
    by_day = {row[0][:10]: row for row in rows}
    assert days[0] in by_day and not set(days[1:]) & set(by_day)  # one run: a range
    _, start, end, started, ended, user = by_day[days[0]]
    after = (date.fromisoformat(days[-1]) + timedelta(days=1)).isoformat()
    assert (start[:10], end[:10]) == (days[0], after)
    seconds = (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()
    assert 0 < seconds < 3600, (started, ended)  # not the years since the logical date
    assert user.startswith("reelflow run (")


def test_a_manual_run_for_a_day_without_data_fails_at_once_saying_so(pipeline_run, lake):
    """The UI's Trigger form defaults to today, a day a release has no rows for: the run fails
    in `land`, naming the days the release holds, instead of succeeding on nothing."""
    from reelflow.airflow_runner import run_dags

    days = pipeline_run["manifest"]["days"]
    with pytest.raises(RuntimeError) as failed:
        run_dags(lake, [("reelflow_daily", "2021-03-01", None)], "day_without_data")
    message = str(failed.value)
    assert "has no interactions on 2021-03-01" in message, message[-2000:]
    assert f"it holds {days[0]} .. {days[-1]}" in message
    assert not (lake.normalized("interactions") / "ds=2021-03-01").exists()


# -- the UIs, in a real browser (reelflow ui, Chromium driven by Playwright) ------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def ui_stack(pipeline_run, lake, monkeypatch_module):
    """`reelflow ui` on this module's home (free ports), stopped at the end."""
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("REELFLOW_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from reelflow import ui

    for name in ("AIRFLOW", "MLFLOW", "FEAST"):
        monkeypatch_module.setenv(f"REELFLOW_{name}_PORT", str(free_port()))
    report = ui.start(lake)
    yield report
    ui.stop(lake)


@pytest.fixture(scope="module")
def browser(ui_stack):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _screenshots(tmp_path_factory):
    """REELFLOW_SCREENSHOTS=docs/ui writes the README's pictures; else a temporary folder."""
    from pathlib import Path

    folder = os.environ.get("REELFLOW_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screens")


def _airflow_page(browser, ui_stack):
    """A browser page logged in to Airflow with the login `reelflow ui` printed."""
    base = ui_stack["services"]["airflow-api-server"]["url"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(base + "/")
    page.get_by_label("Username").fill(ui_stack["airflow_login"]["user"])
    page.get_by_label("Password").fill(ui_stack["airflow_login"]["password"])
    page.get_by_role("button", name="Sign in").click()
    # The login page's own URL is under base too: wait until the sign-in redirect has left
    # /auth/ and the home page has loaded, or a goto right after races it (net::ERR_ABORTED).
    page.wait_for_url(lambda url: url.startswith(base) and "/auth/" not in url)
    page.wait_for_load_state("load")
    return page, base


def _stack_logs(home, lines: int = 40) -> str:
    """The last lines of each `reelflow ui` service's log under the folder HOME, for a
    failure's message: CI keeps nothing else of them."""
    folder = home / "ui"
    tails = []
    for log in sorted(folder.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"--- {log.name}\n" + "\n".join(line[:300] for line in tail))
    return "\n".join(tails) or f"no service logs in {folder}"


def _api(base: str, path: str, login: dict, patch: dict | None = None) -> dict:
    """GET (or, with `patch`, PATCH) an Airflow REST path as the stack's login."""
    import urllib.request

    request = urllib.request.Request(
        base + "/auth/token",
        data=json.dumps({"username": login["user"], "password": login["password"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.loads(response.read())["access_token"]
    request = urllib.request.Request(
        base + path,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        data=None if patch is None else json.dumps(patch).encode(),
        method="GET" if patch is None else "PATCH",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_ui_backfill_from_the_form_with_default_params(
    pipeline_run, lake, ui_stack, browser, tmp_path_factory
):
    """Log in, open reelflow_daily, create a 2-day backfill from the form leaving the params
    at their defaults, over the first load's range run and a day inside it: the range's run is
    run again over its whole range (its interval; the form replaced its conf), the day gets a
    run over [D, D+1), both succeed, and the grid shows real durations."""
    import time
    from datetime import date, datetime, timedelta

    shots = _screenshots(tmp_path_factory)
    first, second = pipeline_run["manifest"]["days"][:2]
    page, base = _airflow_page(browser, ui_stack)
    login = ui_stack["airflow_login"]
    page.goto(base + "/dags/reelflow_daily")
    page.get_by_role("button", name="Trigger").wait_for()
    page.screenshot(path=shots / "airflow_daily.png")
    # The grid after `reelflow run`: no run longer than the wall time of the whole run.
    runs = _api(base, "/api/v2/dags/reelflow_daily/dagRuns?limit=100", login)["dag_runs"]
    for run in runs:
        took = datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])
        assert timedelta(0) < took < timedelta(hours=1), run
    # `reelflow run` loaded the release in one range: one run over every day, none for SECOND.
    before = {r["logical_date"][:10]: r for r in runs}
    days = pipeline_run["manifest"]["days"]
    after_last = (date.fromisoformat(days[-1]) + timedelta(days=1)).isoformat()
    ranged = (before[first]["data_interval_start"][:10], before[first]["data_interval_end"][:10])
    assert ranged == (first, after_last) and second not in before, before

    # Unpaused first, as with its toggle: else the form sends the unpause and the backfill as
    # two requests at once, and on the embedded SQLite DB the second can fail (503) on the
    # first's write lock while the UI retries it (seen in every run; in CI it left a broken
    # backfill behind).
    _api(base, "/api/v2/dags/reelflow_daily", login, patch={"is_paused": False})
    page.reload()
    page.get_by_role("button", name="Trigger").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Backfill", exact=True).click()
    for label, day in (("From", first), ("To", second)):
        dialog.get_by_role("group").filter(has_text=label).get_by_test_id("datetime-input").click()
        picker = page.locator("[data-part='content'][data-state='open']").last
        picker.get_by_placeholder("YYYY/MM/DD").fill(day.replace("-", "/"))
        picker.get_by_placeholder("HH:mm").fill("00:00")
        dialog.get_by_text("Date Range").click()
    dialog.get_by_text("All Runs", exact=True).click()  # the days already ran: run them again
    page.screenshot(path=shots / "airflow_backfill_form.png")
    clicked = time.time()
    dialog.get_by_role("button", name="Run Backfill").click()
    try:
        page.get_by_text("Backfill generated").first.wait_for()
    except Exception as error:
        page.screenshot(path=shots / "airflow_backfill_failed.png")
        raise AssertionError(f"no backfill made:\n{_stack_logs(lake.home)}") from error

    deadline = time.monotonic() + 900
    while True:
        backfills = _api(base, "/api/v2/backfills?dag_id=reelflow_daily", login)["backfills"]
        if backfills and backfills[-1]["completed_at"]:
            break
        assert time.monotonic() < deadline, backfills
        time.sleep(10)
    runs = {
        r["logical_date"][:10]: r
        for r in _api(base, "/api/v2/dags/reelflow_daily/dagRuns?limit=100", login)["dag_runs"]
    }
    # The form unpaused reelflow_daily: `reelflow ui` ended its schedule at the release's last
    # day, so the scheduler made no run for today's interval (it could only fail).
    assert not [r for r in runs.values() if r["run_type"] == "scheduled"], runs
    for day in (first, second):
        run = runs[day]
        assert run["state"] == "success" and run["run_type"] == "backfill", run
        after = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        interval = ranged if day == first else (day, after)
        assert (run["data_interval_start"][:10], run["data_interval_end"][:10]) == interval
    # The range's run covered its range again, in one job per stage, recorded on its first day.
    normalized = pipeline_run["home"] / "runs" / f"ds={first}" / "normalize.json"
    assert normalized.stat().st_mtime > clicked
    assert json.loads(normalized.read_text())["covers_days"] == len(days)
    page.goto(base + "/dags/reelflow_daily/runs")
    page.get_by_role("button", name="Trigger").wait_for()
    page.wait_for_timeout(3000)  # the runs table fills in after the page's frame
    page.screenshot(path=shots / "airflow_runs.png")


def test_reelflow_run_goes_through_the_running_scheduler(pipeline_run, ui_stack):
    """With `reelflow ui` up, `reelflow run` has the scheduler make its runs (a backfill):
    the run history shows them as the scheduler's, over [D, D+1)."""
    from datetime import date, timedelta

    day = pipeline_run["manifest"]["days"][-1]
    env = {**pipeline_run["env"], "REELFLOW_AIRFLOW_PORT": os.environ["REELFLOW_AIRFLOW_PORT"]}
    result = reelflow_cli(
        "run", "--dataset", "kuairec", "--raw", str(pipeline_run["raw"].parent),
        "--start", day, "--end", day, "--skip-train", "--json", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "scheduler running: backfill of reelflow_daily" in result.stderr, (
        result.stderr[-2000:] + "\n" + _stack_logs(pipeline_run["home"])
    )
    assert json.loads(result.stdout)["days"][day]["validation"] == "passed"
    base, login = ui_stack["services"]["airflow-api-server"]["url"], ui_stack["airflow_login"]
    runs = _api(base, "/api/v2/dags/reelflow_daily/dagRuns?limit=100", login)["dag_runs"]
    latest = max((r for r in runs if r["logical_date"][:10] == day), key=lambda r: r["start_date"])
    after = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    assert latest["run_type"] == "backfill" and latest["state"] == "success", latest
    assert (latest["data_interval_start"][:10], latest["data_interval_end"][:10]) == (day, after)


def test_ui_champion_moved_in_mlflow_is_exported_and_recorded(
    pipeline_run, lake, ui_stack, browser, tmp_path_factory
):
    """Set @champion of reelflow-ranker to another version in the MLflow UI: the next export
    uses it and names it as set by hand, and the version's gate_history records it."""
    from mlflow import MlflowClient

    from models.tracking import setup_tracking

    shots = _screenshots(tmp_path_factory)
    setup_tracking(lake)
    client, name = MlflowClient(), "reelflow-ranker"
    env = pipeline_run["env"]
    while len(client.search_model_versions(f"name='{name}'")) < 2:
        assert reelflow_cli("train", "--model", "ranker", env=env).returncode in (0, 2)
    champion = int(client.get_model_version_by_alias(name, "champion").version)
    other = max(
        int(v.version)
        for v in client.search_model_versions(f"name='{name}'")
        if int(v.version) != champion
    )

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(ui_stack["services"]["mlflow"]["url"] + f"/#/models/{name}")
    page.get_by_role("link", name=f"Version {other}", exact=True).wait_for()
    # MLflow's first visit opens its assistant panel over the page: close it as a user would.
    closers = page.get_by_role("button", name="Close")
    if closers.count():
        closers.first.click()
    row = page.get_by_role("row").filter(
        has=page.get_by_role("link", name=f"Version {other}", exact=True)
    )
    row.get_by_role("button", name="Add").click()
    dialog = page.get_by_role("dialog")
    aliases = dialog.get_by_role("combobox")
    aliases.click()
    aliases.fill("champion")
    aliases.press("Enter")
    page.screenshot(path=shots / "mlflow_alias.png")
    dialog.get_by_role("button", name="Save aliases").click()
    dialog.wait_for(state="hidden")
    assert int(client.get_model_version_by_alias(name, "champion").version) == other

    ds = pipeline_run["manifest"]["days"][-1]
    result = reelflow_cli("export", "--ds", ds, "--json", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads(result.stdout)
    ranker = manifest["models"][name]
    assert ranker["version"] == other and ranker["champion_set"]["set_by"] == "manual"
    history = client.get_model_version(name, str(other)).tags["gate_history"].splitlines()
    assert " manual " in history[-1]
    page.goto(ui_stack["services"]["mlflow"]["url"] + f"/#/models/{name}/versions/{other}")
    page.get_by_text("gate_history").first.wait_for()
    page.screenshot(path=shots / "mlflow_version.png")
