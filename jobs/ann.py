"""The export's nearest-neighbour index over video vectors, chosen by catalog size and tuned
until its recall against exact search reaches a floor.

Up to `exact_max_videos` videos the index is the exact `IndexFlatIP` (recall 1 by
construction). Above, it is an inverted-file index (`IVF<nlist>,Flat`: k-means lists, exact
inner products inside the lists scanned), and its search parameter `nprobe` (lists scanned
per query) climbs `nprobe_ladder` until recall@k on a sample of real user queries, measured
against exact search over the same catalog, reaches `recall_floor`; the first rung that does
is kept, the fastest setting that is good enough. When no rung does, `IndexBelowRecallFloor`
carries the report so the export publishes nothing and the previous index stays live.

At 1M clustered vectors (bench/faiss_index.py, dim 64, 2 threads) it picks IVF4096 at nprobe
4: recall@10 0.961 on held-out queries at 339x exact search's batched queries/s, built in 25 s
and tuned in 19 s. IVF over HNSW, measured on this machine (100k clustered vectors, 2
threads): IVF1024 built in 4 s and reached recall@10 0.987 at 167x exact search's queries/s;
HNSW32 took 13 s to build and needed efSearch 32 for 0.989, at 15x.

    index = build_ann_index(video_vectors, user_vectors, config.export)
    scores, positions = index.search(user_vectors, 50)
    index.save(folder)  # index.faiss + index.json (the report, nprobe included)
    index = AnnIndex.load(folder)
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from reelflow.config import ExportConfig

INDEX_FILE = "index.faiss"
REPORT_FILE = "index.json"
# k-means training sample per IVF list: faiss warns below 39 points per centroid, and more
# only slows training (1M vectors, 4,096 lists: 164k points; the whole build took 25 s).
TRAIN_POINTS_PER_LIST = 40


class IndexBelowRecallFloor(RuntimeError):
    """No setting of the index reached the recall floor: the index must not be published."""

    def __init__(self, report: dict[str, Any]):
        self.report = report
        super().__init__(
            f"{report['factory']} over {report['size']:,} vectors reached recall@"
            f"{report['recall_k']} {report['recall']:.4f} at best ({_tried(report)}), below "
            f"the floor {report['recall_floor']}"
        )


@dataclass
class AnnIndex:
    index: faiss.Index
    report: dict[str, Any]  # what was built and measured; see build_ann_index

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions) of the top k by inner product; position -1 where fewer than k
        were found."""
        return self.index.search(_as_float32(queries), min(k, self.ntotal))

    def save(self, folder: Path) -> None:
        """`index.faiss` and `index.json` (the report, which holds the search parameter)."""
        folder = Path(folder)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        (folder / REPORT_FILE).write_text(json.dumps(self.report, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> AnnIndex:
        folder = Path(folder)
        index = faiss.read_index(str(folder / INDEX_FILE))
        report = json.loads((folder / REPORT_FILE).read_text())
        _set_search_params(index, report["search_params"])
        return cls(index, report)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, positions) of the true top k by inner product: the ground truth of recall."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(_as_float32(vectors))
    return index.search(_as_float32(queries), min(k, len(vectors)))


def recall_at_k(exact_ids: np.ndarray, approx_ids: np.ndarray, k: int) -> float:
    """Mean over queries of |approximate top k ∩ exact top k| / k (a missing result, -1, is a
    miss)."""
    exact_ids, approx_ids = np.asarray(exact_ids)[:, :k], np.asarray(approx_ids)[:, :k]
    if len(exact_ids) == 0:
        raise ValueError("recall needs at least one query")
    k = exact_ids.shape[1]
    hits = sum(
        len(np.intersect1d(truth, found[found >= 0]))
        for truth, found in zip(exact_ids, approx_ids, strict=True)
    )
    return hits / (len(exact_ids) * k)


def default_nlist(size: int) -> int:
    """About 4·√n lists, rounded to a power of two, and at least 39 vectors per list."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(size)))
    while nlist > 1 and size < 39 * nlist:
        nlist //= 2
    return nlist


def build_ann_index(
    vectors: np.ndarray, queries: np.ndarray, config: ExportConfig, seed: int = 0
) -> AnnIndex:
    """The index for `vectors` (inner product, searched as given: the caller normalizes, or
    not), exact or IVF by size, its `nprobe` tuned on up to `config.recall_queries` of
    `queries` drawn at random (seed `seed`). Raises `IndexBelowRecallFloor` when tuning ends
    below `config.recall_floor`.

    The report: type, factory, metric, size, dim, nlist (None when exact), search_params
    ({"nprobe": n}, {} when exact), recall (the measured recall@recall_k of the kept setting;
    1.0 when exact, unmeasured), recall_k, recall_floor, queries_used, tuning (one
    {"nprobe", "recall", "seconds"} per rung tried), build_seconds (training + adding),
    tune_seconds (exact ground truth + every rung), threads, exact_max_videos, reason.
    """
    vectors = _as_float32(vectors)
    size, dim = vectors.shape
    threads = config.index_threads or os.cpu_count() or 1
    faiss.omp_set_num_threads(threads)
    report: dict[str, Any] = {
        "size": size,
        "dim": dim,
        "metric": "inner_product",
        "recall_k": config.recall_k,
        "recall_floor": config.recall_floor,
        "threads": threads,
        "exact_max_videos": config.exact_max_videos,
    }
    if size <= config.exact_max_videos:
        started = time.perf_counter()
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        report.update(
            type="IndexFlatIP",
            factory="Flat",
            nlist=None,
            search_params={},
            recall=1.0,
            queries_used=0,
            tuning=[],
            build_seconds=time.perf_counter() - started,
            tune_seconds=0.0,
            reason=f"{size:,} videos <= exact_max_videos {config.exact_max_videos:,}: exact",
        )
        return AnnIndex(index, report)

    queries = _as_float32(queries)
    if len(queries) == 0:
        raise ValueError("no user queries to measure the index's recall on")
    rng = np.random.default_rng(seed)
    if len(queries) > config.recall_queries:
        queries = queries[rng.choice(len(queries), config.recall_queries, replace=False)]

    nlist = config.ivf_nlist or default_nlist(size)
    factory = f"IVF{nlist},Flat"
    started = time.perf_counter()
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    train = vectors
    if size > TRAIN_POINTS_PER_LIST * nlist:
        train = vectors[np.sort(rng.choice(size, TRAIN_POINTS_PER_LIST * nlist, replace=False))]
    index.train(train)
    index.add(vectors)
    build_seconds = time.perf_counter() - started

    started = time.perf_counter()
    k = min(config.recall_k, size)
    _, truth = exact_search(vectors, queries, k)
    tuning, recall = [], 0.0
    for nprobe in sorted({min(int(n), nlist) for n in config.nprobe_ladder}):
        rung_started = time.perf_counter()
        _set_search_params(index, {"nprobe": nprobe})
        _, found = index.search(queries, k)
        recall = recall_at_k(truth, found, k)
        tuning.append(
            {"nprobe": nprobe, "recall": recall, "seconds": time.perf_counter() - rung_started}
        )
        if recall >= config.recall_floor:
            break
    best = max(tuning, key=lambda rung: rung["recall"])
    _set_search_params(index, {"nprobe": best["nprobe"]})
    report.update(
        type="IndexIVFFlat",
        factory=factory,
        nlist=nlist,
        search_params={"nprobe": best["nprobe"]},
        recall=best["recall"],
        queries_used=len(queries),
        tuning=tuning,
        build_seconds=build_seconds,
        tune_seconds=time.perf_counter() - started,
        reason=(
            f"{size:,} videos > exact_max_videos {config.exact_max_videos:,}: IVF, nprobe "
            f"tuned to recall@{k} >= {config.recall_floor}"
        ),
    )
    if best["recall"] < config.recall_floor:
        raise IndexBelowRecallFloor(report)
    return AnnIndex(index, report)


def mlflow_fields(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """(params, metrics) of an index report, named `index.*`, for `mlflow.log_params` and
    `mlflow.log_metrics`."""
    params = {
        f"index.{key}": report[key]
        for key in ("type", "factory", "nlist", "size", "dim", "recall_k", "recall_floor")
    }
    params.update({f"index.{key}": value for key, value in report["search_params"].items()})
    metrics = {
        f"index.{key}": float(report[key])
        for key in ("recall", "build_seconds", "tune_seconds", "queries_used")
    }
    return params, metrics


def _set_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    if "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])


def _tried(report: dict[str, Any]) -> str:
    return ", ".join(f"nprobe {r['nprobe']}: {r['recall']:.4f}" for r in report["tuning"])


def _as_float32(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a (rows, dim) matrix, got shape {array.shape}")
    return array
