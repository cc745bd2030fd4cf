"""Benchmark: the sequence models on the demo's data, over seeds, against popularity and the
item-to-item transition baseline.

    make demo                                   # the demo's home, ./var (generated KuaiRec)
    .venv/bin/python bench/demo_seq.py          # bench/results/demo_seq.json
    .venv/bin/python bench/demo_seq.py --home /path/to/home --seeds 0 1 2 --models sasrec gru

What `make demo` trains, done again per seed, without MLflow: the normalized interactions of
the home (every day the demo landed), the pipeline's leave-one-out split (last view the test
target, the one before it validation, stable by time then file order), each model with its
tuned defaults (models/<model>.py `trainer_defaults`, early stopping on validation NDCG@10, the
best epoch's weights), the student distilling the seed's own teacher (`sequence.teacher`).
Test NDCG@10 by full ranking of the whole catalog under both protocols: history masked (the
product's) and unmasked (RecBole's). The baselines score the same users: popularity (training
counts) and transitions (what followed the user's last video in the training sequences,
popularity breaking ties). Per model: each seed's margin over both baselines, the mean and
standard deviation, whether it is above both in every seed, and the margin over transitions
with its paired bootstrap 95% interval over users (each user's NDCG@10 averaged over the
seeds, minus transitions'; 10,000 resamples): on 800 test users such an interval spans about
+-0.017 (demo_seq.json at e3478f2), wider than most margins.

The record holds the git commit, whether the tree was dirty (refused unless --allow-dirty), the
seeds, the data (users, videos, views, the home's dataset) and the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train_seq import (  # noqa: E402
    baselines as baseline_scores,  # the baselines' per-user scores
)
from bench.train_seq import (  # noqa: E402
    checked_per_user,
    git_state,
    machine,
    paired_bootstrap,
    refuse_dirty,
    spread,
    write_json,
)
from models.sequence_data import (  # noqa: E402
    SequenceSplit,
    build_split,
    score_items,
    train_sequence_model,
)
from reelflow.config import SequenceConfig, load_config  # noqa: E402
from reelflow.paths import Paths  # noqa: E402
from reelflow.state import read_state  # noqa: E402

BENCHMARK = "demo_seq"
MODELS = ("sasrec", "gru", "bert4rec", "student")
PROTOCOLS = {"masked": "", "unmasked": "unmasked_"}
METRIC = "test_ndcg_at_10"


def scores(metrics: dict[str, float], who: str = "") -> dict[str, float]:
    """`who`'s (the model's: "", or "popularity_", "transition_") test NDCG@10, both protocols."""
    return {p: float(metrics[f"{prefix}{who}{METRIC}"]) for p, prefix in PROTOCOLS.items()}


PerUser = dict[str, list[dict[str, np.ndarray]]]  # model -> per seed -> protocol -> NDCG@10


def train_seeds(
    split: SequenceSplit,
    sequence: SequenceConfig,
    models: list[str],
    seeds: list[int],
    label: str = "",
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, float]], PerUser]:
    """Each model of `models` trained on `split` with its defaults, once per seed (the teacher
    first: the student distills the seed's own), its test NDCG@10 under both protocols and its
    margins over popularity and transitions. -> (runs per model, the baselines' scores, each
    run's per-user test NDCG@10 for the paired bootstrap: the baselines' under "popularity"
    and "transition", one entry each)."""
    teacher_name = sequence.teacher
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    test = split.stage("test")
    per_user: PerUser = {m: [] for m in models}
    # Popularity's and transitions' scores: the same split whatever the seed, kept from the first
    # model trained.
    baselines: dict[str, dict[str, float]] = {}
    for seed in seeds:
        trainer = {"seed": seed, "progress": False}
        trained: dict[str, Any] = {}
        order = sorted(models, key=lambda m: (m != teacher_name, m == "student"))
        for name in order:
            started = time.perf_counter()
            teacher = None
            if name == "student":
                teacher = trained.get(teacher_name)
                if teacher is None:
                    raise SystemExit(f"the student needs its teacher {teacher_name!r} in --models")
            result = train_sequence_model(
                name, split, trainer_overrides=trainer, teacher=teacher, sequence=sequence
            )
            trained[name] = result
            m = result.metrics
            popularity, transition = scores(m, "popularity_"), scores(m, "transition_")
            baselines = baselines or {"popularity": popularity, "transition": transition}
            own = scores(m)
            # The test ranking again, per user, checked against the scores the run reported.
            reported = {"ndcg@10": own["masked"], "unmasked_ndcg@10": own["unmasked"]}
            per_user[name].append(
                checked_per_user(score_items(result.model, test.inputs), test, reported)
            )
            runs[name].append(
                {
                    "seed": seed,
                    "ndcg_at_10": own,
                    "over_popularity": {p: own[p] - popularity[p] for p in own},
                    "over_transition": {p: own[p] - transition[p] for p in own},
                    "best_epoch": int(m["best_epoch"]),
                    "epochs_run": int(m["epochs_run"]),
                    "parameters": int(m["parameters"]),
                    "softmax": result.model_config.get("sampled_negatives") or "full",
                    "wall_seconds": round(time.perf_counter() - started, 1),
                }
            )
            r = runs[name][-1]
            print(
                f"{label}seed {seed} {name:9s} masked {own['masked']:.4f} "
                f"(popularity {r['over_popularity']['masked']:+.4f}, "
                f"transition {r['over_transition']['masked']:+.4f}); unmasked "
                f"{own['unmasked']:.4f} (popularity {r['over_popularity']['unmasked']:+.4f}, "
                f"transition {r['over_transition']['unmasked']:+.4f}); best epoch "
                f"{r['best_epoch']}/{r['epochs_run']}, {r['wall_seconds']} s",
                flush=True,
            )
    # The baselines' per-user scores (the same counts and ranking as the evaluator's: checked
    # against the scores the pipeline reported).
    counted = baseline_scores(split)
    for who in ("popularity", "transition"):
        for p, key in (("masked", "ndcg@10"), ("unmasked", "unmasked_ndcg@10")):
            if abs(counted[who]["test"][key] - baselines[who][p]) > 1e-6:
                raise RuntimeError(f"{who} {p}: {counted[who]['test'][key]} != {baselines[who][p]}")
        per_user[who] = [counted[who]["per_user"]]
    return runs, baselines, per_user


def summarize(
    runs: dict[str, list[dict[str, Any]]],
    per_user: PerUser,
    label: str = "",
    resamples: int = 10_000,
) -> dict[str, Any]:
    """Per model and protocol: the mean and spread of its score and margins, whether it is
    above both baselines in every seed, and the paired bootstrap over users of its margin over
    transitions (each user's NDCG@10 averaged over the seeds, minus the baseline's; 95%
    interval), printed as well."""
    summary: dict[str, Any] = {}
    for name, seeds in runs.items():
        summary[name] = {
            p: {
                "ndcg_at_10": spread([r["ndcg_at_10"][p] for r in seeds]),
                "over_popularity": spread([r["over_popularity"][p] for r in seeds]),
                "over_transition": spread([r["over_transition"][p] for r in seeds]),
                "above_both_every_seed": all(
                    r["over_popularity"][p] > 0 and r["over_transition"][p] > 0 for r in seeds
                ),
                "bootstrap_over_transition": paired_bootstrap(
                    np.mean([u[p] for u in per_user[name]], axis=0) - per_user["transition"][0][p],
                    resamples,
                ),
            }
            for p in PROTOCOLS
        }
    for name, s in summary.items():
        print(
            f"{label}{name:9s} "
            + "; ".join(
                f"{p} {s[p]['ndcg_at_10']['mean']:.4f} ± {s[p]['ndcg_at_10']['std']:.4f}, over "
                f"transition {s[p]['over_transition']['mean']:+.4f} (min "
                f"{s[p]['over_transition']['min']:+.4f}; 95% "
                f"{s[p]['bootstrap_over_transition']['ci95']}), above both every seed: "
                f"{'yes' if s[p]['above_both_every_seed'] else 'NO'}"
                for p in PROTOCOLS
            ),
            flush=True,
        )
    return summary


PROTOCOL = (
    "leave-one-out per user (stable by time, then file order); full ranking of every {item}; "
    "test NDCG@10 of the best-validation epoch; masked = every {item} the user saw before the "
    "target excluded, unmasked = nothing excluded; the student distills the same seed's {teacher}"
)


def bench_arguments(
    parser: argparse.ArgumentParser, out: str, seeds: bool = True
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The options this bench, bench/real_seq.py and bench/unmasked_gap.py share (`seeds`:
    --seeds and --models too), parsed; the tree's git state, refused when dirty (unless
    --allow-dirty); torch's threads set."""
    if seeds:
        parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / out)
    args = parser.parse_args()
    state = git_state()
    refuse_dirty(state, args.allow_dirty, "the result")
    torch.set_num_threads(args.threads)
    return args, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=REPO / "var", help="a home `make demo` ran in")
    args, state = bench_arguments(parser, "demo_seq.json")

    paths, config = Paths(args.home.resolve()), load_config()
    split = build_split(paths, config, None)
    views = sum(len(s) for s in split.sequences)
    print(
        f"{paths.home}: {len(split.sequences)} users, {split.n_items} videos, {views} views",
        flush=True,
    )
    runs, baselines, per_user = train_seeds(split, config.sequence, args.models, args.seeds)
    summary = summarize(runs, per_user)
    record = {
        "benchmark": BENCHMARK,
        **state,
        "seeds": args.seeds,
        "machine": machine(args.threads),
        "data": {
            "home_dataset": read_state(paths).get("dataset"),
            "users": len(split.sequences),
            "videos": split.n_items,
            "views": views,
        },
        "protocol": PROTOCOL.format(item="video", teacher=config.sequence.teacher),
        "baselines": baselines,
        "runs": runs,
        "summary": summary,
    }
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
