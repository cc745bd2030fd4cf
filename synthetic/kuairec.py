"""Deterministic synthetic KuaiRec 2.0 data, written in the dataset's native file formats.

The real KuaiRec files are large and cannot ship with the project, so tests, demos and
benchmarks run on this generator instead. It writes the five files the pipeline ingests
(`big_matrix.csv`, `small_matrix.csv`, `item_categories.csv`, `user_features.csv`,
`kuairec_caption_category.csv`) with the real files' exact headers and quirks, plus
`reelflow_manifest.json` that says how many rows (valid and bad) each UTC day holds, so that
ingest and data-quality jobs can be checked against known answers.

The interactions are simulated from the latent world of `synthetic.world`.
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
    day_counts,
    int_text,
    join_lines,
    plan_bad_rows,
    range_label,
    utc_day_index,
    write_manifest,
    write_rows,
)
from synthetic.world import (
    DAY_MS,
    UTC8_OFFSET_MS,
    Catalog,
    Platform,
    Scale,
    SessionOrder,
    World,
    build_world,
    date_ms,
    day_moods,
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
# The catalog (each knob says why it has the value it has)
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

KUAIREC = Platform(
    categories=N_CATEGORIES,
    category_size_exponent=CATEGORY_SIZE_EXPONENT,
    tag_count_probs=TAG_COUNT_PROBS,
    popularity_exponent=POPULARITY_EXPONENT,
    duration_median_ms=DURATION_MEDIAN_MS,
    duration_log_sigma=DURATION_LOG_SIGMA,
    duration_min_ms=DURATION_MIN_MS,
    duration_max_ms=DURATION_MAX_MS,
    new_video_share=NEW_VIDEO_SHARE,
    taste_concentration=TASTE_CONCENTRATION,
    vectorized_tags=False,
    # KuaiRec's files carry no author (item_daily_features.csv, which does, is not generated):
    # two videos per creator on average, so that most videos have a follow-up in the catalog.
    videos_per_creator=2.0,
)

# --------------------------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------------------------

# Bad rows in big_matrix.csv (~0.5% of the rows, synthetic.text.BAD_ROW_SHARE): five known kinds.
BAD_ROW_KINDS = (
    "missing_user_id",  # user_id left empty
    "non_numeric_play_duration",  # play_duration is text ("abc")
    "negative_video_duration",  # video_duration < 0, so watch_ratio < 0 too
    "watch_ratio_out_of_range",  # watch_ratio = 1e6
    "duplicate",  # exact copy of a valid row, right after it
)
OUT_OF_RANGE_WATCH_RATIO = 1e6

# small_matrix.csv: ~0.5% of its rows have empty time/date/timestamp (NaN in the real file).
SMALL_MATRIX_MISSING_TIME_SHARE = 0.005

# Captions: the real file has four captions with a bare \r; we write four too, two of them in
# an unquoted field (exactly like the real file) and two in a quoted field (they hold a comma).
CAPTIONS_WITH_CARRIAGE_RETURN = 4

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


def scale_of(name: str) -> Scale:
    """A named scale, or "<scale>/<n>": its users (and small_matrix users) divided by n, the
    days, catalog and views per user-day kept, so the log holds about 1/n of the views
    (bench/pipeline_scale.py runs "full/8" .. "full")."""
    base, n = split_scale(name, SCALES, "users")
    scale = SCALES[base]
    if n == 1:
        return scale
    return dataclasses.replace(
        scale,
        users=max(1, scale.users // n),
        small_matrix_users=max(1, scale.small_matrix_users // n),
    )


def build_kuairec_world(scale: str = "tiny", seed: int = 0) -> World:
    """The latent videos and users behind `generate_kuairec(scale, seed)` (same seed, same world)."""
    return build_world(scale_of(scale), seed, KUAIREC)


# --------------------------------------------------------------------------------------------
# Interactions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Views:
    user_id: np.ndarray  # int64, sorted
    video_id: np.ndarray  # int64
    play_duration: np.ndarray  # int64 ms
    video_duration: np.ndarray  # int64 ms
    timestamp_ms: np.ndarray  # int64 epoch ms (UTC), increasing within a user


def _simulate_big_matrix(
    world: World,
    rng: np.random.Generator,
    start_ms: int,
    small_users: np.ndarray,
    small_videos: np.ndarray,
    order: SessionOrder,
) -> Views:
    scale = world.scale
    mood = day_moods(world, rng)
    views_per_user_day = rng.poisson(world.audience.activity[:, None] * mood).ravel()
    # Row order: user, then day, then time within the day (= big_matrix's sort order).
    user_day, sessions_per_user_day, session = split_sessions(views_per_user_day, rng)

    video, watch_ratio = simulate_views(
        world, user_day, session, rng, order, small_users, small_videos
    )
    keep = video >= 0
    user_day, session, video = user_day[keep], session[keep], video[keep]
    user = user_day // scale.days
    video_duration = world.catalog.duration_ms[video]
    play_duration = play_duration_ms(watch_ratio[keep], video_duration)
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
    watch_ratio = simulate_watch_ratio(
        rng, affinity, video_duration, reference_ms=world.platform.duration_median_ms
    )
    return Views(
        user,
        video,
        play_duration_ms(watch_ratio, video_duration),
        video_duration,
        start_ms + offsets.ravel(),
    )


# --------------------------------------------------------------------------------------------
# big_matrix.csv and small_matrix.csv, exactly as the real files write their values
# --------------------------------------------------------------------------------------------

# KuaiRec writes times with the shortest fraction (float style): .438, .5, .32 and .0 for a
# whole second. Parsers must accept 1-3 fractional digits, as for the real file.
_FRACTION = np.array(["." + (f"{ms:03d}".rstrip("0") or "0") for ms in range(1000)], dtype=object)
_CLOCK = np.array(
    [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)], dtype=object
)


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
            NON_NUMERIC,
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
    # str([27, 9]) == "[27, 9]": a Python list literal, quoted by csv_field when it has a comma.
    rows = [[str(video), str(tags)] for video, tags in enumerate(catalog.tags)]
    write_rows(path, ("video_id", "feat"), rows)


# KuaiRec's own bucket labels, copied from the real user_features.csv (the ones KuaiRand shares
# are in synthetic.text).
FANS_RANGES = (
    [1, 10, 100, 1_000, 5_000, 10_000],
    ["0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)"],
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
    write_rows(path, USER_FEATURE_COLUMNS, [list(row) for row in zip(*columns, strict=True)])


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
    write_rows(path, CAPTION_COLUMNS, rows)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def generate_kuairec(
    out_dir: str | Path,
    scale: str = "small",
    seed: int = 0,
    start_date: str = "2020-07-05",
    order: SessionOrder | None = None,
) -> dict:
    """Writes the five KuaiRec files into out_dir and a manifest; returns the manifest dict.
    `order`: the sessions' sequence structure (default: synthetic.world's constants)."""
    scale_of(scale)  # an unknown scale fails before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_kuairec_world(scale, seed)
    dims, rngs = world.scale, streams(seed)
    start_ms = date_ms(start_date)
    days = [str(np.datetime64(start_date, "D") + day) for day in range(dims.days)]

    # The small_matrix block: random users, and videos that exist from the first day.
    small_rng = rngs["small_matrix"]
    small_users = np.sort(small_rng.choice(dims.users, dims.small_matrix_users, replace=False))
    from_day_one = np.flatnonzero(world.catalog.upload_day == 0)
    small_videos = np.sort(small_rng.choice(from_day_one, dims.small_matrix_videos, replace=False))

    views = _simulate_big_matrix(
        world, rngs["views"], start_ms, small_users, small_videos, order or SessionOrder()
    )
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
