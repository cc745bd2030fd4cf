"""Nightly export: FAISS index over the champion ranker's video vectors and a candidate table.

For ds=D (features through D, stamped D+1 00:00):
  exports/ds=D/{index.faiss, video_ids.npy, manifest.json}, published via `exports/latest`
  lake/candidates/ds=D                 user_id, rank, video_id, score, source
  lake/features/user_candidates/ds=D   one row per user (arrays), materialized online

Candidates: ANN top-N by the user vector, already-watched videos removed, the survivors
scored by the ranker's multi-objective score, top K kept. Users without features (no view
in the long window) get the most-viewed videos they have not watched (source `popular`).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from features.compute import USER_FEATURES, feature_time
from features.schema import INTERACTIONS, USERS, VIDEOS
from jobs.commit import staged_partition
from models.ranker_data import read_partitions, user_feature_frame, video_feature_frame
from models.registry import RANKER, RankerBundle, champion_version, load_version, setup_tracking
from reelflow.config import Config, load_config
from reelflow.paths import Paths

USER_CANDIDATES = "user_candidates"


def build_index(vectors: np.ndarray):
    """Exact inner-product index: the ranker's retrieval score is a dot product."""
    import faiss

    faiss.omp_set_num_threads(max(1, os.cpu_count() or 1))
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def watched_by_user(paths: Paths, ds: str, spark=None) -> dict[int, np.ndarray]:
    views = read_partitions(paths.normalized(INTERACTIONS))
    views = views[views["ds"] <= ds]
    return {int(u): np.unique(v.to_numpy()) for u, v in views.groupby("user_id")["video_id"]}


@torch.no_grad()
def rank_candidates(
    bundle: RankerBundle, user_frame: pd.DataFrame, video_frame: pd.DataFrame, cand_pos: np.ndarray
) -> np.ndarray:
    """Multi-objective scores of each user's candidate videos (positions into video_frame)."""
    model = bundle.model
    u = bundle.encode(user_frame)
    v = bundle.encode(video_frame)
    user_vec = model.user_vector(u["user_idx"], u["user_dense"], u["affinity"])
    video_vec = model.video_vector(v["video_idx"], v["video_dense"], v["category"])
    n_users, n_cand = cand_pos.shape
    flat = torch.from_numpy(cand_pos.reshape(-1))
    logits = model.head_logits(
        user_vec.repeat_interleave(n_cand, 0),
        video_vec[flat],
        u["affinity"].repeat_interleave(n_cand, 0),
        v["category"][flat],
        v["video_dense"][flat],
    )
    fatigue = None  # the pyfunc's score: fatigue penalty included where the features have it
    if "recent_share" in u:
        shares = u["recent_share"].repeat_interleave(n_cand, 0)
        fatigue = model.category_share(shares, v["category"][flat]).squeeze(1)
    return model.combined_score(logits, fatigue).view(n_users, n_cand).numpy()


def _write_parquet(frame: pd.DataFrame, table_dir: Path, ds: str) -> None:
    with staged_partition(table_dir, f"ds={ds}") as staging:
        staging.mkdir(parents=True)
        frame.to_parquet(staging / "part-0.parquet", index=False)


def publish(export_root: Path, ds: str) -> None:
    """Points `latest` at ds=D with one atomic rename of a symlink."""
    tmp = export_root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(f"ds={ds}", tmp)
    os.replace(tmp, export_root / "latest")


def export_candidates(
    ds: str, config: Config | None = None, paths: Paths | None = None
) -> dict[str, Any]:
    import faiss

    config = config or load_config()
    paths = paths or Paths.from_env()
    k = config.export.candidates_per_user
    setup_tracking(paths)
    champion = champion_version(RANKER)
    if champion is None:
        raise RuntimeError(f"no '{RANKER}@champion' in the MLflow registry: run training first")
    bundle = load_version(RANKER, champion.version)
    at = feature_time(ds)

    catalog = read_partitions(paths.normalized(VIDEOS), [ds]).sort_values("video_id")
    video_ids = catalog["video_id"].to_numpy(np.int64)
    video_frame = video_feature_frame(video_ids, at, paths)
    active = read_partitions(paths.features(USER_FEATURES), [ds])["user_id"].to_numpy(np.int64)
    all_users = read_partitions(paths.normalized(USERS), [ds])["user_id"].to_numpy(np.int64)
    user_frame = user_feature_frame(np.unique(active), at, paths)
    watched = watched_by_user(paths, ds)

    started = time.perf_counter()
    video_vecs = bundle.video_vectors(video_frame)
    index = build_index(video_vecs)
    build_seconds = time.perf_counter() - started
    user_vecs = bundle.user_vectors(user_frame)
    most_watched = max((len(v) for v in watched.values()), default=0)
    # Enough neighbours that K survive removing everything the user has watched.
    n_search = min(index.ntotal, k + most_watched)
    _, neighbours = index.search(np.ascontiguousarray(user_vecs, dtype=np.float32), n_search)
    scores = rank_candidates(bundle, user_frame, video_frame, neighbours)

    popularity = video_frame["exposures_7d"].fillna(0).to_numpy()
    popular_order = np.argsort(-popularity, kind="stable")
    rows = []
    user_ids = user_frame["user_id"].to_numpy(np.int64)
    for i, user in enumerate(user_ids):
        seen = set(watched.get(int(user), ()))
        keep = [
            (scores[i, j], int(video_ids[p]))
            for j, p in enumerate(neighbours[i])
            if p >= 0 and video_ids[p] not in seen
        ]
        keep.sort(key=lambda t: -t[0])
        rows.extend((int(user), r + 1, vid, float(s), "ann") for r, (s, vid) in enumerate(keep[:k]))
    for user in np.setdiff1d(all_users, user_ids):
        seen = set(watched.get(int(user), ()))
        picks = [p for p in popular_order if video_ids[p] not in seen][:k]
        rows.extend(
            (int(user), r + 1, int(video_ids[p]), float(popularity[p]), "popular")
            for r, p in enumerate(picks)
        )
    candidates = pd.DataFrame(rows, columns=["user_id", "rank", "video_id", "score", "source"])
    _write_parquet(candidates, paths.candidates, ds)

    grouped = candidates.sort_values(["user_id", "rank"]).groupby("user_id")
    online = pd.DataFrame(
        {
            "user_id": grouped["user_id"].first().astype(np.int64),
            "event_timestamp": at,
            "video_ids": grouped["video_id"].apply(lambda s: s.astype(np.int64).tolist()),
            "scores": grouped["score"].apply(lambda s: s.astype(np.float32).tolist()),
            "sources": grouped["source"].apply(list),
            "model_version": int(champion.version),
        }
    ).reset_index(drop=True)
    _write_parquet(online, paths.features(USER_CANDIDATES), ds)

    manifest = {
        "ds": ds,
        "feature_time": at.isoformat(),
        "created_at": datetime.now(UTC).isoformat(),
        "models": {RANKER: {"version": int(champion.version), "run_id": champion.run_id}},
        "index": {
            "type": "IndexFlatIP",
            "dim": int(video_vecs.shape[1]),
            "size": int(index.ntotal),
            "build_seconds": build_seconds,
            "recall_at_10_vs_exact": 1.0,
        },
        "candidates": {
            "users": int(candidates["user_id"].nunique()),
            "rows": len(candidates),
            "per_user": k,
            "by_source": candidates["source"].value_counts().to_dict(),
        },
    }
    with staged_partition(paths.exports, f"ds={ds}") as staging:
        staging.mkdir(parents=True)
        faiss.write_index(index, str(staging / "index.faiss"))
        np.save(staging / "video_ids.npy", video_ids)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    publish(paths.exports, ds)
    return manifest
