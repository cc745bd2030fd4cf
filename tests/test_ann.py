import dataclasses

import faiss
import numpy as np
import pytest

from jobs.ann import (
    AnnIndex,
    IndexBelowRecallFloor,
    build_ann_index,
    default_nlist,
    exact_search,
    mlflow_fields,
    recall_at_k,
)
from reelflow.config import ExportConfig, load_config

# One thread: the suite shares the machine, and tiny indexes gain nothing from more.
SMALL = ExportConfig(exact_max_videos=1_000, ivf_nlist=64, index_threads=1)


def clustered(rows: int, dim: int = 16, centers: int = 50, seed: int = 0) -> np.ndarray:
    """L2-normalized draws around Gaussian centers (noise as wide as the centers' spread)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).standard_normal((centers, dim))
    points = means[rng.integers(0, centers, rows)] + rng.standard_normal((rows, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_recall_counts_the_exact_neighbours_an_index_found():
    videos = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    scores, truth = exact_search(videos, queries, 2)
    assert truth.tolist() == [[0, 1], [2, 1]]
    np.testing.assert_allclose(scores, [[1.0, 0.8], [1.0, 0.6]], rtol=1e-6)
    # The first query's second neighbour is wrong (video 2, not 1); the second query's list
    # is short (-1: fewer found than asked): one right of two each, 2 of 4.
    assert recall_at_k(truth, np.array([[0, 2], [2, -1]]), 2) == 0.5
    assert recall_at_k(truth, np.array([[0, 2], [2, 1]]), 2) == 0.75
    assert recall_at_k(truth, truth, 2) == 1.0
    # Order inside the top k does not matter; only the first k columns count.
    assert recall_at_k(truth, np.array([[1, 0, 3], [1, 2, 3]]), 2) == 1.0
    assert recall_at_k(truth[:, :1], np.array([[1, 0], [2, 1]]), 1) == 0.5


def test_small_catalog_gets_the_exact_index():
    videos, users = clustered(500), clustered(50, seed=1)
    index = build_ann_index(videos, users, SMALL)
    assert isinstance(index.index, faiss.IndexFlatIP)
    assert index.report["type"] == "IndexFlatIP"
    assert index.report["recall"] == 1.0
    assert index.report["search_params"] == {}
    assert index.search(users, 10)[1].tolist() == exact_search(videos, users, 10)[1].tolist()


def test_large_catalog_gets_ivf_tuned_to_the_floor_on_user_queries():
    videos, users = clustered(10_000), clustered(300, seed=1)
    index = build_ann_index(videos, users, SMALL)
    report = index.report
    assert report["type"] == "IndexIVFFlat"
    assert report["factory"] == "IVF64,Flat"
    assert report["queries_used"] == 300
    # The ladder stops at the first rung that reaches the floor.
    assert [r["recall"] >= 0.95 for r in report["tuning"]] == [False] * (
        len(report["tuning"]) - 1
    ) + [True]
    assert report["search_params"] == {"nprobe": report["tuning"][-1]["nprobe"]}
    assert faiss.extract_index_ivf(index.index).nprobe == report["search_params"]["nprobe"]
    # The reported recall is the index's recall against exact search, recomputed here.
    _, truth = exact_search(videos, users, 10)
    _, found = index.search(users, 10)
    assert report["recall"] == pytest.approx(recall_at_k(truth, found, 10))
    assert report["recall"] >= 0.95
    params, metrics = mlflow_fields(report)
    assert params["index.nprobe"] == report["search_params"]["nprobe"]
    assert metrics["index.recall"] == report["recall"]


def test_queries_beyond_the_sample_size_are_sampled():
    videos, users = clustered(10_000), clustered(2_000, seed=1)
    config = dataclasses.replace(SMALL, recall_queries=200)
    assert build_ann_index(videos, users, config).report["queries_used"] == 200


def test_an_index_below_the_floor_is_refused_with_its_report():
    videos, users = clustered(10_000), clustered(300, seed=1)
    # From the environment, as an operator would set it (tuples parse as floats).
    config = load_config(
        {"REELFLOW_EXPORT__NPROBE_LADDER": "1", "REELFLOW_EXPORT__RECALL_FLOOR": "0.999"}
    ).export
    config = dataclasses.replace(config, exact_max_videos=1_000, ivf_nlist=64, index_threads=1)
    with pytest.raises(IndexBelowRecallFloor, match="below the floor 0.999") as refused:
        build_ann_index(videos, users, config)
    report = refused.value.report
    assert report["search_params"] == {"nprobe": 1}
    assert report["recall"] < 0.999
    assert [r["nprobe"] for r in report["tuning"]] == [1]

    # No setting can beat exact search: every rung is tried, the best one reported.
    impossible = dataclasses.replace(SMALL, recall_floor=1.01)
    with pytest.raises(IndexBelowRecallFloor) as refused:
        build_ann_index(videos, users, impossible)
    report = refused.value.report
    assert [r["nprobe"] for r in report["tuning"]] == [1, 2, 4, 8, 16, 32, 64]
    assert report["recall"] == max(r["recall"] for r in report["tuning"])


def test_an_approximate_index_needs_queries_to_be_measured():
    with pytest.raises(ValueError, match="no user queries"):
        build_ann_index(clustered(2_000), np.zeros((0, 16), np.float32), SMALL)


def test_saved_index_searches_with_the_tuned_nprobe(tmp_path):
    videos, users = clustered(10_000), clustered(300, seed=1)
    config = dataclasses.replace(SMALL, nprobe_ladder=(8,), recall_floor=0.5)
    built = build_ann_index(videos, users, config)
    built.save(tmp_path)
    loaded = AnnIndex.load(tmp_path)
    assert loaded.report == built.report
    assert faiss.extract_index_ivf(loaded.index).nprobe == 8
    assert loaded.search(users, 10)[1].tolist() == built.search(users, 10)[1].tolist()


def test_default_nlist_grows_with_the_catalog_and_keeps_lists_trainable():
    assert default_nlist(1_000_000) == 4_096
    assert default_nlist(100_000) == 1_024
    assert default_nlist(1_000) == 16  # 39 vectors per list at least
