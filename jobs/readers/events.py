"""Your own interaction logs into the unified schema, described by a spec file.

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
                no file is an error.
    header      csv/tsv only, default true: whether the first line of each file names the
                columns.
    columns     csv/tsv with header = false only, and then required: the column names, in
                file order. Every line must have this many fields.
    separator   csv/tsv only, optional: one character replacing the format's separator
                ("," for csv, a tab for tsv), e.g. "|" or ";".
    encoding    csv/tsv only, default "utf-8" (e.g. "latin-1").
    source      default "events": the dataset name written to the `source` column.

[mapping]  required: the unified columns every log must have, each set to a source column.
    user_id     integer user id
    video_id    integer item id
    event_ts    the time of the interaction, read as [time] unit says

[time]     required.
    unit        "s" (epoch seconds, decimals allowed), "ms" (epoch milliseconds) or "iso8601"
                (`2022-04-30T10:20:30.792Z`, `2022-04-30 10:20:30+08:00`, `2022-04-30`; a time
                without an offset is UTC). A parquet column already typed timestamp is taken as
                is, whatever the unit.

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

Row rules (a rejected row is quarantined with the first reason it breaks)
    "user_id (column 'user') missing or not an integer", likewise video_id;
    "event_ts (column 'ts') missing or not epoch seconds" (or "... not epoch milliseconds",
    "... not an ISO 8601 time"); "watch_ms (column 'w') missing or not a number",
    "negative watch_ms (column 'w')", likewise duration_ms; "watch_ratio (column 'r') missing
    or not a number"; "is_like (column 'l') not 0 or 1"; "watch_ratio outside [min, max]"
    (quality config, only where the ratio is defined); "exact duplicate row" for every copy of
    an identical line after the first.

Errors that stop the run (InputFileError, naming the file and the problem)
    a missing spec file; invalid TOML; an unknown or missing key; an unknown unified column; a
    bad format or time unit; `columns` missing when header = false; a mapped source column
    that is not in a file (named with the spec file); a pattern matching no file; a file with
    the wrong separator or the wrong number of fields.
"""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampNTZType, TimestampType

from features.schema import INTERACTION_OPTIONAL, QUARANTINE_REASON
from jobs.readers import Release
from jobs.readers.native import InputFileError, with_quarantine_reason
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
MIN_MICROS = 0 - 62_135_596_800_000_000  # 0001-01-01 00:00:00 UTC
MAX_MICROS = 253_402_300_799_999_999  # 9999-12-31 23:59:59.999999 UTC

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
    _unknown(spec, time, ("unit",), "[time]")
    _missing(spec, time, ("unit",), "[time]")
    unit = time["unit"]
    if unit not in UNITS:
        raise _fail(spec, f"bad time unit {unit!r}: [time] unit must be one of {list(UNITS)}")
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
        "source": source,
        "videos": videos,
    }


def _check_mapped(spec: Path, wanted: dict[str, str], present: list[str], where: str) -> None:
    missing = {unified: src for unified, src in wanted.items() if src not in present}
    if missing:
        shown = ", ".join(f"{src!r} ({unified})" for unified, src in missing.items())
        raise _fail(spec, f"mapped column(s) {shown} not in {where} {list(present)}")


# ----------------------------------------------------------------------------- detect


def _resolve(spec: Path, root: Path, patterns: list[str]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        matched = sorted(p for p in root.glob(pattern) if p.is_file() and p.name != SPEC_NAME)
        if not matched:
            raise _fail(spec, f"files pattern {pattern!r} matches no file in {root}")
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
    _check_text_files(spec, parts["logs"], options["logs"], _log_columns(options))
    if options["videos"]:
        parts["videos"] = _resolve(spec, root, options["videos"]["files"])
        _check_text_files(spec, parts["videos"], options["videos"], _video_columns(options))
    return Release(DATASET, options["source"], root, {"spec": spec}, parts, options)


def _log_columns(options: dict) -> dict[str, str]:
    return {**options["mapping"], **options["optional"]}


def _video_columns(options: dict) -> dict[str, str]:
    videos = options["videos"]
    return {k: videos[k] for k in ("id", "title", "categories") if videos[k]}


def _check_text_files(spec: Path, paths: list[Path], opts: dict, wanted: dict[str, str]) -> None:
    """Separator, field count and mapped columns of csv/tsv files, before Spark reads them."""
    if opts["format"] == "parquet":
        return  # checked against the file's schema when read
    for path in paths:
        header = _text_columns(path, opts)
        if header is not None:
            _check_mapped(spec, wanted, header, f"{path}, whose header is")


# ----------------------------------------------------------------------------- reading


def _first_line(path: Path, encoding: str) -> str:
    try:
        with open(path, encoding=encoding, errors="replace", newline="") as fh:
            return fh.readline().rstrip("\r\n").lstrip("\ufeff")
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
    header = _text_columns(path, opts)
    names = header if opts["header"] else opts["columns"]
    if opts["header"]:
        _check_mapped(spec, wanted, names, f"{path}, whose header is")
    schema = StructType([StructField(n, StringType()) for n in names])
    frame = (
        spark.read.option("header", opts["header"])
        .option("sep", opts["separator"])
        .option("encoding", opts["encoding"])
        .option("quote", '"')
        .option("escape", '"')
        .option("enforceSchema", True)
        .option("mode", "PERMISSIVE")
        .schema(schema)
        .csv(str(path))
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
    """Source column -> `raw_<name>` with a parquet-safe name, unique."""
    names: dict[str, str] = {}
    for column in columns:
        base = "raw_" + re.sub(r"[^0-9A-Za-z_]", "_", column)
        name, n = base, 1
        while name in names.values():
            n += 1
            name = f"{base}_{n}"
        names[column] = name
    return names


def _text(raw: str) -> Column:
    return F.trim(F.col(raw))


def _number(raw: str, typ: str) -> Column:
    return F.expr(f"try_cast(trim(`{raw}`) as {typ})")


def _finite(raw: str) -> Column:
    """A double; null where the text does not parse, is NaN or is infinite."""
    value = _number(raw, "double")
    return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)


def _event_ts(raw: str, unit: str) -> Column:
    if unit in ("s", "ms"):
        scale, per_unit = (6, 1_000_000) if unit == "s" else (3, 1_000)
        micros = F.expr(
            f"try_cast(try_cast(trim(`{raw}`) as decimal(30, {scale})) * {per_unit} as bigint)"
        )
        return F.when(micros.between(MIN_MICROS, MAX_MICROS), F.timestamp_micros(micros))
    # ISO 8601: a date alone is UTC midnight, a time without an offset is UTC.
    text = _text(raw)
    with_zone = (
        F.when(text.rlike(r"^\d{4}-\d{2}-\d{2}$"), F.concat(text, F.lit("T00:00:00Z")))
        .when(text.rlike(r"(?i)(z|[+-]\d{2}(:?\d{2})?|[a-z]{2,}[a-z0-9_/+-]*)$"), text)
        .otherwise(F.concat(text, F.lit("Z")))
    )
    return with_zone.try_cast("timestamp")


def _flag(raw: str) -> Column:
    text = F.lower(_text(raw))
    return (
        F.when(text.isin("1", "true"), F.lit(1))
        .when(text.isin("0", "false"), F.lit(0))
        .otherwise(_finite(raw).try_cast("int"))
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


def read_interactions(spark: SparkSession, release: Release, quality: QualityConfig) -> DataFrame:
    options = release.options
    spec = Path(options["spec"])
    mapping, optional, unit = options["mapping"], options["optional"], options["unit"]
    wanted = _log_columns(options)
    frame, typed = _read_all(spark, spec, release.parts["logs"], options["logs"], wanted)
    raw = _raw_names(frame.columns)
    frame = frame.select(*[F.col(f"`{c}`").alias(r) for c, r in raw.items()])

    def named(unified: str) -> str:
        return f"{unified} (column {wanted[unified]!r})"

    time_unit = "iso8601" if mapping["event_ts"] in typed else unit
    parsed = {
        "user_id": _number(raw[mapping["user_id"]], "bigint"),
        "video_id": _number(raw[mapping["video_id"]], "bigint"),
        "event_ts": _event_ts(raw[mapping["event_ts"]], time_unit),
    }
    for column in ("watch_ms", "duration_ms", "watch_ratio"):
        if column in optional:
            parsed[column] = _finite(raw[optional[column]])
    for column in FLAG_COLUMNS:
        if column in optional:
            parsed[column] = _flag(raw[optional[column]])
    typed_frame = frame.select("*", *[value.alias(f"_{k}") for k, value in parsed.items()])
    if _derives_ratio(optional):
        typed_frame = typed_frame.withColumn(
            "_watch_ratio",
            F.when(F.col("_duration_ms") > 0, F.col("_watch_ms") / F.col("_duration_ms")),
        )
    rules = [
        (F.col("_user_id").isNull(), f"{named('user_id')} missing or not an integer"),
        (F.col("_video_id").isNull(), f"{named('video_id')} missing or not an integer"),
        (F.col("_event_ts").isNull(), f"{named('event_ts')} missing or not {UNITS[time_unit]}"),
    ]
    for column in ("watch_ms", "duration_ms"):
        if column in optional:
            rules.append((F.col(f"_{column}").isNull(), f"{named(column)} missing or not a number"))
            rules.append((F.col(f"_{column}") < 0, f"negative {named(column)}"))
    if "watch_ratio" in optional:
        rules.append(
            (F.col("_watch_ratio").isNull(), f"{named('watch_ratio')} missing or not a number")
        )
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
    checked = with_quarantine_reason(typed_frame, rules)
    unified = [
        F.col("_user_id").alias("user_id"),
        F.col("_video_id").alias("video_id"),
        F.col("_event_ts").alias("event_ts"),
    ]
    for column in ("watch_ms", "duration_ms"):
        if column in optional:
            unified.append(F.round(f"_{column}").try_cast("long").alias(column))
    if "watch_ratio" in optional or _derives_ratio(optional):
        unified.append(F.col("_watch_ratio").alias("watch_ratio"))
    for column in FLAG_COLUMNS:
        if column in optional:
            unified.append(F.col(f"_{column}").alias(column))
    return checked.select(
        *raw.values(),
        *unified,
        F.lit(options["source"]).alias("source"),
        utc_day(F.col("_event_ts")).alias("ds"),
        QUARANTINE_REASON,
    )


def read_videos(spark: SparkSession, release: Release) -> DataFrame:
    options = release.options
    spec = Path(options["spec"])
    videos = options["videos"]
    wanted = _video_columns(options)
    frame, _ = _read_all(spark, spec, release.parts["videos"], videos, wanted)
    raw = _raw_names(frame.columns)
    frame = frame.select(*[F.col(f"`{c}`").alias(r) for c, r in raw.items()])
    columns = [_number(raw[videos["id"]], "bigint").alias("video_id")]
    if videos["title"]:
        title = _text(raw[videos["title"]])
        columns.append(F.when(title != "", title).alias("caption"))
    if videos["categories"]:
        tokens = F.split(
            F.coalesce(F.col(raw[videos["categories"]]), F.lit("")),
            re.escape(videos["categories_separator"]),
        )
        tags = F.filter(
            F.transform(tokens, lambda t: F.trim(t).try_cast("int")), lambda t: t.isNotNull()
        )
        columns.append(tags.alias("categories"))
    parsed = frame.select("*", *columns)
    if videos["categories"]:
        parsed = parsed.withColumn("primary_category", F.try_element_at("categories", F.lit(1)))
    rules = [
        (
            F.col("video_id").isNull(),
            f"video_id (column {videos['id']!r}) missing or not an integer",
        )
    ]
    checked = with_quarantine_reason(parsed, rules)
    ordered = [c for c in checked.columns if c != QUARANTINE_REASON] + [QUARANTINE_REASON]
    return checked.select(*ordered)
