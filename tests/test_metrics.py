"""metrics.py against hand-worked examples and a slow, obviously correct loop."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dinosearch.core import metrics
from dinosearch.core.groups import exclusion_mask
from dinosearch.core.ranking import Side, eligibility, rank_exact


def slow_metrics(scores, q_ids, g_ids, q_groups, g_groups, q_labels, g_labels, k):
    """Transcription of the definitions: one query at a time, Python sets and lists."""
    out = {m: [] for m in metrics.METRICS}
    for q in range(len(q_ids)):
        eligible = [
            g
            for g in range(len(g_ids))
            if g_ids[g] != q_ids[q] and (q_groups is None or q_groups[q] != g_groups[g])
        ]
        mine = set(q_labels[q].split("|"))
        relevant = {g for g in eligible if mine & set(g_labels[g].split("|"))}
        top = sorted(eligible, key=lambda g: (-scores[q, g], g))[:k]
        found = [g in relevant for g in top]
        out["precision"].append(sum(found) / k)
        if relevant:
            out["hit_rate"].append(float(any(found)))
            out["recall"].append(sum(found) / len(relevant))
            ap = sum(sum(found[: i + 1]) / (i + 1) for i in range(len(top)) if found[i])
            out["map"].append(ap / min(k, len(relevant)))
        else:
            out["hit_rate"].append(np.nan)
            out["recall"].append(np.nan)
            out["map"].append(np.nan)
        votes = Counter(lab for g in top for lab in g_labels[g].split("|"))
        if votes:
            best = max(votes.values())
            first = next(lab for g in top for lab in g_labels[g].split("|") if votes[lab] == best)
            out["knn_accuracy"].append(float(first in mine))
        else:
            out["knn_accuracy"].append(0.0)
    return {f"{m}@{k}": np.array(v) for m, v in out.items()}


def fast_metrics(scores_q, scores_g, q, g, ks):
    n_rel, _ = eligibility(q, g)
    ranked = rank_exact(scores_q, scores_g, max(ks), q, g)
    return metrics.retrieval_metrics(ranked, q.labels, g.labels, n_rel, ks)


@pytest.mark.parametrize("use_groups", [False, True])
@pytest.mark.parametrize("multi", [False, True])
def test_matches_slow_loop(use_groups: bool, multi: bool) -> None:
    rng = np.random.default_rng(int(use_groups) * 2 + int(multi))
    n, dim, ks = 60, 8, (1, 3, 5, 10)
    vocab = ["a", "b", "c", "d"]
    labels = [
        "|".join(sorted(set(rng.choice(vocab, size=rng.integers(1, 3)))))
        if multi
        else str(rng.choice(vocab))
        for _ in range(n)
    ]
    groups = rng.integers(0, 20, size=n) if use_groups else None
    x = rng.normal(size=(n, dim)).astype(np.float32)
    ind, _ = metrics.label_indicator(labels)
    ids = np.arange(n).astype(str)
    side = Side(ids, ind, groups)
    fast = fast_metrics(x, x, side, side, ks)
    scores = x @ x.T
    for k in ks:
        slow = slow_metrics(scores, ids, ids, groups, groups, labels, labels, k)
        for name, expected in slow.items():
            np.testing.assert_allclose(fast[name], expected, atol=1e-9, err_msg=name)


def test_hand_worked_example() -> None:
    # One query labelled "a"; gallery labels a, b, a, b, a; 3 relevant items in all.
    # Ranked: g1(b) g0(a) g3(b) g2(a) g4(a)  → rel = 0 1 0 1 1
    g_ind, names = metrics.label_indicator(["a", "b", "a", "b", "a"])
    q_ind, _ = metrics.label_indicator(["a"], names)
    ranked = np.array([[1, 0, 3, 2, 4]])
    m = metrics.retrieval_metrics(ranked, q_ind, g_ind, np.array([3]), ks=(1, 2, 4, 5))
    assert m["hit_rate@1"][0] == 0 and m["hit_rate@2"][0] == 1
    assert m["precision@2"][0] == pytest.approx(1 / 2)
    assert m["precision@4"][0] == pytest.approx(2 / 4)
    assert m["recall@4"][0] == pytest.approx(2 / 3)
    assert m["map@4"][0] == pytest.approx((1 / 2 + 2 / 4) / 3)  # P@2, P@4 at the hits; min(4, 3)
    assert m["map@5"][0] == pytest.approx((1 / 2 + 2 / 4 + 3 / 5) / 3)
    assert m["knn_accuracy@1"][0] == 0  # nearest is "b"
    assert m["knn_accuracy@2"][0] == 0  # tie a:1 b:1 goes to "b", ranked first
    assert m["knn_accuracy@5"][0] == 1  # a:3 b:2


def test_knn_tie_goes_to_the_label_ranked_first() -> None:
    g_ind, names = metrics.label_indicator(["a", "b"])
    q_ind, _ = metrics.label_indicator(["a"], names)
    first_b = metrics.retrieval_metrics(np.array([[1, 0]]), q_ind, g_ind, np.array([1]), ks=(2,))
    first_a = metrics.retrieval_metrics(np.array([[0, 1]]), q_ind, g_ind, np.array([1]), ks=(2,))
    assert first_b["knn_accuracy@2"][0] == 0 and first_a["knn_accuracy@2"][0] == 1


def test_same_patient_exclusion_changes_the_answer() -> None:
    # Query q0 (patient P, pneumonia). Its patient's other film g1 is the nearest item; the next
    # nearest is a normal film of another patient. Without the group, precision@1 is 1; with it, 0.
    ids = np.array(["q0", "g1", "g2", "g3"])
    labels = ["pneumonia", "pneumonia", "normal", "pneumonia"]
    groups = np.array(["P", "P", "Q", "R"])
    x = np.array([[1, 0], [0.99, 0.14], [0.9, 0.43], [0, 1]], dtype=np.float32)
    ind, _ = metrics.label_indicator(labels)
    q = Side(ids[:1], ind[:1], groups[:1])
    g = Side(ids, ind, groups)
    with_self_only = fast_metrics(x[:1], x, Side(ids[:1], ind[:1]), Side(ids, ind), (1,))
    by_patient = fast_metrics(x[:1], x, q, g, (1,))
    assert with_self_only["precision@1"][0] == 1.0
    assert by_patient["precision@1"][0] == 0.0
    assert by_patient["recall@1"][0] == 0.0  # g3 is the only relevant eligible item
    n_rel, n_elig = eligibility(q, g)
    assert n_rel.tolist() == [1] and n_elig.tolist() == [2]


def test_query_without_relevant_items_is_undefined_not_zero() -> None:
    q_ind, _ = metrics.label_indicator(["a"], ["a", "b"])
    g_ind, _ = metrics.label_indicator(["b", "b"], ["a", "b"])
    m = metrics.retrieval_metrics(np.array([[0, 1]]), q_ind, g_ind, np.array([0]), ks=(2,))
    assert np.isnan(m["recall@2"][0]) and np.isnan(m["map@2"][0]) and np.isnan(m["hit_rate@2"][0])
    assert m["precision@2"][0] == 0.0
    assert np.isnan(metrics.nanmean(m["recall@2"]))


def test_multi_label_relevance_is_any_shared_label() -> None:
    ind, names = metrics.label_indicator(["a|b", "b", "c", "c|a", None])
    assert names == ["a", "b", "c"]
    assert not ind[4].any()
    rel = metrics.relevance(ind, ind)
    assert rel[0].tolist() == [True, True, False, True, False]
    assert rel[2].tolist() == [False, False, True, True, False]


def test_exclusion_removes_self_and_group_exactly() -> None:
    ids = np.array(["0", "1", "2", "3", "4"])
    groups = np.array(["A", "A", "B", None, "C"], dtype=object)
    excluded = exclusion_mask(ids[:1], ids, groups[:1], groups)
    assert excluded[0].tolist() == [True, True, False, False, False]
    missing = exclusion_mask(ids[3:4], ids, groups[3:4], groups)
    assert missing[0].tolist() == [False, False, False, True, False]  # no group: only itself
    both_missing = exclusion_mask(ids[3:4], np.array(["9"]), groups[3:4], np.array([None]))
    assert not both_missing.any()  # a missing group matches nothing, not even a missing one


def test_per_label_breakdown() -> None:
    ind, names = metrics.label_indicator(["a", "a", "b|a"])
    per_q = {"precision@1": np.array([1.0, 0.0, 1.0])}
    table = metrics.per_label(per_q, ind, names)
    assert table["a"] == {"queries": 3, "precision@1": pytest.approx(2 / 3)}
    assert table["b"] == {"queries": 1, "precision@1": 1.0}
