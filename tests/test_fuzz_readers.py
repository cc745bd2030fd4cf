"""Property-based fuzzing of the native readers against an independent oracle (issue 12).

Each example is one release file -- KuaiRec `big_matrix.csv`, KuaiRand
`log_standard_4_08_to_4_21_pure.csv`, MicroLens `MicroLens-100k_pairs.csv`, or an events csv
log with its `reelflow_events.toml` -- of 50-200 random valid rows with random mutations of
fields (NaN, +-inf, 1e20, integers beyond int64, negative values, empty fields, non-numeric
text, invalid UTF-8, wrong field counts, quoted separators, far past/future times, ...) and
of the file (a UTF-8 BOM, CRLF or mixed line endings, no final newline). For every example:
the reader never raises, valid + quarantined rows equal the file's rows, every quarantined
row has a reason, and the valid rows and the quarantined count equal what the pure-Python
oracle (tests/fuzz_oracle.py: `csv` and plain Python, never a reader helper) decides.

Profiles (tests/conftest.py): `ci` (default; derandomized) runs EXAMPLES generated examples
per reader plus the 3 explicit @examples of FORCED_GROUPS (files that between them force
every mutation class at least once); `long`:
    HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/test_fuzz_readers.py
"""

from __future__ import annotations

import math
import random
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F
from pyspark.sql.types import TimestampNTZType, TimestampType

from tests import fuzz_oracle as oracle

NOW_ISO = "2026-01-01T00:00:00Z"  # the landing clock for every example (REELFLOW_NOW)
NOW_MS = oracle.iso_to_ms(NOW_ISO)
LATEST_MS = NOW_MS + oracle.DAY_MS
EXAMPLES = settings.default.max_examples  # per reader: 30 under `ci`, 1000 under `long`
RUN_COUNTS: Counter = Counter()  # examples actually run, per reader (printed at the end)

# ----------------------------------------------------------------------------- layouts

# Column kinds: id (int64), tab (int32), ms (non-negative number -> ms), ts_ms / ts_s (epoch
# ms / s), ratio (number in [0, 100]), flag (0/1), flag_words (0/1/true/false), text (free).
KUAIREC = (
    ("user_id", "id"),
    ("video_id", "id"),
    ("play_duration", "ms"),
    ("video_duration", "ms"),
    ("time", "text"),
    ("date", "text"),
    ("timestamp", "ts_s"),
    ("watch_ratio", "ratio"),
)
KUAIRAND = (
    ("user_id", "id"),
    ("video_id", "id"),
    ("date", "text"),
    ("hourmin", "text"),
    ("time_ms", "ts_ms"),
    ("is_click", "flag"),
    ("is_like", "flag"),
    ("is_follow", "flag"),
    ("is_comment", "flag"),
    ("is_forward", "flag"),
    ("is_hate", "flag"),
    ("long_view", "flag"),
    ("play_time_ms", "ms"),
    ("duration_ms", "ms"),
    ("profile_stay_time", "ms"),
    ("comment_stay_time", "ms"),
    ("is_profile_enter", "flag"),
    ("is_rand", "flag"),
    ("tab", "tab"),
)
MICROLENS = (("user", "id"), ("item", "id"), ("timestamp", "ts_ms"))
EVENT_FLAGS = ("is_click", "is_like", "is_follow", "is_comment", "is_share", "is_hate")


def events_layout(unit: str) -> tuple[tuple[str, str], ...]:
    return (
        ("uid", "id"),
        ("vid", "id"),
        ("ts", "ts_s" if unit == "s" else "ts_ms"),
        ("watched", "ms"),
        ("length", "ms"),
        ("flag", "flag_words"),
        ("note", "text"),
    )


LOG_FILE = {
    "kuairec": "big_matrix.csv",
    "kuairand": "log_standard_4_08_to_4_21_pure.csv",
    "microlens": "MicroLens-100k_pairs.csv",
    "events": "events.csv",
}

# ----------------------------------------------------------------------------- the case


@dataclass(frozen=True)
class Mutation:
    row: int  # taken modulo the row count
    column: int  # taken modulo the column count
    kind: str  # one of MUTATION_CLASSES
    variant: int  # which spelling of the class (modulo the variants it has)


@dataclass(frozen=True)
class Case:
    """One release file: `rows` valid rows from `seed`, then `mutations`, then the file form."""

    seed: int
    rows: int
    mutations: tuple[Mutation, ...] = ()
    bom: bool = False
    newline: str = "lf"  # "lf", "crlf" or "mixed"
    final_newline: bool = True
    unit: str = "ms"  # events only: the spec's time unit
    flag: str = "is_like"  # events only: the unified flag mapped


@dataclass
class Cell:
    value: str | bytes
    quoted: bool = False


def layout(dataset: str, case: Case) -> tuple[tuple[str, str], ...]:
    return {
        "kuairec": KUAIREC,
        "kuairand": KUAIRAND,
        "microlens": MICROLENS,
    }.get(dataset) or events_layout(case.unit)


def seconds_text(ms: int) -> str:
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    return f"{sign}{ms // 1000}.{ms % 1000:03d}"


def base_row(rng: random.Random, dataset: str, case: Case) -> list[str]:
    """One valid row (no HALF_UP ties anywhere)."""
    ms = rng.randint(oracle.MIN_EVENT_MS, LATEST_MS)
    duration = rng.randint(1000, 300_000)
    if dataset in ("kuairand", "events") and rng.random() < 0.05:
        duration = 0  # a zero-length item: watch_ratio undefined, the row is valid
    play = rng.randint(0, 3 * max(duration, 1000))
    user, video = str(rng.randint(-3, 40)), str(rng.randint(0, 500))
    if dataset == "kuairec":
        wall = f"2020-07-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:08:23.438"
        return [
            user,
            video,
            str(play),
            str(duration),
            wall,
            f"2020070{rng.randint(1, 9)}",
            seconds_text(ms),
            f"{play / duration:.6f}",
        ]
    if dataset == "kuairand":
        flags = [str(int(rng.random() < 0.2)) for _ in range(9)]
        return [
            user,
            video,
            "20220430",
            rng.choice(["1800", "0900", "2300"]),
            str(ms),
            *flags[:7],
            str(play),
            str(duration),
            str(rng.randint(0, 5000)),
            str(rng.randint(0, 5000)),
            *flags[7:],
            str(rng.randint(0, 14)),
        ]
    if dataset == "microlens":
        return [user, video, str(ms)]
    if case.unit == "s":
        when = seconds_text(ms) if rng.random() < 0.7 else str(ms // 1000)
    else:
        when = str(ms)
    flag = rng.choice(["0", "1", "0", "1", "true", "false"])
    note = rng.choice(["", "ok", "a, b", 'said "hi"', "x;y", "long note"])
    return [user, video, when, str(play), str(duration), flag, note]


# Mutation classes: each spelling is a function of the valid text and the column kind.
TIME_EDGES_MS = (
    0,  # epoch 0
    4_102_444_800_000,  # 2100-01-01
    oracle.MIN_EVENT_MS - 1,
    oracle.MIN_EVENT_MS,
    LATEST_MS,
    LATEST_MS + 1,
    -1,
    -62_135_596_800_000,  # 0001-01-01
    253_402_300_800_000,  # 10000-01-01
)
TEXTS = (
    "abc",
    "5d",
    "1f",
    "0x1A",
    "1_000",
    "NULL",
    "None",
    "true",
    "false",
    "\u0661\u0662",  # Arabic-Indic digits
    "\uff15",  # fullwidth 5
    "\u00bd",
    "--1",
    "1e",
    "e5",
    ".",
    "+",
    "-",
    "5.0.1",
    "1 2",
    "Infinityx",
    "1e5.5",
    "\t7",  # a tab is not an ASCII space: not trimmed
    "7\u00a0",  # no-break space: not trimmed
)
BAD_BYTES = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\x80", b"\xfe\xfe")


def _respell(value: str, kind: str, variant: int) -> str:
    """The same value spelled differently (still valid where the original was)."""
    if kind == "text":
        return value + " (respelled)"
    sign = value.startswith("-")
    digits = value.lstrip("+-")
    if kind in ("id", "tab", "flag", "flag_words"):
        if not digits.isdigit():
            return value
        return ["+" + value if not sign else value, ("-" if sign else "") + "00" + digits][
            variant % 2
        ]
    if not oracle.NUMBER_RE.fullmatch(value):
        return value  # an earlier mutation made it no number: nothing to respell
    exact = Decimal(value)
    spellings = [f"{value}0" if "." in value else f"{value}.0", f"{exact.scaleb(-2)}e2"]
    if not sign:
        spellings.append("+" + value)
    if value.startswith("0."):
        spellings.append(value[1:])
    return spellings[variant % len(spellings)]


def _decimal(value: str, kind: str, variant: int) -> str:
    if kind in ("ms", "ts_ms"):
        return value + (".25", ".75", ".", ".4999")[variant % 4]
    if kind == "ts_s":
        return value + ("25" if "." in value else ".25")
    if kind == "ratio":
        return value + "1"
    return value + (".0", ".5")[variant % 2]


def _time(value: str, kind: str, variant: int) -> str:
    ms = TIME_EDGES_MS[variant % len(TIME_EDGES_MS)]
    return seconds_text(ms) if kind == "ts_s" else str(ms)


FIELD_CLASSES = {
    "nan": lambda v, k, i: ("NaN", "nan", "NAN", "-nan")[i % 4],
    "inf": lambda v, k, i: ("inf", "Infinity", "-Infinity", "+inf", "-inf", "INF")[i % 6],
    "1e20": lambda v, k, i: ("1e20", "1E20", "-1e20", "1e308", "1e400", "1e-400")[i % 6],
    "huge_int": lambda v, k, i: (
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "-18446744073709551616",
    )[i % 6],
    "negative": lambda v, k, i: ("-" + v.lstrip("+-"), "-1", "-0")[i % 3],
    "empty": lambda v, k, i: ("", " ", "   ")[i % 3],
    "text": lambda v, k, i: TEXTS[i % len(TEXTS)],
    "bad_utf8": lambda v, k, i: (
        BAD_BYTES[i % len(BAD_BYTES)] if i % 2 else v.encode() + BAD_BYTES[i % len(BAD_BYTES)]
    ),
    "quoted": None,  # handled in apply(): quoting, with the separator or a quote inside
    "time_far": _time,
    "spaces": lambda v, k, i: (" " + v, v + "  ", "  " + v + " ")[i % 3],
    "respell": lambda v, k, i: _respell(v, k, i),
    "decimal": lambda v, k, i: _decimal(v, k, i),
}
ROW_CLASSES = ("field_count", "duplicate")
FILE_CLASSES = ("bom", "crlf")
MUTATION_CLASSES = (*FIELD_CLASSES, *ROW_CLASSES, *FILE_CLASSES)
RANDOM_KINDS = (*FIELD_CLASSES, *ROW_CLASSES)  # what a random Mutation may be


def apply(rows: list[list[Cell]], kinds: list[str], m: Mutation) -> None:
    r = m.row % len(rows)
    row = rows[r]
    if m.kind == "duplicate":
        target = r if r > 0 else 1
        source = m.variant % target
        rows[target] = [Cell(c.value, c.quoted) for c in rows[source]]
        return
    if m.kind == "field_count":
        c = m.column % len(row)
        match m.variant % 4:
            case 0:
                del row[-1]
            case 1:
                del row[c]
            case 2:
                row.append(Cell(""))
            case _:
                row.insert(c, Cell("7"))
        return
    c = m.column % len(kinds)
    if m.kind == "time_far":
        c = next(i for i, k in enumerate(kinds) if k.startswith("ts_"))
    if c >= len(row):
        return  # the row lost fields to an earlier mutation
    cell, kind = row[c], kinds[c]
    value = cell.value if isinstance(cell.value, str) else cell.value.decode("utf-8", "replace")
    if m.kind == "quoted":
        spellings = [value, value + ",", "1,5", 'a"b', "", f"{value}, {value}"]
        row[c] = Cell(spellings[m.variant % len(spellings)], quoted=True)
        return
    row[c] = Cell(FIELD_CLASSES[m.kind](value, kind, m.variant), cell.quoted)


def quote(cell: Cell) -> bytes:
    if isinstance(cell.value, bytes):
        return cell.value
    text = cell.value
    if cell.quoted or any(ch in text for ch in ',"\r\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text.encode("utf-8")


def render(dataset: str, case: Case) -> bytes:
    """The file's bytes."""
    rng = random.Random(case.seed)
    columns = layout(dataset, case)
    kinds = [k for _, k in columns]
    rows = [[Cell(v) for v in base_row(rng, dataset, case)] for _ in range(case.rows)]
    for m in case.mutations:
        apply(rows, kinds, m)
    lines = [",".join(name for name, _ in columns).encode()]
    lines += [b",".join(quote(c) for c in row) for row in rows]
    out = bytearray(oracle.BOM if case.bom else b"")
    for i, line in enumerate(lines):
        crlf = case.newline == "crlf" or (case.newline == "mixed" and rng.random() < 0.5)
        last = i == len(lines) - 1
        out += line + (b"" if last and not case.final_newline else b"\r\n" if crlf else b"\n")
    return bytes(out)


def events_spec(case: Case) -> oracle.EventsSpec:
    mapping = {
        "user_id": "uid",
        "video_id": "vid",
        "event_ts": "ts",
        "watch_ms": "watched",
        "duration_ms": "length",
        case.flag: "flag",
    }
    return oracle.EventsSpec(case.unit, case.flag, mapping)


def spec_toml(case: Case) -> str:
    return (
        'format = "csv"\nfiles = ["events.csv"]\nsource = "fuzz"\n\n'
        '[mapping]\nuser_id = "uid"\nvideo_id = "vid"\nevent_ts = "ts"\n\n'
        f'[time]\nunit = "{case.unit}"\n\n'
        f'[optional]\nwatch_ms = "watched"\nduration_ms = "length"\n{case.flag} = "flag"\n'
    )


def write_release(dataset: str, case: Case, folder: Path) -> bytes:
    """The release folder: the fuzzed log plus the small companion files the reader needs."""
    data = render(dataset, case)
    (folder / LOG_FILE[dataset]).write_bytes(data)
    if dataset == "kuairec":
        (folder / "item_categories.csv").write_text('video_id,feat\n0,[8]\n1,"[27, 9]"\n')
        (folder / "kuairec_caption_category.csv").write_text(
            "video_id,manual_cover_text,caption,topic_tag,first_level_category_id,"
            "first_level_category_name,second_level_category_id,second_level_category_name,"
            "third_level_category_id,third_level_category_name\n"
            "0,UNKNOWN,hi,[],8,a,-124,UNKNOWN,-124,UNKNOWN\n"
        )
        (folder / "user_features.csv").write_text(USER_FEATURES)
    elif dataset == "kuairand":
        for other, data_ in KUAIRAND_COMPANION_LOGS.items():
            (folder / other).write_bytes(data_)
        (folder / "user_features_pure.csv").write_text(USER_FEATURES)
        (folder / "video_features_basic_pure.csv").write_text(
            "video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,"
            "server_width,server_height,music_id,music_type,tag\n"
            '0,7,NORMAL,2022-04-10,Web,0.0,87433.0,720.0,1280.0,9,9.0,"20,43"\n'
        )
    elif dataset == "events":
        (folder / "reelflow_events.toml").write_text(spec_toml(case))
    return data


# KuaiRand's other two logs (a release needs all three, each with a row): one valid row each,
# from a user the fuzzed rows never hold; the oracle judges them too.
_KUAIRAND_HEADER = ",".join(name for name, _ in KUAIRAND)
KUAIRAND_COMPANION_LOGS = {
    "log_standard_4_22_to_5_08_pure.csv": (
        f"{_KUAIRAND_HEADER}\n990001,5,20220430,1800,1651314030792,0,1,0,0,0,0,1,863,30066,0,0,0,0,1\n"
    ).encode(),
    "log_random_4_22_to_5_08_pure.csv": (
        f"{_KUAIRAND_HEADER}\n990002,6,20220501,0900,1651366800000,1,0,0,0,0,0,0,0,0,12,3,1,1,2\n"
    ).encode(),
}

USER_FEATURES = (
    "user_id,user_active_degree,is_live_streamer,is_video_author,follow_user_num,"
    "fans_user_num,friend_user_num,register_days\n0,full_active,-124,1,5,6,7,8\n"
)

# ----------------------------------------------------------------------------- strategies


def cases(dataset: str) -> st.SearchStrategy[Case]:
    width = len(layout(dataset, Case(0, 1)))
    mutation = st.builds(
        Mutation,
        row=st.integers(0, 199),
        column=st.integers(0, width - 1),
        kind=st.sampled_from(RANDOM_KINDS),
        variant=st.integers(0, 30),
    )
    return st.builds(
        Case,
        seed=st.integers(0, 2**32 - 1),
        rows=st.integers(50, 200),
        mutations=st.lists(mutation, max_size=40).map(tuple),
        bom=st.booleans(),
        newline=st.sampled_from(("lf", "crlf", "mixed")),
        final_newline=st.booleans(),
        unit=st.sampled_from(("ms", "s")) if dataset == "events" else st.just("ms"),
        flag=st.sampled_from(EVENT_FLAGS) if dataset == "events" else st.just("is_like"),
    )


# The explicit examples: three 200-row files that between them force every mutation class at
# least once, each class on every column and in every spelling (three files, not one per
# class, to keep the `ci` run within its time budget: a Spark read costs seconds).
FORCED_GROUPS = (
    ("nan", "inf", "1e20", "huge_int", "negative", "empty", "time_far", "bom"),
    ("text", "quoted", "spaces", "respell", "decimal", "crlf"),
    ("bad_utf8", "field_count", "duplicate"),
)


def forced(dataset: str, group: tuple[str, ...]) -> Case:
    """A 200-row file where each class of `group` hits every column and spelling at least
    once, one mutation per row."""
    number = FORCED_GROUPS.index(group) if group in FORCED_GROUPS else 0
    base = Case(seed=1000 + number, rows=200)
    if dataset == "events":
        base = replace(base, unit=("s", "ms")[number % 2], flag=EVENT_FLAGS[number % 6])
    width = len(layout(dataset, base))
    mutations = []
    for kind in group:
        if kind == "bom":
            base = replace(base, bom=True)
        elif kind == "crlf":
            base = replace(base, newline="crlf", final_newline=False)
        else:
            spellings = max(width, len(TEXTS) if kind == "text" else 10)
            mutations += [
                Mutation(row=0, column=i % width, kind=kind, variant=i) for i in range(spellings)
            ]
    assert len(mutations) <= base.rows
    mutations = [replace(m, row=n) for n, m in enumerate(mutations)]
    return replace(base, mutations=tuple(mutations))


def with_forced_examples(dataset: str):
    def decorate(test):
        for group in FORCED_GROUPS:
            test = example(case=forced(dataset, group))(test)
        return test

    return decorate


# ----------------------------------------------------------------------------- reading


@pytest.fixture(scope="module", autouse=True)
def landing_clock(spark):
    """One fixed landing clock for the readers and the oracle; one shuffle partition while
    the module runs (files of 50-200 rows: more partitions are pure overhead)."""
    partitions = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REELFLOW_NOW", NOW_ISO)
        yield
    spark.conf.set("spark.sql.shuffle.partitions", partitions)
    print(f"\nfuzz examples run per reader: {dict(RUN_COUNTS)}")


def read_interactions(spark, dataset: str, folder: Path, columns: tuple[str, ...]) -> list:
    from jobs.readers import get_reader
    from reelflow.config import QualityConfig

    reader = get_reader(dataset)
    release = reader.detect(folder)
    if hasattr(reader, "check"):
        reader.check(release)
    frame = reader.read_tables(spark, release, QualityConfig())["interactions"]
    picked = []
    for name in columns:
        if name == "event_ts" and isinstance(
            frame.schema[name].dataType, TimestampType | TimestampNTZType
        ):
            picked.append(F.unix_micros(F.col(name).cast("timestamp")).alias("_event_us"))
        elif name == "event_ts":
            picked.append((F.col(name).cast("long") * 1000).alias("_event_us"))
        else:
            picked.append(F.col(name))
    raw = [c for c in frame.columns if c.startswith("raw_")]
    return frame.select(*picked, *raw, "quarantine_reason").collect()


def judge_release(dataset: str, data: bytes, spec: oracle.EventsSpec | None) -> list:
    """The oracle's verdict on every row of the release's logs: the fuzzed one and, for
    KuaiRand, the two fixed companion logs."""
    lines = oracle.judge(data, dataset, NOW_MS, spec)
    if dataset == "kuairand":
        for other in KUAIRAND_COMPANION_LOGS.values():
            lines += oracle.judge(other, dataset, NOW_MS)
    return lines


def value_tuple(values: dict, columns: tuple[str, ...]) -> tuple:
    return tuple(values[c] for c in columns)


def reader_tuple(row, columns: tuple[str, ...]) -> tuple:
    out = []
    for c in columns:
        if c == "event_ts":
            micros = row["_event_us"]
            out.append(
                None if micros is None else micros // 1000 if micros % 1000 == 0 else micros / 1000
            )
        else:
            out.append(row[c])
    return tuple(out)


def same_values(expected: list[tuple], actual: list[tuple], ratio_at: int | None) -> tuple:
    """(missing, unexpected): multiset difference, watch_ratio compared to 1e-9 relative."""

    def split(t: tuple) -> tuple[tuple, float | None]:
        if ratio_at is None:
            return t, None
        return t[:ratio_at] + t[ratio_at + 1 :], t[ratio_at]

    want: dict[tuple, list] = defaultdict(list)
    got: dict[tuple, list] = defaultdict(list)
    for t in expected:
        key, r = split(t)
        want[key].append((r, t))
    for t in actual:
        key, r = split(t)
        got[key].append((r, t))
    missing, unexpected = [], []
    for key in set(want) | set(got):
        a = sorted(want.get(key, []), key=lambda x: (x[0] is None, x[0] or 0))
        b = sorted(got.get(key, []), key=lambda x: (x[0] is None, x[0] or 0))
        pool = list(b)
        for r, t in a:
            match = next(
                (
                    j
                    for j, (s, _) in enumerate(pool)
                    if (r is None and s is None)
                    or (r is not None and s is not None and math.isclose(r, s, rel_tol=1e-9))
                ),
                None,
            )
            if match is None:
                missing.append(t)
            else:
                pool.pop(match)
        unexpected += [t for _, t in pool]
    return missing, unexpected


def check(spark, dataset: str, case: Case) -> None:
    RUN_COUNTS[dataset] += 1
    spec = events_spec(case) if dataset == "events" else None
    columns = oracle.value_columns(dataset, spec)
    with tempfile.TemporaryDirectory(prefix=f"fuzz_{dataset}_") as tmp:
        folder = Path(tmp)
        data = write_release(dataset, case, folder)
        lines = judge_release(dataset, data, spec)
        rows = read_interactions(spark, dataset, folder, columns)
    header = [name for name, _ in layout(dataset, case)]
    valid_lines = [line for line in lines if line.values is not None]
    expected = [value_tuple(line.values, columns) for line in valid_lines]
    got_valid = [r for r in rows if r["quarantine_reason"] is None]
    actual = [reader_tuple(r, columns) for r in got_valid]
    ratio_at = columns.index("watch_ratio") if "watch_ratio" in columns else None
    missing, unexpected = same_values(expected, actual, ratio_at)
    by_values = defaultdict(list)
    for line in valid_lines:
        by_values[value_tuple(line.values, columns)].append(line)
    by_fields = defaultdict(list)
    for line in lines:
        if line.fields is not None:
            by_fields[line.fields].append(line)
    problems = []
    if len(rows) != len(lines):
        problems.append(f"reader returned {len(rows)} rows, the file holds {len(lines)}")
    blank = [r for r in rows if r["quarantine_reason"] is not None and not r["quarantine_reason"]]
    if blank:
        problems.append(f"{len(blank)} quarantined row(s) with an empty reason")
    for t in missing[:8]:
        shown = "; ".join(f"line {x.number}: {x.text!r}" for x in by_values.get(t, [])[:2])
        problems.append(f"oracle-valid row missing from the reader's valid rows: {t} ({shown})")
    for t, r in [
        (reader_tuple(r, columns), r) for r in got_valid if reader_tuple(r, columns) in unexpected
    ][:8]:
        raw = tuple((r[f"raw_{c}"] if f"raw_{c}" in r.asDict() else "?") or "" for c in header)
        why = [
            f"line {x.number}: {x.text!r} -> {x.reason or x.values}"
            for x in by_fields.get(raw, [])[:2]
        ]
        problems.append(f"reader-valid row not valid for the oracle: {t} raw={raw} oracle: {why}")
    want_q = len(lines) - len(valid_lines)
    got_q = len(rows) - len(got_valid)
    if want_q != got_q:
        reasons = Counter(r["quarantine_reason"] for r in rows if r["quarantine_reason"])
        problems.append(
            f"quarantined: reader {got_q}, oracle {want_q}; reader reasons {dict(reasons)}; "
            f"oracle reasons {dict(Counter(x.reason.split(':')[0] for x in lines if x.reason))}"
        )
    assert not problems, f"{dataset} {case}:\n  " + "\n  ".join(problems)


# ----------------------------------------------------------------------------- the tests


@settings(max_examples=EXAMPLES)
@given(case=cases("kuairec"))
@with_forced_examples("kuairec")
def test_kuairec_big_matrix_agrees_with_the_oracle(spark, case):
    check(spark, "kuairec", case)


@settings(max_examples=EXAMPLES)
@given(case=cases("kuairand"))
@with_forced_examples("kuairand")
def test_kuairand_standard_log_agrees_with_the_oracle(spark, case):
    check(spark, "kuairand", case)


@settings(max_examples=EXAMPLES)
@given(case=cases("microlens"))
@with_forced_examples("microlens")
def test_microlens_pairs_agree_with_the_oracle(spark, case):
    check(spark, "microlens", case)


@settings(max_examples=EXAMPLES)
@given(case=cases("events"))
@with_forced_examples("events")
def test_events_csv_log_agrees_with_the_oracle(spark, case):
    check(spark, "events", case)


def test_every_mutation_class_is_forced_and_changes_the_file():
    forced_classes = [kind for group in FORCED_GROUPS for kind in group]
    assert sorted(forced_classes) == sorted(MUTATION_CLASSES)
    for dataset in LOG_FILE:
        plain = render(dataset, Case(seed=0, rows=60))
        for kind in MUTATION_CLASSES:
            case = forced(dataset, (kind,))
            assert render(dataset, case) != render(
                dataset, replace(case, mutations=(), bom=False, newline="lf", final_newline=True)
            ), (dataset, kind)
        assert plain


def every_class(dataset: str) -> Case:
    """One 80-row file with every mutation class (BOM, mixed line endings, no final newline)."""
    width = len(layout(dataset, Case(0, 1)))
    mutations = tuple(
        Mutation(row=3 * n + 1, column=n % width, kind=kind, variant=n)
        for n, kind in enumerate(RANDOM_KINDS * 2)
    )
    return Case(
        seed=7, rows=80, mutations=mutations, bom=True, newline="mixed", final_newline=False
    )


@pytest.mark.parametrize("dataset", list(LOG_FILE))
def test_landing_job_never_raises_and_its_counts_add_up(spark, dataset, tmp_path):
    """The real landing job on one file holding every mutation: landed rows = file rows, and
    the landed valid / quarantined counts are the oracle's."""
    from jobs.landing import land
    from reelflow.config import load_config
    from reelflow.paths import Paths

    case = every_class(dataset)
    folder = tmp_path / "raw"
    folder.mkdir()
    data = write_release(dataset, case, folder)
    spec = events_spec(case) if dataset == "events" else None
    lines = judge_release(dataset, data, spec)
    paths = Paths(tmp_path / "home")
    summary = land(dataset, folder, load_config(), paths)
    assert summary["tables"]["interactions"]["rows"] == len(lines)
    landed = spark.read.parquet(str(paths.landing / "interactions"))
    quarantined = landed.where(F.col("quarantine_reason").isNotNull()).count()
    assert (landed.count(), quarantined) == (
        len(lines),
        sum(1 for line in lines if line.values is None),
    )
