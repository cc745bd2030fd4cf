"""Benchmark: the nightly export's candidate lists (jobs/export.py) for 100k users.

Data: generated MicroLens-100k at full scale (`reelflow generate --dataset microlens --scale
full`: 100,000 users, 19,738 videos, ~720k log rows over 103 days), cached under
var/bench/export/raw. No Spark, no Airflow, no MLflow: the inputs `export_candidates` reads from
the lake and the registry are computed here with pandas from `<prefix>pairs.csv` (unparsable
rows and exact duplicates dropped, as the reader does), mirroring features/compute.py for day
D = the log's last day:

- the catalog (jobs.candidates.DayCatalog): every video of the likes file; no categories (-1, as
  MicroLens has none), trend velocity (exposures on D over the 7-day daily mean), normalized
  performance (exposures_7d over the exposure-weighted mean of its age bucket: MicroLens logs
  neither watch time nor likes, so exposures are its performance), exposures_7d;
- user and video feature frames with the ranker's USER_DENSE / VIDEO_DENSE columns; what
  MicroLens lacks (watch ratios, completion and skip rates, durations) is NaN, as the real
  features hold there; `category_affinity` and `recent_category_share` are all-zero vectors
  and `primary_category` -1 (features/compute.py coalesces them so for uncategorized data);
- a RankerBundle whose MultiObjectiveRanker is RANDOM-INITIALISED (seeded; heads: rewatch,
  MicroLens's one known label): a throughput benchmark, the scores mean nothing. Its
  FeatureScaler is fit on the frames, its vocabularies are the log's users and the catalog;
- the ANN embeddings from a RANDOM-INITIALISED GRU4Rec (seeded): one epoch of
  `train_sequence_model("gru", ...)` on this log ran 1,563 steps at ~1.1 steps/s here (over
  20 minutes, load average ~5), far past the 2-minute budget. Video vectors are
  `bundle.item_vectors(catalog)`, user queries `bundle.queries(last 50 views)`
  (models/sequence_data.py), exactly as the export reads a champion's;
- cold start: `plan_exposure` (no previous plan) and `assign_cohorts`, as the export calls them;
- watched: every (user, video) of the log.

Deviation from the pipeline, on purpose: every user of the log is "active" (the export only
lists users with a view in the last `candidates.active_days` = 28 days, 44% of them here), so
that the lists are built for all 100k users as issue 6 asks.

Measured (reelflow), in two child processes, each loading those inputs and then running only
its stage, lines copied from `export_candidates`: `index` = histories, the embedding model's
video table and user queries, `build_ann_index`, the search (the manifest's
`index_and_queries_seconds`); `lists` = `RankerBundle.pair_scorer`, the ranker's video
vectors for the MMR and `build_lists` over `USERS_PER_CHUNK` chunks (its `lists_seconds`). Wall and CPU seconds
(the process's, all threads) are both kept: other engineers' jobs share the 2 cores. Peak
memory of a stage is the kernel's RSS high-water mark (VmHWM), reset through
/proc/self/clear_refs once the inputs are loaded, so that loading's own peak is left out; it
is of the whole process (interpreter, torch, the loaded inputs: `rss_at_start_gib`). Not
`getrusage(RUSAGE_SELF).ru_maxrss`: it cannot be reset, and a child's starts at its parent's
peak (Linux carries the pre-exec peak across fork + exec: measured here, the child of a
0.8 GB parent reports 0.8 GB). The parent also samples the child's RSS with psutil every
10 ms; the reported peak is the larger of the two.

Reference, in the same run: a straightforward per-user implementation (for each user: the same
pool in the same order, watched dropped, the ranker's score through the same
`RankerBundle.pair_scorer` one user at a time, a plain-Python greedy MMR over the same embeddings with the same lambda and
cap, the same exploration slots and interleaving) on a random sample of `--sample` users, fed
the ANN neighbours the `index` stage found. Its lists are compared with the stage's, user by
user.

One thread (torch and faiss) by default, as bench/train_seq.py: with other jobs on both cores
(load average ~8), two threads made every small torch op wait for the descheduled second
thread; measured in a first run with `--threads 2`: `index` 259 s (60 s with one), `lists`
149 s (112 s), the reference 7.5 users/s (154).

    .venv/bin/python bench/export.py [--seed 0] [--threads 1] [--sample 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from reelflow.config import Config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GIB = 1 << 30
PREFIX = "MicroLens-100k_"
# MicroLens logs no watch time and no engagement flags; only rewatch (a repeat view) is known
# for its views (features/labels.py), so the ranker trained on it has that one head.
MICROLENS_HEADS = ("rewatch",)


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ----------------------------------------------------------------------------------------
# Inputs, from the generated log
# ----------------------------------------------------------------------------------------


def generated_release(raw: Path, seed: int) -> dict:
    """The generated release under `raw` (generated once, then reused); its manifest."""
    manifest = raw / "reelflow_manifest.json"
    if not manifest.exists():
        subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "reelflow"),
                "generate",
                "--dataset",
                "microlens",
                "--scale",
                "full",
                "--seed",
                str(seed),
                "--out",
                str(raw),
            ],
            check=True,
        )
    return json.loads(manifest.read_text())


def read_log(raw: Path) -> pd.DataFrame:
    """user_id, video_id, event_ts (UTC), ds of pairs.csv: unparsable rows and exact
    duplicates left out, as the reader keeps them."""
    pairs = pd.read_csv(raw / f"{PREFIX}pairs.csv", dtype=str)
    for column in pairs:
        pairs[column] = pd.to_numeric(pairs[column], errors="coerce")
    pairs = pairs.dropna().astype("int64").drop_duplicates()
    log = pd.DataFrame(
        {
            "user_id": pairs["user"].to_numpy(),
            "video_id": pairs["item"].to_numpy(),
            "event_ts": pd.to_datetime(pairs["timestamp"].to_numpy(), unit="ms", utc=True),
        }
    )
    log["ds"] = log["event_ts"].dt.strftime("%Y-%m-%d")
    return log


def feature_frames(
    log: pd.DataFrame, video_ids: np.ndarray, users: np.ndarray, ds: str, config: Config
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(user_frame, video_frame) as features/compute.py holds them for MicroLens on day ds."""
    from lake.partitions import days_back
    from lake.schema import feature_time
    from models.ranker import USER_DENSE, VIDEO_DENSE

    cfg = config.features
    stamp = pd.Timestamp(feature_time(ds))
    mid = log["ds"] >= days_back(ds, cfg.mid_window_days)[0]
    long = log[log["ds"] >= days_back(ds, cfg.long_window_days)[0]]
    on_day = log["ds"] == ds

    def hours(ts: pd.Series) -> pd.Series:
        return (stamp - ts).dt.total_seconds() / 3600.0

    by_user = log.groupby("user_id")
    user = pd.DataFrame(index=pd.Index(users, name="user_id"))
    user["views_1d"] = log[on_day].groupby("user_id").size()
    user["views_7d"] = log[mid].groupby("user_id").size()
    user["views_28d"] = long.groupby("user_id").size()
    user = user.fillna({"views_1d": 0, "views_7d": 0, "views_28d": 0}).astype("int64")
    for column in USER_DENSE:
        if column not in user:
            user[column] = np.nan  # watch ratios and rates: MicroLens logs no watch time
    user["hours_since_last_view"] = hours(by_user["event_ts"].max()).reindex(users).to_numpy()
    zeros = [0.0] * cfg.num_categories  # no categories: all-zero shares, as compute.py writes
    user["category_affinity"] = [zeros] * len(user)
    user["recent_category_share"] = [zeros] * len(user)
    user_frame = user.reset_index()[
        ["user_id", *USER_DENSE, "category_affinity", "recent_category_share"]
    ]

    video = pd.DataFrame(index=pd.Index(video_ids, name="video_id"))
    video["exposures_1d"] = log[on_day].groupby("video_id").size()
    video["exposures_7d"] = log[mid].groupby("video_id").size()
    video = video.fillna(0).astype("int64")
    for column in ("mean_watch_ratio_7d", "completion_rate_7d", "skip_rate_7d"):
        video[column] = np.nan
    video["trend_velocity"] = np.where(
        video["exposures_7d"] > 0,
        video["exposures_1d"] * cfg.mid_window_days / video["exposures_7d"].clip(lower=1),
        0.0,
    )
    video["duration_ms"] = 0  # MicroLens has no durations: compute.py coalesces to 0
    first_view = long.groupby("video_id")["event_ts"].min().reindex(video_ids)
    age = hours(first_view).to_numpy()
    video["hours_since_first_view"] = np.nan_to_num(age, nan=-1.0)
    video["age_hours"] = age  # no upload time: since the first view in the long window
    video["primary_category"] = -1
    # Performance = exposures_7d (MicroLens logs neither watch ratio nor likes), over the
    # exposure-weighted mean of its comparable group (duration unknown: the age bucket alone).
    bucket = np.searchsorted(np.asarray(cfg.age_buckets_days), age / 24.0, side="right")
    bucket = np.where(np.isnan(age), -1, bucket)
    exposures = video["exposures_7d"].to_numpy(np.float64)
    perf = np.where(exposures > 0, exposures, np.nan)
    weight = np.where(np.isnan(perf), 0.0, exposures)
    group = pd.DataFrame(
        {"bucket": bucket, "weighted": np.nan_to_num(perf) * weight, "weight": weight}
    ).groupby("bucket")
    baseline = group["weighted"].transform("sum") / group["weight"].transform("sum")
    video["normalized_performance"] = perf / baseline.to_numpy()
    video_frame = video.reset_index()[
        ["video_id", *VIDEO_DENSE, "primary_category", "age_hours", "normalized_performance"]
    ]
    return user_frame, video_frame


def build_inputs(raw: Path, work: Path, seed: int, manifest: dict) -> dict:
    """Writes what the export's stage reads into `work`; returns the data sizes."""
    import torch

    from jobs.candidates import DayCatalog, watched_pairs
    from jobs.cold_start import assign_cohorts, plan_exposure
    from models.gru import GRU4Rec, GRU4RecConfig
    from models.ranker import USER_DENSE, VIDEO_DENSE, MultiObjectiveRanker, RankerModelConfig
    from models.ranker_data import FeatureScaler, RankerBundle
    from models.sequence_data import SequenceBundle
    from models.vocab import Vocabulary
    from reelflow.config import load_config

    config = load_config()
    log = read_log(raw)
    ds = manifest["days"][-1]
    likes = pd.read_csv(raw / f"{PREFIX}likes_and_views.txt", sep="\t", header=None)
    video_ids = np.union1d(likes[0].to_numpy(np.int64), log["video_id"].unique())
    users = np.unique(log["user_id"].to_numpy(np.int64))  # every user "active": see the docstring
    user_frame, video_frame = feature_frames(log, video_ids, users, ds, config)

    catalog = DayCatalog(
        video_ids=video_ids,
        categories=video_frame["primary_category"].to_numpy(np.int64),
        trend_velocity=video_frame["trend_velocity"].to_numpy(np.float64),
        performance=video_frame["normalized_performance"].to_numpy(np.float64),
        exposures_7d=video_frame["exposures_7d"].to_numpy(np.float64),
    )
    # The export's views: sorted by time (then video) for the histories.
    views = log.sort_values(["event_ts", "video_id"], kind="stable")[["user_id", "video_id"]]
    seen = log[["user_id", "video_id"]].drop_duplicates()
    watched = watched_pairs(seen, users, catalog)
    plan = plan_exposure(ds, video_frame, None, len(users), config.cold_start)
    cohorts = assign_cohorts(plan, users, ds, config.cold_start)
    affinity = np.stack([np.asarray(a, float) for a in user_frame["category_affinity"]])
    top_categories = np.where(
        np.sort(affinity, axis=1)[:, ::-1][:, :3] > 0, np.argsort(-affinity, axis=1)[:, :3], -1
    )

    torch.manual_seed(seed)
    ranker = RankerBundle(
        name="ranker",
        model=MultiObjectiveRanker(
            RankerModelConfig(
                n_users=len(users) + 1,
                n_videos=len(video_ids) + 1,
                num_categories=config.features.num_categories,
                active_heads=MICROLENS_HEADS,
            )
        ).eval(),
        user_vocab=Vocabulary(users),
        video_vocab=Vocabulary(video_ids),
        scaler=FeatureScaler.fit(
            {"user": (user_frame, USER_DENSE), "video": (video_frame, VIDEO_DENSE)}
        ),
    )
    ranker.save(work / "ranker")
    torch.manual_seed(seed)
    seq_vocab = Vocabulary.build(log["video_id"].to_numpy(np.int64))
    gru = GRU4Rec(
        GRU4RecConfig(n_items=len(seq_vocab.ids), max_len=config.features.sequence_length)
    )
    SequenceBundle("gru", gru.eval(), seq_vocab).save(work / "gru")

    views.to_parquet(work / "views.parquet", index=False)
    user_frame.to_parquet(work / "user_frame.parquet", index=False)
    video_frame.to_parquet(work / "video_frame.parquet", index=False)
    watched.to_parquet(work / "watched.parquet", index=False)
    cohorts.to_parquet(work / "cohorts.parquet", index=False)
    np.save(work / "users.npy", users)
    np.save(work / "top_categories.npy", top_categories)
    np.savez(work / "catalog.npz", **dataclasses.asdict(catalog))
    return {
        "dataset": f"MicroLens-100k generated, scale full, seed {seed}",
        "day": ds,
        "log_rows": len(log),
        "users": len(users),
        "users_active_28d": int(log.loc[log["ds"] >= _day_minus(ds, 27), "user_id"].nunique()),
        "videos": len(video_ids),
        "watched_pairs": len(watched),
        "new_videos_in_plan": int((plan["state"] == "new").sum()),
        "cohort_slots": len(cohorts),
    }


def _day_minus(ds: str, days: int) -> str:
    return (pd.Timestamp(ds) - timedelta(days=days)).strftime("%Y-%m-%d")


def load_inputs(work: Path) -> dict:
    from jobs.candidates import DayCatalog
    from models.bundle import Bundle

    stored = np.load(work / "catalog.npz")
    return {
        "catalog": DayCatalog(**{k: stored[k] for k in stored.files}),
        "views": pd.read_parquet(work / "views.parquet"),
        "user_frame": pd.read_parquet(work / "user_frame.parquet"),
        "video_frame": pd.read_parquet(work / "video_frame.parquet"),
        "watched": pd.read_parquet(work / "watched.parquet"),
        "cohorts": pd.read_parquet(work / "cohorts.parquet"),
        "users": np.load(work / "users.npy"),
        "top_categories": np.load(work / "top_categories.npy"),
        "ranker": Bundle.load(work / "ranker"),
        "gru": Bundle.load(work / "gru"),
    }


# ----------------------------------------------------------------------------------------
# The export's stage, in its own process
# ----------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> int:
    """Resets the kernel's RSS high-water mark to the current RSS; returns that RSS (bytes)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def _start(report: dict) -> tuple[float, float]:
    """Marks a phase's start: its RSS, the high-water mark reset; (wall, CPU) clocks."""
    report["rss_at_start_gib"] = _reset_peak() / GIB
    report["started_monotonic"] = time.monotonic()
    return time.perf_counter(), time.process_time()


def _end(report: dict) -> None:
    report["peak_rss_hwm_gib"] = _status_kib("VmHWM") / (1 << 20)
    report["ended_monotonic"] = time.monotonic()


def index_stage(work: Path, threads: int) -> dict:
    """As export_candidates from its first timer: histories, the embedding model's video table
    and user queries, `build_ann_index`, the search. Writes neighbours.npy."""
    from jobs.ann import build_ann_index
    from jobs.export import recent_histories
    from reelflow.config import load_config

    config = load_config()
    cc = config.candidates
    inputs = load_inputs(work)
    catalog, active = inputs["catalog"], inputs["users"]
    report: dict = {}
    started, cpu = _start(report)
    histories = recent_histories(inputs["views"], active, config.features.sequence_length)
    report["histories_seconds"] = time.perf_counter() - started
    bundle = inputs["gru"]
    # Videos the model never saw are not indexed.
    in_index, vectors = bundle.item_vectors(catalog.video_ids)
    queries = bundle.queries(histories)
    report["queries_seconds"] = time.perf_counter() - started - report["histories_seconds"]
    export_config = dataclasses.replace(config.export, index_threads=threads)
    ann = build_ann_index(vectors, queries, export_config)
    n_search = min(cc.ann_candidates, len(in_index))
    search_started = time.perf_counter()
    _, neighbours = ann.search(queries, n_search)
    report["search_seconds"] = time.perf_counter() - search_started
    neighbours = np.where(neighbours >= 0, in_index[np.maximum(neighbours, 0)], -1)
    report["seconds"] = time.perf_counter() - started
    report["cpu_seconds"] = time.process_time() - cpu
    _end(report)
    report["index"] = {
        k: ann.report[k] for k in ("type", "size", "dim", "build_seconds", "threads")
    }
    report["ann_candidates"] = n_search
    np.save(work / "neighbours.npy", neighbours)
    return report


def lists_stage(work: Path, threads: int) -> dict:
    """As export_candidates from its second timer: the pair scorer, the MMR's embeddings and
    `build_lists` over `USERS_PER_CHUNK` chunks. Writes candidates.parquet."""
    from jobs.export import USERS_PER_CHUNK, lists_in_chunks
    from reelflow.config import load_config

    config = load_config()
    cc, k = config.candidates, config.export.candidates_per_user
    inputs = load_inputs(work)
    neighbours = np.load(work / "neighbours.npy")
    catalog, active = inputs["catalog"], inputs["users"]
    user_frame, video_frame = inputs["user_frame"], inputs["video_frame"]
    watched, cohorts = inputs["watched"], inputs["cohorts"]
    top_categories = inputs["top_categories"]
    ranker = inputs["ranker"]
    report: dict = {"users_per_chunk": USERS_PER_CHUNK, "chunk_seconds": []}
    started, cpu = _start(report)
    scorer = ranker.pair_scorer(user_frame, video_frame)
    embeddings = (
        None if catalog.has_categories else ranker.item_vectors(catalog.video_ids, video_frame)[1]
    )
    report["scorer_seconds"] = time.perf_counter() - started
    chunk_started = [time.perf_counter()]

    def on_chunk(start: int, end: int) -> None:
        now = time.perf_counter()
        report["chunk_seconds"].append(round(now - chunk_started[0], 2))
        chunk_started[0] = now

    personal = lists_in_chunks(
        active,
        neighbours,
        top_categories,
        catalog,
        watched,
        cohorts,
        scorer,
        cc,
        k,
        embeddings,
        on_chunk=on_chunk,
    )
    report["seconds"] = time.perf_counter() - started
    report["cpu_seconds"] = time.process_time() - cpu
    _end(report)
    report["rows"] = len(personal)
    report["by_source"] = personal["source"].value_counts().to_dict()
    personal.to_parquet(work / "candidates.parquet", index=False)
    return report


STAGES = {"index": index_stage, "lists": lists_stage}


def run_stage(name: str, work: Path, threads: int) -> None:
    """Child process entry: one stage, its report to <name>.json."""
    import torch

    torch.set_num_threads(threads)
    report = STAGES[name](work, threads)
    report["torch_threads"] = torch.get_num_threads()
    (work / f"{name}.json").write_text(json.dumps(report, indent=2, default=str))


def measure_stage(name: str, work: Path, threads: int) -> dict:
    """Runs one stage in a child process, sampling its RSS every 10 ms meanwhile. The peak is
    the larger of the kernel's high-water mark and the sampled maximum over the stage (each
    can miss what the other sees: sampling a short spike, VmHWM memory handed back early)."""
    import psutil

    (work / f"{name}.json").unlink(missing_ok=True)
    log = open(work / f"{name}.log", "w")
    child = subprocess.Popen(
        [sys.executable, __file__, "stage", name, str(work), "--threads", str(threads)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    samples: list[tuple[float, int]] = []

    def sample() -> None:
        proc = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                samples.append((time.monotonic(), proc.memory_info().rss))
            except psutil.Error:
                break
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    sampler.join()
    log.close()
    if code != 0:
        tail = (work / f"{name}.log").read_text()[-3000:]
        raise RuntimeError(f"stage {name} failed (exit {code}):\n{tail}")
    report = json.loads((work / f"{name}.json").read_text())
    begin, end = report.pop("started_monotonic"), report.pop("ended_monotonic")
    inside = [rss for t, rss in samples if begin <= t <= end]
    report["peak_rss_sampled_gib"] = max(inside) / GIB if inside else float("nan")
    report["peak_rss_gib"] = max(report["peak_rss_hwm_gib"], report["peak_rss_sampled_gib"])
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}


# ----------------------------------------------------------------------------------------
# Reference: one user at a time
# ----------------------------------------------------------------------------------------


def reference_lists(
    sample_rows: np.ndarray, inputs: dict, neighbours: np.ndarray, cc, k: int
) -> pd.DataFrame:
    """The candidate rows of the sampled users, built one user at a time in plain Python."""
    from jobs.candidates import (
        EXPLORATION_SOURCES,
        SOURCES,
        best_by_category,
        little_seen,
        slots,
        trending,
    )

    catalog, users = inputs["catalog"], inputs["users"]
    # The scorer's towers over the sampled users only: row i is sample_rows[i].
    scorer = inputs["ranker"].pair_scorer(
        inputs["user_frame"].iloc[sample_rows], inputs["video_frame"]
    )
    vectors = inputs["ranker"].item_vectors(catalog.video_ids, inputs["video_frame"])[1]
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    watched = inputs["watched"]
    watched = watched[watched["row"].isin(sample_rows)]
    seen_of: dict[int, set[int]] = {}
    for r, p in zip(watched["row"].tolist(), watched["pos"].tolist(), strict=True):
        seen_of.setdefault(r, set()).add(p)
    cohorts = inputs["cohorts"]
    cohort_pos = catalog.positions(cohorts["video_id"].to_numpy())
    offered: dict[int, list[int]] = {}
    wanted = set(users[sample_rows].tolist())
    for u, p in zip(cohorts["user_id"].tolist(), cohort_pos.tolist(), strict=True):
        if u in wanted and p >= 0:
            offered.setdefault(u, []).append(p)
    best = best_by_category(catalog, cc.affinity_candidates)
    hot = trending(catalog, cc.trending_candidates).tolist()
    exploit_n, explore_n = slots(cc, k)
    filler = little_seen(catalog, 4 * max(explore_n, 1) + exploit_n).tolist()
    by_category = catalog.has_categories
    cap = max(1, math.ceil(cc.max_share_per_category * exploit_n))
    lam = cc.mmr_lambda
    marks = {int((i + 1) * k / (explore_n + 1)) - 1 for i in range(explore_n)}

    out = []
    for i, row in enumerate(sample_rows.tolist()):
        seen = seen_of.get(row, set())
        pool: dict[int, int] = {}
        for p in neighbours[row].tolist():
            if p >= 0:
                pool.setdefault(p, 0)
        for c in inputs["top_categories"][row].tolist():
            for p in best[c].tolist() if c in best else ():
                pool.setdefault(p, 1)
        for p in hot:
            pool.setdefault(p, 2)
        cands = [p for p in pool if p not in seen]
        scores = scorer(np.full(len(cands), i), np.asarray(cands, dtype=np.int64)).tolist()
        # Greedy MMR over the pool sorted by score (stable: ties keep the pool's order).
        order = sorted(range(len(cands)), key=lambda j: -scores[j])
        cands = [cands[j] for j in order]
        scores = [scores[j] for j in order]
        low, high = (min(scores), max(scores)) if scores else (0.0, 0.0)
        span = high - low if high > low else 1.0
        relevance = [(s - low) / span for s in scores]
        redundancy = [0.0] * len(cands)
        taken = [False] * len(cands)
        per_category: dict[int, int] = {}
        exploit = []
        for _ in range(exploit_n):
            pick, value = -1, -math.inf
            for j, p in enumerate(cands):
                if taken[j]:
                    continue
                cat = int(catalog.categories[p])
                if by_category and cat >= 0 and per_category.get(cat, 0) >= cap:
                    continue
                v = lam * relevance[j] - (1 - lam) * redundancy[j]
                if v > value:
                    pick, value = j, v
            if pick < 0:
                break
            taken[pick] = True
            chosen = cands[pick]
            exploit.append(chosen)
            cat = int(catalog.categories[chosen])
            if by_category:
                if cat >= 0:
                    per_category[cat] = per_category.get(cat, 0) + 1
                    for j, p in enumerate(cands):
                        if int(catalog.categories[p]) == cat:
                            redundancy[j] = 1.0
            else:
                for j, p in enumerate(cands):
                    redundancy[j] = max(redundancy[j], float(unit[p] @ unit[chosen]))
        exploit += [-1] * (exploit_n - len(exploit))
        skip = seen | {p for p in exploit if p >= 0}
        explore = []
        for code, options in ((0, offered.get(int(users[row]), ())), (1, filler)):
            for p in options:
                if len(explore) < explore_n and p not in skip:
                    explore.append((p, EXPLORATION_SOURCES[code]))
                    skip.add(p)
        explore += [(-1, "")] * (explore_n - len(explore))
        # Exploration at the marked slots, exploitation in order elsewhere; empty slots dropped.
        exploit_picks = iter([(p, SOURCES[pool[p]] if p >= 0 else "") for p in exploit])
        explore_picks = iter(explore)
        picks = [next(explore_picks if slot in marks else exploit_picks) for slot in range(k)]
        picks = [(p, s) for p, s in picks if p >= 0]
        final = scorer(np.full(len(picks), i), np.asarray([p for p, _ in picks], dtype=np.int64))
        for rank, ((p, source), score) in enumerate(zip(picks, final.tolist(), strict=True), 1):
            out.append((int(users[row]), rank, int(catalog.video_ids[p]), score, source))
    return pd.DataFrame(out, columns=["user_id", "rank", "video_id", "score", "source"])


def agreement(reelflow: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """Per sampled user: the same list (video, source, in order)? The share of videos shared;
    the largest score difference on the slots where both hold the same video."""

    def lists(frame: pd.DataFrame) -> dict[int, list[tuple[int, str]]]:
        frame = frame.sort_values(["user_id", "rank"])
        out: dict[int, list[tuple[int, str]]] = {}
        for user, video, source in frame[["user_id", "video_id", "source"]].itertuples(index=False):
            out.setdefault(int(user), []).append((int(video), source))
        return out

    ours = reelflow[reelflow["user_id"].isin(reference["user_id"].unique())]
    mine, theirs = lists(ours), lists(reference)
    same = sum(mine.get(user) == theirs[user] for user in theirs)
    overlap = [
        len({v for v, _ in mine.get(user, [])} & {v for v, _ in want}) / max(len(want), 1)
        for user, want in theirs.items()
    ]
    merged = ours.merge(reference, on=["user_id", "rank"], suffixes=("", "_ref"))
    merged = merged[merged["video_id"] == merged["video_id_ref"]]
    return {
        "users": len(theirs),
        "identical_lists": int(same),
        "mean_video_overlap": round(float(np.mean(overlap)), 6),
        "rows_reelflow": len(ours),
        "rows_reference": len(reference),
        "max_abs_score_difference": float((merged["score"] - merged["score_ref"]).abs().max()),
    }


# ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--home", type=Path, default=REPO / "var" / "bench" / "export")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "export.json")
    args = parser.parse_args()

    import psutil
    import torch

    from reelflow.config import load_config

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    raw, work = args.home / "raw", args.home / "work"
    work.mkdir(parents=True, exist_ok=True)
    manifest = generated_release(raw, args.seed)
    started = time.perf_counter()
    data = build_inputs(raw, work, args.seed, manifest)
    inputs_seconds = time.perf_counter() - started
    print(f"inputs in {inputs_seconds:.1f} s: {data}", flush=True)

    index = measure_stage("index", work, args.threads)
    lists = measure_stage("lists", work, args.threads)
    users = data["users"]
    total = index["seconds"] + lists["seconds"]
    reelflow = {
        "index": index,
        "lists": lists,
        "total_seconds": round(total, 2),
        "users_per_s_lists": round(users / lists["seconds"], 1),
        "users_per_cpu_s_lists": round(users / lists["cpu_seconds"], 1),
        "users_per_s_total": round(users / total, 1),
    }
    print(
        f"reelflow, {users:,} users: histories + queries + index + search {index['seconds']:.1f} s "
        f"(queries {index['queries_seconds']:.1f} s, search {index['search_seconds']:.1f} s), "
        f"peak RSS {index['peak_rss_gib']:.2f} GiB; lists {lists['seconds']:.1f} s "
        f"({lists['cpu_seconds']:.1f} CPU s) = {reelflow['users_per_s_lists']:,.0f} users/s, "
        f"peak RSS {lists['peak_rss_gib']:.2f} GiB ({lists['rss_at_start_gib']:.2f} GiB at the "
        "start)",
        flush=True,
    )

    config = load_config()
    inputs = load_inputs(work)
    neighbours = np.load(work / "neighbours.npy")
    rows = min(args.sample, users)
    sample = np.sort(np.random.default_rng(args.seed).choice(users, size=rows, replace=False))
    started, cpu = time.perf_counter(), time.process_time()
    reference = reference_lists(
        sample, inputs, neighbours, config.candidates, config.export.candidates_per_user
    )
    ref_seconds, ref_cpu = time.perf_counter() - started, time.process_time() - cpu
    ref = {
        "users": rows,
        "seconds": round(ref_seconds, 2),
        "cpu_seconds": round(ref_cpu, 2),
        "users_per_s": round(rows / ref_seconds, 1),
        "users_per_cpu_s": round(rows / ref_cpu, 1),
    }
    checked = agreement(pd.read_parquet(work / "candidates.parquet"), reference)
    ratio = round(reelflow["users_per_s_lists"] / ref["users_per_s"], 1)
    cpu_ratio = round(reelflow["users_per_cpu_s_lists"] / ref["users_per_cpu_s"], 1)
    print(
        f"reference (one user at a time, {rows:,} users): {ref_seconds:.1f} s "
        f"({ref_cpu:.1f} CPU s) = {ref['users_per_s']:,.1f} users/s; reelflow {ratio}x "
        f"({cpu_ratio}x per CPU second); agreement {checked}",
        flush=True,
    )

    report = {
        "benchmark": "export_candidates",
        "git_commit": git_commit(),
        "seed": args.seed,
        "threads": args.threads,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
            "python": platform.python_version(),
            "torch": torch.__version__,
            # Other engineers' jobs share these 2 cores: the load average says how much.
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "data": {**data, "inputs_seconds": round(inputs_seconds, 1)},
        "random_init": ["ranker (MultiObjectiveRanker)", "GRU4Rec (ANN embeddings)"],
        "config": {
            "candidates": dataclasses.asdict(config.candidates),
            "candidates_per_user": config.export.candidates_per_user,
        },
        "reelflow": reelflow,
        "reference": ref,
        "reelflow_over_reference": ratio,
        "reelflow_over_reference_cpu": cpu_ratio,
        "agreement": checked,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "stage":
        stage_parser = argparse.ArgumentParser()
        stage_parser.add_argument("command")
        stage_parser.add_argument("name", choices=sorted(STAGES))
        stage_parser.add_argument("work", type=Path)
        stage_parser.add_argument("--threads", type=int, default=1)
        stage_args = stage_parser.parse_args()
        run_stage(stage_args.name, stage_args.work, stage_args.threads)
    else:
        main()
