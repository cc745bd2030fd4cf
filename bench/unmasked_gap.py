"""Diagnosis: why a sequence model loses to the transition baseline unmasked but not masked.

    .venv/bin/python bench/unmasked_gap.py --home var            # bench/results/unmasked_gap.json
    .venv/bin/python bench/unmasked_gap.py --home var --model gru --seed 1

On the demo's data the models beat transitions with the history masked and lose to them with
nothing masked (bench/demo_seq.py). This trains one model (its defaults, one seed) on the home's
split and reads its unmasked test ranking: how often the test target is a video the user saw
before (in the whole history, and in the model's window), how many of the top 10 are such
videos, and the unmasked NDCG@10 when the last k videos of the history are left out of the
ranking (k = the window's length leaves out everything the model reads; the whole history is
the masked protocol). Same split and evaluator as the pipeline's (models/sequence_data.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.demo_seq import bench_arguments, scores  # noqa: E402
from bench.train_seq import machine, write_json  # noqa: E402
from models.evaluate import next_item_metrics  # noqa: E402
from models.sequence_data import build_split, score_items, train_sequence_model  # noqa: E402
from reelflow.config import load_config  # noqa: E402
from reelflow.paths import Paths  # noqa: E402

LAST_K = (1, 5, 10, 20, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=REPO / "var", help="a home `make demo` ran in")
    parser.add_argument("--model", default="sasrec", choices=["sasrec", "gru", "bert4rec"])
    parser.add_argument("--seed", type=int, default=0)
    args, state = bench_arguments(parser, "unmasked_gap.json", seeds=False)

    config = load_config()
    split = build_split(Paths(args.home.resolve()), config, None)
    test = split.stage("test")
    history, targets = test.seen(), test.targets - 1  # score columns
    window = split.max_len
    result = train_sequence_model(
        args.model,
        split,
        trainer_overrides={"seed": args.seed, "progress": False},
        sequence=config.sequence,
    )
    ranked = score_items(result.model, test.inputs)  # (users, n_items), unmasked
    top = np.argsort(-ranked, axis=1, kind="stable")[:, :10]
    seen_in_top = [np.isin(top[u], history[u]).sum() for u in range(len(targets))]

    def unmasked_ndcg(left_out: int) -> float:
        demoted = ranked.copy()
        for u, seen in enumerate(history):
            demoted[u, seen[-left_out:]] = -np.inf
        return float(
            next_item_metrics(demoted, targets, history, (10,), mask_history=False)["ndcg@10"]
        )

    record = {
        "benchmark": "unmasked_gap",
        **state,
        "model": args.model,
        "seed": args.seed,
        "machine": machine(args.threads),
        "home_users": len(split.sequences),
        "videos": split.n_items,
        "window": window,
        "test_ndcg_at_10": scores(result.metrics),
        "transition_test_ndcg_at_10": scores(result.metrics, "transition_"),
        "targets_seen_before": float(
            np.mean([t in set(h) for t, h in zip(targets, history, strict=True)])
        ),
        "targets_seen_in_window": float(
            np.mean([t in set(h[-window:]) for t, h in zip(targets, history, strict=True)])
        ),
        "users_with_more_than_window": float(np.mean([len(h) > window for h in history])),
        "seen_in_unmasked_top10": float(np.mean(seen_in_top)),
        "unmasked_ndcg_at_10_last_k_left_out": {k: unmasked_ndcg(k) for k in LAST_K},
    }
    for key, value in record.items():
        if key not in ("machine", "dirty_paths"):
            print(f"{key}: {value}")
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
