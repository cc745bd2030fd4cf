"""Benchmark: `reelflow run` on generated KuaiRec at fractions of the release's size, stage by
stage, and one more day at each size: where the time and the memory go as the log grows.

For each fraction 1/N (default 8, 4, 2, 1: "full/8" .. "full", 1/N of the release's 7,176
users with its 14 days, 10,728 videos and 125 views per user-day; ~12.5M views at full size),
the release is generated (seed 0) and run exactly as a user would, with every default (a first
load goes through in ranges of up to 31 days):

    REELFLOW_HOME=<root>/full-N/home reelflow run --dataset kuairec --raw <root>/full-N/raw --json

(`--skip-train` for the daily stages only: training is bounded by its budgets,
`sequence.max_train_minutes` and `ranker.max_train_minutes`, not by the data's size). Then
days 14 and 7 (`--days-again`) are each run again alone, as the scheduler runs a day:

    REELFLOW_RUN__RANGE_DAYS=1 reelflow run ... --start D --end D --skip-train --rerun --json

Day D's cost against the window it summarizes: day 14's at most 1.2x day 7's, materialize
left out (re-running an older day re-materializes through the newest day online, by design),
and day 14's whole command within 5 minutes at full size.

A load that stops resumes where it stopped on the next invocation (`reelflow run`'s ledger),
and a fraction already measured at this commit in the same mode is skipped. The stage costs
are what each stage recorded (`runs/ds=D/<stage>.json`, reelflow/meter.py), summed over days
and attempts. This process also samples each command's whole process tree's resident memory
(its peak, all processes together).

The results go to bench/results/pipeline_scale.json and a plot of stage time against views
to bench/results/pipeline_scale.png.

    .venv/bin/python bench/pipeline_scale.py [--fractions 8,4,2,1] [--skip-train]
        [--days-again 14,7] [--root var/bench-pipeline-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.host import cpu  # noqa: E402
from reelflow.meter import tree_rss  # noqa: E402

GIB = 1024**3
GOALS = {"full_run_seconds": 7200, "peak_gib": 16, "extra_day_seconds": 300, "day14_over_day7": 1.2}
# How this version runs a fraction; an entry of another (the first version loaded day by day,
# trained, and had no days run again) is kept under `earlier_runs`.
LOAD = "ranges (defaults), then days again alone"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def generate(raw: Path, n: int, seed: int) -> tuple[dict, float | None]:
    """The release at 1/N (kept: a re-invocation reuses it) and the seconds generating took."""
    manifest = raw / "reelflow_manifest.json"
    took = None
    if not manifest.exists():
        from synthetic.kuairec import generate_kuairec

        started = time.perf_counter()
        generate_kuairec(raw, scale="full" if n == 1 else f"full/{n}", seed=seed)
        took = round(time.perf_counter() - started, 1)
    return json.loads(manifest.read_text()), took


def run(home: Path, raw: Path, extra: list[str], env: dict[str, str], log: Path) -> dict:
    """`reelflow run` in a child, its whole process tree's memory sampled every 0.5 s."""
    command = [str(Path(sys.executable).parent / "reelflow"), "run", "--dataset", "kuairec"]
    command += ["--raw", str(raw), "--json", *extra]
    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as err:
        child = subprocess.Popen(
            command,
            env={**os.environ, "REELFLOW_HOME": str(home), **env},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        peak = [0]

        def watch() -> None:
            while child.poll() is None and (rss := tree_rss(child.pid)) is not None:
                peak[0] = max(peak[0], rss)
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        out, _ = child.communicate()
        watcher.join()
    wall = round(time.perf_counter() - started, 1)
    if child.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        return {"status": f"failed (exit {child.returncode})", "wall_seconds": wall, "tail": tail}
    return {
        "status": "ok",
        "wall_seconds": wall,
        "peak_rss_gib_tree": round(peak[0] / GIB, 3),
        "summary": json.loads(out),
    }


def wall(stages: dict, leave_out: tuple[str, ...] = ()) -> float:
    """The stages' wall seconds summed, those named in LEAVE_OUT left out."""
    return round(sum(c["wall_seconds"] for k, c in stages.items() if k not in leave_out), 1)


def day_again(folder: Path, raw: Path, ds: str) -> dict:
    """Day DS run again alone, as the scheduler runs a day (a DAG run of one day)."""
    result = run(
        folder / "home",
        raw,
        ["--start", ds, "--end", ds, "--skip-train", "--rerun"],
        {"REELFLOW_RUN__RANGE_DAYS": "1"},
        folder / f"day-{ds}.stderr.log",
    )
    if result["status"] != "ok":
        return result
    # The release's landing (`land_release`) is not redone: its record is the first load's.
    stages = {k: v for k, v in result.pop("summary")["stages"].items() if k != "land_release"}
    return result | {
        "stages": stages,
        "daily_seconds": wall(stages),
        "daily_seconds_without_materialize": wall(stages, ("materialize",)),
    }


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
    # One colour per stage in both panels; the command's whole wall time in black.
    colour = {s: plt.cm.tab10(i % 10) for i, s in enumerate(stages)} | {"whole command": "black"}
    fig, (load, again) = plt.subplots(1, 2, figsize=(13, 5))
    for stage in [*stages, "whole command"]:
        points = [
            (
                r["views"],
                r["wall_seconds"]
                if stage == "whole command"
                else r["stages"][stage]["wall_seconds"],
            )
            for r in done
            if stage == "whole command" or stage in r["stages"]
        ]
        load.plot(*zip(*points, strict=True), marker="o", label=stage, color=colour[stage])
    load.set_title("the release's first load, per stage (the days in one range)")
    load.set_ylabel("wall seconds, summed over the release's days")
    for label, pick in (("day 14", 0), ("day 7", 1)):
        for stage in [*stages, "whole command"]:
            points = []
            for r in done:
                days = list(r.get("days_again", {}).values())
                if len(days) > pick and days[pick].get("status") == "ok":
                    d = days[pick]
                    seconds = (
                        d["wall_seconds"]
                        if stage == "whole command"
                        else d["stages"].get(stage, {}).get("wall_seconds")
                    )
                    if seconds is not None:
                        points.append((r["views"], seconds))
            # Stages under a second (land's bookkeeping, the repo already applied) are left out;
            # day 7 only where it differs in kind: materialize through the newest day.
            if not points or max(p[1] for p in points) < 1:
                continue
            if pick == 1 and stage not in ("materialize", "whole command"):
                continue
            again.plot(
                *zip(*points, strict=True),
                marker="o" if pick == 0 else "x",
                linestyle="-" if pick == 0 else ":",
                color=colour[stage],
                label=f"{label}: {stage}",
            )
    again.axhline(GOALS["extra_day_seconds"], color="grey", linestyle="--", linewidth=1)
    again.text(done[0]["views"], GOALS["extra_day_seconds"] * 1.05, "goal: 5 minutes", fontsize=7)
    again.set_title("one more day, run again alone (day 7 re-materializes through day 14)")
    again.set_ylabel("wall seconds")
    for ax in (load, again):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("views in the release (generated KuaiRec, 14 days)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("reelflow run: stage time against data size (bench/pipeline_scale.py)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def measure(n: int, args, commit: str, dirty: bool) -> dict:
    folder = Path(args.root) / f"full-{n}"
    raw = folder / "raw" / "KuaiRec 2.0"
    manifest, generate_seconds = generate(raw, n, args.seed)
    days = manifest["days"]
    print(f"1/{n}: {manifest['rows']['big_matrix']} views over {len(days)} days", flush=True)
    entry = {
        "fraction": f"1/{n}",
        "views": manifest["rows"]["big_matrix"],
        "days": len(days),
        "git_commit": commit,
        "dirty": dirty,
        "load": LOAD,
        "train": not args.skip_train,
        "generate_seconds": generate_seconds,
    }
    loaded = folder / "loaded.json"
    if loaded.exists():
        # A finished earlier measurement (another commit or mode): its home holds the days run
        # again and a ledger that says so; this one starts from the raw files again.
        shutil.rmtree(folder / "home")
        loaded.unlink()
    result = run(
        folder / "home",
        raw,
        ["--skip-train"] if args.skip_train else [],
        {},
        folder / "run.stderr.log",
    )
    entry |= {k: v for k, v in result.items() if k != "summary"}
    if result["status"] != "ok":
        return entry
    stages = result["summary"]["stages"]
    entry["stages"] = stages
    entry["stage_wall_seconds_total"] = wall(stages)
    entry["peak_rss_gib_stage_max"] = max(s["peak_rss_gib_total"] for s in stages.values())
    loaded.write_text(json.dumps({"git_commit": commit}))
    picks = [days[int(k) - 1] for k in args.days_again.split(",") if k and int(k) <= len(days)]
    entry["days_again"] = {ds: day_again(folder, raw, ds) for ds in picks}
    again = [d for d in entry["days_again"].values() if d.get("status") == "ok"]
    if len(again) == 2:
        first, second = again
        entry["day14_over_day7"] = round(
            first["daily_seconds_without_materialize"]
            / second["daily_seconds_without_materialize"],
            2,
        )
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", default="8,4,2,1", help="N of each 1/N run, comma-separated")
    parser.add_argument("--root", default=str(REPO / "var" / "bench-pipeline-scale"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip-train", action="store_true", help="the daily stages only, no training or export"
    )
    parser.add_argument(
        "--days-again",
        default="14,7",
        help="the days (1-based) each run again alone after the load; the ratio is first/second",
    )
    args = parser.parse_args()

    commit, dirty = git("rev-parse", "HEAD"), bool(git("status", "--porcelain"))
    out_json = REPO / "bench" / "results" / "pipeline_scale.json"
    previous = json.loads(out_json.read_text()) if out_json.exists() else {}
    earlier = previous.get("earlier_runs", [])
    results = {}
    for r in previous.get("runs", []):
        if r.get("load") == LOAD:
            results[r["fraction"]] = r
        else:
            earlier.append(r)
    load_at_start = os.getloadavg()[0]
    for n in [int(x) for x in args.fractions.split(",")]:
        known = results.get(f"1/{n}", {})
        if (
            known.get("status") == "ok"
            and (known.get("git_commit"), known.get("train")) == (commit, not args.skip_train)
            and not dirty
        ):
            print(f"1/{n}: measured at this commit already, skipped", flush=True)
            continue
        entry = measure(n, args, commit, dirty)
        print(json.dumps({k: v for k, v in entry.items() if k not in ("stages", "tail")}))
        results[entry["fraction"]] = entry
        # Written after each fraction: a finished one is kept when a later one is stopped.
        write_report(out_json, results, earlier, args.seed, load_at_start)


def write_report(
    out_json: Path, results: dict, earlier: list, seed: int, load_at_start: float
) -> None:
    runs = sorted(results.values(), key=lambda r: r["views"])
    report = {
        "benchmark": "pipeline_scale",
        "dataset": "kuairec (generated), fractions of the release's users",
        "seed": seed,
        "protocol": "reelflow run --dataset kuairec with every default (ranges of up to 31 "
        "days), local Spark, embedded SQLite stores; then each of days-again run alone "
        "(REELFLOW_RUN__RANGE_DAYS=1 --start D --end D --skip-train --rerun); stage costs from "
        "each stage's records, summed over days and attempts; day14_over_day7 leaves "
        "materialize out (an older day's re-run re-materializes through the newest day)",
        "goals": GOALS,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
            "load_average_1m_at_start": round(load_at_start, 2),
            "cpu": cpu(),
        },
        "runs": runs,
        "earlier_runs": earlier,
    }
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    plot(runs, out_json.with_suffix(".png"))
    print(f"-> {out_json.relative_to(REPO)}")


if __name__ == "__main__":
    main()
