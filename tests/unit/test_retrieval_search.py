"""The shared retrieval toolkit: exact faiss search against a numpy brute force, one-line
input errors, the standard Recall@K / mAP@R against their definitions, and rankings with
decimal keys."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from refbench.errors import MissingDependencyError, RefbenchError
from refbench.evaluation.retrieval import (
    Ranking,
    ap_at_r,
    class_counts,
    class_relevance,
    decimal_keys,
    exact_search,
    map_at_r,
    recall_at_k,
    repeated_ids,
    standard_metrics,
)

pytest.importorskip("faiss", reason="the [retrieval] extra (faiss-cpu) is not installed")


def brute_force(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    scores = queries.astype(np.float64) @ gallery.astype(np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_exact_search_equals_brute_force_for_dot_product_and_cosine() -> None:
    rng = np.random.default_rng(0)
    queries, gallery = rng.normal(size=(40, 16)), rng.normal(size=(300, 16)) * 3
    found = exact_search(queries, gallery, 10)
    assert found.indices.shape == (40, 10) and found.indices.dtype == np.int64
    assert (found.indices == brute_force(queries, gallery, 10)).all()
    assert np.all(np.diff(found.scores, axis=1) <= 0)
    unit = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    cosine = exact_search(queries, gallery, 10, similarity="cosine")
    assert (cosine.indices == brute_force(queries, unit, 10)).all()
    assert (cosine.indices != found.indices).any()  # norms matter to the dot product only
    assert np.abs(cosine.scores).max() <= 1.0 + 1e-5
    before = gallery.copy()
    exact_search(queries.astype(np.float32), gallery, 3, similarity="cosine")
    assert (gallery == before).all()  # the caller's arrays are not normalised in place


def test_ids_and_rankings_and_k_beyond_the_gallery() -> None:
    gallery = np.eye(3, dtype=np.float32)
    found = exact_search(np.array([[0.0, 1.0, 0.5]]), gallery, 10)
    assert found.indices.shape == (1, 3)  # the whole gallery, not padding
    assert found.ids(["a", "b", "c"]) == [("b", "c", "a")]
    assert found.rankings(["q"], ["a", "b", "c"]) == {"q": ("b", "c", "a")}
    with pytest.raises(RefbenchError, match="2 query ids for 1 searched queries"):
        found.rankings(["q", "r"], ["a", "b", "c"])


@pytest.mark.parametrize(("queries", "gallery", "kwargs", "message"), [
    (np.ones(4), np.ones((3, 4)), {}, "query embeddings must be a 2-D array"),
    (np.ones((0, 4)), np.ones((3, 4)), {}, "query embeddings are empty"),
    (np.ones((2, 4)), np.ones((3, 5)), {},
     "query embeddings have 4 dimensions, gallery embeddings 5"),
    (np.ones((2, 4)), np.array([[1, 2, 3, 4], [1, np.nan, 0, 0], [np.inf, 0, 0, 0]]), {},
     r"gallery embeddings hold NaN or infinite values \(float32\) in 2 row\(s\), first row 1"),
    (np.full((2, 4), 1e39), np.ones((3, 4)), {}, "query embeddings hold NaN or infinite"),
    (np.array([["a"]]), np.ones((3, 1)), {}, "must be real numbers"),
    (np.ones((2, 4)), np.vstack([np.ones(4), np.zeros(4)]), {"similarity": "cosine"},
     r"gallery embeddings have 1 zero row\(s\) \(first row 1\)"),
    (np.ones((2, 4)), np.ones((3, 4)), {"similarity": "l2"}, "unknown similarity 'l2'"),
    (np.ones((2, 4)), np.ones((3, 4)), {"k": 0}, "k must be a positive integer"),
])
def test_bad_inputs_are_one_line(queries: np.ndarray, gallery: np.ndarray, kwargs: dict,
                                 message: str) -> None:
    args = {"k": 5, **kwargs}
    with pytest.raises(RefbenchError, match=message) as info:
        exact_search(queries, gallery, **args)
    assert "\n" not in str(info.value)


def test_missing_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "faiss" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"'faiss'.*\[retrieval\]"):
        exact_search(np.ones((1, 2)), np.ones((2, 2)), 1)


def test_recall_at_k_counts_queries_with_a_hit() -> None:
    relevant = np.array([[False, True, False], [False, False, False], [True, True, True]])
    assert recall_at_k(relevant, (1, 2, 3)) == {"Recall@1": 1 / 3, "Recall@2": 2 / 3,
                                                "Recall@3": 2 / 3}


def test_map_at_r_is_musgrave_et_al() -> None:
    """R = 4, relevant at ranks 1, 3, 4 of the first 4 (rank 6 is beyond R):
    AP@R = (1/1 + 2/3 + 3/4) / 4; a list shorter than R counts misses; R = 0 scores 0."""
    relevant = np.array([[True, False, True, True, False, True],
                         [True, True, False, False, False, False],
                         [True, False, False, False, False, False]])
    values = ap_at_r(relevant, [4, 8, 0])
    assert values.tolist() == pytest.approx([(1 + 2 / 3 + 3 / 4) / 4, 2 / 8, 0.0])
    assert map_at_r(relevant, [4, 8, 0]) == pytest.approx(values.mean())
    with pytest.raises(RefbenchError, match="one non-negative count per query"):
        ap_at_r(relevant, [1, 2])
    with pytest.raises(RefbenchError, match="2-D boolean"):
        recall_at_k(np.ones((2, 2)))


def test_class_relevance_and_counts_for_single_label_retrieval() -> None:
    gallery_classes = np.array([0, 1, 1, 2, 1])
    query_classes = np.array([1, 3, -1])
    ranked = gallery_classes[np.array([[1, 0, 2], [3, 4, 0], [0, 1, 2]])]
    relevant = class_relevance(ranked, query_classes)
    assert relevant.tolist() == [[True, False, True], [False, False, False],
                                 [False, False, False]]
    assert class_counts(gallery_classes, query_classes).tolist() == [3, 0, 0]
    metrics = standard_metrics(relevant, class_counts(gallery_classes, query_classes), (1, 3))
    assert metrics == pytest.approx({"Recall@1": 1 / 3, "Recall@3": 1 / 3,
                                     "mAP@R": (1 + 2 / 3) / 3 / 3})


def test_decimal_keys_only_for_canonical_decimal_ids() -> None:
    keys = decimal_keys(["12,7,0", "", "999999999999999999"])
    assert keys is not None and [k.tolist() for k in keys] == [[12, 7, 0], [], [10**18 - 1]]
    for bad in (["012"], ["+7"], ["7 "], ["-7"], ["1e3"], ["x1"], ["٣"], ["1" * 19], ["1,,2"]):
        assert decimal_keys(bad) is None, bad
    assert decimal_keys(["", ""]) is not None


def test_repeated_ids_per_list() -> None:
    keys = [np.array([3, 1, 3]), np.array([], dtype=np.int64), np.array([5, 6]), np.array([0, 0])]
    assert repeated_ids(keys).tolist() == [True, False, False, True]


def test_ranking_from_text_is_the_ranking_of_its_ids() -> None:
    lazy = Ranking(text="g2,g1", line=4, keys=None)
    assert len(lazy) == 2 and lazy == Ranking(("g2", "g1"), 4) and lazy.ids == ("g2", "g1")
    assert hash(lazy) == hash(Ranking(("g2", "g1"), 4)) and "g2" in repr(lazy)
    assert len(Ranking(text="", line=1)) == 0 and Ranking(text="").ids == ()
    with pytest.raises(ValueError, match="1 keys for 2 ids"):
        Ranking(text="1,2", keys=np.array([1]))
