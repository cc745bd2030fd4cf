"""RecBole 1.2.1 SASRec on the sequence bench's MovieLens-100K split: the like-for-like reference.

bench/train_seq.py compares reelflow's sequence models with RecBole's SASRec. This script re-runs
that reference itself, on exactly the split the bench wrote, so the comparison rests on a
measurement made here rather than on a quoted number. It runs in its own virtualenv (RecBole 1.2.1
needs numpy<2 and pandas<2.3; reelflow runs on numpy 2):

    bash bench/recbole/setup.sh                                  # makes bench/recbole/.venv
    bench/recbole/.venv/bin/python bench/recbole/run_sasrec.py   # seeds 0 1 2, resumable

Per seed it writes bench/results/recbole_sasrec_seed<N>.json and skips seeds already written, so
an interrupted run resumes at the first missing seed. Run it on a quiet machine, one seed after
another and never alongside reelflow's runs: its times are compared with theirs. A short check
that writes nowhere near bench/results:

    nice -n 19 bench/recbole/.venv/bin/python bench/recbole/run_sasrec.py \\
        --seeds 0 --max-epochs 1 --out-dir /tmp/recbole-smoke --work-dir /tmp/recbole-smoke/work

Protocol (bench/recbole/README.md says the same at more length):

- Split: bench/results/train_seq_split.tsv.gz, written by bench/train_seq.py from
  ../shared/data/movielens/ml-100k/u.data: per user, interactions ordered by timestamp with ties
  kept in file order (a stable sort), the last one the test target, the one before the
  validation target, the rest training. RecBole does not re-split it: the split becomes RecBole's
  pre-split benchmark files (`benchmark_filename: [train, valid, test]`), one row per prediction
  (user, the up to 50 items before the target, the target), as RecBole's own data augmentation
  would make them: every training position after a user's first, and one validation and one
  test row per user. Before training, the rows RecBole loaded are mapped back to raw ids and
  compared with the split file, every user's validation and test target and input included.
- Model: SASRec, CE loss over the full catalog, MAX_ITEM_LIST_LENGTH 50, RecBole's defaults for
  everything else (the JSON records the whole configuration RecBole ran with).
- Selection: validation NDCG@10 (RecBole's full-sort, unmasked), checked after every epoch;
  training stops 3 epochs after the best one, as reelflow's trainer does (patience 3). RecBole
  stops once `cur_step > stopping_step`, i.e. stopping_step + 1 epochs after the best, so that is
  stopping_step 2 (`--stopping-step`). The test set is scored once, with the best-validation
  checkpoint.
- Two protocols: unmasked is RecBole's own for sequential models (its full-sort loader passes no
  history for them; only the padding column is excluded). Masked is reelflow's: every item the
  user saw before the target is excluded from the ranking. It is computed by RecBole's own
  full-sort evaluation, given that history the way RecBole gives it for general models
  (`HistoryMaskedFullSortEvalDataLoader`). Both are recomputed here from the model's full-sort
  scores at full precision (RecBole rounds to 4 decimals) as a cross-check. From the same ranks,
  `per_user` holds each user's NDCG@10 (raw user ids; test and validation, both protocols) for
  bench/train_seq.py's paired bootstrap over users.
- Time: `wall_seconds_to_best` runs from the start of `Trainer.fit` to the end of the best
  epoch, RecBole's per-epoch validation and checkpoint saving included (a user waits for them);
  loading the data and building RecBole's dataset are excluded. Training-only seconds are
  recorded beside it (`train_seconds_to_best`, `seconds_per_epoch`).
"""

from __future__ import annotations

import os

# RecBole's checkpoints pickle its Config object; torch >= 2.6 refuses them under the default
# weights_only=True, and RecBole 1.2.1 calls torch.load without the argument. The checkpoint is
# one this run has just written itself. Set before torch is imported.
os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

# RecBole 1.2.1's NDCG and MRR metrics use np.float (and a few context-aware models np.long),
# aliases numpy removed in 1.24; "numpy<2" alone still fails at the first evaluation. The aliases
# meant the Python builtins, so restoring them changes no arithmetic.
for _alias, _builtin in (("float", float), ("long", int)):
    if _alias not in np.__dict__:
        setattr(np, _alias, _builtin)

import pandas as pd  # noqa: E402
import recbole  # noqa: E402
import torch  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader  # noqa: E402
from recbole.model.sequential_recommender.sasrec import SASRec  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SPLIT = REPO / "bench" / "results" / "train_seq_split.tsv.gz"
RESULTS = REPO / "bench" / "results"
WORK = REPO / "bench" / "recbole" / "work"
DATASET = "ml-100k-loo"  # not "ml-100k": that name would load RecBole's own preset for the file
MAX_LEN = 50
KS = (10, 20)

# What this script sets; everything else is RecBole 1.2.1's default (recorded in the result).
OVERRIDES = {
    "loss_type": "CE",
    "train_neg_sample_args": None,  # CE scores the full catalog: RecBole requires no sampling
    "MAX_ITEM_LIST_LENGTH": MAX_LEN,
    "benchmark_filename": ["train", "valid", "test"],
    "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
    "alias_of_item_id": ["item_id_list"],  # history and target share one item vocabulary
    # Sequential models demand order "TO"; with benchmark files RecBole neither sorts nor splits.
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
    "metrics": ["Recall", "MRR", "NDCG", "Hit"],
    "topk": list(KS),
    "valid_metric": "NDCG@10",  # the bench selects on validation NDCG@10
    "show_progress": False,
}


@dataclass
class Prediction:
    """One row RecBole trains or is evaluated on: the items before the target, and the target."""

    user: str
    history: list[str]
    target: str


@dataclass
class Split:
    """The bench's leave-one-out split, read from its file: one sequence of raw ids per user."""

    sequences: dict[str, list[str]]
    roles: dict[str, list[str]]
    sha256: str
    file_order: list[str]  # users in the order the split file lists them (per-user vectors)

    @classmethod
    def read(cls, path: Path) -> Split:
        frame = pd.read_csv(path, sep="\t", dtype={"user_id": str, "item_id": str})
        file_order = frame["user_id"].drop_duplicates().tolist()
        frame = frame.sort_values(["user_id", "position"], kind="stable")
        sequences, roles = {}, {}
        for user, rows in frame.groupby("user_id", sort=False):
            positions = rows["position"].to_numpy()
            if not np.array_equal(positions, np.arange(len(rows))):
                raise ValueError(f"user {user}: positions are not 0..{len(rows) - 1}")
            role = rows["split"].tolist()
            if len(role) >= 3 and role[-2:] != ["val", "test"]:
                raise ValueError(f"user {user}: the last two rows are {role[-2:]}, not val, test")
            if any(r != "train" for r in role[:-2]):
                raise ValueError(f"user {user}: a val or test row before the last two")
            sequences[user] = rows["item_id"].tolist()
            roles[user] = role
        return cls(sequences, roles, hashlib.sha256(path.read_bytes()).hexdigest(), file_order)

    def evaluated(self) -> list[str]:
        return [u for u, r in self.roles.items() if r[-2:] == ["val", "test"]]

    def train_rows(self) -> list[Prediction]:
        """Every training position after the user's first, as RecBole's data augmentation makes
        them: the up to MAX_LEN items before it (the most recent ones), then the target."""
        rows = []
        for user, seq in self.sequences.items():
            n_train = self.roles[user].count("train")
            for i in range(1, n_train):
                rows.append(Prediction(user, seq[max(0, i - MAX_LEN) : i], seq[i]))
        return rows

    def stage_rows(self, stage: str) -> list[Prediction]:
        cut = 2 if stage == "valid" else 1
        return [
            Prediction(user, self.sequences[user][:-cut][-MAX_LEN:], self.sequences[user][-cut])
            for user in self.evaluated()
        ]

    def seen_before(self, stage: str) -> dict[str, list[str]]:
        """Every item each user saw before the stage's target: what reelflow masks."""
        cut = 2 if stage == "valid" else 1
        return {user: self.sequences[user][:-cut] for user in self.evaluated()}

    def popularity_counts(self, stage: str) -> dict[str, int]:
        """Item counts over what precedes the stage: training parts, plus validation targets for
        test (the same counts as reelflow's popularity baseline)."""
        counts: dict[str, int] = {}
        for user, seq in self.sequences.items():
            n_train = self.roles[user].count("train")
            seen = seq[:n_train] + (seq[n_train : n_train + 1] if stage == "test" else [])
            for item in seen:
                counts[item] = counts.get(item, 0) + 1
        return counts

    def items(self) -> list[str]:
        return sorted({i for seq in self.sequences.values() for i in seq}, key=int)


def write_atomic_files(split: Split, folder: Path) -> dict[str, int]:
    """RecBole's pre-split benchmark files <dataset>.{train,valid,test}.inter."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    sizes = {}
    for name, rows in (
        ("train", split.train_rows()),
        ("valid", split.stage_rows("valid")),
        ("test", split.stage_rows("test")),
    ):
        path = folder / f"{DATASET}.{name}.inter"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as out:
            out.write(header)
            for row in rows:
                out.write(f"{row.user}\t{' '.join(row.history)}\t{row.target}\n")
        tmp.replace(path)
        sizes[name] = len(rows)
    return sizes


def loaded_rows(dataset) -> list[Prediction]:
    """The rows a RecBole dataset holds, mapped back to raw ids."""
    users = dataset.field2id_token["user_id"]
    items = dataset.field2id_token["item_id"]
    feat = dataset.inter_feat
    lengths = feat["item_length"].numpy()
    lists = feat["item_id_list"].numpy()
    return [
        Prediction(str(users[u]), [str(x) for x in items[lists[r, : lengths[r]]]], str(items[t]))
        for r, (u, t) in enumerate(
            zip(feat["user_id"].numpy(), feat["item_id"].numpy(), strict=True)
        )
    ]


def check_split(split: Split, train_data, valid_data, test_data) -> dict:
    """Fails unless RecBole holds exactly the split file's rows, every user's targets included."""

    def key(row: Prediction) -> tuple:
        return (row.user, tuple(row.history), row.target)

    report = {}
    for name, data, expected in (
        ("train", train_data, split.train_rows()),
        ("valid", valid_data, split.stage_rows("valid")),
        ("test", test_data, split.stage_rows("test")),
    ):
        got = loaded_rows(data._dataset)
        if sorted(map(key, got)) != sorted(map(key, expected)):
            raise RuntimeError(f"RecBole's {name} rows differ from the split file's")
        report[f"{name}_rows"] = len(got)
        if name != "train":
            targets = {r.user: r.target for r in got}
            if len(targets) != len(got):
                raise RuntimeError(f"a user has more than one {name} row")
            role = "val" if name == "valid" else "test"
            agree = sum(
                targets.get(user) == seq[split.roles[user].index(role)]
                for user, seq in split.sequences.items()
                if role in split.roles[user]
            )
            report[f"{name}_targets_equal_split_file"] = agree
    report["users"] = len(split.sequences)
    report["evaluated_users"] = len(split.evaluated())
    report["items_in_split"] = len(split.items())
    report["recbole_item_num_with_padding"] = int(train_data._dataset.item_num)
    if report["recbole_item_num_with_padding"] != len(split.items()) + 1:
        raise RuntimeError("RecBole's catalog is not the split file's")
    return report


class HistoryMaskedFullSortEvalDataLoader(FullSortEvalDataLoader):
    """RecBole's full-sort loader, also passing each row's history for sequential models.

    RecBole 1.2.1 passes a history index only for general models (for sequential ones
    `collate_fn` returns None, so `_full_sort_batch_eval` masks only the padding column); this one
    returns, like the general case, the (row, item) pairs to set to -inf: every item the user saw
    before the row's target."""

    def __init__(self, config, dataset, sampler, seen_before: dict[int, torch.Tensor]):
        self.seen_before = seen_before
        super().__init__(config, dataset, sampler, shuffle=False)

    def collate_fn(self, index):
        interaction, _, positive_u, positive_i = super().collate_fn(index)
        seen = [self.seen_before[int(u)] for u in interaction[self.uid_field]]
        rows = torch.cat([torch.full_like(s, r) for r, s in enumerate(seen)])
        return interaction, (rows, torch.cat(seen)), positive_u, positive_i


def masked_loader(config, data, split: Split, stage: str) -> HistoryMaskedFullSortEvalDataLoader:
    dataset = data._dataset
    user_id, item_id = dataset.field2token_id["user_id"], dataset.field2token_id["item_id"]
    seen = {
        user_id[user]: torch.tensor([item_id[i] for i in items], dtype=torch.int64)
        for user, items in split.seen_before(stage).items()
    }
    return HistoryMaskedFullSortEvalDataLoader(config, dataset, data._sampler, seen)


class TimedTrainer(Trainer):
    """RecBole's Trainer, unchanged, with each epoch's training and validation timed and each
    validation's metrics kept (RecBole keeps only the best epoch's)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epochs_log: list[dict] = []

    def _train_epoch(self, *args, **kwargs):
        started = time.perf_counter()
        loss = super()._train_epoch(*args, **kwargs)
        self.epochs_log.append(
            {
                "epoch": len(self.epochs_log) + 1,
                "train_seconds": round(time.perf_counter() - started, 3),
                "train_loss": round(float(loss), 6),
            }
        )
        return loss

    def _valid_epoch(self, *args, **kwargs):
        started = time.perf_counter()
        score, result = super()._valid_epoch(*args, **kwargs)
        self.epochs_log[-1]["valid_seconds"] = round(time.perf_counter() - started, 3)
        self.epochs_log[-1]["valid"] = {k: float(v) for k, v in result.items()}
        return score, result


@dataclass
class Ranked:
    """Full-precision metrics from the model's full-sort scores (RecBole's are rounded), and the
    raw user of each ranked row, so each user's own NDCG can be written out."""

    ranks: list[int] = field(default_factory=list)
    users: list[str] = field(default_factory=list)  # raw user id of each row (popularity: none)

    def ndcg(self, k: int) -> np.ndarray:
        r = np.asarray(self.ranks, dtype=np.float64)
        return np.where(r <= k, 1.0 / np.log2(r + 1), 0.0)

    def metrics(self) -> dict[str, float]:
        r = np.asarray(self.ranks, dtype=np.float64)
        out = {}
        for k in KS:
            hit = r <= k
            out[f"ndcg@{k}"] = float(self.ndcg(k).mean())
            out[f"hit@{k}"] = float(hit.mean())
            out[f"mrr@{k}"] = float(np.where(hit, 1.0 / r, 0.0).mean())
        return out


@torch.no_grad()
def recompute(model, data, seen_before: dict[int, torch.Tensor] | None) -> Ranked:
    """Ranks of every target among all items from SASRec's full-sort scores; a target tied with
    other items gets the best of the tied ranks. Each row's user is kept as its raw id (RecBole's
    internal ids are its own remapping)."""
    model.eval()
    ranked = Ranked()
    raw_user = data._dataset.field2id_token["user_id"]
    for interaction, _, _, positive_i in data:
        ranked.users.extend(str(raw_user[u]) for u in interaction["user_id"].tolist())
        interaction, positive_i = interaction.to(model.device), positive_i.to(model.device)
        scores = model.full_sort_predict(interaction).view(len(positive_i), -1).clone()
        scores[:, 0] = -math.inf
        if seen_before is not None:
            for row, user in enumerate(interaction["user_id"].tolist()):
                scores[row, seen_before[user]] = -math.inf
        target = scores.gather(1, positive_i.view(-1, 1))
        ranks = 1 + (scores > target).sum(dim=1)
        # A masked target (seen before) cannot be recommended: it counts as a miss, as in reelflow.
        ranks[torch.isinf(target.view(-1))] = scores.shape[1] + 1
        ranked.ranks.extend(ranks.tolist())
    return ranked


def per_user_scores(split: Split, ranked: dict[str, Ranked], exact: dict[str, dict]) -> dict:
    """Each evaluated user's NDCG@10 per stage and protocol, for bench/train_seq.py's paired
    bootstrap over users (reelflow - RecBole): {"user_id": [..], "test"|"valid": {"unmasked"|
    "masked": {"ndcg@10": [..]}}}, users in the split file's order, ids as ints like
    bench/train_seq.py writes its own (it matches users by str(id)). The values are not rounded:
    their mean must be exactly the reported metric the bootstrap's interval is centred on."""
    evaluated = set(split.evaluated())
    users = [u for u in split.file_order if u in evaluated]
    out: dict = {"user_id": [int(u) for u in users]}
    for name, rows in ranked.items():
        stage, protocol = name.split("_")
        by_user = dict(zip(rows.users, rows.ndcg(10).tolist(), strict=True))
        if len(by_user) != len(rows.users) or sorted(by_user) != sorted(users):
            raise RuntimeError(f"{name}: RecBole's rows are not one per evaluated user")
        vector = [by_user[u] for u in users]
        if abs(statistics.fmean(vector) - exact[name]["ndcg@10"]) > 1e-9:
            raise RuntimeError(f"{name}: per-user NDCG@10 mean != {exact[name]['ndcg@10']}")
        out.setdefault(stage, {})[protocol] = {"ndcg@10": vector}
    return out


def popularity(split: Split, stage: str, masked: bool) -> dict[str, float]:
    """The most-watched items first (counts over what precedes the stage); ties broken by raw item
    id, lowest first. Next to SASRec on every protocol, as the bench reports every model."""
    counts = split.popularity_counts(stage)
    items = split.items()
    score = np.array([counts.get(i, 0) for i in items], dtype=np.float64)
    column = {item: c for c, item in enumerate(items)}
    ranked = Ranked()
    seen_before = split.seen_before(stage)
    for row in split.stage_rows(stage):
        s = score.copy()
        if masked:
            s[[column[i] for i in seen_before[row.user]]] = -np.inf
        t = column[row.target]
        if not np.isfinite(s[t]):
            ranked.ranks.append(len(items) + 1)
            continue
        ranked.ranks.append(int(1 + (s > s[t]).sum() + (s[:t] == s[t]).sum()))
    return ranked.metrics()


def git_state() -> dict:
    def git(*args: str) -> str:
        # Not stripped: porcelain lines start with a status column that may be a space.
        return subprocess.check_output(["git", *args], cwd=REPO, text=True).rstrip("\n")

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no").splitlines()
        return {
            "git_commit": git("rev-parse", "HEAD"),
            "dirty": bool(dirty),
            "dirty_paths": [line[3:] for line in dirty][:50],
        }
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "dirty": None, "dirty_paths": []}


def jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def run_seed(args: argparse.Namespace, split: Split, seed: int) -> dict:
    config = Config(
        model="SASRec",
        dataset=DATASET,
        config_dict={
            **OVERRIDES,
            "seed": seed,
            "epochs": args.max_epochs,
            "stopping_step": args.stopping_step,
            "data_path": str(args.work_dir / "dataset"),
            "checkpoint_dir": str(args.work_dir / "saved" / f"seed{seed}"),
            "use_gpu": args.device == "cuda",
        },
    )
    # The order of RecBole's run_recbole: seed, data, then the same seed again for the model.
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    load_before = os.getloadavg()
    started = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    split_check = check_split(split, train_data, valid_data, test_data)
    data_seconds = time.perf_counter() - started

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = TimedTrainer(config, model)
    ends: list[float] = []
    fit_started = time.perf_counter()
    trainer.fit(
        train_data,
        valid_data,
        saved=True,
        show_progress=False,
        callback_fn=lambda epoch, score: ends.append(time.perf_counter() - fit_started),
    )
    fit_seconds = time.perf_counter() - fit_started

    log = trainer.epochs_log
    for entry, end in zip(log, ends, strict=True):
        entry["wall_seconds"] = round(end, 3)
    # RecBole's own rule: the last epoch whose (rounded) score was >= the best so far, i.e. the
    # last one at the maximum; it must be the checkpoint RecBole kept (cur_step epochs ago).
    best = max(range(len(log)), key=lambda i: (log[i]["valid"]["ndcg@10"], i))
    if best != len(log) - 1 - trainer.cur_step:
        raise RuntimeError(
            f"best epoch {best + 1} is not RecBole's ({len(log) - trainer.cur_step})"
        )

    # Test once, with the best-validation checkpoint (RecBole reloads it from disk).
    test_unmasked = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    valid_unmasked = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
    masked_test = masked_loader(config, test_data, split, "test")
    masked_valid = masked_loader(config, valid_data, split, "valid")
    test_masked = trainer.evaluate(masked_test, load_best_model=False, show_progress=False)
    valid_masked = trainer.evaluate(masked_valid, load_best_model=False, show_progress=False)
    ranked = {
        "test_unmasked": recompute(trainer.model, test_data, None),
        "test_masked": recompute(trainer.model, test_data, masked_test.seen_before),
        "valid_unmasked": recompute(trainer.model, valid_data, None),
        "valid_masked": recompute(trainer.model, valid_data, masked_valid.seen_before),
    }
    exact = {name: rows.metrics() for name, rows in ranked.items()}
    recbole_rounded = {
        "test_unmasked": test_unmasked,
        "test_masked": test_masked,
        "valid_unmasked": valid_unmasked,
        "valid_masked": valid_masked,
    }
    # RecBole's rounded numbers and the recomputation must tell the same story.
    agreement = max(
        abs(float(recbole_rounded[p][m]) - exact[p][m])
        for p in exact
        for m in ("ndcg@10", "hit@10", "mrr@10")
    )
    if agreement > 1e-4:
        raise RuntimeError(f"RecBole's metrics and the recomputation differ by {agreement}")

    best_epoch = best + 1
    return {
        "benchmark": "recbole_sasrec_movielens_100k",
        "reference": f"RecBole {recbole.__version__} SASRec",
        "seed": seed,
        **git_state(),
        "versions": {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "device": str(config["device"]),
            "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        },
        "data": {
            "split_file": str(args.split.relative_to(REPO))
            if args.split.is_relative_to(REPO)
            else str(args.split),
            "split_sha256": split.sha256,
            "check": split_check,
        },
        "protocol": {
            "selection": "validation NDCG@10, RecBole's full-sort (unmasked)",
            "epochs_after_best_before_stop": args.stopping_step + 1,
            "test": "scored once, best-validation checkpoint",
            "unmasked": "RecBole 1.2.1's protocol for sequential models: only padding excluded",
            "masked": "every item the user saw before the target excluded (reelflow's)",
            "wall_seconds_to_best": "start of Trainer.fit to the end of the best epoch, "
            "per-epoch validation and checkpoint saving included; data loading excluded",
            "popularity": "item counts over what precedes the target stage, ties by raw item id",
        },
        "overrides": jsonable(OVERRIDES),
        "config": {k: jsonable(v) for k, v in sorted(config.final_config_dict.items())},
        "parameters": sum(p.numel() for p in model.parameters()),
        "best_epoch": best_epoch,
        "epochs_run": len(log),
        "stopped_early": len(log) < args.max_epochs,
        "seconds_per_epoch": round(statistics.fmean(e["train_seconds"] for e in log), 3),
        "seconds_per_epoch_with_validation": round(
            statistics.fmean(e["train_seconds"] + e["valid_seconds"] for e in log), 3
        ),
        "wall_seconds_to_best": log[best]["wall_seconds"],
        "train_seconds_to_best": round(sum(e["train_seconds"] for e in log[:best_epoch]), 3),
        "wall_seconds_total": round(fit_seconds, 3),
        "data_seconds": round(data_seconds, 3),
        "valid": {"unmasked": exact["valid_unmasked"], "masked": exact["valid_masked"]},
        "test": {"unmasked": exact["test_unmasked"], "masked": exact["test_masked"]},
        "per_user": per_user_scores(split, ranked, exact),
        "recbole_rounded": {
            p: {k: float(v) for k, v in r.items()} for p, r in recbole_rounded.items()
        },
        "recbole_vs_recomputed_max_abs_diff": agreement,
        "popularity": {
            f"{stage}_{'masked' if masked else 'unmasked'}": popularity(split, stage, masked)
            for stage in ("valid", "test")
            for masked in (False, True)
        },
        "epochs": log,
    }


def cached_differs(cached: dict, args: argparse.Namespace, split: Split) -> str:
    """What a cached seed's settings have that this run's do not ('' when they agree)."""
    wanted = {
        "epochs": (cached["config"]["epochs"], args.max_epochs),
        "stopping_step": (cached["config"]["stopping_step"], args.stopping_step),
        "threads": (cached["machine"]["torch_threads"], args.threads),
        "split_sha256": (cached["data"]["split_sha256"], split.sha256),
        # Seeds cached before per-user scores were written cannot enter the bootstrap.
        "per_user": ("per_user" in cached, True),
    }
    return ", ".join(f"{k} {old} != {new}" for k, (old, new) in wanted.items() if old != new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", type=Path, default=SPLIT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=300, help="RecBole's default: 300")
    parser.add_argument(
        "--stopping-step",
        type=int,
        default=2,
        help="RecBole stops stopping_step + 1 epochs after the best: 2 is the bench's 3",
    )
    # One thread, as bench/train_seq.py runs reelflow's models: the same CPU share on both sides.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--work-dir", type=Path, default=WORK, help="atomic files, checkpoints, logs"
    )
    args = parser.parse_args()
    args.split, args.out_dir, args.work_dir = (
        p.resolve() for p in (args.split, args.out_dir, args.work_dir)
    )
    torch.set_num_threads(args.threads)

    split = Split.read(args.split)
    sizes = write_atomic_files(split, args.work_dir / "dataset" / DATASET)
    print(f"{args.split.name}: {len(split.sequences)} users, rows {sizes}", flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # RecBole writes ./log and ./log_tensorboard wherever it runs: keep them in the work folder.
    os.chdir(args.work_dir)

    results = []
    for seed in args.seeds:
        out = args.out_dir / f"recbole_sasrec_seed{seed}.json"
        if out.exists():
            cached = json.loads(out.read_text())
            differs = cached_differs(cached, args, split)
            if differs:
                # A one-epoch smoke result must never pass for the reference: refuse, not skip.
                raise SystemExit(f"{out} was made with other settings ({differs}): delete it")
            print(f"seed {seed}: cached in {out}, skipped", flush=True)
            results.append(cached)
            continue
        result = run_seed(args, split, seed)
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out)
        results.append(result)
        print(
            f"seed {seed}: test NDCG@10 {result['test']['unmasked']['ndcg@10']:.4f} unmasked, "
            f"{result['test']['masked']['ndcg@10']:.4f} masked; best epoch "
            f"{result['best_epoch']}/{result['epochs_run']}, {result['seconds_per_epoch']:.1f} s "
            f"per epoch, {result['wall_seconds_to_best']:.0f} s to the best -> {out}",
            flush=True,
        )
    if len(results) > 1:
        for protocol in ("unmasked", "masked"):
            values = [r["test"][protocol]["ndcg@10"] for r in results]
            print(
                f"test NDCG@10 {protocol}: {statistics.fmean(values):.4f} "
                f"± {statistics.stdev(values):.4f} over seeds {[r['seed'] for r in results]}"
            )


if __name__ == "__main__":
    sys.exit(main())
