"""Writing the native files: text of numbers and fields exactly as the real files write them,
CSV tables, the bad rows every log holds, and the manifest of known answers.

Also the layout of Kuaishou's user_features.csv, which KuaiRec and KuaiRand share.
"""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from synthetic.world import DAY_MS, date_ms

# --------------------------------------------------------------------------------------------
# Formatting, exactly as the real files write their values
# --------------------------------------------------------------------------------------------


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


def csv_field(value: str) -> str:
    r"""Quote like KuaiRec's files: only fields holding a comma, a double quote or a newline.

    A bare \r does not trigger quoting: the real caption file has unquoted bare \r characters.
    """
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_rows(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> None:
    """Write a header line and rows of text fields, each quoted by csv_field where it must be."""
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(",".join(header) + "\n")
        for row in rows:
            out.write(",".join(csv_field(value) for value in row) + "\n")


def range_label(values: np.ndarray, edges: list[int], labels: list[str]) -> list[str]:
    """Bucket label per value: labels[i] where edges[i-1] <= value < edges[i] (np.digitize)."""
    return [labels[i] for i in np.digitize(values, edges, right=False).tolist()]


# --------------------------------------------------------------------------------------------
# Kuaishou's user_features.csv (KuaiRec and KuaiRand): its columns, and the bucket labels of
# the real file that both releases use (each adds its own)
# --------------------------------------------------------------------------------------------

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
FOLLOW_RANGES = (
    [1, 11, 51, 101, 151, 251, 501],
    ["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "(250,500]", "500+"],
)
FRIEND_RANGES = (
    [1, 5, 30, 60, 120, 250],
    ["0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+"],
)

# --------------------------------------------------------------------------------------------
# Bad rows
# --------------------------------------------------------------------------------------------

# ~0.5% of every log's rows are bad, split evenly over the dataset's known kinds, so the
# data-quality checks downstream have something to catch and a known count to match.
BAD_ROW_SHARE = 0.005
NON_NUMERIC = "abc"  # what a number's field holds in a "non-numeric" bad row


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


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------

MANIFEST_NAME = "reelflow_manifest.json"


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
