"""MLflow: tracking setup, the ranker as weights + config (never a pickled module), the pyfunc
loader, registration as `reelflow-<model>` and the promotion gate that moves `@champion`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.ranker import MultiObjectiveRanker, RankerModelConfig, score_matrix
from models.ranker_data import FeatureScaler, Vocabulary, encode
from reelflow.paths import Paths

CHAMPION = "champion"
RANKER = "reelflow-ranker"


def setup_tracking(paths: Paths | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set (a server), else SQLite under the home."""
    import mlflow

    paths = paths or Paths.from_env()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.mlflow_db}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment(name: str, paths: Paths) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None if os.environ.get("MLFLOW_TRACKING_URI") else paths.mlflow_artifacts.as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


@dataclass
class RankerBundle:
    """Everything needed to score: the model and the id/feature encoders it was trained with."""

    model: MultiObjectiveRanker
    user_vocab: Vocabulary
    video_vocab: Vocabulary
    scaler: FeatureScaler

    def encode(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        return encode(
            frame,
            (self.user_vocab, self.video_vocab),
            self.scaler,
            self.model.config.num_categories,
        )

    @torch.no_grad()
    def score_rows(self, rows: pd.DataFrame) -> np.ndarray:
        """Scores (user, video) rows carrying Feast full feature names (`user_features__x`);
        the fatigue penalty needs `user_features__recent_category_share` (absent: none)."""
        batch = {}
        for view, id_col in (("user_features", "user_id"), ("video_features", "video_id")):
            part = rows[[id_col]].copy()
            for column in rows.columns:
                if column.startswith(f"{view}__"):
                    part[column.split("__", 1)[1]] = rows[column].to_numpy()
            batch.update(self.encode(part))
        return self.model.score_batch(batch).numpy()

    def score_all(self, user_frame: pd.DataFrame, video_frame: pd.DataFrame) -> np.ndarray:
        return score_matrix(self.model, self.encode(user_frame), self.encode(video_frame)).numpy()

    @torch.no_grad()
    def video_vectors(self, video_frame: pd.DataFrame) -> np.ndarray:
        v = self.encode(video_frame)
        self.model.eval()
        return self.model.video_vector(v["video_idx"], v["video_dense"], v["category"]).numpy()

    @torch.no_grad()
    def user_vectors(self, user_frame: pd.DataFrame) -> np.ndarray:
        u = self.encode(user_frame)
        self.model.eval()
        return self.model.user_vector(u["user_idx"], u["user_dense"], u["affinity"]).numpy()

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "weights.pt")
        (folder / "model_config.json").write_text(json.dumps(self.model.config.to_dict(), indent=2))
        np.save(folder / "user_ids.npy", self.user_vocab.ids)
        np.save(folder / "video_ids.npy", self.video_vocab.ids)
        (folder / "scaler.json").write_text(
            json.dumps({"mean": self.scaler.mean, "std": self.scaler.std}, indent=2)
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RankerBundle:
        folder = Path(folder)
        raw = json.loads((folder / "model_config.json").read_text())
        raw["active_heads"] = tuple(raw["active_heads"])
        # A bundle saved before the fatigue penalty existed was evaluated and gated without it:
        # it keeps scoring as it was registered.
        raw.setdefault("fatigue_penalty", 0.0)
        model = MultiObjectiveRanker(RankerModelConfig(**raw))
        model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
        model.eval()
        scaler = json.loads((folder / "scaler.json").read_text())
        return cls(
            model=model,
            user_vocab=Vocabulary(np.load(folder / "user_ids.npy")),
            video_vocab=Vocabulary(np.load(folder / "video_ids.npy")),
            scaler=FeatureScaler(scaler["mean"], scaler["std"]),
        )


try:
    import mlflow.pyfunc

    class RankerPyfunc(mlflow.pyfunc.PythonModel):
        """Scores (user, video) rows that carry the ranker_v1 features; returns the combined score."""

        def load_context(self, context) -> None:
            self.bundle = RankerBundle.load(context.artifacts["ranker"])

        def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
            return self.bundle.score_rows(model_input)
except ImportError:  # pragma: no cover - mlflow is a hard dependency; keeps import errors clear
    RankerPyfunc = None  # type: ignore[assignment,misc]


def log_bundle(bundle: RankerBundle, example: pd.DataFrame) -> None:
    """Logs the bundle as a pyfunc model (weights + config artifacts) into the active run."""
    from mlflow.models import infer_signature

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = bundle.save(Path(tmp) / "ranker")
        mlflow.log_artifacts(str(folder), artifact_path="ranker")
        output = bundle.score_rows(example)
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_ranker.py")),
            artifacts={"ranker": str(folder)},
            signature=infer_signature(example, output),
            input_example=example.head(5),
        )


def load_version(name: str, version: str | int) -> RankerBundle:
    import mlflow
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(name, str(version))
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=mv.run_id, artifact_path="ranker", dst_path=tmp
        )
        return RankerBundle.load(local)


def champion_version(name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def promotion_gate(
    challenger: float, baseline: float, champion: float | None, min_improvement: float
) -> tuple[bool, str]:
    """The challenger must beat the popularity baseline and strictly improve on the champion,
    on the same holdout: challenger > champion and challenger - champion >= min_improvement.
    A tie is no improvement, whatever the margin."""
    if challenger <= baseline:
        return (
            False,
            f"challenger {challenger:.4f} does not beat the popularity baseline {baseline:.4f}",
        )
    if champion is not None and challenger == champion:
        return False, f"challenger {challenger:.4f} ties the champion {champion:.4f}"
    if champion is not None and (challenger < champion or challenger - champion < min_improvement):
        return (
            False,
            f"challenger {challenger:.4f} does not beat the champion {champion:.4f} by "
            f"at least {min_improvement}",
        )
    against = "no champion yet" if champion is None else f"champion {champion:.4f}"
    return True, f"challenger {challenger:.4f} beats baseline {baseline:.4f} and {against}"
