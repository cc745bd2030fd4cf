"""A Spark data source that parses large delimited logs with Arrow's CSV parser.

Spark's built-in CSV reader is the slow part of normalizing a 12.5M-row log (about 8x DuckDB
on two cores). This source splits each file into byte ranges, parses every range with
pyarrow in the Python worker and hands Spark Arrow record batches, all columns as strings,
exactly like the string-typed read of `native.read_csv_as_strings`.

Only for files whose quoted values never hold a line break (interaction logs): a byte range
is cut at line ends. A row with the wrong number of fields is not dropped: it arrives with
every column null and its text in `_corrupt_record`, for the reader to quarantine. A line that
is not valid UTF-8 is not dropped either: it arrives with every column null, its text (bad
bytes replaced) in `_corrupt_record` and "invalid UTF-8 on line N" in `_bad_line` (N counts
the file's lines from 1, the header included). Lines are counted only when such a line is
found, so the common case costs nothing. A line may end in \n or \r\n.
"""

from __future__ import annotations

import io
import os

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StringType, StructField, StructType

CORRUPT = "_corrupt_record"
BAD_LINE = "_bad_line"


class ByteRange(InputPartition):
    def __init__(self, path: str, start: int, end: int):
        self.path, self.start, self.end = path, start, end


class ArrowCsvDataSource(DataSource):
    """Options: `paths` (os.pathsep-joined), `columns` (comma-joined), `sep`, `header`, `chunk_mb`."""

    @classmethod
    def name(cls) -> str:
        return "reelflow_arrow_csv"

    def schema(self) -> StructType:
        columns = self.options["columns"].split(",")
        return StructType([StructField(c, StringType()) for c in [*columns, CORRUPT, BAD_LINE]])

    def reader(self, schema: StructType) -> DataSourceReader:
        return ArrowCsvReader(self.options)


class ArrowCsvReader(DataSourceReader):
    def __init__(self, options: dict[str, str]):
        self.paths = options["paths"].split(os.pathsep)
        self.columns = options["columns"].split(",")
        self.sep = options.get("sep", ",")
        self.header = options.get("header", "true").lower() == "true"
        self.chunk = int(float(options.get("chunk_mb", "32")) * (1 << 20))

    def partitions(self) -> list[ByteRange]:
        ranges = []
        for path in self.paths:
            size = os.path.getsize(path)
            ranges += [
                ByteRange(path, s, min(s + self.chunk, size))
                for s in range(0, max(size, 1), self.chunk)
            ]
        return ranges

    def _lines(self, part: ByteRange) -> tuple[int, bytes]:
        """(offset, the whole lines that start inside [start, end) read from that offset)."""
        with open(part.path, "rb") as fh:
            if part.start > 0:
                fh.seek(part.start - 1)
                fh.readline()  # the line that began before this range belongs to the previous one
            elif self.header:
                fh.readline()
            begin = fh.tell()
            if begin >= part.end and part.start > 0:
                return begin, b""
            data = fh.read(max(part.end - begin, 0))
            if data and not data.endswith(b"\n"):
                data += fh.readline()
            return begin, data

    def _parse(self, data: bytes):
        import pyarrow as pa
        from pyarrow import csv

        corrupt: list[str] = []

        def keep_bad_row(row) -> str:
            corrupt.append(row.text.rstrip("\r"))
            return "skip"

        table = csv.read_csv(
            io.BytesIO(data),
            read_options=csv.ReadOptions(
                column_names=self.columns, use_threads=False, block_size=1 << 24
            ),
            parse_options=csv.ParseOptions(delimiter=self.sep, invalid_row_handler=keep_bad_row),
            convert_options=csv.ConvertOptions(
                column_types={c: pa.string() for c in self.columns},
                null_values=[""],  # an empty field is null, as in Spark's CSV reader
                strings_can_be_null=True,
            ),
        )
        return table, corrupt

    def _split_invalid_utf8(
        self, path: str, begin: int, data: bytes
    ) -> tuple[bytes, list[tuple[str, str]]]:
        """`data` without its lines that are not valid UTF-8, and for each such line its text
        (bad bytes replaced) and "invalid UTF-8 on line N"."""
        lines = data.split(b"\n")
        bad: list[tuple[int, bytes]] = []
        for index, line in enumerate(lines):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad.append((index, line))
        if not bad:
            return data, []
        first_line = _lines_before(path, begin) + 1
        problems = [
            (
                line.rstrip(b"\r").decode("utf-8", errors="replace"),
                f"invalid UTF-8 on line {first_line + index}",
            )
            for index, line in bad
        ]
        skip = {index for index, _ in bad}
        kept = b"\n".join(line for i, line in enumerate(lines) if i not in skip)
        return kept, problems

    def read(self, partition: ByteRange):
        import pyarrow as pa

        begin, data = self._lines(partition)
        if not data.strip():
            return
        invalid: list[tuple[str, str]] = []
        try:
            table, corrupt = self._parse(data)
        except (pa.ArrowInvalid, UnicodeDecodeError):
            # Invalid UTF-8 fails the parse, with a message that depends on where it sits (in
            # a well-formed row, or in one the wrong-field-count handler cannot decode): set
            # such lines apart and parse again; any other failure is raised as it is.
            data, invalid = self._split_invalid_utf8(partition.path, begin, data)
            if not invalid:
                raise
            if data.strip():
                table, corrupt = self._parse(data)
            else:
                table, corrupt = None, []
        if table is not None and table.num_rows:
            table = table.append_column(CORRUPT, pa.nulls(table.num_rows, pa.string()))
            table = table.append_column(BAD_LINE, pa.nulls(table.num_rows, pa.string()))
            yield from table.to_batches(max_chunksize=1 << 16)
        if corrupt:
            bad = {c: pa.nulls(len(corrupt), pa.string()) for c in self.columns}
            bad[CORRUPT] = pa.array(corrupt, pa.string())
            bad[BAD_LINE] = pa.nulls(len(corrupt), pa.string())
            yield pa.RecordBatch.from_pydict(bad)
        if invalid:
            bad = {c: pa.nulls(len(invalid), pa.string()) for c in self.columns}
            bad[CORRUPT] = pa.array([text for text, _ in invalid], pa.string())
            bad[BAD_LINE] = pa.array([why for _, why in invalid], pa.string())
            yield pa.RecordBatch.from_pydict(bad)


def _lines_before(path: str, offset: int, chunk: int = 1 << 22) -> int:
    """How many line breaks the file holds before byte `offset`."""
    count = 0
    with open(path, "rb") as fh:
        while offset > 0:
            block = fh.read(min(chunk, offset))
            if not block:
                break
            count += block.count(b"\n")
            offset -= len(block)
    return count


def read_arrow_csv(
    spark,
    paths: list,
    columns: tuple[str, ...],
    sep: str = ",",
    header: bool = True,
    chunk_mb: float = 32,
):
    """Registers the source once per session and reads `paths` as string columns plus
    `_corrupt_record` and `_bad_line`."""
    if not getattr(spark, "_reelflow_arrow_csv", False):
        spark.dataSource.register(ArrowCsvDataSource)
        spark._reelflow_arrow_csv = True
    return (
        spark.read.format(ArrowCsvDataSource.name())
        .option("paths", os.pathsep.join(str(p) for p in paths))
        .option("columns", ",".join(columns))
        .option("sep", sep)
        .option("header", str(header).lower())
        .option("chunk_mb", repr(float(chunk_mb)))
        .load()
    )
