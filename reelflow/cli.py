"""`reelflow`: every stage of the pipeline from the command line.

reelflow generate --dataset kuairec --out data/kuairec --scale small
reelflow run --dataset kuairec --raw data/kuairec
reelflow recommend --user 42
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lake.partitions import check_day, partition
from models.registry import MODELS, SEQUENCE_DATA
from reelflow.names import DATASETS
from reelflow.paths import Paths
from reelflow.runs import release_land_record
from synthetic import GENERATORS, generate

DAG_START_DATE = "2020-01-01"  # the DAGs' start_date when $REELFLOW_START_DATE is unset


# With --json, stdout holds the summary alone: what libraries print while a command runs
# (Feast's materialization progress) goes to stderr, and the summary to the real stdout.
_SUMMARY_OUT: list = []


def _emit(summary: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, default=str), file=(_SUMMARY_OUT or [sys.stdout])[-1])
    else:
        print(text if text is not None else json.dumps(summary, indent=2, default=str))


def day(value: str) -> str:
    """argparse type of every day option: a real UTC date written YYYY-MM-DD."""
    try:
        return check_day(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a UTC day: expected a real date YYYY-MM-DD"
        ) from None


def at_least_one(value: str) -> int:
    """argparse type of a count that must be 1 or more (`recommend --k`)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _days(start: str, end: str) -> list[str]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if last < first:
        raise SystemExit(f"--end {end} is before --start {start}")
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def data_days(dataset: str, raw: Path) -> list[str]:
    """The UTC days a release covers, from landing it (parsed once, skipped when unchanged:
    the same step as the daily DAG's `land` task, which then finds it done)."""
    from jobs.landing import land
    from reelflow.meter import StageMeter

    with StageMeter() as meter:
        summary = land(dataset, raw)
    if not summary.get("skipped"):
        from lake.spark import stop_jvm
        from reelflow.state import write_json

        stop_jvm()  # the DAG runs start their own JVM: don't hold a second one meanwhile
        # The release is parsed here, once, before any DAG run (whose `land` task then finds
        # it done): its cost is the run's `land_release` stage, kept until the next landing.
        kept = {k: v for k, v in summary.items() if k != "files"}
        write_json(release_land_record(Paths.from_env()), kept | {"resources": meter.result})
    days = summary["tables"]["interactions"]["days"]
    if not days:
        raise SystemExit(f"{raw}: no interaction has a readable time; nothing to run")
    return days


def plan_days(landed: list[str], start: str | None, end: str | None, max_days: int) -> list[str]:
    """The days `reelflow run` runs: the landed days (those that hold data) within
    --start/--end. A plan spanning more than `max_days` calendar days (a stray far-off
    timestamp, a mislabelled file) is refused unless both --start and --end chose it."""
    if start and end and end < start:
        raise SystemExit(f"--end {end} is before --start {start}")
    days = sorted(d for d in landed if (not start or d >= start) and (not end or d <= end))
    if not days:
        held = f"{min(landed)} .. {max(landed)}" if landed else "no day"
        raise SystemExit(
            f"no day with data between {start or 'the first'} and {end or 'the last'} "
            f"(the landed data holds {held}); nothing to run"
        )
    first, last = days[0], days[-1]
    span = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
    if span > max_days and not (start and end):
        raise SystemExit(
            f"the data spans {span:,} days ({first} .. {last}, {len(days):,} of them with data), "
            f"more than run.max_days = {max_days}: pass --start and --end to choose the days "
            "to run, or raise REELFLOW_RUN__MAX_DAYS"
        )
    return days


def day_ranges(days: list[str], size: int) -> list[tuple[str, str]]:
    """(first, last) of consecutive runs of up to `size` of the plan's DAYS (days with data, in
    order): one daily DAG run each."""
    size = max(1, size)
    return [(days[i], days[min(i + size, len(days)) - 1]) for i in range(0, len(days), size)]


def affected_days(first: str, to: str | None, last_data_day: str, window: int) -> list[str]:
    """The days to re-run after fixing days FIRST..TO: those days and every later day whose
    features read one of them (a `window`-day horizon ends on it), up to the data's last day."""
    end = to or first
    if date.fromisoformat(end) < date.fromisoformat(first):
        raise SystemExit(f"--to {end} is before --from {first}")
    if date.fromisoformat(first) > date.fromisoformat(last_data_day):
        raise SystemExit(f"--from {first} is after the data's last day {last_data_day}")
    reach = date.fromisoformat(end) + timedelta(days=window - 1)
    return _days(first, min(reach, date.fromisoformat(last_data_day)).isoformat())


def cmd_generate(args) -> int:
    manifest = generate(
        args.dataset, args.out, scale=args.scale, seed=args.seed, variant=args.variant
    )
    text = (
        f"wrote {args.dataset}-format data to {args.out}: {manifest['users']} users, "
        f"{manifest['videos']} videos, {sum(manifest['rows_per_day'].values())} log rows over "
        f"{len(manifest['days'])} days ({manifest['days'][0]} .. {manifest['days'][-1]})"
    )
    _emit(manifest, args.json, text)
    return 0


def cmd_normalize(args) -> int:
    from jobs.normalize import normalize
    from reelflow.state import check_home, record_home

    paths = Paths.from_env()
    check_home(paths, args.dataset)  # refuse another dataset's home before any work
    summary = normalize(args.dataset, args.raw, args.ds)
    record_home(paths, args.dataset, args.raw)  # only once the release landed and normalized
    _emit(summary, args.json)
    return 0


def cmd_validate(args) -> int:
    from jobs.validate import validate_day

    _emit(validate_day(args.ds), args.json)
    return 0


def cmd_features(args) -> int:
    from features.compute import compute_features

    _emit(compute_features(args.ds), args.json)
    return 0


def cmd_materialize(args) -> int:
    from features.store import apply_if_changed, materialize_day
    from lake.schema import ONLINE_VIEWS

    apply_if_changed()
    _emit(materialize_day(args.ds, list(ONLINE_VIEWS)), args.json)
    return 0


def _train_text(summary: dict[str, Any]) -> str:
    m, p = summary["metrics"], summary["popularity"]
    gate = "promoted to @champion" if summary["promoted"] else "not promoted"
    return "\n".join(
        [
            f"{summary['model']} v{summary['version']} (run {summary['run_id']}): "
            f"{gate}: {summary['gate_reason']}",
            *(
                f"  {name}: {value:.4f} (popularity {p.get('popularity_' + name, float('nan')):.4f})"
                for name, value in m.items()
            ),
        ]
    )


def cmd_train(args) -> int:
    from models.training import train_and_register

    summary = train_and_register(args.model, args.holdout, teacher_version=args.teacher_version)
    _emit(summary, args.json, _train_text(summary))
    return 0


def cmd_promote(args) -> int:
    """The same gate as after training, on the version's own validation split."""
    from models.tracking import CHAMPION, registered_name
    from models.training import promote

    decision = promote(args.model, args.version, force=args.force)
    name = registered_name(args.model)
    text = (
        f"{name} version {args.version}: {decision['decision']} ({decision['reason']}); "
        f"@{CHAMPION} -> version {decision['champion_version']}"
    )
    before = decision["champion_before"]
    if before is not None and before["detected"]:
        text = (
            f"@{CHAMPION} was on version {before['version']}, set outside the gate (found "
            f"{before['set_at']}, recorded in its gate_history)\n{text}"
        )
    _emit({**decision, "model": name}, args.json, text)
    return 0 if decision["promoted"] else 2


def cmd_export(args) -> int:
    from reelflow import tasks

    _emit(tasks.export(args.ds), args.json)
    return 0


# The candidate list's own fields in `recommend_v1`; the others are the user's features.
CANDIDATE_FIELDS = ("video_ids", "scores", "sources", "model_version")


def recommendations(user_id: int, k: int) -> dict[str, Any]:
    from features.store import online_features

    # The feature names come from the `recommend_v1` service (feature_repo/repo.py), once.
    row = {
        name: values[0]
        for name, values in online_features([{"user_id": user_id}], "recommend_v1").items()
    }
    shown = [n for n in row if n not in ("user_id", *CANDIDATE_FIELDS)]
    videos = row.get("video_ids") or []
    scores = row.get("scores") or []
    sources = row.get("sources") or []
    if not videos:
        # A user the store does not know (new, or idle for longer than the TTL): the export's
        # fallback list, not an error.
        fallback = Paths.from_env().exports / "latest" / "fallback.json"
        if fallback.exists():
            videos = json.loads(fallback.read_text())["video_ids"]
            scores = [float(len(videos) - i) for i in range(len(videos))]
            sources = ["fallback"] * len(videos)
    return {
        "user_id": user_id,
        "model_version": row.get("model_version"),
        "user_features": {k_: row.get(k_) for k_ in shown},
        "candidates": [
            {"rank": i + 1, "video_id": int(v), "score": float(s), "source": src}
            for i, (v, s, src) in enumerate(zip(videos, scores, sources, strict=False))
        ][:k],
    }


def cmd_recommend(args) -> int:
    result = recommendations(args.user, args.k)
    if not result["candidates"]:
        print(f"no candidates online for user {args.user} (run the export first)", file=sys.stderr)
        return 1
    lines = [
        f"user {args.user} (ranker v{result['model_version']}; online features: "
        + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in result["user_features"].items()
        )
        + ")"
    ]
    lines += [
        f"  {c['rank']:>3}. video {c['video_id']:<8} score {c['score']:.4f}  [{c['source']}]"
        for c in result["candidates"]
    ]
    _emit(result, args.json, "\n".join(lines))
    return 0


STAGE_ORDER = (
    "land_release",
    "land",
    "apply_feature_repo",
    "normalize",
    "validate",
    "features",
    "materialize",
)


def stage_costs(paths: Paths, days: list[str]) -> dict[str, dict[str, Any]]:
    """Per stage over DAYS, from each step's recorded `resources` (reelflow/meter.py): how many
    days it ran, its wall and CPU seconds summed, its peak memory (Python, JVM, the whole
    process tree) the largest of any day. `land_release` is the release's parse by
    `reelflow run` before the DAG runs (once, not per day)."""
    peaks = ("peak_rss_gib_python", "peak_rss_gib_jvm", "peak_rss_gib_total")
    costs: dict[str, dict[str, Any]] = {}
    records = [("land_release", release_land_record(paths))]
    records += [
        (f.stem, f) for ds in days for f in sorted(partition(paths.runs, ds).glob("*.json"))
    ]
    for name, f in records:
        found = json.loads(f.read_text()) if f.exists() else {}
        spent = found.get("resources")
        if not spent:
            continue
        stage = costs.setdefault(
            name, {"days": 0, "wall_seconds": 0.0, "cpu_seconds": 0.0} | dict.fromkeys(peaks)
        )
        stage["days"] += found.get("covers_days", 1)  # a range's cost is on its first day
        for key in ("wall_seconds", "cpu_seconds"):
            stage[key] = round(stage[key] + spent[key], 3)
        for key in peaks:
            if spent.get(key) is not None:
                stage[key] = max(stage[key] or 0.0, spent[key])
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    return dict(sorted(costs.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def summarize(paths: Paths, days: list[str]) -> dict[str, Any]:
    def load(ds: str, step: str) -> dict[str, Any]:
        f = partition(paths.runs, ds) / f"{step}.json"
        return json.loads(f.read_text()) if f.exists() else {}

    per_day = {}
    for ds in days:
        norm = load(ds, "normalize").get("tables", {}).get("interactions", {})
        per_day[ds] = {
            "normalized": norm.get("written"),
            "quarantined": norm.get("quarantined"),
            "validation": "passed" if load(ds, "validate").get("success") else "failed",
            "user_features": load(ds, "features").get("rows", {}).get("user_features"),
            "video_features": load(ds, "features").get("rows", {}).get("video_features"),
            "materialized": bool(load(ds, "materialize")),
        }
    return {
        "days": per_day,
        "stages": stage_costs(paths, days),
        "train": load(days[-1], "train_ranker"),
        "sequence_models": {
            m: load(days[-1], f"train_{m}")
            for m, spec in MODELS.items()
            if spec.data == SEQUENCE_DATA and load(days[-1], f"train_{m}")
        },
        "export": load(days[-1], "export"),
    }


def _summary_text(summary: dict[str, Any]) -> str:
    lines = [
        "day         normalized  quarantined  validation  user_feats  video_feats  materialized"
    ]
    for ds, d in summary["days"].items():
        lines.append(
            f"{ds}  {d['normalized']!s:>10}  {d['quarantined']!s:>11}  {d['validation']:>10}  {d['user_features']!s:>10}  {d['video_features']!s:>11}  {d['materialized']!s:>12}"
        )
    t = summary["train"]
    if t:
        m, p = t["metrics"], t["popularity"]
        lines.append(
            f"model: {t['model']} v{t['version']} ({'promoted to @champion' if t['promoted'] else 'not promoted'}: {t['gate_reason']})"
        )
        lines.append(
            f"  test day {t['test_ds']} full ranking: NDCG@10 {m['test_ndcg_at_10']:.4f} "
            f"(popularity {p['popularity_test_ndcg_at_10']:.4f}), Recall@10 "
            f"{m['test_recall_at_10']:.4f} (popularity {p['popularity_test_recall_at_10']:.4f}), "
            f"HR@10 {m['test_hr_at_10']:.4f}"
        )
    for t in summary.get("sequence_models", {}).values():
        m, p = t["metrics"], t["popularity"]
        lines.append(
            f"model: {t['model']} v{t['version']} ({'promoted to @champion' if t['promoted'] else 'not promoted'}), "
            f"leave-one-out full ranking: NDCG@10 {m['test_ndcg_at_10']:.4f} (popularity "
            f"{p['popularity_test_ndcg_at_10']:.4f}), Recall@10 {m['test_recall_at_10']:.4f}"
        )
    if summary.get("stages"):
        lines.append(
            "stage                 days    wall s     CPU s  peak GiB: python    JVM  total"
        )
        for name, c in summary["stages"].items():
            jvm = "-" if c["peak_rss_gib_jvm"] is None else f"{c['peak_rss_gib_jvm']:.2f}"
            lines.append(
                f"{name:<20} {c['days']:>5} {c['wall_seconds']:>9.1f} {c['cpu_seconds']:>9.1f}"
                f"  {c['peak_rss_gib_python']:>15.2f} {jvm:>6} {c['peak_rss_gib_total']:>6.2f}"
            )
    e = summary["export"]
    if e:
        lines.append(
            f"export: {e['index']['type']} index of {e['index']['size']} videos (dim {e['index']['dim']}), "
            f"{e['candidates']['rows']} candidates for {e['candidates']['users']} users ({e['candidates']['by_source']})"
        )
    return "\n".join(lines)


def _through_scheduler(
    paths: Paths, days: list[str], *, skip_train: bool, wait: bool
) -> dict[str, str]:
    """The daily DAG over DAYS as an `airflow backfill create` (`--reprocess-behavior
    completed`, one run at a time, oldest first) that the running scheduler executes, then
    reelflow_train and reelflow_export triggered on the last day. Training waits for the
    days; without `wait`, the export is left running. Returns the manual runs' ids."""
    from reelflow import airflow_runner

    needed = {"reelflow_daily"} | (set() if skip_train else {"reelflow_train", "reelflow_export"})
    paused = sorted(needed & airflow_runner.paused_dags(paths))
    if paused:  # the scheduler queues no task of a paused DAG: the wait would never end
        raise SystemExit(
            f"paused: {', '.join(paused)}; unpause with `airflow dags unpause DAG_ID`"
            + ("" if skip_train else " (or pass --skip-train)")
        )
    start = os.environ.get("REELFLOW_START_DATE", DAG_START_DATE)[:10]
    if not skip_train and days[-1] < start:
        # Backfill runs ignore the DAGs' start date; a triggered run before it gets no task
        # and "succeeds" having trained nothing. The scheduler's DAGs were parsed with it.
        raise SystemExit(
            f"the last day {days[-1]} is before the DAGs' start date {start}: training and "
            f"export would run no task; restart the stack with an earlier one (`reelflow ui "
            f"--stop`, then `REELFLOW_START_DATE={days[0]} reelflow ui`), or pass --skip-train"
        )
    from reelflow.ui import daily_end_date

    end = daily_end_date(paths)
    if end and days[-1] > end:
        # The stack parsed reelflow_daily ending at the release it found landed then: a run
        # past it would "succeed" with no task. A newer release came in since.
        raise SystemExit(
            f"the running stack's reelflow_daily ends on {end}, before {days[-1]}: restart it "
            "(`reelflow ui --stop`, then `reelflow ui`) to schedule the newly landed days"
        )
    print(
        f"scheduler running: backfill of reelflow_daily {days[0]} .. {days[-1]} "
        "with --reprocess-behavior completed (watch it in the Airflow UI)",
        file=sys.stderr,
        flush=True,
    )
    airflow_runner.backfill(paths, "reelflow_daily", days[0], days[-1])
    if wait or not skip_train:
        airflow_runner.wait_for_runs(paths, "reelflow_daily", days=days)
    runs: dict[str, str] = {}
    if not skip_train:
        for dag_id in ("reelflow_train", "reelflow_export"):
            runs[dag_id] = airflow_runner.trigger(paths, dag_id, days[-1])
            if wait or dag_id == "reelflow_train":
                airflow_runner.wait_for_runs(paths, dag_id, run_ids=[runs[dag_id]])
    return runs


def cmd_run(args) -> int:
    from reelflow import airflow_runner
    from reelflow.config import load_config
    from reelflow.state import check_home, record_home

    paths = Paths.from_env()
    raw = Path(args.raw).resolve()
    check_home(paths, args.dataset)
    known = data_days(args.dataset, raw)
    record_home(paths, args.dataset, raw)  # only once the release landed
    config = load_config()
    days = plan_days(known, args.start, args.end, config.run.max_days)
    airflow_runner.migrate(paths)
    attempt = None
    if scheduler_on(paths):
        # `reelflow ui` (or a deployment) runs a scheduler on this home: the runs are made by
        # it, as a backfill, so that the UI shows them as the scheduler's own. Its DAGs were
        # parsed with its own start date, which `_through_scheduler` checks.
        _through_scheduler(paths, days, skip_train=args.skip_train, wait=True)
    else:
        # The DAGs start on $REELFLOW_START_DATE (default 2020-01-01), and Airflow creates no
        # task for a run before a DAG's start: an older release (MovieLens is from 1997) would
        # "succeed" day after day with nothing run. The `dags test` child parses them with
        # this environment: start them no later than the plan's first day.
        if days[0] < os.environ.get("REELFLOW_START_DATE", DAG_START_DATE)[:10]:
            os.environ["REELFLOW_START_DATE"] = days[0]
        conf = {"dataset": args.dataset, "raw": str(raw)}
        plan = [
            ("reelflow_daily", first, conf | ({"through": last} if last != first else {}))
            for first, last in day_ranges(days, config.run.range_days)
        ]
        if not args.skip_train:
            plan += [("reelflow_train", days[-1], None), ("reelflow_export", days[-1], None)]
        ledger = run_ledger(paths, rerun=args.rerun)
        status = ledger.plan_status(plan)
        resumed = (
            f"; resuming: {status['complete']} done in an earlier attempt, "
            f"{status['resumed']} to finish (--rerun runs all again)"
            if status["complete"] or status["resumed"]
            else ""
        )
        print(
            f"running {status['to_run']} of {len(plan)} DAG runs through Airflow "
            f"({days[0]} .. {days[-1]}, {len(days)} days in daily runs of up to "
            f"{config.run.range_days} days){resumed}; "
            f"log: {paths.runs / 'logs' / 'run.log'}",
            file=sys.stderr,
            flush=True,
        )
        airflow_runner.run_dags(paths, plan, ledger=ledger)
        attempt = {k: status[k] for k in ("complete", "resumed")}
    summary = summarize(paths, days)
    if attempt is not None:  # what this attempt skipped or finished; `stages` is every attempt's
        summary["resumed"] = attempt
    _emit(summary, args.json, _summary_text(summary))
    return 0


def scheduler_on(paths: Paths) -> bool:
    """Whether a scheduler runs on this home: one heartbeats into its metadata DB, or the one
    `reelflow ui` started is alive (on a busy machine its heartbeat can lag past Airflow's
    health threshold; running the DAGs beside it with `dags test` would then be wrong)."""
    from reelflow import airflow_runner, ui

    return airflow_runner.scheduler_running(paths) or ui.scheduler_started(paths)


def run_ledger(paths: Paths, rerun: bool = False):
    """The ledger of `reelflow run`'s finished DAG runs (airflow_runner.Ledger), valid for the
    release as landed now (its fingerprint: files, reader, quality rules) and the config; it
    starts afresh when either changed, or on `rerun`."""
    import hashlib

    from jobs.landing import landed
    from reelflow import airflow_runner
    from reelflow.config import load_config

    key = hashlib.sha256(
        json.dumps(
            {"landed": landed(paths).get("fingerprint"), "config": load_config().to_dict()},
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    return airflow_runner.Ledger.start(paths.runs / "logs" / "run.ledger.json", key, rerun)


def cmd_reprocess(args) -> int:
    from reelflow import airflow_runner
    from reelflow.config import load_config
    from reelflow.state import read_state

    paths = Paths.from_env()
    state = read_state(paths)
    if not state.get("dataset"):
        raise SystemExit(f"{paths.home} holds no dataset yet: run `reelflow run` first")
    raw = Path(state["raw"])
    window = load_config().features.long_window_days
    known = data_days(state["dataset"], raw)
    days = affected_days(args.from_, args.to, known[-1], window)
    summary: dict[str, Any] = {
        "days": days,
        "window_days": window,
        "train_export": None if args.skip_train else days[-1],
    }
    if scheduler_on(paths):
        summary["mode"] = "scheduler"
        summary |= _through_scheduler(
            paths, days, skip_train=args.skip_train, wait=not args.no_wait
        )
    else:
        summary["mode"] = "dags test"
        airflow_runner.migrate(paths)
        print(
            f"no scheduler heartbeats into {paths.airflow} (the embedded default): running "
            f"reelflow_daily {days[0]} .. {days[-1]} with `airflow dags test`, one day after "
            f"another; log: {paths.runs / 'logs' / 'reprocess.log'}",
            file=sys.stderr,
            flush=True,
        )
        conf = {"dataset": state["dataset"], "raw": str(raw)}
        plan = [("reelflow_daily", ds, conf) for ds in days]
        if not args.skip_train:
            plan += [("reelflow_train", days[-1], None), ("reelflow_export", days[-1], None)]
        # These units run again: a reprocess that stops half way leaves them to be finished
        # by the next `reelflow run`, never skipped as done.
        ledger = run_ledger(paths)
        for dag_id, ds, _ in plan:
            ledger.units.pop(f"{dag_id} {ds}", None)
        ledger.save()
        airflow_runner.run_dags(paths, plan, log_name="reprocess", ledger=ledger)
    text = (
        f"reprocessed {len(days)} days ({days[0]} .. {days[-1]}, the {window}-day feature "
        f"horizon) through {summary['mode']}"
        + ("" if args.skip_train else f"; trained and exported for {days[-1]}")
    )
    _emit(summary, args.json, text)
    return 0


def cmd_ui(args) -> int:
    """Airflow, MLflow and Feast UIs of the home on 127.0.0.1 (reelflow/ui.py)."""
    from reelflow import ui

    paths = Paths.from_env()
    if args.stop:
        summary = ui.stop(paths)
        text = "stopped: " + (", ".join(summary["stopped"]) or "nothing was running")
    elif args.status:
        summary = ui.status(paths)
        text = ui.describe(summary)
    else:
        summary = ui.start(paths)
        text = ui.describe(summary) + (
            "\nThe DAGs start paused: unpause reelflow_daily in the Airflow UI to let the "
            "scheduler run it. `reelflow ui --stop` stops everything."
        )
    _emit(summary, args.json, text)
    return 0


def cmd_cluster(args) -> int:
    """A Spark standalone master and two workers on loopback (reelflow/cluster.py)."""
    from reelflow import cluster

    paths = Paths.from_env()
    if args.action == "down":
        summary = cluster.down(paths)
        text = "stopped: " + (", ".join(summary["stopped"]) or "nothing was running")
    else:
        summary = cluster.up(paths) if args.action == "up" else cluster.status(paths)
        text = cluster.describe(summary)
    _emit(summary, args.json, text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reelflow",
        description="Batch ML pipeline for short-video recommendation: "
        "Spark normalize/features, Feast, PyTorch + MLflow, FAISS export, run by Airflow.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str, fn, json_flag: bool = True):
        p = sub.add_parser(name, help=help_, description=help_)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print a machine-readable summary")
        p.set_defaults(fn=fn)
        return p

    p = add(
        "generate",
        "Write synthetic data in a dataset's native files (deterministic for a seed).",
        cmd_generate,
    )
    p.add_argument("--dataset", choices=list(GENERATORS), default="kuairec")
    p.add_argument("--variant", help="kuairand: pure, 1k, 27k; microlens: 100k, 50k")
    p.add_argument("--out", required=True, help="folder to write the release files into")
    p.add_argument(
        "--scale",
        default="small",
        help="tiny: tests; demo: the quickstart; small: ~1M interactions; full: the release's "
        "size; S/N: 1/N of scale S's users (KuaiRec, KuaiRand) and videos (KuaiRand)",
    )
    p.add_argument("--seed", type=int, default=0)

    p = add(
        "normalize",
        "Normalize raw files into the unified schema (Spark): one UTC day, or all.",
        cmd_normalize,
    )
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument(
        "--raw", required=True, help="the release folder as unpacked, or its data/ folder"
    )
    p.add_argument("--ds", type=day, help="UTC day YYYY-MM-DD (default: every day in the data)")

    p = add(
        "validate",
        "Run the Great Expectations gate on one day's normalized partitions.",
        cmd_validate,
    )
    p.add_argument("--ds", type=day, required=True, help="UTC day YYYY-MM-DD")
    p = add(
        "features", "Compute one day's user/video features and ranker labels (Spark).", cmd_features
    )
    p.add_argument("--ds", type=day, required=True, help="UTC day YYYY-MM-DD")
    p = add("materialize", "Load one day's features into the Feast online store.", cmd_materialize)
    p.add_argument("--ds", type=day, required=True, help="UTC day YYYY-MM-DD")
    p = add(
        "train",
        "Train a model, log it to MLflow, register it and run the promotion gate.",
        cmd_train,
    )
    p.add_argument("--model", choices=list(MODELS), default="ranker")
    p.add_argument(
        "--holdout",
        type=day,
        help="ranker: the test UTC day (default: the last labelled day; the day before "
        "validates); sequence models: the last day of data (default: all; leave-one-out)",
    )
    p.add_argument(
        "--teacher-version",
        type=int,
        help="student only: the reelflow-bert4rec version to distill (default: its @champion)",
    )
    p = add(
        "promote",
        "Run the promotion gate for a registered version (re-scored on its validation day).",
        cmd_promote,
    )
    p.add_argument("--model", choices=list(MODELS), default="ranker")
    p.add_argument("--version", type=int, required=True)
    p.add_argument(
        "--force", action="store_true", help="promote even if the gate says no (recorded)"
    )
    p = add(
        "export",
        "Build the FAISS index and candidate table for a day and publish them online.",
        cmd_export,
    )
    p.add_argument("--ds", type=day, required=True, help="UTC day YYYY-MM-DD")
    p = add(
        "recommend",
        "Print a user's candidates and features from the Feast online store.",
        cmd_recommend,
    )
    p.add_argument("--user", type=int, required=True)
    p.add_argument(
        "--k", type=at_least_one, default=10, help="how many candidates to print (at least 1)"
    )
    p = add(
        "run", "Run the whole pipeline through Airflow, day by day, then train and export.", cmd_run
    )
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--start", type=day, help="first UTC day YYYY-MM-DD (default: the data's first)")
    p.add_argument("--end", type=day, help="last UTC day YYYY-MM-DD (default: the data's last)")
    p.add_argument("--skip-train", action="store_true", help="only the daily DAG")
    p.add_argument(
        "--rerun",
        action="store_true",
        help="run every DAG run again; by default those an earlier attempt on the same landed "
        "release and config finished are skipped, and a failed one resumes at its failed task",
    )
    p = add(
        "reprocess",
        "After fixing day FROM (a corrected raw file): re-run it and every later day whose "
        "features read it (the long-window horizon), then train and export, through Airflow "
        "backfills with reprocessing (a running scheduler) or `airflow dags test` (none).",
        cmd_reprocess,
    )
    p.add_argument(
        "--from", dest="from_", metavar="D", type=day, required=True, help="first fixed UTC day"
    )
    p.add_argument("--to", metavar="E", type=day, help="last fixed UTC day (default: --from)")
    p.add_argument("--skip-train", action="store_true", help="only the daily DAG")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="scheduler: return once the runs are created (training still waits for the days)",
    )
    p = add(
        "ui",
        "Start the Airflow (api-server, scheduler, dag-processor, triggerer), MLflow and Feast "
        "UIs of the home on 127.0.0.1 and print their URLs and the Airflow login.",
        cmd_ui,
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--stop", action="store_true", help="stop what `reelflow ui` started")
    what.add_argument("--status", action="store_true", help="what runs, and who set each @champion")
    p = add(
        "cluster",
        "A Spark standalone cluster on 127.0.0.1 (a master and two workers from the pyspark "
        "install) for the daily DAG's Spark tasks; prints the connection that sends them there.",
        cmd_cluster,
    )
    p.add_argument("action", choices=["up", "down", "status"])
    return parser


def error_message(exc: BaseException) -> str:
    """What the CLI prints for a failure: the exception's message, or, when it has none (a bare
    `assert`, a library's empty error), its type and repr, so the line is never empty."""
    text = str(exc).strip()
    if not text:
        return f"{type(exc).__name__}: {exc!r} (no message; REELFLOW_DEBUG=1 shows the traceback)"
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "json", False):
            _SUMMARY_OUT.append(sys.stdout)
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    return args.fn(args)
            finally:
                _SUMMARY_OUT.pop()
        return args.fn(args)
    except SystemExit:
        raise
    except Exception as exc:  # a clear one-line error for people; tracebacks with REELFLOW_DEBUG=1
        import os

        if os.environ.get("REELFLOW_DEBUG"):
            raise
        print(f"reelflow {args.command}: error: {error_message(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
