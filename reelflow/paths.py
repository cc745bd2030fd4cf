"""Where reelflow keeps its state: everything lives under one home directory.

The home is resolved once to an absolute path so that the Airflow scheduler, its workers
and `spark-submit` all agree on it, and so that a demo is removed with one `rm -rf`.
The per-day folders inside them (`ds=…`) are made by `lake.partitions`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FEATURE_REPO = REPO_ROOT / "feature_repo"
DAGS_FOLDER = REPO_ROOT / "dags"


def reelflow_home() -> Path:
    """`$REELFLOW_HOME`, default `./var`, made absolute and exported for child processes."""
    home = Path(os.environ.get("REELFLOW_HOME", "var")).expanduser().resolve()
    os.environ["REELFLOW_HOME"] = str(home)
    return home


@dataclass(frozen=True)
class Paths:
    """The folders of one reelflow home."""

    home: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(reelflow_home())

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def landing(self) -> Path:
        """Parsed release files, by UTC day: what each daily run reads."""
        return self.lake / "raw"

    def normalized(self, table: str) -> Path:
        return self.lake / "normalized" / table

    def quarantine(self, table: str) -> Path:
        return self.lake / "quarantine" / table

    def features(self, view: str) -> Path:
        return self.lake / "features" / view

    def validation(self, table: str) -> Path:
        return self.lake / "validation" / table

    @property
    def candidates(self) -> Path:
        return self.lake / "candidates"

    @property
    def exports(self) -> Path:
        return self.home / "exports"

    @property
    def feast(self) -> Path:
        return self.home / "feast"

    @property
    def airflow(self) -> Path:
        return self.home / "airflow"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def runs(self) -> Path:
        """Per-run summaries (JSON) that `reelflow run` collects into its report."""
        return self.home / "runs"

    @property
    def state_file(self) -> Path:
        """Which dataset and raw folder this home holds (one home holds one dataset)."""
        return self.home / "reelflow_state.json"
