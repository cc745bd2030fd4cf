"""Deterministic synthetic KuaiRand data (Pure, 1K, 27K), written in the release's native files.

Writes what the release's `data/` folder holds for a variant `<v>` in ("pure", "1k", "27k"):

- `log_standard_4_08_to_4_21_<v>.csv`, `log_standard_4_22_to_5_08_<v>.csv`: the feed's biased
  exposures (27K: split in `..._27k_part1.csv`, `_part2.csv`, ... at user boundaries);
- `log_random_4_22_to_5_08_<v>.csv`: exposures of uniformly random videos (`is_rand` = 1), the
  release's unbiased slice;
- `user_features_<v>.csv`, `video_features_basic_<v>.csv`, `video_features_statistic_<v>.csv`;

plus `reelflow_manifest.json` (rows per UTC day, valid and bad, over all log files together).

The logs come from the simulation core of `synthetic.world` (popularity, category tastes,
sessions, watch ratios): a standard exposure is a feed draw, a random one a uniform draw over
the random pool, both inside the same sessions. Clicks, likes, follows, comments, forwards and
long views rise with the user's taste for the video's category and with the watch ratio, so the
random log shows the true taste effect without the feed's selection bias.

Dates: the two log windows are Beijing (UTC+8) dates 2022-04-08..04-21 and 04-22..05-08; `date`
and `hourmin` are the Beijing date and hour of a moment a few minutes after `time_ms` (often
the next hour, as in the real file: `time_ms` is the truth). At scale tiny only the first two
days of each window are simulated, under the real file names.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthetic.text import (
    FOLLOW_RANGES,
    FRIEND_RANGES,
    NON_NUMERIC,
    USER_FEATURE_COLUMNS,
    csv_field,
    day_counts,
    int_text,
    join_lines,
    plan_bad_rows,
    range_label,
    utc_day_index,
    write_manifest,
    write_table,
)
from synthetic.world import (
    UTC8_OFFSET_MS,
    Platform,
    Scale,
    SessionOrder,
    World,
    build_world,
    date_ms,
    day_moods,
    first_of_runs,
    play_duration_ms,
    simulate_views,
    simulate_watch_ratio,
    some_rows,
    split_scale,
    split_sessions,
    streams,
    taste_affinity,
    view_times_in_day,
    zipf_weights,
)

VARIANTS = ("pure", "1k", "27k")

# --------------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandScale:
    users: int  # users in user_features (ids 0..users-1)
    videos: int  # videos in the two video feature files (ids 0..videos-1)
    window_days: tuple[int, int]  # days simulated from the start of each log window (<= 14, 17)
    standard_per_user_day: float  # mean standard-log rows per user per day
    random_per_user_day: float  # mean random-log rows per user per day (second window only)
    random_pool: int  # random exposures draw from videos 0..random_pool-1 (Pure's 7,583)
    log_parts: int = 1  # files per standard log (27K ships its standard logs in parts)


# Full scales hold the real releases' counts: Pure 27,285 users, 7,583 videos, 1,436,609
# standard rows (1.70 per user-day over 31 days) and ~1.19M random rows (2.56 per user-day over
# 17 days, an estimate); 1K 1,000 users, 4,369,953 videos, ~11.7M standard rows; 27K 27,285
# users, 32,038,725 videos, ~322M standard rows (too big for one machine's memory: not run).
# Small scales give ~1M log rows in all; tiny a few thousand, on 2 + 2 days.
SCALES: dict[str, dict[str, RandScale]] = {
    "pure": {
        "tiny": RandScale(200, 500, (2, 2), 6.0, 3.0, 500),
        "small": RandScale(10_000, 5_000, (14, 17), 2.0, 2.2, 5_000),
        "full": RandScale(27_285, 7_583, (14, 17), 1.698, 2.557, 7_583),
    },
    "1k": {
        "tiny": RandScale(40, 3_000, (2, 2), 25.0, 3.0, 400),
        "small": RandScale(1_000, 200_000, (14, 17), 31.0, 2.5, 7_583),
        "full": RandScale(1_000, 4_369_953, (14, 17), 377.8, 2.531, 7_583),
    },
    "27k": {
        "tiny": RandScale(200, 3_000, (2, 2), 6.0, 2.0, 400, log_parts=2),
        "small": RandScale(5_000, 300_000, (14, 17), 5.5, 2.5, 7_583, log_parts=2),
        "full": RandScale(27_285, 32_038_725, (14, 17), 381.0, 2.557, 7_583, log_parts=4),
    },
}

# Beijing dates on which the two log windows start.
WINDOW_STARTS = ("2022-04-08", "2022-04-22")
WINDOW_FILE_STEMS = ("log_standard_4_08_to_4_21", "log_standard_4_22_to_5_08")
RANDOM_FILE_STEM = "log_random_4_22_to_5_08"

# The catalog: tags 1..68 as in the real video_features_basic (tag = category + 1); ~76% of the
# videos carry one tag, 23% two; durations median ~80 s (real: median 81 s, 5 s .. 20 min).
KUAIRAND = Platform(
    categories=68,
    category_size_exponent=1.0,
    tag_count_probs=(0.76, 0.235, 0.005),
    popularity_exponent=0.8,  # Pure's videos are the random pool: hits less dominant
    duration_median_ms=80_000,
    duration_log_sigma=0.9,
    duration_min_ms=5_000,
    duration_max_ms=1_200_000,
    new_video_share=0.1,
    taste_concentration=0.1,  # 68 x 0.1: users about as focused as KuaiRec's (31 x 0.3)
    vectorized_tags=True,
    videos_per_creator=1.16,  # the real Pure catalog: 7,583 videos by 6,510 authors
)

# --------------------------------------------------------------------------------------------
# Engagement knobs (logits of Bernoulli draws; `affinity` is taste relative to the user's
# favourite category, `engaged` = min(watch ratio, 3))
# --------------------------------------------------------------------------------------------

# P(click): ~40% in the standard log (the feed shows liked categories), ~25% in the random log.
CLICK_LOGIT = (-1.8, 2.2)  # intercept, per unit of affinity
# Without a click the video only auto-plays in the double-column feed for a second or two.
PREVIEW_MEDIAN_MS = 1_400
PREVIEW_LOG_SIGMA = 0.6
# A long view is a click watched at least 18 s or to its end.
LONG_VIEW_MS = 18_000
# Actions on clicked videos: (intercept, per affinity, per engaged) -> like ~2%, follow ~0.2%,
# comment ~0.3%, forward ~0.2%, profile enter ~1% of the standard log's rows.
ACTION_LOGITS = {
    "is_like": (-5.0, 2.0, 1.0),
    "is_follow": (-7.6, 2.0, 0.8),
    "is_comment": (-7.0, 1.5, 0.8),
    "is_forward": (-7.4, 1.5, 0.8),
    "is_profile_enter": (-5.5, 1.5, 0.5),
}
# Hates come from any exposure, mostly of disliked categories (~0.1%).
HATE_LOGIT = (-8.0, 2.5)  # intercept, per unit of (1 - affinity)
# Time on the comment panel: commenters and ~4% of the other clicks; time on the author's
# profile: whoever entered it.
COMMENT_PEEK_LOGIT = (-3.8, 1.0)
COMMENT_STAY_MEDIAN_MS, PROFILE_STAY_MEDIAN_MS, STAY_LOG_SIGMA = 6_000, 10_000, 1.0
# Tab of the app the exposure happened in (codes as in the release, shares made up); every
# random exposure sits in tab 1, like the real random log.
TAB_WEIGHTS = (8, 62, 12, 2, 9, 1, 3, 0.5, 0.5, 0.4, 0.3, 0.3, 0.2, 0.2, 0.2)
RANDOM_TAB = 1
# `date` and `hourmin` are taken a little after `time_ms`: an exponential lag of mean 12 min
# (capped below an hour) puts ~20% of the rows in the next hour, as in the real sample.
HOUR_LAG_MEAN_MS = 12 * 60_000
HOUR_LAG_MAX_MS = 59 * 60_000

# Bad rows in each log file (~0.5%, evenly over the kinds); every bad row keeps a valid time_ms.
BAD_ROW_KINDS = (
    "missing_user_id",  # user_id left empty
    "non_numeric_play_time_ms",  # play_time_ms is text ("abc")
    "negative_play_time_ms",  # play_time_ms < 0
    "negative_duration_ms",  # duration_ms < 0
    "duplicate",  # exact copy of a valid row, right after it
)

LOG_COLUMNS = (
    "user_id",
    "video_id",
    "date",
    "hourmin",
    "time_ms",
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
    "play_time_ms",
    "duration_ms",
    "profile_stay_time",
    "comment_stay_time",
    "is_profile_enter",
    "is_rand",
    "tab",
)

# --------------------------------------------------------------------------------------------
# The world and its calendar
# --------------------------------------------------------------------------------------------


def _dims(variant: str, scale: str) -> RandScale:
    """A named scale, or "<scale>/<n>": its users and its catalog divided by n, the days and
    rows per user-day kept, so the logs hold about 1/n of the rows over 1/n of the videos
    (the KuaiRand-27K plan extrapolates from "full/256" .. "full/64": 27K itself is 322M rows
    over 32M videos)."""
    if variant not in SCALES:
        raise ValueError(f"unknown KuaiRand variant {variant!r}; expected one of {VARIANTS}")
    base, n = split_scale(scale, SCALES[variant], "users and videos")
    dims = SCALES[variant][base]
    if n == 1:
        return dims
    videos = max(1, dims.videos // n)
    return dataclasses.replace(
        dims,
        users=max(1, dims.users // n),
        videos=videos,
        random_pool=min(dims.random_pool, videos),
    )


def build_kuairand_world(scale: str = "tiny", seed: int = 0, variant: str = "pure") -> World:
    """The latent videos and users behind `generate_kuairand(scale, seed, variant)`."""
    dims = _dims(variant, scale)
    days = sum(dims.window_days)
    return build_world(
        Scale(dims.users, dims.videos, days, dims.standard_per_user_day), seed, KUAIRAND
    )


def simulated_dates(dims: RandScale) -> list[str]:
    """Beijing date of each simulated day: the first days of each log window."""
    return [
        str(np.datetime64(start, "D") + offset)
        for start, n_days in zip(WINDOW_STARTS, dims.window_days, strict=True)
        for offset in range(n_days)
    ]


def _utc_days(dates: list[str]) -> list[str]:
    """UTC dates a Beijing day overlaps: the day before (its first 8 hours) and the day itself."""
    days = {str(np.datetime64(d, "D") + shift) for d in dates for shift in (-1, 0)}
    return sorted(days)


# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------


def _bernoulli(rng: np.random.Generator, logit: np.ndarray) -> np.ndarray:
    return rng.random(logit.size) < 1.0 / (1.0 + np.exp(-logit))


def _random_pool_draws(
    world: World, pool: int, day: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Uniform draws over the pool's videos already uploaded on each row's day."""
    upload_day = world.catalog.upload_day[:pool]
    by_upload = np.argsort(upload_day, kind="stable")
    available = np.searchsorted(upload_day[by_upload], np.arange(world.scale.days), side="right")
    return by_upload[np.floor(rng.random(day.size) * available[day]).astype(np.int64)]


def _simulate_logs(
    world: World,
    dims: RandScale,
    rng: np.random.Generator,
    missing_duration: np.ndarray,
    session_order: SessionOrder,
) -> dict[str, np.ndarray]:
    """All exposures (standard and random) as int64 columns named like LOG_COLUMNS, plus
    "window" (0 / 1) and "day" (simulated day); rows sorted by user, then time."""
    scale, catalog = world.scale, world.catalog
    first_window_days = dims.window_days[0]
    expected = world.audience.activity[:, None] * day_moods(world, rng)
    standard = rng.poisson(expected)
    # Random exposures are slotted into the same feed, at a rate proportional to activity, in
    # the second window only (the release's random log starts on 04-22).
    in_window_2 = np.arange(scale.days) >= first_window_days
    random_rate = dims.random_per_user_day / dims.standard_per_user_day
    randoms = rng.poisson(expected * random_rate * in_window_2[None, :])
    counts = (standard + randoms).ravel()
    user_day, sessions_per_user_day, session = split_sessions(counts, rng)
    n = user_day.size

    # Which of a user-day's views are the random ones: a random subset of its positions.
    order = np.lexsort((rng.random(n), user_day))
    rank = np.arange(n) - (np.cumsum(counts) - counts)[user_day[order]]
    is_rand = np.zeros(n, dtype=bool)
    is_rand[order] = rank < randoms.ravel()[user_day[order]]

    user, day = user_day // scale.days, user_day % scale.days
    video = np.empty(n, dtype=np.int64)
    watch_ratio = np.empty(n)
    # The feed's views carry the sessions' order among themselves; a random exposure slotted in
    # between is a uniform draw that the next feed view does not follow on from.
    standard_rows = np.flatnonzero(~is_rand)
    video[standard_rows], watch_ratio[standard_rows] = simulate_views(
        world, user_day[standard_rows], session[standard_rows], rng, session_order
    )
    video[is_rand] = _random_pool_draws(world, dims.random_pool, day[is_rand], rng)

    duration = catalog.duration_ms[video]
    affinity = taste_affinity(world.audience.taste)[user, catalog.primary_category[video]]
    watch_ratio[is_rand] = simulate_watch_ratio(
        rng, affinity[is_rand], duration[is_rand], reference_ms=world.platform.duration_median_ms
    )
    is_click = _bernoulli(rng, CLICK_LOGIT[0] + CLICK_LOGIT[1] * affinity)
    preview = np.rint(rng.lognormal(np.log(PREVIEW_MEDIAN_MS), PREVIEW_LOG_SIGMA, n))
    play_time = np.where(
        is_click, play_duration_ms(watch_ratio, duration), np.minimum(preview, duration)
    ).astype(np.int64)
    # Days start at Beijing midnight here: each log window is cut at Beijing dates.
    time_in_day = view_times_in_day(
        world, user_day, session, sessions_per_user_day, play_time, rng, origin_offset_ms=0
    )
    day_origin = np.array(
        [date_ms(d) - UTC8_OFFSET_MS for d in simulated_dates(dims)], dtype=np.int64
    )

    engaged = np.minimum(watch_ratio, 3.0)
    columns: dict[str, np.ndarray] = {
        "user_id": user,
        "video_id": video,
        "time_ms": day_origin[day] + time_in_day,
        "is_click": is_click,
        "long_view": is_click & ((play_time >= LONG_VIEW_MS) | (play_time >= duration)),
        "play_time_ms": play_time,
        # Videos without a duration in video_features_basic log duration_ms 0 (real quirk).
        "duration_ms": np.where(missing_duration[video], 0, duration),
        "is_rand": is_rand,
        "window": (day >= first_window_days).astype(np.int64),
        "day": day,
    }
    for name, (intercept, per_affinity, per_engaged) in ACTION_LOGITS.items():
        logit = intercept + per_affinity * affinity + per_engaged * engaged
        columns[name] = is_click & _bernoulli(rng, logit)
    columns["is_hate"] = _bernoulli(rng, HATE_LOGIT[0] + HATE_LOGIT[1] * (1.0 - affinity))
    peek = is_click & _bernoulli(rng, COMMENT_PEEK_LOGIT[0] + COMMENT_PEEK_LOGIT[1] * affinity)
    comment_stay = rng.lognormal(np.log(COMMENT_STAY_MEDIAN_MS), STAY_LOG_SIGMA, n)
    columns["comment_stay_time"] = np.where(columns["is_comment"] | peek, comment_stay, 0)
    profile_stay = rng.lognormal(np.log(PROFILE_STAY_MEDIAN_MS), STAY_LOG_SIGMA, n)
    columns["profile_stay_time"] = np.where(columns["is_profile_enter"], profile_stay, 0)
    tab_p = np.array(TAB_WEIGHTS) / sum(TAB_WEIGHTS)
    columns["tab"] = np.where(is_rand, RANDOM_TAB, rng.choice(tab_p.size, size=n, p=tab_p))
    lag = np.minimum(rng.exponential(HOUR_LAG_MEAN_MS, n), HOUR_LAG_MAX_MS).astype(np.int64)
    stamp_hours = (columns["time_ms"] + lag + UTC8_OFFSET_MS) // 3_600_000  # Beijing hours
    columns["date"] = stamp_hours // 24  # Beijing day number since the epoch, formatted later
    columns["hourmin"] = stamp_hours % 24 * 100
    return {name: np.asarray(values).astype(np.int64) for name, values in columns.items()}


def _log_text(log: dict[str, np.ndarray], source: np.ndarray, row_kind: np.ndarray) -> str:
    """CSV lines of the rows `source` of `log`, spoiled where row_kind says so."""
    rows = {name: values[source] for name, values in log.items()}
    kind = {name: row_kind == index for index, name in enumerate(BAD_ROW_KINDS)}
    rows["play_time_ms"] = np.where(
        kind["negative_play_time_ms"], -np.maximum(rows["play_time_ms"], 1), rows["play_time_ms"]
    )
    rows["duration_ms"] = np.where(
        kind["negative_duration_ms"], -np.maximum(rows["duration_ms"], 1), rows["duration_ms"]
    )
    first_day = int(rows["date"].min()) if source.size else 0
    day_text = np.array(
        [
            str(np.datetime64(day, "D")).replace("-", "")
            for day in range(first_day, int(rows["date"].max(initial=first_day)) + 1)
        ],
        dtype=object,
    )
    small_ints = int_text(np.arange(2_400))  # flags, tabs and hourmin values
    text: dict[str, np.ndarray] = {}
    for name in LOG_COLUMNS:
        values = rows[name]
        if name == "date":
            text[name] = day_text[values - first_day]
        elif name.startswith("is_") or name in ("long_view", "tab", "hourmin"):
            text[name] = small_ints[values]
        else:
            text[name] = int_text(values)
    text["user_id"][kind["missing_user_id"]] = ""
    text["play_time_ms"][kind["non_numeric_play_time_ms"]] = NON_NUMERIC
    return join_lines([text[name] for name in LOG_COLUMNS])


def _write_log(
    paths: list[Path],
    log: dict[str, np.ndarray],
    rng: np.random.Generator,
    chunk_rows: int = 1_000_000,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Write one log (with bad rows) over len(paths) files split at user boundaries; returns
    (time_ms, bad kind or -1) of every written row and the row count of each file."""
    source, row_kind = plan_bad_rows(log["user_id"].size, BAD_ROW_KINDS, rng)
    user_starts = np.flatnonzero(first_of_runs(log["user_id"][source]))
    # Equal shares of the rows, each cut moved on to the next user's first row: a user's rows
    # stay in one file.
    targets = np.arange(1, len(paths)) * source.size // len(paths)
    cut = np.append(user_starts, source.size)[np.searchsorted(user_starts, targets)]
    cuts = [0, *cut.tolist(), source.size]
    sizes = []
    for path, begin, end in zip(paths, cuts[:-1], cuts[1:], strict=True):
        with path.open("w", encoding="utf-8", newline="\n") as out:
            out.write(",".join(LOG_COLUMNS) + "\n")
            for chunk in range(begin, end, chunk_rows):
                rows = slice(chunk, min(chunk + chunk_rows, end))
                out.write(_log_text(log, source[rows], row_kind[rows]))
        sizes.append(end - begin)
    return log["time_ms"][source], row_kind, sizes


# --------------------------------------------------------------------------------------------
# Side files
# --------------------------------------------------------------------------------------------

ACTIVE_DEGREES = (  # real shares, most active first
    ("full_active", 0.658),
    ("high_active", 0.2257),
    ("middle_active", 0.0782),
    ("2_14_day_new", 0.0233),
    ("low_active", 0.011),
    ("single_low_active", 0.0025),
    ("30day_retention", 0.00055),
    ("day_new", 0.0004),
    ("UNKNOWN", 0.00022),
)
# KuaiRand's bucket labels: KuaiRec's plus fans of 10w+ and registrations of 8-14 days.
FANS_RANGES = (
    [1, 10, 100, 1_000, 5_000, 10_000, 100_000],
    ["0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)", "[10w,100w)"],
)
REGISTER_DAYS_RANGES = (
    [15, 31, 61, 91, 181, 366, 731],
    ["8-14", "15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"],
)
ONEHOT_CARDINALITY = (2, 7, 50, 1471, 15, 34, 3, 118, 454, 7, 5, 5, 2, 2, 2, 2, 2, 2)
ONEHOT_SHARE_OF_ONES = {0: 0.56, 12: 0.72, 13: 0.07, 14: 0.12, 15: 0.023, 16: 0.04, 17: 0.014}
ONEHOT_FEAT5_ZERO_SHARE = 0.994
FLOAT_ONEHOTS = (4, 12, 13, 14, 15, 16, 17)  # written as 1.0 (they hold blanks), as in the file
ONEHOT_FEAT4_BLANK_SHARE = 0.032
ONEHOT_FEAT12_17_BLANK_SHARE = 0.026
MISSING = "-124"  # KuaiRand's sentinel, e.g. in is_live_streamer


def _write_user_features(path: Path, world: World, rng: np.random.Generator) -> None:
    n = world.scale.users
    # user_active_degree follows the simulated activity, so it is a usable feature.
    activity_rank = np.argsort(np.argsort(-world.audience.activity)) / max(n - 1, 1)
    shares = np.cumsum([share for _, share in ACTIVE_DEGREES])
    degree_index = np.minimum(np.searchsorted(shares / shares[-1], activity_rank), shares.size - 1)
    degree = np.array([name for name, _ in ACTIVE_DEGREES], dtype=object)[degree_index]

    follow = np.where(
        rng.random(n) < 0.007, 0, np.clip(np.rint(rng.lognormal(np.log(155), 1.3, n)), 1, 5003)
    )
    fans = np.where(
        rng.random(n) < 0.042, 0, np.maximum(np.rint(rng.lognormal(np.log(50), 1.7, n)), 1)
    )
    friends = np.where(
        rng.random(n) < 0.12, 0, np.clip(np.rint(rng.lognormal(np.log(20), 1.6, n)), 1, 4995)
    )
    register_days = np.clip(np.rint(rng.lognormal(np.log(1100), 0.6, n)), 8, 3624)
    onehot: list[np.ndarray] = []
    for feature, cardinality in enumerate(ONEHOT_CARDINALITY):
        if feature in ONEHOT_SHARE_OF_ONES:
            values = (rng.random(n) < ONEHOT_SHARE_OF_ONES[feature]).astype(np.int64)
        elif feature == 5:
            values = np.where(
                rng.random(n) < ONEHOT_FEAT5_ZERO_SHARE, 0, rng.integers(1, cardinality, n)
            )
        else:
            p = zipf_weights(cardinality, 1.1, rng)
            values = rng.choice(cardinality, size=n, p=p / p.sum())
        suffix = ".0" if feature in FLOAT_ONEHOTS else ""
        onehot.append(int_text(values) + suffix)
    onehot[4][some_rows(rng, n, ONEHOT_FEAT4_BLANK_SHARE)] = ""
    blank_12_17 = some_rows(rng, n, ONEHOT_FEAT12_17_BLANK_SHARE)
    for feature in range(12, 18):
        onehot[feature][blank_12_17] = ""

    def labels(values: np.ndarray, ranges: tuple[list[int], list[str]]) -> np.ndarray:
        return np.array([csv_field(label) for label in range_label(values, *ranges)], dtype=object)

    columns = [
        int_text(np.arange(n)),
        degree,
        np.full(n, "0", dtype=object),  # is_lowactive_period: 0 for every user in the release
        np.where(rng.random(n) < 0.226, "1", MISSING).astype(object),  # never 0, as in the file
        np.where(rng.random(n) < 0.816, "1", "0").astype(object),
        int_text(follow.astype(np.int64)),
        labels(follow, FOLLOW_RANGES),
        int_text(fans.astype(np.int64)),
        labels(fans, FANS_RANGES),
        int_text(friends.astype(np.int64)),
        labels(friends, FRIEND_RANGES),
        int_text(register_days.astype(np.int64)),
        labels(register_days, REGISTER_DAYS_RANGES),
        *onehot,
    ]
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(",".join(USER_FEATURE_COLUMNS) + "\n")
        out.write(join_lines(columns))


VIDEO_BASIC_COLUMNS = (
    "video_id",
    "author_id",
    "video_type",
    "upload_dt",
    "upload_type",
    "visible_status",
    "video_duration",
    "server_width",
    "server_height",
    "music_id",
    "music_type",
    "tag",
)
VIDEO_TYPES = (("NORMAL", 0.99), ("AD", 0.0099), ("UNKNOWN", 0.0001))
UPLOAD_TYPES = (  # real shares
    ("LongImport", 0.386),
    ("Web", 0.319),
    ("ShortImport", 0.121),
    ("Kmovie", 0.116),
    ("LongPicture", 0.019),
    ("UNKNOWN", 0.0105),
    ("PictureSet", 0.0096),
    ("LongCamera", 0.0084),
    ("ShortCamera", 0.0057),
    ("ShareFromOtherApp", 0.0038),
    ("FollowShoot", 0.0013),
    ("AiCutVideo", 0.0003),
    ("PhotoCopy", 0.0001),
    ("LipsSync", 0.0001),
)
SCREEN_SIZES = (  # (width, height, share)
    (720, 1280, 0.68),
    (1280, 720, 0.18),
    (960, 720, 0.024),
    (720, 1282, 0.015),
    (720, 960, 0.012),
    (720, 720, 0.008),
    (1080, 1440, 0.0064),
    (1080, 720, 0.005),
    (1080, 1920, 0.07),
)
MUSIC_TYPES = (("9.0", 0.905), ("4.0", 0.089), ("8.0", 0.0056), ("7.0", 0.0019))
MISSING_DURATION_SHARE = 0.032  # blank video_duration (real: 239 of 7,583)
NO_MUSIC_SHARE = 0.027  # music_id 0 and blank music_type (real: 203 of 7,583)
NO_TAG_SHARE = 0.013  # blank tag (real: 96 of 7,583)
# Base videos were uploaded in the days before the logs start; new ones on their first day.
BASE_UPLOAD_SPREAD_DAYS = 4


def _pick(rng: np.random.Generator, table: tuple, n: int) -> np.ndarray:
    """n draws of the first field of `table`'s rows, weighted by their last field."""
    weights = np.array([row[-1] for row in table], dtype=np.float64)
    index = rng.choice(len(table), size=n, p=weights / weights.sum())
    return np.array([row[0] for row in table], dtype=object)[index]


def _upload_dates(world: World, dims: RandScale, rng: np.random.Generator) -> np.ndarray:
    dates = np.array(simulated_dates(dims), dtype="datetime64[D]")
    upload = dates[world.catalog.upload_day]
    base = world.catalog.upload_day == 0
    early = rng.integers(0, BASE_UPLOAD_SPREAD_DAYS, int(base.sum()))
    upload[base] = upload[base] - early.astype("timedelta64[D]")
    return upload


def _write_video_basic(
    path: Path,
    world: World,
    upload: np.ndarray,
    missing_duration: np.ndarray,
    rng: np.random.Generator,
) -> None:
    n = world.scale.videos
    # The world's creators (whom follow-ups in the logs stay with) under distinct ids in the
    # real file's range (up to ~8.8M).
    n_authors = int(world.catalog.creator.max()) + 1
    author_ids = rng.choice(max(8_800_000, 2 * n_authors), size=n_authors, replace=False)
    author = author_ids[world.catalog.creator]
    screen = np.array(SCREEN_SIZES)
    size = rng.choice(len(screen), size=n, p=screen[:, 2] / screen[:, 2].sum())
    width, height = screen[size, 0].astype(np.int64), screen[size, 1].astype(np.int64)
    no_music = rng.random(n) < NO_MUSIC_SHARE
    music_id = np.where(no_music, 0, rng.integers(1_000_000_000, 9_200_000_000, n))
    music_type = _pick(rng, MUSIC_TYPES, n)
    music_type[no_music] = ""
    no_tag = rng.random(n) < NO_TAG_SHARE
    video_type, upload_type = _pick(rng, VIDEO_TYPES, n), _pick(rng, UPLOAD_TYPES, n)
    upload_text = upload.astype(str).astype(object)

    def columns(rows: slice) -> list[np.ndarray]:
        duration = int_text(world.catalog.duration_ms[rows]) + ".0"
        duration[missing_duration[rows]] = ""
        # Tags as the release writes them: "39" or, quoted, "20,43" (category + 1).
        tag = np.array(
            [csv_field(",".join(str(t + 1) for t in tags)) for tags in world.catalog.tags[rows]],
            dtype=object,
        )
        tag[no_tag[rows]] = ""
        return [
            int_text(np.arange(n)[rows]),
            int_text(author[rows]),
            video_type[rows],
            upload_text[rows],
            upload_type[rows],
            np.full(tag.size, "0.0", dtype=object),  # visible_status
            duration,
            int_text(width[rows]) + ".0",
            int_text(height[rows]) + ".0",
            int_text(music_id[rows]),
            music_type[rows],
            tag,
        ]

    write_table(path, ",".join(VIDEO_BASIC_COLUMNS), n, columns)


# video_features_statistic: video_id, counts, then per-video totals. Each count is its parent's
# count times a rate (times log-normal noise); each "*_user_num" 70-100% of its count.
STATISTIC_COUNTS = (  # (name, parent, rate)
    ("show_cnt", "", 0.0),
    ("play_cnt", "show_cnt", 0.4),
    ("complete_play_cnt", "play_cnt", 0.3),
    ("valid_play_cnt", "play_cnt", 0.6),
    ("long_time_play_cnt", "play_cnt", 0.25),
    ("short_time_play_cnt", "play_cnt", 0.45),
    ("like_cnt", "play_cnt", 0.04),
    ("click_like_cnt", "like_cnt", 0.3),
    ("double_click_cnt", "like_cnt", 0.7),
    ("cancel_like_cnt", "like_cnt", 0.03),
    ("comment_cnt", "play_cnt", 0.005),
    ("direct_comment_cnt", "comment_cnt", 0.7),
    ("reply_comment_cnt", "comment_cnt", 0.3),
    ("delete_comment_cnt", "comment_cnt", 0.02),
    ("comment_like_cnt", "comment_cnt", 1.5),
    ("follow_cnt", "play_cnt", 0.003),
    ("cancel_follow_cnt", "follow_cnt", 0.05),
    ("share_cnt", "play_cnt", 0.002),
    ("share_all_cnt", "share_cnt", 1.3),
    ("outsite_share_all_cnt", "share_all_cnt", 0.4),
    ("download_cnt", "play_cnt", 0.001),
    ("report_cnt", "show_cnt", 0.0002),
    ("reduce_similar_cnt", "show_cnt", 0.001),
    ("collect_cnt", "play_cnt", 0.002),
    ("cancel_collect_cnt", "collect_cnt", 0.05),
)
STATISTIC_USER_NUMS = tuple(
    name.replace("_cnt", "_user_num")
    for name, _, _ in STATISTIC_COUNTS
    if name not in ("click_like_cnt", "double_click_cnt", "outsite_share_all_cnt")
)
STATISTIC_COLUMNS = (
    "video_id",
    "counts",
    *(name for name, _, _ in STATISTIC_COUNTS),
    *STATISTIC_USER_NUMS,
    "play_duration",  # total ms played
    "play_progress",  # mean share of the video played
    "comment_stay_duration",  # total ms on the comment panel
)
SHOWS_PER_VIDEO = 20_000  # mean show_cnt: the platform's history, far beyond the logs


def _write_video_statistic(
    path: Path, world: World, dims: RandScale, upload: np.ndarray, rng: np.random.Generator
) -> None:
    n = world.scale.videos
    popularity = world.catalog.popularity / world.catalog.popularity.mean()
    noise = {name: rng.lognormal(0.0, 0.3, n) for name, _, _ in STATISTIC_COUNTS}
    counts: dict[str, np.ndarray] = {}
    for name, parent, rate in STATISTIC_COUNTS:
        base = SHOWS_PER_VIDEO * popularity if not parent else counts[parent] * rate
        counts[name] = np.rint(base * noise[name])
    user_nums = {
        name: np.rint(counts[name.replace("_user_num", "_cnt")] * rng.uniform(0.7, 1.0, n))
        for name in STATISTIC_USER_NUMS
    }
    progress = np.clip(rng.beta(2.0, 3.0, n), 0.0, 1.0)
    play_duration = counts["play_cnt"] * world.catalog.duration_ms * progress
    comment_stay = counts["comment_cnt"] * rng.lognormal(np.log(8_000), 0.5, n)
    last_date = np.datetime64(simulated_dates(dims)[-1], "D")
    days_live = (last_date - upload).astype(np.int64) + 1  # daily records aggregated

    whole = [
        *(counts[name] for name, _, _ in STATISTIC_COUNTS),
        *(user_nums[name] for name in STATISTIC_USER_NUMS),
        np.rint(play_duration),
    ]

    def floats(values: np.ndarray) -> np.ndarray:  # whole numbers, written as floats: 12.0
        return int_text(values.astype(np.int64)) + ".0"

    def columns(rows: slice) -> list[np.ndarray]:
        return [
            int_text(np.arange(n)[rows]),
            int_text(days_live[rows]),
            *(floats(values[rows]) for values in whole),
            np.round(progress[rows], 6).astype(str).astype(object),
            floats(np.rint(comment_stay[rows])),
        ]

    write_table(path, ",".join(STATISTIC_COLUMNS), n, columns)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def log_file_names(variant: str, scale: str = "tiny") -> list[str]:
    """The interaction log files written for a variant, in writing order."""
    dims = _dims(variant, scale)
    names = []
    for stem in WINDOW_FILE_STEMS:
        if dims.log_parts > 1:
            names += [f"{stem}_{variant}_part{k}.csv" for k in range(1, dims.log_parts + 1)]
        else:
            names.append(f"{stem}_{variant}.csv")
    return [*names, f"{RANDOM_FILE_STEM}_{variant}.csv"]


def generate_kuairand(
    out_dir: str | Path,
    scale: str = "small",
    seed: int = 0,
    variant: str = "pure",
    order: SessionOrder | None = None,
) -> dict:
    """Writes a KuaiRand variant's data/ files into out_dir and a manifest; returns the manifest.
    `order`: the feed sessions' sequence structure (default: synthetic.world's constants)."""
    dims = _dims(variant, scale)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_kuairand_world(scale, seed, variant)
    rngs = streams(seed)
    missing_duration = rngs["extra"].random(dims.videos) < MISSING_DURATION_SHARE

    log = _simulate_logs(world, dims, rngs["views"], missing_duration, order or SessionOrder())
    # Three logs: standard rows of each window, and the random rows.
    is_rand = log["is_rand"] == 1
    selections = [
        ~is_rand & (log["window"] == 0),
        ~is_rand & (log["window"] == 1),
        is_rand,
    ]
    names = log_file_names(variant, scale)
    parts = [names[: dims.log_parts], names[dims.log_parts : -1], names[-1:]]
    times, kinds, rows = [], [], {}
    for selection, files in zip(selections, parts, strict=True):
        subset = {name: values[selection] for name, values in log.items()}
        time_ms, row_kind, sizes = _write_log(
            [out / name for name in files], subset, rngs["bad_rows"]
        )
        times.append(time_ms)
        kinds.append(row_kind)
        rows.update(
            {name.removesuffix(".csv"): size for name, size in zip(files, sizes, strict=True)}
        )

    side_rng = rngs["side_files"]
    upload = _upload_dates(world, dims, side_rng)
    _write_user_features(out / f"user_features_{variant}.csv", world, side_rng)
    _write_video_basic(
        out / f"video_features_basic_{variant}.csv", world, upload, missing_duration, side_rng
    )
    _write_video_statistic(
        out / f"video_features_statistic_{variant}.csv", world, dims, upload, side_rng
    )

    days = _utc_days(simulated_dates(dims))
    time_ms, row_kind = np.concatenate(times), np.concatenate(kinds)
    manifest = {
        "dataset": "kuairand",
        "variant": variant,
        "scale": scale,
        "seed": seed,
        "start_date": WINDOW_STARTS[0],  # Beijing date the logs start on
        "days": days,  # UTC dates
        "rows": rows,  # per log file (name without .csv)
        **day_counts(days, utc_day_index(time_ms, days), row_kind, BAD_ROW_KINDS),
        "users": dims.users,
        "videos": dims.videos,
        "files": [
            *names,
            f"user_features_{variant}.csv",
            f"video_features_basic_{variant}.csv",
            f"video_features_statistic_{variant}.csv",
        ],
    }
    return write_manifest(out, manifest)
