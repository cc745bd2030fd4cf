"""The latent world every synthetic release is simulated from: a catalog of videos, an audience
of users, and the simulation core shared by all datasets (exposure, sessions, watch ratios).

A recommender needs something to learn: popularity is Zipf-skewed, each user prefers a few
categories, watch ratios rise with taste and fall with duration, new videos appear mid-period.
Each dataset module builds its world with `build_world`, passing its own Scale and Platform.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd


def split_scale(name: str, known, divides: str) -> tuple[str, int]:
    """A scale name as (one of `known`, n): "<scale>/<n>" asks for 1/n of it (n >= 1), a bare
    name for all of it (n = 1). `divides` says what the fraction divides, for the error."""
    base, slash, parts = name.partition("/")
    if base not in known or (slash and (not parts.isdigit() or int(parts) < 1)):
        raise ValueError(
            f"unknown scale {name!r}; expected one of {sorted(known)}, or one of them "
            f"followed by /N for 1/N of its {divides}"
        )
    return base, int(parts) if slash else 1


@dataclass(frozen=True)
class Scale:
    users: int  # users, ids 0..users-1 (KuaiRec: big_matrix.csv and user_features.csv)
    videos: int  # videos, ids 0..videos-1 (KuaiRec: item_categories.csv and the caption file)
    days: int  # consecutive UTC days of interactions, starting at start_date
    views_per_user_day: float  # mean views per user per day (mean of the activity levels)
    small_matrix_users: int = 0  # users in the fully observed small_matrix.csv block (KuaiRec)
    small_matrix_videos: int = 0  # videos in the fully observed small_matrix.csv block (KuaiRec)


# --------------------------------------------------------------------------------------------
# Knobs of the simulation (each one says why it has the value it has)
# --------------------------------------------------------------------------------------------

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
# uploaded by that day. Both powers matter (measured at scale "demo", the former "small", seed
# 0, before sessions had an order): hits dominate exposure (the top 10% of videos get ~43% of
# the views) while each user's favourite category gets ~5x its global share of views, so
# "popular within the user's categories" beats global popularity on a held-out last day
# (hit@50 0.17 vs 0.13). With the sessions' order below: 38%, 4.7x, hit@50 0.18 vs 0.15 (topic
# runs go on to a category's less popular videos once the user has seen its hits). The power
# above 1 on popularity makes up for the no-repeat rule below, which spreads heavy users over
# the tail. The floor keeps every category reachable (exploration).
EXPOSURE_POPULARITY_POWER = 1.4
EXPOSURE_TASTE_POWER = 1.5
TASTE_FLOOR = 0.01
# A user is not shown the same video twice by the simulated recommender (re-watches below are
# the exception): a view tries CANDIDATES_PER_VIEW draws at once, then colliding views are
# re-drawn from the feed this many rounds and from the long tail as many again (leftovers
# stay as natural repeats). CANDIDATES_PER_VIEW only trades speed for redraw rounds.
MAX_REDRAW_ROUNDS = 10
CANDIDATES_PER_VIEW = 4

# --------------------------------------------------------------------------------------------
# Order within a user's views (what a sequence model can learn beyond "what this user likes")
# --------------------------------------------------------------------------------------------

# Topic continuity: the probability that a view (not the first of its session, not a creator
# follow-up) stays on the previous video's primary category (a popular video of it the user has
# not seen, else one of its long tail); else the view keeps its feed draw. Short-video feeds
# keep serving the topic a user is watching (a run of cooking videos, then of pets), broken up
# by exploration. With the feed draws that land on the same category by taste anyway, 54% of a
# session's consecutive views share their category (KuaiRec demo, seed 0; 14% with no order,
# 25% for the same sessions shuffled): mostly on a topic, without single-topic sessions.
TOPIC_CONTINUITY = 0.5
# Creator follow-ups: the probability that a view (not the first of its session) is the next
# video of the creator just watched: their next-newer upload, wrapping around to their oldest,
# skipping videos the user saw (a user who enjoyed a video swipes on to the creator's profile,
# or the feed shows more of them). Possible only when the creator has another video uploaded by
# that day that the user has not seen; else the view keeps its feed draw. 0.15 makes creator
# runs common but short: 10% of a session's consecutive views have one creator (KuaiRec demo,
# seed 0; 0.2% with no order). The next-newer video makes them the same transition for every
# user: a first-order Markov model learns them.
CREATOR_FOLLOW_UP = 0.15
# Re-watches: the probability that a view replays one of the user's favourites, an earlier view
# of theirs with watch_ratio >= FAVOURITE_WATCH_RATIO (played to the end), picked uniformly;
# a user with no favourite yet keeps the feed draw. A re-watch is an interlude: the next view
# follows on from the one before it. KuaiRec's big_matrix and KuaiRand's logs hold repeat views
# of the same (user, video) pair; a few per cent, as before this knob existed (KuaiRec demo,
# seed 0: 2.9% of the views, 99% of them of a favourite; 0.1% with no order).
REWATCH_SHARE = 0.03
FAVOURITE_WATCH_RATIO = 1.0
# Creators: each platform declares its mean videos per creator (Platform.videos_per_creator);
# sizes are geometric (most creators have one video in the catalog, a few have many: the real
# KuaiRand-Pure catalog has 7,583 videos by 6,510 authors, 87% of them with one video). A
# creator posts this share of their videos in their home category, the rest anywhere: with 0.9,
# ~82% of the pairs of one creator's videos share the primary category, as in KuaiRand-Pure's
# video_features_basic (82%).
CREATOR_TOPIC_FOCUS = 0.9


@dataclass(frozen=True)
class SessionOrder:
    """The sequence structure of a dataset's log (defaults: the module constants above)."""

    topic_continuity: float = TOPIC_CONTINUITY  # P(next view stays on the previous category)
    creator_follow_up: float = CREATOR_FOLLOW_UP  # P(next view is the same creator's next video)
    rewatch: float = REWATCH_SHARE  # P(a view replays one of the user's favourites)


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

DAY_MS = 86_400_000
UTC8_OFFSET_MS = 8 * 3_600_000  # the users' local clock (Beijing time) runs 8 h ahead of UTC


@dataclass(frozen=True)
class Platform:
    """What a platform's catalog looks like: each dataset module declares its own (KuaiRand and
    MicroLens: more tags, longer videos than KuaiRec)."""

    categories: int
    category_size_exponent: float
    tag_count_probs: tuple[float, ...]
    popularity_exponent: float
    duration_median_ms: float
    duration_log_sigma: float
    duration_min_ms: float
    duration_max_ms: float
    new_video_share: float
    # Dirichlet concentration of user tastes: with more categories it must be lower for users
    # to stay as focused (sum over categories ~9 for KuaiRec's 31 x 0.3).
    taste_concentration: float
    # Draw the extra tags of all videos at once (fast on catalogs of millions of videos). KuaiRec
    # keeps its per-video draws so that its output stays byte-identical.
    vectorized_tags: bool
    # Mean catalog videos per creator (geometric sizes, see CREATOR_TOPIC_FOCUS): with more,
    # more videos have a follow-up by their creator in the catalog.
    videos_per_creator: float


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
    creator: np.ndarray  # (videos,) int64 creator (author) index, 0..creators-1


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
    platform: Platform


def streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent random streams, so changing one part of the simulation leaves the rest.

    Child i of a SeedSequence does not depend on how many children are spawned, so names can
    be appended without changing the existing streams."""
    names = (
        "catalog",
        "audience",
        "views",
        "small_matrix",
        "bad_rows",
        "side_files",
        "extra",
        "creators",
    )
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


def _assign_creators(
    primary: np.ndarray, videos_per_creator: float, rng: np.random.Generator
) -> np.ndarray:
    """Creator index of each video: geometric numbers of videos per creator, each creator's
    videos in one category (videos sorted by category, then cut into runs) except for the
    1 - CREATOR_TOPIC_FOCUS share of videos, whose creators are shuffled among them."""
    n = primary.size
    p = 1.0 / max(videos_per_creator, 1.0)
    sizes = rng.geometric(p, int(n * p * 1.2) + 16)
    while sizes.sum() < n:
        sizes = np.concatenate([sizes, rng.geometric(p, int(n * p * 0.2) + 16)])
    creator_of_slot = np.repeat(np.arange(sizes.size), sizes)[:n]
    creator = np.empty(n, dtype=np.int64)
    creator[np.lexsort((rng.random(n), primary))] = creator_of_slot
    elsewhere = np.flatnonzero(rng.random(n) >= CREATOR_TOPIC_FOCUS)
    creator[elsewhere] = creator[rng.permutation(elsewhere)]
    return creator


def _simulate_catalog(
    scale: Scale, rng: np.random.Generator, platform: Platform, creator_rng: np.random.Generator
) -> Catalog:
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
        # Its own stream: the catalog's other draws stay those of the catalog stream.
        creator=_assign_creators(primary, platform.videos_per_creator, creator_rng),
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


def build_world(scale: Scale, seed: int, platform: Platform) -> World:
    """The latent videos and users of a dataset's release (same seed, same world).

    Useful as ground truth: tests read upload days and tastes from it.
    """
    rngs = streams(seed)
    return World(
        scale=scale,
        catalog=_simulate_catalog(scale, rngs["catalog"], platform, rngs["creators"]),
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
    if keys.size < 10_000:  # sorting costs more than it saves on few keys
        return np.searchsorted(cdf_with_offsets, keys, side="right")
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

        return self.in_groups((user_day % self.days) * n_categories + category, u[1])

    def in_groups(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A video of each (day, category) group (day * categories + category) by popularity,
        for draws u in [0, 1); each group must hold a video."""
        u = np.minimum(u, 1.0 - 1e-9)
        position = _search_in_groups(self.video_cdf, group, u)
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
    reference_ms: float,
) -> np.ndarray:
    """Watch ratio per view; `reference_ms` is the platform's median duration (the duration at
    which the ratio is not scaled, and below which loops are more likely)."""
    log_median = _log_median_watch_ratio(affinity, duration_ms, reference_ms)
    watch_ratio = np.exp(log_median + rng.normal(0.0, WATCH_RATIO_LOG_SIGMA, affinity.size))
    loops = rng.random(affinity.size) < _loop_probability(affinity, duration_ms, reference_ms)
    watch_ratio[loops] *= rng.uniform(*LOOP_FACTOR, size=int(loops.sum()))
    return watch_ratio


def _log_median_watch_ratio(
    affinity: np.ndarray, duration_ms: np.ndarray, reference_ms: float
) -> np.ndarray:
    return (
        np.log(WATCH_RATIO_BASE)
        + WATCH_RATIO_TASTE_LIFT * affinity
        - WATCH_RATIO_DURATION_DROP * np.log(duration_ms / reference_ms)
    )


def _loop_probability(
    affinity: np.ndarray, duration_ms: np.ndarray, reference_ms: float
) -> np.ndarray:
    return LOOP_BASE_PROB + LOOP_LIKED_SHORT_PROB * affinity * (duration_ms < reference_ms)


def play_duration_ms(watch_ratio: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    return np.rint(watch_ratio * duration_ms).astype(np.int64)


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
    models: tuple[ExposureModel, ExposureModel] | None = None,
) -> np.ndarray:
    """Exposure draws without repeats (per user) and without the forbidden (user, video) pairs
    (KuaiRec keeps the small_matrix block's pairs out of big_matrix so that the fully observed
    block stays a clean evaluation set); -1 where a forbidden pair could not be avoided."""
    empty = np.zeros(0, dtype=np.int64)
    forbidden_users = empty if forbidden_users is None else forbidden_users
    forbidden_videos = empty if forbidden_videos is None else forbidden_videos
    # Heavy users exhaust the hits of their favourite categories; redraws then go to the long
    # tail of those categories (popularity ignored), as a feed does when it runs out of hits.
    exposure, long_tail = models or (ExposureModel(world), ExposureModel(world, 0.0))
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


class _SeenPairs:
    """Which (user, video) pairs are taken (viewed, or never to be viewed): one bit per pair,
    users x videos / 8 bytes (KuaiRand-1K full: 0.55 GB; the largest generated)."""

    def __init__(self, users: int, videos: int) -> None:
        self.row_bytes = (videos + 7) // 8
        self.bits = np.zeros(users * self.row_bytes, dtype=np.uint8)

    def contains(self, user: np.ndarray, video: np.ndarray) -> np.ndarray:
        return (self.bits[user * self.row_bytes + (video >> 3)] >> (video & 7)) & 1 == 1

    def add(self, user: np.ndarray, video: np.ndarray) -> None:
        at = user * self.row_bytes + (video >> 3)
        np.bitwise_or.at(self.bits, at, (1 << (video & 7)).astype(np.uint8))


class _Creators:
    """Each creator's videos in upload order (day, then video id), for follow-ups."""

    def __init__(self, catalog: Catalog, days: int) -> None:
        creator, upload_day = catalog.creator, catalog.upload_day
        self.creator, self.days = creator, days
        self.videos = np.lexsort((np.arange(creator.size), upload_day, creator))
        sorted_creator = creator[self.videos]
        self.start = np.searchsorted(sorted_creator, np.arange(int(creator.max(initial=0)) + 1))
        self.position = np.empty(creator.size, dtype=np.int64)
        self.position[self.videos] = np.arange(creator.size) - self.start[sorted_creator]
        # Sorted by creator, then upload day: the videos a creator has by day d are a prefix.
        self.key = sorted_creator * (days + 1) + upload_day[self.videos]

    def next_videos(self, video: np.ndarray, day: np.ndarray, count: int) -> np.ndarray:
        """(len(video), count): the 1st..count-th videos after each video in its creator's list
        of videos uploaded by `day`, wrapping around to the oldest; -1 past the list's end."""
        creator = self.creator[video]
        start = self.start[creator]
        available = np.searchsorted(self.key, creator * (self.days + 1) + day, side="right")
        available -= start
        steps = np.arange(1, count + 1)
        offset = (self.position[video][:, None] + steps) % available[:, None]
        following = self.videos[start[:, None] + offset]
        return np.where(steps < available[:, None], following, -1)


def _feed_redraws(
    user_day: np.ndarray,
    user: np.ndarray,
    taken: _SeenPairs,
    models: tuple[ExposureModel, ExposureModel],
    rng: np.random.Generator,
) -> np.ndarray:
    """Feed draws for views whose candidates were all taken, as choose_videos redraws:
    MAX_REDRAW_ROUNDS rounds from the feed, as many from its long tail; a view still colliding
    keeps its last draw (a natural repeat, or -1 for a forbidden pair)."""
    video = np.empty(user_day.size, dtype=np.int64)
    left = np.arange(user_day.size)
    for round_ in range(2 * MAX_REDRAW_ROUNDS):
        video[left] = models[round_ >= MAX_REDRAW_ROUNDS].sample(user_day[left], rng)
        left = left[taken.contains(user[left], video[left])]
        if left.size == 0:
            break
    return video


def _follow_on(
    world: World,
    video: np.ndarray,
    user_day: np.ndarray,
    anchor: np.ndarray,
    follows: np.ndarray,
    stays: np.ndarray,
    position: np.ndarray,
    forbidden: tuple[np.ndarray, np.ndarray],
    models: tuple[ExposureModel, ExposureModel],
    rng: np.random.Generator,
) -> None:
    """Replace (in place) the feed draw of each view that `follows` (the creator's next video)
    or `stays` (a video of the category) after video[anchor]: by the first such video the user
    has not been given and may be given; views with none keep their feed draw if it is still
    free, else get a feed redraw. Views go by their `position` in the session, so that each
    anchor is final before it is followed."""
    scale, catalog = world.scale, world.catalog
    user, day = user_day // scale.days, user_day % scale.days
    draws = CANDIDATES_PER_VIEW
    taken = _SeenPairs(scale.users, scale.videos)
    forbidden_users, forbidden_videos = forbidden
    is_forbidden_user = np.zeros(scale.users, dtype=bool)
    is_forbidden_user[forbidden_users] = True
    is_forbidden_video = np.zeros(scale.videos, dtype=bool)
    is_forbidden_video[forbidden_videos] = True
    taken.add(
        np.repeat(forbidden_users, forbidden_videos.size),
        np.tile(forbidden_videos, forbidden_users.size),
    )
    # The feed draws that stay are taken from the start; a followed view's own is its fallback.
    kept = (video >= 0) & ~follows & ~stays
    taken.add(user[kept], video[kept])
    feed, long_tail = models  # the feed's model and its long tail (see choose_videos)
    creators = _Creators(catalog, scale.days)
    n_categories = world.platform.categories

    chained = np.flatnonzero(follows | stays)
    chained = chained[np.argsort(position[chained], kind="stable")]
    bounds = np.flatnonzero(np.r_[True, np.diff(position[chained]) != 0, True])
    for begin, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        rows = chained[begin:end]
        previous = video[anchor[rows]]
        orphans = rows[(previous < 0) & (video[rows] >= 0)]  # anchor lost: keep the feed draw
        taken.add(user[orphans], video[orphans])
        rows, previous = rows[previous >= 0], previous[previous >= 0]
        m, step_user = rows.size, user[rows]
        # Candidates in order of preference: the creator's next videos; or the category's
        # videos by popularity, then its long tail.
        candidates = np.full((m, 2 * draws + 1), -1, dtype=np.int64)
        candidates[:, -1] = video[rows]
        f = follows[rows]
        if f.any():
            candidates[f, :draws] = creators.next_videos(previous[f], day[rows[f]], draws)
        s = ~f
        if s.any():
            group = day[rows[s]] * n_categories + catalog.primary_category[previous[s]]
            group = np.repeat(group, draws)
            u = rng.random((2, group.size))
            candidates[s, :draws] = feed.in_groups(group, u[0]).reshape(-1, draws)
            candidates[s, draws:-1] = long_tail.in_groups(group, u[1]).reshape(-1, draws)
        free = (candidates >= 0) & ~taken.contains(step_user[:, None], np.maximum(candidates, 0))
        # Sessions of one user on different days share a position: the later one of two that
        # pick the same video looks further.
        while True:
            found = free.any(axis=1)
            pick = np.argmax(free, axis=1)
            chosen = candidates[np.arange(m), pick]
            key = np.where(found, step_user * scale.videos + chosen, -1 - np.arange(m))
            by_key = np.argsort(key, kind="stable")
            repeated = np.zeros(m, dtype=bool)
            repeated[by_key[1:]] = key[by_key[1:]] == key[by_key[:-1]]
            if not repeated.any():
                break
            free[repeated, pick[repeated]] = False
        if not found.all():
            stuck = np.flatnonzero(~found)
            redrawn = _feed_redraws(user_day[rows[stuck]], step_user[stuck], taken, models, rng)
            forbidden_pair = is_forbidden_user[step_user[stuck]] & is_forbidden_video[redrawn]
            chosen[stuck] = np.where(forbidden_pair, -1, redrawn)
        video[rows] = chosen
        taken.add(step_user[chosen >= 0], chosen[chosen >= 0])


def simulate_views(
    world: World,
    user_day: np.ndarray,
    session: np.ndarray,
    rng: np.random.Generator,
    order: SessionOrder | None = None,
    forbidden_users: np.ndarray | None = None,
    forbidden_videos: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(video, watch_ratio) of each view; rows sorted by user, then time (user_day sorted, and
    `session` each row's session within its user-day, as split_sessions gives them).

    Every view first gets a feed draw (choose_videos: no repeats per user, no forbidden pair;
    video -1 and watch ratio NaN where a forbidden pair could not be avoided). A view after the
    first of its session then becomes the next video of the previous view's creator
    (order.creator_follow_up) or a video of its category (order.topic_continuity), if the user
    has not seen one yet. Last, a view becomes a re-watch of one of the user's earlier
    favourites (order.rewatch): an interlude, the next view follows on from the one before it.
    """
    order = SessionOrder() if order is None else order
    empty = np.zeros(0, dtype=np.int64)
    if user_day.size == 0:
        return empty, np.zeros(0)
    forbidden_users = empty if forbidden_users is None else forbidden_users
    forbidden_videos = empty if forbidden_videos is None else forbidden_videos
    scale, catalog = world.scale, world.catalog
    n = user_day.size
    user = user_day // scale.days
    index = np.arange(n)
    first_row = np.maximum.accumulate(np.where(first_of_runs(user), index, 0))
    session_start = first_of_runs(user_day * MAX_SESSIONS_PER_DAY + session)
    first_in_session = np.maximum.accumulate(np.where(session_start, index, 0))

    models = (ExposureModel(world), ExposureModel(world, popularity_power=0.0))
    video = choose_videos(world, user_day, rng, forbidden_users, forbidden_videos, models)
    mode = rng.random((2, n))
    rewatches = mode[0] < order.rewatch
    # A view follows on from the last view before it in its session that is not a re-watch.
    anchor = np.r_[-1, np.maximum.accumulate(np.where(rewatches, -1, index))[:-1]]
    anchor[anchor < first_in_session] = -1
    follow_below = order.creator_follow_up
    stay_below = follow_below + (1.0 - follow_below) * order.topic_continuity
    follows = ~rewatches & (anchor >= 0) & (mode[1] < follow_below)
    stays = ~rewatches & (anchor >= 0) & ~follows & (mode[1] < stay_below)
    if (follows | stays).any():
        _follow_on(
            world,
            video,
            user_day,
            anchor,
            follows,
            stays,
            index - first_in_session,
            (forbidden_users, forbidden_videos),
            models,
            rng,
        )

    affinity = taste_affinity(world.audience.taste)
    reference_ms = world.platform.duration_median_ms

    def watch_ratios(rows: np.ndarray) -> np.ndarray:
        chosen = video[rows]
        liking = affinity[user[rows], catalog.primary_category[chosen]]
        return simulate_watch_ratio(rng, liking, catalog.duration_ms[chosen], reference_ms)

    watch_ratio = np.full(n, np.nan)
    viewed = np.flatnonzero(video >= 0)
    watch_ratio[viewed] = watch_ratios(viewed)

    # Re-watches: a favourite picked uniformly among the user's earlier ones; a user without
    # one yet keeps the feed draw.
    favourite = ~rewatches & (watch_ratio >= FAVOURITE_WATCH_RATIO)  # NaN compares False
    before = np.cumsum(favourite) - favourite  # favourites on earlier rows, all users
    earlier = before - before[first_row]
    replays = np.flatnonzero(rewatches & (earlier > 0))
    pick = before[first_row[replays]] + np.floor(rng.random(replays.size) * earlier[replays])
    video[replays] = video[np.flatnonzero(favourite)[pick.astype(np.int64)]]
    watch_ratio[replays] = watch_ratios(replays)
    return video, watch_ratio


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


# --------------------------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------------------------


def date_ms(day: str) -> int:
    """Epoch ms of a date's UTC midnight ("2020-07-05")."""
    return int(np.datetime64(day, "D").astype("datetime64[ms]").astype(np.int64))
