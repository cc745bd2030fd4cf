"""Benchmark: reelflow's sequence models on MovieLens-100K, like for like with RecBole 1.2.1 SASRec.

    .venv/bin/python bench/train_seq.py            # trains every unit not cached yet (resumable)
    .venv/bin/python bench/train_seq.py --report   # assembles bench/results/train_seq.json
    nice -n 10 .venv/bin/python bench/train_seq.py --smoke   # the whole code path, in minutes
    # two cores, two processes of one torch thread each; a part trains what it needs that is
    # not cached, so start `sampled` once sasrec's units are written (else both train them):
    (.venv/bin/python bench/train_seq.py --only gru sasrec && touch /tmp/sasrec_done &&
     .venv/bin/python bench/train_seq.py --only student undistilled) &
    (.venv/bin/python bench/train_seq.py --only bert4rec && until [ -e /tmp/sasrec_done ];
     do sleep 30; done && .venv/bin/python bench/train_seq.py --only sampled); wait
    .venv/bin/python bench/train_seq.py && .venv/bin/python bench/train_seq.py --report

Run it on a quiet machine from a clean tree (it refuses a dirty one unless --allow-dirty, which
marks every record), never alongside RecBole's reference run (bench/recbole/run_sasrec.py), whose
times it is compared with. bench/README.md has the protocol at length; in short:

- Split: ../shared/data/movielens/ml-100k/u.data, per user by timestamp, ties in file order (a
  stable sort); the last interaction is the test target, the one before the validation target.
  All 943 users, the full catalog of 1,682 items. The split is written to
  bench/results/train_seq_split.tsv.gz (RecBole's runner reads it), left untouched when its
  content is unchanged (byte-identical), and refused when it would change.
- Two protocols on every split, every model and both baselines (popularity, item-to-item
  transitions): masked (the user's history left out of the ranking, the product's) and
  `unmasked_` (nothing left out: RecBole's protocol for sequential models). Full ranking.
- Models: GRU4Rec, BERT4Rec, SASRec; the student (a small SASRec) distilled from the teacher
  (the better of GRU4Rec and SASRec on validation, or --teacher; BERT4Rec reads both sides and
  cannot teach a left-to-right student); "undistilled", the student's architecture trained
  on hard labels only; SASRec with a sampled softmax (128 negatives) beside its full one.
- Selection on validation only: each model's early stopping (best epoch) follows its masked
  validation NDCG@10, as reelflow's trainer does; a short search of 2-3 configs per model on the
  search seeds, chosen by mean masked validation NDCG@10 and logged; the chosen config trained
  on every seed; then the test set scored once per chosen unit. A config never chosen is never
  scored on test.
- Time to reference: wall time from the start of training to the end of the best-validation
  epoch (each epoch's validation included, data preparation not), the teacher's whole training
  added for the student, against RecBole's seconds to its best epoch (its cached JSON).
- Units: each (model, config, seed) is one JSON under bench/results/train_seq/ (its weights
  under var/bench/train_seq/, git-ignored), skipped on a re-run; a unit made with other
  settings stops the run instead of being reused. On a checkout without the weights, a unit
  whose weights a later step needs (a teacher, the latency loop) is trained again and must
  hash to its recorded weights (CPU training is deterministic), so a bench of hours resumes
  across machines of the same kind.

One torch thread by default: the development machine has 2 shared cores, and two intra-op
threads competing with other jobs ran an epoch 3-4x slower than one. RecBole's runner uses one
too.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.host import cpu  # noqa: E402
from models.baselines import Transitions, popularity_scores  # noqa: E402
from models.evaluate import UNMASKED, RowBlocks  # noqa: E402
from models.registry import TEACHERS, spec  # noqa: E402
from models.sampled import SAMPLERS, SCOPES  # noqa: E402
from models.sasrec import SASRecConfig  # noqa: E402
from models.sequence_data import (  # noqa: E402
    MONITOR,
    EvalSet,
    SequenceData,
    SequenceSplit,
    config_dicts,
    count_parameters,
    evaluate_model,
    from_frame,
    read_movielens,
    resolved_configs,
    score_items,
)
from models.student import Student, StudentConfig  # noqa: E402
from models.training import fit_model  # noqa: E402
from reelflow.config import SequenceConfig  # noqa: E402

# The shared data folder beside the checkout (../shared/data), never a machine's absolute path.
DATA = REPO.parent / "shared" / "data" / "movielens" / "ml-100k" / "u.data"
RESULTS = REPO / "bench" / "results"
WEIGHTS = REPO / "var" / "bench" / "train_seq"  # var/ is git-ignored: weights stay local
BENCHMARK = "train_seq_movielens_100k"
SCHEMA = 2  # 1: the old record (masked against RecBole's unmasked number, not like for like)
BASE_MODELS = ("gru", "bert4rec", "sasrec")  # trained on their own
PROTOCOLS = ("masked", "unmasked")
PARTS = (*BASE_MODELS, "student", "undistilled", "sampled")  # what --only can name
SUMMARY = ("ndcg@10", "hr@10", "mrr@10", "ndcg@20", "hr@20", "coverage@10")


@dataclass(frozen=True)
class Candidate:
    """One configuration of a model's search: overrides of its model config and its trainer."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)


# The searches, chosen on validation. Few and cheap on purpose (the bench runs on 2 CPU cores):
# each model's tuned default, one regularization step and one slower schedule or loss knob.
SEARCH: dict[str, tuple[Candidate, ...]] = {
    "gru": (
        Candidate("default"),
        Candidate("dropout-0.4", model={"dropout": 0.4}),
        Candidate("lr-1e-3", trainer={"lr": 1e-3, "epochs": 30}),
    ),
    "bert4rec": (
        Candidate("default"),
        Candidate("dropout-0.4", model={"dropout": 0.4}),
        Candidate("mask-0.3", model={"mask_prob": 0.3}),
    ),
    "sasrec": (
        Candidate("default"),
        Candidate("dropout-0.5", model={"dropout": 0.5}),  # RecBole's SASRec default
        Candidate("lr-1e-3", trainer={"lr": 1e-3, "epochs": 100}),
    ),
    # The student's search: how much it leans on the teacher, and one step wider. Candidates
    # above the size limit (--student-size-ratio) are not trained.
    "student": (
        Candidate("default"),  # a SASRec 16 wide, 1 block, alpha 0.5, temperature 2
        Candidate("alpha-0.9", model={"alpha": 0.9}),
        Candidate("width-24", model={"embedding_dim": 24}),
    ),
    "undistilled": (
        Candidate("default"),  # the student's trainer settings
        Candidate("dropout-0.1", model={"dropout": 0.1}),
        Candidate("lr-2e-3", trainer={"lr": 2e-3}),
    ),
}


def student_shape(overrides: dict[str, Any]) -> dict[str, Any]:
    """The student's architecture as SASRec fields (models/student.py's defaults with the
    chosen config's `overrides`): the undistilled model is exactly this, trained on hard labels
    only (the distillation fields, alpha and temperature, are not SASRec's)."""
    student = StudentConfig(n_items=1, **overrides)
    skip = {"n_items", "max_len", "sampled_negatives", "negative_sampler", "negative_scope"}
    return {f.name: getattr(student, f.name) for f in fields(SASRecConfig) if f.name not in skip}


@dataclass(frozen=True)
class Entry:
    """A row of the table: which registered model it trains, with what fixed overrides."""

    key: str  # its name in the results
    trains: str  # the models/registry.py model trained
    folder: str  # where its units are cached
    about: str
    model: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    search: tuple[Candidate, ...] = ()
    distilled: bool = False


def base_entry(name: str) -> Entry:
    return Entry(name, name, name, f"{name}, its tuned defaults and search", search=SEARCH[name])


def student_entry(teacher: str) -> Entry:
    return Entry(
        "student",
        "student",
        f"student_from_{teacher}",
        f"SASRec-shaped student distilled from {teacher} (same seed's teacher)",
        search=SEARCH["student"],
        distilled=True,
    )


def undistilled_entry(student: Candidate) -> Entry:
    return Entry(
        "undistilled",
        "sasrec",
        "undistilled",
        "the student's chosen architecture and its trainer, hard labels only (no teacher)",
        model=student_shape(student.model),
        trainer=dict(Student.trainer_defaults),
        search=SEARCH["undistilled"],
    )


def sampled_key(base: str, negatives: int, scope: str) -> str:
    """A sampled variant's name in the results: negatives shared by the batch (the first
    variant, named before scopes existed) or drawn for each sequence."""
    return f"{base}_sampled{negatives}" + ("" if scope == "batch" else f"_per_{scope}")


def sampled_entry(
    base: Entry, chosen: Candidate, negatives: int, sampler: str, scope: str
) -> Entry:
    """The base's chosen config with a sampled softmax instead of the full one, read paired by
    seed; `scope` says who shares the negatives (models/sampled.py). Its search, on validation
    like every other: that config as it is, and with twice the early-stopping patience. A
    sampled loss's validation curve is noisier and climbs for longer (SASRec, 128 popularity
    negatives per batch: seeds 2-4 peaked at epochs 46-70; seeds 0 and 1 stopped at epochs 40
    and 41 after a plateau), so the patience tuned for the full softmax may stop it early; the
    loss and, when chosen, the patience are then the only differences."""
    patient = Candidate(
        f"{chosen.name}+patience-20", model=chosen.model, trainer={**chosen.trainer, "patience": 20}
    )
    return Entry(
        sampled_key(base.key, negatives, scope),
        base.trains,
        f"{base.folder}_sampled{negatives}_{sampler}" + ("" if scope == "batch" else f"_{scope}"),
        f"{base.key}'s chosen config, sampled softmax over {negatives} {sampler} negatives "
        f"per {scope}",
        model={
            **base.model,
            "sampled_negatives": negatives,
            "negative_sampler": sampler,
            "negative_scope": scope,
        },
        trainer=dict(base.trainer),
        search=(chosen, patient),
    )


def settings_as_now(settings: dict[str, Any]) -> dict[str, Any]:
    """A cached unit's settings in today's terms: a sampled unit made before the scope of its
    negatives was a setting (models/sampled.py `negative_scope`) drew them per batch, the only
    scope there was."""
    model = settings["model_overrides"]
    if model.get("sampled_negatives") and "negative_scope" not in model:
        settings = {**settings, "model_overrides": {**model, "negative_scope": "batch"}}
    return settings


# ---- bookkeeping: commit, tree, machine (bench/train_seq_scale.py uses these too) --------------


def git_state() -> dict[str, Any]:
    """The commit, and whether tracked files differ from it (`dirty`, with the paths)."""

    def git(*args: str) -> str:
        # Not stripped: porcelain lines start with a status column that may be a space.
        return subprocess.check_output(["git", *args], cwd=REPO, text=True).rstrip("\n")

    try:
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
        return {
            "git_commit": git("rev-parse", "HEAD"),
            "dirty": bool(changed),
            "dirty_paths": [line[3:] for line in changed][:50],
        }
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "dirty": None, "dirty_paths": []}


def refuse_dirty(state: dict[str, Any], allow: bool, what: str) -> None:
    """A result from uncommitted code names a commit that did not produce it: refused, unless
    the caller allows it (the record then says `dirty: true`)."""
    if state["dirty"] and not allow:
        raise SystemExit(
            f"the tree has uncommitted changes ({', '.join(state['dirty_paths'][:10])}): "
            f"commit them or pass --allow-dirty ({what} is then marked dirty)"
        )


def machine(threads: int) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),  # often empty on Linux: `cpu` names the model
        "cpu": cpu(),
        "cpus": os.cpu_count(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "torch_threads": threads,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(path: Path, record: dict[str, Any], indent: int | None = 1) -> None:
    """Written beside and renamed over: an interrupted run never leaves half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(record, indent=indent) + "\n")
    partial.replace(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spread(values: list[float]) -> dict[str, float]:
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"n": 0}
    return {
        "mean": round(statistics.fmean(values), 6),
        "std": round(statistics.stdev(values), 6) if len(values) > 1 else 0.0,
        "min": round(min(values), 6),
        "max": round(max(values), 6),
        "n": len(values),
    }


# ---- the split ----------------------------------------------------------------------------------


def write_split(split: SequenceSplit, path: Path) -> str:
    """The split file RecBole's runner reads; returns its sha256. gzip stamps the time into the
    file, so a file whose content is unchanged is left as it is (byte-identical); one whose
    content would change is refused: RecBole's cached results were made on the old one."""
    buffer = io.StringIO()
    split.split_frame().to_csv(buffer, sep="\t", index=False)
    content = buffer.getvalue().encode()
    if path.exists():
        if gzip.decompress(path.read_bytes()) != content:
            raise SystemExit(
                f"{path} holds another split than this code makes: delete it (and RecBole's "
                "cached results made on it) to write the new one"
            )
        return sha256(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content, mtime=0))
    return sha256(path)


# ---- per-user metrics and the paired bootstrap --------------------------------------------------


def per_user_ndcg(
    scores: np.ndarray | RowBlocks,
    stage: EvalSet,
    mask_history: bool,
    k: int = 10,
) -> np.ndarray:
    """NDCG@k of each user's one target, ranked as models/evaluate.py ranks: all columns,
    equal scores the lower column first, NaN last; masked, the user's history out of the
    ranking (a target seen before is a miss)."""
    targets = stage.targets - 1
    history = stage.seen()
    out = np.zeros(len(targets))
    for start in range(0, len(targets), 1024):
        block = np.array(scores[start : start + 1024], dtype=np.float64)
        block[np.isnan(block)] = -np.inf
        if mask_history:
            for row, seen in enumerate(history[start : start + len(block)]):
                block[row, seen] = -np.inf
        target = targets[start : start + len(block)]
        value = block[np.arange(len(block)), target][:, None]
        before = np.arange(block.shape[1])[None, :] < target[:, None]
        rank = 1 + (block > value).sum(1) + ((block == value) & before).sum(1)
        hit = (rank <= k) & np.isfinite(value[:, 0])
        out[start : start + len(block)] = np.where(hit, 1.0 / np.log2(rank + 1.0), 0.0)
    return out


def checked_per_user(
    scores: np.ndarray | RowBlocks, stage: EvalSet, metrics: dict[str, float]
) -> dict[str, np.ndarray]:
    """Per-user NDCG@10 under both protocols, checked against the evaluator's means (the
    bootstrap must resample exactly the numbers the table reports)."""
    out = {}
    for protocol in PROTOCOLS:
        vector = per_user_ndcg(scores, stage, mask_history=protocol == "masked")
        key = ("" if protocol == "masked" else UNMASKED) + "ndcg@10"
        if abs(vector.mean() - metrics[key]) > 1e-9:
            raise RuntimeError(f"per-user {key} {vector.mean()} != evaluator's {metrics[key]}")
        out[protocol] = vector
    return out


def paired_bootstrap(difference: np.ndarray, resamples: int, seed: int = 0) -> dict[str, Any]:
    """95% percentile interval of the mean of a per-user difference, users resampled with
    replacement (both sides keep their pairing: one resample draws the same users for both)."""
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):
        n = min(1000, resamples - start)
        means[start : start + n] = difference[
            rng.integers(0, len(difference), (n, len(difference)))
        ].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "status": "ok",
        "mean_difference": round(float(difference.mean()), 6),
        "ci95": [round(float(low), 6), round(float(high), 6)],
        "above_zero": bool(low > 0),
        "users": len(difference),
        "resamples": resamples,
    }


# ---- units: one (model, config, seed) trained, validated, later tested ------------------------


def rounded(metrics: dict[str, float]) -> dict[str, float]:
    counts = ("users", "videos", UNMASKED + "users", UNMASKED + "videos")
    return {k: round(float(v), 6) for k, v in metrics.items() if k not in counts}


def load_model(unit: dict[str, Any], weights_dir: Path) -> torch.nn.Module:
    """A unit's trained model from its weights (state dict, read with weights_only=True)."""
    path = weights_dir / unit["weights"]["path"]
    if not path.exists() or sha256(path) != unit["weights"]["sha256"]:
        raise SystemExit(
            f"the weights of {unit['unit']} are missing or changed ({path}): delete its unit "
            "JSON to train it again"
        )
    model_class = spec(unit["unit"]["trains"]).model_class()
    model = model_class(model_class.config_class(**unit["model_config"]))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


class Bench:
    """Runs (or, with `report_only`, only reads) every unit in the order the protocol needs:
    the searches and seeds of the base models, the teacher's choice, the student and the
    undistilled model, the sampled-softmax variants, test scoring, latency."""

    def __init__(self, args: argparse.Namespace, split: SequenceSplit, split_sha: str):
        self.args, self.split, self.split_sha = args, split, split_sha
        self.units_dir = args.results_dir / "train_seq"
        self.report_only = args.report
        # The commit of the code this process loaded: what every unit it trains was made by.
        self.git = git_state()
        self.val, self.test = split.stage("val"), split.stage("test")

    # -- one unit

    def unit_path(self, entry: Entry, candidate: Candidate, seed: int) -> Path:
        return self.units_dir / entry.folder / candidate.name / f"seed{seed}.json"

    def settings(
        self, entry: Entry, candidate: Candidate, seed: int, teacher: dict | None
    ) -> dict[str, Any]:
        """Everything a unit's result depends on: a cached unit must have been made with it."""
        model_class = spec(entry.trains).model_class()
        trainer = {**entry.trainer, **candidate.trainer, "seed": seed, "progress": False}
        if self.args.max_epochs:
            epochs = trainer.get("epochs", model_class.trainer_defaults.get("epochs", 4))
            trainer["epochs"] = min(epochs, self.args.max_epochs)
        return {
            "trains": entry.trains,
            "model_overrides": {**entry.model, **candidate.model},
            "trainer_overrides": trainer,
            "teacher": teacher,
            "split_sha256": self.split_sha,
            "torch_threads": self.args.threads,
        }

    def unit(
        self, entry: Entry, candidate: Candidate, seed: int, teacher: dict | None = None
    ) -> dict[str, Any]:
        """The cached unit, or trained now (teacher: the teacher's unit, for the student)."""
        path = self.unit_path(entry, candidate, seed)
        teacher_ref = None
        if teacher is not None:
            teacher_ref = {
                "model": teacher["unit"]["model"],
                "config": teacher["unit"]["config"],
                "seed": teacher["unit"]["seed"],
                "weights_sha256": teacher["weights"]["sha256"],
            }
        wanted = self.settings(entry, candidate, seed, teacher_ref)
        if path.exists():
            cached = json.loads(path.read_text())
            cached["settings"] = settings_as_now(cached["settings"])
            if cached["settings"] != wanted:
                differs = sorted(k for k in wanted if cached["settings"].get(k) != wanted[k])
                raise SystemExit(f"{path} was made with other settings ({differs}): delete it")
            changed = self.changed_defaults(cached)
            if changed:
                raise SystemExit(
                    f"{path} was made before a default changed ({', '.join(changed)}): "
                    "delete it to train it with the current code"
                )
            self.say(cached, "cached")
            return cached
        if self.report_only:
            raise SystemExit(f"{path} is missing: run bench/train_seq.py without --report first")
        record = self.train(entry, candidate, seed, wanted, teacher)
        write_json(path, record, indent=None)  # a machine's record: per-user lists on one line
        self.say(record, "trained")
        return record

    def changed_defaults(self, cached: dict[str, Any]) -> list[str]:
        """The config fields a cached unit ran with that the current code would set otherwise:
        its settings hold only the overrides, so a model's changed default (BERT4Rec's
        epochs, say) is seen here, not there."""
        s = cached["settings"]
        trainer, model = resolved_configs(
            s["trains"], self.split, s["model_overrides"], s["trainer_overrides"]
        )
        # Through JSON, as the unit was written: tuples become lists. A field the unit does not
        # hold was added since with a default that keeps the old behaviour (max_seconds 0: no
        # budget), as fields are added here.
        now = json.loads(json.dumps(config_dicts(trainer, model)))
        was = {part: cached[f"{part}_config"] for part in ("model", "trainer")}
        # Except the window bias: a unit made before it trained without one (a model's saved
        # config without the field loads that way too, models/interface.py).
        if "window_bias" in now["model"]:
            was["model"] = {"window_bias": False, **was["model"]}
        return [
            f"{part}.{key}: {was[part][key]!r} -> {value!r}"
            for part in ("model", "trainer")
            for key, value in now[part].items()
            if key in was[part] and was[part][key] != value
        ]

    def model_of(self, unit: dict[str, Any]) -> torch.nn.Module:
        """A finished unit's model, its weights restored first when this checkout lacks them."""
        self.restore_weights(unit)
        return load_model(unit, self.args.weights_dir)

    def restore_weights(self, unit: dict[str, Any]) -> None:
        """The weights of a finished unit that this machine does not hold (they stay in the
        git-ignored var/, its JSON is committed), trained again from the unit's own settings.
        Training on the CPU is deterministic for a seed and thread count, so they must hash to
        the recorded sha256: a bench resumes on a new checkout, or stops saying it cannot."""
        path = self.args.weights_dir / unit["weights"]["path"]
        if path.exists():
            return
        settings = unit["settings"]
        if settings["torch_threads"] != self.args.threads:
            raise SystemExit(
                f"{path} is missing and its unit was trained with {settings['torch_threads']} "
                f"threads, this run has {self.args.threads}: rerun with --threads "
                f"{settings['torch_threads']}, or delete the unit"
            )
        teacher = None
        if settings["teacher"] is not None:
            ref = settings["teacher"]  # a base model's unit: its folder is its name
            found = self.units_dir / ref["model"] / ref["config"] / f"seed{ref['seed']}.json"
            teacher = self.model_of(json.loads(found.read_text()))
        print(f"restoring the weights of {unit['unit']}: training it again", flush=True)
        run = SequenceData(
            settings["trains"],
            self.split,
            model_overrides=settings["model_overrides"],
            trainer_overrides=settings["trainer_overrides"],
            teacher=teacher,
        )
        bundle, _, _ = fit_model(run, lambda epoch, metrics: None)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(bundle.model.eval().state_dict(), path)
        if sha256(path) != unit["weights"]["sha256"]:
            path.unlink()
            raise SystemExit(
                f"the weights of {unit['unit']} trained again differ from the recorded ones "
                "(another CPU or library build?): delete the unit to train it anew"
            )

    def train(
        self,
        entry: Entry,
        candidate: Candidate,
        seed: int,
        settings: dict[str, Any],
        teacher: dict | None,
    ) -> dict[str, Any]:
        teacher_model = None if teacher is None else self.model_of(teacher)
        load_before = os.getloadavg()
        prepared = time.perf_counter()
        run = SequenceData(
            entry.trains,
            self.split,
            model_overrides=settings["model_overrides"],
            trainer_overrides=settings["trainer_overrides"],
            teacher=teacher_model,
        )
        data_seconds = time.perf_counter() - prepared
        ends: dict[int, float] = {}
        started = time.perf_counter()
        # Called after each epoch's validation: the wall clock a user waits, validation included.
        bundle, history, _ = fit_model(
            run, lambda epoch, metrics: ends.setdefault(epoch, time.perf_counter() - started)
        )
        wall_total = time.perf_counter() - started
        model = bundle.model.eval()
        val = evaluate_model(model, run.val)  # both protocols, the best epoch's weights
        best = int(np.argmax([h[MONITOR] for h in history]))  # the first best, as the trainer
        weights = Path(entry.folder) / candidate.name / f"seed{seed}.pt"
        (self.args.weights_dir / weights).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), self.args.weights_dir / weights)
        epochs = [
            {
                "epoch": i + 1,
                "train_loss": round(h["train_loss"], 6),
                "train_seconds": round(h["epoch_seconds"], 3),
                "val_ndcg@10": round(h[MONITOR], 6),
                "wall_seconds": round(ends[i + 1], 3),
            }
            for i, h in enumerate(history)
        ]
        windows = len(run.train["items"])
        train_seconds = sum(h["epoch_seconds"] for h in history)
        return {
            "benchmark": BENCHMARK,
            "unit": {
                "model": entry.key,
                "trains": entry.trains,
                "config": candidate.name,
                "seed": seed,
            },
            "settings": settings,
            **self.git,
            "machine": {
                **machine(self.args.threads),
                "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            },
            "smoke": self.args.smoke,
            "model_config": run.configs()["model"],
            "trainer_config": run.configs()["trainer"],
            "parameters": count_parameters(model),
            "best_epoch": best + 1,
            "epochs_run": len(history),
            "data_seconds": round(data_seconds, 3),
            "wall_seconds_to_best": epochs[best]["wall_seconds"],
            "train_seconds_to_best": round(sum(e["train_seconds"] for e in epochs[: best + 1]), 3),
            "wall_seconds_total": round(wall_total, 3),
            "seconds_per_epoch": round(train_seconds / len(history), 3),
            "train_sequences_per_s": round(windows * len(history) / train_seconds, 1),
            "val": rounded(val),
            "test": None,  # scored once, after the config is chosen (score_test)
            "weights": {"path": str(weights), "sha256": sha256(self.args.weights_dir / weights)},
            "epochs": epochs,
        }

    def score_test(self, entry: Entry, candidate: Candidate, unit: dict) -> dict[str, Any]:
        """The test set, scored once for a chosen unit, from its saved weights: both protocols
        and each user's NDCG@10 (for the paired bootstrap)."""
        if unit["test"] is not None:
            return unit
        path = self.unit_path(entry, candidate, unit["unit"]["seed"])
        if self.report_only:
            raise SystemExit(f"{path} has no test score: run without --report first")
        model = self.model_of(unit)
        scores = score_items(model, self.test.inputs)
        metrics = self.test.metrics(scores)
        per_user = checked_per_user(scores, self.test, metrics)
        unit["test"] = {
            "metrics": rounded(metrics),
            "per_user": {
                "user_id": [int(u) for u in self.test.user_ids],
                **{p: [round(float(v), 6) for v in per_user[p]] for p in PROTOCOLS},
            },
            "scored_at": {**self.git, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        }
        write_json(path, unit, indent=None)
        print(
            f"  test {entry.key}/{candidate.name} seed {unit['unit']['seed']}: NDCG@10 "
            f"{metrics['ndcg@10']:.4f} masked, {metrics[UNMASKED + 'ndcg@10']:.4f} unmasked",
            flush=True,
        )
        return unit

    @staticmethod
    def say(unit: dict[str, Any], how: str) -> None:
        u, val = unit["unit"], unit["val"]
        print(
            f"{u['model']}/{u['config']} seed {u['seed']} ({how}): val NDCG@10 "
            f"{val['ndcg@10']:.4f} masked, {val[UNMASKED + 'ndcg@10']:.4f} unmasked; best epoch "
            f"{unit['best_epoch']}/{unit['epochs_run']}, {unit['seconds_per_epoch']:.1f} s/epoch, "
            f"{unit['wall_seconds_to_best']:.0f} s to the best",
            flush=True,
        )

    # -- a model: search, choice, seeds, test

    def parameters(self, entry: Entry, candidate: Candidate) -> int:
        """A config's parameter count on this catalog, without training it."""
        _, config = resolved_configs(entry.trains, self.split, {**entry.model, **candidate.model})
        return count_parameters(spec(entry.trains).model_class()(config))

    def model(
        self,
        entry: Entry,
        teachers: dict[int, dict] | None = None,
        max_parameters: int | None = None,
    ) -> dict[str, Any]:
        """The search on the search seeds, the choice (mean masked validation NDCG@10; the
        first listed wins a tie), the chosen config on every seed, its test scores. Configs
        over `max_parameters` are logged as skipped, not trained."""
        teacher = teachers or {}
        listed = entry.search[: self.args.candidates] if len(entry.search) > 1 else entry.search
        candidates, skipped = [], []
        for candidate in listed:
            size = self.parameters(entry, candidate)
            if max_parameters is not None and size > max_parameters:
                skipped.append(
                    {
                        "config": candidate.name,
                        "skipped": f"{size:,} parameters, over the limit of {max_parameters:,}",
                        "chosen": False,
                    }
                )
            else:
                candidates.append(candidate)
        if not candidates:
            raise SystemExit(f"no {entry.key} config within {max_parameters:,} parameters")
        search = []
        for candidate in candidates:
            units = [
                self.unit(entry, candidate, seed, teacher.get(seed))
                for seed in self.args.search_seeds
            ]
            search.append(
                {
                    "config": candidate.name,
                    "overrides": {"model": candidate.model, "trainer": candidate.trainer},
                    "val_by_seed": {
                        str(u["unit"]["seed"]): {
                            "ndcg@10": u["val"]["ndcg@10"],
                            UNMASKED + "ndcg@10": u["val"][UNMASKED + "ndcg@10"],
                            "best_epoch": u["best_epoch"],
                            "wall_seconds_total": u["wall_seconds_total"],
                        }
                        for u in units
                    },
                    "val_ndcg@10_mean": round(
                        statistics.fmean(u["val"]["ndcg@10"] for u in units), 6
                    ),
                    "train_wall_seconds": round(sum(u["wall_seconds_total"] for u in units), 1),
                }
            )
        chosen_at = max(range(len(search)), key=lambda i: (search[i]["val_ndcg@10_mean"], -i))
        for i, row in enumerate(search):
            row["chosen"] = i == chosen_at
        chosen = candidates[chosen_at]
        search.extend(skipped)
        runs = []
        for seed in self.args.seeds:
            unit = self.unit(entry, chosen, seed, teacher.get(seed))
            runs.append(self.score_test(entry, chosen, unit))
        return {"entry": entry, "chosen": chosen, "search": search, "runs": runs}

    # -- the whole bench

    def run(self) -> dict[str, Any] | None:
        """Every unit, or with --only the named parts and what they need (read from the cache
        when there, trained when not), so that two processes can share the bench (the module's
        docstring); a last run without --only times the latency loop."""
        needs = {
            "student": TEACHERS,
            "undistilled": ("student",),
            "sampled": tuple(self.args.sampled),
        }
        wanted, adding = set(), list(self.args.only or PARTS)
        while adding:
            part = adding.pop()
            if part not in wanted:
                wanted.add(part)
                adding.extend(needs.get(part, ()))
        table: dict[str, dict[str, Any]] = {}
        for name in BASE_MODELS:
            if name in wanted:
                table[name] = self.model(base_entry(name))
        teacher = self.distill(table, "undistilled" in wanted) if "student" in wanted else None
        if "sampled" in wanted:
            self.sampled(table)
        if self.args.only:
            return None
        latency = self.latency(table, teacher)
        return {"table": table, "teacher": teacher, "latency": latency}

    def distill(self, table: dict[str, dict[str, Any]], undistilled: bool) -> str:
        """The student (and, if asked, its undistilled twin) from the teacher it returns."""
        teacher = self.args.teacher
        if teacher == "auto":  # the best of the table on validation, never on test
            teacher = max(TEACHERS, key=lambda n: mean_of(table[n]["runs"], "val", "ndcg@10"))
        teachers = {u["unit"]["seed"]: u for u in table[teacher]["runs"]}
        for seed in self.args.search_seeds:  # the search's teachers too (same seed, chosen config)
            if seed not in teachers:
                teachers[seed] = self.unit(base_entry(teacher), table[teacher]["chosen"], seed)
        limit = None
        if self.args.student_size_ratio > 0:
            limit = int(table[teacher]["runs"][0]["parameters"] / self.args.student_size_ratio)
        table["student"] = self.model(student_entry(teacher), teachers, limit)
        if undistilled:
            table["undistilled"] = self.model(undistilled_entry(table["student"]["chosen"]))
        return teacher

    def sampled(self, table: dict[str, dict[str, Any]]) -> None:
        for name in self.args.sampled:
            base = table[name]
            for scope in self.args.scopes:
                variant = sampled_entry(
                    base["entry"], base["chosen"], self.args.negatives, self.args.sampler, scope
                )
                table[variant.key] = self.model(variant)

    def latency(self, table: dict[str, dict], teacher: str) -> dict[str, Any]:
        """Scoring latency of every model, interleaved in one loop: each repetition times every
        model once, the order rotating, so that load on the machine falls on all alike."""
        seed = self.args.seeds[0]
        order = [teacher, "student"] + [k for k in table if k not in (teacher, "student")]
        units = {k: next(u for u in table[k]["runs"] if u["unit"]["seed"] == seed) for k in order}
        wanted = {
            "models": {k: units[k]["weights"]["sha256"] for k in order},
            "batch_users": self.args.latency_batch,
            "repetitions": self.args.latency_repetitions,
            "torch_threads": self.args.threads,
        }
        path = self.units_dir / "latency.json"
        if path.exists():
            cached = json.loads(path.read_text())
            if cached["settings"] == wanted:
                return cached
        if self.report_only:
            raise SystemExit(f"{path} is missing or stale: run without --report first")
        models = {k: self.model_of(units[k]) for k in order}
        inputs = self.test.inputs
        users = inputs[torch.arange(self.args.latency_batch) % len(inputs)]
        for model in models.values():  # warm-up: first calls allocate
            for _ in range(3):
                score_items(model, users, batch_size=len(users))
        times: dict[str, list[float]] = {k: [] for k in order}
        load_before = os.getloadavg()
        for repetition in range(self.args.latency_repetitions):
            shift = repetition % len(order)
            for k in order[shift:] + order[:shift]:
                started = time.perf_counter()
                score_items(models[k], users, batch_size=len(users))
                times[k].append(time.perf_counter() - started)
        record = {
            "settings": wanted,
            "seed": seed,
            **git_state(),
            "machine": {
                **machine(self.args.threads),
                "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            },
            "what": f"score_items over the whole catalog for a batch of {len(users)} users "
            "(the test inputs, repeated), models timed in turn within each repetition",
            "models": {
                k: {
                    "p50_ms": round(1000 * float(np.percentile(t, 50)), 3),
                    "p95_ms": round(1000 * float(np.percentile(t, 95)), 3),
                    "mean_ms": round(1000 * statistics.fmean(t), 3),
                    "parameters": units[k]["parameters"],
                }
                for k, t in times.items()
            },
        }
        write_json(path, record)
        print(json.dumps(record["models"]), flush=True)
        return record


def mean_of(runs: list[dict], part: str, metric: str) -> float:
    values = [r[part]["metrics"][metric] if part == "test" else r[part][metric] for r in runs]
    return statistics.fmean(values)


# ---- the reference: RecBole's cached runs -------------------------------------------------------


def recbole_reference(results_dir: Path, split_sha: str) -> dict[str, Any]:
    """RecBole 1.2.1 SASRec, as bench/recbole/run_sasrec.py cached it per seed."""
    files = sorted(results_dir.glob("recbole_sasrec_seed*.json"))
    command = (
        "bash bench/recbole/setup.sh && bench/recbole/.venv/bin/python bench/recbole/run_sasrec.py"
    )
    if not files:
        return {"status": "reference not run yet", "command": command}
    runs = [json.loads(f.read_text()) for f in files]
    other = [r["seed"] for r in runs if r["data"]["split_sha256"] != split_sha]
    if other:
        return {
            "status": f"reference made on another split (seeds {other}): re-run it",
            "command": command,
        }
    out: dict[str, Any] = {
        "status": "ok",
        "name": runs[0]["reference"] + " (CE loss, max length 50, RecBole's defaults)",
        "files": [str(f.relative_to(REPO)) if f.is_relative_to(REPO) else str(f) for f in files],
        "seeds": [r["seed"] for r in runs],
        "git_commits": sorted({r["git_commit"] for r in runs}),
        "dirty": any(r.get("dirty") for r in runs),
        "torch_threads": sorted({r["machine"]["torch_threads"] for r in runs}),
        "wall_seconds_to_best": spread([r["wall_seconds_to_best"] for r in runs]),
        "best_epoch": spread([r["best_epoch"] for r in runs]),
        "seconds_per_epoch": spread([r["seconds_per_epoch"] for r in runs]),
        "parameters": runs[0]["parameters"],
        "by_seed": {
            str(r["seed"]): {
                "unmasked_test_ndcg@10": r["test"]["unmasked"]["ndcg@10"],
                "masked_test_ndcg@10": r["test"]["masked"]["ndcg@10"],
                "wall_seconds_to_best": r["wall_seconds_to_best"],
                "best_epoch": r["best_epoch"],
                "load_average_1_5_15_before": r["machine"]["load_average_1_5_15_before"],
            }
            for r in runs
        },
    }
    for protocol in PROTOCOLS:
        for metric in ("ndcg@10", "hit@10", "mrr@10", "ndcg@20"):
            out[f"{protocol}_test_{metric}"] = spread([r["test"][protocol][metric] for r in runs])
        out[f"{protocol}_popularity_test_ndcg@10"] = runs[0]["popularity"][f"test_{protocol}"][
            "ndcg@10"
        ]
    out["per_user"] = recbole_per_user(runs)
    return out


def recbole_per_user(runs: list[dict]) -> dict[str, Any]:
    """Each user's test NDCG@10 averaged over RecBole's seeds, per protocol: available when every
    cached seed holds `per_user` = {"user_id": [raw ids], "test": {"unmasked": {"ndcg@10": [..]},
    "masked": {"ndcg@10": [..]}}} (bench/recbole/run_sasrec.py does not write it yet)."""
    if not all("per_user" in r for r in runs):
        return {
            "status": "unavailable: bench/recbole/run_sasrec.py's cached JSON has no per-user "
            "scores (it should add per_user = {user_id, test: {unmasked, masked}: {ndcg@10}})"
        }
    out: dict[str, Any] = {"status": "ok"}
    for protocol in PROTOCOLS:
        by_user: dict[str, list[float]] = {}
        for r in runs:
            for user, value in zip(
                r["per_user"]["user_id"], r["per_user"]["test"][protocol]["ndcg@10"], strict=True
            ):
                by_user.setdefault(str(user), []).append(float(value))
        out[protocol] = {u: statistics.fmean(v) for u, v in by_user.items()}
    return out


# ---- the report ---------------------------------------------------------------------------------


def baselines(split: SequenceSplit) -> dict[str, Any]:
    """Popularity and item-to-item transitions on validation and test, both protocols, with
    each user's test NDCG@10: counted as the models see the data (training parts only)."""
    transitions = Transitions.count(
        [split.train_part(i) for i in range(len(split.sequences))], len(split.vocab)
    )
    out: dict[str, Any] = {"popularity": {}, "transition": {}}
    for stage_name in ("val", "test"):
        stage = split.stage(stage_name)
        last_items = stage.inputs[:, -1].numpy()  # left-padded: the last column is the latest
        scores = {
            "popularity": popularity_scores(stage.popularity[1:], len(stage.targets)),
            "transition": RowBlocks(
                (len(last_items), split.n_items),
                lambda rows, s=stage, last=last_items: transitions.scores(last[rows], s.popularity)[
                    :, 1:
                ],
            ),
        }
        for name, matrix in scores.items():
            metrics = stage.metrics(matrix)
            out[name][stage_name] = rounded(metrics)
            if stage_name == "test":
                out[name]["per_user"] = checked_per_user(matrix, stage, metrics)
    # The evaluator's own baselines must agree with these (same counts, same ranking).
    test = split.stage("test")
    for key, value in test.popularity_metrics().items():
        if key in out["popularity"]["test"] and abs(out["popularity"]["test"][key] - value) > 1e-6:
            raise RuntimeError(f"popularity {key}: {out['popularity']['test'][key]} != {value}")
    return out


def seed_vectors(runs: list[dict], protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """User ids and each user's test NDCG@10 averaged over the seeds."""
    users = np.asarray(runs[0]["test"]["per_user"]["user_id"])
    stacked = []
    for r in runs:
        if not np.array_equal(np.asarray(r["test"]["per_user"]["user_id"]), users):
            raise RuntimeError("seeds evaluated different users")
        stacked.append(np.asarray(r["test"]["per_user"][protocol], dtype=np.float64))
    return users, np.mean(stacked, axis=0)


def paired_by_seed(a: list[dict], b: list[dict], part: str, metric: str) -> dict[str, Any]:
    """a - b on each seed both ran, and how many seeds a won."""
    b_by_seed = {r["unit"]["seed"]: r for r in b}
    diffs = {}
    for r in a:
        other = b_by_seed.get(r["unit"]["seed"])
        if other is not None:
            diffs[r["unit"]["seed"]] = mean_of([r], part, metric) - mean_of([other], part, metric)
    return {
        **spread(list(diffs.values())),
        "by_seed": {str(s): round(d, 6) for s, d in diffs.items()},
        "wins": sum(d > 0 for d in diffs.values()),
    }


def model_report(result: dict[str, Any], table: dict, teacher: str, base: dict) -> dict[str, Any]:
    entry: Entry = result["entry"]
    runs = result["runs"]
    teacher_runs = {u["unit"]["seed"]: u for u in table[teacher]["runs"]}
    rows = []
    for u in runs:
        # Time to reference: the model as selected, from the start of its training to the end
        # of its best epoch; the student also waits for its teacher's whole training.
        to_best = u["wall_seconds_to_best"]
        if entry.distilled:
            to_best += teacher_runs[u["unit"]["seed"]]["wall_seconds_total"]
        rows.append(
            {
                "seed": u["unit"]["seed"],
                "val": {
                    k: u["val"][k]
                    for k in u["val"]
                    if k.split("@")[0].removeprefix(UNMASKED) in ("ndcg", "hr", "mrr")
                },
                "test": {
                    k: v
                    for k, v in u["test"]["metrics"].items()
                    if k.split("@")[0].removeprefix(UNMASKED) in ("ndcg", "hr", "mrr", "coverage")
                },
                "best_epoch": u["best_epoch"],
                "epochs_run": u["epochs_run"],
                "seconds_per_epoch": u["seconds_per_epoch"],
                "train_sequences_per_s": u["train_sequences_per_s"],
                "wall_seconds_to_best": u["wall_seconds_to_best"],
                "wall_seconds_total": u["wall_seconds_total"],
                "time_to_reference_seconds": round(to_best, 3),
                "git_commit": u["git_commit"],
                "dirty": u["dirty"],
                "load_average_1_5_15_before": u["machine"]["load_average_1_5_15_before"],
                "val_curve": [e["val_ndcg@10"] for e in u["epochs"]],
            }
        )
    summary = {}
    for protocol in ("", UNMASKED):
        for metric in SUMMARY:
            summary[f"{protocol}test_{metric}"] = spread(
                [u["test"]["metrics"][protocol + metric] for u in runs]
            )
            if metric != "coverage@10":
                summary[f"{protocol}val_{metric}"] = spread(
                    [u["val"][protocol + metric] for u in runs]
                )
    for key in ("best_epoch", "epochs_run", "seconds_per_epoch", "train_sequences_per_s"):
        summary[key] = spread([r[key] for r in rows])
    summary["time_to_reference_seconds"] = spread([r["time_to_reference_seconds"] for r in rows])
    beats = {}
    for name in ("transition", "popularity"):
        for protocol in ("", UNMASKED):
            value = base[name]["test"][protocol + "ndcg@10"]
            diffs = [u["test"]["metrics"][protocol + "ndcg@10"] - value for u in runs]
            beats[f"{protocol}{name}"] = {
                "baseline_test_ndcg@10": value,
                **spread(diffs),
                "wins": sum(d > 0 for d in diffs),
            }
    return {
        "trains": entry.trains,
        "about": entry.about,
        "chosen_config": result["chosen"].name,
        "overrides": {
            "model": {**entry.model, **result["chosen"].model},
            "trainer": {**entry.trainer, **result["chosen"].trainer},
        },
        "model_config": runs[0]["model_config"],
        "trainer_config": runs[0]["trainer_config"],
        "parameters": runs[0]["parameters"],
        "search": result["search"],
        "search_wall_seconds": round(
            sum(s.get("train_wall_seconds", 0) for s in result["search"]), 1
        ),
        "summary": summary,
        "test_ndcg@10_minus_baseline": beats,
        "runs": rows,
    }


def assemble(args: argparse.Namespace, split: SequenceSplit, split_sha: str, found: dict) -> dict:
    table, teacher, latency = found["table"], found["teacher"], found["latency"]
    base = baselines(split)
    models = {k: model_report(v, table, teacher, base) for k, v in table.items()}
    reference = recbole_reference(args.recbole_dir, split_sha)

    # Paired by seed: distillation, sampled against full softmax.
    sampled = [  # (variant, the full-softmax model it is paired with)
        (sampled_key(n, args.negatives, scope), n) for n in args.sampled for scope in args.scopes
    ]
    paired = {}
    for protocol in ("", UNMASKED):
        for a, b in [("student", "undistilled"), ("student", teacher), *sampled]:
            paired[f"{protocol}test_ndcg@10: {a} - {b}"] = paired_by_seed(
                table[a]["runs"], table[b]["runs"], "test", protocol + "ndcg@10"
            )

    # The best model on each protocol, chosen on that protocol's validation mean, against the
    # reference and the transition baseline (paired bootstrap over users, seed means).
    versus = {}
    for protocol in PROTOCOLS:
        mark = "" if protocol == "masked" else UNMASKED
        best = max(models, key=lambda k: models[k]["summary"][f"{mark}val_ndcg@10"]["mean"])
        users, ours = seed_vectors(table[best]["runs"], protocol)
        mean = models[best]["summary"][f"{mark}test_ndcg@10"]["mean"]
        row: dict[str, Any] = {
            "best_model_by_validation": best,
            "reelflow_test_ndcg@10": models[best]["summary"][f"{mark}test_ndcg@10"],
            "bootstrap_vs_transition": paired_bootstrap(
                ours - base["transition"]["per_user"][protocol], args.bootstrap
            ),
        }
        if reference["status"] == "ok":
            ref_mean = reference[f"{protocol}_test_ndcg@10"]["mean"]
            row |= {
                "reference_test_ndcg@10": reference[f"{protocol}_test_ndcg@10"],
                "ratio": round(mean / ref_mean, 4),
                "difference": round(mean - ref_mean, 6),
            }
            per_user = reference["per_user"]
            if per_user["status"] == "ok":
                theirs = per_user[protocol]
                if sorted(theirs) != sorted(str(u) for u in users):
                    row["bootstrap_vs_reference"] = {"status": "unavailable: the user sets differ"}
                else:
                    aligned = np.array([theirs[str(u)] for u in users])
                    row["bootstrap_vs_reference"] = paired_bootstrap(ours - aligned, args.bootstrap)
            else:
                row["bootstrap_vs_reference"] = {"status": per_user["status"]}
        else:
            row["reference"] = reference["status"]
            row["bootstrap_vs_reference"] = {"status": reference["status"]}
        versus[protocol] = row

    # Time to reference, every model, against RecBole's seconds to its best epoch.
    times = {}
    for k, m in models.items():
        seconds = m["summary"]["time_to_reference_seconds"]
        if reference["status"] == "ok":
            ref = reference["wall_seconds_to_best"]["mean"]
            times[k] = {
                "seconds": seconds,
                "reference_seconds": reference["wall_seconds_to_best"],
                "fraction_of_reference": round(seconds["mean"] / ref, 4),
            }
        else:
            times[k] = {"seconds": seconds, "reference": reference["status"]}

    lat = latency["models"]
    student, teach = models["student"], models[teacher]
    kept = {
        p: round(
            student["summary"][f"{m}test_ndcg@10"]["mean"]
            / teach["summary"][f"{m}test_ndcg@10"]["mean"],
            4,
        )
        for p, m in (("masked", ""), ("unmasked", UNMASKED))
    }
    distillation = {
        "teacher": teacher,
        "teacher_chosen_by": "flag --teacher"
        if args.teacher != "auto"
        else "best mean masked validation NDCG@10 of gru, sasrec",
        "ndcg_kept": kept,
        "parameter_ratio": round(teach["parameters"] / student["parameters"], 2),
        "latency_ratio_p50": round(lat[teacher]["p50_ms"] / lat["student"]["p50_ms"], 2),
        "latency_ratio_p95": round(lat[teacher]["p95_ms"] / lat["student"]["p95_ms"], 2),
        "student_minus_undistilled": {
            p: paired[f"{m}test_ndcg@10: student - undistilled"]
            for p, m in (("masked", ""), ("unmasked", UNMASKED))
        },
    }
    distillation["goals"] = {
        "keeps_95%_both_protocols": all(v >= 0.95 for v in kept.values()),
        "4x_fewer_parameters": distillation["parameter_ratio"] >= 4,
        "3x_lower_latency_p50": distillation["latency_ratio_p50"] >= 3,
        "beats_undistilled_paired_mean_both_protocols": all(
            d.get("mean", 0) > 0 for d in distillation["student_minus_undistilled"].values()
        ),
    }

    unmasked = versus["unmasked"]
    best_time = times[unmasked["best_model_by_validation"]]
    goals = {
        "unmasked_best_mean_at_least_0.064": unmasked["reelflow_test_ndcg@10"]["mean"] >= 0.064,
        "unmasked_bootstrap_above_zero": unmasked["bootstrap_vs_reference"].get(
            "above_zero", unmasked["bootstrap_vs_reference"]["status"]
        ),
        "time_at_most_a_tenth_of_reference": best_time["fraction_of_reference"] <= 0.1
        if "fraction_of_reference" in best_time
        else best_time["reference"],
        "every_model_beats_transition_both_protocols": {
            k: all(
                m["test_ndcg@10_minus_baseline"][n]["mean"] > 0
                for n in ("transition", UNMASKED + "transition")
            )
            for k, m in models.items()
        },
    }
    for variant, name in sampled:
        for p, m in (("masked", ""), ("unmasked", UNMASKED)):
            full = models[name]["summary"][f"{m}test_ndcg@10"]
            diff = paired[f"{m}test_ndcg@10: {variant} - {name}"]
            goals[f"{variant}_within_5%_or_one_std_of_full_{p}"] = bool(
                abs(diff["mean"]) <= 0.05 * full["mean"] or abs(diff["mean"]) <= full["std"]
            )

    state = git_state()
    units = [u for v in table.values() for u in v["runs"]]
    return {
        "benchmark": BENCHMARK,
        "schema": SCHEMA,
        **state,
        "allow_dirty": args.allow_dirty,
        "smoke": args.smoke,
        "unit_commits": sorted({u["git_commit"] for u in units}),
        "any_unit_dirty": any(u["dirty"] for u in units),
        "seeds": args.seeds,
        "search_seeds": args.search_seeds,
        "threads": args.threads,
        "machine": machine(args.threads),
        "data": {
            "file": str(args.data.relative_to(REPO.parent))
            if args.data.is_relative_to(REPO.parent)
            else str(args.data),
            "users": len(split.sequences),
            "items": split.n_items,
            "interactions": int(sum(len(s) for s in split.sequences)),
            "evaluated_users": len(split.evaluated()),
            "training_sequences": len(split.training_windows()),
            "training_transitions": split.training_transitions(),
            "max_len": split.max_len,
            "split_file": str(args.split_file.relative_to(REPO))
            if args.split_file.is_relative_to(REPO)
            else str(args.split_file),
            "split_sha256": split_sha,
        },
        "protocol": {
            "split": "leave-one-out by timestamp, ties in file order (stable); last test, the one before validation",
            "ranking": "full: every item of the catalog; masked = the user's history left out, unmasked = nothing left out (RecBole's protocol for sequential models)",
            "epoch_selection": "best masked validation NDCG@10 (reelflow's trainer; RecBole selects on unmasked validation NDCG@10)",
            "config_selection": "mean masked validation NDCG@10 over the search seeds",
            "best_model": "per protocol, the highest mean validation NDCG@10 of that protocol",
            "test": "scored once per chosen unit, from its best-epoch weights",
            "time_to_reference": "start of training to the end of the best epoch (validation included, data preparation not); the student adds its teacher's whole training",
            "bootstrap": f"{args.bootstrap} resamples of users, per-user NDCG@10 averaged over seeds on each side",
        },
        "baselines": {
            name: {s: base[name][s] for s in ("val", "test")}
            for name in ("popularity", "transition")
        },
        "models": models,
        "paired_by_seed": paired,
        "distillation": distillation,
        "latency": latency,
        "reference": {k: v for k, v in reference.items() if k != "per_user"}
        | ({"per_user": reference["per_user"]["status"]} if "per_user" in reference else {}),
        "versus_reference": versus,
        "time_to_reference": times,
        "goals": goals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--search-seeds",
        type=int,
        nargs="+",
        help="seeds of the config search (default: the first of --seeds)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--teacher",
        choices=["auto", *TEACHERS],
        default="auto",
        help="auto: the best on validation",
    )
    parser.add_argument("--sampled", nargs="*", choices=BASE_MODELS, default=["sasrec"])
    # 128 is 7.6% of the catalog: the issue asks for at most 10% as negatives. The sampler is
    # the pipeline's (SequenceConfig.negative_sampler).
    parser.add_argument("--negatives", type=int, default=128, help="of the sampled variants")
    parser.add_argument("--sampler", choices=SAMPLERS, default=SequenceConfig().negative_sampler)
    # Both scopes by default: the batch's shared draw (the first variant measured) and each
    # sequence's own, paired by seed with the full softmax each.
    parser.add_argument("--scopes", nargs="+", choices=SCOPES, default=list(SCOPES))
    parser.add_argument("--candidates", type=int, default=3, help="configs tried per model")
    parser.add_argument(
        "--student-size-ratio",
        type=float,
        default=4.0,
        help="student configs with more than the teacher's parameters / this are not tried (0: all)",
    )
    parser.add_argument(
        "--max-epochs", type=int, default=0, help="cap every model's epochs (0: none)"
    )
    parser.add_argument(
        "--users", type=int, help="only the N lowest user ids (default: all; --smoke: 200; 0: all)"
    )
    parser.add_argument("--latency-batch", type=int, default=1000, help="users per timed batch")
    parser.add_argument("--latency-repetitions", type=int, default=50)
    parser.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS)
    parser.add_argument("--recbole-dir", type=Path, default=RESULTS, help="RecBole's cached runs")
    parser.add_argument(
        "--report", action="store_true", help="assemble train_seq.json from the units"
    )
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        help="train these parts (and what they need) and stop: no latency loop, no report",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 seed, 2 epochs, 200 users, 2 configs per model, into a temporary folder",
    )
    args = parser.parse_args()
    if args.smoke:
        # The code path, not a measurement: nothing is written under bench/results.
        if args.results_dir == RESULTS:
            args.results_dir = Path(tempfile.mkdtemp(prefix="train_seq_smoke_"))
        if args.weights_dir == WEIGHTS:
            args.weights_dir = args.results_dir / "weights"
        args.seeds = args.seeds[:1]
        args.max_epochs = args.max_epochs or 2
        args.users = 200 if args.users is None else args.users
        args.candidates = min(args.candidates, 2)
        args.latency_repetitions, args.bootstrap = 5, 1000
        args.allow_dirty = True
    if args.only and (args.report or args.smoke):
        parser.error("--only trains part of the bench: the report (and --smoke) need all of it")
    args.search_seeds = args.search_seeds or args.seeds[:1]
    args.split_file = args.results_dir / "train_seq_split.tsv.gz"
    refuse_dirty(git_state(), args.allow_dirty, "every record")
    torch.set_num_threads(args.threads)

    frame = read_movielens(args.data)
    if args.users:
        frame = frame[frame["user_id"].isin(np.sort(frame["user_id"].unique())[: args.users])]
    split = from_frame(frame)
    split_sha = write_split(split, args.split_file)
    print(
        f"{args.data.name}: {len(split.sequences)} users, {split.n_items} items; split "
        f"{args.split_file} ({split_sha[:12]}); units in {args.results_dir / 'train_seq'}",
        flush=True,
    )
    started = time.perf_counter()
    found = Bench(args, split, split_sha).run()
    done = f"--only {' '.join(args.only)}: its units" if args.only else "every unit"
    print(f"{done} done in {time.perf_counter() - started:.0f} s", flush=True)
    if args.only:
        return
    if not (args.report or args.smoke):
        print("now assemble the results: bench/train_seq.py --report (same arguments)")
        return
    report = assemble(args, split, split_sha, found)
    out = args.results_dir / "train_seq.json"
    write_json(out, report)
    print_summary(report)
    print(f"-> {out}")


def print_summary(report: dict[str, Any]) -> None:
    for name, m in report["models"].items():
        s = m["summary"]
        t = report["time_to_reference"][name]
        print(
            f"{name:>18} [{m['chosen_config']}]: test NDCG@10 {s['test_ndcg@10']['mean']:.4f} "
            f"± {s['test_ndcg@10']['std']:.4f} masked, {s['unmasked_test_ndcg@10']['mean']:.4f} "
            f"± {s['unmasked_test_ndcg@10']['std']:.4f} unmasked; {t['seconds']['mean']:.0f} s to "
            f"its best; {m['parameters']:,} parameters"
        )
    for name in ("popularity", "transition"):
        b = report["baselines"][name]["test"]
        print(
            f"{name:>18}: test NDCG@10 {b['ndcg@10']:.4f} masked, {b[UNMASKED + 'ndcg@10']:.4f} unmasked"
        )
    print(
        json.dumps(
            {"versus_reference": report["versus_reference"], "goals": report["goals"]}, indent=1
        )
    )
    print(json.dumps(report["distillation"], indent=1))


if __name__ == "__main__":
    np.seterr(all="ignore")  # novelty's log of an unseen item's share; ranks are unaffected
    main()
