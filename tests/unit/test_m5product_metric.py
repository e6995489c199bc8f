"""M5Product metrics: SCALE's retrieval rules on tiny hand-computed cases, the ranking of
embeddings (raw dot product, ties, own id dropped), accuracy, NMI (against scikit-learn)
and purity."""

from __future__ import annotations

import numpy as np
import pytest

from refbench.errors import RefbenchError
from refbench.evaluation.m5product import labels as lab
from refbench.evaluation.m5product.retrieval import (
    MAX_TOPK,
    TOPKS,
    GalleryLabels,
    M5ProductRetrieval,
    M5Query,
    QueryEmbedding,
    SubmittedGallery,
    evaluate_rankings,
    rank_embeddings,
)
from refbench.evaluation.retrieval import Ranking
from refbench.registry import METRICS


def gallery(**groups: int) -> GalleryLabels:
    ids = [f"{label}{i}" for label, n in groups.items() for i in range(n)]
    return GalleryLabels(ids, [i.rstrip("0123456789") for i in ids])


def test_the_official_limits_are_pinned() -> None:
    assert TOPKS == (1, 5, 10) and MAX_TOPK == 10
    keys = set(METRICS.get("m5product_retrieval").keys)
    assert keys == {"mAP@1", "mAP@5", "mAP@10", "Prec@1", "Prec@5", "Prec@10", "Recall@1",
                    "Recall@5", "Recall@10", "mAP@R"}  # no @50/@100, no "average"
    assert METRICS.meta("m5product_retrieval")["version"] == "1"


def test_k_prime_is_min_of_k_positives_and_list_length() -> None:
    g = gallery(a=3, b=20)
    # a query outside the gallery: |pos| = 3 + itself = 4, so k' = 4 at k = 5 and 10
    q = M5Query("x", "a", g)
    ranked = ["b0", "a0", "a1", "a2", "b1", "b2", "b3", "b4", "b5", "b6"]
    v = evaluate_rankings([ranked], [q], g)
    assert v["mAP@1"] == 0 and v["Prec@1"] == 0
    assert v["Prec@5"] == pytest.approx(100 * 3 / 4) and v["Prec@10"] == v["Prec@5"]
    assert v["mAP@5"] == pytest.approx(100 * (1 / 2 + 2 / 3 + 3 / 4) / 3)
    # the same query as a gallery item: |pos| = 3 (itself included once), k' = 3
    q = M5Query("a0", "a", g)
    v = evaluate_rankings([["b0", "a1", "a2", "b1", "b2", "b3", "b4", "b5", "b6"]], [q], g)
    assert v["Prec@5"] == pytest.approx(100 * 2 / 3)
    assert v["mAP@5"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    # a list shorter than k and |pos|: k' = the list's length
    q = M5Query("b0", "b", g)
    v = evaluate_rankings([["b1", "a0"]], [q], g)
    assert v["Prec@10"] == 50.0 and v["mAP@10"] == 100.0


def test_exactly_ten_ranks_count_at_k_10() -> None:
    g = gallery(a=12, b=12)
    q = M5Query("x", "a", g)
    nine_misses = [f"b{i}" for i in range(9)]
    at_10 = evaluate_rankings([nine_misses + ["a0", "a1"]], [q], g)
    assert at_10["Prec@10"] == 10.0  # the hit at rank 10 counts, the one at 11 does not
    assert at_10["mAP@10"] == 10.0  # one hit, precision 1/10 there
    assert at_10["Prec@5"] == 0.0 and at_10["Recall@10"] == 100.0


def test_own_id_is_a_hit_and_a_positive_as_in_the_script() -> None:
    g = gallery(a=2, b=5)
    v = evaluate_rankings([["x", "b0"]], [M5Query("x", "a", g)], g)
    assert v["mAP@1"] == 100.0  # the script counts the query itself ...
    assert v["Recall@1"] == 0.0  # ... the standard keys do not


def test_a_label_absent_from_the_gallery_scores_zero() -> None:
    g = gallery(a=2, b=5)
    v = evaluate_rankings([["a0", "b0"]], [M5Query("x", "z", g)], g)
    assert all(value == 0 for value in v.values())


def test_averaging_runs_over_lines_and_stream_merges() -> None:
    g = gallery(a=4, b=4)
    refs = [M5Query("a0", "a", g), M5Query("b0", "b", g)]
    rankings = [Ranking(["a1", "b1", "a2"], line=2), Ranking(["a1", "b1", "b2"], line=1)]
    whole = M5ProductRetrieval()
    whole.update(rankings, refs)
    parts = [M5ProductRetrieval(), M5ProductRetrieval()]
    parts[0].update(rankings[:1], refs[:1])
    parts[1].update(rankings[1:], refs[1:])
    parts[0].merge(parts[1])
    assert parts[0].compute() == whole.compute()
    assert whole.compute()["mAP@1"] == 50.0
    counts = whole.counts()
    assert counts["queries/scored"] == 2 and counts["gallery/items"] == 8
    assert counts["positives/total"] == 6 and counts["queries/short@5"] == 2
    missing = M5ProductRetrieval()
    missing.update([None, rankings[1]], refs)
    assert missing.counts()["queries/not_submitted"] == 1
    assert missing.compute()["mAP@1"] == 0.0  # only b0's line, a miss at rank 1


def test_metric_checks_its_inputs() -> None:
    g = gallery(a=2)
    with pytest.raises(RefbenchError, match="max_topk"):
        M5ProductRetrieval(max_topk=0)
    with pytest.raises(RefbenchError, match="takes only max_topk"):
        M5ProductRetrieval(depth=3)
    with pytest.raises(RefbenchError, match="another gallery"):
        M5ProductRetrieval().update([["a0"], ["a0"]], [M5Query("x", "a", g),
                                                       M5Query("y", "a", gallery(a=3))])
    with pytest.raises(RefbenchError, match="empty ranked list"):
        evaluate_rankings([[]], [M5Query("x", "a", g)], g)
    with pytest.raises(RefbenchError, match="twice"):
        GalleryLabels(["a", "a"], ["x", "x"])
    with pytest.raises(RefbenchError, match="no M5Product query"):
        M5ProductRetrieval().compute()


def test_rank_embeddings_is_raw_dot_product_with_ties_in_gallery_order() -> None:
    g = SubmittedGallery(["g0", "g1", "g2", "g3", "q"],
                         np.array([[1, 0], [2, 0], [2, 0], [0, 1], [5, 5]], dtype=np.float32))
    # raw dot product: g1 and g2 (norm 2) outrank g0 (cosine would tie them); q is dropped
    ranked = rank_embeddings(np.array([[1, 0]], dtype=np.float32), ["q"], g, 3)
    assert ranked == [("g1", "g2")]  # top 3 = q, g1, g2; q's own id dropped: 2 ids
    ranked = rank_embeddings(np.array([[1, 0]], dtype=np.float32), ["x"], g, 3)
    assert ranked == [("q", "g1", "g2")]
    # a tie across the cut-off: g1 and g2 tie, the earlier gallery item is kept
    ranked = rank_embeddings(np.array([[1, 0]], dtype=np.float32), ["x"], g, 2)
    assert ranked == [("q", "g1")]
    ties = SubmittedGallery([f"g{i}" for i in range(30)], np.ones((30, 4), dtype=np.float32))
    assert rank_embeddings(np.ones((1, 4)), ["x"], ties, 10) == [tuple(f"g{i}" for i in range(10))]
    with pytest.raises(RefbenchError, match="NaN"):
        rank_embeddings(np.array([[np.nan, 0]]), ["x"], g)


def test_the_metric_ranks_embeddings_and_checks_the_gallery() -> None:
    labels = GalleryLabels(["a0", "a1", "b0"], ["a", "a", "b"])
    emb = SubmittedGallery(["a0", "a1", "b0"], np.array([[1, 0], [1, 0], [0, 1]], np.float32))
    metric = M5ProductRetrieval()
    metric.update([QueryEmbedding(np.array([1.0, 0.0]), emb)], [M5Query("a0", "a", labels)])
    values = metric.compute()
    # ranked: a0 (dropped: the query), a1, b0; |pos| = 2 (a0 itself and a1), so k' = 2 and
    # the never-retrievable a0 halves Prec@5, as in the official script
    assert values["mAP@1"] == 100.0 and values["Prec@5"] == 50.0 and values["mAP@5"] == 100.0
    short = SubmittedGallery(["a0", "a1"], np.eye(2, dtype=np.float32))
    with pytest.raises(RefbenchError, match="lack 1 gallery item"):
        M5ProductRetrieval().update([QueryEmbedding(np.ones(2), short)],
                                    [M5Query("a0", "a", labels)])


def test_accuracy_is_percent_and_missing_is_wrong() -> None:
    assert lab.accuracy(["a", None, "c", "d"], ["a", "b", "c", "x"]) == 50.0
    metric = lab.M5ProductClassification()
    metric.update(["a", None, "zz"], ["a", "b", "c"])
    assert metric.compute() == {"accuracy": pytest.approx(100 / 3)}
    assert metric.counts() == {"items/scored": 3, "items/correct": 1, "items/not_submitted": 1,
                               "labels/reference": 3, "predictions/unseen_label": 1}
    assert "only 3 items" in metric.warnings()[0]
    with pytest.raises(RefbenchError, match="label string"):
        metric.update([3], ["a"])


def test_nmi_equals_scikit_learn_and_purity_is_hand_computed() -> None:
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(2, 300))
        y = rng.integers(0, int(rng.integers(1, 12)), n).tolist()
        c = rng.integers(0, int(rng.integers(1, 12)), n).tolist()
        expected = 100 * normalized_mutual_info_score(y, c)
        assert lab.nmi(y, c) == pytest.approx(expected, abs=1e-9), trial
    assert lab.nmi(["a", "a"], [0, 0]) == 100.0 == 100 * normalized_mutual_info_score([0, 0], [1, 1])
    assert lab.nmi(["a", "b"], [0, 0]) == 0.0
    # purity: clusters {a,a,b} -> 2, {b,c} -> 1, {c} -> 1: (2 + 1 + 1) / 6
    assert lab.purity(list("aabbcc"), [0, 0, 0, 1, 1, 2]) == pytest.approx(100 * 4 / 6)
    assert lab.purity(list("abc"), [0, 1, 2]) == 100.0  # one item per cluster


def test_clustering_metric_counts_and_warns() -> None:
    metric = lab.M5ProductClustering()
    metric.update([0, 1, 2, 3], ["a", "a", "b", "b"])
    values = metric.compute()
    assert values["purity"] == 100.0 and 0 < values["NMI"] < 100
    assert metric.counts() == {"items/scored": 4, "clusters/predicted": 4, "labels/reference": 2}
    assert any("purity rises" in w for w in metric.warnings())
    with pytest.raises(RefbenchError, match="every item must be assigned"):
        metric.update([None], ["a"])
    with pytest.raises(RefbenchError, match="integer or a string"):
        metric.update([True], ["a"])
