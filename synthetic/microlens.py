"""Deterministic synthetic MicroLens data (100k, 50k), written in the release's native files.

For the variant "100k" (prefix `MicroLens-100k_`):

- `MicroLens-100k_pairs.csv`: header `user,item,timestamp` (epoch ms), rows sorted by user,
  then time; ids start at 1;
- `MicroLens-100k_pairs.tsv`: no header, `user<TAB>item item item` in time order, one line per
  user: the valid rows of pairs.csv (bad rows left out, duplicates once);
- `MicroLens-100k_title_en.csv`: NO header, CRLF line endings, `id, title` with a space after
  the comma. As in the real file a title is cut at its first comma (so none holds a comma or a
  quote), some are empty (`7, `) and some end in a space;
- `MicroLens-100k_likes_and_views.txt`: no header, `item<TAB>likes<TAB>views`.

The variant "50k" writes `MicroLens-50k_pairs.csv`, `..._pairs.tsv` and
`..._likes_and_views.txt` the same way, but its titles as the real 50k release does:
`MicroLens-50k_titles.csv` with a header `item,title`, the whole titles (commas included, the
field quoted then), LF line endings, and no line for an item without a title.

Plus `reelflow_manifest.json` (rows per UTC day of pairs.csv, valid and bad). Interactions come
from the simulation core of `synthetic.world`: Zipf popularity, category tastes, sessions; every
user has at least 5 interactions (the release is filtered so), on 1-3 active days.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthetic.text import (
    NON_NUMERIC,
    csv_field,
    day_counts,
    int_text,
    join_lines,
    plan_bad_rows,
    utc_day_index,
    write_manifest,
)
from synthetic.world import (
    DAY_MS,
    Platform,
    Scale,
    SessionOrder,
    World,
    build_world,
    date_ms,
    first_of_runs,
    play_duration_ms,
    simulate_views,
    some_rows,
    split_sessions,
    streams,
    view_times_in_day,
)

VARIANTS = ("100k", "50k")

# --------------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LensScale:
    users: int  # users in pairs.csv (ids 1..users)
    items: int  # items in the title and likes files (ids 1..items)
    days: int  # UTC days of interactions from START_DATE
    extra_per_user: float  # mean interactions per user beyond MIN_PER_USER


# Full scales hold the real counts: 100k 719,405 rows, 100,000 users, 19,738 items; 50k 359,708
# rows, 50,000 users, 19,220 items (both 7.19 interactions per user). The real period is not
# documented here: we take 103 days ending 2022-09-11. Small is half the full users (the full
# release is itself under 1M rows); tiny a few thousand rows.
SCALES: dict[str, dict[str, LensScale]] = {
    "100k": {
        "tiny": LensScale(600, 500, 7, 2.2),
        "small": LensScale(50_000, 10_000, 60, 2.194),
        "full": LensScale(100_000, 19_738, 103, 2.194),
    },
    "50k": {
        "tiny": LensScale(600, 500, 7, 2.2),
        "small": LensScale(25_000, 10_000, 60, 2.194),
        "full": LensScale(50_000, 19_220, 103, 2.194),
    },
}
START_DATE = "2022-06-01"
MIN_PER_USER = 5  # the release keeps users with at least 5 interactions
MAX_ACTIVE_DAYS = 3  # a user's interactions fall on 1-3 days (bursts, not a steady trickle)

MICROLENS = Platform(
    categories=40,
    category_size_exponent=0.9,
    tag_count_probs=(0.7, 0.25, 0.05),
    # Flatter than KuaiRec's 1.0: exposure raises it to the power 1.4, and MicroLens' hits are
    # mild (the top 20 of 19,738 items hold ~5% of the rows with 0.5; ~35% with 1.0).
    popularity_exponent=0.5,
    duration_median_ms=60_000,
    duration_log_sigma=0.8,
    duration_min_ms=5_000,
    duration_max_ms=600_000,
    new_video_share=0.15,
    taste_concentration=0.2,  # 40 x 0.2: users about as focused as KuaiRec's (31 x 0.3)
    vectorized_tags=True,
    # The release names no authors: as KuaiRec, two items per creator on average.
    videos_per_creator=2.0,
)
# The release lists each (user, item) pair once: no re-watches; topic and creator runs as the
# other datasets.
MICROLENS_ORDER = SessionOrder(rewatch=0.0)

BAD_ROW_KINDS = (
    "missing_user",  # user left empty
    "non_numeric_item",  # item is text ("abc")
    "duplicate",  # exact copy of a valid row, right after it
)

# Titles: 0.36% empty (real: 72 of 19,738); half of the whole titles hold a comma (the 100k file
# keeps what comes before it); 8% of those have a space before the comma (the cut title then
# ends in a space); 3% hold an emoji (non-ASCII UTF-8).
EMPTY_TITLE_SHARE = 0.0036
COMMA_SHARE = 0.5
SPACE_BEFORE_COMMA_SHARE = 0.08
EMOJI_SHARE = 0.03
EMOJIS = ("✨", "🔥", "🤣", "❗️", "🏠", "🎒")
WORDS = (
    "funny cat dog baby dance song cover cooking recipe street food travel sunset beach city "
    "village farm fishing car drift football basketball makeup outfit daily vlog prank magic "
    "guitar piano drawing craft workout yoga game anime movie clip news story life love hero "
    "king glory peace elite summer winter spring school teacher student family mother father "
    "brother sister friend wedding drama comedy horror battle world space robot dragon monster "
    "village noodles chicken spicy sweet tea coffee cake bread rice soup hotpot barbecue fruit "
    "puppy kitten panda tiger horse bird fish garden flower tree mountain river ocean island"
).split()
HASHTAGS_MAX = 3
# likes_and_views: views grow with popularity (mean VIEWS_PER_ITEM), likes ~5% of the views.
VIEWS_PER_ITEM = 200_000
LIKE_RATE_BETA = (2.0, 38.0)


def _dims(variant: str, scale: str) -> LensScale:
    if variant not in SCALES:
        raise ValueError(f"unknown MicroLens variant {variant!r}; expected one of {VARIANTS}")
    if scale not in SCALES[variant]:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES[variant])}")
    return SCALES[variant][scale]


def build_microlens_world(scale: str = "tiny", seed: int = 0, variant: str = "100k") -> World:
    """The latent items and users behind `generate_microlens(scale, seed, variant)` (ids in the
    world start at 0: file id = world id + 1)."""
    dims = _dims(variant, scale)
    per_day = (MIN_PER_USER + dims.extra_per_user) / dims.days
    return build_world(Scale(dims.users, dims.items, dims.days, per_day), seed, MICROLENS)


# --------------------------------------------------------------------------------------------
# Interactions
# --------------------------------------------------------------------------------------------


def _interactions_per_user_day(
    world: World, dims: LensScale, rng: np.random.Generator
) -> np.ndarray:
    """Counts per user-day (index user * days + day): MIN_PER_USER plus a Poisson number that
    grows with the user's activity, spread over 1-3 random active days."""
    activity = world.audience.activity / world.audience.activity.mean()
    per_user = MIN_PER_USER + rng.poisson(dims.extra_per_user * activity)
    user = np.repeat(np.arange(dims.users), per_user)
    active_days = rng.integers(0, dims.days, (dims.users, MAX_ACTIVE_DAYS))
    n_active = rng.integers(1, MAX_ACTIVE_DAYS + 1, dims.users)
    pick = np.floor(rng.random(user.size) * n_active[user]).astype(np.int64)
    day = active_days[user, pick]
    # A video cannot be seen before its upload day: the exposure model only offers uploaded
    # videos, so every day works.
    return np.bincount(user * dims.days + day, minlength=dims.users * dims.days)


def _simulate_pairs(
    world: World, dims: LensScale, rng: np.random.Generator, order: SessionOrder
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, timestamp_ms) with world ids, sorted by user, then time; (user, item) pairs
    are unique when order.rewatch is 0 (the release lists each pair once)."""
    counts = _interactions_per_user_day(world, dims, rng)
    user_day, sessions_per_user_day, session = split_sessions(counts, rng)
    item, watch_ratio = simulate_views(world, user_day, session, rng, order)
    # Play times only space the interactions of a session apart.
    play = play_duration_ms(watch_ratio, world.catalog.duration_ms[item])
    time_in_day = view_times_in_day(world, user_day, session, sessions_per_user_day, play, rng)
    timestamp = date_ms(START_DATE) + (user_day % dims.days) * DAY_MS + time_in_day
    return user_day // dims.days, item, timestamp


def _write_pairs(
    out: Path,
    prefix: str,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """pairs.csv with bad rows and pairs.tsv from its valid rows; returns (timestamp, bad kind or
    -1) of every row of pairs.csv."""
    user, item, timestamp = pairs
    source, row_kind = plan_bad_rows(user.size, BAD_ROW_KINDS, rng)
    columns = [int_text(user[source] + 1), int_text(item[source] + 1), int_text(timestamp[source])]
    columns[0][row_kind == BAD_ROW_KINDS.index("missing_user")] = ""
    columns[1][row_kind == BAD_ROW_KINDS.index("non_numeric_item")] = NON_NUMERIC
    with (out / f"{prefix}_pairs.csv").open("w", encoding="utf-8", newline="\n") as f:
        f.write("user,item,timestamp\n")
        f.write(join_lines(columns))

    # The tsv holds what a reader keeps of pairs.csv: valid rows, each duplicate once.
    valid = source[row_kind == -1]
    valid_user, valid_item = user[valid] + 1, int_text(item[valid] + 1)
    starts = np.flatnonzero(first_of_runs(valid_user))
    ends = np.r_[starts[1:], valid_user.size]
    with (out / f"{prefix}_pairs.tsv").open("w", encoding="utf-8", newline="\n") as f:
        for begin, end in zip(starts.tolist(), ends.tolist(), strict=True):
            f.write(f"{valid_user[begin]}\t{' '.join(valid_item[begin:end])}\n")
    return timestamp[source], row_kind


# --------------------------------------------------------------------------------------------
# Side files
# --------------------------------------------------------------------------------------------


def _titles(world: World, rng: np.random.Generator) -> list[str]:
    """Whole English titles, worded after the item's categories (so text features carry the
    taste signal): words from each category's small vocabulary, then hashtags."""
    vocabulary = [
        rng.choice(WORDS, size=8, replace=False).tolist() for _ in range(world.platform.categories)
    ]
    empty = some_rows(rng, len(world.catalog.tags), EMPTY_TITLE_SHARE)  # at least one
    titles: list[str] = []
    for tags, is_empty in zip(world.catalog.tags, empty.tolist(), strict=True):
        if is_empty:
            titles.append("")
            continue
        own = vocabulary[tags[0]]
        words = [own[i] if rng.random() < 0.7 else str(rng.choice(WORDS)) for i in range(8)]
        words = [str(w) for w in rng.permutation(words)[: rng.integers(2, 9)]]
        if rng.random() < EMOJI_SHARE:
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(EMOJIS)))
        if rng.random() < COMMA_SHARE and len(words) > 1:
            at = int(rng.integers(1, len(words)))
            space = " " if rng.random() < SPACE_BEFORE_COMMA_SHARE else ""
            words[at - 1] += space + ","
        hashtags = [f"# {vocabulary[t][rng.integers(0, 8)]}" for t in tags[:HASHTAGS_MAX]]
        titles.append(" ".join([*words, *hashtags]))
    return titles


def _write_titles(out: Path, prefix: str, variant: str, titles: list[str]) -> str:
    if variant == "50k":
        # The 50k release: header, whole titles (quoted when they hold a comma), items without
        # a title left out.
        name = f"{prefix}_titles.csv"
        lines = [f"{item},{csv_field(t)}\n" for item, t in enumerate(titles, start=1) if t]
        with (out / name).open("w", encoding="utf-8", newline="\n") as f:
            f.write("item,title\n")
            f.writelines(lines)
        return name
    # The 100k release: no header, CRLF, "id, title" with the title cut at its first comma
    # (the file was evidently written from a comma split), quotes gone.
    name = f"{prefix}_title_en.csv"
    with (out / name).open("w", encoding="utf-8", newline="") as f:
        for item, title in enumerate(titles, start=1):
            f.write(f"{item}, {title.split(',', 1)[0].replace(chr(34), '')}\r\n")
    return name


def _write_likes_and_views(out: Path, prefix: str, world: World, rng: np.random.Generator) -> str:
    n = world.scale.videos
    popularity = world.catalog.popularity / world.catalog.popularity.mean()
    views = np.rint(VIEWS_PER_ITEM * popularity * rng.lognormal(0.0, 0.5, n)).astype(np.int64)
    likes = np.rint(views * rng.beta(*LIKE_RATE_BETA, n)).astype(np.int64)
    name = f"{prefix}_likes_and_views.txt"
    with (out / name).open("w", encoding="utf-8", newline="\n") as f:
        f.write(join_lines([int_text(np.arange(1, n + 1)), int_text(likes), int_text(views)], "\t"))
    return name


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def generate_microlens(
    out_dir: str | Path,
    scale: str = "small",
    seed: int = 0,
    variant: str = "100k",
    order: SessionOrder = MICROLENS_ORDER,
) -> dict:
    """Writes a MicroLens variant's files into out_dir and a manifest; returns the manifest.
    `order`: the sessions' sequence structure (default MICROLENS_ORDER)."""
    dims = _dims(variant, scale)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_microlens_world(scale, seed, variant)
    rngs = streams(seed)
    prefix = f"MicroLens-{variant}"

    pairs = _simulate_pairs(world, dims, rngs["views"], order)
    timestamp, row_kind = _write_pairs(out, prefix, pairs, rngs["bad_rows"])
    side_rng = rngs["side_files"]
    title_file = _write_titles(out, prefix, variant, _titles(world, side_rng))
    likes_file = _write_likes_and_views(out, prefix, world, side_rng)

    days = [str(np.datetime64(START_DATE, "D") + day) for day in range(dims.days)]
    manifest = {
        "dataset": "microlens",
        "variant": variant,
        "scale": scale,
        "seed": seed,
        "start_date": START_DATE,
        "days": days,  # UTC dates
        "rows": {f"{prefix}_pairs": int(timestamp.size)},
        **day_counts(days, utc_day_index(timestamp, days), row_kind, BAD_ROW_KINDS),
        "users": dims.users,
        "videos": dims.items,
        "files": [f"{prefix}_pairs.csv", f"{prefix}_pairs.tsv", title_file, likes_file],
    }
    return write_manifest(out, manifest)
