"""Benchmark: one training epoch of GRU4Rec and SASRec as the catalog grows, full against sampled
softmax.

    .venv/bin/python bench/train_seq_scale.py                 # bench/results/train_seq_scale.json
    nice -n 10 .venv/bin/python bench/train_seq_scale.py --smoke   # 300 users, a temp folder

Synthetic catalogs of 10k, 100k and 1M items with the same users and sequence lengths (5,000
users x 50 items; the items each user views drawn from one Zipf-like popularity, p(rank r) ~
r^-0.8, over the catalog). Each model trains one epoch as reelflow trains it (models/trainer.py:
its tuned batch size and learning rate, gradient clipping 5), with the full softmax over the
catalog or the sampled one of models/sampled.py (128 negatives drawn by the pipeline's sampler,
SequenceConfig.negative_sampler, or --sampler, for each sequence or shared by a batch as the
pipeline's SequenceConfig.negative_scope or --scope says; the item table sparse, stepped by
SparseAdam, so a step touches only the rows it read). Nothing is evaluated: the epoch alone is
timed.

Each case runs in a child process of its own, so its peak memory is its own: peak RSS sampled by
psutil every 10 ms during the epoch (and the process's lifetime peak, ru_maxrss), and torch's
peak allocated memory where it runs on CUDA. Where the full softmax cannot fit, it is not run:
a step holds the (batch x length x items) logits three times in float32 (the logits, their
log-softmax, their gradient) beside four copies of the item table (weights, gradient, AdamW's
two moments), and when that exceeds the memory cap (--memory-cap-gib, default 80% of the memory
available at the start) the case says "not run: needs N GiB".

The issue's goal: the 1M-item sampled epoch costs at most 1.5x the 10k one (the ratio of their
epoch seconds, per model). The result records the git commit and whether the tree was dirty
(refused unless --allow-dirty), the machine, threads and load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.train_seq import git_state, machine, refuse_dirty, write_json  # noqa: E402
from models.registry import spec  # noqa: E402
from models.sampled import SAMPLERS, SCOPES  # noqa: E402
from models.sequence_data import SequenceSplit, item_counts  # noqa: E402
from models.trainer import TrainerConfig, device, fit  # noqa: E402
from models.vocab import Vocabulary  # noqa: E402
from reelflow.config import SequenceConfig  # noqa: E402

BENCHMARK = "train_seq_scale"
CATALOGS = (10_000, 100_000, 1_000_000)
MODELS = ("gru", "sasrec")
SOFTMAX = ("full", "sampled")
GIB = 2**30
POPULARITY_EXPONENT = 0.8  # p(rank r) ~ r^-0.8: a long tail, as view logs have


def synthetic_split(users: int, length: int, items: int, seed: int) -> SequenceSplit:
    """`users` sequences of `length` item indices (1..items), drawn from one Zipf-like
    popularity over the whole catalog; the vocabulary holds every item, seen or not, so the
    models' tables have `items` rows."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, items + 1, dtype=np.float64) ** -POPULARITY_EXPONENT
    cdf = np.cumsum(weights / weights.sum())
    drawn = np.searchsorted(cdf, rng.random(users * length), side="right").clip(max=items - 1)
    # Popular ranks scattered over the indices: a catalog's ids are not sorted by popularity.
    permuted = rng.permutation(items)[drawn] + 1
    sequences = list(permuted.reshape(users, length).astype(np.int64))
    return SequenceSplit(Vocabulary(np.arange(1, items + 1)), np.arange(users), sequences, length)


def full_softmax_bytes(model: str, items: int, length: int) -> int:
    """What a full-softmax step holds at its peak, estimated: the logits three times (logits,
    log-softmax, gradient) and the item table four times (weights, gradient, two AdamW moments)."""
    model_class = spec(model).model_class()
    config = model_class.config_class(n_items=items, max_len=length)
    batch = model_class.trainer_defaults["batch_size"]
    logits = batch * length * (items + 1) * 4
    table = (items + 1) * config.embedding_dim * 4
    return 3 * logits + 4 * table


class PeakRSS:
    """The process's resident memory, sampled every `every` seconds on a thread while the block
    runs: its peak (the epoch's own, not the process's lifetime)."""

    def __init__(self, every: float = 0.01):
        self.every, self.peak, self.process = every, 0, psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def run_case(model: str, items: int, softmax: str, args: argparse.Namespace) -> dict[str, Any]:
    """One epoch of `model` on `items` items, in this process (the child's side)."""
    torch.set_num_threads(args.threads)
    prepared = time.perf_counter()
    split = synthetic_split(args.users, args.length, items, args.seed)
    windows = split.training_windows()
    model_class = spec(model).model_class()
    negatives = args.negatives if softmax == "sampled" else 0
    config = model_class.config_class(
        n_items=items,
        max_len=args.length,
        sampled_negatives=negatives,
        negative_sampler=args.sampler,
        negative_scope=args.scope,
    )
    trainer = TrainerConfig(
        **{
            "grad_clip": 5.0,  # as models/sequence_data.py trains every sequence model
            **model_class.trainer_defaults,
            "epochs": args.epochs,
            "monitor": None,
            "progress": False,
            "seed": args.seed,
        }
    )
    torch.manual_seed(args.seed)
    network = model_class(config)
    if network.sampler is not None:  # as SequenceData.wrap: popularity from the training targets
        network.sampler.fit(item_counts(windows[:, 1:], items))
    data_seconds = time.perf_counter() - prepared
    dev = device()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = psutil.Process().memory_info().rss
    with PeakRSS() as rss:
        history = fit(network, {"items": windows[:, :-1]}, {"next": windows[:, 1:]}, trainer)
    seconds = [round(h["epoch_seconds"], 3) for h in history]
    return {
        "model": model,
        "items": items,
        "softmax": softmax,
        "status": "ok",
        "negatives": negatives,
        "negative_sampler": args.sampler if negatives else None,
        "negative_scope": args.scope if negatives else None,
        "epoch_seconds": seconds[-1],  # the last epoch: the first also allocates lazily
        "epochs_seconds": seconds,
        "steps_per_epoch": -(-len(windows) // trainer.batch_size),
        "training_windows": len(windows),
        "batch_size": trainer.batch_size,
        "train_loss": round(history[-1]["train_loss"], 4),
        "parameters": sum(p.numel() for p in network.parameters()),
        "data_and_model_seconds": round(data_seconds, 3),
        "rss_before_epoch_gib": round(rss_before / GIB, 3),
        "peak_rss_epoch_gib": round(rss.peak / GIB, 3),
        "peak_rss_process_gib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3
        ),
        "torch_peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 3)
        if dev.type == "cuda"
        else None,
        "device": dev.type,
    }


def child(model: str, items: int, softmax: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs one case in a fresh interpreter; its last stdout line is the case's JSON."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--case",
        f"{model}:{items}:{softmax}",
        *("--users", str(args.users), "--length", str(args.length)),
        *("--negatives", str(args.negatives), "--sampler", args.sampler, "--scope", args.scope),
        *("--threads", str(args.threads)),
        *("--epochs", str(args.epochs), "--seed", str(args.seed)),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        return {
            "model": model,
            "items": items,
            "softmax": softmax,
            "status": f"failed (exit {done.returncode}): {done.stderr.strip()[-500:]}",
        }
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["child_wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def memory_cap_gib(args: argparse.Namespace) -> float:
    if args.memory_cap_gib:
        return args.memory_cap_gib
    if torch.cuda.is_available():
        return round(0.8 * torch.cuda.mem_get_info()[0] / GIB, 1)
    return round(0.8 * psutil.virtual_memory().available / GIB, 1)


def ratios(cases: list[dict[str, Any]], catalogs: tuple[int, ...]) -> dict[str, Any]:
    """Per model and softmax: each catalog's epoch seconds and peak RSS over the smallest's."""
    out: dict[str, Any] = {}
    smallest, largest = min(catalogs), max(catalogs)
    for model in MODELS:
        for softmax in SOFTMAX:
            ran = {
                c["items"]: c
                for c in cases
                if c["model"] == model and c["softmax"] == softmax and c["status"] == "ok"
            }
            if smallest not in ran:
                continue
            base = ran[smallest]
            out[f"{model}_{softmax}"] = {
                str(items): {
                    "epoch_seconds_ratio": round(c["epoch_seconds"] / base["epoch_seconds"], 3),
                    "peak_rss_ratio": round(
                        c["peak_rss_epoch_gib"] / base["peak_rss_epoch_gib"], 3
                    ),
                }
                for items, c in sorted(ran.items())
            }
    goals = {}
    for model in MODELS:
        sampled = out.get(f"{model}_sampled", {})
        ratio = sampled.get(str(largest), {}).get("epoch_seconds_ratio")
        goals[f"{model}_sampled_{largest}_over_{smallest}_at_most_1.5x"] = (
            {"ratio": ratio, "met": ratio <= 1.5} if ratio is not None else "not run"
        )
    return {"ratios": out, "goals": goals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--length", type=int, default=50, help="items per user (and max_len)")
    parser.add_argument("--catalogs", type=int, nargs="+", default=list(CATALOGS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--negatives", type=int, default=128)
    parser.add_argument("--sampler", choices=SAMPLERS, default=SequenceConfig().negative_sampler)
    parser.add_argument("--scope", choices=SCOPES, default=SequenceConfig().negative_scope)
    parser.add_argument("--epochs", type=int, default=1, help="the last one is reported")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-cap-gib", type=float, default=0.0, help="0: 80%% of available")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "train_seq_scale.json"
    )
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="300 users, into a temp folder")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # MODEL:ITEMS:SOFTMAX, the child's side
    args = parser.parse_args()
    if args.case:
        model, items, softmax = args.case.split(":")
        print(json.dumps(run_case(model, int(items), softmax, args)))
        return
    if args.smoke:
        # The code path, not a measurement: fewer users, nothing under bench/results.
        args.users = 300
        args.out = Path(tempfile.mkdtemp(prefix="train_seq_scale_smoke_")) / "train_seq_scale.json"
        args.allow_dirty = True
    state = git_state()
    refuse_dirty(state, args.allow_dirty, "the result")
    cap = memory_cap_gib(args)
    load_before = os.getloadavg()
    cases = []
    for model in args.models:
        for items in sorted(args.catalogs):
            for softmax in SOFTMAX:
                needs = full_softmax_bytes(model, items, args.length) / GIB
                if softmax == "full" and needs > cap:
                    case = {
                        "model": model,
                        "items": items,
                        "softmax": softmax,
                        "status": f"not run: needs {needs:.1f} GiB",
                        "needs_gib": round(needs, 1),
                    }
                else:
                    case = child(model, items, softmax, args)
                    if softmax == "full":
                        case["needs_gib_estimated"] = round(needs, 2)
                cases.append(case)
                print(json.dumps(case), flush=True)
    report = {
        "benchmark": BENCHMARK,
        "schema": 1,
        **state,
        "allow_dirty": args.allow_dirty,
        "smoke": args.smoke,
        "threads": args.threads,
        "machine": {
            **machine(args.threads),
            "memory_total_gib": round(psutil.virtual_memory().total / GIB, 1),
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        },
        "settings": {
            "users": args.users,
            "length": args.length,
            "catalogs": sorted(args.catalogs),
            "negatives": args.negatives,
            "negative_sampler": args.sampler,
            "negative_scope": args.scope,
            "popularity": f"Zipf-like, p(rank r) ~ r^-{POPULARITY_EXPONENT}",
            "epochs": args.epochs,
            "seed": args.seed,
            "memory_cap_gib": cap,
            "full_softmax_estimate": "3 x batch x length x (items + 1) x 4 bytes (logits, "
            "log-softmax, gradient) + 4 x item table (weights, gradient, AdamW moments)",
        },
        "cases": cases,
        **ratios(cases, tuple(args.catalogs)),
    }
    write_json(args.out, report)
    print(json.dumps({"ratios": report["ratios"], "goals": report["goals"]}, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
