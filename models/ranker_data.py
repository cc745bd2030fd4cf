"""Training and evaluation data for the ranker, from the lake's labels and Feast point-in-time joins.

Training rows: every labelled view before the holdout day, plus `negatives_per_positive`
unexposed catalog videos sampled for the same user and moment (labels 0). A head is active only
when its label is known for at least one logged view (MicroLens logs no watch time: watch_time,
completion and skip are off, and reported); a view whose label is null for an active head is
masked out of that head's loss (`<head>_known`), never filled in. Features come from
Feast `get_historical_features` as of each row's timestamp, so a view on day D only ever sees
features computed through day D-1.

Evaluation: the holdout day's users, every catalog video scored from features as of the start
of the holdout day; relevant = the videos the user completed that day and had not seen
before; history = everything the user viewed before the holdout day (masked).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import torch

from features.labels import LABELS as LABEL_NAMES
from features.store import historical_features
from lake.partitions import available_days
from lake.schema import LABELS, USER_FEATURES, VIDEO_FEATURES, VIDEOS
from models.ranker import USER_DENSE, VIDEO_DENSE
from models.vocab import Vocabulary  # moved to models/vocab.py; still importable from here
from reelflow.config import Config
from reelflow.paths import Paths

# Counts and durations are heavy-tailed: log1p before standardizing.
LOG_SCALED = {
    "views_1d",
    "views_7d",
    "views_28d",
    "exposures_1d",
    "exposures_7d",
    "duration_ms",
    "hours_since_last_view",
    "hours_since_first_view",
}


def read_partitions(table_dir, days: list[str] | None = None) -> pd.DataFrame:
    """A lake table (all partitions, or the given days) as pandas with its `ds` column."""
    dataset = pads.dataset(str(table_dir), format="parquet", partitioning="hive")
    flt = None if days is None else pads.field("ds").isin(days)
    frame = dataset.to_table(filter=flt).to_pandas()
    frame["ds"] = frame["ds"].astype(str)
    return frame


@dataclass
class FeatureScaler:
    mean: dict[str, float]
    std: dict[str, float]

    """Per-feature standardization; keys are `user:<name>` / `video:<name>` (names repeat across views)."""

    @classmethod
    def fit(cls, frames: dict[str, tuple[pd.DataFrame, tuple[str, ...]]]) -> FeatureScaler:
        values = {
            f"{side}:{c}": _raw(frame, c)
            for side, (frame, columns) in frames.items()
            for c in columns
        }
        return cls(
            {k: float(v.mean()) for k, v in values.items()},
            {k: float(v.std() or 1.0) for k, v in values.items()},
        )

    def transform(self, frame: pd.DataFrame, side: str, columns) -> np.ndarray:
        keys = [f"{side}:{c}" for c in columns]
        return np.stack(
            [
                (_raw(frame, c) - self.mean[k]) / self.std[k]
                for c, k in zip(columns, keys, strict=True)
            ],
            axis=1,
        ).astype(np.float32)


def _raw(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").fillna(0.0).to_numpy(np.float64)
    return np.log1p(np.clip(values, 0, None)) if column in LOG_SCALED else values


def affinity_matrix(
    frame: pd.DataFrame, num_categories: int, column: str = "category_affinity"
) -> np.ndarray:
    """A per-category share vector column (`category_affinity`, `recent_category_share`) as a
    dense (rows, num_categories) matrix; a missing vector is all zeros."""
    out = np.zeros((len(frame), num_categories), dtype=np.float32)
    for i, vec in enumerate(frame[column].to_numpy()):
        if vec is not None and not (isinstance(vec, float) and np.isnan(vec)) and len(vec):
            arr = np.asarray(vec, dtype=np.float32)[:num_categories]
            out[i, : len(arr)] = arr
    return out


@dataclass
class RankerData:
    train: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    user_vocab: Vocabulary
    video_vocab: Vocabulary
    scaler: FeatureScaler
    active_heads: tuple[str, ...]
    inactive_heads: dict[str, str]  # head -> why it is switched off
    train_days: list[str]
    holdout_ds: str


def feature_refs(view: str, columns) -> list[str]:
    return [f"{view}:{c}" for c in columns]


def _features_as_of(key: str, ids: np.ndarray, at, refs: list[str], paths: Paths) -> pd.DataFrame:
    """One row per (id, moment), sorted, nulls where a view has nothing: Feast's file store
    drops entity rows with no feature row in the TTL window (an id first seen that day), which
    would silently misalign rows with the ids asked for."""
    as_ns = "datetime64[ns, UTC]"
    entity = pd.DataFrame({key: ids.astype(np.int64), "event_timestamp": at})
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], utc=True).astype(as_ns)
    entity = entity.drop_duplicates()
    found = historical_features(entity, refs, paths)
    found["event_timestamp"] = pd.to_datetime(found["event_timestamp"], utc=True).astype(as_ns)
    return (
        entity.merge(found, on=[key, "event_timestamp"], how="left", validate="one_to_one")
        .sort_values([key, "event_timestamp"])
        .reset_index(drop=True)
    )


def user_feature_frame(user_ids: np.ndarray, at, paths: Paths) -> pd.DataFrame:
    """User features as of `at` (one moment, or one per user)."""
    refs = feature_refs(USER_FEATURES, (*USER_DENSE, "category_affinity", "recent_category_share"))
    return _features_as_of("user_id", user_ids, at, refs, paths)


def video_feature_frame(video_ids: np.ndarray, at, paths: Paths) -> pd.DataFrame:
    """Video features as of `at` (one moment, or one per video)."""
    refs = feature_refs(VIDEO_FEATURES, (*VIDEO_DENSE, "primary_category"))
    return _features_as_of("video_id", video_ids, at, refs, paths)


def encode(
    frame: pd.DataFrame,
    data_vocab: tuple[Vocabulary, Vocabulary],
    scaler: FeatureScaler,
    num_categories: int,
) -> dict[str, torch.Tensor]:
    user_vocab, video_vocab = data_vocab
    out = {}
    if "user_id" in frame:
        out["user_idx"] = torch.from_numpy(user_vocab.lookup(frame["user_id"].to_numpy()))
    if "views_28d" in frame:
        out["user_dense"] = torch.from_numpy(scaler.transform(frame, "user", USER_DENSE))
        out["affinity"] = torch.from_numpy(affinity_matrix(frame, num_categories))
    if "recent_category_share" in frame:
        out["recent_share"] = torch.from_numpy(
            affinity_matrix(frame, num_categories, "recent_category_share")
        )
    if "video_id" in frame:
        out["video_idx"] = torch.from_numpy(video_vocab.lookup(frame["video_id"].to_numpy()))
    if "exposures_7d" in frame:
        out["video_dense"] = torch.from_numpy(scaler.transform(frame, "video", VIDEO_DENSE))
        out["category"] = torch.from_numpy(
            pd.to_numeric(frame["primary_category"], errors="coerce").fillna(-1).to_numpy(np.int64)
        )
    return out


# Why a label can be null for every view: the inputs it is computed from (features/labels.py).
MISSING_LABEL_REASON = {
    "watch_time": "the dataset logs no watch time",
    "completion": "the dataset logs no watch time",
    "rewatch": "the dataset logs neither watch time nor repeat views",
    "continuation": "the dataset logs no watch time (no view end)",
    "skip": "the dataset logs no watch time",
}


def label_heads(views: pd.DataFrame) -> tuple[tuple[str, ...], dict[str, str]]:
    """(active heads, {inactive head: reason}): a head is active when its label is known for
    at least one logged view."""
    active, inactive = [], {}
    for name in LABEL_NAMES:
        column = f"label_{name}"
        if column in views and views[column].notna().any():
            active.append(name)
        else:
            inactive[name] = (
                f"{column} is null for every row: {MISSING_LABEL_REASON.get(name, 'not logged')}"
            )
    return tuple(active), inactive


def label_targets(rows: pd.DataFrame, active_heads: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Per active head its label (nulls as 0) and `<head>_known` (0 where the label is null,
    so the loss leaves that row out), plus `exposed`."""
    targets = {}
    for name in active_heads:
        label = rows[f"label_{name}"].to_numpy(dtype=np.float64, na_value=np.nan)
        known = ~np.isnan(label)
        targets[name] = torch.from_numpy(np.where(known, label, 0.0).astype(np.float32))
        targets[f"{name}_known"] = torch.from_numpy(known.astype(np.float32))
    targets["exposed"] = torch.tensor(rows["exposed"].to_numpy(np.float32))
    return targets


def build_training_data(holdout_ds: str, config: Config, paths: Paths) -> RankerData:
    labels_dir = paths.features(LABELS)
    train_days = [d for d in available_days(labels_dir) if d < holdout_ds]
    if not train_days:
        raise ValueError(f"no labelled days before the holdout day {holdout_ds} under {labels_dir}")
    views = read_partitions(labels_dir, train_days)
    active_heads, inactive_heads = label_heads(views)
    if not active_heads:
        raise ValueError(
            f"no ranker label is known for any view before {holdout_ds}: {inactive_heads}"
        )
    catalog = read_partitions(paths.normalized(VIDEOS), [train_days[-1]])
    users = np.unique(views["user_id"].to_numpy())
    rng = np.random.default_rng(config.ranker.seed)
    n_neg = config.ranker.negatives_per_positive
    negatives = pd.DataFrame(
        {
            "user_id": np.repeat(views["user_id"].to_numpy(), n_neg),
            "video_id": rng.choice(catalog["video_id"].to_numpy(), size=len(views) * n_neg),
            "event_timestamp": np.repeat(views["event_timestamp"].to_numpy(), n_neg),
        }
    )
    for name in LABEL_NAMES:
        negatives[f"label_{name}"] = 0.0
    # Nullable ints to floats with NaN: a null label stays unknown through the concat below.
    views = views.astype({f"label_{name}": "float64" for name in LABEL_NAMES}).assign(exposed=1.0)
    negatives["exposed"] = 0.0
    entity = pd.concat([views.drop(columns=["ds", "watch_ratio"]), negatives], ignore_index=True)
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], utc=True)
    # One point-in-time join per entity, merged back onto the label rows. Feast's file store
    # de-duplicates entity rows on the first view's keys and timestamp, which would collapse
    # every (user, moment) to one video; joining distinct (entity, moment) pairs is also cheaper.
    user_frame = _join_as_of(entity, "user_id", user_feature_frame, paths)
    video_frame = _join_as_of(entity, "video_id", video_feature_frame, paths)
    joined = entity
    user_vocab = Vocabulary(users)
    video_vocab = Vocabulary(np.sort(catalog["video_id"].unique()))
    scaler = FeatureScaler.fit(
        {"user": (user_frame, USER_DENSE), "video": (video_frame, VIDEO_DENSE)}
    )
    num_categories = config.features.num_categories
    user_part = encode(
        user_frame[["user_id", *USER_DENSE, "category_affinity"]],
        (user_vocab, video_vocab),
        scaler,
        num_categories,
    )
    video_part = encode(
        video_frame[["video_id", *VIDEO_DENSE, "primary_category"]],
        (user_vocab, video_vocab),
        scaler,
        num_categories,
    )
    return RankerData(
        train={**user_part, **video_part},
        targets=label_targets(joined, active_heads),
        user_vocab=user_vocab,
        video_vocab=video_vocab,
        scaler=scaler,
        active_heads=active_heads,
        inactive_heads=inactive_heads,
        train_days=train_days,
        holdout_ds=holdout_ds,
    )


def _join_as_of(entity: pd.DataFrame, key: str, fetch, paths: Paths) -> pd.DataFrame:
    """The features of `key` as of each entity row's timestamp, aligned with `entity`'s rows."""
    pairs = entity[[key, "event_timestamp"]].drop_duplicates()
    features = fetch(pairs[key].to_numpy(), pairs["event_timestamp"].to_numpy(), paths)
    as_ns = "datetime64[ns, UTC]"
    features["event_timestamp"] = pd.to_datetime(features["event_timestamp"], utc=True).astype(
        as_ns
    )
    left = entity[[key, "event_timestamp"]].assign(
        event_timestamp=lambda f: pd.to_datetime(f["event_timestamp"], utc=True).astype(as_ns)
    )
    merged = left.merge(features, on=[key, "event_timestamp"], how="left", validate="many_to_one")
    if len(merged) != len(entity):
        raise AssertionError(
            f"{key} feature join changed the row count: {len(entity)} -> {len(merged)}"
        )
    return merged


@dataclass
class HoldoutSet:
    user_ids: np.ndarray
    video_ids: np.ndarray
    relevant: list[np.ndarray]  # per user: column indices into video_ids
    history: list[np.ndarray]
    categories: np.ndarray
    popularity: np.ndarray  # training-period views per video (the baseline's score)
    at: datetime
    views: pd.DataFrame | None = None  # the day's logged views with their labels (head metrics)


def build_holdout(holdout_ds: str, config: Config, paths: Paths) -> HoldoutSet:
    labels_dir = paths.features(LABELS)
    day = read_partitions(labels_dir, [holdout_ds])
    past = read_partitions(labels_dir, [d for d in available_days(labels_dir) if d < holdout_ds])
    catalog = read_partitions(paths.normalized(VIDEOS), [holdout_ds]).sort_values("video_id")
    video_ids = catalog["video_id"].to_numpy(np.int64)
    col = pd.Series(np.arange(len(video_ids)), index=video_ids)
    seen = past.groupby("user_id")["video_id"].apply(lambda s: np.unique(s.to_numpy()))
    # Relevant: completed. A log without watch time (MicroLens: null completion) records
    # only chosen views (clicks, likes): there every view of the day counts.
    logs_completion = day["label_completion"].notna().any()
    engaged = day[day["label_completion"] == 1] if logs_completion else day
    relevant_by_user = engaged.groupby("user_id")["video_id"].apply(
        lambda s: np.unique(s.to_numpy())
    )
    user_ids, relevant, history = [], [], []
    for user, videos in relevant_by_user.items():
        prior = seen.get(user, np.array([], dtype=np.int64))
        fresh = np.setdiff1d(videos, prior)
        fresh = fresh[np.isin(fresh, video_ids)]
        if len(fresh) == 0:
            continue
        user_ids.append(user)
        relevant.append(col[fresh].to_numpy())
        history.append(col[prior[np.isin(prior, video_ids)]].to_numpy())
    popularity = (
        past["video_id"].value_counts().reindex(video_ids, fill_value=0).to_numpy(np.float64)
    )
    return HoldoutSet(
        user_ids=np.asarray(user_ids, dtype=np.int64),
        video_ids=video_ids,
        relevant=relevant,
        history=history,
        # MicroLens has no categories: every video "none" (-1), diversity then says nothing.
        categories=pd.to_numeric(
            catalog.get("primary_category", pd.Series(-1, index=catalog.index)), errors="coerce"
        )
        .fillna(-1)
        .to_numpy(np.int64),
        popularity=popularity,
        at=datetime.fromisoformat(holdout_ds).replace(tzinfo=UTC),
        views=day.drop(columns="ds").reset_index(drop=True),
    )
