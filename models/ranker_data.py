"""Training and evaluation data for the ranker, from the lake's labels and Feast point-in-time joins.

Training rows: the labelled views before the holdout day (the last `ranker.train_days` days,
at most `ranker.max_train_views` of their views, a seeded uniform sample), plus
`negatives_per_positive` unexposed catalog videos sampled for the same user and moment
(labels 0). A head is active only
when its label is known for at least one logged view (MicroLens logs no watch time: watch_time,
completion and skip are off, and reported); a view whose label is null for an active head is
masked out of that head's loss (`<head>_known`), never filled in. Features are those of the
model's Feast feature service (`ranker_v1`: its projections name them, `ServiceFeatures`),
joined point in time as of each row's timestamp, so a view on day D only ever sees features
computed through day D-1.

Evaluation: the holdout day's users, every catalog video ranked from features as of the start
of the holdout day (all through the heads up to `ranker.eval_rerank_depth` videos, in two
stages beyond, the first pooling the dot product, the user's top categories and popularity as
the export's candidates do: `RankerBundle.ranking_scores`, `Split.first_stage`, the protocol
logged as `eval_protocol`);
relevant = the videos the user completed that day and had not seen before; history =
everything the user viewed before the holdout day (masked).

The ranker kind of model (models/registry.py `data`) in training and in use: `RankerBundle`
(the model with the id and feature encoders it was trained with), `Split` (one evaluation
day), and `RankerData`, what one training run reads, logs and is gated on: it trains on the
days before the validation day (the day before the test day), selects nothing on the test day.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch

from features.labels import HEADS
from features.store import historical_features
from lake.partitions import available_days
from lake.read import read_partitions
from lake.schema import LABELS, USER_FEATURES, VIDEO_FEATURES, VIDEOS
from models.bundle import Bundle
from models.evaluate import (
    Shortlists,
    full_ranking_metrics,
    head_metrics,
    metric_names,
    popularity_metrics,
)
from models.gate import GateSplit, run_params
from models.ranker import (
    USER_DENSE,
    VIDEO_DENSE,
    FirstStage,
    MultiObjectiveRanker,
    pair_scorer,
    score_matrix,
    two_stage_shortlists,
)
from models.registry import spec
from models.trainer import TrainerConfig, out_of_time
from models.training import Evaluation, service_fields
from models.unbiased import (
    SLICE_METRICS,
    random_exposure_slice,
    slice_metric_names,
    small_matrix_slice,
)
from models.vocab import Vocabulary
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
class TrainingSet:
    train: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    user_vocab: Vocabulary
    video_vocab: Vocabulary
    scaler: FeatureScaler
    active_heads: tuple[str, ...]
    inactive_heads: dict[str, str]  # head -> why it is switched off
    train_days: list[str]
    holdout_ds: str
    views_available: int  # the labelled views of `train_days`
    views_kept: int  # of which the training set holds (config ranker.max_train_views)


def _utc_ns(moments) -> pd.Series:
    """Moments as UTC nanosecond timestamps: the one type both sides of a join compare."""
    return pd.to_datetime(moments, utc=True).astype("datetime64[ns, UTC]")


def _features_as_of(key: str, ids: np.ndarray, at, refs: list[str], paths: Paths) -> pd.DataFrame:
    """One row per (id, moment), sorted, nulls where a view has nothing: Feast's file store
    drops entity rows with no feature row in the TTL window (an id first seen that day), which
    would silently misalign rows with the ids asked for."""
    entity = pd.DataFrame({key: ids.astype(np.int64), "event_timestamp": at})
    entity["event_timestamp"] = _utc_ns(entity["event_timestamp"])
    entity = entity.drop_duplicates()
    found = historical_features(entity, refs, paths)
    found["event_timestamp"] = _utc_ns(found["event_timestamp"])
    return (
        entity.merge(found, on=[key, "event_timestamp"], how="left", validate="one_to_one")
        .sort_values([key, "event_timestamp"])
        .reset_index(drop=True)
    )


# What a ranker reads of each view: the columns `encode` turns into its input tensors.
USER_INPUTS = (*USER_DENSE, "category_affinity", "recent_category_share")
VIDEO_INPUTS = (*VIDEO_DENSE, "primary_category")


@dataclass
class ServiceFeatures:
    """The user and video features of a Feast feature service, as of given moments: every
    reference of the service's projection of a view is fetched, and a frame keeps the
    columns the ranker reads (`USER_INPUTS`, `VIDEO_INPUTS`)."""

    service: str
    refs: dict[str, list[str]]  # view -> its `view:feature` references in the service
    paths: Paths

    @classmethod
    def of(cls, service: str, paths: Paths) -> ServiceFeatures:
        fields = service_fields(service, paths)
        for view, inputs in ((USER_FEATURES, USER_INPUTS), (VIDEO_FEATURES, VIDEO_INPUTS)):
            missing = sorted(set(inputs) - {name for name, _ in fields.get(view, [])})
            if missing:
                raise ValueError(
                    f"the feature service {service} serves none of {view} {missing}, which the "
                    "ranker reads: add them to it (feature_repo/repo.py)"
                )
        refs = {view: [f"{view}:{name}" for name, _ in named] for view, named in fields.items()}
        return cls(service, refs, paths)

    def users(self, user_ids: np.ndarray, at) -> pd.DataFrame:
        """User features as of `at` (one moment, or one per user)."""
        return self._as_of("user_id", user_ids, at, USER_FEATURES, USER_INPUTS)

    def videos(self, video_ids: np.ndarray, at) -> pd.DataFrame:
        """Video features as of `at` (one moment, or one per video)."""
        return self._as_of("video_id", video_ids, at, VIDEO_FEATURES, VIDEO_INPUTS)

    def _as_of(self, key: str, ids: np.ndarray, at, view: str, inputs) -> pd.DataFrame:
        frame = _features_as_of(key, ids, at, self.refs[view], self.paths)
        return frame[[key, "event_timestamp", *inputs]].copy()


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
    for name in HEADS:
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


def build_training_data(holdout_ds: str, config: Config, features: ServiceFeatures) -> TrainingSet:
    paths = features.paths
    labels_dir = paths.features(LABELS)
    train_days = [d for d in available_days(labels_dir) if d < holdout_ds]
    if not train_days:
        raise ValueError(f"no labelled days before the holdout day {holdout_ds} under {labels_dir}")
    rc = config.ranker
    train_days = train_days[-rc.train_days :] if rc.train_days > 0 else train_days
    views = read_partitions(labels_dir, train_days)
    rng = np.random.default_rng(rc.seed)
    views_available = len(views)
    if 0 < rc.max_train_views < views_available:
        # Rows stay in their stored order: only which views are kept is random.
        keep = np.sort(rng.choice(views_available, size=rc.max_train_views, replace=False))
        views = views.iloc[keep].reset_index(drop=True)
    active_heads, inactive_heads = label_heads(views)
    if not active_heads:
        raise ValueError(
            f"no ranker label is known for any view before {holdout_ds}: {inactive_heads}"
        )
    catalog = read_partitions(paths.normalized(VIDEOS), [train_days[-1]])
    users = np.unique(views["user_id"].to_numpy())
    n_neg = rc.negatives_per_positive
    negatives = pd.DataFrame(
        {
            "user_id": np.repeat(views["user_id"].to_numpy(), n_neg),
            "video_id": rng.choice(catalog["video_id"].to_numpy(), size=len(views) * n_neg),
            "event_timestamp": np.repeat(views["event_timestamp"].to_numpy(), n_neg),
        }
    )
    for name in HEADS:
        negatives[f"label_{name}"] = 0.0
    # Nullable ints to floats with NaN: a null label stays unknown through the concat below.
    views = views.astype({f"label_{name}": "float64" for name in HEADS}).assign(exposed=1.0)
    negatives["exposed"] = 0.0
    entity = pd.concat([views.drop(columns=["ds", "watch_ratio"]), negatives], ignore_index=True)
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], utc=True)
    # One point-in-time join per entity, merged back onto the label rows. Feast's file store
    # de-duplicates entity rows on the first view's keys and timestamp, which would collapse
    # every (user, moment) to one video; joining distinct (entity, moment) pairs is also cheaper.
    user_frame = _join_as_of(entity, "user_id", features.users)
    video_frame = _join_as_of(entity, "video_id", features.videos)
    joined = entity
    user_vocab = Vocabulary(users)
    # The videos viewed in the training rows; the catalog's others share index 0 ("unknown
    # video") and are told apart by their features. An id row never viewed only ever learns
    # "not chosen" from negatives, and KuaiRand-1K's 4.37M-row table was most of the model.
    video_vocab = Vocabulary(np.unique(views["video_id"].to_numpy()))
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
    return TrainingSet(
        train={**user_part, **video_part},
        targets=label_targets(joined, active_heads),
        user_vocab=user_vocab,
        video_vocab=video_vocab,
        scaler=scaler,
        active_heads=active_heads,
        inactive_heads=inactive_heads,
        train_days=train_days,
        holdout_ds=holdout_ds,
        views_available=views_available,
        views_kept=len(views),
    )


def _join_as_of(entity: pd.DataFrame, key: str, fetch) -> pd.DataFrame:
    """The features of `key` as of each entity row's timestamp, aligned with `entity`'s rows."""
    pairs = entity[[key, "event_timestamp"]].drop_duplicates()
    features = fetch(pairs[key].to_numpy(), pairs["event_timestamp"].to_numpy())
    features["event_timestamp"] = _utc_ns(features["event_timestamp"])
    left = entity[[key, "event_timestamp"]].assign(
        event_timestamp=lambda f: _utc_ns(f["event_timestamp"])
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


# ---- the model in use: scoring rows, a whole catalog, the export's vectors ---------------------


@dataclass
class RankerBundle(Bundle):
    """Everything needed to score: the model and the id/feature encoders it was trained with."""

    model: MultiObjectiveRanker
    user_vocab: Vocabulary
    video_vocab: Vocabulary
    scaler: FeatureScaler

    def vocabularies(self) -> dict[str, Vocabulary]:
        return {"users": self.user_vocab, "videos": self.video_vocab}

    def settings(self) -> dict[str, Any]:
        return {"scaler": {"mean": self.scaler.mean, "std": self.scaler.std}}

    @classmethod
    def restore(cls, name, model, vocabularies, settings) -> RankerBundle:
        scaler = settings["scaler"]
        return cls(
            name,
            model,
            vocabularies["users"],
            vocabularies["videos"],
            FeatureScaler(scaler["mean"], scaler["std"]),
        )

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
        for view, id_col in ((USER_FEATURES, "user_id"), (VIDEO_FEATURES, "video_id")):
            part = rows[[id_col]].copy()
            for column in rows.columns:
                if column.startswith(f"{view}__"):
                    part[column.split("__", 1)[1]] = rows[column].to_numpy()
            batch.update(self.encode(part))
        return self.model.score_batch(batch).numpy()

    def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        """The pyfunc: (user, video) rows that carry the ranker_v1 features in; the combined
        score out."""
        return self.score_rows(frame)

    def score_all(self, user_frame: pd.DataFrame, video_frame: pd.DataFrame) -> np.ndarray:
        return score_matrix(self.model, self.encode(user_frame), self.encode(video_frame)).numpy()

    def pair_scorer(self, user_frame: pd.DataFrame, video_frame: pd.DataFrame):
        """score(rows, positions) -> the combined score of those (row of `user_frame`, row of
        `video_frame`) pairs (`models.ranker.pair_scorer`)."""
        return pair_scorer(self.model, self.encode(user_frame), self.encode(video_frame))

    def ranking_scores(
        self,
        user_frame: pd.DataFrame,
        video_frame: pd.DataFrame,
        history: list[np.ndarray],
        depth: int,
        first_stage: FirstStage,
    ) -> np.ndarray | Shortlists:
        """What ranks every video of `video_frame` for each user of `user_frame`: the
        combined score of every pair when there are at most `depth` videos, otherwise two
        stages (`models.ranker.two_stage_shortlists`; `history[u]`: user u's seen columns)."""
        if len(video_frame) <= depth:
            return self.score_all(user_frame, video_frame)
        users, videos = self.encode(user_frame), self.encode(video_frame)
        return two_stage_shortlists(self.model, users, videos, history, depth, first_stage)

    @torch.no_grad()
    def item_vectors(
        self, video_ids: np.ndarray, video_frame: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every video of the catalog, its video-tower vector from its features."""
        v = self.encode(video_frame)
        self.model.eval()
        return np.arange(len(video_ids)), self.model.item_vectors(v).numpy()

    @torch.no_grad()
    def queries(self, histories: list, user_frame: pd.DataFrame) -> np.ndarray:
        """Each user's user-tower vector from their features."""
        u = self.encode(user_frame)
        self.model.eval()
        return self.model.query(u).numpy()


# ---- one evaluation day --------------------------------------------------------------------------


@dataclass
class Split:
    """One evaluation day: its holdout and the features as of its first moment. `user_frame`:
    the holdout's users (full ranking); `viewer_frame`: every user who viewed that day (the
    per-head metrics, on the day's logged views)."""

    ds: str
    holdout: Any
    user_frame: pd.DataFrame
    video_frame: pd.DataFrame
    viewer_frame: pd.DataFrame | None = None
    rerank_depth: int = 2000  # config ranker.eval_rerank_depth
    num_categories: int = 0  # config features.num_categories

    @property
    def protocol(self) -> str:
        """How `score` ranks the day's catalog, as logged beside its numbers."""
        n = len(self.video_frame)
        if n <= self.rerank_depth:
            return f"every one of {n} videos scored by the heads, history masked"
        return (
            f"every one of {n} videos ranked in two stages: a first stage pools each user's "
            f"{self.first_stage.describe(self.rerank_depth)} (popularity: 7-day exposures "
            "as of the day's start, then trend velocity), the heads' combined score orders "
            "them, the rest rank below them; history masked"
        )

    @cached_property
    def first_stage(self) -> FirstStage:
        """The first stage's sources besides the dot product, from the features as of the
        day's start, as the export pools them: the most exposed over 7 days (then trend
        velocity), and the most exposed of each user's 3 top categories (a twelfth of the
        depth each, so a quarter in all)."""
        videos = self.video_frame
        exposures = pd.to_numeric(videos["exposures_7d"], errors="coerce").fillna(0).to_numpy()
        velocity = pd.to_numeric(videos["trend_velocity"], errors="coerce").fillna(0).to_numpy()
        popular = np.lexsort((-velocity, -exposures))  # ties: the lower column first
        categories = (
            pd.to_numeric(videos["primary_category"], errors="coerce").fillna(-1).to_numpy()
        ).astype(np.int64)
        affinity = affinity_matrix(self.user_frame, self.num_categories)
        return FirstStage.build(popular, categories, affinity, self.rerank_depth)

    @classmethod
    def build(cls, ds: str, config: Config, features: ServiceFeatures) -> Split:
        holdout = build_holdout(ds, config, features.paths)
        if len(holdout.user_ids) == 0:
            raise ValueError(f"evaluation day {ds} has no user with a completed, unseen video")
        # One feature lookup for both: the holdout's users are among the day's viewers.
        viewers = np.union1d(holdout.user_ids, holdout.views["user_id"].to_numpy(np.int64))
        viewer_frame = features.users(viewers, holdout.at)
        return cls(
            ds,
            holdout,
            viewer_frame[viewer_frame["user_id"].isin(holdout.user_ids)].reset_index(drop=True),
            features.videos(holdout.video_ids, holdout.at),
            viewer_frame,
            config.ranker.eval_rerank_depth,
            config.features.num_categories,
        )

    def score(self, bundle: RankerBundle) -> dict[str, float]:
        """Full ranking of the day's catalog for the holdout's users."""
        h = self.holdout
        scores = bundle.ranking_scores(
            self.user_frame, self.video_frame, h.history, self.rerank_depth, self.first_stage
        )
        return full_ranking_metrics(
            scores, h.relevant, h.history, categories=h.categories, popularity=h.popularity
        )

    def popularity(self) -> dict[str, float]:
        h = self.holdout
        return popularity_metrics(h.popularity, h.relevant, h.history, categories=h.categories)

    @torch.no_grad()
    def per_head_metrics(self, bundle: RankerBundle) -> dict[str, float]:
        """Per active head on the day's logged views (features as of the day's start):
        `<head>_rmse` of the predicted probability against the label, `<head>_auc` where the
        label is binary and both classes occur."""
        videos = self.video_frame.set_index("video_id")
        # A view of a video missing from the day's catalog has no features to score it with.
        views = self.holdout.views[self.holdout.views["video_id"].isin(videos.index)]
        users = self.viewer_frame.set_index("user_id")
        batch = {
            **bundle.encode(users.loc[views["user_id"]].reset_index()),
            **bundle.encode(videos.loc[views["video_id"]].reset_index()),
        }
        bundle.model.eval()
        logits, _ = bundle.model(batch)
        probabilities = torch.sigmoid(logits).numpy()
        out = {}
        for i, head in enumerate(HEADS):
            if head not in bundle.model.config.active_heads:
                continue
            labels = views[f"label_{head}"].to_numpy(dtype=np.float64, na_value=np.nan)
            for name, value in head_metrics(labels, probabilities[:, i]).items():
                out[f"{head}_{name}"] = value
        return out

    def unbiased_metrics(
        self, bundle: RankerBundle, config: Config, features: ServiceFeatures
    ) -> dict[str, float]:
        """The unbiased slices the data has (models/unbiased.py), scored with the features as
        of this day's start, next to popularity (training-period views)."""
        paths = features.paths
        threshold = config.features.completion_threshold
        slices = (
            small_matrix_slice(paths, threshold),
            random_exposure_slice(paths, self.ds, threshold),
        )
        views = pd.Series(self.holdout.popularity, index=self.holdout.video_ids)
        out: dict[str, float] = {}
        for found in (s for s in slices if s is not None):
            results = found.evaluate(
                lambda users, videos: bundle.score_all(
                    features.users(users, self.holdout.at),
                    features.videos(videos, self.holdout.at),
                ),
                views.reindex(found.video_ids, fill_value=0.0).to_numpy(np.float64),
            )
            out.update(slice_metric_names(found.name, results, SLICE_METRICS))
        return out

    def signature_example(self) -> pd.DataFrame:
        """Five (user, video) rows in the pyfunc's input format, for the MLflow signature."""
        example = pd.concat(
            [
                self.user_frame.iloc[[0] * 5]
                .reset_index(drop=True)
                .drop(columns="event_timestamp")
                .add_prefix(f"{USER_FEATURES}__")
                .rename(columns={f"{USER_FEATURES}__user_id": "user_id"}),
                self.video_frame.head(5)
                .reset_index(drop=True)
                .drop(columns="event_timestamp")
                .add_prefix(f"{VIDEO_FEATURES}__")
                .rename(columns={f"{VIDEO_FEATURES}__video_id": "video_id"}),
            ],
            axis=1,
        )
        for column in ("category_affinity", "recent_category_share"):
            name = f"{USER_FEATURES}__{column}"
            example[name] = example[name].apply(lambda v: [float(x) for x in v])
        return example


def evaluation_days(test_ds: str | None, paths: Paths) -> tuple[str, str]:
    """(validation day, test day): the test day (default the last) and the day before it."""
    days = available_days(paths.features(LABELS))
    test_ds = test_ds or (days[-1] if days else None)
    earlier = [d for d in days if d < (test_ds or "")]
    if len(earlier) < 2:
        raise ValueError(
            f"training needs two labelled days before the test day {test_ds} (one to train on, "
            f"one to validate on); found {days}"
        )
    return earlier[-1], test_ds


# ---- one training run: what it reads, logs and is gated on ------------------------------------

KEY_METRICS = ("ndcg@10", "recall@10", "hr@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20")


class RankerData:
    """One run of a ranker-kind model: its point-in-time training set and its validation and
    test days (`Split`), popularity's metrics on both."""

    bundle_class = RankerBundle
    monitor = "val_ndcg@10"  # what the learning curves follow
    notes: dict[str, Any] = {}

    def __init__(self, name: str, test_ds: str | None, config: Config, paths: Paths):
        val_ds, test_ds = evaluation_days(test_ds, paths)
        rc = config.ranker
        self.name, self.config, self.run_name = name, config, f"{name}-{test_ds}"
        self.features = ServiceFeatures.of(spec(name).feature_service, paths)
        self.data = build_training_data(val_ds, config, self.features)
        self.train, self.targets = self.data.train, self.data.targets
        self.val, self.test = (
            Split.build(val_ds, config, self.features),
            Split.build(test_ds, config, self.features),
        )
        self.model_config = (
            spec(name)
            .model_class()
            .config_class(
                n_users=len(self.data.user_vocab),
                n_videos=len(self.data.video_vocab),
                num_categories=config.features.num_categories,
                embedding_dim=rc.embedding_dim,
                hidden_dim=rc.hidden_dim,
                head_weights={
                    "watch_time": rc.weight_watch_time,
                    "completion": rc.weight_completion,
                    "rewatch": rc.weight_rewatch,
                    "continuation": rc.weight_continuation,
                },
                skip_penalty=rc.weight_skip_penalty,
                fatigue_penalty=rc.weight_fatigue_penalty,
                active_heads=self.data.active_heads,
                sparse_videos=True,
            )
        )
        self.trainer = TrainerConfig(
            epochs=rc.epochs,
            batch_size=rc.batch_size,
            lr=rc.lr,
            weight_decay=rc.weight_decay,
            seed=rc.seed,
            max_seconds=rc.max_train_minutes * 60,
            monitor=self.monitor,
            patience=rc.patience,
        )
        self.baseline = {"val": self.val.popularity(), "test": self.test.popularity()}

    @classmethod
    def for_run(
        cls, name: str, ds: str | None, config: Config, paths: Paths, **options: Any
    ) -> RankerData:
        """`ds`: the test day (default the last labelled day); the day before validates."""
        return cls(name, ds, config, paths)

    @staticmethod
    def scheduled_day(ds: str, paths: Paths) -> str:
        """The test day of a scheduled run for `ds`: the last labelled day through `ds`."""
        days = available_days(paths.features(LABELS))
        return max(d for d in days if d <= ds) if any(d <= ds for d in days) else ds

    @staticmethod
    def version_split(
        name: str, version: int, bundle: RankerBundle, config: Config, paths: Paths
    ) -> GateSplit:
        """The validation day of a registered version's own run."""
        from models.tracking import registered_name

        features = ServiceFeatures.of(spec(name).feature_service, paths)
        val = Split.build(run_params(registered_name(name), version)["val_ds"], config, features)
        return GateSplit(f"val_ds={val.ds}", val.score, val.popularity())

    def wrap(self, model: MultiObjectiveRanker) -> MultiObjectiveRanker:
        return model

    def bundle(self, model: MultiObjectiveRanker) -> RankerBundle:
        return RankerBundle(
            self.name, model, self.data.user_vocab, self.data.video_vocab, self.data.scaler
        )

    def on_epoch(self, bundle: RankerBundle, log: Callable[[int, dict[str, float]], None]):
        """The trainer's callback: validation NDCG@10 per epoch, for the curves (the test day
        is scored once, at the end)."""

        def epoch_metrics(epoch: int, metrics: dict[str, float]) -> dict[str, float]:
            ndcg = self.val.score(bundle)["ndcg@10"]
            log(epoch, {"train_loss": metrics["train_loss"], "val_ndcg_at_10": ndcg})
            return {"val_ndcg@10": ndcg}

        return epoch_metrics

    def configs(self) -> dict[str, Any]:
        return {"model": self.model_config.to_dict()}

    def params(self) -> dict[str, Any]:
        data, val, test = self.data, self.val, self.test
        return {
            **{f"ranker.{k}": v for k, v in self.config.ranker.__dict__.items()},
            "val_ds": val.ds,
            "test_ds": test.ds,
            "holdout_ds": test.ds,
            "train_days": ",".join(data.train_days),
            "train_rows": len(data.targets["exposed"]),
            "train_views_available": data.views_available,
            "train_views": data.views_kept,
            "val_users": len(val.holdout.user_ids),
            "test_users": len(test.holdout.user_ids),
            "videos": len(test.holdout.video_ids),
            "eval_protocol": test.protocol,
            "video_vocabulary": len(data.video_vocab) - 1,
            "active_heads": ",".join(data.active_heads),
            # head -> why it is off ("{}": every head trained)
            "inactive_heads": json.dumps(data.inactive_heads),
        }

    def evaluate(
        self,
        bundle: RankerBundle,
        history: list[dict[str, float]],
        seconds: float,
        config: Config,
        paths: Paths,
    ) -> Evaluation:
        val, test, baseline, data = self.val, self.test, self.baseline, self.data
        metrics = {"val": val.score(bundle), "test": test.score(bundle)}
        heads = {"val": val.per_head_metrics(bundle), "test": test.per_head_metrics(bundle)}
        logged: dict[str, float] = {}
        for split in ("val", "test"):
            logged.update(metric_names(metrics[split], split))
            logged.update(metric_names(baseline[split], f"popularity_{split}"))
            logged.update(metric_names(heads[split], f"{split}_head"))
        logged["epochs_run"] = float(len(history))
        # The epoch whose weights are kept and scored: the best on the validation day.
        if history:
            logged["best_epoch"] = float(1 + int(np.argmax([h[self.monitor] for h in history])))
        # 1 when the time budget (ranker.max_train_minutes) ended the training
        logged["stopped_by_time_budget"] = float(out_of_time(history, self.trainer))
        unbiased = test.unbiased_metrics(bundle, config, self.features)
        report = {
            "val_ds": val.ds,
            "test_ds": test.ds,
            "active_heads": list(data.active_heads),
            "inactive_heads": data.inactive_heads,
            "ranker": metrics,
            "heads": heads,
            "popularity": baseline,
            "unbiased": unbiased,
            "history": history,
        }
        summary = {
            "val_ds": val.ds,
            "test_ds": test.ds,
            "holdout_ds": test.ds,
            "active_heads": list(data.active_heads),
            "inactive_heads": data.inactive_heads,
            "unbiased": unbiased,
            "metrics": {
                **metric_names(metrics["val"], "val", KEY_METRICS),
                **metric_names(metrics["test"], "test", KEY_METRICS),
                **metric_names(heads["val"], "val_head"),
                **metric_names(heads["test"], "test_head"),
            },
            "popularity": {
                **metric_names(baseline["val"], "popularity_val", KEY_METRICS),
                **metric_names(baseline["test"], "popularity_test", KEY_METRICS),
            },
        }
        return Evaluation(
            metrics={**logged, **unbiased},
            report=report,
            baseline=baseline["val"]["ndcg@10"],
            # Scoring the challenger's whole catalog again would give the same numbers.
            gate=GateSplit(f"val_ds={val.ds}", val.score, baseline["val"], metrics["val"]),
            summary=summary,
        )

    def example(self) -> pd.DataFrame:
        return self.test.signature_example()
