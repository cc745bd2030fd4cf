"""Where reelflow keeps its state: everything lives under one home directory.

The home is resolved once to an absolute path so that the Airflow scheduler, its workers
and `spark-submit` all agree on it, and so that a demo is removed with one `rm -rf`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
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


# The quarantine partition of rows whose time cannot be read (features.schema.UNDATED; named
# here too because this ground-floor module imports nothing above it).
UNDATED = "undated"
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def check_day(ds: object, what: str = "ds") -> str:
    """DS itself when it is a real UTC calendar day written YYYY-MM-DD; else a ValueError that
    names the value. Every day that reaches a path or a job goes through here."""
    if isinstance(ds, str) and _DAY.fullmatch(ds):
        try:
            date.fromisoformat(ds)
            return ds
        except ValueError:
            pass
    raise ValueError(f"{what} {ds!r} is not a UTC day: expected a real date YYYY-MM-DD")


def partition(table_dir: Path, ds: str) -> Path:
    """`table_dir/ds=DS`, the only way a day partition's path is made: DS must be a real day
    YYYY-MM-DD (or the undated quarantine partition), so no value can leave the table."""
    if ds != UNDATED:
        check_day(ds)
    return Path(table_dir) / f"ds={ds}"
