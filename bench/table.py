"""Rewrites the README's benchmark table from bench/results/*.json.

.venv/bin/python bench/table.py
"""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def rows() -> list[str]:
    out = [
        "| benchmark | data | reelflow | reference | ratio | commit |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted((REPO / "bench" / "results").glob("*.json")):
        r = json.loads(path.read_text())
        if r["benchmark"] == "normalize_kuairec_big_matrix":
            out.append(
                f"| normalize `big_matrix.csv` (`bench/normalize.py`) | {r['rows']:,} rows, {r['scale']}, "
                f"{r['threads']} threads | Spark job (spark-submit, Arrow CSV source) {r['spark_job_seconds']} s, "
                f"{r['spark_rows_per_s']:,} rows/s | DuckDB {r['duckdb_seconds']} s, {r['duckdb_rows_per_s']:,} rows/s "
                f"| Spark takes {r['spark_over_duckdb']}x DuckDB's time (built-in CSV reader: "
                f"{r['spark_builtin_csv_seconds']} s, {r['spark_builtin_csv_over_duckdb']}x) | {r['git_commit'][:8]} |"
            )
    return out


def main() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    table = "\n".join([START, *rows(), END])
    if START in text:
        head, rest = text.split(START, 1)
        text = head + table + rest.split(END, 1)[1]
    else:
        text = text.replace("BENCH_TABLE", table)
    readme.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
