"""Benchmark: the ranker's training set (point-in-time join), Feast's file store vs Spark.

On KuaiRec at `small` scale (about 1M interactions over 10 days, seed 0), the lake's label
rows (user_id, video_id, event_timestamp, plus a row id as an extra column) are joined to the
`ranker_v1` feature service (user_features and video_features, full feature names: the two
views share names) twice, each in its own child process so memory is measured per side:

  feast  FeatureStore.get_historical_features(...).to_df() on the file offline store
  spark  features.pit_join.spark_historical_features (local Spark, the project's config)

A watchdog samples the resident memory of each child's whole process tree (the Spark JVM
included) and kills a side that passes the cap (8 GiB) or the time limit, so Feast cannot
take the machine down; a killed side is reported as such. Peak memory is reported twice: the
largest sampled sum over the tree, and the sum of each process's own high-water mark
(VmHWM; an upper bound of the simultaneous peak). When both sides finish, a random sample of
rows is compared value for value; when Feast does not, both sides also join a smaller random
subset of the same rows and every row Feast returns there is compared.

The bench home (raw files, normalized lake, features) is built on first use and reused:

    .venv/bin/python bench/training_set.py [--home var/bench-training-set] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from features.pit_join import same_value  # noqa: E402
from lake.partitions import available_days, partition  # noqa: E402
from reelflow.meter import tree_rss  # noqa: E402

SERVICE = "ranker_v1"
ROW_ID = "row_id"  # the extra entity column: kept by both sides, and matches rows across them
ENTITY = ["user_id", "video_id", "event_timestamp"]
GIB = 1024**3


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def home_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "REELFLOW_HOME": str(home)}
    env.pop("FEAST_FS_YAML_FILE_PATH", None)  # the file offline store is the one measured
    return env


def cli(home: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reelflow.cli", *args], env=home_env(home), cwd=REPO
    )
    if result.returncode != 0:
        raise SystemExit(f"reelflow {' '.join(args)} failed (exit {result.returncode})")


def stale_feature_days(home: Path, days: list[str]) -> list[str]:
    """Days whose feature partitions are missing or lack a column the registry declares."""
    from features.feast_repo import feature_store
    from features.store import apply_if_changed
    from lake.schema import LABELS
    from reelflow.paths import Paths

    paths = Paths(home)
    os.environ.update(REELFLOW_HOME=str(home))
    os.environ.pop("FEAST_FS_YAML_FILE_PATH", None)
    apply_if_changed(paths)
    store = feature_store(paths)
    views = [p.name for p in store.get_feature_service(SERVICE).feature_view_projections]
    declared = {v: {f.name for f in store.get_feature_view(v).features} for v in views}
    stale = []
    for ds in days:
        for table in [*views, LABELS]:
            part = partition(paths.features(table), ds)
            if not part.exists():
                stale.append(ds)
                break
            names = set(pads.dataset(str(part), format="parquet").schema.names)
            if not declared.get(table, set()) <= names:
                stale.append(ds)
                break
    return stale


def prepare(home: Path, scale: str, seed: int) -> list[str]:
    """Raw files, normalized days and features of every day, each step only when missing."""
    raw = home / "raw"
    if not (raw / "reelflow_manifest.json").exists():
        cli(home, "generate", "--dataset", "kuairec", "--scale", scale, "--seed", str(seed),
            "--out", str(raw))  # fmt: skip
    manifest = json.loads((raw / "reelflow_manifest.json").read_text())
    days = list(manifest["days"])
    if available_days(home / "lake" / "normalized" / "interactions") != days:
        cli(home, "normalize", "--dataset", "kuairec", "--raw", str(raw), "--json")
    stale = stale_feature_days(home, days)
    if stale:
        # One child, one Spark session for every day (a CLI call per day would start a JVM each).
        code = (
            "import sys; from features.compute import compute_features; "
            "from reelflow.config import load_config; from reelflow.paths import Paths; "
            "paths = Paths.from_env(); config = load_config(); "
            "[print(compute_features(d, config, paths), flush=True) for d in sys.argv[1:]]"
        )
        result = subprocess.run([sys.executable, "-c", code, *stale], env=home_env(home), cwd=REPO)
        if result.returncode != 0:
            raise SystemExit(f"computing features failed for {stale} (exit {result.returncode})")
    return days


def entity_frame(home: Path, rows: int, seed: int) -> pd.DataFrame:
    """The first `rows` labels by time (all of them when fewer), with a row id."""
    labels = pads.dataset(
        str(home / "lake" / "features" / "labels"), format="parquet", partitioning="hive"
    ).to_table(columns=ENTITY)
    frame = labels.to_pandas().sort_values(ENTITY, kind="stable").head(rows)
    frame = frame.reset_index(drop=True)
    frame[ROW_ID] = np.arange(len(frame), dtype=np.int64)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


# ----------------------------------------------------------------------------------------
# One side, in its own process
# ----------------------------------------------------------------------------------------


def vm_hwm(pid: int) -> int:
    """The process's peak resident set (bytes), from the kernel."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def peaks() -> dict[str, int]:
    """VmHWM of this process and of each of its descendants."""
    hwm = {"python": vm_hwm(os.getpid())}
    for child in psutil.Process().children(recursive=True):
        try:
            hwm[f"{child.name()}:{child.pid}"] = vm_hwm(child.pid)
        except (OSError, psutil.Error):
            pass
    return hwm


def build_ranker_set(paths) -> dict:
    """The ranker's own training-set build (models/ranker_data.py `build_training_data`) with
    the default config, exactly as a training run does it: the last labelled day held out,
    the days before it bounded (`ranker.train_days`, `ranker.max_train_views`), negatives
    added, both point-in-time joins by the engine `features.training_join` picks."""
    from features.store import join_engine
    from models.ranker_data import ServiceFeatures, build_training_data
    from reelflow.config import load_config

    config = load_config()
    holdout = available_days(paths.features("labels"))[-1]
    join_started = time.perf_counter()
    data = build_training_data(holdout, config, ServiceFeatures.of(SERVICE, paths))
    return {
        "join_seconds": time.perf_counter() - join_started,
        "holdout_ds": holdout,
        "train_days": len(data.train_days),
        "views_available": data.views_available,
        "views_kept": data.views_kept,
        "train_rows": len(data.targets["exposed"]),
        "config": {
            "ranker.train_days": config.ranker.train_days,
            "ranker.max_train_views": config.ranker.max_train_views,
            "ranker.negatives_per_positive": config.ranker.negatives_per_positive,
            "features.training_join": config.features.training_join,
            "features.training_join_spark_rows": config.features.training_join_spark_rows,
        },
        # Each join is of distinct (id, moment) pairs: the engine is picked per frame.
        "engine_for_a_frame_of_train_rows": join_engine(len(data.targets["exposed"])),
    }


def run_side(engine: str, work: Path, entity_file: Path, tag: str) -> None:
    """Runs one join and writes <tag>.json (timings, rows, per-process peaks) and <tag>.parquet
    (the rows whose row id is in sample.parquet)."""
    from reelflow.paths import Paths

    started = time.perf_counter()
    paths = Paths.from_env()
    entity = pd.read_parquet(entity_file)
    sample = set(pd.read_parquet(work / "sample.parquet")[ROW_ID])
    report: dict = {"engine": engine, "entity_rows": len(entity)}
    if engine == "ranker":
        report.update(build_ranker_set(paths))
        report["seconds_in_child"] = time.perf_counter() - started
        report["vm_hwm_bytes"] = peaks()
        (work / f"{tag}.json").write_text(json.dumps(report, indent=2, default=str))
        return
    if engine == "feast":
        from features.feast_repo import feature_store

        store = feature_store(paths)
        service = store.get_feature_service(SERVICE)
        join_started = time.perf_counter()
        out = store.get_historical_features(
            entity_df=entity, features=service, full_feature_names=True
        ).to_df()
        report["join_seconds"] = time.perf_counter() - join_started
    else:
        from features.pit_join import spark_historical_features
        from lake.spark import spark_session
        from reelflow.config import load_config

        session_started = time.perf_counter()
        spark = spark_session(load_config().spark)
        report["spark_start_seconds"] = time.perf_counter() - session_started
        report["spark_conf"] = {
            k: spark.conf.get(k) for k in ("spark.master", "spark.driver.memory")
        }
        join_started = time.perf_counter()
        out = spark_historical_features(entity, SERVICE, paths, full_feature_names=True)
        report["join_seconds"] = time.perf_counter() - join_started
    report["rows_out"] = len(out)
    # Rows with no value at all from a view; column by column, so the count costs no copy of
    # the frame (this process's peak memory is the measurement).
    report["rows_without"] = {}
    for view in ("user_features", "video_features"):
        empty = np.ones(len(out), dtype=bool)
        for column in (c for c in out.columns if c.startswith(f"{view}__")):
            empty &= out[column].isna().to_numpy()
        report["rows_without"][view] = int(empty.sum())
    report["columns"] = len(out.columns)
    picked = out[out[ROW_ID].isin(sample)].sort_values(ROW_ID).reset_index(drop=True)
    pq.write_table(pa.Table.from_pandas(picked, preserve_index=False), work / f"{tag}.parquet")
    report["vm_hwm_bytes"] = peaks()  # last, while the Spark JVM is still alive
    report["seconds_in_child"] = time.perf_counter() - started
    (work / f"{tag}.json").write_text(json.dumps(report, indent=2, default=str))


def measure(
    engine: str, home: Path, work: Path, entity_file: Path, tag: str, cap: int, limit: float
) -> dict:
    """Runs a side in a child process under the watchdog; returns its report."""
    for stale in (work / f"{tag}.json", work / f"{tag}.parquet"):
        stale.unlink(missing_ok=True)
    command = [sys.executable, __file__, "side", engine, str(work), str(entity_file), tag]
    log = open(work / f"{tag}.log", "w")
    started = time.perf_counter()
    child = subprocess.Popen(
        command, env=home_env(home), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a kill takes the JVM with it
    )  # fmt: skip
    peak = {"bytes": 0, "killed": None}

    def watch() -> None:
        while child.poll() is None:
            if (rss := tree_rss(child.pid)) is None:
                break
            peak["bytes"] = max(peak["bytes"], rss)
            over = rss > cap
            late = time.perf_counter() - started > limit
            if over or late:
                peak["killed"] = (
                    f"memory cap: {rss / GIB:.2f} GiB > {cap / GIB:.0f} GiB"
                    if over
                    else f"time limit: {limit:.0f} s"
                )
                os.killpg(child.pid, signal.SIGKILL)
                break
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    code = child.wait()
    wall = time.perf_counter() - started
    watcher.join()
    log.close()
    result = {
        "status": "ok" if code == 0 else ("killed" if peak["killed"] else f"failed (exit {code})"),
        "wall_seconds": round(wall, 2),
        "peak_rss_sampled_gib": round(peak["bytes"] / GIB, 3),
    }
    if peak["killed"]:
        result["killed_by"] = peak["killed"]
    report_file = work / f"{tag}.json"
    if code == 0 and report_file.exists():
        report = json.loads(report_file.read_text())
        hwm = report.pop("vm_hwm_bytes")
        result.update(
            join_seconds=round(report.pop("join_seconds"), 2),
            peak_rss_hwm_sum_gib=round(sum(hwm.values()) / GIB, 3),
            peak_rss_hwm_gib={k: round(v / GIB, 3) for k, v in hwm.items()},
            **{k: v for k, v in report.items() if k not in ("engine", "seconds_in_child")},
        )
        # Both measures undercount in their own way: sampling can miss a short spike, and the
        # kernel's VmHWM misses memory returned with madvise (the JVM's and Arrow's allocators
        # do): the headline is the larger.
        result["peak_rss_gib"] = max(result["peak_rss_sampled_gib"], result["peak_rss_hwm_sum_gib"])
        if "spark_start_seconds" in result:
            result["spark_start_seconds"] = round(result["spark_start_seconds"], 2)
    elif code != 0 and not peak["killed"]:
        tail = (work / f"{tag}.log").read_text()[-3000:]
        result["error_tail"] = tail
    return result


# ----------------------------------------------------------------------------------------
# Agreement
# ----------------------------------------------------------------------------------------


def compare(work: Path, feast_tag: str, spark_tag: str) -> dict:
    """Rows both sides returned: equal in every column? Rows only Spark returned: why?"""
    feast_rows = pd.read_parquet(work / f"{feast_tag}.parquet").set_index(ROW_ID)
    spark_rows = pd.read_parquet(work / f"{spark_tag}.parquet").set_index(ROW_ID)
    sample = pd.read_parquet(work / "sample.parquet")[ROW_ID]
    common = feast_rows.index.intersection(spark_rows.index)
    mismatched = []
    for row_id in common:
        for column in feast_rows.columns:
            if not same_value(feast_rows.at[row_id, column], spark_rows.at[row_id, column]):
                mismatched.append({"row_id": int(row_id), "column": column})
    only_spark = spark_rows.loc[spark_rows.index.difference(feast_rows.index)]
    # Why Feast left a row out: some view had no stored row in the window (Feast drops the
    # row instead of returning nulls), or another entity row has the same user and time.
    views = {c.split("__")[0] for c in spark_rows.columns if "__" in c}
    unmatched = pd.Series(False, index=only_spark.index)
    for view in views:
        columns = [c for c in only_spark.columns if c.startswith(f"{view}__")]
        unmatched |= only_spark[columns].isna().all(axis=1)
    return {
        "sampled_rows": len(sample),
        "spark_returned": len(spark_rows),
        "feast_returned": len(feast_rows),
        "compared_rows": len(common),
        "compared_values": len(common) * len(feast_rows.columns),
        "mismatched_values": len(mismatched),
        "first_mismatches": mismatched[:10],
        "missing_in_feast": len(only_spark),
        "missing_in_feast_with_a_view_unmatched": int(unmatched.sum()),
        "missing_in_feast_other": int((~unmatched).sum()),
        "missing_in_spark": len(feast_rows.index.difference(spark_rows.index)),
    }


# ----------------------------------------------------------------------------------------


def ranker_only(args, home: Path, work: Path, days: list[str], commit: str) -> None:
    """The ranker's training-set build, no setting changed, under the same watchdog."""
    entity_file = work / "entity.parquet"
    pd.DataFrame({ROW_ID: []}).to_parquet(work / "sample.parquet", index=False)
    entity_frame(home, 1, args.seed).to_parquet(entity_file, index=False)  # unused by the side
    load_at_start = os.getloadavg()[0]
    cap, limit = int(args.cap_gib * GIB), args.limit_s
    ranker = measure("ranker", home, work, entity_file, "ranker", cap, limit)
    print(f"ranker: {json.dumps({k: v for k, v in ranker.items() if k != 'error_tail'})}")
    goal = {"rows": 1_000_000, "seconds": 300, "gib": 8}
    report = {
        "benchmark": "training_set_ranker_build",
        "git_commit": commit,
        "dirty": dirty(),
        "seed": args.seed,
        "scale": args.scale,
        "dataset": "kuairec (generated)",
        "days": len(days),
        "machine": machine(load_at_start),
        "ranker": ranker,
        "goal": {
            **goal,
            "met": ranker["status"] == "ok"
            and ranker.get("train_rows", 0) >= goal["rows"]
            and ranker["wall_seconds"] <= goal["seconds"]
            and ranker["peak_rss_gib"] <= goal["gib"],
        },
    }
    out = REPO / "bench" / "results" / "training_set_ranker.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"-> {out.relative_to(REPO)}")


def dirty() -> bool:
    status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True)
    return bool(status.stdout.strip())


def machine(load_at_start: float) -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        # The machine is shared: other jobs' load shows in the times.
        "load_average_1m_at_start": round(load_at_start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=str(REPO / "var" / "bench-training-set"))
    parser.add_argument("--scale", default="small", choices=["tiny", "demo", "small", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1_000_000, help="entity rows (label rows)")
    parser.add_argument("--cap-gib", type=float, default=8.0, help="memory cap of each side")
    parser.add_argument("--limit-s", type=float, default=1200.0, help="time limit of each side")
    parser.add_argument("--sample", type=int, default=2000, help="rows compared value by value")
    parser.add_argument(
        "--check-rows", type=int, default=50_000, help="subset joined by both sides for the "
        "agreement check when Feast does not finish the full run",
    )  # fmt: skip
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument(
        "--ranker-only", action="store_true", help="only the ranker's own training-set build "
        "with the default config (bench/results/training_set_ranker.json)",
    )  # fmt: skip
    args = parser.parse_args()

    commit = git_commit()  # the code that runs, not what may be committed meanwhile
    home = Path(args.home).resolve()
    work = home / "bench"
    work.mkdir(parents=True, exist_ok=True)
    days = prepare(home, args.scale, args.seed)
    if args.ranker_only:
        ranker_only(args, home, work, days, commit)
        return
    entity = entity_frame(home, args.rows, args.seed)
    entity_file = work / "entity.parquet"
    entity.to_parquet(entity_file, index=False)
    rng = np.random.default_rng(args.seed)
    sample_ids = np.sort(rng.choice(len(entity), size=min(args.sample, len(entity)), replace=False))
    pd.DataFrame({ROW_ID: sample_ids}).to_parquet(work / "sample.parquet", index=False)
    cap, limit = int(args.cap_gib * GIB), args.limit_s
    load_at_start = os.getloadavg()[0]

    spark = measure("spark", home, work, entity_file, "spark", cap, limit)
    print(f"spark: {json.dumps(spark)}", flush=True)
    feast = (
        {"status": "skipped"}
        if args.skip_feast
        else measure("feast", home, work, entity_file, "feast", cap, limit)
    )
    print(f"feast: {json.dumps({k: v for k, v in feast.items() if k != 'error_tail'})}", flush=True)

    agreement: dict = {}
    if spark["status"] == "ok" and feast["status"] == "ok":
        agreement = {
            "on": f"a random sample of the {len(entity):,} rows",
            **compare(work, "feast", "spark"),
        }
    elif spark["status"] == "ok" and not args.skip_feast:
        # Feast could not do the whole set: both join a random subset, all of it compared.
        subset = np.sort(
            rng.choice(len(entity), size=min(args.check_rows, len(entity)), replace=False)
        )
        subset_file = work / "entity_subset.parquet"
        entity.iloc[subset].to_parquet(subset_file, index=False)
        pd.DataFrame({ROW_ID: entity[ROW_ID].iloc[subset]}).to_parquet(
            work / "sample.parquet", index=False
        )
        small_feast = measure("feast", home, work, subset_file, "feast_subset", cap, limit)
        small_spark = measure("spark", home, work, subset_file, "spark_subset", cap, limit)
        agreement = {
            "on": f"every row of a random subset of {len(subset):,} rows, joined by both",
            "feast": {k: v for k, v in small_feast.items() if k != "error_tail"},
            "spark": small_spark,
        }
        if small_feast["status"] == "ok" and small_spark["status"] == "ok":
            agreement.update(compare(work, "feast_subset", "spark_subset"))
    print(f"agreement: {json.dumps(agreement, default=str)}", flush=True)

    from reelflow.config import load_config

    spark_cfg = load_config().spark
    goal = {"rows": 1_000_000, "seconds": 300, "gib": 8}
    spark_peak = spark.get("peak_rss_gib", spark["peak_rss_sampled_gib"])
    report = {
        "benchmark": "training_set_pit_join",
        "git_commit": commit,
        "seed": args.seed,
        "scale": args.scale,
        "dataset": "kuairec (generated)",
        "days": len(days),
        "rows": len(entity),
        "feature_service": SERVICE,
        "spark_master": spark_cfg.master,
        "spark_driver_memory": spark_cfg.driver_memory,
        "memory_cap_gib": args.cap_gib,
        "time_limit_s": limit,
        "dirty": dirty(),
        "machine": machine(load_at_start),
        "spark": spark,
        "feast": {k: v for k, v in feast.items() if k != "error_tail"},
        "agreement": agreement,
        "goal": {
            **goal,
            "spark_met": spark["status"] == "ok"
            and spark["wall_seconds"] <= goal["seconds"]
            and spark_peak <= goal["gib"],
        },
    }
    if spark["status"] == "ok" and feast["status"] == "ok":
        report["feast_over_spark_join"] = round(feast["join_seconds"] / spark["join_seconds"], 2)
    out = REPO / "bench" / "results" / "training_set.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"-> {out.relative_to(REPO)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "side":
        run_side(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5])
    else:
        main()
