"""Adding a model is one new file plus one registry line (README.md, "Adding a model"): the
tiny model of tests/recency_pool.py, registered here with its one `MODELS` line and nothing
else, goes through the one training stack: train -> MLflow -> `reelflow-recency_pool` -> the
promotion gate -> the export's index and candidate lists, and `reelflow train` offers it.

The lake is test_sequence_run.py's (users walking the catalog, so the gate has something to
promote), plus the last day's catalog and the feature columns the export reads.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.registry import MODELS, SEQUENCE_DATA, ModelSpec
from reelflow.config import CandidateConfig, Config, SequenceConfig
from tests.test_sequence_run import DAYS, lake_home  # noqa: F401 (the walks' lake: a fixture)

NAME = "recency_pool"
# The one registry line, as models/registry.py would hold it.
SPEC = ModelSpec(
    "tests.recency_pool:RecencyPool",
    SEQUENCE_DATA,
    None,
    "Recency-weighted pooling of every user's sequence through the day, leave-one-out, gated.",
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs torch on one thread (see conftest)."""


@pytest.fixture(scope="module")
def registered():
    mp = pytest.MonkeyPatch()
    mp.setitem(MODELS, NAME, SPEC)
    yield NAME
    mp.undo()


@pytest.fixture(scope="module")
def export_day(lake_home):  # noqa: F811 (the fixture imported above)
    """The last day's catalog and user and video features, as far as the export reads them:
    every video in a category, none of them new (no cold-start cohort)."""
    from lake.partitions import partition
    from lake.schema import USER_FEATURES, VIDEO_FEATURES, VIDEOS
    from reelflow.paths import Paths

    paths, ds = Paths.from_env(), DAYS[-1]
    walks = pd.read_parquet(paths.normalized("interactions"))
    videos = np.sort(walks["video_id"].unique()).astype(np.int64)
    users = np.sort(walks["user_id"].unique()).astype(np.int64)
    views = walks["video_id"].value_counts().reindex(videos, fill_value=0).to_numpy()
    tables = {
        paths.normalized(VIDEOS): pd.DataFrame({"video_id": videos}),
        paths.features(VIDEO_FEATURES): pd.DataFrame(
            {
                "video_id": videos,
                "primary_category": (videos % 5).astype(np.int64),
                "trend_velocity": 0.0,
                "normalized_performance": 1.0,
                "exposures_7d": views.astype(np.int64),
                "age_hours": 1000.0,
            }
        ),
        paths.features(USER_FEATURES): pd.DataFrame(
            {"user_id": users, "category_affinity": [[0.2] * 5 + [0.0] * 26] * len(users)}
        ),
    }
    for table, frame in tables.items():
        folder = partition(table, ds)
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-0.parquet", index=False)
    return ds


def test_a_registered_model_trains_registers_gates_and_exports(registered, export_day):
    import faiss
    from mlflow import MlflowClient

    from jobs.export import export_candidates
    from models.bundle import load_version
    from models.training import train_and_register
    from reelflow.cli import build_parser
    from reelflow.paths import Paths

    config = Config(sequence=SequenceConfig(epochs=5, batch_size=32, patience=5))
    summary = train_and_register(NAME, export_day, config=config)
    assert summary["model"] == "reelflow-recency_pool" and summary["promoted"]
    assert summary["metrics"]["val_ndcg_at_10"] > summary["popularity"]["popularity_val_ndcg_at_10"]
    client = MlflowClient()
    params = client.get_run(summary["run_id"]).data.params
    assert params["model"] == NAME and params["model.decay"] == "0.5"
    assert params["data_source"].startswith("lake/normalized/interactions")
    version = client.get_model_version("reelflow-recency_pool", str(summary["version"]))
    assert version.tags["gate"] == "promoted"
    # The registered version reads back as the model it is, through the one loader.
    bundle = load_version(NAME, summary["version"])
    assert type(bundle.model).__name__ == "RecencyPool"

    # The export takes it as its embedding model: its item vectors are the index.
    exported = dataclasses.replace(CandidateConfig(), embedding_model=NAME)
    manifest = export_candidates(export_day, config=Config(candidates=exported))
    assert manifest["models"]["embeddings"]["name"] == "reelflow-recency_pool"
    latest = Paths.from_env().exports / "latest"
    index = faiss.read_index(str(latest / "index.faiss"))
    video_ids = np.load(latest / "video_ids.npy")
    stored = index.reconstruct_n(0, index.ntotal)
    np.testing.assert_allclose(stored, bundle.item_vectors(video_ids)[1], rtol=1e-5, atol=1e-6)
    assert manifest["candidates"]["users"] == manifest["candidates"]["active_users"] > 0

    # The command line offers it: its choices are MODELS.
    assert build_parser().parse_args(["train", "--model", NAME]).model == NAME


def test_a_champion_moved_by_hand_is_found_recorded_and_exported(registered, export_day):
    """The MLflow UI's alias edit is the registry API's `set_registered_model_alias`: after it,
    the export serves the version set by hand, names it so in its manifest, and the registry
    records it (`gate=manual`, once) and the version it replaced (`demoted`)."""
    from mlflow import MlflowClient

    from jobs.export import export_candidates
    from models.gate import champion_origin
    from models.training import train_and_register

    client, name = MlflowClient(), "reelflow-recency_pool"
    config = Config(sequence=SequenceConfig(epochs=5, batch_size=32, patience=5))
    while len(client.search_model_versions(f"name='{name}'")) < 2:
        train_and_register(NAME, export_day, config=config)
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    # Every model and version says what it is, its data and the gate's decision.
    assert "Recency-weighted pooling" in client.get_registered_model(name).description
    for v in versions:
        text = client.get_model_version(name, str(v)).description
        assert f"Trained on every view through {export_day}" in text, text
        assert "against popularity" in text and "Gate: " in text, text

    gated = champion_origin(name)
    assert gated["set_by"] in ("promoted", "forced") and not gated["detected"]
    by_hand = next(v for v in versions if v != gated["version"])
    client.set_registered_model_alias(name, "champion", str(by_hand))

    exported = dataclasses.replace(CandidateConfig(), embedding_model=NAME)
    manifest = export_candidates(export_day, config=Config(candidates=exported))
    served = manifest["models"]["embeddings"]
    assert served["version"] == by_hand
    assert served["champion_set"]["set_by"] == "manual" and served["champion_set"]["detected"]
    tags = client.get_model_version(name, str(by_hand)).tags
    assert tags["gate"] == "manual" and "outside the gate" in tags["gate_reason"]
    assert tags["gate_history"].splitlines()[-1].split(" ")[1] == "manual"
    replaced = client.get_model_version(name, str(gated["version"])).tags
    assert replaced["gate"] == "demoted"
    assert f"moved to v{by_hand}" in replaced["gate_history"].splitlines()[-1]
    # Recorded once: found again, it is the registry's record, not a new detection.
    again = champion_origin(name)
    assert again == {**served["champion_set"], "detected": False}
    history = client.get_model_version(name, str(by_hand)).tags["gate_history"]
    assert sum(" manual " in line for line in history.splitlines()) == 1


def test_tracking_follows_the_home_not_the_uri_mlflow_left_in_the_environment(
    tmp_path, monkeypatch
):
    """mlflow.set_tracking_uri writes os.environ["MLFLOW_TRACKING_URI"]: read back, the first
    home's SQLite store looked like a server the user named and pinned every later home of
    the process to it. A URI the user did set still wins."""
    from models.tracking import server_uri, setup_tracking
    from reelflow.paths import Paths

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second = (Paths(home=tmp_path / name) for name in ("a", "b"))
    assert setup_tracking(first) == f"sqlite:///{first.mlflow_db}"
    assert server_uri() is None  # what MLflow wrote back is not the user's
    assert setup_tracking(second) == f"sqlite:///{second.mlflow_db}"
    # The environment put back as it was before `second` (a monkeypatch's teardown): the first
    # home's URI is still not a server, and a third home gets its own store.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{first.mlflow_db}")
    assert server_uri() is None
    third = Paths(home=tmp_path / "c")
    assert setup_tracking(third) == f"sqlite:///{third.mlflow_db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert setup_tracking(second) == "http://127.0.0.1:5999"
