"""Nightly export for day D (features through D, stamped D+1 00:00 UTC): an ANN index of the
video embeddings and each user's candidate list, published only when the index is good enough.

  exports/ds=D/{index.faiss, video_ids.npy, fallback.json, manifest.json}; `exports/latest`
                                       points at the last good one (an atomic symlink swap)
  lake/candidates/ds=D                 user_id, rank, video_id, score, source
  lake/features/user_candidates/ds=D   one row per user (arrays), materialized online
  lake/exposure_plan/ds=D              the cold-start plan (jobs/cold_start.py)

Embeddings come from `@champion` versions only: the item vectors of the model named by
`candidates.embedding_model` (default the student) and each active user's query from their
recent views through it (`Bundle.item_vectors` / `queries`: query . video = the model's
next-video score). Without such a champion the ranker champion's two-tower vectors stand in,
and the manifest says so. Candidate lists: jobs/candidates.py. Users without a view in the active
window get the fallback list (trending, then most viewed), which `reelflow recommend` also
answers for a user the store does not know.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.ann import build_ann_index, mlflow_fields
from jobs.candidates import DayCatalog, build_lists, slots, trending, watched_pairs
from jobs.cold_start import assign_cohorts, plan_exposure
from lake.commit import staged_partition
from lake.partitions import days_back, partition, partition_name
from lake.read import read_interactions, read_partitions
from lake.schema import (
    EXPOSURE_PLAN,
    INTERACTIONS,
    USER_CANDIDATES,
    USER_FEATURES,
    USERS,
    VIDEO_FEATURES,
    VIDEOS,
    feature_time,
)
from models.bundle import Bundle, load_version
from models.gate import champion_origin
from models.registry import spec
from models.tracking import champion_version, experiment, registered_name, setup_tracking
from reelflow.config import Config, load_config
from reelflow.paths import Paths

USERS_PER_CHUNK = 10_000  # candidate lists built for this many users at a time


def _write_parquet(frame: pd.DataFrame, table_dir: Path, ds: str) -> None:
    with staged_partition(table_dir, partition_name(ds)) as staging:
        staging.mkdir(parents=True)
        frame.to_parquet(staging / "part-0.parquet", index=False)


def publish(export_root: Path, ds: str) -> None:
    """Points `latest` at ds=D with one atomic rename of a symlink."""
    tmp = export_root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(partition_name(ds), tmp)
    os.replace(tmp, export_root / "latest")


def embedding_champion(model: str) -> tuple[dict[str, Any], Bundle] | None:
    """(what the manifest records of it, its bundle) of `reelflow-<model>@champion`, the
    embedding model (`candidates.embedding_model`), or None when it has no champion."""
    spec(model)  # a name MODELS does not list fails here, not as "no champion"
    name = registered_name(model)
    champion = champion_version(name)
    if champion is None:
        return None
    info = {
        "name": name,
        "version": int(champion.version),
        "run_id": champion.run_id,
        # By the gate, or by hand (then recorded); of the very version loaded below.
        "champion_set": champion_origin(name, champion),
    }
    return info, load_version(model, champion.version)


def recent_histories(views: pd.DataFrame, user_ids: np.ndarray, n: int) -> list[np.ndarray]:
    """Each user's last n video ids, oldest first (views sorted by time)."""
    last = views.groupby("user_id").tail(n).groupby("user_id")["video_id"].apply(np.asarray)
    return [last.get(int(u), np.zeros(0, dtype=np.int64)) for u in user_ids]


def retrieval_scorer(queries: np.ndarray, vectors: np.ndarray, in_index: np.ndarray, n: int):
    """score(rows, positions) -> query . video vector; a video without a vector scores -inf."""
    row_of = np.full(n, -1, dtype=np.int64)
    row_of[in_index] = np.arange(len(in_index))

    def score(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        at = row_of[positions]
        out = np.einsum("ij,ij->i", queries[rows], vectors[np.maximum(at, 0)])
        return np.where(at >= 0, out, -np.inf)

    return score


def _previous_plan(paths: Paths, ds: str) -> pd.DataFrame | None:
    day_before = (date.fromisoformat(ds) - timedelta(days=1)).isoformat()
    part = partition(paths.lake / EXPOSURE_PLAN, day_before)
    return pd.read_parquet(part) if part.exists() else None


def require_inputs(paths: Paths, ds: str) -> None:
    """Refuses, naming the day, the folder and the step to run, an export of a day whose
    features or catalog are missing or empty (checked before any model or index is built)."""
    import pyarrow.dataset as pads

    needs = [
        (paths.features(USER_FEATURES), "user features", f"reelflow features --ds {ds}"),
        (paths.features(VIDEO_FEATURES), "video features", f"reelflow features --ds {ds}"),
        (paths.normalized(VIDEOS), "normalized videos", f"reelflow normalize ... --ds {ds}"),
    ]
    for table, what, step in needs:
        part = partition(table, ds)
        if not part.is_dir():
            raise FileNotFoundError(
                f"no {what} for {ds} under {part}; run `{step}` for that day first"
            )
        if pads.dataset(str(part), format="parquet").count_rows() == 0:
            raise ValueError(f"the {what} for {ds} under {part} hold no row; nothing to export")


def export_candidates(
    ds: str, config: Config | None = None, paths: Paths | None = None
) -> dict[str, Any]:
    config = config or load_config()
    paths = paths or Paths.from_env()
    require_inputs(paths, ds)
    cc, k = config.candidates, config.export.candidates_per_user
    setup_tracking(paths)
    ranker_name = registered_name("ranker")
    champion = champion_version(ranker_name)
    ranker = None if champion is None else load_version("ranker", champion.version)
    # By the gate, or by hand (then recorded); of the very version loaded above.
    ranker_set = None if champion is None else champion_origin(ranker_name, champion)

    videos = read_partitions(paths.normalized(VIDEOS), [ds]).sort_values("video_id")
    video_ids = videos["video_id"].to_numpy(np.int64)
    video_frame = (
        read_partitions(paths.features(VIDEO_FEATURES), [ds])
        .set_index("video_id")
        .reindex(video_ids)
        .rename_axis("video_id")
        .reset_index()
    )
    catalog = DayCatalog(
        video_ids=video_ids,
        categories=pd.to_numeric(video_frame["primary_category"], errors="coerce")
        .fillna(-1)
        .to_numpy(np.int64),
        trend_velocity=video_frame["trend_velocity"].to_numpy(np.float64, na_value=np.nan),
        performance=video_frame["normalized_performance"].to_numpy(np.float64, na_value=np.nan),
        exposures_7d=video_frame["exposures_7d"].fillna(0).to_numpy(np.float64),
    )
    views = read_partitions(paths.normalized(INTERACTIONS), days_back(ds, cc.active_days))
    views = views[views["video_id"].notna()].sort_values(["event_ts", "video_id"], kind="stable")
    active = np.unique(views["user_id"].to_numpy(np.int64))
    user_frame = (
        read_partitions(paths.features(USER_FEATURES), [ds])
        .set_index("user_id")
        .reindex(active)
        .rename_axis("user_id")
        .reset_index()
    )

    # Watched: every view through D, not only the active window.
    seen = read_interactions(paths, ds, columns=("user_id", "video_id")).drop_duplicates()
    watched = watched_pairs(seen, active, catalog)

    started = time.perf_counter()
    histories = recent_histories(views, active, config.features.sequence_length)
    found = embedding_champion(cc.embedding_model)
    if found is not None:
        embedding_model, embedder = found
    elif ranker is None:
        raise RuntimeError(
            f"nothing to export from: neither '{ranker_name}@champion' nor "
            f"'{registered_name(cc.embedding_model)}@champion' is in the MLflow registry; "
            "train first"
        )
    else:
        embedding_model = {
            "name": ranker_name,
            "version": int(champion.version),
            "run_id": champion.run_id,
            "note": f"no {registered_name(cc.embedding_model)}@champion: the ranker's "
            "two-tower vectors",
        }
        embedder = ranker
    # The model's own space: query . vector is its retrieval score (models/interface.py).
    in_index, vectors = embedder.item_vectors(video_ids, video_frame)
    queries = embedder.queries(histories, user_frame)
    if len(in_index) == 0:  # FAISS would stop on a bare `assert k > 0`
        raise ValueError(
            f"no video of the {ds} catalog ({len(video_ids)} videos) has an embedding in "
            f"{embedding_model['name']} v{embedding_model['version']}: nothing to index; "
            "train the model on data that holds these videos first"
        )
    # Below the recall floor this raises before anything is written: the last export stays live.
    ann = build_ann_index(vectors, queries, config.export)
    n_search = min(cc.ann_candidates, len(in_index))
    _, neighbours = ann.search(queries, n_search)
    neighbours = np.where(neighbours >= 0, in_index[np.maximum(neighbours, 0)], -1)
    index_seconds = time.perf_counter() - started

    # Cold start: today's plan from yesterday's and today's performance; cohorts drawn.
    plan = plan_exposure(
        ds,
        video_frame,
        _previous_plan(paths, ds),
        len(active),
        config.cold_start,
        slots=len(active) * slots(cc, k)[1],
    )
    cohorts = assign_cohorts(plan, active, ds, config.cold_start)
    affinity = (
        np.stack(
            [
                np.zeros(config.features.num_categories) if a is None else np.asarray(a, float)
                for a in user_frame["category_affinity"]
            ]
        )
        if len(user_frame)
        else np.zeros((0, config.features.num_categories))
    )
    top_categories = np.where(
        np.sort(affinity, axis=1)[:, ::-1][:, :3] > 0, np.argsort(-affinity, axis=1)[:, :3], -1
    )
    started = time.perf_counter()
    if ranker is not None:
        scorer = ranker.pair_scorer(user_frame, video_frame)
        ranked_by = {
            "version": int(champion.version),
            "run_id": champion.run_id,
            "champion_set": ranker_set,
        }
    else:
        # No ranker has beaten popularity here yet (a log without watch time leaves it only
        # the rewatch head): the embedding model's own next-video score orders the pool.
        scorer = retrieval_scorer(queries, vectors, in_index, len(video_ids))
        ranked_by = {"version": None, "note": "no ranker champion: the embedding model's score"}
    table = np.zeros((len(video_ids), vectors.shape[1]), dtype=np.float32)
    table[in_index] = vectors
    embeddings = None if catalog.has_categories else table
    personal = lists_in_chunks(
        active, neighbours, top_categories, catalog, watched, cohorts, scorer, cc, k, embeddings
    )
    lists_seconds = time.perf_counter() - started

    fallback = fallback_list(catalog, cc, k)
    # Everyone the platform knows: its user table, or (MicroLens has none) every viewer so far.
    everyone = (
        read_partitions(paths.normalized(USERS), [ds])["user_id"].to_numpy(np.int64)
        if paths.normalized(USERS).exists()
        else seen["user_id"].unique().astype(np.int64)
    )
    idle = np.setdiff1d(everyone, active)
    rows = [personal, idle_lists(idle, fallback, catalog, seen, k)]
    candidates = pd.concat([r for r in rows if len(r)], ignore_index=True)
    at = feature_time(ds)
    _write_parquet(candidates, paths.candidates, ds)
    _write_parquet(plan, paths.lake / EXPOSURE_PLAN, ds)
    _write_parquet(
        online_rows(candidates, at, int(champion.version) if champion else 0),
        paths.features(USER_CANDIDATES),
        ds,
    )

    manifest = {
        "ds": ds,
        "feature_time": at.isoformat(),
        "created_at": datetime.now(UTC).isoformat(),
        "models": {
            ranker_name: ranked_by,
            "embeddings": embedding_model,
        },
        "index": ann.report,
        "candidates": {
            "users": int(candidates["user_id"].nunique()),
            "active_users": int(len(active)),
            "fallback_users": int(len(idle)),
            "rows": len(candidates),
            "per_user": k,
            "by_source": candidates["source"].value_counts().to_dict(),
            "index_and_queries_seconds": index_seconds,
            "lists_seconds": lists_seconds,
        },
        "cold_start": {
            "plan": plan["state"].value_counts().to_dict(),
            "cohort_slots": int(len(cohorts)),
        },
    }
    with staged_partition(paths.exports, partition_name(ds)) as staging:
        staging.mkdir(parents=True)
        ann.save(staging)  # index.faiss + index.json (its report: the tuned nprobe)
        np.save(staging / "video_ids.npy", video_ids[in_index])
        (staging / "fallback.json").write_text(
            json.dumps({"video_ids": fallback.tolist(), "source": "fallback"})
        )
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    publish(paths.exports, ds)
    _log_to_mlflow(manifest, ann.report)
    return manifest


def lists_in_chunks(
    active: np.ndarray,
    neighbours: np.ndarray,
    top_categories: np.ndarray,
    catalog: DayCatalog,
    watched: pd.DataFrame,
    cohorts: pd.DataFrame,
    scorer,
    cc,
    k: int,
    embeddings: np.ndarray | None,
    on_chunk=None,
) -> pd.DataFrame:
    """`build_lists` over users in chunks of USERS_PER_CHUNK: the re-rank holds (users, pool,
    dim) arrays, and 100k users at once would not fit. `on_chunk(start, end)` after each."""
    parts = []
    for start in range(0, len(active), USERS_PER_CHUNK):
        end = min(start + USERS_PER_CHUNK, len(active))
        mine = watched[(watched["row"] >= start) & (watched["row"] < end)]
        parts.append(
            build_lists(
                active[start:end],
                neighbours[start:end],
                top_categories[start:end],
                catalog,
                mine.assign(row=mine["row"] - start),
                cohorts,
                lambda rows, positions, start=start: scorer(rows + start, positions),
                cc,
                k,
                embeddings=embeddings,
            )
        )
        if on_chunk is not None:
            on_chunk(start, end)
    return pd.concat(parts, ignore_index=True) if parts else empty_candidates()


def empty_candidates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series(dtype="int64"),
            "rank": pd.Series(dtype="int64"),
            "video_id": pd.Series(dtype="int64"),
            "score": pd.Series(dtype="float64"),
            "source": pd.Series(dtype="object"),
        }
    )


def fallback_list(catalog: DayCatalog, cc, k: int) -> np.ndarray:
    """For users with no recent view, and users the store does not know: trending videos,
    then the most viewed (video ids, best first)."""
    hot = trending(catalog, k)
    most = np.argsort(-catalog.exposures_7d, kind="stable")
    order = list(dict.fromkeys([*hot.tolist(), *most.tolist()]))
    return catalog.video_ids[np.asarray(order[: 3 * k], dtype=np.int64)]


def idle_lists(
    users: np.ndarray, fallback: np.ndarray, catalog: DayCatalog, seen: pd.DataFrame, k: int
) -> pd.DataFrame:
    watched = seen.groupby("user_id")["video_id"].apply(set)
    rank = pd.Series(np.arange(len(fallback)), index=fallback)
    rows = []
    for user in users.tolist():
        skip = watched.get(user, set())
        picks = [v for v in fallback.tolist() if v not in skip][:k]
        rows.extend((user, r + 1, v, float(-rank[v]), "fallback") for r, v in enumerate(picks))
    return pd.DataFrame(rows, columns=["user_id", "rank", "video_id", "score", "source"])


def online_rows(candidates: pd.DataFrame, at, model_version: int) -> pd.DataFrame:
    grouped = candidates.sort_values(["user_id", "rank"]).groupby("user_id")
    return pd.DataFrame(
        {
            "user_id": grouped["user_id"].first().astype(np.int64),
            "event_timestamp": at,
            "video_ids": grouped["video_id"].apply(lambda s: s.astype(np.int64).tolist()),
            "scores": grouped["score"].apply(lambda s: s.astype(np.float32).tolist()),
            "sources": grouped["source"].apply(list),
            "model_version": model_version,
        }
    ).reset_index(drop=True)


def _log_to_mlflow(manifest: dict[str, Any], report: dict[str, Any]) -> None:
    """The export as an MLflow run (experiment reelflow-export): the index's parameters,
    measured recall and timings, the manifest as an artifact."""
    import mlflow

    mlflow.set_experiment(experiment_id=experiment("reelflow-export", Paths.from_env()))
    with mlflow.start_run(run_name=f"export-{manifest['ds']}"):
        params, metrics = mlflow_fields(report)
        mlflow.log_params({**params, "ds": manifest["ds"]})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(manifest, "manifest.json")
