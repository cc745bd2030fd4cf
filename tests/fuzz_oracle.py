"""An independent pure-Python oracle for the reader contract (tests/test_fuzz_readers.py).

It reads one interaction-log file as bytes with nothing but the `csv` module and plain
Python (never a reader's helper) and decides, line by line, whether the row is valid and
which unified values it must produce; every other line is quarantined with a reason.

The contract it encodes (jobs/readers/__init__.py and issue 12):
  * a UTF-8 BOM before the header is accepted; lines end in LF or CRLF; quoted fields
    (holding the separator or doubled quotes) parse as `csv` parses them;
  * a line holding invalid UTF-8, or with a field count other than the header's, is
    quarantined;
  * field text is trimmed of ASCII spaces only; an empty field is missing;
  * an integer (id) fully matches `[+-]?[0-9]+` and fits signed 64-bit (negative ids valid);
  * a number fully matches `[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?` and is
    finite as a float; a value converted to integer milliseconds is the float's exact decimal
    (times 1000 for seconds) rounded HALF_UP, and must fit signed 64-bit;
  * a flag is the integer 0 or 1 (events also `true`/`false`);
  * plausible time: an event before 1990-01-01T00:00Z or after now + 1 day is quarantined;
  * every copy of an identical raw row (fields as `csv` parses them) after the first is
    quarantined as "exact duplicate row".
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext

BOM = b"\xef\xbb\xbf"
INT_RE = re.compile(r"[+-]?[0-9]+")
NUMBER_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)
DAY_MS = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_EVENT_MS = int((datetime(1990, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 1000
WATCH_RATIO = (0.0, 100.0)

KUAIRAND_FLAGS = {  # native -> unified
    "is_click": "is_click",
    "is_like": "is_like",
    "is_follow": "is_follow",
    "is_comment": "is_comment",
    "is_forward": "is_share",
    "is_hate": "is_hate",
    "long_view": "long_view",
    "is_profile_enter": "is_profile_enter",
    "is_rand": "is_rand",
}
KUAIRAND_STAYS = {"profile_stay_time": "profile_stay_ms", "comment_stay_time": "comment_stay_ms"}


def iso_to_ms(text: str) -> int:
    """Epoch ms of an ISO-8601 instant (a time without a zone is UTC)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class Bad(Exception):
    """A rule the row breaks (the oracle's reason)."""


def trimmed(text: str) -> str:
    return text.strip(" ")


def integer(text: str, what: str, bounds: tuple[int, int] = INT64) -> int:
    value = trimmed(text)
    if not value:
        raise Bad(f"{what} missing")
    if not INT_RE.fullmatch(value):
        raise Bad(f"{what} not an integer: {text!r}")
    number = int(value)
    if not bounds[0] <= number <= bounds[1]:
        raise Bad(f"{what} out of range: {text!r}")
    return number


def number(text: str, what: str) -> float:
    value = trimmed(text)
    if not value:
        raise Bad(f"{what} missing")
    if not NUMBER_RE.fullmatch(value):
        raise Bad(f"{what} not a number: {text!r}")
    parsed = float(value)
    if not math.isfinite(parsed):
        raise Bad(f"{what} not finite: {text!r}")
    return parsed


def to_ms(value: float, what: str, scale: int = 1) -> int:
    """HALF_UP of the float's exact decimal times `scale`, within signed 64-bit."""
    with localcontext() as ctx:
        ctx.prec = 1200  # exact for any finite double times 1000
        exact = Decimal(value) * scale
        if abs(exact) > 2**64:
            raise Bad(f"{what} out of range: {value!r}")
        rounded = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if not INT64[0] <= rounded <= INT64[1]:
        raise Bad(f"{what} out of range: {value!r}")
    return rounded


def non_negative_ms(text: str, what: str) -> tuple[float, int]:
    value = number(text, what)
    if value < 0:
        raise Bad(f"negative {what}: {text!r}")
    return value, to_ms(value, what)


def plausible(ms: int, what: str, now_ms: int) -> int:
    if ms < MIN_EVENT_MS:
        raise Bad(f"{what} before 1990-01-01: {ms}")
    if ms > now_ms + DAY_MS:
        raise Bad(f"{what} after now + 1 day: {ms}")
    return ms


def flag(text: str, what: str, words: bool = False) -> int:
    value = trimmed(text)
    if words and value in ("true", "false"):
        return int(value == "true")
    number_ = integer(text, what)
    if number_ not in (0, 1):
        raise Bad(f"{what} not 0 or 1: {text!r}")
    return number_


def ratio(watch: float, duration: float) -> float | None:
    if duration > 0:
        value = watch / duration
        in_range(value)
        return value
    return None


def in_range(value: float) -> None:
    if not WATCH_RATIO[0] <= value <= WATCH_RATIO[1]:
        raise Bad(f"watch_ratio outside [0, 100]: {value!r}")


# ----------------------------------------------------------------------------- per dataset


def kuairec_row(row: dict[str, str], now_ms: int) -> dict:
    out = {
        "user_id": integer(row["user_id"], "user_id"),
        "video_id": integer(row["video_id"], "video_id"),
    }
    seconds = number(row["timestamp"], "timestamp")
    out["event_ts"] = plausible(to_ms(seconds, "timestamp", 1000), "timestamp", now_ms)
    _, out["watch_ms"] = non_negative_ms(row["play_duration"], "play_duration")
    _, out["duration_ms"] = non_negative_ms(row["video_duration"], "video_duration")
    out["watch_ratio"] = number(row["watch_ratio"], "watch_ratio")
    in_range(out["watch_ratio"])
    return out


def kuairand_row(row: dict[str, str], now_ms: int) -> dict:
    out = {
        "user_id": integer(row["user_id"], "user_id"),
        "video_id": integer(row["video_id"], "video_id"),
    }
    out["event_ts"] = plausible(
        to_ms(number(row["time_ms"], "time_ms"), "time_ms"), "time_ms", now_ms
    )
    watch, out["watch_ms"] = non_negative_ms(row["play_time_ms"], "play_time_ms")
    duration, out["duration_ms"] = non_negative_ms(row["duration_ms"], "duration_ms")
    for native, unified in KUAIRAND_FLAGS.items():
        out[unified] = flag(row[native], native)
    for native, unified in KUAIRAND_STAYS.items():
        _, out[unified] = non_negative_ms(row[native], native)
    out["tab"] = integer(row["tab"], "tab", INT32)
    out["watch_ratio"] = ratio(watch, duration)
    return out


def microlens_row(row: dict[str, str], now_ms: int) -> dict:
    out = {
        "user_id": integer(row["user"], "user"),
        "video_id": integer(row["item"], "item"),
    }
    ms = to_ms(number(row["timestamp"], "timestamp"), "timestamp")
    out["event_ts"] = plausible(ms, "timestamp", now_ms)
    return out


def events_row(row: dict[str, str], now_ms: int, spec: EventsSpec) -> dict:
    m = spec.mapping
    out = {
        "user_id": integer(row[m["user_id"]], "user_id"),
        "video_id": integer(row[m["video_id"]], "video_id"),
    }
    when = number(row[m["event_ts"]], "event_ts")
    scale = 1000 if spec.unit == "s" else 1
    out["event_ts"] = plausible(to_ms(when, "event_ts", scale), "event_ts", now_ms)
    watch, out["watch_ms"] = non_negative_ms(row[m["watch_ms"]], "watch_ms")
    duration, out["duration_ms"] = non_negative_ms(row[m["duration_ms"]], "duration_ms")
    out[spec.flag] = flag(row[m[spec.flag]], spec.flag, words=True)
    out["watch_ratio"] = ratio(watch, duration)
    return out


@dataclass(frozen=True)
class EventsSpec:
    unit: str  # "ms" or "s"
    flag: str  # the unified flag mapped, e.g. "is_like"
    mapping: dict[str, str] = field(default_factory=dict)  # unified -> source column


# The unified values compared per dataset (watch_ratio is compared with a tolerance).
VALUE_COLUMNS = {
    "kuairec": ("user_id", "video_id", "event_ts", "watch_ms", "duration_ms", "watch_ratio"),
    "kuairand": (
        "user_id",
        "video_id",
        "event_ts",
        "watch_ms",
        "duration_ms",
        "watch_ratio",
        *KUAIRAND_FLAGS.values(),
        *KUAIRAND_STAYS.values(),
        "tab",
    ),
    "microlens": ("user_id", "video_id", "event_ts"),
}


def value_columns(dataset: str, spec: EventsSpec | None = None) -> tuple[str, ...]:
    if dataset == "events":
        assert spec is not None
        return (
            "user_id",
            "video_id",
            "event_ts",
            "watch_ms",
            "duration_ms",
            "watch_ratio",
            spec.flag,
        )
    return VALUE_COLUMNS[dataset]


# ----------------------------------------------------------------------------- the file


@dataclass
class Line:
    number: int  # 1-based line number in the file (the header is line 1)
    text: str  # the line as text (invalid bytes shown as U+FFFD), for messages
    fields: tuple[str, ...] | None  # as `csv` parses it (None: not UTF-8)
    values: dict | None  # the unified values of a valid row, else None
    reason: str | None  # why the row is quarantined, else None


def split_lines(data: bytes) -> list[bytes]:
    """The file's lines without their LF / CRLF ending (and without a leading BOM)."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def parse_fields(text: str, sep: str) -> tuple[str, ...]:
    return tuple(next(csv.reader([text], delimiter=sep, quotechar='"', doublequote=True), []))


def judge(
    data: bytes, dataset: str, now_ms: int, spec: EventsSpec | None = None, sep: str = ","
) -> list[Line]:
    """A verdict for every data line of the file (the header excluded)."""
    raw_lines = split_lines(data)
    header = parse_fields(raw_lines[0].decode("utf-8"), sep)
    columns = [c.strip(" ") for c in header]
    verdicts: list[Line] = []
    seen: set[tuple[str, ...]] = set()
    for number_, raw in enumerate(raw_lines[1:], start=2):
        shown = raw.decode("utf-8", errors="replace")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            verdicts.append(Line(number_, shown, None, None, "invalid UTF-8"))
            continue
        fields = parse_fields(text, sep)
        if len(fields) != len(columns):
            verdicts.append(
                Line(
                    number_, shown, fields, None, f"{len(fields)} fields, header has {len(columns)}"
                )
            )
            continue
        row = dict(zip(columns, fields, strict=True))
        try:
            if dataset == "kuairec":
                values = kuairec_row(row, now_ms)
            elif dataset == "kuairand":
                values = kuairand_row(row, now_ms)
            elif dataset == "microlens":
                values = microlens_row(row, now_ms)
            else:
                assert spec is not None
                values = events_row(row, now_ms, spec)
        except Bad as bad:
            verdicts.append(Line(number_, shown, fields, None, str(bad)))
            continue
        if fields in seen:
            verdicts.append(Line(number_, shown, fields, None, "exact duplicate row"))
            continue
        seen.add(fields)
        verdicts.append(Line(number_, shown, fields, values, None))
    return verdicts
