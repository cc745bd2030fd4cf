"""Sequence models in the pipeline: the lake -> train -> MLflow (metrics per epoch, report,
pyfunc with a signature) -> `reelflow-<model>` -> the promotion gate, and `reelflow promote`.

The lake holds `walk_interactions` (users stepping through the catalog, see
test_sequence_models.py) written as normalized day partitions, so the models have an order
to learn and must beat popularity.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from reelflow.config import Config, SequenceConfig
from tests.test_sequence_models import walk_interactions

DAYS = ("2020-07-05", "2020-07-06")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (see conftest)."""


@pytest.fixture(scope="module")
def lake_home(tmp_path_factory):
    """A REELFLOW_HOME whose lake holds two days of walks; MLflow on SQLite inside it."""
    home = tmp_path_factory.mktemp("seq") / "home"
    walks = walk_interactions()
    start = pd.Timestamp(f"{DAYS[0]} 00:00", tz="UTC")
    # 30 steps per user spread over two days, in order.
    walks["event_ts"] = start + pd.to_timedelta(walks["event_ts"] * 90, unit="min")
    walks["ds"] = walks["event_ts"].dt.strftime("%Y-%m-%d")
    for ds, part in walks.groupby("ds"):
        folder = home / "lake" / "normalized" / "interactions" / f"ds={ds}"
        folder.mkdir(parents=True)
        part.drop(columns="ds").to_parquet(folder / "part-0.parquet", index=False)
    # A fully observed block (KuaiRec's small_matrix): 30 users x every video; each user
    # completes the next three videos of their walk and barely watches the rest.
    block = []
    for user in range(30):
        last = int(walks[walks["user_id"] == user]["video_id"].iloc[-1]) - 1000
        following = {(last + (1 + user % 3) * step) % 60 for step in (1, 2, 3)}
        block += [(user, 1000 + v, 1.5 if v in following else 0.3) for v in range(60)]
    folder = home / "lake" / "normalized" / "small_matrix"
    folder.mkdir(parents=True)
    pd.DataFrame(block, columns=["user_id", "video_id", "watch_ratio"]).to_parquet(
        folder / "part-0.parquet", index=False
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("REELFLOW_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield home
    mp.undo()


def champion_of(name: str) -> int:
    from mlflow import MlflowClient

    return int(MlflowClient().get_model_version_by_alias(name, "champion").version)


def config(epochs: int) -> Config:
    return Config(sequence=SequenceConfig(epochs=epochs, batch_size=32, patience=epochs))


@pytest.fixture(scope="module")
def gru_run(lake_home):
    from models.training import train_and_register

    return train_and_register("gru", DAYS[-1], config=config(8))


def test_gru_run_logs_registers_and_becomes_champion(gru_run):
    import mlflow
    from mlflow import MlflowClient

    assert gru_run["model"] == "reelflow-gru" and gru_run["promoted"]
    assert (
        gru_run["metrics"]["test_ndcg_at_10"] > gru_run["popularity"]["popularity_test_ndcg_at_10"]
    )
    client = MlflowClient()
    assert champion_of("reelflow-gru") == gru_run["version"]
    run = client.get_run(gru_run["run_id"])
    for name in ("test_ndcg_at_10", "val_recall_at_20", "popularity_test_mrr_at_10"):
        assert name in run.data.metrics, name
    assert run.data.metrics["stopped_by_time_budget"] == 0.0  # 15 minutes: far from it here
    # Both protocols on both stages, for the model and both baselines, under one naming rule.
    for who in ("", "popularity_", "transition_"):
        for stage in ("val", "test"):
            for protocol in ("", "unmasked_"):
                name = f"{protocol}{who}{stage}_ndcg_at_10"
                assert 0.0 <= run.data.metrics[name] <= 1.0, name
    assert set(gru_run["transition"]) >= {
        "transition_test_ndcg_at_10",
        "unmasked_transition_test_ndcg_at_10",
    }
    # The gate and early stopping keep the masked metric: what the run logged as val_.
    assert gru_run["gate"]["metric"] == "ndcg@10"
    assert gru_run["gate"]["challenger_score"] == pytest.approx(
        run.data.metrics["val_ndcg_at_10"], abs=1e-9
    )
    assert gru_run["gate"]["popularity_score"] == pytest.approx(
        run.data.metrics["popularity_val_ndcg_at_10"], abs=1e-9
    )
    assert run.data.params["data_through_ds"] == DAYS[-1]
    # The unbiased slice: every block video ranked per user, next to popularity.
    assert run.data.metrics["small_matrix_users"] == 30
    assert run.data.metrics["small_matrix_ndcg_at_10"] > (
        run.data.metrics["popularity_small_matrix_ndcg_at_10"] + 0.1
    )
    curve = client.get_metric_history(gru_run["run_id"], "epoch_val_ndcg_at_10")
    assert len(curve) == gru_run["epochs_run"] >= 2
    listed = {f.path for f in client.list_artifacts(gru_run["run_id"], "report")}
    assert listed == {"report/evaluation.json", "report/config.json", "report/learning_curves.png"}
    report = json.loads(
        mlflow.artifacts.load_text(f"runs:/{gru_run['run_id']}/report/evaluation.json")
    )
    assert report["metrics"]["test_ndcg_at_10"] == pytest.approx(
        run.data.metrics["test_ndcg_at_10"]
    )

    # The registered pyfunc: raw video ids in (the user_sequences feature), top-k out.
    model = mlflow.pyfunc.load_model("models:/reelflow-gru@champion")
    names = [c.name for c in model.metadata.get_input_schema().inputs]
    assert names == ["seq_video_ids"]
    walks = walk_interactions()
    history = walks[walks["user_id"] == 1]["video_id"].tolist()[:10]
    out = model.predict(pd.DataFrame({"seq_video_ids": [history]}), params={"k": 5})
    top = out["video_ids"].iloc[0]
    assert len(top) == 5 and not set(top) & set(history)
    # User 1 walks with stride 2: the next video follows from the last one.
    assert 1000 + (history[-1] - 1000 + 2) % 60 in top


def test_worse_challenger_stays_out_and_force_is_recorded(gru_run):
    from mlflow import MlflowClient

    from models.training import promote, train_and_register

    worse = train_and_register("gru", DAYS[-1], config=config(1))
    client = MlflowClient()
    assert not worse["promoted"] and champion_of("reelflow-gru") == gru_run["version"]
    tags = client.get_model_version("reelflow-gru", str(worse["version"])).tags
    assert tags["gate"] == "rejected"
    assert tags["gate_champion_version"] == str(gru_run["version"])
    # The champion was scored now, on the challenger's own validation split.
    assert float(tags["gate_champion_score"]) == pytest.approx(
        gru_run["gate"]["challenger_score"], abs=1e-6
    )
    forced = promote("gru", worse["version"], force=True, config=config(1))
    assert forced["decision"] == "forced"
    assert champion_of("reelflow-gru") == worse["version"]
    back = promote("gru", gru_run["version"], config=config(1))
    assert back["promoted"] and back["champion_score"] < back["challenger_score"]
    # Every decision stays on record, in order.
    history = client.get_model_version("reelflow-gru", str(worse["version"])).tags["gate_history"]
    assert [line.split()[1] for line in history.splitlines()] == ["rejected", "forced"]
    history = client.get_model_version("reelflow-gru", str(gru_run["version"])).tags["gate_history"]
    assert [line.split()[1] for line in history.splitlines()] == ["promoted", "promoted"]


def test_student_distills_the_registered_teacher(lake_home):
    from mlflow import MlflowClient

    from models.training import train_and_register

    sasrec = train_and_register("sasrec", DAYS[-1], config=config(8))
    student = train_and_register(
        "student", DAYS[-1], teacher_version=sasrec["version"], config=config(8)
    )
    assert (
        student["model"] == "reelflow-student" and student["teacher_version"] == sasrec["version"]
    )
    assert student["parameters"] < sasrec["parameters"]
    for result in (sasrec, student):
        assert (
            result["metrics"]["test_ndcg_at_10"]
            > result["popularity"]["popularity_test_ndcg_at_10"]
        )
    params = MlflowClient().get_run(student["run_id"]).data.params
    assert params["teacher_version"] == str(sasrec["version"])


def test_vocabulary_is_shared_and_only_grows(lake_home, gru_run):
    from models.sequence_data import video_vocabulary_path
    from models.vocab import persisted_vocabulary
    from reelflow.paths import Paths

    path = video_vocabulary_path(Paths.from_env())
    before = persisted_vocabulary(path)
    grown = persisted_vocabulary(path, np.array([999_999, int(before.ids[0])]))
    assert len(grown) == len(before) + 1
    assert np.array_equal(grown.ids[: len(before.ids)], before.ids)
    assert np.array_equal(persisted_vocabulary(path).ids, grown.ids)
