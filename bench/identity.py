"""Identity check for refactors: proves a change of code left every output the same.

One run records, from the command line only (never importing the project's modules, whose
import paths are what a refactor moves):

- the sha256 of every file `reelflow generate` writes, per dataset, variant and seed
  (scale tiny, seeds 0 and 1): generation must be byte-identical per seed;
- `reelflow run --dataset kuairec` on the tiny seed-0 release in a fresh REELFLOW_HOME, then an
  order-independent checksum, row count, file count and schema of every folder of parquet
  files in the lake (raw, normalized, quarantine, features, candidates, exposure_plan; day
  partitions and tables without days) with rows sorted, lists as tuples, row order and file
  names ignored (the logic of tests/test_backfill.py's partition_checksum), and the sha256 of
  the lake's and the export's other files (JSON less run ids, wall-clock times and timings);
- every registered model's versions from the home's MLflow store: their runs' metrics and
  params. The ranker and GRU4Rec train deterministically (seeded, one thread) and are compared
  to 1e-6; BERT4Rec and the student distilled from it are reported but never fail the check
  (issue 13 does not hold them to it, though two runs of b6f5854 matched them exactly too).

The run pins what would otherwise vary between two runs of the same code: the landing clock
(REELFLOW_NOW, which `_landed.json`'s landed_at and the plausible-time rule read), Python's
hash seed, one OpenMP/MKL thread (float sums in the same order on any machine), no GPU, and
no REELFLOW_* / MLFLOW_TRACKING_URI override from the caller's environment.

    .venv/bin/python bench/identity.py --label after          # 5-7 min on 2 cores
    .venv/bin/python bench/identity.py --compare bench/results/identity_before.json \
        bench/results/identity_after.json                     # exit 1 on any difference

To record an older commit, run the script from a clone of it with that clone first on the
path, so the clone's code is what the children run (the record names the module they loaded;
CHECKOUT is the checkout whose virtualenv runs it):

    cd CLONE && PYTHONPATH=$PWD CHECKOUT/.venv/bin/python bench/identity.py --label before
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

SCALE = "tiny"
SEEDS = (0, 1)
# The variants `reelflow generate --help` names per dataset; None is the dataset's default.
VARIANTS = {"kuairand": ("pure", "1k", "27k"), "microlens": ("100k", "50k")}
# What would vary between two runs of the same code: the landing clock (the one the reader
# tests pin, tests/test_fuzz_readers.py), Python's hash seed, the threads that sum floats,
# and a GPU (AMP) where a machine has one.
PINNED = {
    "REELFLOW_NOW": "2026-01-01T00:00:00Z",
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
}
# Registered models whose training is deterministic: compared to TOLERANCE. The others
# (BERT4Rec, and the student distilled from it) are reported only.
DETERMINISTIC = ("reelflow-ranker", "reelflow-gru")
TOLERANCE = 1e-6
# JSON keys left out of a file's hash: the wall clock (created_at), MLflow's random run ids,
# and timings.
VOLATILE = re.compile(r"^(created_at|run_id)$|_seconds$")
# Metrics that measure the machine, not the model: reported, never compared.
TIMING = re.compile(r"(second|_s$|time|duration|per_s|throughput|latency)", re.IGNORECASE)


# -- running the command line ------------------------------------------------------------------


def child_env(home: Path | None = None) -> dict[str, str]:
    """The caller's environment less any reelflow/MLflow override, plus the pinned clock,
    hash seed and thread count."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REELFLOW_") and k != "MLFLOW_TRACKING_URI"
    }
    env.update(PINNED)
    if home is not None:
        env["REELFLOW_HOME"] = str(home)
    return env


def reelflow(*args: str, env: dict[str, str], log: Path | None = None) -> str:
    """`python -m reelflow.cli ARGS` in a child process from the repository root; its stdout."""
    cmd = [sys.executable, "-m", "reelflow.cli", *args]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if log is not None:
        log.write_text(result.stderr)
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result.stdout


def loaded_module(env: dict[str, str]) -> str:
    """Where the children import `reelflow` from: the checkout this record describes."""
    code = "import reelflow; print(reelflow.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    return out.stdout.strip() or out.stderr.strip()


def dataset_choices(env: dict[str, str]) -> list[str]:
    """The datasets `reelflow generate` offers (its --dataset choices)."""
    usage = reelflow("generate", "--help", env=env)
    found = re.search(r"--dataset \{([^}]*)\}", usage)
    if not found:
        raise SystemExit(f"no --dataset choices in `reelflow generate --help`:\n{usage}")
    return found.group(1).split(",")


# -- generation ------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def release_folder(root: Path, dataset: str, variant: str | None, seed: int) -> Path:
    name = dataset if variant is None else f"{dataset}-{variant}"
    out = root / name / f"seed{seed}"
    # KuaiRec is read from its release folder as unpacked, its files under data/.
    return out / "KuaiRec 2.0" / "data" if dataset == "kuairec" else out


def generate_all(root: Path, env: dict[str, str]) -> dict[str, dict[str, str]]:
    """{`dataset[-variant]/seedN`: {file path relative to the release folder: sha256}}."""
    hashes: dict[str, dict[str, str]] = {}
    for dataset in dataset_choices(env):
        for variant in (None, *VARIANTS.get(dataset, ())):
            for seed in SEEDS:
                out = release_folder(root, dataset, variant, seed)
                args = ["generate", "--dataset", dataset, "--scale", SCALE, "--seed", str(seed)]
                if variant is not None:
                    args += ["--variant", variant]
                reelflow(*args, "--out", str(out), env=env)
                name = dataset if variant is None else f"{dataset}-{variant}"
                top = out.parents[1] if dataset == "kuairec" else out
                hashes[f"{name}/seed{seed}"] = {
                    str(p.relative_to(top)): sha256(p)
                    for p in sorted(top.rglob("*"))
                    if p.is_file()
                }
    return hashes


# -- the lake --------------------------------------------------------------------------------


def _cell(value):
    if isinstance(value, np.ndarray | list | tuple):
        return repr(tuple(_cell(v) for v in value))
    if isinstance(value, dict):
        return repr(sorted((k, _cell(v)) for k, v in value.items()))
    return value


def partition_checksum(folder: Path) -> dict:
    """sha256 over the partition's rows, sorted (lists and arrays as tuples; row order and
    file names do not matter), with its row count, parquet file count and schema."""
    files = sorted(folder.rglob("*.parquet"))
    df = pd.read_parquet(folder) if files else pd.DataFrame()
    schema = (
        sorted(f"{f.name}: {f.type}" for f in pads.dataset(folder, format="parquet").schema)
        if files
        else []
    )
    df = df[sorted(df.columns)]
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(_cell).astype(str)
    df = df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)
    rows = pd.util.hash_pandas_object(df, index=False).to_numpy()
    digest = hashlib.sha256(repr(list(df.columns)).encode() + rows.tobytes()).hexdigest()
    return {"sha256": digest, "rows": len(df), "files": len(files), "schema": schema}


def lake_checksums(lake: Path) -> dict[str, dict]:
    """Every folder of the lake that holds parquet files (a day partition, or a table with no
    days such as small_matrix), by path relative to the lake; staging folders left out."""
    folders = {p.parent for p in lake.rglob("*.parquet")}
    return {
        str(folder.relative_to(lake)): partition_checksum(folder)
        for folder in sorted(folders)
        if "_staging" not in folder.relative_to(lake).parts
    }


def _stable(value):
    """A JSON value less what differs between two runs of the same code (VOLATILE)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def file_hash(path: Path, work: Path) -> str:
    """sha256 of a file; of a JSON file, its content less VOLATILE keys, sorted, with the
    run's temporary folder written as $WORK (`_landed.json` names the release's files by
    absolute path)."""
    text = path.read_text(errors="replace") if path.suffix in (".json", ".landed") else None
    if text is None:
        return sha256(path)
    text = text.replace(str(work), "$WORK")
    if path.suffix == ".json":
        text = json.dumps(_stable(json.loads(text)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def other_files(folder: Path, work: Path) -> dict[str, str]:
    """Every file but parquet data and Spark's checksums, by relative path: sha256."""
    return {
        str(p.relative_to(folder)): file_hash(p, work)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".parquet" and not p.name.endswith(".crc")
    }


# -- MLflow ----------------------------------------------------------------------------------


def _plain(value: str, home: Path) -> str:
    """A param with the run's temporary home written as $REELFLOW_HOME."""
    return value.replace(str(home), "$REELFLOW_HOME")


def registered_models(home: Path) -> dict[str, dict]:
    """{registered name: {deterministic, versions: {n: {aliases, run_name, metrics, params}}}}
    from the home's SQLite store (the URI models/registry.py's setup_tracking uses)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    models = {}
    for model in sorted(client.search_registered_models(), key=lambda m: m.name):
        versions = {}
        for version in sorted(
            client.search_model_versions(f"name='{model.name}'"), key=lambda v: int(v.version)
        ):
            run = client.get_run(version.run_id)
            # search_model_versions leaves aliases out; get_model_version has them
            aliases = client.get_model_version(model.name, version.version).aliases
            history = {
                key: [m.value for m in client.get_metric_history(run.info.run_id, key)]
                for key in sorted(run.data.metrics)
            }
            versions[str(version.version)] = {
                "aliases": sorted(aliases),
                "run_name": run.info.run_name,
                "status": run.info.status,
                "metrics": dict(sorted(run.data.metrics.items())),
                # per-epoch values, where a metric was logged more than once
                "metric_history": {k: v for k, v in history.items() if len(v) > 1},
                "params": {k: _plain(v, home) for k, v in sorted(run.data.params.items())},
            }
        models[model.name] = {
            "deterministic": model.name in DETERMINISTIC,
            "aliases": dict(sorted((model.aliases or {}).items())),
            "versions": versions,
        }
    return models


# -- one record ------------------------------------------------------------------------------


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return result.stdout.strip()


def record(label: str, keep: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="reelflow-identity-"))
    try:
        started = time.monotonic()
        env = child_env()
        module = loaded_module(env)
        if not Path(module).resolve().is_relative_to(REPO):
            raise SystemExit(
                f"the children import reelflow from {module}, not from {REPO}: "
                f"put this checkout first on the path (PYTHONPATH={REPO})"
            )
        generated = generate_all(work / "generated", env)
        generate_s = time.monotonic() - started

        home = work / "home"
        raw = release_folder(work / "generated", "kuairec", None, 0).parent
        run_started = time.monotonic()
        stdout = reelflow(
            "run",
            "--dataset",
            "kuairec",
            "--raw",
            str(raw),
            "--json",
            env=child_env(home),
            log=work / "run.stderr",
        )
        run_s = time.monotonic() - run_started
        summary = json.loads(stdout.replace(str(work), "$WORK"))
        report = {
            "label": label,
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": git("status", "--porcelain", "--untracked-files=no").splitlines(),
            "reelflow_module": module,
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            "pinned": PINNED,
            "seconds": {"generate": round(generate_s, 1), "run": round(run_s, 1)},
            "generated": generated,
            "run_summary": summary,
            "lake": lake_checksums(home / "lake"),
            "lake_files": other_files(home / "lake", work),
            "exports": other_files(home / "exports", work),
            "models": registered_models(home),
        }
        return report
    finally:
        if keep is not None:
            shutil.copytree(work, keep, dirs_exist_ok=True, symlinks=True)
        shutil.rmtree(work, ignore_errors=True)


# -- compare ---------------------------------------------------------------------------------


def _close(a, b) -> bool:
    if not (isinstance(a, int | float) and isinstance(b, int | float)):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    diff = abs(a - b)
    return diff <= TOLERANCE or diff <= TOLERANCE * max(abs(a), abs(b))


def _keyed_diff(what: str, a: dict, b: dict, same=lambda x, y: x == y) -> list[str]:
    lines = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            lines.append(f"{what} {key}: only in A")
        elif key not in a:
            lines.append(f"{what} {key}: only in B")
        elif not same(a[key], b[key]):
            lines.append(f"{what} {key}: {a[key]!r} != {b[key]!r}")
    return lines


def model_values(version: dict) -> tuple[dict, dict]:
    """(metrics and per-epoch values by name, timings by name) of one model version."""
    values = dict(version["metrics"])
    for key, history in version.get("metric_history", {}).items():
        values.update({f"{key}[{i}]": v for i, v in enumerate(history)})
    timing = {k: v for k, v in values.items() if TIMING.search(k.split("[")[0])}
    return {k: v for k, v in values.items() if k not in timing}, timing


def compare(a: dict, b: dict) -> tuple[list[str], list[str]]:
    """(failures, notes): generated files, lake partitions and the deterministic models'
    metrics fail; the other models' metrics, timings and params are notes."""
    failures: list[str] = []
    notes: list[str] = []
    for name in sorted(set(a["generated"]) | set(b["generated"])):
        failures += _keyed_diff(
            f"generated {name}", a["generated"].get(name, {}), b["generated"].get(name, {})
        )
    for key in sorted(set(a["lake"]) | set(b["lake"])):
        pa, pb = a["lake"].get(key), b["lake"].get(key)
        if pa is None or pb is None:
            failures.append(f"lake {key}: only in {'B' if pa is None else 'A'}")
            continue
        failures += _keyed_diff(f"lake {key}", pa, pb)
    failures += _keyed_diff("lake file", a["lake_files"], b["lake_files"])
    failures += _keyed_diff("export file", a["exports"], b["exports"])
    for name in sorted(set(a["models"]) | set(b["models"])):
        ma, mb = a["models"].get(name), b["models"].get(name)
        if ma is None or mb is None:
            failures.append(f"model {name}: only in {'B' if ma is None else 'A'}")
            continue
        strict = ma["deterministic"] or mb["deterministic"]
        for version in sorted(set(ma["versions"]) | set(mb["versions"]), key=int):
            va, vb = ma["versions"].get(version), mb["versions"].get(version)
            where = f"model {name} v{version}"
            if va is None or vb is None:
                failures.append(f"{where}: only in {'B' if va is None else 'A'}")
                continue
            values_a, timing_a = model_values(va)
            values_b, timing_b = model_values(vb)
            diffs = _keyed_diff(f"{where} metric", values_a, values_b, same=_close)
            (failures if strict else notes).extend(diffs)
            # timings differ every run: named only when one side lacks one
            notes += _keyed_diff(f"{where} timing", timing_a, timing_b, same=lambda x, y: True)
            notes += _keyed_diff(f"{where} param", va["params"], vb["params"])
            (failures if strict else notes).extend(
                _keyed_diff(f"{where}", {"aliases": va["aliases"]}, {"aliases": vb["aliases"]})
            )
    return failures, notes


# -- the command line ------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", help="record a run as bench/results/identity_LABEL.json")
    parser.add_argument("--out", type=Path, help="write the record here instead")
    parser.add_argument("--keep", type=Path, help="copy the run's folder (home, raw) here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        failures, notes = compare(a, b)
        for line in notes:
            print(f"note: {line}")
        for line in failures:
            print(f"DIFFERS: {line}")
        print(
            f"A {a['label']} {a['git_commit'][:7]} vs B {b['label']} {b['git_commit'][:7]}: "
            f"{len(failures)} differences, {len(notes)} notes; "
            f"{len(a['generated'])} releases, {len(a['lake'])} partitions, "
            f"{len(a['models'])} models compared"
        )
        return 1 if failures else 0
    if not args.label:
        parser.error("--label LABEL or --compare A B")
    report = record(args.label, args.keep)
    out = args.out or RESULTS / f"identity_{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {report['seconds']}, {len(report['lake'])} partitions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
