"""Benchmark: one training pass of each sequence model on generated MicroLens-100k, validation
timed apart, with the pipeline's softmax choice beside the other one.

    .venv/bin/python bench/microlens_pass.py     # bench/results/microlens_pass.json
    .venv/bin/python bench/microlens_pass.py --models gru --threads 1

Data: generated MicroLens-100k at full scale (`reelflow generate --dataset microlens --scale
full`, made once under --home, the same release bench/export.py reads): pairs.csv, unparsable
rows and exact duplicates left out, every user's views ordered by time (ties in file order),
the pipeline's leave-one-out split (models/sequence_data.py) and training windows.

Each model trains one epoch as the pipeline trains it (its `trainer_defaults`, gradient clipping
5, one seed), through the same `fit_model` the DAG's task calls, on `--threads` torch threads:
- `pass_seconds`: the epoch's training steps alone (the trainer's `epoch_seconds`);
- `validation_seconds`: the rest of `fit_model`'s wall time, almost all of it the one full
  ranking of every validation user that early stopping reads after each epoch.
Two losses per model: the pipeline's choice at this catalog size (SequenceConfig: a full softmax
up to `full_softmax_max_items` videos, sampled above) and the other one (512 popularity
negatives, or the full softmax), side by side in this one run. The student distills the SASRec
trained just before it with the same loss (a one-epoch teacher: this times the pass, not the
accuracy). Validation NDCG@10 after the one epoch is recorded, not compared.

The issue's goal: one training pass in at most 2 minutes on the 2-core development machine. The
result records the git commit and whether the tree was dirty (refused unless --allow-dirty), the
machine, threads and load averages.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.export import generated_release, read_log  # noqa: E402
from bench.train_seq import git_state, machine, refuse_dirty, write_json  # noqa: E402
from models.sasrec import SASRecConfig  # noqa: E402
from models.sequence_data import (  # noqa: E402
    SequenceData,
    from_frame,
    softmax_choice,
    softmax_name,
)
from models.training import fit_model  # noqa: E402
from reelflow.config import SequenceConfig  # noqa: E402

BENCHMARK = "microlens_pass"
MODELS = ("gru", "sasrec", "bert4rec", "student")
GOAL_SECONDS = 120.0


def losses(sequence: SequenceConfig, n_items: int) -> dict[str, dict[str, Any]]:
    """The pipeline's choice at `n_items` videos (`softmax_choice`, what every sequence model's
    run uses) first, then the other loss."""
    pipeline = softmax_choice(SASRecConfig, n_items, sequence)
    other = {
        **pipeline,
        "sampled_negatives": 0 if pipeline["sampled_negatives"] else sequence.sampled_negatives,
    }
    return {"pipeline": pipeline, "other": other}


def one_pass(
    name: str, split, overrides: dict[str, Any], seed: int, teacher=None
) -> tuple[dict[str, Any], Any]:
    run = SequenceData(
        name,
        split,
        model_overrides=overrides,
        trainer_overrides={"epochs": 1, "seed": seed, "progress": False},
        teacher=teacher,
    )
    started = time.perf_counter()
    bundle, history, _ = fit_model(run, lambda epoch, metrics: None)
    wall = time.perf_counter() - started
    epoch = history[0]
    return {
        "loss": softmax_name(run.model_config),
        "training_windows": int(len(run.targets["next"])),
        "batch_size": run.trainer.batch_size,
        "pass_seconds": round(epoch["epoch_seconds"], 2),
        "validation_seconds": round(wall - epoch["epoch_seconds"], 2),
        "val_ndcg_at_10_after_one_epoch": round(float(epoch["val_ndcg_at_10"]), 4),
        "within_goal": epoch["epoch_seconds"] <= GOAL_SECONDS,
    }, bundle.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--home", type=Path, default=REPO / "var" / "bench" / "export")
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "microlens_pass.json"
    )
    args = parser.parse_args()
    state = git_state()
    refuse_dirty(state, args.allow_dirty, "the result")
    if "student" in args.models and "sasrec" not in args.models:
        raise SystemExit("the student distills the SASRec of this run: keep sasrec in --models")
    torch.set_num_threads(args.threads)

    raw = args.home / "raw"
    generated_release(raw, args.seed)
    log = read_log(raw)
    split = from_frame(log)
    views = sum(len(s) for s in split.sequences)
    print(f"{raw}: {len(split.sequences)} users, {split.n_items} videos, {views} views", flush=True)
    sequence = SequenceConfig()
    cases: dict[str, dict[str, Any]] = {}
    teachers: dict[str, Any] = {}  # per loss: the SASRec the student distills
    for name in args.models:
        cases[name] = {}
        for which, overrides in losses(sequence, split.n_items).items():
            teacher = teachers.get(which) if name == "student" else None
            result, model = one_pass(name, split, overrides, args.seed, teacher)
            if name == "sasrec":
                teachers[which] = model
            cases[name][which] = result
            print(
                f"{name:9s} {which:8s} ({result['loss']}): pass {result['pass_seconds']} s, "
                f"validation {result['validation_seconds']} s, val NDCG@10 after one epoch "
                f"{result['val_ndcg_at_10_after_one_epoch']}",
                flush=True,
            )
    record = {
        "benchmark": BENCHMARK,
        **state,
        "seed": args.seed,
        "machine": machine(args.threads),
        "data": {
            "release": "generated MicroLens-100k, full scale",
            "users": len(split.sequences),
            "videos": split.n_items,
            "views": views,
            "training_transitions": split.training_transitions(),
        },
        "full_softmax_max_items": sequence.full_softmax_max_items,
        "goal_seconds": GOAL_SECONDS,
        "protocol": (
            "one epoch per model through fit_model with its trainer_defaults; pass_seconds = "
            "the trainer's epoch_seconds (training steps only), validation_seconds = the rest "
            "of fit_model's wall time (one masked full ranking of the validation users); the "
            "pipeline's loss choice and the other one side by side"
        ),
        "cases": cases,
    }
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
