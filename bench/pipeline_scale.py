"""Benchmark: `reelflow run` on generated KuaiRec at fractions of the release's size, stage by
stage: where the time and the memory go as the log grows.

For each fraction 1/N (default 8, 4, 2, 1: "full/8" .. "full", 1/N of the release's 7,176
users with its 14 days, 10,728 videos and 125 views per user-day; ~12.5M views at full size),
the release is generated (seed 0) and run end to end exactly as a user would:

    REELFLOW_HOME=<root>/full-N/home reelflow run --dataset kuairec --raw <root>/full-N/raw --json

with nothing changed from the defaults but `REELFLOW_RUN__RANGE_DAYS=1` (a DAG run per day:
each day's cost is measured on its own, as a daily schedule runs it). A run that stops resumes where it stopped on the next
invocation (`reelflow run`'s ledger); the stage costs are what each stage recorded
(`runs/ds=D/<stage>.json`, reelflow/meter.py), summed over the days whichever attempt ran
them, so they add up across resumptions. This process also samples the whole process tree's
resident memory (the run's peak, all processes together).

Per fraction it reports: the views, each stage's wall and CPU seconds and peak memory, each
day's daily-DAG cost (land .. materialize: the growth from day 7 to day 14 says whether a day's
cost follows the window), the run's wall time (this attempt) and peak memory. The results go
to bench/results/pipeline_scale.json and a plot of stage time against views to
bench/results/pipeline_scale.png.

    .venv/bin/python bench/pipeline_scale.py [--fractions 8,4,2,1] [--root var/bench-pipeline-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lake.partitions import partition  # noqa: E402
from reelflow.meter import tree_rss  # noqa: E402

GIB = 1024**3
DAILY = ("apply_feature_repo", "land", "normalize", "validate", "features", "materialize")
GOALS = {"full_run_seconds": 7200, "peak_gib": 16, "extra_day_seconds": 300, "day14_over_day7": 1.2}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def generate(raw: Path, n: int, seed: int) -> dict:
    manifest = raw / "reelflow_manifest.json"
    if not manifest.exists():
        from synthetic.kuairec import generate_kuairec

        generate_kuairec(raw, scale="full" if n == 1 else f"full/{n}", seed=seed)
    return json.loads(manifest.read_text())


def run(home: Path, raw: Path) -> dict:
    """`reelflow run` in a child, its whole process tree's memory sampled every 0.5 s."""
    # A DAG run per day, as the scheduler makes them: each day's cost is the curve's point
    # (by default `reelflow run` sends a first load through in ranges of 31 days).
    env = {**os.environ, "REELFLOW_HOME": str(home), "REELFLOW_RUN__RANGE_DAYS": "1"}
    command = [str(Path(sys.executable).parent / "reelflow"), "run", "--dataset", "kuairec"]
    command += ["--raw", str(raw), "--json"]
    log = home.parent / "run.stderr.log"
    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as err:
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        peak = [0]

        def watch() -> None:
            while child.poll() is None and (rss := tree_rss(child.pid)) is not None:
                peak[0] = max(peak[0], rss)
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        out, _ = child.communicate()
        watcher.join()
    wall = time.perf_counter() - started
    if child.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        return {
            "status": f"failed (exit {child.returncode})",
            "wall_seconds": round(wall, 1),
            "tail": tail,
        }
    return {
        "status": "ok",
        "wall_seconds_this_attempt": round(wall, 1),
        "peak_rss_gib_tree": round(peak[0] / GIB, 3),
        "summary": json.loads(out),
    }


def per_day(home: Path, days: list[str]) -> dict[str, float]:
    """Each day's daily-DAG wall seconds (its stages' records summed)."""
    out = {}
    for ds in days:
        total = 0.0
        for stage in DAILY:
            f = partition(home / "runs", ds) / f"{stage}.json"
            if f.exists():
                total += json.loads(f.read_text()).get("resources", {}).get("wall_seconds", 0.0)
        out[ds] = round(total, 1)
    return out


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if r.get("status") == "ok"]
    if not done:
        return
    stages = sorted(
        {s for r in done for s in r["stages"]},
        key=lambda s: -done[-1]["stages"].get(s, {}).get("wall_seconds", 0),
    )
    fig, ax = plt.subplots(figsize=(8, 5))
    for stage in stages:
        points = [
            (r["views"], r["stages"][stage]["wall_seconds"]) for r in done if stage in r["stages"]
        ]
        ax.plot(*zip(*points, strict=True), marker="o", label=stage)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("views in the release (generated KuaiRec, 14 days)")
    ax.set_ylabel("wall seconds, summed over the run's days")
    ax.set_title("reelflow run: stage time against data size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", default="8,4,2,1", help="N of each 1/N run, comma-separated")
    parser.add_argument("--root", default=str(REPO / "var" / "bench-pipeline-scale"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    commit, dirty = git("rev-parse", "HEAD"), bool(git("status", "--porcelain"))
    out_json = REPO / "bench" / "results" / "pipeline_scale.json"
    previous = json.loads(out_json.read_text()) if out_json.exists() else {}
    results = {r["fraction"]: r for r in previous.get("runs", [])}
    load_at_start = os.getloadavg()[0]
    for n in [int(x) for x in args.fractions.split(",")]:
        folder = Path(args.root) / f"full-{n}"
        raw = folder / "raw" / "KuaiRec 2.0"
        manifest = generate(raw, n, args.seed)
        print(
            f"1/{n}: {manifest['rows']['big_matrix']} views over {len(manifest['days'])} days",
            flush=True,
        )
        result = run(folder / "home", raw)
        entry = {
            "fraction": f"1/{n}",
            "views": manifest["rows"]["big_matrix"],
            "days": len(manifest["days"]),
            "git_commit": commit,
            "dirty": dirty,
            **{k: v for k, v in result.items() if k != "summary"},
        }
        if result["status"] == "ok":
            summary = result["summary"]
            entry["stages"] = summary["stages"]
            entry["stage_wall_seconds_total"] = round(
                sum(s["wall_seconds"] for s in summary["stages"].values()), 1
            )
            entry["peak_rss_gib_stage_max"] = max(
                s["peak_rss_gib_total"] for s in summary["stages"].values()
            )
            entry["daily_dag_seconds_per_day"] = per_day(folder / "home", manifest["days"])
            daily = list(entry["daily_dag_seconds_per_day"].values())
            if len(daily) >= 14:
                entry["day14_over_day7"] = round(daily[13] / daily[6], 2)
        print(
            json.dumps({k: v for k, v in entry.items() if k not in ("stages", "tail")}), flush=True
        )
        results[entry["fraction"]] = entry
        # Written after each fraction: a finished one is kept when a later one is stopped.
        write_report(out_json, results, args.seed, load_at_start)


def write_report(out_json: Path, results: dict, seed: int, load_at_start: float) -> None:
    runs = sorted(results.values(), key=lambda r: r["views"])
    report = {
        "benchmark": "pipeline_scale",
        "dataset": "kuairec (generated), fractions of the release's users",
        "seed": seed,
        "protocol": "reelflow run --dataset kuairec, defaults, local Spark, embedded SQLite "
        "stores; stage costs from each stage's records, summed over days and attempts",
        "goals": GOALS,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
            "load_average_1m_at_start": round(load_at_start, 2),
        },
        "runs": runs,
    }
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    plot(runs, out_json.with_suffix(".png"))
    print(f"-> {out_json.relative_to(REPO)}")


if __name__ == "__main__":
    main()
