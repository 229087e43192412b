"""knn: exact top-k against a brute-force sort, seeded k-means, IVF assignment and filling."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from helpers import assert_knn_equal

from dinosearch.index.knn import add_vectors, assign, exact_search, kmeans, sample, search_index


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: one float64 matmul, sorted by (score, smaller id)."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    ids = np.array([np.lexsort((np.arange(len(vectors)), -row))[:k] for row in scores])
    return np.take_along_axis(scores, ids, 1), ids


@pytest.mark.parametrize("chunk", [1 << 18, 7])  # one chunk, and many (with a ragged last one)
@pytest.mark.parametrize("k", [1, 10, 200])  # k = 200 > N returns all N rows
def test_exact_search_matches_brute_force(chunk: int, k: int) -> None:
    vectors, queries = _unit(150, 16, 0), _unit(9, 16, 1)
    scores, ids = exact_search(vectors, queries, k, chunk=chunk)
    want_s, want_i = _brute(vectors, queries, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert ids.shape == (9, min(k, 150))
    assert_knn_equal(want_s, want_i, scores, ids)


def test_tie_tolerant_check_catches_a_wrong_ranking() -> None:
    vectors, queries = _unit(150, 16, 0), _unit(9, 16, 1)
    scores, ids = exact_search(vectors, queries, 10)
    for wrong_s, wrong_i in (
        (scores[:, ::-1], ids[:, ::-1]),  # reversed
        (scores, np.roll(ids, 1, axis=1)),  # ids shifted against their scores
        (scores, np.where(ids == ids[:, :1], 149 - ids, ids)),  # a wrong id at rank 1
    ):
        with pytest.raises(AssertionError):
            assert_knn_equal(scores, ids, wrong_s, wrong_i)


@pytest.mark.parametrize("chunk", [1 << 18, 5, 3, 1])
def test_identical_vectors_come_out_smaller_id_first(chunk: int) -> None:
    base = _unit(4, 8, 2)
    vectors = np.concatenate([base, base, base])  # ids i, i+4, i+8 score the same for any query
    queries = _unit(5, 8, 3)
    scores, ids = exact_search(vectors, queries, 6, chunk=chunk)
    _, want = _brute(vectors, queries, 6)
    np.testing.assert_array_equal(ids, want)  # ties among copies are exact after re-scoring
    for row_s, row_i in zip(scores, ids, strict=True):
        for a, b, sa, sb in zip(row_i, row_i[1:], row_s, row_s[1:], strict=False):
            assert sa > sb or (sa == sb and a < b)


def test_near_ties_within_tolerance_may_swap_but_stay_in_the_top_k() -> None:
    rng = np.random.default_rng(4)
    base = _unit(40, 32, 5)
    vectors = np.concatenate([base, base + rng.normal(0, 1e-8, base.shape).astype(np.float32)])
    queries = _unit(6, 32, 6)
    want_s, want_i = _brute(vectors, queries, 12)
    for chunk in (1 << 18, 9, 2):
        scores, ids = exact_search(vectors, queries, 12, chunk=chunk)
        assert_knn_equal(want_s, want_i, scores, ids)
        assert np.all((ids % 40)[:, ::2] == (ids % 40)[:, 1::2])  # each copy beside its twin


def test_search_index_flat_equals_faiss() -> None:
    vectors, queries = _unit(300, 12, 4), _unit(6, 12, 5)
    index = faiss.IndexFlatIP(12)
    index.add(vectors)
    s1, i1 = search_index(index, queries, 5)
    s2, i2 = index.search(queries, 5)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5)


def test_kmeans_is_seeded_and_unit() -> None:
    x = _unit(500, 8, 6)
    a, b = kmeans(x, 16, niter=5, seed=3), kmeans(x, 16, niter=5, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 8) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    assert not np.array_equal(a, kmeans(x, 16, niter=5, seed=4))


def test_assign_picks_the_highest_inner_product() -> None:
    x, c = _unit(1000, 8, 7), _unit(20, 8, 8)
    np.testing.assert_array_equal(assign(x, c, chunk=33), np.argmax(x @ c.T, axis=1))


def test_sample_keeps_order_and_all_rows_when_small() -> None:
    x = np.arange(100, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(sample(x, 200), x)
    s = sample(x, 10)
    assert len(s) == 10 and np.all(np.diff(s[:, 0]) > 0) and len(np.unique(s)) == 10
    np.testing.assert_array_equal(s, sample(x, 10))


def test_add_vectors_ivf_lists_match_assign() -> None:
    x, centroids = _unit(400, 8, 9), kmeans(_unit(400, 8, 9), 8, niter=3)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(8), 8, 8, faiss.METRIC_INNER_PRODUCT)
    index.quantizer.add(centroids)
    index.is_trained = True
    add_vectors(index, x)
    assert index.ntotal == 400
    labels = assign(x, centroids)
    sizes = [index.invlists.list_size(j) for j in range(8)]
    np.testing.assert_array_equal(sizes, np.bincount(labels, minlength=8))
