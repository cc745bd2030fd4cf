"""Deterministic synthetic KuaiRec 2.0 data, written in the dataset's native file formats,
and the simulation core shared by the KuaiRand and MicroLens generators.

`generate(dataset, out_dir, scale, seed, variant)` dispatches to `generate_kuairec` (here),
`jobs.synthetic_kuairand.generate_kuairand` and `jobs.synthetic_microlens.generate_microlens`.

The real KuaiRec files are large and cannot ship with the project, so tests, demos and
benchmarks run on this generator instead. It writes the five files the pipeline ingests
(`big_matrix.csv`, `small_matrix.csv`, `item_categories.csv`, `user_features.csv`,
`kuairec_caption_category.csv`) with the real files' exact headers and quirks, plus
`reelflow_manifest.json` that says how many rows (valid and bad) each UTC day holds, so that
ingest and data-quality jobs can be checked against known answers.

The interactions are simulated from a small latent world (see `build_world`) so that a
recommender has something to learn: popularity is Zipf-skewed, each user prefers a few
categories, watch ratios rise with taste and fall with duration, new videos appear mid-period.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    users: int  # users in big_matrix.csv and user_features.csv (ids 0..users-1)
    videos: int  # videos in item_categories.csv and the caption file (ids 0..videos-1)
    days: int  # consecutive UTC days of interactions, starting at start_date
    views_per_user_day: float  # mean views per user per day (mean of the activity levels)
    small_matrix_users: int = 0  # users in the fully observed small_matrix.csv block (KuaiRec)
    small_matrix_videos: int = 0  # videos in the fully observed small_matrix.csv block (KuaiRec)


SCALES: dict[str, Scale] = {
    "tiny": Scale(120, 400, 4, 12, 30, 60),
    # The former "small" (byte-identical output): the KuaiRec demo's numbers are measured on it.
    "demo": Scale(800, 2000, 7, 20, 150, 300),
    # ~1M big_matrix rows (5,000 users x 10 days x 20 views), for throughput benchmarks.
    "small": Scale(5000, 8000, 10, 20, 400, 800),
    # The real release's users, videos and ~12.5M big_matrix rows (7,176 x 14 days x 125).
    "full": Scale(7176, 10728, 14, 125, 1411, 3327),
}

# --------------------------------------------------------------------------------------------
# Knobs of the simulation (each one says why it has the value it has)
# --------------------------------------------------------------------------------------------

# KuaiRec's item_categories.csv uses tag ids 0..30: 31 categories.
N_CATEGORIES = 31
# Category sizes follow a Zipf law over a random order of the 31 categories: the real file's
# biggest category holds ~17% of the videos and the smallest a handful.
CATEGORY_SIZE_EXPONENT = 0.9
# Share of videos with 1, 2, 3 tags (the real file: ~84% / 15% / 2%).
TAG_COUNT_PROBS = (0.83, 0.15, 0.02)

# Video popularity ~ 1 / rank**1.0 over a random permutation of the videos: a few hits get
# most of the exposure, as on every short-video platform.
POPULARITY_EXPONENT = 1.0
# Video durations: log-normal, median 20 s, clipped to 5 s - 300 s (short-video range).
DURATION_MEDIAN_MS = 20_000
DURATION_LOG_SIGMA = 0.75
DURATION_MIN_MS = 5_000
DURATION_MAX_MS = 300_000
# ~15% of the videos are uploaded on a later day of the period (cold start for new items).
NEW_VIDEO_SHARE = 0.15

# User tastes ~ Dirichlet(0.3) over the 31 categories: sparse, so each user likes a few.
TASTE_CONCENTRATION = 0.3
# Activity level ~ log-normal with this sigma, rescaled so its mean is views_per_user_day:
# a long tail of heavy users, as in real logs.
ACTIVITY_LOG_SIGMA = 0.5
# Day-to-day mood: each user-day's expected views are scaled by a mean-1 log-normal.
DAY_MOOD_LOG_SIGMA = 0.3
# Preferred active hour (local, UTC+8): most users watch in the evening, some at lunch, a few
# at any hour; sessions start within ~1.5 h of the user's preferred hour.
ACTIVE_HOUR_MIXTURE = ((0.6, 21.0, 1.5), (0.25, 12.5, 1.5))  # (weight, mean hour, sd hours)
SESSION_START_SD_HOURS = 1.5
MAX_SESSIONS_PER_DAY = 3  # 1-3 sessions per user-day
# Next view starts after the previous view's play_duration plus 1-8 s of swiping.
SWIPE_GAP_MS = (1_000, 8_000)
# Sessions of one user-day never overlap: at least 10 minutes between them.
SESSION_BREAK_MS = 10 * 60_000

# Exposure: P(video | user, day) ∝ popularity**EXPOSURE_POPULARITY_POWER
#     * (TASTE_FLOOR + taste[user, primary_category])**EXPOSURE_TASTE_POWER, over the videos
# uploaded by that day. Both powers matter (measured at scale "small", seed 0): hits dominate
# exposure (the top 10% of videos get ~43% of the views) while each user's favourite category
# gets ~5x its global share of views, so "popular within the user's categories" beats global
# popularity on a held-out last day (hit@50 0.17 vs 0.13). The power above 1 on popularity
# makes up for the no-repeat rule below, which spreads heavy users over the tail. The floor
# keeps every category reachable (exploration).
EXPOSURE_POPULARITY_POWER = 1.4
EXPOSURE_TASTE_POWER = 1.5
TASTE_FLOOR = 0.01
# A user is not shown the same video twice by the simulated recommender: colliding draws are
# re-drawn this many rounds (leftovers stay as natural repeats) ...
MAX_REDRAW_ROUNDS = 10
# ... and then this share of views are deliberate re-watches of a video the user saw earlier
# (the real big_matrix has repeat views of the same (user, video) pair).
REWATCH_SHARE = 0.03

# watch_ratio ~ log-normal: median WATCH_RATIO_BASE for a disliked category at 20 s, times
# exp(WATCH_RATIO_TASTE_LIFT * affinity) (affinity = taste / user's top taste, in 0..1),
# times (duration / 20 s) ** -WATCH_RATIO_DURATION_DROP (long videos are abandoned earlier).
WATCH_RATIO_BASE = 0.5
WATCH_RATIO_TASTE_LIFT = 0.9
WATCH_RATIO_DURATION_DROP = 0.3
WATCH_RATIO_LOG_SIGMA = 0.55
# Looping: a few views replay the video several times (watch_ratio > 5 happens in KuaiRec),
# more often for liked, short videos.
LOOP_BASE_PROB = 0.005
LOOP_LIKED_SHORT_PROB = 0.03
LOOP_FACTOR = (3.0, 7.0)

# Bad rows in big_matrix.csv: ~0.5% of the rows, split evenly over five known kinds, so the
# data-quality checks downstream have something to catch and a known count to match.
BAD_ROW_SHARE = 0.005
BAD_ROW_KINDS = (
    "missing_user_id",  # user_id left empty
    "non_numeric_play_duration",  # play_duration is text ("abc")
    "negative_video_duration",  # video_duration < 0, so watch_ratio < 0 too
    "watch_ratio_out_of_range",  # watch_ratio = 1e6
    "duplicate",  # exact copy of a valid row, right after it
)
NON_NUMERIC_PLAY_DURATION = "abc"
OUT_OF_RANGE_WATCH_RATIO = 1e6

# small_matrix.csv: ~0.5% of its rows have empty time/date/timestamp (NaN in the real file).
SMALL_MATRIX_MISSING_TIME_SHARE = 0.005

# Captions: the real file has four captions with a bare \r; we write four too, two of them in
# an unquoted field (exactly like the real file) and two in a quoted field (they hold a comma).
CAPTIONS_WITH_CARRIAGE_RETURN = 4

MANIFEST_NAME = "reelflow_manifest.json"

DAY_MS = 86_400_000
UTC8_OFFSET_MS = 8 * 3_600_000  # KuaiRec's `time` and `date` columns are Beijing time

MATRIX_COLUMNS = (
    "user_id",
    "video_id",
    "play_duration",
    "video_duration",
    "time",
    "date",
    "timestamp",
    "watch_ratio",
)
USER_FEATURE_COLUMNS = (
    "user_id",
    "user_active_degree",
    "is_lowactive_period",
    "is_live_streamer",
    "is_video_author",
    "follow_user_num",
    "follow_user_num_range",
    "fans_user_num",
    "fans_user_num_range",
    "friend_user_num",
    "friend_user_num_range",
    "register_days",
    "register_days_range",
    *(f"onehot_feat{i}" for i in range(18)),
)
CAPTION_COLUMNS = (
    "video_id",
    "manual_cover_text",
    "caption",
    "topic_tag",
    "first_level_category_id",
    "first_level_category_name",
    "second_level_category_id",
    "second_level_category_name",
    "third_level_category_id",
    "third_level_category_name",
)
MISSING_CATEGORY_ID = "-124"  # KuaiRec's sentinel for "no category at this level"
MISSING_NAME = "UNKNOWN"


@dataclass(frozen=True)
class Platform:
    """What a platform's catalog looks like. The defaults are KuaiRec's knobs above; the KuaiRand
    and MicroLens generators pass their own (more tags, longer videos)."""

    categories: int = N_CATEGORIES
    category_size_exponent: float = CATEGORY_SIZE_EXPONENT
    tag_count_probs: tuple[float, ...] = TAG_COUNT_PROBS
    popularity_exponent: float = POPULARITY_EXPONENT
    duration_median_ms: float = DURATION_MEDIAN_MS
    duration_log_sigma: float = DURATION_LOG_SIGMA
    duration_min_ms: float = DURATION_MIN_MS
    duration_max_ms: float = DURATION_MAX_MS
    new_video_share: float = NEW_VIDEO_SHARE
    # Dirichlet concentration of user tastes: with more categories it must be lower for users
    # to stay as focused (sum over categories ~9 for KuaiRec's 31 x 0.3).
    taste_concentration: float = TASTE_CONCENTRATION
    # Draw the extra tags of all videos at once (fast on catalogs of millions of videos). KuaiRec
    # keeps its per-video draws so that its output stays byte-identical.
    vectorized_tags: bool = False


KUAIREC = Platform()

# --------------------------------------------------------------------------------------------
# The latent world
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Catalog:
    popularity: np.ndarray  # (videos,) Zipf weight, 1 / rank
    duration_ms: np.ndarray  # (videos,) int64
    tags: list[list[int]]  # per video, 1-3 tag ids; the first is the primary category
    primary_category: np.ndarray  # (videos,) int64, tags[v][0]
    upload_day: np.ndarray  # (videos,) int64, first day index the video can be viewed


@dataclass(frozen=True, eq=False)
class Audience:
    taste: np.ndarray  # (users, categories), rows sum to 1
    activity: np.ndarray  # (users,) expected views per day
    active_hour: np.ndarray  # (users,) preferred local (UTC+8) hour, 0..24


@dataclass(frozen=True, eq=False)
class World:
    scale: Scale
    catalog: Catalog
    audience: Audience
    platform: Platform = KUAIREC


def streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent random streams, so changing one part of the simulation leaves the rest.

    Child i of a SeedSequence does not depend on how many children are spawned, so names can
    be appended without changing the existing streams."""
    names = ("catalog", "audience", "views", "small_matrix", "bad_rows", "side_files", "extra")
    return dict(zip(names, np.random.default_rng(seed).spawn(len(names)), strict=True))


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights 1 / rank**exponent, with ranks given to the n items in a random order."""
    rank = rng.permutation(n) + 1
    return 1.0 / rank.astype(np.float64) ** exponent


def some_rows(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """A random mask with round(share * n) rows set, at least one."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=min(n, max(1, round(share * n))), replace=False)] = True
    return mask


def _draw_extra_tags(
    tags: list[list[int]],
    primary: np.ndarray,
    tag_count: np.ndarray,
    category_p: np.ndarray,
    rng: np.random.Generator,
    chunk: int = 100_000,
) -> None:
    """Append tag_count - 1 distinct extra tags to each video's list (in place), drawn like
    rng.choice(p=category_p, replace=False) without the primary: the smallest keys
    Exp(1) / p (Efraimidis-Spirakis), for all multi-tag videos at once."""
    multi = np.flatnonzero(tag_count > 1)
    most = int(tag_count.max()) - 1 if multi.size else 0
    for begin in range(0, multi.size, chunk):
        videos = multi[begin : begin + chunk]
        keys = rng.exponential(size=(videos.size, category_p.size)) / category_p
        keys[np.arange(videos.size), primary[videos]] = np.inf
        extra = np.argsort(keys, axis=1)[:, :most].tolist()
        for video, drawn in zip(videos.tolist(), extra, strict=True):
            tags[video].extend(drawn[: tag_count[video] - 1])


def _simulate_catalog(scale: Scale, rng: np.random.Generator, platform: Platform) -> Catalog:
    n_categories = platform.categories
    category_weight = zipf_weights(n_categories, platform.category_size_exponent, rng)
    category_p = category_weight / category_weight.sum()
    primary = rng.choice(n_categories, size=scale.videos, p=category_p)
    tag_probs = platform.tag_count_probs
    tag_count = rng.choice(len(tag_probs), size=scale.videos, p=tag_probs) + 1
    tags: list[list[int]] = [[video_primary] for video_primary in primary.tolist()]
    if platform.vectorized_tags:
        _draw_extra_tags(tags, primary, tag_count, category_p, rng)
    else:
        # Only multi-tag videos draw extra tags (a draw of size 0 consumes no random numbers,
        # so skipping single-tag videos is exact and faster).
        for video in np.flatnonzero(tag_count > 1).tolist():
            extra_p = category_p.copy()
            extra_p[primary[video]] = 0.0
            size = int(tag_count[video]) - 1
            p = extra_p / extra_p.sum()
            extra = rng.choice(n_categories, size=size, replace=False, p=p)
            tags[video].extend(extra.tolist())

    popularity = zipf_weights(scale.videos, platform.popularity_exponent, rng)
    log_duration = rng.normal(
        np.log(platform.duration_median_ms), platform.duration_log_sigma, scale.videos
    )
    duration_ms = np.clip(
        np.rint(np.exp(log_duration)), platform.duration_min_ms, platform.duration_max_ms
    )

    upload_day = np.zeros(scale.videos, dtype=np.int64)
    if scale.days > 1:
        is_new = rng.random(scale.videos) < platform.new_video_share
        upload_day[is_new] = rng.integers(1, scale.days, size=int(is_new.sum()))
    return Catalog(
        popularity=popularity,
        duration_ms=duration_ms.astype(np.int64),
        tags=tags,
        primary_category=primary.astype(np.int64),
        upload_day=upload_day,
    )


def _simulate_audience(scale: Scale, rng: np.random.Generator, platform: Platform) -> Audience:
    concentration = np.full(platform.categories, platform.taste_concentration)
    taste = rng.dirichlet(concentration, size=scale.users)
    activity = rng.lognormal(0.0, ACTIVITY_LOG_SIGMA, scale.users)
    activity *= scale.views_per_user_day / np.exp(ACTIVITY_LOG_SIGMA**2 / 2)  # mean = target

    weights = [w for w, _, _ in ACTIVE_HOUR_MIXTURE]
    component = rng.choice(len(weights) + 1, size=scale.users, p=[*weights, 1 - sum(weights)])
    active_hour = rng.uniform(0.0, 24.0, scale.users)  # last component: any hour
    for index, (_, mean, sd) in enumerate(ACTIVE_HOUR_MIXTURE):
        chosen = component == index
        active_hour[chosen] = rng.normal(mean, sd, int(chosen.sum()))
    return Audience(taste=taste, activity=activity, active_hour=np.mod(active_hour, 24.0))


def build_world(scale: Scale | str, seed: int = 0, platform: Platform = KUAIREC) -> World:
    """The latent videos and users behind `generate_kuairec(scale, seed)` (same seed, same world).

    Useful as ground truth: tests read upload days and tastes from it. The other datasets'
    generators build their worlds with it too, with their own Scale and Platform.
    """
    if isinstance(scale, str):
        scale = SCALES[scale]
    rngs = streams(seed)
    return World(
        scale=scale,
        catalog=_simulate_catalog(scale, rngs["catalog"], platform),
        audience=_simulate_audience(scale, rngs["audience"], platform),
        platform=platform,
    )


# --------------------------------------------------------------------------------------------
# Exposure: which video a user is shown
# --------------------------------------------------------------------------------------------


def _search_in_groups(cdf_with_offsets: np.ndarray, group: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling in many groups at once.

    `cdf_with_offsets` holds each group's cumulative probabilities (ending at exactly 1) plus the
    group's index, concatenated; a draw `u` in [0, 1) for group g is looked up at g + u.
    """
    keys = group + u
    # Searching sorted keys is ~10x faster on large tables (cache-friendly); same result.
    order = np.argsort(keys, kind="stable")
    position = np.empty(keys.size, dtype=np.int64)
    position[order] = np.searchsorted(cdf_with_offsets, keys[order], side="right")
    return position


def _normalised_cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, axis=-1)
    total = cdf[..., -1:]
    cdf = np.divide(cdf, total, out=np.zeros_like(cdf), where=total > 0)
    cdf[..., -1] = 1.0
    return cdf


class ExposureModel:
    """P(video | user, day) ∝ popularity**a * (floor + taste[user, category])**b over the videos
    uploaded by that day, sampled exactly in two steps: the category (a 31-way choice per
    user-day), then the video within (day, category) by popularity. With a = b = 0 it is the
    uniform draw over the videos uploaded by that day (KuaiRand's random exposures)."""

    def __init__(
        self,
        world: World,
        popularity_power: float = EXPOSURE_POPULARITY_POWER,
        taste_power: float = EXPOSURE_TASTE_POWER,
    ) -> None:
        scale, catalog = world.scale, world.catalog
        n_categories = self.n_categories = world.platform.categories
        self.days = scale.days
        video_weight = catalog.popularity**popularity_power

        # Videos grouped by (day, primary category), group index day * n_categories + category.
        members: list[np.ndarray] = []
        group_size = np.zeros(scale.days * n_categories, dtype=np.int64)
        category_mass = np.zeros((scale.days, n_categories))
        for day in range(scale.days):
            available = np.flatnonzero(catalog.upload_day <= day)
            by_category = available[np.argsort(catalog.primary_category[available], kind="stable")]
            members.append(by_category)
            categories = catalog.primary_category[by_category]
            group_size[day * n_categories : (day + 1) * n_categories] = np.bincount(
                categories, minlength=n_categories
            )
            category_mass[day] = np.bincount(
                categories, weights=video_weight[by_category], minlength=n_categories
            )
        self.group_video = np.concatenate(members)
        self.group_start = np.concatenate([[0], np.cumsum(group_size)])
        group_of_member = np.repeat(np.arange(group_size.size), group_size)
        member_weight = video_weight[self.group_video]
        within = np.cumsum(member_weight)
        before_group = np.concatenate([[0.0], within])[self.group_start[:-1]][group_of_member]
        mass = category_mass.ravel()[group_of_member]
        cdf = (within - before_group) / mass
        last_in_group = self.group_start[1:][group_size > 0] - 1
        cdf[last_in_group] = 1.0
        self.video_cdf = cdf + group_of_member

        # Category weight of user-day (user * days + day) = taste_weight[user] * mass[day]; the
        # per-user-day table is built in `sample` for the user-days drawn only (a full table
        # would take users * days * categories floats: gigabytes for MicroLens or KuaiRand).
        self.taste_weight = (TASTE_FLOOR + world.audience.taste) ** taste_power
        self.category_mass = category_mass

    def sample(self, user_day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Keep draws away from 1 so that g + u never rounds up into the next group.
        u = np.minimum(rng.random((2, user_day.size)), 1.0 - 1e-9)
        n_categories = self.n_categories
        rows, row_of = np.unique(user_day, return_inverse=True)
        weight = self.taste_weight[rows // self.days] * self.category_mass[rows % self.days]
        # Each row's CDF is offset by its user-day index: a draw for user-day g looks up g + u.
        category_cdf = (_normalised_cdf(weight) + rows[:, None]).ravel()
        position = _search_in_groups(category_cdf, user_day, u[0])
        category = np.clip(position - row_of * n_categories, 0, n_categories - 1)
        # A zero-weight category can only come out of float rounding: use the heaviest instead.
        impossible = weight[row_of, category] <= 0
        category[impossible] = np.argmax(weight[row_of[impossible]], axis=1)

        group = (user_day % self.days) * n_categories + category
        position = _search_in_groups(self.video_cdf, group, u[1])
        position = np.clip(position, self.group_start[group], self.group_start[group + 1] - 1)
        return self.group_video[position]


# --------------------------------------------------------------------------------------------
# Interactions (the simulation core, shared by all datasets)
# --------------------------------------------------------------------------------------------


def taste_affinity(taste: np.ndarray) -> np.ndarray:
    """Taste relative to the user's favourite category: 1 for the favourite, ~0 for the rest."""
    return taste / taste.max(axis=1, keepdims=True)


def simulate_watch_ratio(
    rng: np.random.Generator,
    affinity: np.ndarray,
    duration_ms: np.ndarray,
    reference_ms: float = DURATION_MEDIAN_MS,
) -> np.ndarray:
    """Watch ratio per view; `reference_ms` is the platform's median duration (the duration at
    which the ratio is not scaled, and below which loops are more likely)."""
    log_median = (
        np.log(WATCH_RATIO_BASE)
        + WATCH_RATIO_TASTE_LIFT * affinity
        - WATCH_RATIO_DURATION_DROP * np.log(duration_ms / reference_ms)
    )
    watch_ratio = np.exp(log_median + rng.normal(0.0, WATCH_RATIO_LOG_SIGMA, affinity.size))
    is_short = duration_ms < reference_ms
    loop_prob = LOOP_BASE_PROB + LOOP_LIKED_SHORT_PROB * affinity * is_short
    loops = rng.random(affinity.size) < loop_prob
    watch_ratio[loops] *= rng.uniform(*LOOP_FACTOR, size=int(loops.sum()))
    return watch_ratio


def play_duration_ms(watch_ratio: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    return np.rint(watch_ratio * duration_ms).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Views:
    user_id: np.ndarray  # int64, sorted
    video_id: np.ndarray  # int64
    play_duration: np.ndarray  # int64 ms
    video_duration: np.ndarray  # int64 ms
    timestamp_ms: np.ndarray  # int64 epoch ms (UTC), increasing within a user


def first_of_runs(key: np.ndarray) -> np.ndarray:
    """Boolean mask: True where a run of equal consecutive keys starts."""
    starts = np.ones(key.size, dtype=bool)
    starts[1:] = key[1:] != key[:-1]
    return starts


def day_moods(world: World, rng: np.random.Generator) -> np.ndarray:
    """(users, days) mean-1 log-normal factors on each user-day's expected views."""
    scale = world.scale
    return rng.lognormal(
        -(DAY_MOOD_LOG_SIGMA**2) / 2, DAY_MOOD_LOG_SIGMA, (scale.users, scale.days)
    )


def split_sessions(
    views_per_user_day: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows for the given view counts per user-day (index user * days + day), in row order user,
    day, time; returns (user_day per row, sessions per user-day, session index per row): each
    user-day's views are split into 1-3 consecutive sessions at random cut points."""
    n_user_days = views_per_user_day.size
    user_day = np.repeat(np.arange(n_user_days), views_per_user_day)
    sessions_per_user_day = np.minimum(
        rng.integers(1, MAX_SESSIONS_PER_DAY + 1, n_user_days), np.maximum(views_per_user_day, 1)
    )
    # user_day is sorted, so sorting u + user_day sorts the uniform draws within each user-day.
    cut = np.sort(rng.random(user_day.size) + user_day) - user_day
    n_sessions = sessions_per_user_day[user_day]
    session = np.minimum(np.floor(cut * n_sessions).astype(np.int64), n_sessions - 1)
    return user_day, sessions_per_user_day, session


def choose_videos(
    world: World,
    user_day: np.ndarray,
    rng: np.random.Generator,
    forbidden_users: np.ndarray | None = None,
    forbidden_videos: np.ndarray | None = None,
) -> np.ndarray:
    """Exposure draws without repeats (per user) and without the forbidden (user, video) pairs
    (KuaiRec keeps the small_matrix block's pairs out of big_matrix so that the fully observed
    block stays a clean evaluation set); -1 where a forbidden pair could not be avoided."""
    empty = np.zeros(0, dtype=np.int64)
    forbidden_users = empty if forbidden_users is None else forbidden_users
    forbidden_videos = empty if forbidden_videos is None else forbidden_videos
    exposure = ExposureModel(world)
    # Heavy users exhaust the hits of their favourite categories; redraws then go to the long
    # tail of those categories (popularity ignored), as a feed does when it runs out of hits.
    long_tail = ExposureModel(world, popularity_power=0.0)
    user = user_day // world.scale.days
    video = exposure.sample(user_day, rng)
    forbidden_user_mask = np.zeros(world.scale.users, dtype=bool)
    forbidden_user_mask[forbidden_users] = True
    forbidden_video_mask = np.zeros(world.scale.videos, dtype=bool)
    forbidden_video_mask[forbidden_videos] = True
    is_forbidden_user = forbidden_user_mask[user]
    check = np.ones(user.size, dtype=bool)  # rows of the users whose views changed last round
    for round_ in range(2 * MAX_REDRAW_ROUNDS):
        rows = np.flatnonzero(check)
        key = user[rows] * world.scale.videos + video[rows]
        seen = pd.Series(key).duplicated(keep="first").to_numpy()
        redraw = rows[seen | (is_forbidden_user[rows] & forbidden_video_mask[video[rows]])]
        if redraw.size == 0:
            break
        model = exposure if round_ < MAX_REDRAW_ROUNDS else long_tail
        video[redraw] = model.sample(user_day[redraw], rng)
        touched_users = np.zeros(world.scale.users, dtype=bool)
        touched_users[user[redraw]] = True
        check = touched_users[user]
    # Mark what is still forbidden after the rounds (practically never happens) with -1.
    video[is_forbidden_user & forbidden_video_mask[video]] = -1
    return video


def add_rewatches(user: np.ndarray, video: np.ndarray, rng: np.random.Generator) -> None:
    """Replace REWATCH_SHARE of the views by a video the same user viewed earlier (in place);
    `user` must be sorted."""
    index = np.arange(user.size)
    first_of_user = np.maximum.accumulate(np.where(first_of_runs(user), index, 0))
    rewatch = (rng.random(user.size) < REWATCH_SHARE) & (index > first_of_user)
    offset = np.floor(rng.random(user.size) * (index - first_of_user)).astype(np.int64)
    earlier = (first_of_user + offset)[rewatch]
    # An earlier view may itself be a re-watch: follow the chain until nothing changes.
    while True:
        copied = video[earlier]
        if np.array_equal(copied, video[rewatch]):
            break
        video[rewatch] = copied


def view_times_in_day(
    world: World,
    user_day: np.ndarray,
    session: np.ndarray,
    sessions_per_user_day: np.ndarray,
    play_duration: np.ndarray,
    rng: np.random.Generator,
    origin_offset_ms: int = UTC8_OFFSET_MS,
) -> np.ndarray:
    """Milliseconds since the day's origin for each view (views sorted by user-day).

    A day's origin is UTC midnight for KuaiRec and MicroLens (origin_offset_ms = 8 h: the local
    UTC+8 clock runs 8 h ahead of it) and Beijing midnight for KuaiRand, whose log files are cut
    at Beijing dates (origin_offset_ms = 0)."""
    n_user_days = sessions_per_user_day.size
    step = play_duration + rng.integers(SWIPE_GAP_MS[0], SWIPE_GAP_MS[1] + 1, user_day.size)
    session_key = user_day * MAX_SESSIONS_PER_DAY + session
    session_first = first_of_runs(session_key)
    elapsed_before = np.cumsum(step) - step
    session_origin = elapsed_before[session_first][np.cumsum(session_first) - 1]
    offset_in_session = elapsed_before - session_origin
    session_length = np.bincount(
        session_key, weights=step, minlength=n_user_days * MAX_SESSIONS_PER_DAY
    ).astype(np.int64)
    session_length = session_length.reshape(n_user_days, MAX_SESSIONS_PER_DAY)

    # Sessions start around the user's preferred local hour, converted to time since the day's
    # origin; sessions that do not exist that day are pushed past the end so they sort last.
    user_of_day = np.arange(n_user_days) // world.scale.days
    local_hour = world.audience.active_hour[user_of_day][:, None] + rng.normal(
        0.0, SESSION_START_SD_HOURS, (n_user_days, MAX_SESSIONS_PER_DAY)
    )
    drawn = np.mod(np.rint(local_hour * 3_600_000).astype(np.int64) - origin_offset_ms, DAY_MS)
    exists = np.arange(MAX_SESSIONS_PER_DAY)[None, :] < sessions_per_user_day[:, None]
    drawn = np.sort(np.where(exists, drawn, 4 * DAY_MS), axis=1)
    start = drawn.copy()
    for k in range(1, MAX_SESSIONS_PER_DAY):
        previous_end = start[:, k - 1] + session_length[:, k - 1] + SESSION_BREAK_MS
        start[:, k] = np.maximum(drawn[:, k], previous_end)

    time_in_day = start.ravel()[session_key] + offset_in_session
    # Keep every view (and its playback) inside its day: shift the day's sessions earlier
    # if they run past midnight; squeeze them in the (rare) case they are longer than a day.
    day_first = first_of_runs(user_day)
    day_last = np.flatnonzero(np.r_[day_first[1:], True])
    first_time = time_in_day[day_first]
    end_time = time_in_day[day_last] + play_duration[day_last]
    run_of_view = np.cumsum(day_first) - 1
    span = end_time - first_time
    latest_end = DAY_MS - 1
    shift = np.maximum(end_time - latest_end, 0)
    too_long = span > latest_end
    squeezed = (time_in_day - first_time[run_of_view]) * (latest_end / np.maximum(span, 1))[
        run_of_view
    ]
    return np.where(
        too_long[run_of_view], squeezed.astype(np.int64), time_in_day - shift[run_of_view]
    )


def _simulate_big_matrix(
    world: World,
    rng: np.random.Generator,
    start_ms: int,
    small_users: np.ndarray,
    small_videos: np.ndarray,
) -> Views:
    scale = world.scale
    mood = day_moods(world, rng)
    views_per_user_day = rng.poisson(world.audience.activity[:, None] * mood).ravel()
    # Row order: user, then day, then time within the day (= big_matrix's sort order).
    user_day, sessions_per_user_day, session = split_sessions(views_per_user_day, rng)

    video = choose_videos(world, user_day, rng, small_users, small_videos)
    keep = video >= 0
    user_day, session, video = user_day[keep], session[keep], video[keep]
    user = user_day // scale.days
    add_rewatches(user, video, rng)

    catalog, audience = world.catalog, world.audience
    video_duration = catalog.duration_ms[video]
    affinity = taste_affinity(audience.taste)[user, catalog.primary_category[video]]
    play_duration = play_duration_ms(
        simulate_watch_ratio(rng, affinity, video_duration), video_duration
    )
    time_in_day = view_times_in_day(
        world, user_day, session, sessions_per_user_day, play_duration, rng
    )
    timestamp_ms = start_ms + (user_day % scale.days) * DAY_MS + time_in_day
    return Views(user, video, play_duration, video_duration, timestamp_ms)


def _simulate_small_matrix(
    world: World, rng: np.random.Generator, start_ms: int, users: np.ndarray, videos: np.ndarray
) -> Views:
    """Every (user, video) of the block once, in random order over the whole period."""
    n_users, n_videos = users.size, videos.size
    user = np.repeat(users, n_videos)
    video = rng.permuted(np.tile(videos, (n_users, 1)), axis=1).ravel()
    offsets = np.sort(rng.integers(0, world.scale.days * DAY_MS, (n_users, n_videos)), axis=1)
    video_duration = world.catalog.duration_ms[video]
    affinity = taste_affinity(world.audience.taste)[user, world.catalog.primary_category[video]]
    watch_ratio = simulate_watch_ratio(rng, affinity, video_duration)
    return Views(
        user,
        video,
        play_duration_ms(watch_ratio, video_duration),
        video_duration,
        start_ms + offsets.ravel(),
    )


# --------------------------------------------------------------------------------------------
# Formatting, exactly as the real files write their values
# --------------------------------------------------------------------------------------------

# KuaiRec writes times with the shortest fraction (float style): .438, .5, .32 and .0 for a
# whole second. Parsers must accept 1-3 fractional digits, as for the real file.
_FRACTION = np.array(["." + (f"{ms:03d}".rstrip("0") or "0") for ms in range(1000)], dtype=object)
_CLOCK = np.array(
    [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)], dtype=object
)


def int_text(values: np.ndarray) -> np.ndarray:
    """Decimal text of each integer, as an object array (so that columns can be concatenated)."""
    return np.array(list(map(str, values.tolist())), dtype=object)


def join_lines(columns: list[np.ndarray], sep: str = ",", newline: str = "\n") -> str:
    """Text lines from columns of equal length (object arrays of str), one line per row."""
    lines = zip(*(column.tolist() for column in columns), strict=True)
    return newline.join(map(sep.join, lines)) + newline


def write_table(
    path: Path,
    header: str | None,
    n_rows: int,
    columns: Callable[[slice], list[np.ndarray]],
    sep: str = ",",
    newline: str = "\n",
    chunk_rows: int = 500_000,
) -> None:
    """Write a header line (unless None) and n_rows lines; `columns(rows)` gives the text columns
    of a slice of rows. Chunked: the text of millions of rows at once would not fit in memory."""
    with path.open("w", encoding="utf-8", newline="") as out:
        if header is not None:
            out.write(header + newline)
        for begin in range(0, n_rows, chunk_rows):
            rows = slice(begin, min(begin + chunk_rows, n_rows))
            out.write(join_lines(columns(rows), sep, newline))


def _matrix_chunk(
    views: Views,
    watch_ratio: np.ndarray,
    rows: slice,
    date_suffix: str,
    overrides: dict[str, tuple[np.ndarray, str]],
) -> str:
    """CSV lines for `rows` of a big/small matrix (no field of these files ever needs quoting)."""
    timestamp_ms = views.timestamp_ms[rows]
    # `time` and `date` are Beijing wall-clock time (UTC+8) of the UTC instant in `timestamp`.
    local_ms = timestamp_ms + UTC8_OFFSET_MS
    local_day = local_ms // DAY_MS
    first_day = int(local_day.min())
    iso_days = [
        str(day) for day in np.arange(first_day, local_day.max() + 1).astype("datetime64[D]")
    ]
    day_prefix = np.array([f"{day} " for day in iso_days], dtype=object)
    yyyymmdd = np.array([day.replace("-", "") + date_suffix for day in iso_days], dtype=object)
    columns = {
        "user_id": int_text(views.user_id[rows]),
        "video_id": int_text(views.video_id[rows]),
        "play_duration": int_text(views.play_duration[rows]),
        "video_duration": int_text(views.video_duration[rows]),
        "time": day_prefix[local_day - first_day]
        + _CLOCK[local_ms % DAY_MS // 1000]
        + _FRACTION[local_ms % 1000],
        "date": yyyymmdd[local_day - first_day],
        # Epoch seconds written as a float's repr: 1593878903.438, 1593882000.0.
        "timestamp": int_text(timestamp_ms // 1000) + _FRACTION[timestamp_ms % 1000],
        "watch_ratio": watch_ratio[rows].astype(str).astype(object),  # repr of each float
    }
    for name, (mask, text) in overrides.items():
        columns[name][mask[rows]] = text
    return join_lines(list(columns.values()))


def _write_matrix(
    path: Path,
    views: Views,
    watch_ratio: np.ndarray,
    date_suffix: str = "",
    overrides: dict[str, tuple[np.ndarray, str]] | None = None,
    chunk_rows: int = 1_000_000,
) -> None:
    """Write a big/small matrix; `overrides` maps a column to (row mask, text written instead)."""
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(",".join(MATRIX_COLUMNS) + "\n")
        for begin in range(0, views.user_id.size, chunk_rows):
            rows = slice(begin, begin + chunk_rows)
            out.write(_matrix_chunk(views, watch_ratio, rows, date_suffix, overrides or {}))


def csv_field(value: str) -> str:
    r"""Quote like KuaiRec's files: only fields holding a comma, a double quote or a newline.

    A bare \r does not trigger quoting: the real caption file has unquoted bare \r characters.
    """
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _write_rows(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(",".join(header) + "\n")
        for row in rows:
            out.write(",".join(csv_field(value) for value in row) + "\n")


# --------------------------------------------------------------------------------------------
# big_matrix.csv with bad rows
# --------------------------------------------------------------------------------------------


def plan_bad_rows(
    n: int, kinds: tuple[str, ...], rng: np.random.Generator, share: float = BAD_ROW_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of a log of n valid rows to write, and which of them to spoil.

    Returns (source, row_kind) for every written row: the index of the valid row it shows, and
    the index in `kinds` of its bad kind (-1 for a valid row). About `share` of the rows are bad,
    split evenly over the kinds on disjoint rows. `kinds` must hold "duplicate": the copy of a
    duplicated row comes right after its (valid) original, as an exact copy."""
    per_kind = max(1, round(n * share / len(kinds)))
    picked = rng.choice(n, size=min(n, per_kind * len(kinds)), replace=False)
    kind = np.full(n, -1, dtype=np.int64)
    kind[picked] = np.arange(picked.size) // per_kind  # disjoint sets of rows per kind
    duplicate_kind = kinds.index("duplicate")

    source = np.repeat(np.arange(n), np.where(kind == duplicate_kind, 2, 1))
    is_copy = np.zeros(source.size, dtype=bool)
    is_copy[1:] = source[1:] == source[:-1]
    row_kind = np.where(
        is_copy, duplicate_kind, np.where(kind[source] == duplicate_kind, -1, kind[source])
    )
    return source, row_kind


def _write_big_matrix(
    path: Path, views: Views, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Write the log with ~BAD_ROW_SHARE bad rows; returns (timestamp_ms, bad kind index or -1)
    for every written row."""
    source, row_kind = plan_bad_rows(views.user_id.size, BAD_ROW_KINDS, rng)
    negative_duration = row_kind == BAD_ROW_KINDS.index("negative_video_duration")
    rows = Views(
        user_id=views.user_id[source],
        video_id=views.video_id[source],
        play_duration=views.play_duration[source],
        video_duration=np.where(negative_duration, -1, 1) * views.video_duration[source],
        timestamp_ms=views.timestamp_ms[source],
    )
    watch_ratio = rows.play_duration / rows.video_duration
    watch_ratio[row_kind == BAD_ROW_KINDS.index("watch_ratio_out_of_range")] = (
        OUT_OF_RANGE_WATCH_RATIO
    )
    overrides = {
        "user_id": (row_kind == BAD_ROW_KINDS.index("missing_user_id"), ""),
        "play_duration": (
            row_kind == BAD_ROW_KINDS.index("non_numeric_play_duration"),
            NON_NUMERIC_PLAY_DURATION,
        ),
    }
    _write_matrix(path, rows, watch_ratio, overrides=overrides)
    return rows.timestamp_ms, row_kind


def _write_small_matrix(path: Path, views: Views, rng: np.random.Generator) -> int:
    n = views.user_id.size
    no_time = some_rows(rng, n, SMALL_MATRIX_MISSING_TIME_SHARE)
    _write_matrix(
        path,
        views,
        views.play_duration / views.video_duration,
        # The real file's `date` is float-formatted (20200705.0) because the column holds NaN.
        date_suffix=".0",
        overrides={"time": (no_time, ""), "date": (no_time, ""), "timestamp": (no_time, "")},
    )
    return n


# --------------------------------------------------------------------------------------------
# Side files
# --------------------------------------------------------------------------------------------


def _write_item_categories(path: Path, catalog: Catalog) -> None:
    # str([27, 9]) == "[27, 9]": a Python list literal, quoted by _csv_field when it has a comma.
    rows = [[str(video), str(tags)] for video, tags in enumerate(catalog.tags)]
    _write_rows(path, ("video_id", "feat"), rows)


def range_label(values: np.ndarray, edges: list[int], labels: list[str]) -> list[str]:
    """Bucket label per value: labels[i] where edges[i-1] <= value < edges[i] (np.digitize)."""
    return [labels[i] for i in np.digitize(values, edges, right=False).tolist()]


# Bucket labels copied from the real user_features.csv.
FOLLOW_RANGES = (
    [1, 11, 51, 101, 151, 251, 501],
    ["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "(250,500]", "500+"],
)
FANS_RANGES = (
    [1, 10, 100, 1_000, 5_000, 10_000],
    ["0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)"],
)
FRIEND_RANGES = (
    [1, 5, 30, 60, 120, 250],
    ["0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+"],
)
REGISTER_DAYS_RANGES = (
    [31, 61, 91, 181, 366, 731],
    ["15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"],
)
# Number of distinct values of onehot_feat0..17 in the real file; the binary ones get the
# real share of ones instead of a Zipf law.
ONEHOT_CARDINALITY = (2, 8, 30, 1076, 12, 10, 3, 47, 340, 7, 5, 3, 2, 2, 2, 2, 2, 2)
ONEHOT_SHARE_OF_ONES = {0: 0.39, 12: 0.3, 13: 0.1, 14: 0.09, 15: 0.02, 16: 0.02, 17: 0.015}
ONEHOT_FEAT4_BLANK_SHARE = 0.028  # real: 201 of 7176 rows blank in onehot_feat4
ONEHOT_FEAT12_17_BLANK_SHARE = 0.01  # real: ~75 rows blank in all of onehot_feat12..17


def _write_user_features(path: Path, world: World, rng: np.random.Generator) -> None:
    n = world.scale.users
    # user_active_degree follows the simulated activity, so it is a usable feature.
    activity_rank = np.argsort(np.argsort(-world.audience.activity)) / max(n - 1, 1)
    degree = np.where(
        activity_rank < 0.85,
        "full_active",
        np.where(activity_rank < 0.995, "high_active", "middle_active"),
    )
    degree[some_rows(rng, n, 0.016)] = "UNKNOWN"

    follow = np.where(
        rng.random(n) < 0.002, 0, np.clip(np.rint(rng.lognormal(np.log(30), 1.3, n)), 1, 2100)
    )
    fans = np.where(
        rng.random(n) < 0.3, 0, np.maximum(np.rint(rng.lognormal(np.log(4), 1.2, n)), 1)
    )
    friends = np.where(
        rng.random(n) < 0.6, 0, np.maximum(np.rint(rng.lognormal(np.log(2), 1.0, n)), 1)
    )
    register_days = np.clip(np.rint(rng.lognormal(np.log(220), 0.7, n)), 15, 2300)
    flags = {
        "is_lowactive_period": rng.random(n) < 0.0005,
        "is_live_streamer": rng.random(n) < 0.007,
        "is_video_author": rng.random(n) < 0.17,
    }
    onehot: list[list[str]] = []
    for feature, cardinality in enumerate(ONEHOT_CARDINALITY):
        if feature in ONEHOT_SHARE_OF_ONES:
            values = (rng.random(n) < ONEHOT_SHARE_OF_ONES[feature]).astype(np.int64)
        else:
            p = zipf_weights(cardinality, 1.1, rng)
            values = rng.choice(cardinality, size=n, p=p / p.sum())
        onehot.append(values.astype(str).tolist())
    for row in np.flatnonzero(some_rows(rng, n, ONEHOT_FEAT4_BLANK_SHARE)).tolist():
        onehot[4][row] = ""
    for row in np.flatnonzero(some_rows(rng, n, ONEHOT_FEAT12_17_BLANK_SHARE)).tolist():
        for feature in range(12, 18):
            onehot[feature][row] = ""

    columns = [
        [str(user) for user in range(n)],
        degree.tolist(),
        *(mask.astype(np.int64).astype(str).tolist() for mask in flags.values()),
        follow.astype(np.int64).astype(str).tolist(),
        range_label(follow, *FOLLOW_RANGES),
        fans.astype(np.int64).astype(str).tolist(),
        range_label(fans, *FANS_RANGES),
        friends.astype(np.int64).astype(str).tolist(),
        range_label(friends, *FRIEND_RANGES),
        register_days.astype(np.int64).astype(str).tolist(),
        range_label(register_days, *REGISTER_DAYS_RANGES),
        *onehot,
    ]
    _write_rows(path, USER_FEATURE_COLUMNS, [list(row) for row in zip(*columns, strict=True)])


CAPTION_WORDS = (
    "funny cat dog baby dance song cover cooking recipe street food travel sunset beach city "
    "village farm fishing car drift football basketball makeup outfit daily vlog prank magic "
    "guitar piano drawing craft workout yoga game anime movie clip news story life love"
).split()
TOPIC_WORDS = (
    "hot trending newcomer cute pets foodie roadtrip fitness beauty fashion music comedy "
    "sports gaming family countryside diy tech film memes"
).split()


def _write_captions(path: Path, catalog: Catalog, rng: np.random.Generator) -> None:
    n = len(catalog.tags)
    with_cr = set(rng.choice(n, size=min(n, CAPTIONS_WITH_CARRIAGE_RETURN), replace=False).tolist())
    rows: list[list[str]] = []
    carriage_returns_written = 0
    for video in range(n):
        topics = (
            []
            if rng.random() < 0.43
            else rng.choice(TOPIC_WORDS, rng.integers(1, 4), replace=False).tolist()
        )
        if video in with_cr or rng.random() >= 0.126:  # the real file has ~13% empty captions
            words = rng.choice(CAPTION_WORDS, rng.integers(2, 9)).tolist()
            caption = " ".join(words) + "".join(f" #{topic}" for topic in topics)
            roll = rng.random()
            if roll < 0.05:
                caption = caption.replace(" ", ", ", 1)  # a comma: the field gets quoted
            elif roll < 0.055:
                caption = f'"{caption}"'  # embedded quotes: written doubled
        else:
            caption = ""
        if video in with_cr:
            # Like the real file, a bare \r near the end of the caption; every other \r caption
            # also holds a comma, so both quoted and unquoted \r fields occur.
            caption = caption.replace('"', "").replace(",", "") + "\r"
            if carriage_returns_written % 2 == 1:
                caption = caption.replace(" ", ", ", 1)
            carriage_returns_written += 1
        cover = (
            MISSING_NAME
            if rng.random() < 0.62
            else " ".join(rng.choice(CAPTION_WORDS, rng.integers(1, 4)))
        )
        category = int(catalog.primary_category[video])
        second = third = (MISSING_CATEGORY_ID, MISSING_NAME)
        if rng.random() < 0.67:  # real: a second level for ~2/3 of the videos
            sub = int(rng.integers(0, 4))
            second = (str(100 + 10 * category + sub), f"cat{category}_sub{sub}")
            if rng.random() < 0.54:  # real: a third level for ~half of those
                leaf = int(rng.integers(0, 5))
                third = (
                    str(1000 + 100 * category + 10 * sub + leaf),
                    f"cat{category}_sub{sub}_leaf{leaf}",
                )
        rows.append(
            [
                str(video),
                cover,
                caption,
                "[" + ",".join(topics) + "]",  # NOT a Python literal: no quotes inside
                str(category),
                f"cat{category}",
                *second,
                *third,
            ]
        )
    _write_rows(path, CAPTION_COLUMNS, rows)


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def date_ms(day: str) -> int:
    """Epoch ms of a date's UTC midnight ("2020-07-05")."""
    return int(np.datetime64(day, "D").astype("datetime64[ms]").astype(np.int64))


def utc_day_index(timestamp_ms: np.ndarray, days: list[str]) -> np.ndarray:
    """Index into `days` (sorted UTC dates, gaps allowed) of each row's UTC day."""
    starts = np.array([date_ms(day) for day in days], dtype=np.int64)
    index = np.searchsorted(starts, timestamp_ms, side="right") - 1
    if index.size and (index.min() < 0 or (timestamp_ms - starts[index]).max() >= DAY_MS):
        raise AssertionError("a row's time lies outside the manifest's days")
    return index


def day_counts(
    days: list[str], day_of_row: np.ndarray, row_kind: np.ndarray, kinds: tuple[str, ...]
) -> dict[str, dict]:
    """The manifest's rows_per_day, valid_rows_per_day and bad_rows_per_day (per kind) for the
    written rows of an interaction log: day_of_row indexes `days`, row_kind indexes `kinds` (-1
    for a valid row)."""
    rows_per_day = np.bincount(day_of_row, minlength=len(days))
    bad_per_day = np.zeros((len(days), len(kinds)), dtype=np.int64)
    is_bad = row_kind >= 0
    np.add.at(bad_per_day, (day_of_row[is_bad], row_kind[is_bad]), 1)
    return {
        "rows_per_day": {ds: int(rows_per_day[i]) for i, ds in enumerate(days)},
        "valid_rows_per_day": {
            ds: int(rows_per_day[i] - bad_per_day[i].sum()) for i, ds in enumerate(days)
        },
        "bad_rows_per_day": {
            ds: {kind: int(bad_per_day[i, k]) for k, kind in enumerate(kinds)}
            for i, ds in enumerate(days)
        },
    }


def write_manifest(out: Path, manifest: dict) -> dict:
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def generate_kuairec(
    out_dir: str | Path, scale: str = "small", seed: int = 0, start_date: str = "2020-07-05"
) -> dict:
    """Writes the five KuaiRec files into out_dir and a manifest; returns the manifest dict."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(SCALES[scale], seed)
    dims, rngs = world.scale, streams(seed)
    start_ms = date_ms(start_date)
    days = [str(np.datetime64(start_date, "D") + day) for day in range(dims.days)]

    # The small_matrix block: random users, and videos that exist from the first day.
    small_rng = rngs["small_matrix"]
    small_users = np.sort(small_rng.choice(dims.users, dims.small_matrix_users, replace=False))
    from_day_one = np.flatnonzero(world.catalog.upload_day == 0)
    small_videos = np.sort(small_rng.choice(from_day_one, dims.small_matrix_videos, replace=False))

    views = _simulate_big_matrix(world, rngs["views"], start_ms, small_users, small_videos)
    timestamp_ms, row_kind = _write_big_matrix(out / "big_matrix.csv", views, rngs["bad_rows"])
    small = _simulate_small_matrix(world, small_rng, start_ms, small_users, small_videos)
    small_rows = _write_small_matrix(out / "small_matrix.csv", small, small_rng)

    side_rng = rngs["side_files"]
    _write_item_categories(out / "item_categories.csv", world.catalog)
    _write_user_features(out / "user_features.csv", world, side_rng)
    _write_captions(out / "kuairec_caption_category.csv", world.catalog, side_rng)

    day_of_row = utc_day_index(timestamp_ms, days)
    # No "variant" key: the manifest stays byte-identical to the one written before the other
    # datasets existed (KuaiRec has a single variant).
    manifest = {
        "dataset": "kuairec",
        "scale": scale,
        "seed": seed,
        "start_date": start_date,
        "days": days,
        "rows": {"big_matrix": int(timestamp_ms.size)},
        **day_counts(days, day_of_row, row_kind, BAD_ROW_KINDS),
        "users": dims.users,
        "videos": dims.videos,
        "small_matrix_rows": small_rows,
    }
    return write_manifest(out, manifest)


DATASETS = ("kuairec", "kuairand", "microlens")


def generate(
    dataset: str,
    out_dir: str | Path,
    scale: str = "small",
    seed: int = 0,
    variant: str | None = None,
) -> dict:
    """Write `dataset`'s native files (variant: KuaiRand "pure" | "1k" | "27k", default "pure";
    MicroLens "100k" | "50k", default "100k"; KuaiRec has none) into out_dir, plus the manifest;
    returns the manifest dict."""
    if dataset == "kuairec":
        if variant is not None:
            raise ValueError(f"KuaiRec has no variants, got {variant!r}")
        return generate_kuairec(out_dir, scale=scale, seed=seed)
    # Imported here: those modules import this one.
    if dataset == "kuairand":
        from jobs.synthetic_kuairand import generate_kuairand

        return generate_kuairand(out_dir, scale=scale, seed=seed, variant=variant or "pure")
    if dataset == "microlens":
        from jobs.synthetic_microlens import generate_microlens

        return generate_microlens(out_dir, scale=scale, seed=seed, variant=variant or "100k")
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
