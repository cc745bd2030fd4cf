"""Benchmark: training the sequence models on MovieLens-100K against RecBole's SASRec.

Protocol (the same as the reference run): per user, interactions ordered by time, the last one
is the test target, the one before the validation target; full ranking over all 1,682 items
with the user's history masked; max length 50; full softmax cross-entropy. Model selection
(early stopping, best epoch) reads validation NDCG@10 only. Test NDCG@10 is also computed after
every epoch, for the "time to reach the reference" column only.

The split is written to bench/results/train_seq_split.tsv.gz (user, item, position, split) so
the reference can be re-run on exactly the same data. Results, three seeds with mean and
spread, go to bench/results/train_seq.json.

Reference: RecBole 1.2.1 SASRec on this machine (CPU, same protocol, CE loss, max length 50,
batch 2048): test NDCG@10 0.0581, HR@10 0.1188, best validation at epoch 7, 140-300 s per
epoch, about 1500 s to its best.

One torch thread by default: this 2-core machine is shared with Spark jobs, and two intra-op
threads competing with them ran an epoch 3-4x slower than one (26 s against 7 s, measured).

    .venv/bin/python bench/train_seq.py [--seeds 0 1 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.sequence_data import (  # noqa: E402
    MONITOR,
    SequenceTrainingResult,
    from_frame,
    read_movielens,
    score_items,
    train_sequence_model,
)

# The shared data folder beside the checkout (../shared/data), never a machine's absolute path.
DATA = REPO.parent / "shared" / "data" / "movielens" / "ml-100k" / "u.data"
REFERENCE = {
    "name": "RecBole 1.2.1 SASRec (CPU, CE loss, max length 50, batch 2048)",
    "test_ndcg_at_10": 0.0581,
    "test_hr_at_10": 0.1188,
    "best_epoch": 7,
    "seconds_per_epoch": [140, 300],
    "seconds_to_best": 1500,
    "popularity_test_ndcg_at_10": 0.0439,
    "popularity_test_hr_at_10": 0.0859,
}


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def latency_per_1000_users(model, inputs: torch.Tensor, repeats: int = 5) -> float:
    """Median seconds to score the whole catalog for 1,000 users (batches of 1,000)."""
    users = inputs[torch.arange(1000) % len(inputs)]
    score_items(model, users)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        score_items(model, users, batch_size=1000)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_one(name: str, split, seed: int, teacher=None) -> tuple[dict, SequenceTrainingResult]:
    reached = {}
    started = time.perf_counter()

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        # Wall time includes the per-epoch evaluations, as a user would wait for them.
        if "wall" not in reached and metrics["test_ndcg_at_10"] >= REFERENCE["test_ndcg_at_10"]:
            reached.update(wall=time.perf_counter() - started, epoch=epoch)

    result = train_sequence_model(
        name,
        split,
        trainer_overrides={"seed": seed, "progress": False},
        teacher=teacher,
        track_test=True,
        on_epoch=on_epoch,
    )
    m, h = result.metrics, result.history
    train_seconds = sum(e["epoch_seconds"] for e in h)
    row = {
        "seed": seed,
        "test_ndcg_at_10": m["test_ndcg_at_10"],
        "test_recall_at_10": m["test_recall_at_10"],
        "test_hr_at_10": m["test_hr_at_10"],
        "test_mrr_at_10": m["test_mrr_at_10"],
        "test_ndcg_at_20": m["test_ndcg_at_20"],
        "val_ndcg_at_10": m["val_ndcg_at_10"],
        "popularity_test_ndcg_at_10": m["popularity_test_ndcg_at_10"],
        "popularity_test_hr_at_10": m["popularity_test_hr_at_10"],
        "best_epoch": int(m["best_epoch"]),
        "epochs_run": int(m["epochs_run"]),
        "seconds_per_epoch": train_seconds / len(h),
        "train_sequences_per_s": m["training_sequences"] * len(h) / train_seconds,
        "train_positions_per_s": m["training_transitions"] * len(h) / train_seconds,
        "train_seconds": train_seconds,
        "wall_seconds": m["train_seconds"],
        "train_seconds_to_best": sum(e["epoch_seconds"] for e in h[: int(m["best_epoch"])]),
        "wall_seconds_to_reference": reached.get("wall"),
        "epoch_reaching_reference": reached.get("epoch"),
        "parameters": int(m["parameters"]),
        "val_curve": [round(e[MONITOR], 5) for e in h],
        "test_curve": [round(e["test_ndcg_at_10"], 5) for e in h],
    }
    print(
        f"{name} seed {seed}: test NDCG@10 {row['test_ndcg_at_10']:.4f} "
        f"(popularity {row['popularity_test_ndcg_at_10']:.4f}), best epoch {row['best_epoch']}"
        f"/{row['epochs_run']}, {row['seconds_per_epoch']:.1f} s/epoch, reference reached after "
        f"{row['wall_seconds_to_reference']} s",
        flush=True,
    )
    return row, result


def summary(rows: list[dict]) -> dict:
    out = {}
    for key in (
        "test_ndcg_at_10",
        "test_recall_at_10",
        "test_mrr_at_10",
        "test_ndcg_at_20",
        "val_ndcg_at_10",
        "best_epoch",
        "epochs_run",
        "seconds_per_epoch",
        "train_sequences_per_s",
        "train_positions_per_s",
        "wall_seconds",
        "wall_seconds_to_reference",
        "latency_s_per_1000_users",
    ):
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            out[key] = {
                "mean": round(statistics.fmean(values), 5),
                "std": round(statistics.stdev(values), 5) if len(values) > 1 else 0.0,
                "min": round(min(values), 5),
                "max": round(max(values), 5),
                "n": len(values),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["gru", "bert4rec", "student"])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train_seq.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    split = from_frame(read_movielens(args.data))
    split_file = REPO / "bench" / "results" / "train_seq_split.tsv.gz"
    split.split_frame().to_csv(split_file, sep="\t", index=False)
    test = split.stage("test")

    rows: dict[str, list[dict]] = {name: [] for name in args.models}
    load_before = os.getloadavg()
    for seed in args.seeds:
        teacher = None
        for name in args.models:
            row, result = run_one(name, split, seed, teacher if name == "student" else None)
            row["latency_s_per_1000_users"] = latency_per_1000_users(result.model, test.inputs)
            rows[name].append(row)
            if name == "bert4rec":
                teacher = result

    report = {
        "benchmark": "train_seq_movielens_100k",
        "git_commit": git_commit(),
        "seeds": args.seeds,
        "threads": args.threads,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "device": "cpu",
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        },
        "data": {
            "file": str(args.data),
            "users": int(len(split.sequences)),
            "items": split.n_items,
            "interactions": int(sum(len(s) for s in split.sequences)),
            "evaluated_users": int(len(test.targets)),
            "training_sequences": int(len(split.training_windows())),
            "training_transitions": split.training_transitions(),
            "max_len": split.max_len,
            "split_file": str(split_file.relative_to(REPO)),
        },
        "reference": REFERENCE,
        "models": {name: {"summary": summary(r), "runs": r} for name, r in rows.items()},
    }
    if "bert4rec" in rows and "student" in rows:
        teacher_s, student_s = report["models"]["bert4rec"], report["models"]["student"]
        report["distillation"] = {
            "ndcg_kept": round(
                student_s["summary"]["test_ndcg_at_10"]["mean"]
                / teacher_s["summary"]["test_ndcg_at_10"]["mean"],
                4,
            ),
            "parameter_ratio": round(
                teacher_s["runs"][0]["parameters"] / student_s["runs"][0]["parameters"], 2
            ),
            "latency_ratio": round(
                teacher_s["summary"]["latency_s_per_1000_users"]["mean"]
                / student_s["summary"]["latency_s_per_1000_users"]["mean"],
                2,
            ),
        }
    for entry in report["models"].values():
        s = entry["summary"]
        entry["vs_reference"] = {
            "ndcg_ratio": round(s["test_ndcg_at_10"]["mean"] / REFERENCE["test_ndcg_at_10"], 3),
            "reached_reference_in_all_seeds": all(
                r["wall_seconds_to_reference"] is not None for r in entry["runs"]
            ),
            "speedup_to_reference": round(
                REFERENCE["seconds_to_best"] / s["wall_seconds_to_reference"]["mean"], 1
            )
            if "wall_seconds_to_reference" in s
            else None,
        }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v["summary"] for k, v in report["models"].items()}, indent=1))
    print(json.dumps(report.get("distillation"), indent=1))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
