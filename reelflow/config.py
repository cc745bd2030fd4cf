"""Typed configuration: defaults live here, overrides come from the environment.

Every field can be overridden as `REELFLOW_<SECTION>__<FIELD>` (e.g.
`REELFLOW_RANKER__EPOCHS=5`); values are parsed to the field's type and validated, so a typo
fails loudly instead of silently using a default. Each run logs the resolved configuration
next to its outputs (`Config.to_dict`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QualityConfig:
    watch_ratio_min: float = 0.0  # a negative watch ratio is a broken row
    # Real KuaiRec holds ratios above 5 (rewatch loops); beyond this the row is a logging bug.
    watch_ratio_max: float = 100.0
    # The day's last view must fall within this many hours of midnight: a day that stops
    # early is a late or truncated export, not a quiet day.
    freshness_hours: float = 6.0
    # A day's row count must lie within these multiples of the trailing days' average.
    volume_min_ratio: float = 0.3
    volume_max_ratio: float = 3.0
    volume_trailing_days: int = 7
    # The plausible-time rule: a view before this UTC day, or later than the landing clock
    # plus `max_future_days`, is a logging bug (epoch 0, a year-2100 clock), quarantined.
    # 1990: MovieLens-100K (1997-98) stays valid; an events spec may override it.
    min_event_time: str = "1990-01-01"
    max_future_days: float = 1.0
    # The validate gate fails a day whose quarantined share of a table exceeds this (exact
    # duplicate rows counted apart: real KuaiRand logs hold them).
    max_quarantine_share: float = 0.05


@dataclass(frozen=True)
class FeatureConfig:
    long_window_days: int = 28  # horizon of the long-term user features
    # Day D's features from daily partial aggregates of the window (features/partials.py: a
    # day's cost does not grow with the window), or, false, from every view of the window.
    incremental: bool = True
    mid_window_days: int = 7  # horizon of the video features and mid-term user features
    completion_threshold: float = 1.0  # watch_ratio at or above this counts as a completed view
    skip_max_watch_ratio: float = 0.2  # watch_ratio below this counts as a skip
    num_categories: int = 31  # length of the category-affinity vector (KuaiRec tags 0..30)
    continuation_gap_s: float = (
        60.0  # a next view starting this soon after a view ends continues the session
    )
    short_term_views: int = 50  # the short-term user horizon: the user's last N views
    sequence_length: int = 50  # videos kept in a user's sequence (the sequence models' input)
    top_categories: int = 5  # categories kept in a user's top-category list
    # The fatigue horizon: the user's last N views, over which `recent_category_share` counts
    # each category. Short on purpose: fatigue is a binge of one category now, not a taste
    # (`category_affinity` covers 28 days); 20 is a few minutes of a short-video session.
    fatigue_views: int = 20
    # Comparable videos for the normalized performance (the cold-start signal): same duration
    # bucket (seconds) and same age bucket (days since upload) on the same day.
    duration_buckets_s: tuple[float, ...] = (15.0, 30.0, 60.0, 120.0, 300.0)
    age_buckets_days: tuple[float, ...] = (1.0, 3.0, 7.0, 14.0, 28.0)
    # Point-in-time join of training sets: "feast" (its file offline store, fine for small
    # sets), "spark" (features/pit_join.py: 1M label rows in ~1.5 min where Feast's takes
    # over 20), or "auto": Spark above `training_join_spark_rows` entity rows, Feast up to it.
    # Both give the same values on every row Feast returns (bench/training_set.py compares
    # 50,000 sampled rows; tests/test_pit_join.py every row of a small set); at 50,000 rows
    # Feast already takes 252 s to Spark's 46 s, while a few thousand rows are not worth a JVM.
    training_join: str = "auto"
    training_join_spark_rows: int = 20_000


@dataclass(frozen=True)
class RankerConfig:
    epochs: int = 6
    # Early stopping on validation NDCG@10, the best epoch's weights kept (as the sequence
    # models do): on KuaiRand-1K the first epoch was the best (0.0188) and the sixth, which
    # was kept before, 0.0131.
    patience: int = 3
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    embedding_dim: int = 32
    hidden_dim: int = 128
    # Unexposed videos sampled per logged view: without them the ranker only learns
    # "how long will they watch, given it was shown" and cannot rank a whole catalog.
    negatives_per_positive: int = 3
    # The training set's bound, so that a release does not mean 50M examples an epoch: the
    # last `train_days` labelled days before the validation day (0: all of them), and of their
    # views a uniform sample (seeded) of at most `max_train_views` (0: all), each with its
    # negatives. 250,000 views make 1M training rows; KuaiRec's 28 days hold ~5.8M views.
    # MLflow logs both, with the views there were and the views kept.
    train_days: int = 28
    max_train_views: int = 250_000
    # Training wall time (0: no bound), as `sequence.max_train_minutes`: no epoch starts after
    # this many minutes, validation included (logged `stopped_by_time_budget`). At 1/8 of
    # KuaiRec the 1M-row epochs took 250-460 s on two shared cores, so 6 epochs alone would
    # take 25-45 minutes of a run; the demo's ranker trains in well under a minute.
    max_train_minutes: float = 15.0
    # Evaluation ranks every video of the day's catalog. At most this many videos, all pass
    # through the heads; a larger catalog is ranked as the product serves it, in two stages:
    # a first stage pools each user's `eval_rerank_depth` unseen videos as the export's
    # candidates do (half by the towers' dot product, up to a quarter from the user's top
    # categories, the most popular filling the rest), the heads order them, the rest rank
    # after them. KuaiRand-1K's 1,000 users x 4.37M videos are 4.4B pairs through the heads
    # otherwise, and the dot product alone held 0.03% of the relevant videos in its 2,000.
    eval_rerank_depth: int = 2000
    watch_ratio_cap: float = 2.0  # watch time head predicts min(watch_ratio, cap) / cap
    # Final score = weighted heads minus the skip penalty and the fatigue penalty (heads are
    # all in [0, 1]; fatigue is the user's recent share of the video's category, in [0, 1]).
    weight_watch_time: float = 0.4
    weight_completion: float = 0.2
    weight_rewatch: float = 0.15
    weight_continuation: float = 0.15
    weight_skip_penalty: float = 0.05
    weight_fatigue_penalty: float = 0.05
    seed: int = 0


@dataclass(frozen=True)
class SequenceConfig:
    """The sequence models (GRU4Rec, SASRec, BERT4Rec, the distilled student) in the pipeline;
    they read `features.sequence_length` items, the same sequences Feast serves online."""

    # 0 keeps each model's tuned default (its class's `trainer_defaults`, models/gru.py ...): the
    # knobs a pipeline owner turns to trade training time for accuracy.
    epochs: int = 0
    patience: int = 0
    batch_size: int = 0
    seed: int = 0
    # Training windows per epoch, a fresh random draw each epoch (0: all). A release's users
    # have long histories: 1/8 of KuaiRec made 31k windows of 50 views, an epoch of SASRec
    # took 240 s, and 40 epochs of four models cannot fit a night. MovieLens-100K (about 2.5k
    # windows) and the demo (about 3.3k) train on all of theirs.
    max_windows_per_epoch: int = 8_000
    # Each model's training wall time (0: no bound): no epoch starts after this many minutes
    # (validation included; the best epoch is kept, logged `stopped_by_time_budget`). On the
    # demo's data SASRec, GRU4Rec and the student take 1-2 minutes each and BERT4Rec 4-8 (2
    # threads, bench/demo_seq.py at af63934): none reaches it; at 1/8 of KuaiRec an epoch takes
    # about a minute, and four models at up to 40-100 epochs would take most of a night.
    max_train_minutes: float = 15.0
    # The training loss (models/sampled.py). Up to this many videos, a full softmax over the
    # catalog; above, a sampled softmax over `sampled_negatives` negatives shared by each
    # batch, drawn by `negative_sampler`: "uniform", or "popularity" (in proportion to each
    # video's training views, logQ-corrected). The full softmax's (positions x videos) scores
    # grow with the catalog (one GRU epoch on generated MicroLens-100k, 19.7k videos, took over
    # 15 minutes; 2,048 random windows: 15 s at 10k videos, 145 s at 100k), the sampled one's
    # do not (about 3 s at 10k, 100k and 1M). The choice is saved in each model's config.
    # Popularity and 512 from MovieLens-100K, one seed, test NDCG@10 (masked) against the full
    # softmax: SASRec 0.105 (full 0.096; 128 popularity 0.084, 128 uniform 0.062), GRU4Rec
    # 0.071 (full 0.078; 128 uniform 0.053, 128 popularity 0.045). 10,000, not 50,000: on
    # generated MicroLens-100k (19.6k videos, 2 threads) one full-softmax pass of GRU4Rec took
    # 146 s against 75 s sampled, over the 2-minute budget (bench/results/microlens_pass.json).
    full_softmax_max_items: int = 10_000
    sampled_negatives: int = 512
    negative_sampler: str = "popularity"
    # Who shares the sampled negatives (models/sampled.py): "sequence", each training sequence
    # its own draw, or "batch", one draw for all its positions. On MovieLens-100K (SASRec, 128
    # popularity negatives, 5 seeds) the batch's draw kept 93.7% of the full softmax's masked
    # test NDCG@10, each sequence's 98.1% (bench/results/train_seq.json).
    negative_scope: str = "sequence"
    # The model the student distills (models/registry.py): sasrec or gru, left-to-right models
    # like the student (models/student.py).
    teacher: str = "sasrec"


@dataclass(frozen=True)
class GateConfig:
    metric: str = "ndcg@10"  # the holdout metric the promotion gate compares
    min_improvement: float = 0.0  # a challenger must beat the champion by at least this


@dataclass(frozen=True)
class ExportConfig:
    candidates_per_user: int = 20  # K: rows per user in the candidate table
    # The video index (jobs/ann.py). Up to this many videos it is exact (IndexFlatIP): at 50k
    # (dim 64, 2 threads) exact search answers about 1,500 batched queries/s, 100k users in
    # about a minute, with nothing to train and recall 1; above, an IVF index is tuned.
    exact_max_videos: int = 50_000
    recall_floor: float = 0.95  # recall@recall_k against exact search below this: not exported
    recall_k: int = 10
    recall_queries: int = 1_000  # user queries sampled to measure recall on
    ivf_nlist: int = 0  # IVF lists; 0: about 4·sqrt(videos), a power of two (4,096 at 1M)
    # nprobe values tried in order, the first reaching the floor kept. The top rung scans 1/16
    # of a 1M catalog's 4,096 lists; an index that needs more is refused: uniform random
    # vectors at 1M need 2,048, no faster than exact search (bench/faiss_index.py).
    nprobe_ladder: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    index_threads: int = 0  # faiss threads; 0: every core


@dataclass(frozen=True)
class CandidateConfig:
    """The nightly candidate lists (jobs/candidates.py): sources, re-rank, exploration."""

    # The sequence model whose champion gives the ANN index its video embeddings and the users
    # their queries (any next-item model: gru, bert4rec, sasrec, student): the student by
    # default, the one built to be fast.
    embedding_model: str = "student"
    active_days: int = 28  # a user with a view in this many days gets a personal list
    ann_candidates: int = 100  # nearest videos per user from the index
    trending_candidates: int = 30  # top trend_velocity videos offered to everyone
    affinity_candidates: int = 10  # best-performing videos of each of the user's top categories
    # MMR: lambda * relevance - (1 - lambda) * (same category as a video already chosen);
    # over embeddings (cosine) where a dataset has no categories.
    mmr_lambda: float = 0.7
    max_share_per_category: float = 0.3  # fatigue cap: at most this share of a list per category
    exploration_share: float = 0.15  # share of each list reserved for new and little-seen videos


@dataclass(frozen=True)
class ColdStartConfig:
    """A new video's first days (jobs/cold_start.py): a random cohort sees it; its normalized
    performance (against comparable videos, features/compute.py) grows or stops it."""

    new_video_hours: float = 24.0  # uploaded (or first seen) this recently: a new video
    cohort_users: int = 500  # users in a new video's first random exposure cohort
    expansion_threshold: float = 1.2  # normalized performance at or above this: grow
    expansion_factor: float = 2.0  # the cohort's growth per good day
    seed: int = 0


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[2]"
    driver_memory: str = "4g"
    shuffle_partitions: int = 4  # small on one machine: the default 200 is pure overhead
    # Parser of large interaction logs: "arrow" (Arrow's CSV parser in the Python workers,
    # several times faster) or "spark" (the built-in CSV reader).
    csv_engine: str = "arrow"


@dataclass(frozen=True)
class RunConfig:
    """`reelflow run`: a plan longer than `max_days` days is refused unless --start/--end
    say so (a stray far-off timestamp must not plan tens of thousands of DAG runs). The plan's
    days go through the daily DAG in ranges of up to `range_days` days, one DAG run each (its
    `through` param): one Spark job per stage and range, not per day, so a first load of a long
    history costs about one pass over it (MovieLens-100K's 213 days: a minute of Spark a day's
    run otherwise costs). 1: a DAG run per day, as the scheduler makes them."""

    max_days: int = 400
    range_days: int = 31


@dataclass(frozen=True)
class Config:
    quality: QualityConfig = field(default_factory=QualityConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse(value: str, typ: type, name: str, default: Any = None) -> Any:
    try:
        if typ is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if typ is tuple:  # comma-separated numbers, e.g. "15,30,60", typed like the default
            item = type(default[0]) if default else float
            return tuple(item(v) for v in value.split(",") if v.strip())
        return typ(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a valid {typ.__name__}") from None


def load_config(environ: dict[str, str] | None = None) -> Config:
    """Defaults overridden by `REELFLOW_<SECTION>__<FIELD>` environment variables."""
    environ = dict(os.environ if environ is None else environ)
    sections: dict[str, Any] = {}
    known = {f.name: f for f in dataclasses.fields(Config)}
    for key, value in environ.items():
        if not key.startswith("REELFLOW_") or "__" not in key:
            continue
        section_name, _, field_name = key[len("REELFLOW_") :].lower().partition("__")
        if section_name not in known:
            raise ValueError(
                f"{key}: unknown config section {section_name!r} (known: {sorted(known)})"
            )
        section_cls = known[section_name].default_factory  # type: ignore[misc]
        fields = {f.name: f for f in dataclasses.fields(section_cls)}
        if field_name not in fields:
            raise ValueError(f"{key}: unknown field {field_name!r} of section {section_name!r}")
        default = getattr(section_cls(), field_name)
        sections.setdefault(section_name, {})[field_name] = _parse(
            value, type(default), key, default
        )
    return Config(
        **{
            name: known[name].default_factory(**overrides)  # type: ignore[misc]
            for name, overrides in sections.items()
        }
    )
