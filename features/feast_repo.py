"""This home's Feast feature store, opened on the declarations in `feature_repo/`.

Which store: the embedded default (`feature_repo/feature_store.yaml`: SQLite online, file
registry) unless FEAST_FS_YAML_FILE_PATH names another config, e.g. `feature_store.redis.yaml`
(Redis online, SQL registry on PostgreSQL); Feast's SDK and CLI both read that variable.

What is done with the store lives above this module: `features/store.py` (apply, materialize a
day, training sets, online lookups) and `features/pit_join.py` (the point-in-time join in
Spark) both open it here.
"""

from __future__ import annotations

from reelflow.paths import FEATURE_REPO, Paths


def feature_store(paths: Paths | None = None):
    from feast import FeatureStore

    (paths or Paths.from_env()).feast.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(FEATURE_REPO))
