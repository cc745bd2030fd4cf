r"""Your own interaction logs into the unified schema, described by a spec file.

The folder you pass as `--raw` (or its `data/` subfolder) holds the log files and a spec file
named `reelflow_events.toml` that says how to read them. Example, for MovieLens `u.data`
(tab-separated, no header: `user item rating unix_ts`):

    format = "tsv"
    header = false
    files = ["u.data"]
    columns = ["user", "item", "rating", "ts"]
    source = "movielens"

    [mapping]
    user_id = "user"
    video_id = "item"
    event_ts = "ts"

    [time]
    unit = "s"

Top-level keys
    format      required. "csv" (comma-separated), "tsv" (tab-separated) or "parquet".
    files       required. A list of glob patterns relative to the folder (`"logs/*.csv"`,
                `"**/part-*.parquet"`); every matched file is read, and a pattern that matches
                no file is an error. Patterns stay inside the folder: an absolute pattern, a
                `..` segment or a match that resolves outside it (a symlink) is refused.
    header      csv/tsv only, default true: whether the first line of each file names the
                columns.
    columns     csv/tsv with header = false only, and then required: the column names, in
                file order. Every line must have this many fields.
    separator   csv/tsv only, optional: one character replacing the format's separator
                ("," for csv, a tab for tsv), e.g. "|" or ";".
    encoding    csv/tsv only, default "utf-8"; also "latin-1" (iso-8859-1), "ascii", "utf-16",
                "utf-16be", "utf-16le", "utf-32" (what Spark's reader takes). A UTF-8
                byte-order mark before the first line is accepted; lines may end in LF or
                CRLF; a quoted field ("a,b") may hold the separator.
    source      default "events": the dataset name written to the `source` column.

[mapping]  required: the unified columns every log must have, each set to a source column.
    user_id     integer user id
    video_id    integer item id
    event_ts    the time of the interaction, read as [time] unit says

[time]     required.
    unit        "s" (epoch seconds, decimals allowed), "ms" (epoch milliseconds) or "iso8601"
                (`2022-04-30T10:20:30.792Z`, `2022-04-30 10:20:30+08:00`, `2022-04-30`; a time
                without an offset is UTC). A parquet column already typed timestamp is taken as
                is, whatever the unit. Epoch values are numbers (see the row rules): the
                double's exact value (times 1000 for seconds) rounded HALF_UP to ms.
    min_event_time  optional, "YYYY-MM-DD" (or a TOML date): overrides the quality config's
                `quality.min_event_time` for this log (e.g. "1950-01-01" for an old archive).

[optional] any of these unified columns, each set to a source column:
    watch_ms     milliseconds watched (number, >= 0)
    duration_ms  item length in milliseconds (number, >= 0)
    watch_ratio  watch_ms / duration_ms (number); when it is not mapped but watch_ms and
                 duration_ms are, it is computed from them (null where duration_ms is 0)
    is_click, is_like, is_follow, is_comment, is_share, is_hate    0/1 flags (true/false too)
    An optional column that is not mapped is absent downstream (never filled with a default);
    the reader logs one line naming them (logger "reelflow.readers.events").
    Source columns that are not mapped (MovieLens' rating) are kept only as raw values.

[videos]   optional: an item file that becomes the `videos` table.
    files       required: glob patterns, as above
    id          required: the item id column (integer, the log's video_id)
    title       optional: the caption column
    categories  optional: a column of integer category ids, e.g. "3|7"; the first one is the
                primary category
    categories_separator   default ","
    format, header, columns, separator, encoding: as above, defaulting to the log's values
    (header defaults to true, columns to none).

What the reader produces
    interactions: user_id long, video_id long, event_ts timestamp (UTC), the mapped optional
    columns (watch_ms/duration_ms long, watch_ratio double, flags int), source, ds (the UTC
    day of event_ts), every source column as `raw_<name>` (native text), quarantine_reason.
    videos (with [videos]): video_id long, caption string, categories array<int>,
    primary_category int (each only when mapped), raw columns, quarantine_reason.

Row rules (a rejected row is quarantined with the first reason it breaks, in this order)
    A field is trimmed of ASCII spaces; an empty field is missing. An integer is text that
    fully matches `[+-]?[0-9]+` and fits a signed 64-bit long (negative ids are valid); a
    number fully matches `[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?` and is finite
    (NaN, Infinity, "1d", "0x1p3" are not numbers).
    "invalid UTF-8 on line N" (utf-8 csv/tsv: N counts the file's lines from 1, header
    included) and "malformed row: wrong number of fields" (csv/tsv: a line with more or fewer
    fields than the header or `columns`); both keep the line's text in `raw__corrupt_record`;
    "user_id (column 'user') missing or not an integer", likewise video_id;
    "event_ts (column 'ts') missing or not epoch seconds" (or "... not epoch milliseconds",
    "... not an ISO 8601 time"); "event_ts (column 'ts') out of range" (a number whose
    milliseconds do not fit a long); "event_ts (column 'ts') before 1990-01-01
    (quality.min_event_time)" and "event_ts (column 'ts') after <landing time + max_future_days,
    ISO> (quality.max_future_days)" (the plausible-time rule; event_ts and ds are null on
    these rows); "watch_ms (column 'w') missing or not a number", "negative watch_ms (column
    'w')", "watch_ms (column 'w') out of range" (not finite, or beyond a long after HALF_UP
    rounding), likewise duration_ms; "watch_ratio (column 'r') missing or not a number",
    "watch_ratio (column 'r') out of range" (not finite); "is_like (column 'l') not 0 or 1"
    (the integer 0 or 1, or true/false); "watch_ratio outside [min, max]"
    (quality config, only where the ratio is defined); "exact duplicate row" for every copy of
    an identical line after the first.

Errors that stop the run (InputFileError, naming the file and the problem)
    a missing spec file; invalid TOML; an unknown or missing key; an unknown unified column; a
    bad format, time unit or min_event_time; `columns` missing when header = false; a mapped
    source column that is not in a file's header, `columns` or parquet schema (named with the
    spec file); a pattern matching no file or leaving the folder (named with the spec file); a
    file that "is empty" or "holds a header but no rows"; a first line with the wrong
    separator or the wrong number of fields. All of these are found by `check(release)` (and
    `detect`) before the Spark session starts.
"""

from __future__ import annotations

import codecs
import dataclasses
import logging
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampNTZType, TimestampType

from jobs.readers import Release
from jobs.readers.arrow_csv import BAD_LINE, CORRUPT, read_arrow_csv
from jobs.readers.native import (
    InputFileError,
    integer_id,
    landing_now_ms,
    long_column,
    malformed_rules,
    number_column,
    number_rules,
    number_text_column,
    time_rules,
    with_numbers,
    with_quarantine_reason,
)
from lake.schema import INTERACTION_OPTIONAL, QUARANTINE_REASON
from reelflow.config import QualityConfig

DATASET = "events"
SPEC_NAME = "reelflow_events.toml"
SEPARATORS = {"csv": ",", "tsv": "\t"}
FORMATS = ("csv", "tsv", "parquet")
UNITS = {"s": "epoch seconds", "ms": "epoch milliseconds", "iso8601": "an ISO 8601 time"}
REQUIRED_MAPPING = ("user_id", "video_id", "event_ts")
OPTIONAL_COLUMNS = INTERACTION_OPTIONAL
FLAG_COLUMNS = tuple(c for c in OPTIONAL_COLUMNS if c.startswith("is_"))
TOP_KEYS = (
    "format",
    "files",
    "header",
    "columns",
    "separator",
    "encoding",
    "source",
    "mapping",
    "time",
    "optional",
    "videos",
)
FILE_KEYS = ("format", "files", "header", "columns", "separator", "encoding")
VIDEO_KEYS = (*FILE_KEYS, "id", "title", "categories", "categories_separator")
TIME_KEYS = ("unit", "min_event_time")
MALFORMED = "malformed row: wrong number of fields"
RAW_CORRUPT = f"raw_{CORRUPT}"
# Python's codec name -> the charset Spark's CSV reader accepts (Spark 4 takes only these).
SPARK_CHARSETS = {
    "utf-8": "utf-8",
    "utf-8-sig": "utf-8",
    "iso8859-1": "iso-8859-1",
    "ascii": "us-ascii",
    "utf-16": "utf-16",
    "utf-16-be": "utf-16be",
    "utf-16-le": "utf-16le",
    "utf-32": "utf-32",
}

logger = logging.getLogger("reelflow.readers.events")


# ----------------------------------------------------------------------------- the spec


def _fail(spec: Path, problem: str) -> InputFileError:
    return InputFileError(spec, problem)


def _string(spec: Path, value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(spec, f"{what} must be a non-empty string, got {value!r}")
    return value


def _file_options(spec: Path, table: dict, where: str, defaults: dict) -> dict:
    """format / files / header / columns / separator / encoding of a log or item file."""
    fmt = table.get("format", defaults.get("format"))
    if fmt not in FORMATS:
        raise _fail(spec, f"{where}format must be one of {list(FORMATS)}, got {fmt!r}")
    files = table["files"]
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise _fail(spec, f"{where}files must be a list of glob patterns, got {files!r}")
    header = table.get("header", True)
    if not isinstance(header, bool):
        raise _fail(spec, f"{where}header must be true or false, got {header!r}")
    columns = table.get("columns")
    if columns is not None:
        if (
            not isinstance(columns, list)
            or not columns
            or not all(isinstance(c, str) and c for c in columns)
        ):
            raise _fail(spec, f"{where}columns must be a list of column names, got {columns!r}")
        if len(set(columns)) != len(columns):
            raise _fail(spec, f"{where}columns names a column twice: {columns}")
    if columns is not None and (fmt == "parquet" or header):
        raise _fail(spec, f"{where}columns is only for csv/tsv files with header = false")
    if fmt != "parquet" and not header and columns is None:
        raise _fail(spec, f"{where}columns is required when header = false")
    separator = table.get("separator", defaults.get("separator") if "format" not in table else None)
    if separator is None:
        separator = SEPARATORS.get(fmt)
    if fmt != "parquet" and (not isinstance(separator, str) or len(separator) != 1):
        raise _fail(spec, f"{where}separator must be one character, got {separator!r}")
    encoding = _string(spec, table.get("encoding", defaults.get("encoding", "utf-8")), "encoding")
    if fmt != "parquet":
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            codec = None
        if codec not in SPARK_CHARSETS:
            raise _fail(
                spec,
                f"{where}encoding {encoding!r} is not supported; use one of "
                f"{sorted(set(SPARK_CHARSETS.values()))}",
            )
    return {
        "format": fmt,
        "files": files,
        "header": header,
        "columns": columns,
        "separator": separator,
        "encoding": encoding,
    }


def _unknown(spec: Path, given, allowed, where: str) -> None:
    unknown = [k for k in given if k not in allowed]
    if unknown:
        raise _fail(spec, f"unknown key(s) {unknown} in {where}; allowed: {list(allowed)}")


def _missing(spec: Path, table: dict, required, where: str) -> None:
    missing = [k for k in required if k not in table]
    if missing:
        raise _fail(spec, f"missing key(s) {missing} in {where}")


def _section(spec: Path, data: dict, name: str, required: bool) -> dict:
    if name not in data:
        if required:
            raise _fail(spec, f"missing section [{name}]")
        return {}
    value = data[name]
    if not isinstance(value, dict):
        raise _fail(spec, f"[{name}] must be a table (a [{name}] section), got {value!r}")
    return value


def _columns_map(spec: Path, table: dict, allowed: tuple[str, ...], section: str) -> dict:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise _fail(
            spec,
            f"unknown unified column(s) {unknown} in [{section}]; [mapping] takes "
            f"{list(REQUIRED_MAPPING)}, [optional] takes {list(OPTIONAL_COLUMNS)}",
        )
    return {k: _string(spec, v, f"[{section}] {k}") for k, v in table.items()}


def load_spec(spec: Path) -> dict:
    """The spec file parsed and checked, as plain data (it travels in Release.options)."""
    try:
        with open(spec, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise _fail(spec, "file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise _fail(spec, f"not valid TOML: {exc}") from exc
    _unknown(spec, data, TOP_KEYS, "the spec")
    _missing(spec, data, ("format", "files"), "the spec")
    logs = _file_options(spec, data, "", {})
    mapping_table = _section(spec, data, "mapping", required=True)
    mapping = _columns_map(spec, mapping_table, REQUIRED_MAPPING, "mapping")
    missing = [k for k in REQUIRED_MAPPING if k not in mapping]
    if missing:
        raise _fail(spec, f"[mapping] lacks required unified column(s) {missing}")
    optional = _columns_map(
        spec, _section(spec, data, "optional", required=False), OPTIONAL_COLUMNS, "optional"
    )
    time = _section(spec, data, "time", required=True)
    _unknown(spec, time, TIME_KEYS, "[time]")
    _missing(spec, time, ("unit",), "[time]")
    unit = time["unit"]
    if unit not in UNITS:
        raise _fail(spec, f"bad time unit {unit!r}: [time] unit must be one of {list(UNITS)}")
    min_event_time = _min_event_time(spec, time.get("min_event_time"))
    source = _string(spec, data.get("source", DATASET), "source")
    if logs["columns"] is not None:
        _check_mapped(spec, {**mapping, **optional}, logs["columns"], "the spec's columns")
    videos = None
    if "videos" in data:
        table = _section(spec, data, "videos", required=True)
        _unknown(spec, table, VIDEO_KEYS, "[videos]")
        _missing(spec, table, ("files", "id"), "[videos]")
        videos = _file_options(spec, table, "[videos] ", logs)
        videos["id"] = _string(spec, table["id"], "[videos] id")
        videos["title"] = table.get("title") and _string(spec, table["title"], "[videos] title")
        videos["categories"] = table.get("categories") and _string(
            spec, table["categories"], "[videos] categories"
        )
        videos["categories_separator"] = _string(
            spec, table.get("categories_separator", ","), "[videos] categories_separator"
        )
        wanted = {k: videos[k] for k in ("id", "title", "categories") if videos[k]}
        if videos["columns"] is not None:
            _check_mapped(spec, wanted, videos["columns"], "[videos] columns")
    return {
        "spec": str(spec),
        "logs": logs,
        "mapping": mapping,
        "optional": optional,
        "unit": unit,
        "min_event_time": min_event_time,
        "source": source,
        "videos": videos,
    }


def _min_event_time(spec: Path, value: Any) -> str | None:
    """`[time] min_event_time` as "YYYY-MM-DD" (a TOML date or such a string), else None."""
    if value is None:
        return None
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value.isoformat()
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise _fail(spec, f'[time] min_event_time must be a day "YYYY-MM-DD", got {value!r}')


def _check_mapped(spec: Path, wanted: dict[str, str], present: list[str], where: str) -> None:
    missing = {unified: src for unified, src in wanted.items() if src not in present}
    if missing:
        shown = ", ".join(f"{src!r} ({unified})" for unified, src in missing.items())
        raise _fail(spec, f"mapped column(s) {shown} not in {where} {list(present)}")


# ----------------------------------------------------------------------------- detect


def _resolve(spec: Path, root: Path, patterns: list[str]) -> list[Path]:
    """The files the patterns match, in order; a pattern may not leave the folder."""
    found: list[Path] = []
    inside = root.resolve()
    for pattern in patterns:
        if Path(pattern).is_absolute() or pattern.startswith(("/", "\\", "~")):
            raise _fail(
                spec, f"files pattern {pattern!r} is absolute: patterns are relative to {root}"
            )
        if ".." in re.split(r"[/\\]", pattern):
            raise _fail(spec, f"files pattern {pattern!r} leaves the folder {root} ('..')")
        matched = sorted(p for p in root.glob(pattern) if p.is_file() and p.name != SPEC_NAME)
        if not matched:
            raise _fail(spec, f"files pattern {pattern!r} matches no file in {root}")
        for path in matched:
            target = path.resolve()
            if target != inside and inside not in target.parents:
                raise _fail(
                    spec,
                    f"files pattern {pattern!r} matches {path}, which resolves to {target} "
                    f"outside the folder {root}",
                )
        found.extend(p for p in matched if p not in found)
    return found


def detect(raw_dir: Path) -> Release:
    """The folder (or its `data/`) holding `reelflow_events.toml` and the files it names."""
    raw_dir = Path(raw_dir)
    root = next(
        (f for f in (raw_dir, raw_dir / "data") if (f / SPEC_NAME).is_file()),
        None,
    )
    if root is None:
        raise InputFileError(
            raw_dir / SPEC_NAME,
            f"file not found: an events folder holds its log files and {SPEC_NAME} describing "
            "them (format, files, [mapping], [time]; see jobs/readers/events.py)",
        )
    spec = root / SPEC_NAME
    options = load_spec(spec)
    parts = {"logs": _resolve(spec, root, options["logs"]["files"])}
    if options["videos"]:
        parts["videos"] = _resolve(spec, root, options["videos"]["files"])
    release = Release(DATASET, options["source"], root, {"spec": spec}, parts, options)
    check(release)
    return release


def check(release: Release) -> None:
    """Every file-level check, without Spark: each file exists and is not empty (nor a header
    with no rows), its first line uses the separator and holds the declared fields, and every
    mapped column is in its header, `columns` or parquet schema. Raises InputFileError."""
    options = release.options
    spec = Path(options["spec"])
    _check_files(spec, release.parts["logs"], options["logs"], _log_columns(options))
    if options.get("videos"):
        _check_files(spec, release.parts["videos"], options["videos"], _video_columns(options))


def _log_columns(options: dict) -> dict[str, str]:
    return {**options["mapping"], **options["optional"]}


def _video_columns(options: dict) -> dict[str, str]:
    videos = options["videos"]
    return {k: videos[k] for k in ("id", "title", "categories") if videos[k]}


def _check_files(spec: Path, paths: list[Path], opts: dict, wanted: dict[str, str]) -> None:
    """Rows present, separator, field count and mapped columns, before Spark reads."""
    for path in paths:
        if not path.is_file():
            raise InputFileError(path, "file not found")
        if opts["format"] == "parquet":
            _check_mapped(spec, wanted, _parquet_columns(path), f"{path}, whose columns are")
            continue
        _check_text_file(spec, path, opts, wanted)


def _check_text_file(spec: Path, path: Path, opts: dict, wanted: dict[str, str]) -> list[str]:
    """Empty file, then the first line (separator, field count, mapped columns), then a
    header without rows; returns the column names (the header, or the spec's columns)."""
    shape = _shape(path, opts)
    if shape and shape.startswith("is empty"):
        raise InputFileError(path, shape)
    header = _text_columns(path, opts)
    if header is not None:
        _check_mapped(spec, wanted, header, f"{path}, whose header is")
    if shape:
        raise InputFileError(path, shape)
    return header if header is not None else opts["columns"]


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises several kinds for a file that is no parquet
        raise InputFileError(path, f"not a readable parquet file: {exc}") from exc


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _text_encoding(encoding: str) -> str:
    return "utf-8-sig" if _is_utf8(encoding) else encoding


def _shape(path: Path, opts: dict) -> str | None:
    """The file's emptiness: "is empty" without a non-blank line, "holds a header but no
    rows" with only a header, else None."""
    try:
        with open(
            path, encoding=_text_encoding(opts["encoding"]), errors="replace", newline=""
        ) as fh:
            first = fh.readline(1 << 20)
            rest_blank = True
            for line in fh:
                if line.strip():
                    rest_blank = False
                    break
    except (OSError, LookupError) as exc:
        raise InputFileError(path, f"unreadable: {exc}") from exc
    if not first.strip() and rest_blank:
        return "is empty (expected a header and rows)" if opts["header"] else "is empty"
    if opts["header"] and rest_blank:
        return "holds a header but no rows"
    return None


# ----------------------------------------------------------------------------- reading


def _first_line(path: Path, encoding: str) -> str:
    try:
        with open(path, encoding=encoding, errors="replace", newline="") as fh:
            return fh.readline(1 << 20).rstrip("\r\n").lstrip("\ufeff")
    except (OSError, LookupError) as exc:
        raise InputFileError(path, f"unreadable: {exc}") from exc


def _split_fields(line: str, sep: str) -> list[str]:
    import csv

    return next(csv.reader([line], delimiter=sep), [])


def _text_columns(path: Path, opts: dict) -> list[str] | None:
    """Checks the first line of a csv/tsv file; returns its header (None without a header)."""
    sep = opts["separator"]
    line = _first_line(path, opts["encoding"])
    fields = _split_fields(line, sep) if line else []
    expected = len(opts["columns"]) if opts["columns"] is not None else None
    if len(fields) == 1 and (expected is None or expected > 1):
        for other in (",", "\t", ";", "|"):
            if other != sep and other in line:
                where = "header" if opts["header"] else "first line"
                raise InputFileError(
                    path, f"wrong separator: expected {sep!r}, the {where} uses {other!r}"
                )
    if opts["header"]:
        return [f.strip() for f in fields]
    if line and len(fields) != expected:
        raise InputFileError(
            path,
            f"the first line has {len(fields)} field(s), the spec's columns name {expected}: "
            f"{opts['columns']}",
        )
    return None


def _read_file(
    spark: SparkSession, spec: Path, path: Path, opts: dict, wanted: dict[str, str]
) -> tuple[DataFrame, set[str]]:
    """One file, every column as a string; also the names of columns typed timestamp."""
    if not path.is_file():
        raise InputFileError(path, "file not found")
    if opts["format"] == "parquet":
        frame = spark.read.parquet(str(path))
        _check_mapped(spec, wanted, frame.columns, f"{path}, whose columns are")
        typed = {
            f.name
            for f in frame.schema.fields
            if isinstance(f.dataType, TimestampType | TimestampNTZType)
        }
        return frame.select(
            *[_as_text(frame, name, name in typed).alias(name) for name in frame.columns]
        ), typed
    names = _check_text_file(spec, path, opts, wanted)
    if _is_utf8(opts["encoding"]) and not any("," in n for n in names):
        # Arrow's parser: a line with the wrong number of fields arrives with its text in
        # `_corrupt_record` (every column null) instead of being truncated or padded.
        frame = read_arrow_csv(spark, [path], tuple(names), opts["separator"], opts["header"])
        return frame.select(*[F.col(f"`{n}`") for n in names], CORRUPT, BAD_LINE), set()
    # Other encodings: Spark's reader, which keeps a line with the wrong number of fields
    # in the corrupt-record column.
    schema = StructType([StructField(n, StringType()) for n in [*names, CORRUPT]])
    frame = (
        spark.read.option("header", opts["header"])
        .option("sep", opts["separator"])
        .option("encoding", SPARK_CHARSETS[codecs.lookup(opts["encoding"]).name])
        .option("quote", '"')
        .option("escape", '"')
        .option("enforceSchema", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .schema(schema)
        .csv(str(path))
        .withColumn(BAD_LINE, F.lit(None).cast("string"))
    )
    return frame, set()


def _as_text(frame: DataFrame, name: str, is_time: bool) -> Column:
    column = frame[name]
    if is_time:
        # An instant with its offset (UTC session) or a wall clock (NTZ, read as UTC).
        return (
            F.date_format(column, "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")
            if isinstance(frame.schema[name].dataType, TimestampType)
            else F.date_format(column, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
        )
    return column.cast("string")


def _read_all(
    spark: SparkSession, spec: Path, paths: list[Path], opts: dict, wanted: dict[str, str]
) -> tuple[DataFrame, set[str]]:
    frames, typed = [], set()
    for path in paths:
        frame, times = _read_file(spark, spec, path, opts, wanted)
        frames.append(frame)
        typed |= times
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame, allowMissingColumns=True)
    return out, typed


def _raw_names(columns: list[str]) -> dict[str, str]:
    """Source column -> `raw_<name>` with a parquet-safe name, unique; the corrupt-record
    column (csv/tsv) is always `raw__corrupt_record`."""
    names: dict[str, str] = {}
    if CORRUPT in columns:
        names[CORRUPT] = RAW_CORRUPT
    if BAD_LINE in columns:
        names[BAD_LINE] = BAD_LINE  # "invalid UTF-8 on line N": a rule's reason, not a value
    for column in columns:
        if column in (CORRUPT, BAD_LINE):
            continue
        base = "raw_" + re.sub(r"[^0-9A-Za-z_]", "_", column)
        name, n = base, 1
        while name in names.values():
            n += 1
            name = f"{base}_{n}"
        names[column] = name
    return {c: names[c] for c in columns}


def _text(raw: str) -> Column:
    return F.trim(F.col(raw))


def _iso_ts(raw: str) -> Column:
    """ISO 8601: a date alone is UTC midnight, a time without an offset is UTC."""
    text = _text(raw)
    with_zone = (
        F.when(text.rlike(r"^\d{4}-\d{2}-\d{2}$"), F.concat(text, F.lit("T00:00:00Z")))
        .when(text.rlike(r"(?i)(z|[+-]\d{2}(:?\d{2})?|[a-z]{2,}[a-z0-9_/+-]*)$"), text)
        .otherwise(F.concat(text, F.lit("Z")))
    )
    return with_zone.try_cast("timestamp")


def _flag(raw: str) -> Column:
    """The integer 0 or 1 ("+1", "01" too; "1.0" is no flag), or true/false; else null."""
    text = F.lower(_text(raw))
    value = integer_id(raw)
    return (
        F.when(text == "true", F.lit(1))
        .when(text == "false", F.lit(0))
        .when(value.isin(0, 1), value.cast("int"))
    )


def utc_day(ts: Column) -> Column:
    """`yyyy-MM-dd` UTC day of a timestamp, whatever the session time zone."""
    days = F.floor(F.unix_micros(ts) / 86_400_000_000).cast("int")
    return F.date_add(F.lit("1970-01-01").cast("date"), days).cast("string")


def read_tables(
    spark: SparkSession, release: Release, quality: QualityConfig
) -> dict[str, DataFrame]:
    options = release.options
    absent = [c for c in OPTIONAL_COLUMNS if c not in options["optional"]]
    derived = _derives_ratio(options["optional"])
    if derived:
        absent.remove("watch_ratio")
    if absent:
        logger.info(
            "%s: optional column(s) not mapped, absent downstream: %s%s",
            options["spec"],
            ", ".join(absent),
            " (watch_ratio computed from watch_ms / duration_ms)" if derived else "",
        )
    tables = {"interactions": read_interactions(spark, release, quality)}
    if options.get("videos"):
        tables["videos"] = read_videos(spark, release)
    return tables


def _derives_ratio(optional: dict) -> bool:
    return "watch_ratio" not in optional and {"watch_ms", "duration_ms"} <= set(optional)


def read_interactions(
    spark: SparkSession,
    release: Release,
    quality: QualityConfig,
    now_ms: int | None = None,
) -> DataFrame:
    """Every row of the logs, parsed, with `ds` (UTC day) and a quarantine reason (null = ok).
    `now_ms` (default `landing_now_ms()`) is the landing clock of the plausible-time rule."""
    options = release.options
    spec = Path(options["spec"])
    mapping, optional, unit = options["mapping"], options["optional"], options["unit"]
    if options.get("min_event_time"):
        quality = dataclasses.replace(quality, min_event_time=options["min_event_time"])
    now_ms = landing_now_ms() if now_ms is None else now_ms
    wanted = _log_columns(options)
    frame, typed = _read_all(spark, spec, release.parts["logs"], options["logs"], wanted)
    raw = _raw_names(frame.columns)
    frame = frame.select(*[F.col(f"`{c}`").alias(r) for c, r in raw.items()])

    def named(unified: str) -> str:
        return f"{unified} (column {wanted[unified]!r})"

    time_raw = raw[mapping["event_ts"]]
    time_unit = "iso8601" if mapping["event_ts"] in typed else unit
    # Every number field parsed once (with_numbers): epoch times to ms, counts as they are.
    time_scale = 1000 if time_unit == "s" else 1
    numbers = [
        (raw[optional[c]], 1) for c in ("watch_ms", "duration_ms", "watch_ratio") if c in optional
    ]
    if time_unit != "iso8601":
        numbers.append((time_raw, time_scale))
    frame = with_numbers(frame, numbers)
    if time_unit == "iso8601":
        ts = _iso_ts(time_raw)
        time_ms = F.floor(F.unix_micros(ts) / 1000).cast("long")
        time_parse = [(ts.isNull(), f"{named('event_ts')} missing or not {UNITS[time_unit]}")]
    else:
        # Epoch seconds or ms (the number grammar, finite) as epoch ms: the double's exact
        # value times 1000 (seconds) rounded HALF_UP; null when the ms do not fit a long.
        time_ms = F.col(long_column(time_raw, time_scale))
        time_parse = [
            (
                ~F.col(number_text_column(time_raw)),
                f"{named('event_ts')} missing or not {UNITS[time_unit]}",
            ),
            (time_ms.isNull(), f"{named('event_ts')} out of range"),
        ]
    parsed = {
        "user_id": integer_id(raw[mapping["user_id"]]),
        "video_id": integer_id(raw[mapping["video_id"]]),
        "time_ms": time_ms,
    }
    for column in ("watch_ms", "duration_ms", "watch_ratio"):
        if column in optional:
            parsed[column] = F.col(number_column(raw[optional[column]]))
    for column in FLAG_COLUMNS:
        if column in optional:
            parsed[column] = _flag(raw[optional[column]])
    typed_frame = frame.select("*", *[value.alias(f"_{k}") for k, value in parsed.items()])
    if _derives_ratio(optional):
        typed_frame = typed_frame.withColumn(
            "_watch_ratio",
            F.when(F.col("_duration_ms") > 0, F.col("_watch_ms") / F.col("_duration_ms")),
        )
    rules: list = []
    if RAW_CORRUPT in typed_frame.columns:
        rules += malformed_rules(RAW_CORRUPT, BAD_LINE)
    rules += [
        (F.col("_user_id").isNull(), f"{named('user_id')} missing or not an integer"),
        (F.col("_video_id").isNull(), f"{named('video_id')} missing or not an integer"),
    ]
    time_rules_ = [
        *time_parse,
        *time_rules(F.col("_time_ms"), named("event_ts"), quality, now_ms),
    ]
    rules += time_rules_
    for column in ("watch_ms", "duration_ms"):
        if column in optional:
            rules += number_rules(named(column), raw=raw[optional[column]], non_negative=True)
    if "watch_ratio" in optional:
        ratio_raw = raw[optional["watch_ratio"]]
        rules.append(
            (
                ~F.col(number_text_column(ratio_raw)),
                f"{named('watch_ratio')} missing or not a number",
            )
        )
        rules.append((F.col("_watch_ratio").isNull(), f"{named('watch_ratio')} out of range"))
    for column in FLAG_COLUMNS:
        if column in optional:
            rules.append(
                (
                    ~F.coalesce(F.col(f"_{column}").isin(0, 1), F.lit(False)),
                    f"{named(column)} not 0 or 1",
                )
            )
    if "watch_ratio" in optional or _derives_ratio(optional):
        low, high = quality.watch_ratio_min, quality.watch_ratio_max
        rules.append(
            (
                (F.col("_watch_ratio") < low) | (F.col("_watch_ratio") > high),
                f"watch_ratio outside [{low}, {high}]",
            )
        )
    # event_ts (and ds) only where the time passed its rules: null on a row whose time is
    # unreadable or implausible, so it never lands in a partition of year 2100.
    time_ok = F.col("_time_ms").isNotNull() & ~F.coalesce(
        _any([broken for broken, _ in time_rules_]), F.lit(False)
    )
    if time_unit == "iso8601":
        event_ts = F.when(time_ok, ts)
    else:
        event_ts = F.when(time_ok, F.timestamp_millis(F.col("_time_ms")))
    checked = with_quarantine_reason(typed_frame.withColumn("_event_ts", event_ts), rules)
    unified = [
        F.col("_user_id").alias("user_id"),
        F.col("_video_id").alias("video_id"),
        F.col("_event_ts").alias("event_ts"),
    ]
    for column in ("watch_ms", "duration_ms"):
        if column in optional:
            unified.append(F.col(long_column(raw[optional[column]])).alias(column))
    if "watch_ratio" in optional or _derives_ratio(optional):
        unified.append(F.col("_watch_ratio").alias("watch_ratio"))
    for column in FLAG_COLUMNS:
        if column in optional:
            unified.append(F.col(f"_{column}").alias(column))
    return checked.select(
        *[name for name in raw.values() if name != BAD_LINE],
        *unified,
        F.lit(options["source"]).alias("source"),
        utc_day(F.col("_event_ts")).alias("ds"),
        QUARANTINE_REASON,
    )


def _any(conditions: list[Column]) -> Column:
    out = F.lit(False)
    for condition in conditions:
        out = out | F.coalesce(condition, F.lit(False))
    return out


def read_videos(spark: SparkSession, release: Release) -> DataFrame:
    options = release.options
    spec = Path(options["spec"])
    videos = options["videos"]
    wanted = _video_columns(options)
    frame, _ = _read_all(spark, spec, release.parts["videos"], videos, wanted)
    raw = _raw_names(frame.columns)
    frame = frame.select(*[F.col(f"`{c}`").alias(r) for c, r in raw.items()])
    columns = [integer_id(raw[videos["id"]]).alias("video_id")]
    if videos["title"]:
        title = _text(raw[videos["title"]])
        columns.append(F.when(title != "", title).alias("caption"))
    if videos["categories"]:
        tokens = F.split(
            F.coalesce(F.col(raw[videos["categories"]]), F.lit("")),
            re.escape(videos["categories_separator"]),
        )
        tags = F.filter(
            F.transform(tokens, lambda t: integer_id(t, "int")), lambda t: t.isNotNull()
        )
        columns.append(tags.alias("categories"))
    parsed = frame.select("*", *columns)
    if videos["categories"]:
        parsed = parsed.withColumn("primary_category", F.try_element_at("categories", F.lit(1)))
    rules: list = []
    if RAW_CORRUPT in parsed.columns:
        rules += malformed_rules(RAW_CORRUPT, BAD_LINE)
    rules.append(
        (
            F.col("video_id").isNull(),
            f"video_id (column {videos['id']!r}) missing or not an integer",
        )
    )
    checked = with_quarantine_reason(parsed, rules)
    ordered = [c for c in checked.columns if c not in (QUARANTINE_REASON, BAD_LINE)]
    ordered.append(QUARANTINE_REASON)
    return checked.select(*ordered)
