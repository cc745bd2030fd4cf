"""A trained model as it is saved, logged, registered and loaded: one format for every model.

    <bundle>/state_dict.pt   the model's weights (loaded with `weights_only=True`, never a pickle)
    <bundle>/config.json     {"name": <MODELS name>, "model": <its dataclass config>,
                              "settings": <what its encoders need besides ids: the scaler>}
    <bundle>/vocab.json      {"users": [...], "videos": [...]}: raw id at position i = index i + 1

Each kind of data (models/registry.py `data`) has its `Bundle` subclass, which adds the encoders
its model reads with (vocabularies, a scaler) and what the pyfunc (`predict`) and the export
(`item_vectors`, `queries`) ask of a model. MLflow keeps a bundle as the run's `bundle/`
artifacts next to a models-from-code pyfunc (models/pyfunc.py); `load_version` reads any
registered version back, those logged before this format too (`ranker/`, `sequence_model/`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from models.interface import Recommender
from models.tracking import registered_name
from models.vocab import Vocabulary

ARTIFACT = "bundle"
# Where versions logged before the one format keep theirs: the ranker's (weights.pt,
# model_config.json, user_ids.npy, video_ids.npy, scaler.json) and the sequence models'
# (state_dict.pt, config.json without settings, vocab.json {"ids": [...]}).
LEGACY_ARTIFACTS = ("ranker", "sequence_model")


@dataclass
class Bundle:
    """A trained model with the encoders its inputs go through (a subclass per kind of data)."""

    name: str  # the model's name in models/registry.py MODELS
    model: Recommender

    # The pyfunc's params (their defaults), part of its signature.
    pyfunc_params: ClassVar[dict[str, Any] | None] = None

    def vocabularies(self) -> dict[str, Vocabulary]:
        """The id vocabularies its encoders map through (vocab.json)."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """What else its encoders need, as JSON (config.json's `settings`)."""
        return {}

    @classmethod
    def restore(
        cls,
        name: str,
        model: Recommender,
        vocabularies: dict[str, Vocabulary],
        settings: dict[str, Any],
    ) -> Bundle:
        raise NotImplementedError

    def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """What the registered pyfunc answers for `frame`."""
        raise NotImplementedError

    def item_vectors(
        self, video_ids: np.ndarray, video_frame: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `video_ids` that have a vector, their vectors): what the export indexes.
        `video_frame`: the catalog's video features, one row per id."""
        raise NotImplementedError

    def queries(self, histories: list, user_frame: pd.DataFrame) -> np.ndarray:
        """(users, d) vectors in `item_vectors`' space: query . vector = the model's score.
        `histories`: each user's recent raw video ids (oldest first); `user_frame`: the same
        users' features, one row each."""
        raise NotImplementedError

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "state_dict.pt")
        spec = {"name": self.name, "model": asdict(self.model.config), "settings": self.settings()}
        (folder / "config.json").write_text(json.dumps(spec, indent=2))
        vocab = {key: v.ids.tolist() for key, v in self.vocabularies().items()}
        (folder / "vocab.json").write_text(json.dumps(vocab))
        return folder

    @staticmethod
    def load(folder: str | Path) -> Bundle:
        """Any saved bundle, as the subclass its model's data kind names."""
        from models.registry import spec

        folder = Path(folder)
        if (folder / "weights.pt").exists():
            name, config, weights, vocabularies, settings = _legacy_ranker(folder)
        else:
            saved = json.loads((folder / "config.json").read_text())
            name, config, weights = saved["name"], saved["model"], folder / "state_dict.pt"
            settings = saved.get("settings", {})
            raw = json.loads((folder / "vocab.json").read_text())
            ids = {"videos": raw["ids"]} if "ids" in raw else raw  # a sequence model's, before
            vocabularies = {key: _vocabulary(values) for key, values in ids.items()}
        model_spec = spec(name)
        model_cls = model_spec.model_class()
        model = model_cls(model_cls.config_from_dict(config))
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        return model_spec.data_class().bundle_class.restore(name, model, vocabularies, settings)


def _vocabulary(ids: list) -> Vocabulary:
    values = np.asarray(ids)
    return Vocabulary(values if values.size else values.astype(np.int64))


def _legacy_ranker(folder: Path):
    settings = {"scaler": json.loads((folder / "scaler.json").read_text())}
    vocabularies = {
        "users": Vocabulary(np.load(folder / "user_ids.npy")),
        "videos": Vocabulary(np.load(folder / "video_ids.npy")),
    }
    config = json.loads((folder / "model_config.json").read_text())
    return "ranker", config, folder / "weights.pt", vocabularies, settings


def log_bundle(bundle: Bundle, example: pd.DataFrame) -> None:
    """Logs the bundle into the active run: its files as `bundle/`, and the pyfunc `model`
    (models/pyfunc.py) with the signature of `example` and of what it answers."""
    import mlflow
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        folder = bundle.save(Path(tmp) / ARTIFACT)
        mlflow.log_artifacts(str(folder), artifact_path=ARTIFACT)
        output = bundle.predict(example, bundle.pyfunc_params)
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc.py")),
            artifacts={ARTIFACT: str(folder)},
            signature=infer_signature(example, output, params=bundle.pyfunc_params),
            input_example=example,
        )


def load_version(name: str, version: int | str) -> Bundle:
    """Version `version` of `reelflow-<name>`, from its run's artifacts."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = client.get_model_version(registered_name(name), str(version)).run_id
    stored = {artifact.path for artifact in client.list_artifacts(run_id)}
    path = next(p for p in (ARTIFACT, *LEGACY_ARTIFACTS) if p in stored)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp)
        return Bundle.load(local)


try:
    import mlflow.pyfunc

    class BundlePyfunc(mlflow.pyfunc.PythonModel):
        """Every registered model's pyfunc: the version's bundle answers (`Bundle.predict`)."""

        def load_context(self, context) -> None:
            self.bundle = Bundle.load(context.artifacts[ARTIFACT])

        def predict(self, context, model_input: pd.DataFrame, params=None):
            return self.bundle.predict(model_input, params)
except ImportError:  # pragma: no cover - mlflow is a hard dependency; keeps import errors clear
    BundlePyfunc = None  # type: ignore[assignment,misc]
