"""Operations on the Feast store: apply, materialize a day, training sets, online lookups.

The declarations live in `feature_repo/`; this module only drives them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from features.compute import feature_time
from reelflow.paths import FEATURE_REPO, Paths


def feature_store(paths: Paths | None = None):
    from feast import FeatureStore

    (paths or Paths.from_env()).feast.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(FEATURE_REPO))


def _definitions_digest(paths: Paths) -> str:
    digest = hashlib.sha256(str(paths.home).encode())
    for path in sorted(FEATURE_REPO.glob("*.py")) + sorted(FEATURE_REPO.glob("*.yaml")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def apply_if_changed(paths: Paths | None = None) -> dict[str, Any]:
    """`feast apply` when the repo's definitions changed since the last apply of this home.

    Daily runs (and backfills running side by side) all call this; a file lock makes one of
    them apply while the others wait and then find nothing to do.
    """
    paths = paths or Paths.from_env()
    paths.feast.mkdir(parents=True, exist_ok=True)
    marker = paths.feast / "applied.sha256"
    with open(paths.feast / "apply.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = _definitions_digest(paths)
        if marker.exists() and marker.read_text() == digest:
            return {"applied": False, "digest": digest}
        feast_cli = Path(sys.executable).parent / "feast"
        result = subprocess.run(
            [str(feast_cli), "--chdir", str(FEATURE_REPO), "apply"],
            capture_output=True,
            text=True,
            env={**os.environ, "REELFLOW_HOME": str(paths.home)},
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"feast apply failed in {FEATURE_REPO}:\n{result.stdout}\n{result.stderr}"
            )
        marker.write_text(digest)
        return {"applied": True, "digest": digest}


def materialize_day(ds: str, views: list[str], paths: Paths | None = None) -> dict[str, Any]:
    """Loads exactly the features computed from day `ds` (stamped `feature_time(ds)`)."""
    store = feature_store(paths)
    start = feature_time(ds)
    end = start + timedelta(days=1)
    store.materialize(start_date=start, end_date=end, feature_views=views)
    return {"ds": ds, "views": views, "start": start.isoformat(), "end": end.isoformat()}


def historical_features(
    entity_df: pd.DataFrame, features: str | list[str], paths: Paths | None = None
) -> pd.DataFrame:
    """Point-in-time join: each entity row gets the feature values as of its event_timestamp.

    `features` is a feature service name or a list of `view:feature` references.
    """
    store = feature_store(paths)
    refs = store.get_feature_service(features) if isinstance(features, str) else features
    return store.get_historical_features(entity_df=entity_df, features=refs).to_df()


def online_features(
    entity_rows: list[dict[str, Any]], features: list[str], paths: Paths | None = None
) -> dict[str, list]:
    store = feature_store(paths)
    return store.get_online_features(features=features, entity_rows=entity_rows).to_dict()
